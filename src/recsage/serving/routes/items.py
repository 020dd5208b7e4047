"""/v1/items: similar items and catalogue updates."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi import Query as QueryParam

from recsage.errors import RecsageError
from recsage.serving.deps import AdminKey, ReadKey, get_runtime, get_served
from recsage.serving.middleware import request_id_of
from recsage.serving.schemas import (
    ERROR_RESPONSES,
    ApiError,
    ItemsRequest,
    ItemsResponse,
    ScoredItem,
    SimilarResponse,
)
from recsage.types import Recommendation

# ---- similar / search / trending -------------------------------------------------------------
router = APIRouter()


def scored_items(recs: list[Recommendation]) -> list[ScoredItem]:
    """API items from the pipeline's list (non-finite scores reported as 0)."""
    return [
        ScoredItem(
            item_id=r.item,
            title=r.title,
            score=r.score if math.isfinite(r.score) else 0.0,
            rank=r.rank,
        )
        for r in recs
    ]


@router.get(
    "/v1/items/{item_id:path}/similar",  # `path`: ids may contain "/" (sent as %2F)
    response_model=SimilarResponse,
    responses=ERROR_RESPONSES,
    tags=["recommend"],
    summary="Items similar to one item (text vectors, else the model)",
)
async def similar(
    request: Request,
    item_id: Annotated[str, PathParam(min_length=1, max_length=256)],
    _: ReadKey,
    n: Annotated[int, QueryParam(ge=1, le=100)] = 10,
) -> SimilarResponse:
    sm = get_served(request)
    pipe = sm.pipeline
    with sm.lock.read():
        assert pipe.items is not None
        if item_id not in pipe.items:
            raise ApiError(404, "unknown_item", f"unknown item '{item_id}'")
        try:
            recs, method = pipe.similar(item_id, n)
        except RecsageError as exc:
            raise ApiError(409, "no_similarity", str(exc)) from None
        items = scored_items(recs)
    return SimilarResponse(
        request_id=request_id_of(request),
        model_version=sm.version,
        item_id=item_id,
        method=method,
        items=items,
    )


@router.post(
    "/v1/items",
    response_model=ItemsResponse,
    responses=ERROR_RESPONSES,
    tags=["admin"],
    summary="Add or update items (new items are recommendable at once via text vectors)",
)
def upsert_items(body: ItemsRequest, request: Request, _: AdminKey) -> ItemsResponse:
    rt = get_runtime(request)
    rows = [item.model_dump(exclude_unset=True) for item in body.items]
    added, updated = rt.upsert_items(rows)
    sm = rt.served()
    return ItemsResponse(
        request_id=request_id_of(request),
        added=added,
        updated=updated,
        text_vectors=sm.pipeline.resources.item_text_vectors is not None,
    )
