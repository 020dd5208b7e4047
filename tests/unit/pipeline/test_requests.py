"""The one request path: cold-start fallback, filters inside ranking, `n` beyond the last
stage's `keep`, similar items, search and reasons — the same calls the CLI and routes use."""

from __future__ import annotations

import numpy as np
import pytest

from recsage.data.sources.registry import load_dataset
from recsage.errors import RecsageError
from recsage.pipeline.pipeline import FALLBACK_SOURCE, Pipeline
from recsage.types import ItemFilter, Query

SPEC = {
    "text": {"enabled": False},
    "merge": {"max_candidates": 120},
    "channels": [
        {"name": "ease", "kind": "model", "model": "ease", "n": 100, "params": {"l2": 500.0}},
        {"name": "cooc", "kind": "cooccurrence", "n": 60},
    ],
    "stages": [
        {"name": "prerank", "kind": "rrf", "keep": 50},
        {"name": "rerank", "kind": "mmr", "lambda": 1.0, "keep": 20, "category_cap": 6},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def ml100k():
    return load_dataset("ml-100k")


@pytest.fixture(scope="module")
def pipe(ml100k) -> Pipeline:
    return Pipeline(SPEC).fit(ml100k)


def _popularity_order(pipe: Pipeline, ml100k, n: int) -> list[str]:
    # independent reference: raw counts over the channels' training data, ties by index
    counts = np.bincount(ml100k.interactions.item, minlength=ml100k.n_items)
    fit_counts = np.expm1(pipe.stats.log_popularity).round().astype(np.int64)
    assert (fit_counts <= counts).all() and fit_counts.sum() > 0.9 * counts.sum()
    order = np.lexsort((np.arange(len(fit_counts)), -fit_counts))[:n]
    return list(ml100k.items.decode(order))


def test_new_visitor_gets_popularity_labelled_as_fallback(pipe, ml100k) -> None:
    for query in (Query(n=10), Query(user="never-seen", n=10), Query(history=[], n=10)):
        recs = pipe.run(query)
        assert [r.item for r in recs] == _popularity_order(pipe, ml100k, 10)
        assert all(r.sources == [FALLBACK_SOURCE] for r in recs)
        assert [r.rank for r in recs] == list(range(1, 11))
    assert "popular" in pipe.reasons([FALLBACK_SOURCE])[0]


def test_known_user_is_not_a_fallback(pipe) -> None:
    recs = pipe.run(Query(user="1", n=10))
    assert all(FALLBACK_SOURCE not in r.sources for r in recs)
    assert pipe.reasons(recs[0].sources)[0].startswith(("scored high", "often chosen"))


def test_n_is_not_capped_by_the_last_stage(pipe) -> None:
    recs = pipe.run(Query(user="1", n=200))
    assert len(recs) == 200 and len({r.item for r in recs}) == 200
    seen = set(pipe.items.decode(pipe.history_of("1")))
    assert not seen & {r.item for r in recs}
    # beyond what the channels found, the list is filled (and labelled) from popularity
    assert any(r.sources == [FALLBACK_SOURCE] for r in recs[120:])


def test_filters_hold_without_losing_n(pipe, ml100k) -> None:
    table = ml100k.item_table
    flt = ItemFilter(categories=["Horror"], min_year=1990, max_year=1995, exclude=["219"])
    recs = pipe.run(Query(user="42", n=15, filters=flt))
    assert len(recs) == 15
    for r in recs:
        row = table.iloc[ml100k.items.index_of(r.item)]
        assert "Horror" in row["categories"] and 1990 <= row["year"] <= 1995
        assert r.item != "219"
    allowed = {
        ml100k.items.ids[i]
        for i in range(ml100k.n_items)
        if "Horror" in table.iloc[i]["categories"] and 1990 <= (table.iloc[i]["year"] or 0) <= 1995
    }
    assert {r.item for r in recs} <= allowed


def test_similar_items_from_the_model_without_text(pipe) -> None:
    recs, method = pipe.similar("50", n=5)
    assert method == "model:ease" and len(recs) == 5 and "50" not in {r.item for r in recs}
    scores = [r.score for r in recs]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(RecsageError, match="unknown item"):
        pipe.similar("no-such-item")


def test_search_needs_text_vectors(pipe) -> None:
    with pytest.raises(RecsageError, match="without item text vectors"):
        pipe.search("space adventure")
