"""Sharded evaluation and batch recommendation give exactly the local results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsage.data.splits import cold_item_split, leave_one_out
from recsage.data.synth import SynthConfig, generate
from recsage.errors import ConfigError, DataError
from recsage.evaluation.protocol import evaluate
from recsage.evaluation.sharded import evaluate_sharded
from recsage.models.baselines import ALS, EASE, ItemKNN, Popularity
from recsage.pipeline.batch import read_users, recommend_all, write_recommendations
from recsage.pipeline.pipeline import Pipeline


@pytest.fixture(scope="module")
def data():
    return generate(SynthConfig(users=700, items=150, events=9000, seed=1))


@pytest.mark.parametrize("model_cls", [Popularity, ItemKNN, EASE, ALS])
def test_sharded_evaluation_equals_local(data, model_cls):
    split = leave_one_out(data).test
    model = model_cls().fit(split.train)
    local = evaluate(model, split, batch_size=64)
    sharded = evaluate_sharded(model, split, batch_size=64, shard_batches=3)
    assert sharded.extra["shards"] == 4  # 700 users / (3 x 64)
    assert sharded.metrics == local.metrics  # every digit, coverage/novelty/diversity too
    pd.testing.assert_frame_equal(sharded.per_user, local.per_user)
    assert {"coverage@10", "novelty@10", "diversity@10"} <= set(sharded.metrics)


def test_sharded_cold_item_split_keeps_the_candidate_set(data):
    split = cold_item_split(data)
    model = ItemKNN().fit(split.train)
    local = evaluate(model, split, batch_size=32)
    sharded = evaluate_sharded(model, split, batch_size=32, shard_batches=2)
    assert sharded.metrics == local.metrics
    assert sharded.protocol["ranked_items"] == len(split.candidates)


def test_coverage_is_over_all_shards_not_averaged(data):
    split = leave_one_out(data).test
    model = ItemKNN().fit(split.train)
    res = evaluate_sharded(model, split, batch_size=50, shard_batches=1)
    lists = np.concatenate([b.items for b in recommend_all(model, users=split.users, n=10)])
    # lists from recommend() exclude the same history, so coverage is their union
    assert res.metrics["coverage@10"] == len(np.unique(lists[lists >= 0])) / data.n_items


def test_sampled_negatives_are_refused(data):
    split = leave_one_out(data).test
    with pytest.raises(ConfigError, match="cannot be sharded"):
        evaluate_sharded(Popularity().fit(split.train), split, sampled_negatives=50)


def test_recommend_all_equals_per_user_recommend(data, tmp_path):
    model = EASE().fit(data)
    blocks = list(recommend_all(model, n=5, shard_size=300, batch_size=64))
    assert [len(b.users) for b in blocks] == [300, 300, 100]
    items = np.concatenate([b.items for b in blocks])
    one, _ = model.recommend(np.array([123]), 5)
    assert np.array_equal(items[123], one[0])
    summary = write_recommendations(model, tmp_path / "r.parquet", n=5, shard_size=300)
    frame = pd.read_parquet(tmp_path / "r.parquet")
    assert summary.rows == len(frame) == 700 * 5
    first = frame[frame["user"] == data.users.ids[123]]
    assert first["rank"].tolist() == [1, 2, 3, 4, 5]
    assert first["item"].tolist() == list(data.items.ids[one[0]])
    write_recommendations(model, tmp_path / "r.csv", n=5, shard_size=256)
    csv = pd.read_csv(tmp_path / "r.csv", dtype={"user": str, "item": str})
    pd.testing.assert_frame_equal(csv[["user", "rank", "item"]],
                                  frame[["user", "rank", "item"]], check_dtype=False)  # fmt: skip
    with pytest.raises(ConfigError, match=r"must end in \.parquet or \.csv"):
        write_recommendations(model, tmp_path / "r.json")


def test_recommend_all_for_a_pipeline_matches_run(data):
    spec = {
        "text": {"enabled": False},
        "channels": [
            {"name": "ease", "kind": "model", "model": "ease", "n": 30},
            {"name": "pop", "kind": "popularity", "n": 10},
        ],
        "stages": [{"name": "prerank", "kind": "rrf", "keep": 20}],
    }
    pipe = Pipeline(spec).fit(data)
    from recsage.pipeline.pipeline import Query

    blocks = list(recommend_all(pipe, users=np.array([5, 9]), n=7))
    for row, u in enumerate([5, 9]):
        expect = [r.item for r in pipe.run(Query(user=str(data.users.ids[u]), n=7))]
        assert list(data.items.ids[blocks[0].items[row]]) == expect


def test_read_users_names_the_bad_line(data, tmp_path):
    f = tmp_path / "users.txt"
    f.write_text("user_id\nu1\n\nu5\nnobody\n")
    with pytest.raises(DataError, match=r"users.txt, line 5: unknown user 'nobody'"):
        read_users(f, data.users)
    f.write_text("u1\nu5\n")
    assert read_users(f, data.users).tolist() == [data.users.index_of("u1"), 5]
