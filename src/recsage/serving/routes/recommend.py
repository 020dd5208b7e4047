"""/v1/recommend and /v1/trending."""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
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
from recsage.types import ItemFilter
from recsage.types import Query as PipelineQuery

router = APIRouter()


# recommend, similar and trending are `async` on purpose: they are short CPU-bound calls
# (~1-7 ms) that hold the GIL anyway, so running them on the event loop avoids a thread-pool
# hop and GIL hand-offs between threads (which tripled p50 latency in service_load.py);
# concurrent recommend calls are batched there too (serving/batching.py).
# Search (text encoder), feedback and item updates (store commits) stay in the thread pool.
def reasons(pipe: Pipeline, sources: list[str]) -> list[Reason]:
    """The pipeline's reason per source, as API objects."""
    return [
        Reason(kind="channel", channel=s, detail=text)
        for s, text in zip(sources, pipe.reasons(sources), strict=True)
    ]


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
    f = body.filters
    filters = ItemFilter(f.categories, f.min_year, f.max_year, list(f.exclude_items)) if f else None
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
    query = PipelineQuery(
        user=body.user_id if known_user else None,
        history=history,
        text=body.query,
        n=body.n,
        filters=filters,
    )
    # concurrent requests share one pass through the pipeline (serving/batching.py)
    recs = await request.app.state.batcher.run(sm, query)
    items = [
        RecommendedItem(
            item_id=r.item,
            title=r.title,
            score=r.score if math.isfinite(r.score) else 0.0,
            rank=r.rank,
            sources=r.sources,
            reasons=reasons(pipe, r.sources),
        )
        for r in recs
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
            pipe.as_recommendations(
                np.array([i for i, _ in keep], np.int64),
                np.array([s for _, s in keep], np.float64),
                ["trending"],
            )
        )
    return TrendingResponse(items=items)
