"""/v1/recommend and /v1/trending."""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
import pandas as pd
from fastapi import APIRouter, Request
from fastapi import Query as QueryParam

from recsage.pipeline.pipeline import Pipeline
from recsage.serving.deps import ReadKey, get_runtime, get_served
from recsage.serving.middleware import request_id_of
from recsage.serving.routes.items import scored_items
from recsage.serving.schemas import (
    ERROR_RESPONSES,
    ApiError,
    Reason,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    TrendingResponse,
)
from recsage.types import Query as PipelineQuery

router = APIRouter()


CHANNEL_REASONS = {
    "model": "scored high by the {name} model given your history",
    "popularity": "popular with everyone",
    "cooccurrence": "often chosen right after items in your history",
    "text": "similar in description to what you chose recently",
    "topic": "shares topics with your history",
    "query": "matches your query",
}


# ---- recommend -------------------------------------------------------------------------------
# recommend, similar and trending are `async` on purpose: they are short CPU-bound calls
# (~1-2 ms) that hold the GIL anyway, so running them on the event loop avoids a thread-pool
# hop and GIL hand-offs between threads (which tripled p50 latency in service_load.py).
# Search (text encoder), feedback and item updates (store commits) stay in the thread pool.
def _reasons(pipe: Pipeline, sources: list[str]) -> list[Reason]:
    kinds = {c.name: c for c in pipe.channels}
    out = []
    for s in sources:
        ch = kinds.get(s)
        text = CHANNEL_REASONS.get(ch.kind, "found by the {name} channel") if ch else "{name}"
        out.append(Reason(kind="channel", channel=s, detail=text.format(name=s)))
    return out


def _passes(pipe: Pipeline, index: int, req: RecommendRequest) -> bool:
    f = req.filters
    table = pipe.item_table
    if f is None or table is None:
        return True
    if f.categories is not None:
        cats = table["categories"].iloc[index] if "categories" in table.columns else None
        have = set(cats) if isinstance(cats, list | tuple | np.ndarray) else set()
        if not have & set(f.categories):
            return False
    if f.min_year is not None or f.max_year is not None:
        year = table["year"].iloc[index] if "year" in table.columns else None
        if year is None or pd.isna(year):
            return False
        if f.min_year is not None and int(year) < f.min_year:
            return False
        if f.max_year is not None and int(year) > f.max_year:
            return False
    return True


@router.post(
    "/v1/recommend",
    response_model=RecommendResponse,
    responses=ERROR_RESPONSES,
    tags=["recommend"],
    summary="Top-n items for a user and/or a history",
)
async def recommend(body: RecommendRequest, request: Request, _: ReadKey) -> RecommendResponse:
    sm = get_served(request)
    pipe = sm.pipeline
    filtered = body.filters is not None and (
        body.filters.categories is not None
        or body.filters.min_year is not None
        or body.filters.max_year is not None
    )
    with sm.lock.read():
        assert pipe.items is not None and pipe.users is not None
        history = body.history
        if history is not None:
            idx = pipe.items.lookup(history)
            if (idx < 0).any():
                j = int(np.flatnonzero(idx < 0)[0])
                raise ApiError(422, "unknown_item", f"history[{j}]: unknown item '{history[j]}'")
        known_user = body.user_id is not None and body.user_id in pipe.users
        cold = history is None and not known_user
        if cold:
            history = []
        query = PipelineQuery(
            user=body.user_id if known_user else None,
            history=history,
            text=body.query,
            n=10_000 if filtered else body.n,
            exclude=body.filters.exclude_items if body.filters else [],
        )
        recs = pipe.run(query)
        if filtered:
            keep_idx = pipe.items.lookup([r.item for r in recs])
            recs = [r for r, i in zip(recs, keep_idx, strict=True) if _passes(pipe, int(i), body)]
        items = [
            RecommendedItem(
                item_id=r.item,
                title=r.title,
                score=r.score if math.isfinite(r.score) else 0.0,
                rank=rank,
                sources=r.sources,
                reasons=_reasons(pipe, r.sources),
            )
            for rank, r in enumerate(recs[: body.n], start=1)
        ]
    return RecommendResponse(
        request_id=request_id_of(request),
        model_version=sm.version,
        user_id=body.user_id,
        cold_start=cold,
        items=items,
    )


@router.get(
    "/v1/trending",
    response_model=TrendingResponse,
    responses=ERROR_RESPONSES,
    tags=["recommend"],
    summary="Items with the most recent interactions (decayed counts)",
)
async def trending(
    request: Request, _: ReadKey, n: Annotated[int, QueryParam(ge=1, le=100)] = 10
) -> TrendingResponse:
    rt = get_runtime(request)
    sm = get_served(request)
    pipe = sm.pipeline
    with sm.lock.read():
        assert pipe.items is not None
        top = rt.trending.top(n * 2)
        idx = pipe.items.lookup([k for k, _ in top]) if top else np.zeros(0, np.int64)
        keep = [(int(i), s) for i, (_, s) in zip(idx, top, strict=True) if i >= 0][:n]
        items = scored_items(
            pipe, np.array([i for i, _ in keep], np.int64), np.array([s for _, s in keep])
        )
    return TrendingResponse(items=items)
