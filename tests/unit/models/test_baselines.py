"""Baselines against hand calculations / direct formulas, and save -> load round trips."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsage.data.splits import leave_one_out
from recsage.errors import ArtifactError, ConfigError, RecsageError
from recsage.evaluation import evaluate
from recsage.models import EASE, ItemKNN, Popularity, Recommender, create_model


def test_popularity_counts(tiny) -> None:
    m = Popularity().fit(tiny)
    assert m.score(np.array([0]))[0].tolist() == [2, 3, 2, 2, 1]


def test_itemknn_cosine_by_hand(tiny) -> None:
    m = ItemKNN(neighbors=10).fit(tiny)
    x = tiny.matrix().toarray()
    norms = np.sqrt(x.sum(axis=0))
    expected = (x.T @ x) / np.outer(norms, norms)
    np.fill_diagonal(expected, 0.0)
    assert m.sim.toarray() == pytest.approx(expected.astype(np.float32), abs=1e-6)
    d = tiny.users.index_of("d")
    # d only has i4, which co-occurs with nothing
    assert m.score(np.array([d]))[0].tolist() == [0, 0, 0, 0, 0]


def test_itemknn_keeps_top_neighbors(tiny) -> None:
    m = ItemKNN(neighbors=1).fit(tiny)
    assert (np.diff(m.sim.indptr) <= 1).all()


def test_ease_matches_closed_form(tiny) -> None:
    lam = 2.0
    m = EASE(l2=lam).fit(tiny)
    x = tiny.matrix().toarray().astype(float)
    p = np.linalg.inv(x.T @ x + lam * np.eye(5))
    b = np.eye(5) - p / np.diag(p)  # B = I - P diag(1/diag P)
    np.fill_diagonal(b, 0)
    assert m.weights == pytest.approx(b.astype(np.float32), abs=1e-5)
    assert m.score(np.arange(4)) == pytest.approx((x @ b).astype(np.float32), abs=1e-5)


def test_ease_refuses_huge_catalogue(tiny) -> None:
    with pytest.raises(ConfigError, match="max_items"):
        EASE(max_items=3).fit(tiny)


@pytest.mark.parametrize("name", ["pop", "itemknn", "ease", "als"])
def test_save_load_round_trip(tiny, tmp_path, name) -> None:
    m = create_model(name).fit(tiny)
    m.save(tmp_path / name)
    back = Recommender.load(tmp_path / name)
    assert type(back) is type(m)
    users = np.arange(tiny.n_users)
    np.testing.assert_array_equal(back.score(users), m.score(users))
    items, _ = back.recommend(users, n=2)
    assert items.shape == (4, 2)
    # seen items are never recommended
    for u in users:
        assert not set(items[u][items[u] >= 0]) & set(tiny.matrix()[u].indices)


def test_load_rejects_non_artifact(tmp_path) -> None:
    with pytest.raises(ArtifactError, match="not a recsage model"):
        Recommender.load(tmp_path)


def test_unknown_parameter_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="valid: half_life, l2, max_items"):
        create_model("ease", lamda=3)
    with pytest.raises(ConfigError, match="unknown model"):
        create_model("nope")


def test_unfitted_model_errors() -> None:
    with pytest.raises(RecsageError, match="not fitted"):
        EASE().score(np.array([0]))


def test_als_fold_in_agrees_with_training_factors(tiny) -> None:
    m = create_model("als", factors=4, iterations=30, regularization=0.1).fit(tiny)
    users = np.arange(tiny.n_users)
    folded = m.score(users, history=tiny.matrix())
    direct = m.score(users)
    # the fold-in solves the same least-squares step ALS ends on, so rankings agree
    assert np.corrcoef(folded.ravel(), direct.ravel())[0, 1] > 0.95


def test_evaluate_full_ranking_by_hand(tiny) -> None:
    loo = leave_one_out(tiny)
    res = evaluate(Popularity().fit(loo.test.train), loo.test, ks=(1, 2))
    # test training counts: i0:2 i1:3 i2:1 i3:0 i4:1
    # a: history i0,i1,i2; eligible i3(0), i4(1): target i3 at position 1
    # b: history i0,i1; eligible i2(1), i3(0), i4(1): i2 ties with i4 -> position 1
    # c: history i1; eligible i0(2), i2(1), i3(0), i4(1): target i3 at position 3
    per_user = res.per_user.set_index("user")
    assert per_user.loc["a", "mrr"] == pytest.approx(1 / 2)
    assert per_user.loc["b", "mrr"] == pytest.approx(1 / 2)
    assert per_user.loc["c", "mrr"] == pytest.approx(1 / 4)
    assert res.metrics["hr@2"] == pytest.approx(2 / 3)
    assert res.metrics["hr@1"] == 0.0
    assert res.protocol["ranking"] == "full"


def test_sampled_metrics_are_labelled(tiny) -> None:
    loo = leave_one_out(tiny)
    res = evaluate(Popularity().fit(loo.test.train), loo.test, ks=(1,), sampled_negatives=1)
    assert all(k.startswith("sampled1_") for k in res.metrics)
    assert "sampled" in res.protocol["ranking"]


def test_history_must_match_shape(tiny) -> None:
    m = EASE().fit(tiny)
    with pytest.raises(RecsageError, match="shape"):
        m.score(np.array([0]), history=sp.csr_matrix((1, 3)))


def test_recency_matrix_weights_by_hand(tiny) -> None:
    w = tiny.recency_matrix(half_life=1.0).toarray()
    a = tiny.users.index_of("a")  # i0, i1, i2, i3 in time order
    assert w[a, :4] == pytest.approx([0.125, 0.25, 0.5, 1.0])
    assert w[a, 4] == 0.0


def test_ease_half_life_scores_recent_history(tiny, tmp_path) -> None:
    m = EASE(l2=2.0, half_life=1.0).fit(tiny)
    users = np.arange(tiny.n_users)
    expected = tiny.recency_matrix(1.0).toarray() @ m.weights
    assert m.score(users) == pytest.approx(expected, abs=1e-5)
    m.save(tmp_path / "e")
    np.testing.assert_array_equal(Recommender.load(tmp_path / "e").score(users), m.score(users))
