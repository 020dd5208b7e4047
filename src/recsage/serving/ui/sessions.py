"""Sign-in sessions of the web page, and its CSRF checks.

Design (why a server-side session and not the key in the browser): the API key is typed
once into the login form, POSTed to `/ui/login`, checked against the key store, and kept
only in this process's memory, next to a random 256-bit session id. The browser holds the
session id in an `HttpOnly; SameSite=Strict; Path=/ui` cookie, so page scripts never see a
key (an injected script could not read it from the DOM, a URL, sessionStorage or the
cookie), and nothing the server renders contains one. Every UI call to the JSON API is
made in-process with the stored key as its bearer token, so the API's own checks (scope,
rate limit, revocation within the key cache's TTL) apply to the page exactly as to any
client. Sessions die with the process (sign in again after a restart).

CSRF: the session cookie is sent automatically, so every state-changing UI request must
carry the session's synchronizer token (`csrf` form field or `X-CSRF-Token` header, compared
in constant time) and, when the browser sends one, an `Origin` equal to the page's own.
The login and demo forms, which come before any session, use a double-submit token: a
random value in a short-lived `SameSite=Strict` cookie that must equal the form field.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi import Request

from recsage.serving.schemas import ApiError

COOKIE = "recsage_ui"
PRE_COOKIE = "recsage_ui_pre"
CSRF_HEADER = "x-csrf-token"
IDLE_SECONDS = 8 * 3600
MAX_SESSIONS = 10_000


@dataclass
class UISession:
    """One signed-in browser. `key` is the API key (None when auth is off); it lives only
    here, in memory, and is never rendered, logged or put in a URL."""

    sid: str
    key: str | None
    name: str
    scopes: frozenset[str]
    demo: bool = False
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    user_id: str | None = None
    chat_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    hidden: list[str] = field(default_factory=list)  # disliked items, hidden in this session
    flash: str | None = None  # a one-time message for the next page
    created: float = field(default_factory=time.time)
    seen: float = field(default_factory=time.time)

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def __repr__(self) -> str:  # never show the key or the session id in logs/tracebacks
        return f"UISession(name={self.name!r}, scopes={sorted(self.scopes)}, user={self.user_id!r})"


class SessionStore:
    """In-memory sessions with an idle timeout and a size cap (oldest dropped first)."""

    def __init__(self, *, idle: float = IDLE_SECONDS, max_sessions: int = MAX_SESSIONS) -> None:
        self.idle = idle
        self.max_sessions = max_sessions
        self._data: OrderedDict[str, UISession] = OrderedDict()
        self._lock = threading.Lock()

    def create(
        self, key: str | None, name: str, scopes: frozenset[str], *, demo: bool = False
    ) -> UISession:
        s = UISession(secrets.token_urlsafe(32), key, name, scopes, demo=demo)
        with self._lock:
            self._data[s.sid] = s
            while len(self._data) > self.max_sessions:
                self._data.popitem(last=False)
        return s

    def get(self, sid: str | None) -> UISession | None:
        if not sid:
            return None
        now = time.time()
        with self._lock:
            s = self._data.get(sid)
            if s is None:
                return None
            if now - s.seen > self.idle:
                del self._data[sid]
                return None
            s.seen = now
            self._data.move_to_end(sid)
            return s

    def drop(self, sid: str | None) -> None:
        with self._lock:
            self._data.pop(sid or "", None)

    def __len__(self) -> int:
        return len(self._data)


def same_token(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two non-empty tokens."""
    if not a or not b:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


def check_origin(request: Request) -> None:
    """Refuse a cross-origin state change (the Origin header, when sent, must be ours)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    host = request.headers.get("host", "")
    if origin == "null" or urlsplit(origin).netloc != host:
        raise ApiError(403, "csrf", "cross-origin request refused")


def check_csrf(request: Request, session: UISession, form_token: str | None = None) -> None:
    """The synchronizer-token check every state-changing UI request passes."""
    check_origin(request)
    token = form_token if form_token is not None else request.headers.get(CSRF_HEADER)
    if not same_token(token, session.csrf):
        raise ApiError(403, "csrf", "missing or wrong CSRF token; reload the page and try again")


def cookie_flags(request: Request) -> dict[str, object]:
    """Cookie attributes: HttpOnly, SameSite=Strict, Path=/ui, Secure over HTTPS."""
    return {
        "httponly": True,
        "samesite": "strict",
        "path": "/ui",
        "secure": request.url.scheme == "https",
    }
