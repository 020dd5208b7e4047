"""Screenshots of the web page for the README, taken with the browser the tests use.

Fits a text-enabled pipeline on bundled MovieLens-100K (EASE, co-occurrence, text and
popularity channels), evaluates two baselines for the operator page's report, starts the
real app under uvicorn on a loopback port, drives Debian's chromium through Playwright and
writes small palette PNGs into docs/img/:

    PYTHONPATH=src python docs/screenshots.py          # about a minute (MiniLM is cached)

home.png (user 42 after a "like": badges, reasons, search and two chat turns),
item.png (an item and its similar items), admin.png (versions, report, live charts).
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "browser"))

import harness  # noqa: E402

OUT = ROOT / "docs" / "img"
SPEC: dict[str, Any] = {
    "text": {"enabled": True},
    "merge": {"max_candidates": 200},
    "channels": [
        {"name": "ease", "kind": "model", "model": "ease", "n": 100, "params": {"l2": 200.0}},
        {"name": "cooc", "kind": "cooccurrence", "n": 50, "window": 3, "recent": 10},
        {"name": "text", "kind": "text", "n": 30},
        {"name": "pop", "kind": "popularity", "n": 30},
    ],
    "stages": [{"name": "prerank", "kind": "rrf", "keep": 50}],
}


def save_png(data: bytes, path: Path, colors: int = 128) -> int:
    """Write a screenshot as a palette PNG (a fraction of the RGB size); returns bytes."""
    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGB")
    small = img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)
    return path.stat().st_size


def traffic(url: str, key: str, seconds: float) -> None:
    """Some API calls for the live charts (recommend, search, feedback, one bad request)."""
    import httpx

    h = {"Authorization": f"Bearer {key}"}
    end = time.monotonic() + seconds
    i = 0
    with httpx.Client(base_url=url, headers=h, timeout=30) as c:
        while time.monotonic() < end:
            c.post("/v1/recommend", json={"user_id": str(1 + i % 900), "n": 10})
            if i % 5 == 0:
                c.post("/v1/search", json={"query": "space adventure", "n": 5})
            if i % 3 == 0:
                ev = {"event_id": f"shot-{i}", "user_id": str(1 + i % 900), "item_id": "50",
                      "type": "click"}  # fmt: skip
                c.post("/v1/feedback", json={"events": [ev]})
            if i % 40 == 0:
                c.post("/v1/recommend", json={"user_id": "1", "n": 1000})  # a 422
            i += 1
            time.sleep(0.05)


def main() -> None:
    from recsage.data.sources.registry import load_dataset
    from recsage.evaluation.report import write_reports
    from recsage.evaluation.runner import run_models
    from recsage.feedback.versions import VersionRegistry
    from recsage.pipeline.pipeline import Pipeline
    from recsage.serving.app import create_app
    from recsage.serving.auth import create_key
    from recsage.settings import Settings

    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="recsage-shots-"))
    t0 = time.perf_counter()
    ds = load_dataset("ml-100k")
    pipe_dir = Pipeline(SPEC).fit(ds).save(work / "pipeline")
    home = work / "home"
    results = run_models(ds, ["pop", "ease"])
    write_reports(results, home / "reports" / "ml-100k", dataset=ds.describe())
    registry = VersionRegistry(home / "models")
    v1 = registry.import_dir(Path(pipe_dir), parent=None)
    v2 = registry.import_dir(Path(pipe_dir), parent=v1.name)
    registry.set_current(v2.name)
    print(f"fitted and evaluated in {time.perf_counter() - t0:.0f}s")
    app = create_app(Settings.load(env={}, home=home, reload_interval=0, rate_limit=0))
    store = app.state.runtime.store
    visitor = create_key(store, "web-visitor", "read,feedback")
    admin = create_key(store, "operator", "admin")
    with harness.serve(app) as url, harness.browser(viewport=(1280, 860)) as ctx:
        page = ctx.new_page()
        harness.sign_in(page, url, visitor)
        harness.pick_user(page, "42")
        page.locator("#recs > li").first.wait_for()
        first = page.locator("#recs > li").first.locator("a.title").text_content()
        page.get_by_role("button", name=f"Like {first}", exact=True).click()
        page.wait_for_function(
            "() => document.getElementById('recs-status').textContent.includes('changed')"
        )
        page.get_by_label("Describe what you want").fill("a funny animated movie for kids")
        page.get_by_role("button", name="Search").click()
        page.locator("#search-results > li").first.wait_for()
        msg = page.get_by_label("Message")
        for text in ("a funny movie from the 90s", "something lighter, not horror"):
            msg.fill(text)
            msg.press("Enter")
            page.wait_for_function(
                "n => document.querySelectorAll('#chat-log .msg').length >= n",
                arg=4 if "lighter" in text else 2,
            )
        page.evaluate("document.activeElement.blur(); window.scrollTo(0, 0)")
        size = save_png(page.screenshot(full_page=False), OUT / "home.png")
        print(f"home.png {size // 1024} KB")

        page.goto(f"{url}/ui/items/1")
        page.locator("#similar > li").first.wait_for()
        page.set_viewport_size({"width": 1280, "height": 670})
        size = save_png(page.screenshot(), OUT / "item.png")
        page.set_viewport_size({"width": 1280, "height": 860})
        print(f"item.png {size // 1024} KB")

        ctx.clear_cookies()
        harness.sign_in(page, url, admin)
        page.goto(f"{url}/ui/admin")
        load = threading.Thread(target=traffic, args=(url, visitor, 14.0))
        load.start()
        page.wait_for_timeout(12_500)  # six polls with traffic running
        size = save_png(page.screenshot(full_page=True), OUT / "admin.png")
        load.join()
        print(f"admin.png {size // 1024} KB")
    store.close()


if __name__ == "__main__":
    main()
