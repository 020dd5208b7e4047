"""Browser-test fixtures: the real app (uvicorn, loopback, free port) on a tiny text-enabled
movie pipeline with two model versions, keys with each scope, and chromium via Playwright.

Without /usr/bin/chromium (or without the playwright package) the tests skip, saying why,
except in CI (CI=true), where they fail: `make test` installs both there.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import harness
import movies
from harness import Site

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _missing(what: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is missing in CI; `make test` installs it", pytrace=False)
    pytest.skip(f"{what} is missing (run `make test`, which installs it)")


@pytest.fixture(scope="session", autouse=True)
def _browser_available() -> None:
    if not harness.chromium_path().exists():
        _missing(f"chromium ({harness.CHROMIUM}; `apt-get install chromium`)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the playwright package (the dev extra)")


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from recsage.feedback.versions import VersionRegistry
    from recsage.serving.app import create_app
    from recsage.serving.auth import create_key
    from recsage.settings import Settings

    root = tmp_path_factory.mktemp("site")
    pipe_dir = movies.fit_and_save(root / "pipeline", root / "embeddings")
    home = root / "home"
    registry = VersionRegistry(home / "models")
    v1 = registry.import_dir(pipe_dir, parent=None)
    v2 = registry.import_dir(pipe_dir, parent=v1.name)
    registry.set_current(v2.name)
    settings = Settings.load(env={}, home=home, reload_interval=0, rate_limit=0)
    app = create_app(settings)
    store = app.state.runtime.store
    visitor = create_key(store, "visitor", "read,feedback")
    admin = create_key(store, "operator", "admin")
    with harness.serve(app) as url:
        yield Site(url, app, visitor, admin)
    store.close()


@pytest.fixture(scope="session")
def context(site: Site) -> Iterator[Any]:
    with harness.browser() as ctx:
        yield ctx


@pytest.fixture
def page(context: Any) -> Iterator[Any]:
    """A fresh tab with no cookies; fails the test on any dialog (alert/confirm) or page
    error, which is how injected script would show itself."""
    context.clear_cookies()
    p = context.new_page()
    problems: list[str] = []
    p.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    p.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    yield p
    p.close()
    assert not problems, problems
