"""The HTTP service through FastAPI's TestClient: routes, auth, errors, feedback loop,
item updates, retrain + swap + rollback."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from recsage.feedback.retrain import retrain, rollback
from recsage.feedback.store import FeedbackStore
from recsage.types import Query

from .conftest import Service, make_settings, start_service

ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("POST", "/v1/recommend", {"user_id": "1", "n": 3}, "read"),
    ("GET", "/v1/items/50/similar", None, "read"),
    ("POST", "/v1/search", {"query": "space adventure"}, "read"),
    ("GET", "/v1/trending", None, "read"),
    (
        "POST",
        "/v1/feedback",
        {"events": [{"event_id": "a1", "user_id": "1", "item_id": "50", "type": "click"}]},
        "feedback",
    ),
    ("POST", "/v1/items", {"items": [{"item_id": "50", "title": "Star Wars"}]}, "admin"),
    ("POST", "/v1/admin/reload", None, "admin"),
]


def call(svc: Service, method: str, path: str, body: Any = None, **kw: Any) -> Any:
    return svc.client.request(method, path, json=body, **kw)


def rec_ids(svc: Service, user: str, n: int = 10, **extra: Any) -> list[str]:
    r = svc.client.post(
        "/v1/recommend", json={"user_id": user, "n": n, **extra}, headers=svc.auth("read")
    )
    assert r.status_code == 200, r.text
    return [i["item_id"] for i in r.json()["items"]]


def click(svc: Service, user: str, item: str, event_id: str, **extra: Any) -> Any:
    ev = {"event_id": event_id, "user_id": user, "item_id": item, "type": "click", **extra}
    return svc.client.post("/v1/feedback", json={"events": [ev]}, headers=svc.auth("feedback"))


def assert_error(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])
    assert "Traceback" not in r.text
    if code:
        assert body["error"]["code"] == code
    return dict(body["error"])


# ---- recommend / similar / search ------------------------------------------------------------
def test_recommend_returns_ranked_items_with_sources_and_reasons(service: Service) -> None:
    r = service.client.post(
        "/v1/recommend", json={"user_id": "1", "n": 5}, headers=service.auth("read")
    )
    assert r.status_code == 200
    body = r.json()
    assert body["model_version"] == "v1" and body["cold_start"] is False
    assert body["request_id"] == r.headers["x-request-id"]
    items = body["items"]
    assert [i["rank"] for i in items] == [1, 2, 3, 4, 5]
    assert all(i["title"] and i["sources"] for i in items)
    assert {r["channel"] for r in items[0]["reasons"]} == set(items[0]["sources"])
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True)


def test_recommend_histories_cold_users_and_filters(service: Service) -> None:
    h = service.auth("read")
    post = service.client.post
    r = post("/v1/recommend", json={"history": ["50", "181"], "n": 5}, headers=h)
    assert r.status_code == 200 and not {"50", "181"} & {i["item_id"] for i in r.json()["items"]}
    cold = post("/v1/recommend", json={"user_id": "new-user", "n": 3}, headers=h).json()
    assert cold["cold_start"] is True and len(cold["items"]) == 3
    err = assert_error(
        post("/v1/recommend", json={"history": ["50", "nope"]}, headers=h), 422, "unknown_item"
    )
    assert "history[1]" in err["message"] and "nope" in err["message"]
    top = rec_ids(service, "1", 5)
    assert top[0] not in rec_ids(service, "1", 5, filters={"exclude_items": [top[0]]})
    drama = post(
        "/v1/recommend",
        json={"user_id": "1", "n": 5, "filters": {"categories": ["Drama"], "min_year": 1990}},
        headers=h,
    )
    table = service.runtime.served().pipeline.item_table.set_index("item_id")
    for item in drama.json()["items"]:
        assert "Drama" in table.loc[item["item_id"], "categories"]
        assert table.loc[item["item_id"], "year"] >= 1990
    assert_error(post("/v1/recommend", json={"user_id": "1", "n": 0}, headers=h), 422)
    assert_error(post("/v1/recommend", json={"user_id": "1", "bogus": 1}, headers=h), 422)


def test_a_new_visitor_gets_the_popularity_fallback_never_catalogue_order(
    service: Service,
) -> None:
    import numpy as np

    h = service.auth("read")
    pipe = service.runtime.served().pipeline
    # the reference: items by training popularity (ties by catalogue position), model-free
    pop = pipe.stats.log_popularity
    expected = [str(pipe.items.ids[i]) for i in np.lexsort((np.arange(len(pop)), -pop))[:20]]
    assert expected != [str(i) for i in pipe.items.ids[:20]]  # not catalogue order
    for body in ({"n": 20}, {"user_id": "someone-new", "n": 20}, {"history": [], "n": 20}):
        r = service.client.post("/v1/recommend", json=body, headers=h).json()
        assert [i["item_id"] for i in r["items"]] == expected
        assert r["cold_start"] is (body.get("history") is None)
        for item in r["items"]:
            assert item["sources"] == ["fallback:popular"]
            assert "popular" in item["reasons"][0]["detail"]
            assert "model" not in item["reasons"][0]["detail"]
    # a filtered new visitor still gets n items, all passing the filter, in popularity order
    r = service.client.post(
        "/v1/recommend", json={"n": 5, "filters": {"categories": ["Horror"]}}, headers=h
    ).json()
    table = pipe.item_table
    idx = pipe.items.lookup([i["item_id"] for i in r["items"]])
    assert len(idx) == 5 and all("Horror" in table.iloc[int(i)]["categories"] for i in idx)
    assert list(pop[idx]) == sorted(pop[idx], reverse=True)


def test_similar_items_use_the_model_channel_without_text(service: Service) -> None:
    r = service.client.get("/v1/items/50/similar?n=5", headers=service.auth("read"))
    assert r.status_code == 200
    body = r.json()
    assert body["method"] == "model:ease" and len(body["items"]) == 5
    assert "50" not in [i["item_id"] for i in body["items"]]
    assert_error(
        service.client.get("/v1/items/nope/similar", headers=service.auth("read")),
        404,
        "unknown_item",
    )


def test_search_without_text_vectors_is_a_clear_409(service: Service) -> None:
    r = service.client.post("/v1/search", json={"query": "robots"}, headers=service.auth("read"))
    assert "enable [text]" in assert_error(r, 409, "text_disabled")["message"]


# ---- feedback loop ---------------------------------------------------------------------------
def test_click_updates_the_next_recommendation_and_duplicates_are_reported(
    service: Service,
) -> None:
    before = rec_ids(service, "1")
    r = click(service, "1", before[0], "ev-1", position=0, request_id="req-1")
    assert r.status_code == 200 and r.json()["accepted"] == 1 and r.json()["online_updates"] == 1
    after = rec_ids(service, "1")
    assert before[0] not in after and after != before  # the clicked item is now history
    again = click(service, "1", before[0], "ev-1")
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 1
    stored = service.runtime.store.read()
    assert len(stored) == 1 and stored[0].request_id == "req-1" and stored[0].model_version == "v1"
    # impressions are stored but do not change histories
    imp = {"event_id": "imp-1", "user_id": "1", "item_id": after[0], "type": "impression"}
    r = service.client.post("/v1/feedback", json={"events": [imp]}, headers=service.auth())
    assert r.json() == {**r.json(), "accepted": 1, "online_updates": 0}
    assert rec_ids(service, "1") == after


def test_unknown_item_rejects_the_whole_request(service: Service) -> None:
    events = [
        {"event_id": "ok-1", "user_id": "1", "item_id": "50", "type": "click"},
        {"event_id": "bad-1", "user_id": "1", "item_id": "no-such-item", "type": "click"},
    ]
    r = service.client.post(
        "/v1/feedback", json={"events": events}, headers=service.auth("feedback")
    )
    err = assert_error(r, 422, "unknown_item")
    assert "events[1]" in err["message"] and "no-such-item" in err["message"]
    assert service.runtime.store.count() == 0
    bad_type = [{**events[0], "type": "like"}]
    r = service.client.post("/v1/feedback", json={"events": bad_type}, headers=service.auth())
    assert "events[0].type" in assert_error(r, 422, "invalid_request")["message"]


def test_feedback_durability_and_duplicates_on_each_store(
    tmp_path: Path, pipeline_dir: Path, store_url: str
) -> None:
    svc = start_service(tmp_path / "home", pipeline_dir, store_url=store_url)
    events = [
        {
            "event_id": f"d{i}",
            "user_id": "7",
            "item_id": str(10 + i),
            "type": t,
            "timestamp": "2024-05-01T12:00:00Z",
            "value": 4.0 if t == "rating" else None,
        }
        for i, t in enumerate(["click", "purchase", "rating", "impression", "skip"])
    ]
    r = svc.client.post("/v1/feedback", json={"events": events}, headers=svc.auth("feedback"))
    assert r.json()["accepted"] == 5 and r.json()["online_updates"] == 3
    r = svc.client.post(
        "/v1/feedback",
        json={"events": [*events[:2], {**events[0], "event_id": "d9"}]},
        headers=svc.auth("feedback"),
    )
    assert (r.json()["accepted"], r.json()["duplicates"]) == (1, 2)
    svc.runtime.store.close()
    store = FeedbackStore.open(store_url)  # acknowledged means committed
    assert store.count() == 6
    assert store.read()[0].ts == pytest.approx(1714564800.0)
    store.close()


def test_state_survives_a_restart(tmp_path: Path, pipeline_dir: Path) -> None:
    home = tmp_path / "home"
    svc = start_service(home, pipeline_dir)
    top = rec_ids(svc, "3")[0]
    assert click(svc, "3", top, "r-1").status_code == 200
    r = svc.client.post(
        "/v1/items",
        json={
            "items": [
                {"item_id": "brand-new", "title": "Fresh", "categories": ["Drama"], "year": 2030}
            ]
        },
        headers=svc.auth(),
    )
    assert r.json()["added"] == 1
    svc.runtime.store.close()
    again = start_service(home, pipeline_dir)  # same model dir: same version, events replayed
    assert again.runtime.served().version == "v1"
    assert top not in rec_ids(again, "3")
    pipe = again.runtime.served().pipeline
    assert "brand-new" in pipe.items and pipe.item_table.iloc[-1]["title"] == "Fresh"
    again.runtime.store.close()


def test_items_add_and_update(service: Service) -> None:
    h = service.auth("admin")
    r = service.client.post(
        "/v1/items",
        json={
            "items": [
                {"item_id": "x1", "title": "New Film", "categories": ["Drama"], "year": 2025},
                {"item_id": "50", "title": "Star Wars (Special Edition)"},
            ]
        },
        headers=h,
    )
    assert r.status_code == 200 and (r.json()["added"], r.json()["updated"]) == (1, 1)
    pipe = service.runtime.served().pipeline
    row = pipe.item_table.iloc[pipe.items.index_of("50")]
    assert row["title"] == "Star Wars (Special Edition)" and row["year"] == 1977  # kept
    assert click(service, "1", "x1", "c-x1").json()["accepted"] == 1  # now a known item
    dup = {"items": [{"item_id": "d", "title": "a"}, {"item_id": "d", "year": 1}]}
    assert service.client.post("/v1/items", json=dup, headers=h).json()["added"] == 1


# ---- auth ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES)
def test_routes_refuse_missing_wrong_and_unknown_keys(
    service: Service, method: str, path: str, body: Any, scope: str
) -> None:
    r = call(service, method, path, body)
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    wrong = "read" if scope != "read" else "feedback"
    assert_error(call(service, method, path, body, headers=service.auth(wrong)), 403, "forbidden")
    bad = {"Authorization": "Bearer rsk_000000000000_nope"}
    assert_error(call(service, method, path, body, headers=bad), 401, "invalid_key")
    ok = call(service, method, path, body, headers=service.auth(scope))
    assert ok.status_code in (200, 409), ok.text  # 409: search needs text vectors
    assert call(service, method, path, body, headers=service.auth("admin")).status_code < 500


def test_revoked_keys_stop_working_and_rate_limits_apply(
    tmp_path: Path, pipeline_dir: Path
) -> None:
    svc = start_service(tmp_path / "home", pipeline_dir, rate_limit=1.0, rate_burst=2)
    svc.runtime.keyring.ttl = 0
    ok = [call(svc, "GET", "/v1/trending", headers=svc.auth("read")) for _ in range(3)]
    assert [r.status_code for r in ok[:2]] == [200, 200]
    assert_error(ok[2], 429, "rate_limited")
    assert int(ok[2].headers["retry-after"]) >= 1
    name = svc.runtime.store.keys()[-1].name  # the admin key
    svc.runtime.store.revoke_key(name)
    assert_error(call(svc, "GET", "/v1/trending", headers=svc.auth("admin")), 401, "invalid_key")
    svc.runtime.store.close()


def test_auth_can_be_turned_off(tmp_path: Path, pipeline_dir: Path) -> None:
    svc = start_service(tmp_path / "home", pipeline_dir, auth_required=False)
    assert call(svc, "POST", "/v1/recommend", {"user_id": "1"}).status_code == 200
    svc.runtime.store.close()


# ---- errors, limits, CORS, ops ---------------------------------------------------------------
def test_errors_are_json_and_never_leak_tracebacks(
    service: Service, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    c, h = service.client, service.auth("admin")
    assert_error(c.get("/nope"), 404, "not_found")
    assert_error(c.get("/v1/recommend", headers=h), 405, "method_not_allowed")
    bad_json = c.post(
        "/v1/recommend", content=b"{oops", headers={**h, "content-type": "application/json"}
    )
    assert_error(bad_json, 422, "invalid_request")
    pipe = service.runtime.served().pipeline

    def boom(*a: Any, **k: Any) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(pipe, "run", boom)
    monkeypatch.setattr(pipe, "run_many", boom)  # the route's batched path
    with caplog.at_level(logging.ERROR, logger="recsage.serving"):
        r = c.post("/v1/recommend", json={"user_id": "1"}, headers=h)
    err = assert_error(r, 500, "internal_error")
    assert "secret" not in r.text and err["request_id"] == r.headers["x-request-id"]
    assert err["request_id"] in err["message"]
    assert "secret internal detail" in caplog.text and "Traceback" in caplog.text


def test_request_body_limit(tmp_path: Path, pipeline_dir: Path) -> None:
    svc = start_service(tmp_path / "home", pipeline_dir, max_body_bytes=4096)
    big = {"user_id": "1", "history": ["50"] * 1000}
    assert_error(call(svc, "POST", "/v1/recommend", big, headers=svc.auth()), 413)

    def chunks() -> Any:  # no Content-Length: counted while streaming
        yield b'{"user_id": "1", "history": ['
        for _ in range(1000):
            yield b'"50",'
        yield b'"50"]}'

    r = svc.client.post(
        "/v1/recommend",
        content=chunks(),
        headers={**svc.auth(), "content-type": "application/json"},
    )
    assert_error(r, 413, "payload_too_large")
    svc.runtime.store.close()


def test_cors_is_off_by_default_and_opt_in(tmp_path: Path, pipeline_dir: Path) -> None:
    svc = start_service(tmp_path / "a", pipeline_dir)
    pre = {"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"}
    r = svc.client.options("/v1/recommend", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    svc.runtime.store.close()
    svc = start_service(tmp_path / "b", pipeline_dir, cors_origins=["https://shop.example"])
    r = svc.client.options("/v1/recommend", headers=pre)
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    svc.runtime.store.close()


def test_health_ready_version_and_metrics(service: Service) -> None:
    c = service.client
    assert c.get("/healthz").json() == {"status": "ok"}
    assert c.get("/readyz").json() == {"status": "ready", "model_version": "v1", "store": True}
    v = c.get("/version").json()
    assert v["model_version"] == "v1" and v["package_version"] and len(v["data_fingerprint"]) == 16
    assert v["spec"]["channels"][0]["name"] == "ease" and v["n_items"] == 1682
    rec_ids(service, "1")
    click(service, "1", "50", "m-1")
    text = c.get("/metrics").text
    assert 'recsage_http_requests_total{method="POST",route="/v1/recommend",status="200"}' in text
    assert 'recsage_http_request_duration_seconds_bucket{le="0.005",route="/v1/recommend"}' in text
    assert 'recsage_feedback_events_total{type="click"} 1.0' in text
    assert 'recsage_model_info{version="v1"} 1.0' in text
    # the OpenAPI spec is checked against the documented routes in test_openapi.py
    service.runtime.store.close()  # the store is gone: not ready, with a JSON reason
    r = c.get("/readyz")
    assert_error(r, 503, "not_ready")


# ---- retrain, swap, rollback -----------------------------------------------------------------
def test_retrain_swaps_reloads_and_rolls_back(tmp_path: Path, pipeline_dir: Path) -> None:
    """Swap / reload / restart / rollback mechanics; the gate's decision on real held-out
    metrics is tested in test_retrain_gate.py."""
    home = tmp_path / "home"
    svc = start_service(home, pipeline_dir)
    events = []
    for u in range(1, 41):
        for j, item in enumerate(rec_ids(svc, str(u), 3)):
            events.append(
                {
                    "event_id": f"t{u}-{j}",
                    "user_id": str(u),
                    "item_id": item,
                    "type": "click",
                    "timestamp": 1.7e9 + 10 * u + j,
                }
            )
    r = svc.client.post("/v1/feedback", json={"events": events}, headers=svc.auth())
    assert r.json()["accepted"] == 120
    settings = make_settings(home, pipeline_dir)

    old = svc.runtime.served()  # an in-flight request holds this reference
    done = retrain(settings, force=True)
    assert done.swapped and done.new_version == "v2" and done.events_used == 120
    assert done.holdout_users == 40
    assert set(done.metrics) == {"new", "serving"} and done.metrics["new"]["users"] == 40
    r = svc.client.post("/v1/admin/reload", headers=svc.auth())
    assert r.json() == {"model_version": "v2", "changed": True}
    assert svc.client.get("/version").json()["model_version"] == "v2"
    assert old.version == "v1" and len(old.pipeline.run(Query(user="1", n=3))) == 3  # still works
    # the new version was trained on the clicks: they are history, not recommendations
    assert events[0]["item_id"] not in rec_ids(svc, "1")
    assert retrain(settings).reason.startswith("no new training events")
    restarted = start_service(home, pipeline_dir)  # same --model: the retrained v2 stays
    assert restarted.runtime.served().version == "v2"
    restarted.runtime.store.close()

    assert rollback(settings) == ("v2", "v1")
    assert svc.client.post("/v1/admin/reload", headers=svc.auth()).json()["model_version"] == "v1"
    assert events[0]["item_id"] not in rec_ids(svc, "1")  # v1 replays the stored clicks
    log = svc.runtime.store.version_log()
    assert [e["action"] for e in log] == ["promoted", "rollback"]
    svc.runtime.store.close()
