"""/v1/feedback: durable events and live updates."""

from __future__ import annotations

import time

import numpy as np
from fastapi import APIRouter, Request

from recsage.feedback.store import Event
from recsage.serving.deps import FeedbackKey, get_runtime, get_served
from recsage.serving.middleware import Metrics, request_id_of
from recsage.serving.schemas import (
    ERROR_RESPONSES,
    ApiError,
    FeedbackRequest,
    FeedbackResponse,
)

# ---- feedback and items ----------------------------------------------------------------------
router = APIRouter()


@router.post(
    "/v1/feedback",
    response_model=FeedbackResponse,
    responses=ERROR_RESPONSES,
    tags=["feedback"],
    summary="Store feedback events durably, then update users at once",
)
def feedback(body: FeedbackRequest, request: Request, _: FeedbackKey) -> FeedbackResponse:
    rt = get_runtime(request)
    limit = rt.settings.max_events_per_request
    if len(body.events) > limit:
        raise ApiError(
            413,
            "too_many_events",
            f"{len(body.events)} events in one request; the limit is {limit} (split the batch)",
        )
    sm = get_served(request)
    assert sm.pipeline.items is not None
    idx = sm.pipeline.items.lookup([e.item_id for e in body.events])
    bad = np.flatnonzero(idx < 0)
    if len(bad):
        j = int(bad[0])
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ApiError(
            422,
            "unknown_item",
            f"events[{j}].item_id '{body.events[j].item_id}' is not in the catalogue{more}; "
            "add items with POST /v1/items first. Nothing from this request was stored.",
        )
    now = time.time()
    events = [
        Event(
            event_id=e.event_id,
            user_id=e.user_id,
            item_id=e.item_id,
            type=e.type,
            ts=t if (t := e.unix_time()) is not None else now,
            value=e.value,
            request_id=e.request_id,
            position=e.position,
            received_at=now,
        )
        for e in body.events
    ]
    new, applied = rt.ingest(events)
    metrics: Metrics = request.app.state.metrics
    for e in new:
        metrics.events.labels(e.type).inc()
    metrics.duplicates.inc(len(events) - len(new))
    metrics.online_updates.inc(applied)
    return FeedbackResponse(
        request_id=request_id_of(request),
        accepted=len(new),
        duplicates=len(events) - len(new),
        online_updates=applied,
    )
