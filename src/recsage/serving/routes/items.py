"""/v1/items: similar items and catalogue updates."""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi import Query as QueryParam

from recsage.pipeline.pipeline import Pipeline
from recsage.retrieval.channels.model import ModelChannel
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
from recsage.types import QueryBatch, top_k

# ---- similar / search / trending -------------------------------------------------------------
router = APIRouter()


def scored_items(pipe: Pipeline, items: np.ndarray, scores: np.ndarray) -> list[ScoredItem]:
    assert pipe.items is not None
    titles = pipe.item_titles()
    ids = pipe.items.ids
    return [
        ScoredItem(
            item_id=str(ids[i]),
            title=str(titles[i]),
            score=float(s) if math.isfinite(float(s)) else 0.0,
            rank=r,
        )
        for r, (i, s) in enumerate(zip(items.tolist(), scores.tolist(), strict=True), start=1)
    ]


@router.get(
    "/v1/items/{item_id}/similar",
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
        i = int(pipe.items.lookup([item_id])[0])
        if i < 0:
            raise ApiError(404, "unknown_item", f"unknown item '{item_id}'")
        vectors = pipe.resources.item_text_vectors
        if vectors is not None:
            scores = (vectors @ vectors[i]).astype(np.float32)
            method = "text"
        else:
            channel = next((c for c in pipe.channels if isinstance(c, ModelChannel)), None)
            if channel is None:
                raise ApiError(
                    409,
                    "no_similarity",
                    "the served model has no text vectors and no model "
                    "channel to compare items with",
                )
            if i >= channel.n_items_fitted:
                raise ApiError(
                    409,
                    "no_similarity",
                    f"item '{item_id}' was added after training and the "
                    "model has no text vectors; retrain to include it",
                )
            batch = QueryBatch(np.array([-1]), [np.array([i])], channel.n_items_fitted)
            fitted = channel.scores(batch)[0]
            scores = np.full(pipe.n_items, -np.inf, np.float32)
            scores[: len(fitted)] = fitted
            method = f"model:{channel.name}"
        eligible = np.isfinite(scores)
        eligible[i] = False
        top = top_k(scores[None, :], eligible[None, :], n)[0]
        top = top[top >= 0]
        items = scored_items(pipe, top, scores[top])
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
