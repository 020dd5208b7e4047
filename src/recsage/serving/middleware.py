"""Service middleware: request ids, body limits, metrics, JSON errors."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsage.feedback.store import StoreError
from recsage.serving.schemas import (
    ApiError,
)

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
        self.batch_size = Histogram(
            "recsage_recommend_batch_size",
            "Queries per pipeline batch of /v1/recommend (concurrent requests run together)",
            registry=r,
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
        )
        self.model = Gauge(
            "recsage_model_info", "The served model version (value 1)", ["version"], registry=r
        )

    def set_model(self, version: str) -> None:
        self.model.clear()
        self.model.labels(version=version).set(1)


# ---- errors ----------------------------------------------------------------------------------
def request_id_of(request: Request) -> str:
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


async def api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(
        exc.status, exc.code, exc.message, request_id=request_id_of(request), headers=exc.headers
    )


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = STATUS_CODES.get(exc.status_code, "error")
    message = str(exc.detail) if exc.detail else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}; see /openapi.json"
    return error_response(
        exc.status_code,
        code,
        message,
        request_id=request_id_of(request),
        headers=getattr(exc, "headers", None),
    )


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
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
        request_id=request_id_of(request),
        details=details,
    )


async def recsage_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, StoreError):
        log.error("store error: %s", exc)
        return error_response(
            503,
            "store_unavailable",
            "the feedback store is unavailable; retry later",
            request_id=request_id_of(request),
            headers={"Retry-After": "1"},
        )
    return error_response(422, "bad_request", str(exc), request_id=request_id_of(request))


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
