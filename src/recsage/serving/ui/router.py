"""The `/ui` routes: server-rendered pages (Jinja2, autoescaped) plus small JSON endpoints
the page script calls, each a thin layer over the public JSON API (see `api.call`).

Pages: `/ui` (recommendations, feedback buttons, search, chat), `/ui/items/{id}` (an item and
its similar items), `/ui/admin` (versions, promote/rollback, the evaluation report, live
charts, recent errors), `/ui/login`. Every UI response carries a strict Content-Security-
Policy (`script-src 'self'`, no inline script or style), every state change needs the CSRF
token (sessions.py), and no page, URL or log line ever contains an API key.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader

from recsage.errors import RecsageError
from recsage.serving.schemas import ApiError
from recsage.serving.ui import api, chat, stats
from recsage.serving.ui.sessions import (
    COOKIE,
    PRE_COOKIE,
    SessionStore,
    UISession,
    check_csrf,
    check_origin,
    cookie_flags,
    same_token,
)

log = logging.getLogger("recsage.serving.ui")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make forms send Origin: null
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
DEMO_KEY_NAME = "ui-demo"
DEMO_SCOPES = "read,feedback"
ALL_SCOPES = frozenset({"read", "feedback", "admin"})
FEEDBACK_ACTIONS = {"like": ("rating", 5.0), "dislike": ("skip", None), "click": ("click", None)}
REPORT_FIRST = ("hr@10", "ndcg@10", "recall@10", "mrr@10", "coverage@10")
_USER_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,256}$")
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}

TEMPLATES = Environment(
    loader=PackageLoader("recsage.serving.ui", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _load_static() -> dict[str, tuple[bytes, str]]:
    root = resources.files("recsage.serving.ui") / "static"
    out = {}
    for f in root.iterdir():
        suffix = Path(f.name).suffix
        if f.is_file() and suffix in STATIC_TYPES:
            out[f.name] = (f.read_bytes(), STATIC_TYPES[suffix])
    return out


STATIC = _load_static()


# ---- per-app state ---------------------------------------------------------------------------
@dataclass
class UIState:
    sessions: SessionStore = field(default_factory=SessionStore)
    sampler: stats.StatsSampler = field(default_factory=stats.StatsSampler)
    kinds: dict[str, dict[str, str]] = field(default_factory=dict)  # model version -> kinds
    demo_key: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_state_lock = threading.Lock()


def _state(request: Request) -> UIState:
    with _state_lock:
        st = getattr(request.app.state, "ui", None)
        if st is None:
            st = UIState()
            request.app.state.ui = st
            stats.recent_errors()
        return st


def _settings(request: Request) -> Any:
    return request.app.state.runtime.settings


def _session(request: Request) -> UISession | None:
    return _state(request).sessions.get(request.cookies.get(COOKIE))


def _need_session(request: Request, scope: str = "read") -> UISession:
    s = _session(request)
    if s is None:
        raise ApiError(401, "signed_out", "sign in first")
    if not s.allows(scope):
        raise ApiError(403, "forbidden", f"this key lacks the '{scope}' scope")
    return s


# ---- responses -------------------------------------------------------------------------------
def page(name: str, request: Request, code: int = 200, **ctx: Any) -> HTMLResponse:
    """Render `templates/name` (autoescaped); UIRoute adds the security headers."""
    html = TEMPLATES.get_template(name).render(**ctx)
    return HTMLResponse(html, status_code=code)


def _error(request: Request, status: int, code: str, message: str) -> Response:
    if request.url.path.startswith("/ui/api/") or "json" in request.headers.get("accept", ""):
        return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
    if status == 401:
        return RedirectResponse("/ui/login", status_code=303)
    return page("error.html", request, status, status=status, message=message, session=None)


class UIRoute(APIRoute):
    """Adds the security headers to every UI response and turns errors into pages (or
    JSON errors for `/ui/api/...`)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                response = await handler(request)
            except ApiError as exc:
                response = _error(request, exc.status, exc.code, exc.message)
            except api.ApiCallError as exc:
                if exc.status == 401:  # the key was revoked: this session is over
                    _state(request).sessions.drop(request.cookies.get(COOKIE))
                response = _error(request, exc.status, exc.code, exc.message)
            for k, v in SECURITY_HEADERS.items():
                response.headers.setdefault(k, v)
            return response

        return run


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (first value of each field)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype != "application/x-www-form-urlencoded":
        raise ApiError(415, "unsupported_media_type", "send the form urlencoded")
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def _json(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except json.JSONDecodeError:
        raise ApiError(400, "bad_request", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    return data


def _loopback(request: Request) -> bool:
    """The visitor is on this machine and reached us by a loopback name (which also
    rules out DNS rebinding: a foreign page would arrive with its own Host)."""
    client = request.client.host if request.client else ""
    host = urlsplit("//" + request.headers.get("host", "")).hostname or ""
    return (client.startswith("127.") or client == "::1") and host in _LOOPBACK_HOSTS


def _demo_allowed(request: Request) -> bool:
    settings = _settings(request)
    return (not settings.auth_required) or (settings.ui_demo and _loopback(request))


def _signed_in(request: Request, session: UISession) -> RedirectResponse:
    resp = RedirectResponse("/ui", status_code=303)
    resp.set_cookie(COOKIE, session.sid, **cookie_flags(request))  # type: ignore[arg-type]
    resp.delete_cookie(PRE_COOKIE, path="/ui")
    return resp


def _example_users(request: Request, n: int = 6) -> list[str]:
    sm = request.app.state.runtime.served()
    users = sm.pipeline.users
    if users is None or len(users) == 0:
        return []
    ids = [str(u) for u in list(users.ids[: n - 1])]
    return ids if "42" not in users else ["42", *[i for i in ids if i != "42"]][:n]


def _report(settings: Any) -> dict[str, Any] | None:
    """The evaluation report to show: settings.report_dir, else the newest folder under
    $home/reports holding a results.json."""
    folder = settings.report_dir
    if folder is None:
        root = Path(settings.home) / "reports"
        found = sorted(root.glob("**/results.json"), key=lambda p: p.stat().st_mtime)
        folder = found[-1].parent if found else None
    if folder is None or not (Path(folder) / "results.json").exists():
        return None
    folder = Path(folder)
    try:
        data = json.loads((folder / "results.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return {"folder": str(folder), "error": f"results.json is unreadable: {exc}"}
    results = data.get("results", []) if isinstance(data, dict) else []
    cols: list[str] = []
    for r in results:
        for k in r.get("metrics") or {}:
            if "sampled" not in k and k not in cols:
                cols.append(k)
    first = [c for c in REPORT_FIRST if c in cols]
    cols = (first + sorted(c for c in cols if c not in first and c.endswith("@10")))[:6]
    rows = [
        {
            "model": str(r.get("model", "?")),
            "values": [
                f"{r['metrics'][c]:.4f}"
                if isinstance(r.get("metrics", {}).get(c), int | float)
                else "–"
                for c in cols
            ],
        }
        for r in results
    ]
    dataset = data.get("dataset", {}) if isinstance(data, dict) else {}
    return {
        "folder": str(folder),
        "dataset": str(dataset.get("name", "")) if isinstance(dataset, dict) else "",
        "columns": cols,
        "rows": rows,
        "plots": sorted(p.name for p in folder.glob("*.png")),
        "mtime": time.strftime("%Y-%m-%d %H:%M", time.localtime(
            (folder / "results.json").stat().st_mtime)),
    }  # fmt: skip


def _versions(request: Request) -> tuple[list[dict[str, Any]], str | None, str | None]:
    registry = request.app.state.runtime.registry
    current = registry.current_name()
    rows = []
    parent = None
    for v in registry.list():
        metrics = (v.info.get("metrics") or {}).get("new") or {}
        rows.append(
            {
                "name": v.name,
                "created": time.strftime(
                    "%Y-%m-%d %H:%M", time.localtime(float(v.info.get("created_at", 0)))
                ),
                "source": str(v.info.get("source", "")).split(":", 1)[0],
                "parent": v.parent or "",
                "ndcg": f"{metrics['ndcg@10']:.4f}" if "ndcg@10" in metrics else "",
                "current": v.name == current,
            }
        )
        if v.name == current:
            parent = v.parent
    return rows[::-1], current, parent


def _take_flash(session: UISession) -> str | None:
    msg, session.flash = session.flash, None
    return msg


# ---- the router ------------------------------------------------------------------------------
def ui_router() -> APIRouter:
    """The web page's routes, to be included by the app factory."""
    router = APIRouter(prefix="/ui", include_in_schema=False, route_class=UIRoute)

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        hit = STATIC.get(name)
        if hit is None:
            raise ApiError(404, "not_found", "no such file")
        return Response(hit[0], media_type=hit[1], headers={"Cache-Control": "no-cache"})

    # ---- signing in ------------------------------------------------------------------------
    @router.get("/login")
    def login_page(request: Request) -> Response:
        token = secrets.token_urlsafe(32)
        settings = _settings(request)
        resp = page(
            "login.html",
            request,
            csrf=token,
            demo=_demo_allowed(request),
            auth_off=not settings.auth_required,
            error=None,
            session=None,
        )
        resp.set_cookie(PRE_COOKIE, token, max_age=3600, **cookie_flags(request))  # type: ignore[arg-type]
        return resp

    def _check_pre(request: Request, form: dict[str, str]) -> None:
        check_origin(request)
        if not same_token(form.get("csrf"), request.cookies.get(PRE_COOKIE)):
            raise ApiError(403, "csrf", "the sign-in form expired; reload the page")

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await _form(request)
        _check_pre(request, form)
        rt = request.app.state.runtime
        key = form.get("api_key", "").strip()
        principal = rt.keyring.verify(key) if key else None
        if principal is None:
            token = request.cookies.get(PRE_COOKIE, "")
            return page(
                "login.html",
                request,
                401,
                csrf=token,
                demo=_demo_allowed(request),
                auth_off=not rt.settings.auth_required,
                error="That key is unknown or revoked.",
                session=None,
            )
        s = _state(request).sessions.create(key, principal.name, principal.scopes)
        log.info("web page: key '%s' signed in", principal.name)
        return _signed_in(request, s)

    @router.post("/demo")
    async def demo(request: Request) -> Response:
        form = await _form(request)
        _check_pre(request, form)
        if not _demo_allowed(request):
            raise ApiError(
                403,
                "demo_off",
                "demo sign-in needs RECSAGE_UI_DEMO=1 and a visitor on this machine "
                "(http://127.0.0.1:PORT/ui)",
            )
        rt = request.app.state.runtime
        st = _state(request)
        key: str | None = None
        scopes = ALL_SCOPES
        if rt.settings.auth_required:
            from recsage.serving.auth import create_key

            with st.lock:
                if st.demo_key is None or rt.keyring.verify(st.demo_key) is None:
                    rt.store.revoke_key(DEMO_KEY_NAME)
                    st.demo_key = create_key(rt.store, DEMO_KEY_NAME, DEMO_SCOPES)
                key = st.demo_key
            scopes = frozenset(DEMO_SCOPES.split(","))
        s = st.sessions.create(key, DEMO_KEY_NAME, scopes, demo=True)
        users = _example_users(request)
        s.user_id = users[0] if users else None
        return _signed_in(request, s)

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        s = _need_session(request, "read")
        check_csrf(request, s, (await _form(request)).get("csrf"))
        _state(request).sessions.drop(s.sid)
        resp = RedirectResponse("/ui/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/ui")
        return resp

    # ---- visitor pages ---------------------------------------------------------------------
    @router.get("")
    @router.get("/")
    def home(request: Request) -> Response:
        s = _session(request)
        if s is None:
            return RedirectResponse("/ui/login", status_code=303)
        return page(
            "home.html",
            request,
            session=s,
            csrf=s.csrf,
            examples=_example_users(request),
            can_read=s.allows("read"),
            can_feedback=s.allows("feedback"),
        )

    @router.post("/user")
    async def pick_user(request: Request) -> Response:
        s = _need_session(request, "read")
        form = await _form(request)
        check_csrf(request, s, form.get("csrf"))
        if form.get("new"):
            user = f"visitor-{uuid.uuid4().hex[:10]}"
        else:
            user = form.get("user_id", "").strip()
            if not _USER_ID.match(user):
                raise ApiError(422, "bad_user", "a user id is 1-256 printable characters")
        s.user_id = user
        s.hidden = []
        s.chat_id = uuid.uuid4().hex
        return RedirectResponse("/ui", status_code=303)

    @router.get("/items/{item_id:path}")  # ids may contain "/"
    async def item_page(request: Request, item_id: str) -> Response:
        s = _session(request)
        if s is None:
            return RedirectResponse("/ui/login", status_code=303)
        details = api.item_details(request, [item_id]).get(item_id)
        if details is None:
            raise ApiError(404, "unknown_item", "no such item in the catalogue")
        similar: dict[str, Any] = {"items": [], "method": ""}
        similar_error = None
        try:
            similar = await api.call(
                request, s, "GET", f"/v1/items/{quote(item_id, safe='')}/similar",
                params={"n": 8},
            )  # fmt: skip
            api.enrich(request, similar["items"])
        except api.ApiCallError as exc:
            if exc.status == 401:
                raise
            similar_error = exc.message
        return page(
            "item.html",
            request,
            session=s,
            csrf=s.csrf,
            item_id=item_id,
            item=details,
            similar=similar["items"],
            method=similar.get("method", ""),
            similar_error=similar_error,
            can_feedback=s.allows("feedback") and s.user_id is not None,
        )

    # ---- JSON for the page script ----------------------------------------------------------
    @router.post("/api/recommend")
    async def ui_recommend(request: Request) -> Response:
        s = _need_session(request, "read")
        check_csrf(request, s)
        body = await _json(request)
        n = body.get("n", 10)
        if not isinstance(n, int) or not 1 <= n <= 50:
            raise ApiError(422, "bad_request", "n must be an integer in 1..50")
        if s.user_id is None:
            raise ApiError(409, "no_user", "pick a user first")
        req: dict[str, Any] = {"user_id": s.user_id, "n": n}
        if s.hidden:
            req["filters"] = {"exclude_items": s.hidden[-1000:]}
        res = await api.call(request, s, "POST", "/v1/recommend", json=req)
        st = _state(request)
        kinds = st.kinds.get(res["model_version"])
        if kinds is None:
            kinds = api.channel_kinds(await api.call(request, s, "GET", "/version"))
            st.kinds[res["model_version"]] = kinds
        items = api.enrich(request, res["items"])
        for it in items:
            it["kinds"] = [kinds.get(src, "") for src in it["sources"]]
        return JSONResponse(
            {
                "request_id": res["request_id"],
                "model_version": res["model_version"],
                "user_id": res["user_id"],
                "cold_start": res["cold_start"],
                "label": api.list_label(res["cold_start"], items, kinds),
                "hidden": len(s.hidden),
                "items": items,
            }
        )

    @router.post("/api/feedback")
    async def ui_feedback(request: Request) -> Response:
        s = _need_session(request, "feedback")
        check_csrf(request, s)
        body = await _json(request)
        action, item = body.get("action"), body.get("item_id")
        if action not in FEEDBACK_ACTIONS:
            raise ApiError(422, "bad_request", f"action must be one of {sorted(FEEDBACK_ACTIONS)}")
        if not isinstance(item, str) or not item:
            raise ApiError(422, "bad_request", "item_id must be a non-empty string")
        if s.user_id is None:
            raise ApiError(409, "no_user", "pick a user first")
        kind, value = FEEDBACK_ACTIONS[action]
        event: dict[str, Any] = {
            "event_id": f"ui-{uuid.uuid4().hex}",
            "user_id": s.user_id,
            "item_id": item,
            "type": kind,
        }
        if value is not None:
            event["value"] = value
        pos, rid = body.get("position"), body.get("request_id")
        if isinstance(pos, int) and 0 <= pos <= 1_000_000:
            event["position"] = pos
        if isinstance(rid, str) and 0 < len(rid) <= 256:
            event["request_id"] = rid
        res = await api.call(request, s, "POST", "/v1/feedback", json={"events": [event]})
        if action == "dislike" and item not in s.hidden:
            s.hidden.append(item)
        return JSONResponse({"action": action, "type": kind, **res})

    @router.post("/api/search")
    async def ui_search(request: Request) -> Response:
        s = _need_session(request, "read")
        check_csrf(request, s)
        body = await _json(request)
        req: dict[str, Any] = {"query": body.get("query", ""), "n": 10}
        if s.user_id is not None:
            req["user_id"] = s.user_id
        res = await api.call(request, s, "POST", "/v1/search", json=req)
        api.enrich(request, res["items"])
        return JSONResponse(res)

    async def _chat_answer(request: Request, res: dict[str, Any], s: UISession) -> Response:
        api.enrich(request, res["items"])
        conv = chat.find_session(request.app, res["model_version"], s.chat_id)
        res["chips"] = chat.chips(conv) if conv is not None else []
        return JSONResponse(res)

    @router.post("/api/chat")
    async def ui_chat(request: Request) -> Response:
        s = _need_session(request, "read")
        check_csrf(request, s)
        body = await _json(request)
        req: dict[str, Any] = {"session_id": s.chat_id, "message": body.get("message", ""), "n": 5}
        if s.user_id is not None:
            req["user_id"] = s.user_id
        res = await api.call(request, s, "POST", "/v1/chat", json=req)
        return await _chat_answer(request, res, s)

    @router.post("/api/chat/remove")
    async def ui_chat_remove(request: Request) -> Response:
        s = _need_session(request, "read")
        check_csrf(request, s)
        chip = (await _json(request)).get("chip")
        if not isinstance(chip, str):
            raise ApiError(422, "bad_request", "chip must be a chip id string")
        sm = request.app.state.runtime.served()
        conv = chat.find_session(request.app, sm.version, s.chat_id)
        if conv is None:
            raise ApiError(409, "no_conversation", "the conversation has ended; start a new one")
        with sm.lock.read():
            try:
                chat.remove(conv, chip)
            except RecsageError as exc:
                raise ApiError(409, "no_constraint", str(exc)) from None
            turn = conv.turn("")
        items = [
            {"item_id": r.item, "title": r.title, "score": float(r.score), "rank": r.rank}
            for r in turn.recommendations
        ]
        res = {
            "request_id": "",
            "model_version": sm.version,
            "session_id": s.chat_id,
            "understood": turn.understood,
            "items": items,
        }
        return await _chat_answer(request, res, s)

    @router.post("/api/chat/reset")
    async def ui_chat_reset(request: Request) -> Response:
        s = _need_session(request, "read")
        check_csrf(request, s)
        s.chat_id = uuid.uuid4().hex
        return JSONResponse({"session_id": s.chat_id})

    # ---- the operator's page ---------------------------------------------------------------
    @router.get("/admin")
    def admin_page(request: Request) -> Response:
        s = _session(request)
        if s is None:
            return RedirectResponse("/ui/login", status_code=303)
        if not s.allows("admin"):
            raise ApiError(403, "forbidden", "the operator page needs a key with the admin scope")
        rows, current, parent = _versions(request)
        rt = request.app.state.runtime
        served = rt.served()
        return page(
            "admin.html",
            request,
            session=s,
            csrf=s.csrf,
            versions=rows,
            current=current,
            serving=served.version,
            parent=parent,
            report=_report(rt.settings),
            flash=_take_flash(s),
        )

    @router.get("/admin/report/{name}")
    def report_plot(request: Request, name: str) -> Response:
        _need_session(request, "admin")
        report = _report(_settings(request))
        if report is None or name not in report.get("plots", []):
            raise ApiError(404, "not_found", "no such plot in the report")
        data = (Path(report["folder"]) / name).read_bytes()
        return Response(data, media_type="image/png")

    async def _reload(request: Request, s: UISession) -> str:
        res = await api.call(request, s, "POST", "/v1/admin/reload")
        return str(res["model_version"])

    @router.post("/admin/promote")
    async def promote(request: Request) -> Response:
        s = _need_session(request, "admin")
        form = await _form(request)
        check_csrf(request, s, form.get("csrf"))
        rt = request.app.state.runtime
        name = form.get("version", "")
        try:
            rt.registry.set_current(name)
        except RecsageError as exc:
            raise ApiError(404, "unknown_version", str(exc)) from None
        rt.store.log_version(name, "promoted", {"by": f"web page ({s.name})"})
        serving = await _reload(request, s)
        s.flash = f"{name} is now current; serving {serving}."
        return RedirectResponse("/ui/admin", status_code=303)

    @router.post("/admin/rollback")
    async def rollback(request: Request) -> Response:
        s = _need_session(request, "admin")
        form = await _form(request)
        check_csrf(request, s, form.get("csrf"))
        from recsage.feedback.retrain import rollback as do_rollback

        rt = request.app.state.runtime
        try:
            old, new = do_rollback(rt.settings, store=rt.store)
        except RecsageError as exc:
            raise ApiError(409, "no_rollback", str(exc)) from None
        serving = await _reload(request, s)
        s.flash = f"Rolled back from {old} to {new}; serving {serving}."
        return RedirectResponse("/ui/admin", status_code=303)

    @router.get("/api/admin/stats")
    async def admin_stats(request: Request) -> Response:
        s = _need_session(request, "admin")
        text = await api.call(request, s, "GET", "/metrics")
        st = _state(request)
        st.sampler.add(stats.parse_metrics(str(text), time.time()))
        series = st.sampler.series()
        series["points"] = stats.as_rows(series["points"])
        series["recent_errors"] = stats.recent_errors().recent()
        return JSONResponse(series)

    return router
