"""`create_app(settings)`: the recsage HTTP service (FastAPI).

Routes: recommend, similar items, search, trending, feedback, item updates, admin reload,
health/readiness/version and Prometheus metrics; OpenAPI at /openapi.json. Every error is
`{"error": {"code", "message"}}`; unexpected failures answer 500 with a request id and are
logged with their traceback, never returned.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi import Path as PathParam
from fastapi import Query as QueryParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRouter
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsage import __version__
from recsage.errors import RecsageError
from recsage.evaluation.metrics import top_k
from recsage.pipeline.channels import ModelChannel, QueryBatch
from recsage.pipeline.pipeline import Pipeline
from recsage.pipeline.pipeline import Query as PipelineQuery
from recsage.serving.auth import Principal
from recsage.serving.runtime import Runtime, ServedModel
from recsage.serving.schemas import (
    ERROR_RESPONSES,
    ApiError,
    ChatRequest,
    ChatResponse,
    ErrorBody,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    ItemsRequest,
    ItemsResponse,
    ReadyResponse,
    Reason,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    ReloadResponse,
    ScoredItem,
    SearchRequest,
    SearchResponse,
    SimilarResponse,
    TrendingResponse,
    VersionResponse,
)
from recsage.serving.settings import Settings
from recsage.serving.store import Event, FeedbackStore, StoreError
from recsage.serving.ui import ui_router

log = logging.getLogger("recsage.serving")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}

CHANNEL_REASONS = {
    "model": "scored high by the {name} model given your history",
    "popularity": "popular with everyone",
    "cooccurrence": "often chosen right after items in your history",
    "text": "similar in description to what you chose recently",
    "topic": "shares topics with your history",
    "query": "matches your query",
}


# ---- metrics ---------------------------------------------------------------------------------
class Metrics:
    """Prometheus metrics of one app (own registry, so several apps can live in a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "recsage_http_requests",
            "HTTP requests by route and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "recsage_http_request_duration_seconds",
            "HTTP request latency by route",
            ["route"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.events = Counter(
            "recsage_feedback_events", "Feedback events stored, by type", ["type"], registry=r
        )
        self.duplicates = Counter(
            "recsage_feedback_duplicates", "Feedback events ignored as duplicates", registry=r
        )
        self.online_updates = Counter(
            "recsage_online_updates", "Events applied to user histories at once", registry=r
        )
        self.model = Gauge(
            "recsage_model_info", "The served model version (value 1)", ["version"], registry=r
        )

    def set_model(self, version: str) -> None:
        self.model.clear()
        self.model.labels(version=version).set(1)


# ---- errors ----------------------------------------------------------------------------------
def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def error_response(
    status: int,
    code: str,
    message: str,
    *,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if request_id:
        body["request_id"] = request_id
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status, exc.code, exc.message, request_id=_request_id(request), headers=exc.headers
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = STATUS_CODES.get(exc.status_code, "error")
    message = str(exc.detail) if exc.detail else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}; see /openapi.json"
    return error_response(
        exc.status_code,
        code,
        message,
        request_id=_request_id(request),
        headers=getattr(exc, "headers", None),
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        {"loc": _loc(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")}
        for e in exc.errors()[:20]
    ]
    summary = "; ".join(f"{d['loc']}: {d['msg']}" for d in details[:3])
    return error_response(
        422,
        "invalid_request",
        f"invalid request: {summary}",
        request_id=_request_id(request),
        details=details,
    )


async def _recsage_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, StoreError):
        log.error("store error: %s", exc)
        return error_response(
            503,
            "store_unavailable",
            "the feedback store is unavailable; retry later",
            request_id=_request_id(request),
            headers={"Retry-After": "1"},
        )
    return error_response(422, "bad_request", str(exc), request_id=_request_id(request))


# ---- middleware ------------------------------------------------------------------------------
class ServiceMiddleware:
    """Request ids, body size limit (413), per-route metrics and the catch-all 500."""

    def __init__(self, app: ASGIApp, *, max_body: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        t0 = time.perf_counter()
        status = 500
        started = False
        rid_header = (b"x-request-id", rid.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                started = True
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        received = 0

        async def receive_wrapper() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise HTTPException(413, f"request body exceeds {self.max_body} bytes")
            return message

        try:
            length = dict(scope.get("headers", [])).get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                resp = error_response(
                    413 if length.isdigit() else 400,
                    "payload_too_large" if length.isdigit() else "bad_request",
                    f"request body exceeds {self.max_body} bytes"
                    if length.isdigit()
                    else "invalid Content-Length header",
                    request_id=rid,
                )
                await resp(scope, receive, send_wrapper)
            else:
                await self.app(scope, receive_wrapper, send_wrapper)
        except Exception:
            log.exception(
                "unhandled error (request %s %s %s)", rid, scope.get("method"), scope.get("path")
            )
            if not started:
                resp = error_response(
                    500,
                    "internal_error",
                    f"internal error; quote request id {rid} when reporting it",
                    request_id=rid,
                )
                await resp(scope, receive, send_wrapper)
            status = 500
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(scope.get("method", ""), path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.perf_counter() - t0)


# ---- dependencies ----------------------------------------------------------------------------
bearer = HTTPBearer(
    auto_error=False, description="API key from `recsage keys add NAME --scopes ...`"
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def _runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def require(scope: str) -> Callable[..., Awaitable[Principal | None]]:
    """A dependency that checks the bearer key, its scope and its rate limit."""

    async def check(request: Request, credentials: Credentials) -> Principal | None:
        rt = _runtime(request)
        if not rt.settings.auth_required:
            return None
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None:
            raise ApiError(
                401,
                "unauthorized",
                "missing API key: send 'Authorization: Bearer <key>' "
                "(create one with `recsage keys add NAME --scopes read`)",
                headers=challenge,
            )
        principal = rt.keyring.verify(credentials.credentials)
        if principal is None:
            raise ApiError(401, "invalid_key", "unknown or revoked API key", headers=challenge)
        if not principal.allows(scope):
            raise ApiError(
                403,
                "forbidden",
                f"key '{principal.name}' lacks the '{scope}' scope this route needs",
            )
        ok, wait = rt.limiter.allow(principal.name)
        if not ok:
            raise ApiError(
                429,
                "rate_limited",
                f"rate limit of {rt.settings.rate_limit:g} requests/s "
                f"exceeded for key '{principal.name}'",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        return principal

    return check


ReadKey = Annotated[Principal | None, Depends(require("read"))]
FeedbackKey = Annotated[Principal | None, Depends(require("feedback"))]
AdminKey = Annotated[Principal | None, Depends(require("admin"))]

router = APIRouter()


def _served(request: Request) -> ServedModel:
    try:
        return _runtime(request).served()
    except RecsageError:
        raise ApiError(409, "no_model", "no model is loaded yet") from None


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
    sm = _served(request)
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
        request_id=_request_id(request),
        model_version=sm.version,
        user_id=body.user_id,
        cold_start=cold,
        items=items,
    )


# ---- similar / search / trending -------------------------------------------------------------
def _scored(pipe: Pipeline, items: np.ndarray, scores: np.ndarray) -> list[ScoredItem]:
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
    sm = _served(request)
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
        items = _scored(pipe, top, scores[top])
    return SimilarResponse(
        request_id=_request_id(request),
        model_version=sm.version,
        item_id=item_id,
        method=method,
        items=items,
    )


@router.post(
    "/v1/search",
    response_model=SearchResponse,
    responses=ERROR_RESPONSES,
    tags=["recommend"],
    summary="Natural-language search, personalised when user_id is given",
)
def search(body: SearchRequest, request: Request, _: ReadKey) -> SearchResponse:
    from recsage.retrieval.search import semantic_search

    sm = _served(request)
    pipe = sm.pipeline
    with sm.lock.read():
        vectors, encoder = pipe.resources.item_text_vectors, pipe.resources.text_encoder
        if vectors is None or encoder is None:
            raise ApiError(
                409,
                "text_disabled",
                "the served model was trained without item text vectors; "
                "enable [text] in its pipeline spec to use search",
            )
        assert pipe.users is not None
        history = None
        if body.user_id is not None and body.user_id in pipe.users:
            history = pipe.sequences[pipe.users.index_of(body.user_id)]
        found, scores = semantic_search(
            body.query,
            vectors,
            encoder,
            k=body.n,
            user_history=history,
            personal_weight=body.personal_weight,
            exclude_history=body.exclude_history,
        )
        items = _scored(pipe, found, scores)
    return SearchResponse(
        request_id=_request_id(request),
        model_version=sm.version,
        query=body.query,
        personalised=history is not None and len(history) > 0,
        items=items,
    )


MAX_CHAT_SESSIONS = 1000


@router.post(
    "/v1/chat",
    response_model=ChatResponse,
    responses=ERROR_RESPONSES,
    tags=["recommend"],
    summary="One conversational turn (state kept per session_id; rules + embeddings)",
)
def chat(body: ChatRequest, request: Request, _: ReadKey) -> ChatResponse:
    from collections import OrderedDict

    from recsage.llm.conversation import Catalogue, ConversationSession

    sm = _served(request)
    pipe = sm.pipeline
    sessions: OrderedDict[tuple[str, str], Any] = request.app.state.__dict__.setdefault(
        "chat_sessions", OrderedDict()
    )
    key = (sm.version, body.session_id)
    with sm.lock.read():
        if pipe.resources.item_text_vectors is None or pipe.resources.text_encoder is None:
            raise ApiError(
                409, "text_disabled", "chat needs a model trained with item text vectors"
            )
        session = sessions.get(key)
        if session is None:
            assert pipe.users is not None
            history = None
            if body.user_id is not None and body.user_id in pipe.users:
                history = pipe.sequences[pipe.users.index_of(body.user_id)]
            session = ConversationSession(Catalogue.from_pipeline(pipe), history=history, n=body.n)
            sessions[key] = session
            while len(sessions) > MAX_CHAT_SESSIONS:
                sessions.popitem(last=False)
        sessions.move_to_end(key)
        session.n = body.n
        turn = session.turn(body.message)
        items = [
            ScoredItem(item_id=r.item, title=r.title, score=float(r.score), rank=r.rank)
            for r in turn.recommendations
        ]
    return ChatResponse(
        request_id=_request_id(request),
        model_version=sm.version,
        session_id=body.session_id,
        understood=turn.understood,
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
    rt = _runtime(request)
    sm = _served(request)
    pipe = sm.pipeline
    with sm.lock.read():
        assert pipe.items is not None
        top = rt.trending.top(n * 2)
        idx = pipe.items.lookup([k for k, _ in top]) if top else np.zeros(0, np.int64)
        keep = [(int(i), s) for i, (_, s) in zip(idx, top, strict=True) if i >= 0][:n]
        items = _scored(
            pipe, np.array([i for i, _ in keep], np.int64), np.array([s for _, s in keep])
        )
    return TrendingResponse(items=items)


# ---- feedback and items ----------------------------------------------------------------------
@router.post(
    "/v1/feedback",
    response_model=FeedbackResponse,
    responses=ERROR_RESPONSES,
    tags=["feedback"],
    summary="Store feedback events durably, then update users at once",
)
def feedback(body: FeedbackRequest, request: Request, _: FeedbackKey) -> FeedbackResponse:
    rt = _runtime(request)
    limit = rt.settings.max_events_per_request
    if len(body.events) > limit:
        raise ApiError(
            413,
            "too_many_events",
            f"{len(body.events)} events in one request; the limit is {limit} (split the batch)",
        )
    sm = _served(request)
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
        request_id=_request_id(request),
        accepted=len(new),
        duplicates=len(events) - len(new),
        online_updates=applied,
    )


@router.post(
    "/v1/items",
    response_model=ItemsResponse,
    responses=ERROR_RESPONSES,
    tags=["admin"],
    summary="Add or update items (new items are recommendable at once via text vectors)",
)
def upsert_items(body: ItemsRequest, request: Request, _: AdminKey) -> ItemsResponse:
    rt = _runtime(request)
    rows = [item.model_dump(exclude_unset=True) for item in body.items]
    added, updated = rt.upsert_items(rows)
    sm = rt.served()
    return ItemsResponse(
        request_id=_request_id(request),
        added=added,
        updated=updated,
        text_vectors=sm.pipeline.resources.item_text_vectors is not None,
    )


@router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    responses=ERROR_RESPONSES,
    tags=["admin"],
    summary="Load the current model version now (after retrain/rollback)",
)
def reload(request: Request, _: AdminKey) -> ReloadResponse:
    sm, changed = _runtime(request).reload()
    return ReloadResponse(model_version=sm.version, changed=changed)


# ---- operations ------------------------------------------------------------------------------
@router.get("/healthz", response_model=HealthResponse, tags=["ops"], summary="Liveness")
def healthz() -> HealthResponse:
    return HealthResponse(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    tags=["ops"],
    responses={503: {"model": ErrorBody, "description": "Not ready"}},
    summary="Readiness: a model is loaded and the store answers",
)
def readyz(request: Request) -> Any:
    rt = _runtime(request)
    store_ok = rt.store.ping()
    version = rt.served().version if rt.ready else None
    if not (store_ok and version):
        what = "no model loaded" if not version else "the feedback store does not answer"
        return error_response(503, "not_ready", what, request_id=_request_id(request))
    return ReadyResponse(status="ready", model_version=version, store=store_ok)


@router.get("/version", response_model=VersionResponse, tags=["ops"], summary="Versions")
def version(request: Request) -> VersionResponse:
    sm = _served(request)
    pipe = sm.pipeline
    return VersionResponse(
        package_version=__version__,
        model_version=sm.version,
        data_fingerprint=pipe.data_fingerprint,
        spec=pipe.spec,
        loaded_at=sm.loaded_at,
        n_items=pipe.n_items,
        n_users=len(pipe.users) if pipe.users is not None else 0,
    )


@router.get(
    "/metrics", response_class=PlainTextResponse, tags=["ops"], summary="Prometheus metrics"
)
def metrics(request: Request) -> PlainTextResponse:
    m: Metrics = request.app.state.metrics
    return PlainTextResponse(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)


# ---- the factory -----------------------------------------------------------------------------
def create_app(settings: Settings | None = None, *, store: FeedbackStore | None = None) -> FastAPI:
    """The service for `settings`: opens the store, loads the current model version (or
    registers `settings.model_dir`) and wires routes, errors, limits and metrics."""
    settings = settings or Settings.load()
    store = store or FeedbackStore.open(settings.resolved_store_url)
    runtime = Runtime(settings, store)
    metrics_ = Metrics()
    runtime.on_swap.append(lambda sm: metrics_.set_model(sm.version))
    runtime.start()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.start_watcher()
        try:
            yield
        finally:
            runtime.stop()

    app = FastAPI(
        title="recsage",
        version=__version__,
        description="Personalised recommendations, search and a feedback loop. Send "
        '`Authorization: Bearer <key>`; errors are `{"error": {"code", "message"}}`.',
        openapi_url="/openapi.json",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.metrics = metrics_
    app.state.settings = settings
    app.include_router(router)
    app.include_router(ui_router())  # the web page at /ui
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RecsageError, _recsage_error)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,  # type: ignore[arg-type]
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(
        ServiceMiddleware,  # type: ignore[arg-type]
        max_body=settings.max_body_bytes,
        metrics=metrics_,
    )
    return app
