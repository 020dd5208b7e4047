"""Shared by the browser tests and docs/screenshots.py: the real app under uvicorn on a free
loopback port (in a thread), and Debian's chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("RECSAGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Site:
    """A running service for the browser tests: its URL, app and a key of each kind."""

    url: str
    app: Any
    visitor_key: str
    admin_key: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run `app` with uvicorn on 127.0.0.1:<free port> in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@contextmanager
def browser(viewport: tuple[int, int] = (1280, 900)) -> Iterator[Any]:
    """A Playwright browser context on chromium with a fresh user-data-dir."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="recsage-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": viewport[0], "height": viewport[1]},
                service_workers="block",
            )
            context.set_default_timeout(15_000)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def sign_in(page: Any, base: str, key: str) -> None:
    """Type the key into the login form (the only place a key is ever typed)."""
    page.goto(f"{base}/ui")
    page.wait_for_url(f"{base}/ui/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/ui")


def pick_user(page: Any, user: str) -> None:
    page.get_by_label("User id").fill(user)
    page.get_by_role("button", name="Show this user").click()
    page.locator("#current-user").wait_for()


def chromium_path() -> Path:
    return Path(CHROMIUM)
