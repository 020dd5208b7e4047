"""`Pipeline.run_many` (one batch for many queries) and the service's micro-batcher give
exactly the lists `Pipeline.run` gives one query at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from recsage.errors import ConfigError
from recsage.pipeline.pipeline import Pipeline
from recsage.serving.batching import RecommendBatcher
from recsage.serving.runtime import ServedModel
from recsage.testing import tiny_dataset
from recsage.types import ItemFilter, Query

SPEC = {
    "text": {"enabled": False},
    "channels": [
        {"name": "ease", "kind": "model", "model": "ease", "n": 20, "params": {"l2": 10.0}},
        {"name": "cooc", "kind": "cooccurrence", "n": 10},
        {"name": "pop", "kind": "popularity", "n": 10},
    ],
    "stages": [
        {"name": "prerank", "kind": "rrf", "keep": 25},
        {"name": "rank", "kind": "learned", "learner": "lgbm", "objective": "listwise",
         "keep": 15},
        {"name": "rerank", "kind": "mmr", "lambda": 0.7, "keep": 10},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    return Pipeline(SPEC).fit(tiny_dataset(0))


def run_async(coro: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run in a fresh thread (another test may leave a loop running in this one)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def lists(recs: list[Any]) -> list[tuple[str, float, tuple[str, ...]]]:
    return [(r.item, round(r.score, 6), tuple(r.sources)) for r in recs]


def mixed_queries(pipe: Pipeline) -> list[Query]:
    assert pipe.users is not None and pipe.items is not None
    users = [str(u) for u in pipe.users.ids[:12]]
    first_topic = str(pipe.item_table["categories"].iloc[0][0])  # type: ignore[index]
    return [
        *[Query(user=u, n=5) for u in users[:6]],
        Query(user=users[6], n=8),  # another n: its own group
        Query(user=users[7], n=5, filters=ItemFilter(categories=[first_topic])),  # filtered
        Query(user="someone-new", n=5),  # a new visitor: the model-free fallback
        Query(history=[str(pipe.items.ids[3]), str(pipe.items.ids[4])], n=5),  # a history
        Query(user=users[8], n=5, exclude=[str(pipe.items.ids[0])]),
        *[Query(user=u, n=5) for u in users[9:]],
    ]


def test_run_many_gives_the_lists_run_gives(pipe: Pipeline) -> None:
    queries = mixed_queries(pipe)
    alone = [lists(pipe.run(q)) for q in queries]
    together = [lists(r) for r in pipe.run_many(queries)]
    assert together == alone
    assert [len(x) for x in together] == [q.n for q in queries]
    assert together[8][0][2] == ("fallback:popular",)
    with pytest.raises(ConfigError, match="n must be"):
        pipe.run_many([Query(user="1", n=0)])


def test_the_batcher_coalesces_concurrent_queries(pipe: Pipeline) -> None:
    served = ServedModel(pipe, "v1", {})
    batcher = RecommendBatcher(max_batch=4)
    queries = mixed_queries(pipe)
    calls: list[int] = []
    real = pipe.run_many

    def counted(qs: list[Query]) -> Any:
        calls.append(len(qs))
        return real(qs)

    async def main() -> list[Any]:
        return await asyncio.gather(*(batcher.run(served, q) for q in queries))

    pipe.run_many = counted  # type: ignore[method-assign]
    try:
        got = run_async(main())
    finally:
        del pipe.run_many
    assert [lists(r) for r in got] == [lists(pipe.run(q)) for q in queries]
    # 14 concurrent queries, at most 4 per batch: 4 batches, not 14 passes
    assert calls == [4, 4, 4, 2] and batcher.batches == 4 and batcher.largest == 4


def test_a_failing_batch_falls_back_to_one_query_at_a_time(pipe: Pipeline) -> None:
    served = ServedModel(pipe, "v1", {})
    batcher = RecommendBatcher(max_batch=8)
    good = Query(user=str(pipe.users.ids[0]), n=5)  # type: ignore[union-attr]
    bad = Query(history=["no-such-item"], n=5)

    async def main() -> list[Any]:
        return await asyncio.gather(
            batcher.run(served, good), batcher.run(served, bad), return_exceptions=True
        )

    ok, err = run_async(main())
    assert lists(ok) == lists(pipe.run(good))  # the good query still gets its list
    assert isinstance(err, Exception) and "no-such-item" in str(err)
    assert np.isfinite([r.score for r in ok]).all()
