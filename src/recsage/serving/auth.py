"""API keys: random bearer tokens stored as salted SHA-256 digests, per-key scopes and a
per-key token-bucket rate limit.

A key looks like `rsk_<key id>_<secret>`: the public key id finds the record, the 256-bit
secret is checked against `sha256(salt + secret)` with `hmac.compare_digest`. The key is
shown once, when created; the store never holds it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from recsage.errors import ConfigError
from recsage.feedback.store import FeedbackStore, KeyRecord

SCOPES = ("read", "feedback", "admin")
PREFIX = "rsk_"
KEY_ID_LEN = 12


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's name and scopes (`admin` implies every scope)."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


def digest(salt: bytes, secret: str) -> bytes:
    return hashlib.sha256(salt + secret.encode()).digest()


def parse_scopes(text: str | Iterable[str]) -> tuple[str, ...]:
    """Validate a comma-separated scope list."""
    items = text.split(",") if isinstance(text, str) else list(text)
    scopes = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ConfigError(
            f"unknown scope(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(SCOPES)}"
        )
    return scopes


def create_key(store: FeedbackStore, name: str, scopes: str | Iterable[str]) -> str:
    """Create a key named `name`; returns the full key (the only time it is visible)."""
    name = name.strip()
    if not name or len(name) > 100 or any(c.isspace() for c in name):
        raise ConfigError("key name must be 1-100 characters without spaces")
    parsed = parse_scopes(scopes)
    key_id = secrets.token_hex(KEY_ID_LEN // 2)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    store.add_key(KeyRecord(name, key_id, salt, digest(salt, secret), parsed, time.time()))
    return f"{PREFIX}{key_id}_{secret}"


def split_key(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed key, else None."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    rest = token[len(PREFIX) :]
    key_id = rest[:KEY_ID_LEN]
    sep, secret = rest[KEY_ID_LEN : KEY_ID_LEN + 1], rest[KEY_ID_LEN + 1 :]
    if sep != "_" or not secret:
        return None
    return key_id, secret


class KeyRing:
    """Verifies bearer keys against the store, caching records for `ttl` seconds (so a
    revocation takes effect within `ttl`)."""

    def __init__(self, store: FeedbackStore, *, ttl: float = 2.0) -> None:
        self.store = store
        self.ttl = ttl
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._lock = threading.Lock()

    def _record(self, key_id: str) -> KeyRecord | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key_id)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        rec = self.store.key_by_id(key_id)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key_id] = (now, rec)
        return rec

    def verify(self, token: str) -> Principal | None:
        parts = split_key(token)
        if parts is None:
            return None
        key_id, secret = parts
        rec = self._record(key_id)
        if rec is None or rec.revoked_at is not None:
            return None
        if not hmac.compare_digest(digest(rec.salt, secret), rec.digest):
            return None
        return Principal(rec.name, frozenset(rec.scopes))


class RateLimiter:
    """Token bucket per key: `rate` tokens/s, at most `burst` stored; rate 0 disables it."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = float(rate)
        self.burst = float(max(1, burst))
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> tuple[bool, float]:
        """(allowed, seconds until the next token)."""
        if self.rate <= 0:
            return True, 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return True, 0.0
            self._buckets[key] = (tokens, now)
            return False, (1.0 - tokens) / self.rate
