"""Learned rankers on synthetic data whose labels follow a known function of the features.

Interaction data: each group (user) has a segment `cat0` constant over its rows; a row is
relevant when the candidate's category `cat1` matches the segment (mod 3), plus a linear
effect of one dense feature. A model additive in the features cannot see the match (every
category is equally good on average), an FM or trees can. History data: a row is relevant
when the candidate item's cluster is the cluster most of the user's history comes from,
which only a model that reads the history (DIN) can know.

Models run with threads=1: the test machine is shared and two OpenMP threads on busy cores
are many times slower; one torch test keeps the default of 2 threads on tiny data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recsage.errors import ArtifactError, ConfigError, DataError, RecsageError
from recsage.ranking import (
    RANKERS,
    DINRanker,
    FMRanker,
    LGBMRanker,
    Ranker,
    RankingData,
    create_ranker,
    grouped_ndcg,
)

FAST: dict[str, dict[str, Any]] = {
    "fm": {"threads": 1},
    "nfm": {"threads": 1},
    "deepfm": {"threads": 1},
    "din": {"threads": 1},
    "lgbm": {"threads": 1},
}


def interaction_data(n_groups: int, *, size: int = 30, seed: int = 0) -> RankingData:
    """Label = match(cat0 mod 3, cat1 mod 3) and a dense effect, with noise."""
    rng = np.random.default_rng(seed)
    n = n_groups * size
    segment = rng.integers(0, 6, n_groups)
    cat = np.stack([np.repeat(segment, size), rng.integers(0, 6, n)], axis=1)
    dense = rng.normal(size=(n, 3)).astype(np.float32)
    match = cat[:, 0] % 3 == cat[:, 1] % 3
    logit = 3.0 * match + 1.0 * dense[:, 0] - 3.0 + rng.normal(0.0, 0.5, n)
    return RankingData(
        dense,
        np.repeat(np.arange(n_groups) + 10_000 * seed, size),
        (logit > 0).astype(np.float32),
        categorical=cat,
        cardinalities=(6, 6),
        item=rng.integers(0, 50, n),
        n_items=50,
    )


def history_data(
    n_groups: int, *, size: int = 30, length: int = 10, seed: int = 0, n_items: int = 60
) -> RankingData:
    """Label = candidate's cluster equals the user's cluster, seen only through history."""
    rng = np.random.default_rng(seed)
    n = n_groups * size
    cluster = np.arange(n_items) % 6
    user_cluster = rng.integers(0, 6, n_groups)
    own = user_cluster[:, None] + 6 * rng.integers(0, n_items // 6, (n_groups, length))
    noise = rng.integers(0, n_items, (n_groups, length))
    history = np.where(rng.random((n_groups, length)) < 0.8, own, noise)
    lengths = rng.integers(3, length + 1, n_groups)
    history[np.arange(length)[None, :] < (length - lengths)[:, None]] = -1  # left padding
    item = rng.integers(0, n_items, n)
    dense = rng.normal(size=(n, 2)).astype(np.float32)
    relevant = cluster[item] == np.repeat(user_cluster, size)
    logit = 3.0 * relevant + 0.5 * dense[:, 0] - 2.0 + rng.normal(0.0, 0.5, n)
    return RankingData(
        dense,
        np.repeat(np.arange(n_groups), size),
        (logit > 0).astype(np.float32),
        item=item,
        history=history,
        n_items=n_items,
    )


def linear_ndcg(train: RankingData, test: RankingData) -> float:
    """Ridge regression on dense + one-hot categorical (+ item) columns: an additive model."""

    def design(d: RankingData) -> np.ndarray:
        parts = [d.dense, np.ones((d.n_rows, 1), np.float32)]
        for j, card in enumerate(d.cardinalities):
            parts.append(np.eye(card, dtype=np.float32)[d.categorical[:, j]])
        if d.item is not None:
            parts.append(np.eye(d.n_items, dtype=np.float32)[d.item])
        return np.concatenate(parts, axis=1)

    a = design(train)
    assert train.label is not None and test.label is not None
    w = np.linalg.solve(a.T @ a + np.eye(a.shape[1]), a.T @ train.label)
    return grouped_ndcg(design(test) @ w, test.label, test.group)


def random_ndcg(test: RankingData) -> float:
    assert test.label is not None
    scores = np.random.default_rng(0).random(test.n_rows)
    return grouped_ndcg(scores, test.label, test.group)


@pytest.fixture(scope="module")
def inter() -> tuple[RankingData, RankingData, RankingData]:
    return interaction_data(240, seed=1), interaction_data(80, seed=2), interaction_data(80, seed=3)


@pytest.fixture(scope="module")
def hist() -> tuple[RankingData, RankingData, RankingData]:
    return history_data(240, seed=1), history_data(80, seed=2), history_data(80, seed=3)


# ---------------------------------------------------------------------------- quality


@pytest.mark.parametrize("name", ["fm", "nfm", "deepfm", "lgbm"])
def test_feature_interactions_beat_linear_and_random(
    name: str, inter: tuple[RankingData, RankingData, RankingData]
) -> None:
    train, valid, test = inter
    model = create_ranker(name, **FAST[name]).fit(train, valid)
    ndcg = model.evaluate(test)
    linear, rand = linear_ndcg(train, test), random_ndcg(test)
    assert linear < 0.6 and rand < 0.35  # the data is built so additive models fail
    assert ndcg > linear + 0.15, (name, ndcg, linear)
    assert ndcg > rand + 0.35
    assert model.best_epoch >= 1 and model.best_score == pytest.approx(model.evaluate(valid))


def test_din_learns_from_history(hist: tuple[RankingData, RankingData, RankingData]) -> None:
    train, valid, test = hist
    din = DINRanker(**FAST["din"]).fit(train, valid)
    ndcg = din.evaluate(test)
    linear = linear_ndcg(train, test)
    fm = FMRanker(**FAST["fm"]).fit(train, valid).evaluate(test)  # no history input
    assert ndcg > linear + 0.4 and ndcg > fm + 0.4, (ndcg, linear, fm)
    # giving each group another group's history destroys the signal
    assert test.history is not None
    shuffled = RankingData(
        test.dense,
        test.group,
        test.label,
        item=test.item,
        history=np.roll(test.history, 1, axis=0),
        n_items=test.n_items,
    )
    assert din.evaluate(shuffled) < ndcg - 0.3


@pytest.mark.parametrize(
    ("objective", "pairwise_loss"),
    [
        ("pointwise", "bpr"),
        ("pairwise", "bpr"),
        ("pairwise", "ranknet"),
        ("pairwise", "lambda"),
        ("listwise", "bpr"),
    ],
)
def test_each_torch_objective_improves_ndcg(
    objective: str, pairwise_loss: str, inter: tuple[RankingData, RankingData, RankingData]
) -> None:
    train, valid, test = inter
    params = {"objective": objective, "pairwise_loss": pairwise_loss, "threads": 1}
    untrained = FMRanker(max_epochs=0, **params).fit(train).evaluate(test)
    model = FMRanker(max_epochs=12, **params).fit(train, valid)
    assert model.evaluate(test) > untrained + 0.3
    assert len(model.log) >= 1 and "loss" in model.log[0]


@pytest.mark.parametrize("objective", ["pointwise", "pairwise", "listwise", "xendcg"])
def test_each_lgbm_objective_improves_ndcg(
    objective: str, inter: tuple[RankingData, RankingData, RankingData]
) -> None:
    train, valid, test = inter
    model = LGBMRanker(objective=objective, n_estimators=120, threads=1).fit(train, valid)
    assert model.evaluate(test) > random_ndcg(test) + 0.3


def test_same_seed_same_predictions() -> None:
    train = interaction_data(30, size=10, seed=5)
    lgbm = {"n_estimators": 10, "bagging_fraction": 0.8, "bagging_freq": 1, "threads": 1}
    deepfm = {"max_epochs": 2, "dropout": 0.2}  # default threads (2)
    for name, params in [("deepfm", deepfm), ("lgbm", lgbm)]:
        a = create_ranker(name, **params).fit(train).predict(train)
        b = create_ranker(name, **params).fit(train).predict(train)
        c = create_ranker(name, seed=7, **params).fit(train).predict(train)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
        assert a.dtype == np.float32 and a.shape == (train.n_rows,)


# ---------------------------------------------------------------------------- artifacts


@pytest.mark.parametrize("name", sorted(RANKERS))
def test_save_load_gives_identical_predictions(
    name: str,
    tmp_path: Path,
    inter: tuple[RankingData, RankingData, RankingData],
    hist: tuple[RankingData, RankingData, RankingData],
) -> None:
    train, valid, test = hist if name == "din" else inter
    short = {"n_estimators": 20} if name == "lgbm" else {"max_epochs": 2}
    model = create_ranker(name, **FAST[name], **short).fit(train.subset(np.arange(60)), valid)
    before = model.predict(test)
    path = model.save(tmp_path / name)
    assert sorted(p.name for p in path.iterdir()) == sorted(
        ["manifest.json", "state.safetensors"] + (["model.txt"] if name == "lgbm" else [])
    )
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["ranker"] == name and manifest["config"]["threads"] == 1
    assert manifest["features"]["n_dense"] == train.n_dense
    for loaded in (Ranker.load(path), type(model).load(path)):
        assert type(loaded) is type(model)
        np.testing.assert_array_equal(loaded.predict(test), before)
        np.testing.assert_array_equal(loaded.mean, model.mean)


def test_load_rejects_missing_wrong_and_corrupt_artifacts(
    tmp_path: Path, inter: tuple[RankingData, RankingData, RankingData]
) -> None:
    with pytest.raises(ArtifactError, match="not a recsage ranker"):
        Ranker.load(tmp_path / "nothing")
    path = (
        FMRanker(max_epochs=1, threads=1).fit(inter[0].subset(np.arange(20))).save(tmp_path / "m")
    )
    with pytest.raises(ArtifactError, match="holds a 'fm' ranker"):
        LGBMRanker.load(path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["config"]["embed_dim"] = 4
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="weights do not match"):
        Ranker.load(path)
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="unreadable manifest"):
        Ranker.load(path)


# ---------------------------------------------------------------------------- data + errors


def test_ranking_data_helpers() -> None:
    data = history_data(5, size=3, length=4)
    assert data.group_bounds().tolist() == [0, 3, 6, 9, 12, 15]
    assert data.row_group().tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    sub = data.subset(np.array([False, True, False, True, False]))
    assert sub.n_groups == 2 and sub.n_rows == 6
    assert data.history is not None and sub.history is not None
    np.testing.assert_array_equal(sub.history, data.history[[1, 3]])
    np.testing.assert_array_equal(sub.dense, data.dense[3:6].tolist() + data.dense[9:12].tolist())
    assert data.subset(np.array([4])).group.tolist() == [4, 4, 4]
    empty = RankingData(np.zeros((4, 0)), np.array([0, 0, 1, 1]))
    assert empty.categorical.shape == (4, 0) and empty.n_groups == 2


def test_invalid_ranking_data_is_rejected() -> None:
    dense = np.zeros((4, 2), np.float32)
    group = np.array([0, 0, 1, 1])
    with pytest.raises(DataError, match="contiguous"):
        RankingData(dense, np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="dense must be 2-d"):
        RankingData(np.zeros(4), group)
    with pytest.raises(DataError, match=r"label must have shape \(n_rows=4,\)"):
        RankingData(dense, group, np.zeros(3))
    with pytest.raises(DataError, match="cardinalities has 1 entries for 2"):
        RankingData(dense, group, categorical=np.zeros((4, 2)), cardinalities=(3,))
    with pytest.raises(DataError, match=r"categorical column 0 has codes in \[0, 3\]"):
        RankingData(dense, group, categorical=np.array([[0], [1], [2], [3]]), cardinalities=(3,))
    with pytest.raises(DataError, match="n_items"):
        RankingData(dense, group, item=np.zeros(4))
    with pytest.raises(DataError, match=r"history must have shape \(n_groups=2, L\)"):
        RankingData(dense, group, item=np.zeros(4), history=np.zeros((3, 2)), n_items=5)
    with pytest.raises(DataError, match="dense column 1 has 1 non-finite"):
        RankingData(np.array([[0, 0], [0, np.nan], [0, 0], [0, 0]]), group)
    with pytest.raises(DataError, match="label must be finite and >= 0"):
        RankingData(dense, group, np.array([0, 1, -1, 0]))


def test_invalid_config_is_rejected() -> None:
    with pytest.raises(ConfigError, match="objective must be one of"):
        FMRanker(objective="nonsense")
    with pytest.raises(ConfigError, match="objective must be one of"):
        LGBMRanker(objective="nonsense")
    with pytest.raises(ConfigError, match="pairwise_loss"):
        create_ranker("nfm", pairwise_loss="hinge")
    with pytest.raises(ConfigError, match="unknown parameter"):
        create_ranker("deepfm", hiden=(8,))
    with pytest.raises(ConfigError, match="unknown ranker 'xgb'"):
        create_ranker("xgb")
    assert create_ranker("nfm", hidden="16,8").config.hidden == (16, 8)


def test_invalid_fit_and_predict_inputs_are_rejected(
    inter: tuple[RankingData, RankingData, RankingData],
) -> None:
    train = inter[0].subset(np.arange(20))
    with pytest.raises(RecsageError, match="not fitted"):
        FMRanker().predict(train)
    unlabelled = RankingData(
        train.dense, train.group, categorical=train.categorical, cardinalities=train.cardinalities
    )
    with pytest.raises(DataError, match="needs labels"):
        FMRanker().fit(unlabelled)
    assert train.label is not None
    graded = RankingData(train.dense, train.group, train.label * 2)
    with pytest.raises(DataError, match="pointwise objective needs labels in"):
        FMRanker(objective="pointwise").fit(graded)
    with pytest.raises(DataError, match="integer relevance grades"):
        LGBMRanker().fit(RankingData(train.dense, train.group, train.label * 0.5))
    with pytest.raises(DataError, match="din: the data needs `item`"):
        DINRanker().fit(train)
    model = FMRanker(max_epochs=1, threads=1).fit(train)
    narrow = RankingData(
        train.dense[:, :2],
        train.group,
        categorical=train.categorical,
        cardinalities=train.cardinalities,
    )
    with pytest.raises(DataError, match="data has 2 dense column"):
        model.predict(narrow)
    no_item = RankingData(
        train.dense, train.group, categorical=train.categorical, cardinalities=train.cardinalities
    )
    with pytest.raises(DataError, match="needs `item`"):
        model.predict(no_item)
    with pytest.raises(DataError, match="validation data needs labels"):
        FMRanker(threads=1).fit(train, unlabelled_with_item(train))


def unlabelled_with_item(data: RankingData) -> RankingData:
    return RankingData(
        data.dense,
        data.group,
        categorical=data.categorical,
        cardinalities=data.cardinalities,
        item=data.item,
        n_items=data.n_items,
    )
