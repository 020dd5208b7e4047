"""Schemathesis fuzzing of the published OpenAPI spec against the ASGI app: whatever a
client sends, the service answers without a 5xx, quickly, with JSON errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from .conftest import Service, start_service  # noqa: E402


class _Proxy:
    """ASGI app that forwards to `target`: the schema loads at import time from a model-less
    app with the same routes; the fixture points it at a real service. (Schemathesis'
    `from_fixture` does not run on this pytest version.)"""

    def __init__(self, target: Any) -> None:
        self.target = target

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.target(scope, receive, send)


def _spec_app() -> Any:
    from fastapi import FastAPI

    from recsage.serving.routes import ROUTERS

    app = FastAPI(openapi_url="/openapi.json")
    for router in ROUTERS:
        app.include_router(router)
    return app


proxy = _Proxy(_spec_app())
schema = schemathesis.openapi.from_asgi("/openapi.json", proxy)


@pytest.fixture(scope="module")
def fuzz_service(tmp_path_factory: pytest.TempPathFactory, pipeline_dir: Path) -> Iterator[Service]:
    svc = start_service(tmp_path_factory.mktemp("fuzz") / "home", pipeline_dir)
    proxy.target = svc.app
    yield svc
    svc.runtime.store.close()


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: Any, fuzz_service: Service) -> None:
    t0 = time.perf_counter()
    response = case.call(headers=fuzz_service.auth("admin"))
    assert time.perf_counter() - t0 < 10, "a request took more than 10 s"
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400:
        body = response.json()
        assert {"code", "message"} <= set(body["error"]), body


def test_the_fuzzing_reached_the_real_handlers(fuzz_service: Service) -> None:
    text = fuzz_service.client.get("/metrics").text
    assert 'route="/v1/recommend",status="200"' in text  # authorised, valid, answered
    assert 'route="/v1/feedback",status="422"' in text  # invalid bodies, refused cleanly
