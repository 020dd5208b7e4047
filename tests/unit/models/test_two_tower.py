"""Two-tower model on synthetic clustered data with random 384-d "text" vectors (no MiniLM)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsage.data.schema import Dataset, Interactions
from recsage.data.splits import leave_one_out
from recsage.data.vocab import Vocabulary
from recsage.errors import ConfigError, RecsageError
from recsage.evaluation import evaluate
from recsage.models import Popularity, Recommender
from recsage.models.registry import model_class
from recsage.models.two_tower.features import user_feature_matrix
from recsage.models.two_tower.model import TwoTower, sequence_scorer

N_CLUSTERS = 6
FAST = {
    "dim": 32,
    "batch_size": 128,
    "progress": False,
    "profile_map": False,
    "seed": 0,
    "threads": 1,
}


def _synthetic(
    n_users: int = 240, n_warm: int = 96, n_cold: int = 12, per_user: int = 12, seed: int = 0
) -> tuple[Dataset, np.ndarray, np.ndarray]:
    """Users pick items from one preferred cluster (skewed within it). Items n_warm.. are
    cold (no interactions); cold item j copies the text vector and category of warm item
    j - n_warm. Text vector = cluster centre + noise."""
    rng = np.random.default_rng(seed)
    cluster = np.concatenate([np.arange(n_warm) % N_CLUSTERS, np.arange(n_cold) % N_CLUSTERS])
    centres = rng.normal(size=(N_CLUSTERS, 384))
    text = centres[cluster[:n_warm]] + 0.7 * rng.normal(size=(n_warm, 384))
    text = np.concatenate([text, text[:n_cold]])
    text = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)
    pref = rng.integers(0, N_CLUSTERS, n_users)
    rows_u: list[int] = []
    rows_i: list[int] = []
    for u in range(n_users):
        pool = np.flatnonzero(cluster[:n_warm] == pref[u])
        w = 1.0 / (1.0 + np.arange(len(pool)))
        pick = rng.choice(pool, size=per_user, replace=False, p=w / w.sum())
        rows_u += [u] * per_user
        rows_i += pick.tolist()
    users = Vocabulary([f"u{u}" for u in range(n_users)])
    items = Vocabulary([f"i{i}" for i in range(n_warm + n_cold)])
    inter = Interactions.build(
        np.array(rows_u), np.array(rows_i), timestamp=np.arange(len(rows_u), dtype=float)
    )
    table = pd.DataFrame(
        {
            "title": [f"item {i}" for i in range(n_warm + n_cold)],
            "categories": [[f"c{c}"] for c in cluster],
        }
    )
    user_table = pd.DataFrame(
        {"user_id": users.ids, "gender": np.where(pref % 2 == 0, "M", "F"), "zip": users.ids}
    )
    return Dataset("synth", inter, users, items, table, user_table), text, pref


@pytest.fixture(scope="module")
def data() -> tuple[Dataset, np.ndarray, np.ndarray]:
    return _synthetic()


@pytest.fixture(scope="module")
def trained(data) -> TwoTower:
    ds, text, _ = data
    return TwoTower(max_epochs=4, **FAST).fit(ds, item_text_vectors=text)


def test_registered_and_config_errors() -> None:
    assert model_class("two_tower") is TwoTower
    with pytest.raises(ConfigError, match="loss"):
        TwoTower(loss="hinge")
    with pytest.raises(ConfigError, match="unknown parameter"):
        TwoTower(layers=3)
    with pytest.raises(ConfigError, match="item_text_vectors"):
        ds, text, _ = _synthetic(n_users=20)
        TwoTower(**FAST, max_epochs=1).fit(ds, item_text_vectors=text[:5])


@pytest.mark.parametrize("loss", ["softmax", "bpr"])
def test_learns_beyond_popularity(data, loss: str) -> None:
    ds, text, _ = data
    loo = leave_one_out(ds)
    pop = evaluate(Popularity().fit(loo.test.train), loo.test).metrics["ndcg@10"]
    model = TwoTower(max_epochs=4, loss=loss, **FAST).fit(loo.test.train, item_text_vectors=text)
    tt = evaluate(model, loo.test).metrics["ndcg@10"]
    assert tt > 2 * pop and tt > 0.2, (tt, pop)


def test_early_stopping_and_sequence_scorer(data) -> None:
    ds, text, _ = data
    loo = leave_one_out(ds)
    model = TwoTower(max_epochs=4, patience=1, **FAST).fit(
        loo.valid.train, valid=loo.valid, item_text_vectors=text
    )
    assert 1 <= model.best_epoch <= len(model.history) <= 4
    assert all("ndcg@10" in h for h in model.history)
    assert model.best_ndcg == max(h["ndcg@10"] for h in model.history)
    res = evaluate(sequence_scorer(model, loo.test.train), loo.test)
    assert res.metrics["ndcg@10"] > 0.2


def test_deterministic(data) -> None:
    ds, text, _ = data
    a = TwoTower(max_epochs=1, **FAST).fit(ds, item_text_vectors=text)
    b = TwoTower(max_epochs=1, **FAST).fit(ds, item_text_vectors=text)
    users = np.arange(10)
    assert np.array_equal(a.score(users), b.score(users))


def test_cold_items_scored_from_text(data, trained: TwoTower) -> None:
    ds, text, pref = data
    n_warm = 96
    cold = np.arange(n_warm, ds.n_items)
    vecs = trained.item_vectors()
    # a cold item's vector is its text(+category) path: equal to the twin's text-only path
    twin_text_only = trained.item_vectors_for_text(
        text_vectors=text[cold - n_warm], categories=[[f"c{c % N_CLUSTERS}"] for c in cold]
    )
    assert vecs[cold] == pytest.approx(twin_text_only, abs=1e-5)
    # ... and users of the twin's cluster rank it first among the cold items
    scores = trained.score(np.arange(ds.n_users))[:, cold]
    top_cluster = cold[scores.argmax(axis=1)] % N_CLUSTERS
    assert (top_cluster == pref).mean() > 0.9
    # the ID-free path of a warm item stays close to its full vector (ID dropout training)
    warm = np.arange(n_warm)
    full = vecs[warm] / np.linalg.norm(vecs[warm], axis=1, keepdims=True)
    text_only = trained.item_vectors_for_text(
        text_vectors=text[warm], categories=[[f"c{c % N_CLUSTERS}"] for c in warm]
    )
    text_only /= np.linalg.norm(text_only, axis=1, keepdims=True)
    assert float((full * text_only).sum(axis=1).mean()) > 0.5


def test_id_only_model_cannot_rank_cold_items(data) -> None:
    ds, _, _ = data
    model = TwoTower(
        max_epochs=1, use_text=False, use_categories=False, use_user_features=False, **FAST
    ).fit(ds)
    scores = model.score(np.arange(5))
    assert np.all(scores[:, 96:] == 0.0)
    with pytest.raises(RecsageError, match="text_vectors or categories"):
        model.item_vectors_for_text()


def test_add_items_scored_immediately(data) -> None:
    ds, text, _pref = data
    model = TwoTower(max_epochs=2, **FAST).fit(ds, item_text_vectors=text)
    before = model.score(np.arange(4))
    new = model.add_items(["n0", "n1"], text_vectors=text[[0, 1]], categories=[["c0"], ["c1"]])
    assert new.tolist() == [ds.n_items, ds.n_items + 1]
    after = model.score(np.arange(4))
    assert after.shape == (4, ds.n_items + 2)
    assert after[:, : ds.n_items] == pytest.approx(before)
    # new item n0 is a copy of cold item 96 (same text, same category, no ID)
    assert after[:, ds.n_items] == pytest.approx(after[:, 96], abs=1e-4)
    with pytest.raises(RecsageError, match="new and unique"):
        model.add_items(["i0"], text_vectors=text[:1])


def test_cold_users_from_history_and_text(data) -> None:
    ds, text, _pref = data
    rng = np.random.default_rng(1)
    profile = rng.normal(size=(ds.n_users, 384)).astype(np.float32)
    model = TwoTower(max_epochs=2, **{**FAST, "profile_map": True}).fit(
        ds, item_text_vectors=text, user_text_vectors=profile
    )
    assert model.profile_weights is not None and model.profile_weights.shape == (385, 32)
    # given history (CSR) for unseen users: one click in cluster 2 -> cluster-2 items on top
    hist = sp.csr_matrix(([1.0], ([0], [2])), shape=(1, ds.n_items))
    s = model.score(np.array([0]), history=hist)[0]
    s[2] = -np.inf
    top = np.argsort(-s[:96])[:5]
    assert (top % N_CLUSTERS == 2).mean() >= 0.8
    for mode in ("profile", "item", "blend", "auto"):
        out = model.score_text(query_vectors=profile[:3], mode=mode)
        assert out.shape == (3, ds.n_items) and np.isfinite(out).all()
    # pseudo-item path: an item's own text vector as the query ranks its cluster first
    s = model.score_text(query_vectors=text[[3]], mode="item")[0]
    assert (np.argsort(-s[:96])[:5] % N_CLUSTERS == 3).mean() >= 0.8
    no_map = TwoTower(max_epochs=1, **FAST).fit(ds, item_text_vectors=text)
    with pytest.raises(RecsageError, match="no profile map"):
        no_map.score_text(query_vectors=profile[:1], mode="profile")


def test_user_features_from_table(data) -> None:
    ds, _, pref = data
    feats, names = user_feature_matrix(ds.user_table)
    assert names == ["gender=F", "gender=M"]  # ids and the many-valued zip are skipped
    assert feats is not None and feats.shape == (ds.n_users, 1)
    assert (feats[:, 0] == np.where(pref % 2 == 0, 2, 1)).all()


def test_save_load_identical(tmp_path, data) -> None:
    ds, text, _ = data
    rng = np.random.default_rng(2)
    extra = rng.normal(size=(ds.n_items, 16)).astype(np.float32)
    mask = rng.random(ds.n_items) > 0.3
    profile = rng.normal(size=(ds.n_users, 384)).astype(np.float32)
    model = TwoTower(max_epochs=1, fusion="gated", **{**FAST, "profile_map": True}).fit(
        ds,
        item_text_vectors=text,
        user_text_vectors=profile,
        extra_item_vectors=extra,
        extra_item_mask=mask,
    )
    model.add_items(["new"], text_vectors=text[:1], extra_vectors=extra[:1])
    users = np.arange(20)
    hist = sp.csr_matrix(np.eye(1, ds.n_items + 1, 5, dtype=np.float32))
    model.save(tmp_path / "tt")
    loaded = Recommender.load(tmp_path / "tt")
    assert isinstance(loaded, TwoTower)
    assert loaded.n_items == ds.n_items + 1
    assert np.array_equal(model.score(users), loaded.score(users))
    assert np.array_equal(
        model.score(np.array([0]), history=hist), loaded.score(np.array([0]), history=hist)
    )
    assert np.array_equal(
        model.score_text(query_vectors=profile[:2]), loaded.score_text(query_vectors=profile[:2])
    )
    assert loaded.features is not None and loaded.features.text is not None
    assert np.array_equal(loaded.features.text, model.features.text)  # type: ignore[union-attr]


def test_gated_views_start_halfway_and_cold_items_get_their_text_view() -> None:
    import torch

    from recsage.models.two_tower.net import ItemTower, TwoTowerConfig

    cfg = TwoTowerConfig(dim=4, views="gate", use_categories=False)
    tower = ItemTower(cfg, id_rows=3, text_dim=5, n_cats=0, extra_dim=0)
    assert tower.gate is not None
    ids = torch.tensor([1, 2])
    on = torch.tensor([True, False])
    text = torch.randn(2, 5)
    with torch.no_grad():
        out = tower(ids, on, text, None, None, None)
        id_view = tower.id_emb.weight[1]  # type: ignore[union-attr]
        t = tower.text_proj(text)  # type: ignore[misc]
    # a zero-initialised gate weighs both views 0.5 / 0.5; an item without its ID: text only
    torch.testing.assert_close(out[0], 0.5 * id_view + 0.5 * t[0])
    torch.testing.assert_close(out[1], t[1])
    with pytest.raises(ConfigError, match="views"):
        TwoTowerConfig(views="concat").validate()
    no_text = ItemTower(TwoTowerConfig(dim=4, views="gate", use_text=False), 3, 0, 0, 0)
    assert no_text.gate is None  # one view: nothing to gate


def test_gated_views_learn_and_round_trip(tmp_path, data) -> None:
    ds, text, pref = data
    loo = leave_one_out(ds)
    model = TwoTower(max_epochs=3, views="gate", **FAST).fit(loo.test.train, item_text_vectors=text)
    assert model.net is not None and model.net.items.gate is not None
    assert float(model.net.items.gate.weight.detach().abs().sum()) > 0  # the gate moved off 0.5
    pop = evaluate(Popularity().fit(loo.test.train), loo.test).metrics["ndcg@10"]
    assert evaluate(model, loo.test).metrics["ndcg@10"] > 2 * pop
    scores = model.score(np.arange(ds.n_users))[:, 96:]  # cold items: their text view only
    assert (np.arange(96, ds.n_items)[scores.argmax(axis=1)] % N_CLUSTERS == pref).mean() > 0.9
    model.save(tmp_path / "tt")
    loaded = Recommender.load(tmp_path / "tt")
    assert np.array_equal(model.score(np.arange(10)), loaded.score(np.arange(10)))
