"""recsage.serving.app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from starlette.exceptions import HTTPException as StarletteHTTPException

from recsage import __version__
from recsage.errors import RecsageError
from recsage.feedback.store import FeedbackStore
from recsage.serving.batching import RecommendBatcher
from recsage.serving.middleware import (
    Metrics,
    ServiceMiddleware,
    api_error,
    http_error,
    recsage_error,
    validation_error,
)
from recsage.serving.routes import ROUTERS
from recsage.serving.runtime import Runtime
from recsage.serving.schemas import (
    ApiError,
)
from recsage.serving.ui import ui_router
from recsage.settings import Settings


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
    app.state.batcher = RecommendBatcher(
        max_batch=settings.batch_max, on_batch=metrics_.batch_size.observe
    )
    app.state.metrics = metrics_
    app.state.settings = settings
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(ui_router())  # the web page at /ui
    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(RecsageError, recsage_error)
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
