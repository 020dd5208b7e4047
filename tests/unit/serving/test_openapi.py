"""The published OpenAPI spec against an independent expectation: the routes, methods and
scopes the README and docs promise, and the fields clients read from each response."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Service

#: (method, path) -> scope a key needs (None: public). The first nine are the README's
#: "Serving" list; trending, chat and admin reload are the service's other routes.
DOCUMENTED: dict[tuple[str, str], str | None] = {
    ("POST", "/v1/recommend"): "read",
    ("GET", "/v1/items/{item_id}/similar"): "read",
    ("POST", "/v1/search"): "read",
    ("POST", "/v1/feedback"): "feedback",
    ("POST", "/v1/items"): "admin",
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/version"): None,
    ("GET", "/metrics"): None,
    ("GET", "/v1/trending"): "read",
    ("POST", "/v1/chat"): "read",
    ("POST", "/v1/admin/reload"): "admin",
}

#: fields of each 200 response that clients (the README's jq lines, the CLI, the docs) read;
#: a nested dict names the fields of the objects in a list
RESPONSE_FIELDS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/recommend"): {
        "request_id": None, "model_version": None, "cold_start": None,
        "items": {"item_id", "title", "score", "rank", "sources", "reasons"},
    },
    ("GET", "/v1/items/{item_id}/similar"): {
        "item_id": None, "method": None, "items": {"item_id", "title", "score", "rank"},
    },
    ("POST", "/v1/search"): {
        "query": None, "personalised": None, "items": {"item_id", "title", "score", "rank"},
    },
    ("POST", "/v1/feedback"): {
        "request_id": None, "accepted": None, "duplicates": None, "online_updates": None,
    },
    ("POST", "/v1/items"): {"added": None, "updated": None, "text_vectors": None},
    ("GET", "/healthz"): {"status": None},
    ("GET", "/readyz"): {"status": None, "model_version": None, "store": None},
    ("GET", "/version"): {
        "package_version": None, "model_version": None, "data_fingerprint": None,
        "spec": None, "n_items": None, "n_users": None,
    },
    ("GET", "/v1/trending"): {"items": {"item_id", "title", "score", "rank"}},
    ("POST", "/v1/admin/reload"): {"model_version": None, "changed": None},
}  # fmt: skip

#: request fields the README's curl examples send
REQUEST_FIELDS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/recommend"): {"user_id": None, "n": None, "history": None},
    ("POST", "/v1/feedback"): {
        "events": {"event_id", "user_id", "item_id", "type", "position", "timestamp"}
    },
    ("POST", "/v1/search"): {"query": None, "user_id": None, "n": None},
}

#: a valid request per protected route, for the scope checks
BODIES: dict[tuple[str, str], tuple[str, Any]] = {
    ("POST", "/v1/recommend"): ("/v1/recommend", {"user_id": "1", "n": 3}),
    ("GET", "/v1/items/{item_id}/similar"): ("/v1/items/50/similar", None),
    ("POST", "/v1/search"): ("/v1/search", {"query": "space"}),
    ("POST", "/v1/feedback"): (
        "/v1/feedback",
        {"events": [{"event_id": "o1", "user_id": "1", "item_id": "50", "type": "click"}]},
    ),
    ("POST", "/v1/items"): ("/v1/items", {"items": [{"item_id": "50", "title": "Star Wars"}]}),
    ("GET", "/v1/trending"): ("/v1/trending", None),
    ("POST", "/v1/chat"): ("/v1/chat", {"session_id": "s1", "message": "a comedy"}),
    ("POST", "/v1/admin/reload"): ("/v1/admin/reload", None),
}


@pytest.fixture
def spec(service: Service) -> dict[str, Any]:
    return dict(service.client.get("/openapi.json").json())


def operations(spec: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): op
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    }


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow $ref / a single-entry anyOf|allOf to the object schema."""
    while True:
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = spec["components"]["schemas"][name]
        elif "allOf" in schema and len(schema["allOf"]) == 1:
            schema = schema["allOf"][0]
        elif "anyOf" in schema:
            non_null = [s for s in schema["anyOf"] if s.get("type") != "null"]
            if len(non_null) != 1:
                return schema
            schema = non_null[0]
        else:
            return schema


def assert_fields(spec: dict[str, Any], schema: dict[str, Any], want: dict[str, Any], where: str):
    obj = resolve(spec, schema)
    props = obj.get("properties", {})
    missing = sorted(set(want) - set(props))
    assert not missing, f"{where}: the spec lacks field(s) {missing}"
    for name, nested in want.items():
        if nested is None:
            continue
        field = resolve(spec, props[name])
        assert field.get("type") == "array", f"{where}.{name} should be a list"
        item_props = resolve(spec, field["items"]).get("properties", {})
        lacking = sorted(set(nested) - set(item_props))
        assert not lacking, f"{where}.{name}[]: the spec lacks field(s) {lacking}"


def test_the_spec_publishes_exactly_the_documented_routes(spec: dict[str, Any]) -> None:
    published = set(operations(spec))
    assert published - set(DOCUMENTED) == set(), "undocumented routes are published"
    assert set(DOCUMENTED) - published == set(), "documented routes are missing from the spec"


def test_protected_routes_declare_bearer_auth_and_public_ones_do_not(
    spec: dict[str, Any],
) -> None:
    for key, op in operations(spec).items():
        schemes = {name for req in op.get("security", []) for name in req}
        if DOCUMENTED[key] is None:
            assert not schemes, f"{key} is public but the spec asks for {schemes}"
        else:
            assert schemes == {"HTTPBearer"}, f"{key} needs a key but the spec says {schemes}"
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_response_models_have_the_fields_clients_read(spec: dict[str, Any]) -> None:
    ops = operations(spec)
    for key, want in RESPONSE_FIELDS.items():
        content = ops[key]["responses"]["200"]["content"]["application/json"]
        assert_fields(spec, content["schema"], want, f"{key} response")
    metrics = ops[("GET", "/metrics")]["responses"]["200"]["content"]
    assert set(metrics) == {"text/plain"}, "Prometheus scrapes text, not JSON"


def test_request_models_accept_what_the_readme_sends(spec: dict[str, Any]) -> None:
    ops = operations(spec)
    for key, want in REQUEST_FIELDS.items():
        body = ops[key]["requestBody"]["content"]["application/json"]["schema"]
        assert_fields(spec, body, want, f"{key} request")
    # errors are JSON objects with a code and a message (what clients branch on)
    for key, op in ops.items():
        if DOCUMENTED[key] is None:
            continue
        err = op["responses"]["401"]["content"]["application/json"]["schema"]
        assert_fields(spec, err, {"error": None}, f"{key} 401")
        detail = resolve(spec, resolve(spec, err)["properties"]["error"])
        assert {"code", "message"} <= set(detail["required"])


def test_the_scopes_the_spec_documents_are_enforced(service: Service) -> None:
    for key, scope in DOCUMENTED.items():
        method = key[0]
        if scope is None:
            path = key[1]
            r = service.client.request(method, path)
            assert r.status_code == 200, f"{key} is public but answered {r.status_code}"
            continue
        path, body = BODIES[key]
        for other in ("read", "feedback"):
            r = service.client.request(method, path, json=body, headers=service.auth(other))
            allowed = other == scope
            assert (r.status_code not in (401, 403)) == allowed, (
                f"{key} with a '{other}' key answered {r.status_code}"
            )
        r = service.client.request(method, path, json=body, headers=service.auth("admin"))
        assert r.status_code not in (401, 403), f"admin is refused by {key}"
        assert service.client.request(method, path, json=body).status_code == 401


def test_route_scopes_read_from_the_routes_match_the_documented_ones() -> None:
    from recsage.serving.routes import route_scopes

    found = route_scopes()
    assert len(found) == len(DOCUMENTED)
    assert {(m, p): s for m, p, s in found} == DOCUMENTED


def test_serve_help_lists_every_setting_and_each_route_scope() -> None:
    from typer.testing import CliRunner

    from recsage.cli.common import app
    from recsage.settings import Settings

    res = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for name in Settings.model_fields:
        assert f"RECSAGE_{name.upper()} (default " in res.output, name
    assert "RECSAGE_RATE_LIMIT (default 50.0): Requests/s per key; 0 = off." in res.output
    assert "RECSAGE_MAX_BODY_BYTES (default 1048576)" in res.output
    assert "RECSAGE_UI_DEMO (default false)" in res.output
    for (method, path), scope in DOCUMENTED.items():
        assert f"{method} {path}: {scope or 'no key'}" in res.output
