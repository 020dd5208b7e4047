"""The web page through FastAPI's TestClient: sign-in, session cookie, CSRF, CSP, escaping,
the like/dislike loop, demo mode, the operator page, and the stats/chip helpers."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recsage.errors import RecsageError
from recsage.serving.ui import chat, stats

from .conftest import Service, start_service

STATIC = Path(__file__).parents[3] / "src" / "recsage" / "serving" / "ui" / "static"
XSS_TITLE = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf(?:-token)?" (?:value|content)="([^"]+)"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def sign_in(svc: Service, scope: str = "admin", user: str | None = "1") -> str:
    """Sign the service's client in with the key of `scope`; returns the session's token."""
    c = svc.client
    token = csrf_of(c.get("/ui/login").text)
    r = c.post(
        "/ui/login", data={"api_key": svc.keys[scope], "csrf": token}, follow_redirects=False
    )
    assert r.status_code == 303, r.text
    csrf = csrf_of(c.get("/ui").text)
    if user is not None:
        r = c.post("/ui/user", data={"csrf": csrf, "user_id": user}, follow_redirects=False)
        assert r.status_code == 303
    return csrf


def ids(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [i["item_id"] for i in r.json()["items"]]


def test_login_sets_a_strict_httponly_cookie_and_no_page_shows_the_key(service: Service) -> None:
    c = service.client
    r = c.get("/ui", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    token = csrf_of(c.get("/ui/login").text)
    r = c.post(
        "/ui/login", data={"api_key": service.keys["admin"], "csrf": token}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui"
    cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith("recsage_ui="))
    flags = {f.strip().lower() for f in cookie.split(";")[1:]}
    assert {"httponly", "path=/ui", "samesite=strict"} <= flags
    key = service.keys["admin"]
    assert key not in cookie and key not in r.headers.get("location", "")
    csrf = sign_in(service)
    pages = [c.get(p) for p in ("/ui", "/ui/items/50", "/ui/admin", "/ui/login")]
    for p in pages:
        assert p.status_code == 200, p.text
        # the secret part follows "rsk_<id>_" and may itself contain "_"
        assert key not in p.text and key.split("_", 2)[-1] not in p.text
        csp = p.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
        assert "unsafe-inline" not in csp and p.headers["x-frame-options"] == "DENY"
        assert "<script>" not in p.text  # no inline scripts at all
    assert csrf in pages[0].text  # the CSRF token is on the page, the key is not


def test_login_rejects_unknown_keys_and_forms_without_the_token(service: Service) -> None:
    c = service.client
    token = csrf_of(c.get("/ui/login").text)
    bogus = "rsk_0123456789ab_notarealsecretMARKER"
    r = c.post("/ui/login", data={"api_key": bogus, "csrf": token}, follow_redirects=False)
    assert r.status_code == 401 and "unknown or revoked" in r.text
    assert "MARKER" not in r.text and "recsage_ui=" not in r.headers.get("set-cookie", "")
    r = c.post("/ui/login", data={"api_key": service.keys["read"]}, follow_redirects=False)
    assert r.status_code == 403  # no double-submit token
    r = c.post(
        "/ui/login",
        data={"api_key": service.keys["read"], "csrf": token},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403


def test_state_changes_need_the_csrf_token_and_a_same_origin(service: Service) -> None:
    csrf = sign_in(service)
    c = service.client
    store = service.runtime.store
    body = {"action": "click", "item_id": "50"}
    before = len(store.read())
    assert c.post("/ui/api/feedback", json=body).status_code == 403
    assert c.post("/ui/api/feedback", json=body, headers={"X-CSRF-Token": "x"}).status_code == 403
    r = c.post(
        "/ui/api/feedback",
        json=body,
        headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
    )
    assert r.status_code == 403
    assert len(store.read()) == before
    r = c.post("/ui/api/feedback", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["accepted"] == 1
    events = store.read()
    assert len(events) == before + 1
    assert (events[-1].user_id, events[-1].item_id, events[-1].type) == ("1", "50", "click")
    r = c.post("/ui/user", data={"user_id": "2"}, follow_redirects=False)
    assert r.status_code == 403  # forms too


def test_like_changes_the_list_and_dislike_hides_the_item(service: Service) -> None:
    csrf = sign_in(service, user="7")
    c, h = service.client, {"X-CSRF-Token": csrf}
    first = c.post("/ui/api/recommend", json={"n": 10}, headers=h)
    data = first.json()
    assert not data["cold_start"] and data["label"].startswith("Picked for you")
    top = ids(first)
    item = data["items"][0]
    assert item["reasons"] and item["kinds"][0] in {"model", "popularity"}
    assert isinstance(item["categories"], list) and item["categories"]  # from the item table
    r = c.post(
        "/ui/api/feedback",
        json={"action": "like", "item_id": top[0], "position": 0, "request_id": data["request_id"]},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["type"] == "rating" and r.json()["online_updates"] == 1
    after_like = ids(c.post("/ui/api/recommend", json={"n": 10}, headers=h))
    assert top[0] not in after_like and after_like != top  # now part of the history
    r = c.post("/ui/api/feedback", json={"action": "dislike", "item_id": top[1]}, headers=h)
    assert r.status_code == 200 and r.json()["type"] == "skip"
    after_dislike = ids(c.post("/ui/api/recommend", json={"n": 10}, headers=h))
    assert top[1] not in after_dislike
    events = service.runtime.store.read()
    assert [(e.type, e.value) for e in events[-2:]] == [("rating", 5.0), ("skip", None)]
    assert events[-2].request_id == data["request_id"] and events[-2].position == 0


def test_a_new_visitor_gets_the_labelled_popularity_fallback(service: Service) -> None:
    csrf = sign_in(service, user=None)
    c, h = service.client, {"X-CSRF-Token": csrf}
    r = c.post("/ui/user", data={"csrf": csrf, "new": "1"}, follow_redirects=False)
    assert r.status_code == 303
    data = c.post("/ui/api/recommend", json={"n": 10}, headers=h).json()
    assert data["cold_start"] and data["user_id"].startswith("visitor-")
    assert {s for it in data["items"] for s in it["sources"]} == {"fallback:popular"}
    assert "popular with everyone (cold-start fallback)" in data["label"]


def test_item_text_is_escaped_on_server_rendered_pages(service: Service) -> None:
    c = service.client
    r = c.post(
        "/v1/items",
        json={"items": [{"item_id": "xss", "title": XSS_TITLE, "categories": ["<b>bold</b>"]}]},
        headers=service.auth("admin"),
    )
    assert r.status_code == 200
    sign_in(service)
    page = c.get("/ui/items/xss")
    assert page.status_code == 200
    assert "<script>window.__xss" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in page.text
    assert "<b>bold</b>" not in page.text and "&lt;b&gt;bold&lt;/b&gt;" in page.text


def test_the_page_script_never_writes_html() -> None:
    js = (STATIC / "app.js").read_text()
    code = re.sub(r"/\*.*?\*/|//[^\n]*", "", js, flags=re.S)  # comments may name the sinks
    assert "textContent" in code
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code


def test_static_files_are_served_from_the_package(service: Service) -> None:
    r = service.client.get("/ui/static/app.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.text == (STATIC / "app.js").read_text()
    assert service.client.get("/ui/static/..%2Fsessions.py").status_code == 404
    assert service.client.get("/ui/static/nope.js").status_code == 404


def test_demo_sign_in_only_when_enabled_and_from_this_machine(
    tmp_path: Path, pipeline_dir: Path
) -> None:
    from fastapi.testclient import TestClient

    off = start_service(tmp_path / "off", pipeline_dir)
    local = TestClient(off.app, base_url="http://127.0.0.1:8000", client=("127.0.0.1", 5000))
    token = csrf_of(local.get("/ui/login").text)
    assert "demo-signin" not in local.get("/ui/login").text
    r = local.post("/ui/demo", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 403
    off.runtime.store.close()

    on = start_service(tmp_path / "on", pipeline_dir, ui_demo=True)
    remote = TestClient(on.app, base_url="http://10.0.0.5:8000", client=("10.0.0.9", 5000))
    token = csrf_of(remote.get("/ui/login").text)
    assert remote.post("/ui/demo", data={"csrf": token}, follow_redirects=False).status_code == 403
    rebound = TestClient(on.app, base_url="http://evil.example", client=("127.0.0.1", 5000))
    token = csrf_of(rebound.get("/ui/login").text)
    assert rebound.post("/ui/demo", data={"csrf": token}, follow_redirects=False).status_code == 403
    local = TestClient(on.app, base_url="http://localhost:8000", client=("127.0.0.1", 5000))
    page = local.get("/ui/login").text
    assert "demo-signin" in page
    r = local.post("/ui/demo", data={"csrf": csrf_of(page)}, follow_redirects=False)
    assert r.status_code == 303
    home = local.get("/ui")
    assert "(demo)" in home.text and "Browsing as user" in home.text
    records = on.runtime.store.keys()  # the store's API-key records, not a dict
    keys = {k.name: k for k in records}
    assert keys["ui-demo"].scopes == ("read", "feedback") and keys["ui-demo"].revoked_at is None
    assert local.get("/ui/admin").status_code == 403  # the demo key has no admin scope
    on.runtime.store.close()


def test_operator_page_rolls_back_and_promotes(service: Service, pipeline_dir: Path) -> None:
    rt = service.runtime
    v2 = rt.registry.import_dir(pipeline_dir, parent="v1")
    rt.registry.set_current(v2.name)
    rt.reload()
    csrf = sign_in(service, scope="read")
    assert service.client.get("/ui/admin").status_code == 403
    service.client.cookies.clear()
    csrf = sign_in(service, scope="admin")
    page = service.client.get("/ui/admin")
    assert page.status_code == 200 and "Roll back to v1" in page.text
    r = service.client.post("/ui/admin/rollback", data={"csrf": csrf}, follow_redirects=True)
    assert r.status_code == 200 and "Rolled back from v2 to v1; serving v1." in r.text
    assert rt.registry.current_name() == "v1" and rt.served().version == "v1"
    r = service.client.post(
        "/ui/admin/promote", data={"csrf": csrf, "version": "v2"}, follow_redirects=True
    )
    assert "v2 is now current; serving v2." in r.text and rt.served().version == "v2"
    r = service.client.post("/ui/admin/promote", data={"csrf": csrf, "version": "v9"})
    assert r.status_code == 404 and "no model version &#39;v9&#39;" in r.text
    assert service.client.post("/ui/admin/rollback", data={"csrf": "x"}).status_code == 403


def test_operator_page_shows_the_report_and_its_plot(tmp_path: Path, pipeline_dir: Path) -> None:
    report = tmp_path / "report"
    report.mkdir()
    results = [
        {"model": "ease", "metrics": {"ndcg@10": 0.25, "hr@10": 0.5}},
        {"model": "pop", "metrics": {"ndcg@10": 0.125, "hr@10": 0.25}},
    ]
    (report / "results.json").write_text(
        json.dumps({"dataset": {"name": "ml"}, "results": results})
    )
    png = b"\x89PNG\r\n\x1a\nfake"
    (report / "metrics.png").write_bytes(png)
    svc = start_service(tmp_path / "home", pipeline_dir, report_dir=report)
    sign_in(svc)
    page = svc.client.get("/ui/admin").text
    assert '<th scope="col">hr@10</th>' in page and "0.2500" in page and "0.1250" in page
    assert 'src="/ui/admin/report/metrics.png"' in page
    r = svc.client.get("/ui/admin/report/metrics.png")
    assert r.status_code == 200 and r.content == png and r.headers["content-type"] == "image/png"
    assert svc.client.get("/ui/admin/report/results.json").status_code == 404
    svc.runtime.store.close()


def test_stats_follow_the_metrics_counters(service: Service) -> None:
    csrf = sign_in(service)
    c, h = service.client, {"X-CSRF-Token": csrf}
    text = c.get("/metrics").text
    a = stats.parse_metrics(text, 100.0)
    for _ in range(3):
        c.post("/ui/api/recommend", json={"n": 3}, headers=h)
    c.post("/ui/api/feedback", json={"action": "click", "item_id": "50"}, headers=h)
    b = stats.parse_metrics(c.get("/metrics").text, 110.0)
    # 3 recommend calls reach /v1/recommend; the first also reads /version (not /v1) once,
    # and one feedback call reaches /v1/feedback: 4 API requests in 10 s
    point = stats.interval(a, b)
    assert point["rps"] == pytest.approx(0.4)
    assert point["events_per_min"] == pytest.approx(6.0)
    assert point["p50_ms"] is not None and point["p50_ms"] > 0
    assert sum(b.buckets.values()) > 0


def test_histogram_quantile_matches_a_hand_calculation() -> None:
    buckets = {0.01: 2.0, 0.1: 6.0, 1.0: 10.0, float("inf"): 10.0}
    # rank 5 of 10 lies in (0.01, 0.1] holding ranks 3..6: 0.01 + 0.09 * (5 - 2) / 4
    assert stats.histogram_quantile(0.5, buckets) == pytest.approx(0.0775)
    # rank 9.5 lies in (0.1, 1.0] holding ranks 7..10: 0.1 + 0.9 * 3.5 / 4
    assert stats.histogram_quantile(0.95, buckets) == pytest.approx(0.8875)
    assert stats.histogram_quantile(0.9, {0.1: 1.0, float("inf"): 4.0}) == 0.1
    assert stats.histogram_quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
    with pytest.raises(ValueError):
        stats.histogram_quantile(1.5, buckets)


def test_sampler_keeps_a_window_and_counts_error_responses() -> None:
    s = stats.StatsSampler(keep=10.0, min_gap=1.0)
    for t, n, errs in ((0.0, 0, 0), (0.5, 5, 0), (2.0, 10, 1), (4.0, 30, 3), (20.0, 40, 4)):
        snap = stats.Snapshot(t, requests=float(n))
        snap.by_status = {("POST", "/v1/recommend", "422"): float(errs)}
        s.add(snap)
    out = s.series()
    # 0.5 is dropped (under min_gap); 20.0 pushes 0.0, 2.0 and 4.0 out of the 10 s window
    assert [p["t"] for p in out["points"]] == []
    assert out["total_requests"] == 40
    s2 = stats.StatsSampler(keep=100.0)
    for t, n, errs in ((0.0, 0, 0), (2.0, 10, 1), (4.0, 30, 3)):
        snap = stats.Snapshot(t, requests=float(n))
        snap.by_status = {("POST", "/v1/recommend", "422"): float(errs)}
        s2.add(snap)
    out = s2.series()
    assert [p["rps"] for p in out["points"]] == [5.0, 10.0]
    assert out["errors_by_route"] == [
        {"method": "POST", "route": "/v1/recommend", "status": "422", "total": 3, "in_window": 3}
    ]


def test_recent_errors_keep_warnings_of_recsage_loggers() -> None:
    import logging

    handler = stats.recent_errors()
    logging.getLogger("recsage.serving").warning("store slow: %d ms", 1234)
    logging.getLogger("other").error("not ours")
    last = handler.recent(1)[0]
    assert last["message"] == "store slow: 1234 ms" and last["level"] == "WARNING"
    assert all(r["logger"].startswith("recsage") for r in handler.recent(50))


def _catalogue() -> Any:
    from recsage.llm.conversation.catalogue import Catalogue, KeywordEncoder

    table = pd.DataFrame(
        {
            "title": ["Laugh Riot", "Dark Night", "Sunny Jokes", "Old Gags", "Space Fun"],
            "year": [1995, 1996, 1998, 1975, 1997],
            "categories": [["Comedy"], ["Horror"], ["Comedy"], ["Comedy"], ["Sci-Fi", "Comedy"]],
        }
    )
    enc = KeywordEncoder(64)
    vecs = enc.encode_items(list(table["title"]))
    return Catalogue.from_table([f"i{i}" for i in range(5)], table, vecs, enc)


def test_chips_describe_the_conversation_and_remove_exactly_one_constraint() -> None:
    from recsage.llm.conversation.session import ConversationSession

    conv = ConversationSession(_catalogue(), n=2)
    conv.turn("a funny movie from the 90s, nothing scary")
    got = chat.chips(conv)
    assert [c["id"] for c in got] == ["include:comedy", "exclude:horror", "years"]
    assert [c["label"] for c in got] == ["+Comedy", "not Horror", "1990–1999"]
    assert np.isneginf(conv.scores()[3])  # Old Gags (1975) is outside the years
    chat.remove(conv, "years")
    assert conv.constraints.year_min is None and conv.constraints.year_max is None
    assert conv.constraints.include_genres == {"comedy"}
    assert np.isfinite(conv.scores()[3])  # and back in once the years chip is gone
    with pytest.raises(RecsageError, match="no constraint 'years'"):
        chat.remove(conv, "years")
    chat.remove(conv, "exclude:horror")
    assert not conv.constraints.exclude_genres
    assert [c["id"] for c in chat.chips(conv)] == ["include:comedy"]
    assert np.isneginf(conv.scores()[1])  # comedies only, while there are enough of them
    chat.remove(conv, "include:comedy")
    assert chat.chips(conv) == [] and np.isfinite(conv.scores()[1])
