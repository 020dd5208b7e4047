"""`recsage serve` for real: a uvicorn subprocess on loopback, keys from `recsage keys`,
the feedback loop over HTTP, then `recsage retrain` / `versions` / `rollback`."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

SPEC = """
[text]
enabled = false
[merge]
max_candidates = 100
[[channels]]
name = "ease"
kind = "model"
model = "ease"
n = 100
params = { l2 = 100.0 }
[[channels]]
name = "pop"
kind = "popularity"
n = 50
[[stages]]
name = "prerank"
kind = "rrf"
keep = 20
"""


def _env(home: Path) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "COLUMNS": "120",
        "RECSAGE_HOME": str(home / "recsage"),
        "RECSAGE_RELOAD_INTERVAL": "0.5",
    }


def recsage(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recsage.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(home),
        cwd=home,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    h = tmp_path_factory.mktemp("svc")
    (h / "spec.toml").write_text(SPEC)
    res = recsage(h, "train", "--pipeline", "spec.toml", "--out", "model")
    assert res.returncode == 0, res.stderr
    return h


@pytest.fixture(scope="module")
def server(home: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "recsage.cli", "serve", "--model", "model", "--port", str(port)],
        env=_env(home),
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"server exited: {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("server did not become ready in 120 s")
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:  # pragma: no cover
        proc.kill()


def test_serve_feedback_loop_retrain_and_rollback(home: Path, server: str) -> None:
    res = recsage(home, "keys", "add", "shop", "--scopes", "read,feedback,admin")
    assert res.returncode == 0, res.stderr
    key = res.stdout.strip()
    assert key.startswith("rsk_") and "store it now" in res.stderr
    listed = recsage(home, "keys", "list").stdout
    assert "shop" in listed and key not in listed
    h = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server, headers=h, timeout=30) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert httpx.post(f"{server}/v1/recommend", json={"user_id": "1"}).status_code == 401
        first = c.post("/v1/recommend", json={"user_id": "42", "n": 5}).json()["items"]
        events = [
            {
                "event_id": f"cli-{u}-{j}",
                "user_id": str(u),
                "item_id": it["item_id"],
                "type": "click",
            }
            for u in range(40, 60)
            for j, it in enumerate(
                c.post("/v1/recommend", json={"user_id": str(u), "n": 2}).json()["items"]
            )
        ]
        r = c.post("/v1/feedback", json={"events": events})
        assert r.status_code == 200 and r.json()["accepted"] == 40
        again = c.post("/v1/recommend", json={"user_id": "42", "n": 5}).json()["items"]
        assert again != first and first[0]["item_id"] not in [i["item_id"] for i in again]

        res = recsage(home, "retrain", "--min-improvement", "-1")
        assert res.returncode == 0, res.stderr
        assert "now serving v2" in res.stdout and "NDCG@10" in res.stdout
        assert _wait_for_version(c, "v2")  # the server's watcher picked it up
        assert "v2" in recsage(home, "versions").stdout
        res = recsage(home, "rollback")
        assert res.returncode == 0 and "from v2 to v1" in res.stdout
        assert _wait_for_version(c, "v1")
        res = recsage(home, "keys", "revoke", "shop")
        assert res.returncode == 0
        time.sleep(2.5)  # key cache ttl
        assert c.post("/v1/recommend", json={"user_id": "42"}).status_code == 401


def _wait_for_version(client: object, version: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/version").json()["model_version"] == version:  # type: ignore[attr-defined]
            return True
        time.sleep(0.2)
    return False


def test_serve_without_a_model_fails_cleanly(tmp_path: Path) -> None:
    res = recsage(tmp_path, "serve", "--port", str(free_port()))
    assert res.returncode == 2 and "no model version" in res.stderr
    assert "Traceback" not in res.stderr
