"""/v1/search: natural-language search."""

from __future__ import annotations

from fastapi import APIRouter, Request

from recsage.serving.deps import ReadKey, get_served
from recsage.serving.middleware import request_id_of
from recsage.serving.routes.items import scored_items
from recsage.serving.schemas import (
    ERROR_RESPONSES,
    ApiError,
    SearchRequest,
    SearchResponse,
)

router = APIRouter()


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    responses=ERROR_RESPONSES,
    tags=["recommend"],
    summary="Natural-language search, personalised when user_id is given",
)
def search(body: SearchRequest, request: Request, _: ReadKey) -> SearchResponse:
    sm = get_served(request)
    pipe = sm.pipeline
    with sm.lock.read():
        if pipe.resources.item_text_vectors is None or pipe.resources.text_encoder is None:
            raise ApiError(
                409,
                "text_disabled",
                "the served model was trained without item text vectors; "
                "enable [text] in its pipeline spec to use search",
            )
        history = pipe.history_of(body.user_id)
        recs = pipe.search(
            body.query,
            user=body.user_id,
            n=body.n,
            personal_weight=body.personal_weight,
            exclude_history=body.exclude_history,
        )
        items = scored_items(recs)
    return SearchResponse(
        request_id=request_id_of(request),
        model_version=sm.version,
        query=body.query,
        personalised=history is not None and len(history) > 0,
        items=items,
    )
