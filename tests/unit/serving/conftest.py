"""Fixtures for the service tests: a small fitted pipeline, apps on SQLite or PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from recsage.data.sources.registry import load_dataset
from recsage.pipeline.pipeline import Pipeline

SMALL_SPEC: dict[str, Any] = {
    "text": {"enabled": False},
    "merge": {"max_candidates": 100},
    "channels": [
        {"name": "ease", "kind": "model", "model": "ease", "n": 100, "params": {"l2": 100.0}},
        {"name": "pop", "kind": "popularity", "n": 50},
    ],
    "stages": [{"name": "prerank", "kind": "rrf", "keep": 20}],
}
PG_URL = os.environ.get("RECSAGE_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ML-100K, EASE + popularity, text off (about 2 s), saved once per session."""
    pipe = Pipeline(SMALL_SPEC).fit(load_dataset("ml-100k"))
    return pipe.save(tmp_path_factory.mktemp("pipeline") / "ml100k")


def make_settings(home: Path, model_dir: Path | None, **overrides: Any) -> Any:
    from recsage.settings import Settings

    values: dict[str, Any] = {"reload_interval": 0, "rate_limit": 0, "min_holdout_users": 5}
    values.update(overrides)
    return Settings.load(env={}, home=home, model_dir=model_dir, **values)


@dataclass
class Service:
    """A test client plus keys with each scope."""

    app: Any
    client: Any
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def auth(self, scope: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[scope]}"}


def start_service(home: Path, model_dir: Path | None, **overrides: Any) -> Service:
    from fastapi.testclient import TestClient

    from recsage.serving.app import create_app
    from recsage.serving.auth import create_key

    app = create_app(make_settings(home, model_dir, **overrides))
    store = app.state.runtime.store
    keys = {s: create_key(store, f"{s}-{uuid.uuid4().hex[:6]}", s) for s in ("read", "feedback")}
    keys["admin"] = create_key(store, f"admin-{uuid.uuid4().hex[:6]}", "admin")
    return Service(app, TestClient(app, raise_server_exceptions=False), keys)


@pytest.fixture
def service(tmp_path: Path, pipeline_dir: Path) -> Iterator[Service]:
    svc = start_service(tmp_path / "home", pipeline_dir)
    yield svc
    svc.runtime.store.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema in the local PostgreSQL `test` database, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    try:
        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL} ({str(exc).strip()})")
    schema = f"recsage_test_{uuid.uuid4().hex[:12]}"
    conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both back ends (PostgreSQL skips, with the reason, only if the server is down)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url
