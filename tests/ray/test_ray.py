"""Ray executor, embedding job and tuning: the same answers as the local paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recsage.data.splits import leave_one_out
from recsage.data.synth import SynthConfig, generate
from recsage.errors import RecsageError
from recsage.evaluation.protocol import evaluate
from recsage.evaluation.sharded import evaluate_sharded
from recsage.executor import RayExecutor
from recsage.models.baselines import ALS, ItemKNN
from recsage.pipeline.batch import write_recommendations


@pytest.fixture(scope="module")
def data():
    return generate(SynthConfig(users=900, items=200, events=12_000, seed=5))


def _fail(shared, shard):
    raise RecsageError(f"bad shard {shard}")


def test_ray_matches_local_for_evaluate_and_recommend_all(ray_session, data, tmp_path):
    ex = RayExecutor(workers=2)
    assert ex.workers == 2
    split = leave_one_out(data).test
    for model in (ItemKNN().fit(split.train), ALS(iterations=3).fit(split.train)):
        local = evaluate(model, split, batch_size=100)
        remote = evaluate_sharded(model, split, batch_size=100, shard_batches=2, executor=ex)
        assert remote.extra["executor"] == "ray" and remote.extra["shards"] == 5
        assert remote.metrics == local.metrics
        pd.testing.assert_frame_equal(remote.per_user, local.per_user)
    local_sum = write_recommendations(model, tmp_path / "l.parquet", n=10, shard_size=250)
    ray_sum = write_recommendations(model, tmp_path / "r.parquet", n=10, shard_size=250,
                                    executor=ex)  # fmt: skip
    assert (local_sum.users, ray_sum.users, ray_sum.executor) == (900, 900, "ray")
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "l.parquet"), pd.read_parquet(tmp_path / "r.parquet")
    )
    with pytest.raises(RecsageError, match=r"bad shard \(0, 1\)"):
        ex.map(_fail, [(0, 1)], shared=None)  # the worker's own error reaches the caller


def test_ray_data_embedding_job_fills_the_local_cache(ray_session, tmp_path):
    from recsage.encoders.distributed import encode_items_ray
    from recsage.encoders.text import TextEncoder

    texts = [f"A quiet {g} story about the river, number {i}" for i, g in
             enumerate(["drama", "comedy", "western"] * 8)]  # fmt: skip
    texts.append(texts[0])  # a duplicate is encoded once
    enc = TextEncoder(cache_dir=tmp_path / "cache")
    enc.encode_items(texts[:4])  # already cached: the job must skip these
    vectors, stats = encode_items_ray(enc, texts, actors=1, batch_size=8)
    assert (stats.texts, stats.hits, stats.encoded) == (25, 5, 20)
    local = TextEncoder(cache_dir=tmp_path / "other").encode_items(texts)
    np.testing.assert_allclose(vectors, local, atol=1e-5)
    fresh = TextEncoder(cache_dir=tmp_path / "cache")  # a new process reads the same cache
    again = fresh.encode_items(texts)
    assert fresh.last_stats.misses == 0 and fresh.model_texts == 0
    assert np.array_equal(again, vectors)


def test_tune_runs_asha_on_validation_and_writes_the_best_spec(ray_session, data, tmp_path):
    import tomllib

    from recsage.evaluation.tune import (
        parse_space,
        run_trial,
        tune_data,
        tune_pipeline,
        write_tune_outputs,
    )

    spec = {
        "text": {"enabled": False},
        "merge": {"max_candidates": 100},
        "channels": [{"name": "ease", "kind": "model", "model": "ease", "n": 100}],
        "stages": [],
    }
    space = parse_space({"space": {"channels.ease.params.l2": {"loguniform": [0.5, 5000.0]}}})
    res = tune_pipeline(spec, data, space, trials=4, storage=tmp_path / "ray", seed=1)
    assert len(res.rows) == 4 and not any(r["error"] for r in res.rows)
    done = [r for r in res.rows if r["rungs"] == 3]
    assert res.best in done and res.best["ndcg@10"] == max(r["ndcg@10"] for r in done)
    for r in res.rows:  # a stopped trial was evaluated on fewer users
        assert (r["users"] < 900) == r["stopped_early"]
    # the reported number is reproducible outside Ray, on validation users only
    data_t = tune_data(data, seed=1)
    l2 = res.best["channels.ease.params.l2"]
    last = list(run_trial(spec, {"channels.ease.params.l2": l2}, data_t, (0.25, 0.5, 1.0)))
    assert last[-1] == (len(data_t.order), pytest.approx(res.best["ndcg@10"], abs=1e-12))
    from recsage.pipeline.pipeline import Pipeline

    pipe = Pipeline(res.best_spec).fit(data_t.train)
    full = evaluate(pipe.scorer(data_t.valid.train.sequences()), data_t.valid, ks=(10,))
    assert full.metrics["ndcg@10"] == pytest.approx(res.best["ndcg@10"], abs=1e-12)
    best_path, table = write_tune_outputs(res, tmp_path / "best.toml")
    written = tomllib.loads(Path(best_path).read_text())
    assert written["channels"][0]["params"]["l2"] == pytest.approx(l2)
    assert table.name == "best.trials.json"
