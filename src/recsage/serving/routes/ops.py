"""Health, readiness, version, metrics and admin reload."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import PlainTextResponse
from fastapi.routing import APIRouter
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    generate_latest,
)

from recsage import __version__
from recsage.serving.deps import AdminKey, get_runtime, get_served
from recsage.serving.middleware import Metrics, error_response, request_id_of
from recsage.serving.schemas import (
    ERROR_RESPONSES,
    ErrorBody,
    HealthResponse,
    ReadyResponse,
    ReloadResponse,
    VersionResponse,
)

router = APIRouter()


@router.post(
    "/v1/admin/reload",
    response_model=ReloadResponse,
    responses=ERROR_RESPONSES,
    tags=["admin"],
    summary="Load the current model version now (after retrain/rollback)",
)
def reload(request: Request, _: AdminKey) -> ReloadResponse:
    sm, changed = get_runtime(request).reload()
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
    rt = get_runtime(request)
    store_ok = rt.store.ping()
    version = rt.served().version if rt.ready else None
    if not (store_ok and version):
        what = "no model loaded" if not version else "the feedback store does not answer"
        return error_response(503, "not_ready", what, request_id=request_id_of(request))
    return ReadyResponse(status="ready", model_version=version, store=store_ok)


@router.get("/version", response_model=VersionResponse, tags=["ops"], summary="Versions")
def version(request: Request) -> VersionResponse:
    sm = get_served(request)
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
