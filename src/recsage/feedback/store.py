"""`FeedbackStore`: durable, idempotent event log (+ API keys, item updates, version log).

Two back ends behind one interface: embedded SQLite (WAL, synchronous=FULL) and PostgreSQL
(psycopg 3). `append` returns only after the transaction has committed, so an acknowledged
event survives a crash; a repeated `event_id` is ignored and counted as a duplicate. Every
event also gets a store sequence number (`seq`) in commit order, which retraining uses as
its cursor. Schema changes are versioned in the `schema_migrations` table.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from recsage.errors import ConfigError, RecsageError
from recsage.feedback.events import EVENT_TYPES

EVENT_COLUMNS = (
    "event_id",
    "user_id",
    "item_id",
    "type",
    "ts",
    "value",
    "request_id",
    "position",
    "model_version",
    "received_at",
)


class StoreError(RecsageError):
    """The feedback store is unreachable or refused an operation."""


@dataclass
class Event:
    """One feedback event; `ts` and `received_at` are Unix seconds, `seq` is set by the store."""

    event_id: str
    user_id: str
    item_id: str
    type: str
    ts: float
    value: float | None = None
    request_id: str | None = None
    position: int | None = None
    model_version: str | None = None
    received_at: float = field(default_factory=time.time)
    seq: int | None = None

    def row(self) -> tuple[Any, ...]:
        d = asdict(self)
        return tuple(d[c] for c in EVENT_COLUMNS)


@dataclass
class KeyRecord:
    name: str
    key_id: str
    salt: bytes
    digest: bytes
    scopes: tuple[str, ...]
    created_at: float
    revoked_at: float | None = None


@dataclass
class ItemUpdate:
    seq: int
    item_id: str
    fields: dict[str, Any]
    received_at: float


# ---- schema ---------------------------------------------------------------------------
SQLITE_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE,
            user_id TEXT NOT NULL, item_id TEXT NOT NULL, type TEXT NOT NULL,
            ts REAL NOT NULL, value REAL, request_id TEXT, position INTEGER,
            model_version TEXT, received_at REAL NOT NULL)""",
        "CREATE INDEX events_ts ON events (ts)",
        """CREATE TABLE api_keys (
            name TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, salt BLOB NOT NULL,
            digest BLOB NOT NULL, scopes TEXT NOT NULL, created_at REAL NOT NULL,
            revoked_at REAL)""",
        """CREATE TABLE item_updates (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL,
            fields TEXT NOT NULL, received_at REAL NOT NULL)""",
        """CREATE TABLE model_versions (
            id INTEGER PRIMARY KEY AUTOINCREMENT, version TEXT, action TEXT NOT NULL,
            created_at REAL NOT NULL, detail TEXT NOT NULL)""",
    ],
]

POSTGRES_MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE events (
            seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
            event_id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL, item_id TEXT NOT NULL, type TEXT NOT NULL,
            ts DOUBLE PRECISION NOT NULL, value DOUBLE PRECISION, request_id TEXT,
            position INTEGER, model_version TEXT, received_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX events_ts ON events (ts)",
        """CREATE TABLE api_keys (
            name TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, salt BYTEA NOT NULL,
            digest BYTEA NOT NULL, scopes TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
            revoked_at DOUBLE PRECISION)""",
        """CREATE TABLE item_updates (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, item_id TEXT NOT NULL,
            fields TEXT NOT NULL, received_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE model_versions (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, version TEXT,
            action TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, detail TEXT NOT NULL)""",
    ],
]
SCHEMA_VERSION = len(SQLITE_MIGRATIONS)


def _event_from_row(row: Sequence[Any]) -> Event:
    seq, *rest = row
    kw = dict(zip(EVENT_COLUMNS, rest, strict=True))
    return Event(**kw, seq=int(seq))


def _key_from_row(row: Sequence[Any]) -> KeyRecord:
    name, key_id, salt, digest, scopes, created, revoked = row
    return KeyRecord(
        name,
        key_id,
        bytes(salt),
        bytes(digest),
        tuple(s for s in scopes.split(",") if s),
        float(created),
        None if revoked is None else float(revoked),
    )


class FeedbackStore(ABC):
    """Durable event log plus the service's small tables (keys, item updates, versions)."""

    url: str
    placeholder = "?"

    @staticmethod
    def open(url: str) -> FeedbackStore:
        """Open (and migrate) the store for a `sqlite:///path` or `postgresql://` URL."""
        if url.startswith("sqlite:///"):
            return SQLiteStore(url[len("sqlite:///") :])
        if url.startswith(("postgresql://", "postgres://")):
            return PostgresStore(url)
        raise ConfigError(f"unsupported store url {url!r}: use sqlite:///path or postgresql://…")

    # ---- primitives each back end provides ---------------------------------------------
    @abstractmethod
    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """A cursor inside one write transaction (committed on exit, rolled back on error)."""

    @abstractmethod
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only statement."""

    @abstractmethod
    def _insert_events(self, cur: Any, events: Sequence[Event]) -> list[tuple[str, int]]:
        """Insert, skipping known event ids; (event_id, seq) of the rows actually added."""

    @abstractmethod
    def close(self) -> None: ...

    def _sql(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    # ---- events -------------------------------------------------------------------------
    def append(self, events: Sequence[Event]) -> tuple[int, int]:
        """Store events durably; returns (accepted, duplicates)."""
        new = self.append_new(events)
        return len(new), len(events) - len(new)

    def append_new(self, events: Sequence[Event]) -> list[Event]:
        """Store events durably; returns the newly stored ones (with `seq`), in order.

        Returns only after commit. Duplicates (already stored, or repeated in this batch)
        are skipped."""
        if not events:
            return []
        for e in events:
            if e.type not in EVENT_TYPES:
                raise StoreError(f"unknown event type {e.type!r}; known: {', '.join(EVENT_TYPES)}")
        with self._tx() as cur:
            added = dict(self._insert_events(cur, events))
        out = []
        for e in events:
            seq = added.pop(e.event_id, None)
            if seq is not None:
                e.seq = seq
                out.append(e)
        return out

    def read(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        after_seq: int | None = None,
        types: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Events by event time [since, until) and/or store order (seq > after_seq), in seq
        order."""
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("ts >= ?")
            params.append(float(since))
        if until is not None:
            where.append("ts < ?")
            params.append(float(until))
        if after_seq is not None:
            where.append("seq > ?")
            params.append(int(after_seq))
        if types:
            where.append(f"type IN ({', '.join('?' for _ in types)})")
            params += list(types)
        sql = f"SELECT seq, {', '.join(EVENT_COLUMNS)} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_event_from_row(r) for r in self._query(sql, params)]

    def count(self) -> int:
        return int(self._query("SELECT COUNT(*) FROM events")[0][0])

    def max_seq(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(seq), 0) FROM events")[0][0])

    def count_ids(self, event_ids: Sequence[str]) -> dict[str, int]:
        """How many rows each event id has (0 or 1; the crash benchmark checks this)."""
        out = dict.fromkeys(event_ids, 0)
        ids = list(out)
        for lo in range(0, len(ids), 500):
            chunk = ids[lo : lo + 500]
            rows = self._query(
                f"SELECT event_id, COUNT(*) FROM events WHERE event_id IN "
                f"({', '.join('?' for _ in chunk)}) GROUP BY event_id",
                chunk,
            )
            out.update({r[0]: int(r[1]) for r in rows})
        return out

    def ping(self) -> bool:
        try:
            return self._query("SELECT 1")[0][0] == 1
        except Exception:
            return False

    # ---- item updates ---------------------------------------------------------------------
    def append_items(self, rows: Sequence[dict[str, Any]]) -> int:
        """Store item upserts (each a dict with `item_id`); returns the last seq."""
        now = time.time()
        last = 0
        with self._tx() as cur:
            for r in rows:
                cur.execute(
                    self._sql(
                        "INSERT INTO item_updates (item_id, fields, received_at) VALUES (?, ?, ?) "
                        "RETURNING seq"
                    ),
                    (str(r["item_id"]), json.dumps(r, default=str), now),
                )
                last = int(cur.fetchone()[0])
        return last

    def read_items(self, *, after_seq: int = 0) -> list[ItemUpdate]:
        rows = self._query(
            "SELECT seq, item_id, fields, received_at FROM item_updates WHERE seq > ? ORDER BY seq",
            [int(after_seq)],
        )
        return [ItemUpdate(int(s), i, json.loads(f), float(t)) for s, i, f, t in rows]

    def max_item_seq(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(seq), 0) FROM item_updates")[0][0])

    # ---- API keys -------------------------------------------------------------------------
    def add_key(self, rec: KeyRecord) -> None:
        with self._tx() as cur:
            cur.execute(self._sql("SELECT revoked_at FROM api_keys WHERE name = ?"), (rec.name,))
            row = cur.fetchone()
            if row is not None and row[0] is None:
                raise StoreError(f"an active key named '{rec.name}' exists; revoke it first")
            if row is not None:
                cur.execute(self._sql("DELETE FROM api_keys WHERE name = ?"), (rec.name,))
            cur.execute(
                self._sql(
                    "INSERT INTO api_keys (name, key_id, salt, digest, scopes, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?)"
                ),
                (rec.name, rec.key_id, rec.salt, rec.digest, ",".join(rec.scopes), rec.created_at),
            )

    def keys(self) -> list[KeyRecord]:
        rows = self._query(
            "SELECT name, key_id, salt, digest, scopes, created_at, revoked_at FROM api_keys "
            "ORDER BY created_at"
        )
        return [_key_from_row(r) for r in rows]

    def key_by_id(self, key_id: str) -> KeyRecord | None:
        rows = self._query(
            "SELECT name, key_id, salt, digest, scopes, created_at, revoked_at FROM api_keys "
            "WHERE key_id = ?",
            [key_id],
        )
        return _key_from_row(rows[0]) if rows else None

    def revoke_key(self, name: str) -> bool:
        with self._tx() as cur:
            cur.execute(
                self._sql(
                    "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL"
                ),
                (time.time(), name),
            )
            return bool(cur.rowcount)

    # ---- model version log ----------------------------------------------------------------
    def log_version(self, version: str | None, action: str, detail: dict[str, Any]) -> None:
        with self._tx() as cur:
            cur.execute(
                self._sql(
                    "INSERT INTO model_versions (version, action, created_at, detail) "
                    "VALUES (?, ?, ?, ?)"
                ),
                (version, action, time.time(), json.dumps(detail, default=str)),
            )

    def version_log(self) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT version, action, created_at, detail FROM model_versions ORDER BY id"
        )
        return [
            {"version": v, "action": a, "created_at": float(t), "detail": json.loads(d)}
            for v, a, t, d in rows
        ]

    def schema_version(self) -> int:
        return int(self._query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")[0][0])


class SQLiteStore(FeedbackStore):
    """Embedded store: one writer connection and one reader connection (WAL lets readers
    proceed while a commit is being synced)."""

    def __init__(self, path: str) -> None:
        if not path:
            raise ConfigError("sqlite store url needs a path: sqlite:///path/to/feedback.db")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{self.path}"
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._w = self._connect()
        self._r = self._connect()
        self._migrate()

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store {self.path}: {exc}") from None
        return conn

    def _migrate(self) -> None:
        with self._tx() as cur:
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            done = int(cur.fetchone()[0])
            for v, statements in enumerate(SQLITE_MIGRATIONS[done:], start=done + 1):
                for s in statements:
                    cur.execute(s)
                cur.execute("INSERT INTO schema_migrations VALUES (?, ?)", (v, time.time()))

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        with self._wlock:
            cur = self._w.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                if self._w.in_transaction:
                    self._w.execute("ROLLBACK")
                raise
            finally:
                cur.close()

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._rlock:
            return list(self._r.execute(sql, tuple(params)).fetchall())

    def _insert_events(self, cur: Any, events: Sequence[Event]) -> list[tuple[str, int]]:
        sql = (
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in EVENT_COLUMNS)}) "
            "ON CONFLICT (event_id) DO NOTHING RETURNING event_id, seq"
        )
        out = []
        for e in events:
            cur.execute(sql, e.row())
            row = cur.fetchone()
            if row is not None:
                out.append((str(row[0]), int(row[1])))
        return out

    def close(self) -> None:
        with self._wlock, self._rlock:
            self._w.close()
            self._r.close()


class PostgresStore(FeedbackStore):
    """PostgreSQL store (psycopg 3). Inserts take a transaction-level advisory lock, so
    `seq` order is commit order even with several writers."""

    placeholder = "%s"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:  # pragma: no cover - depends on the install
            raise ConfigError(
                "the PostgreSQL store needs psycopg: pip install 'recsage[service]'"
            ) from None
        self._psycopg = psycopg
        self.url = url
        self._lock = threading.Lock()
        self._conn: Any = None
        self._connect()
        self._migrate()

    def _connect(self) -> Any:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            self._conn = self._psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        except self._psycopg.Error as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {exc}".strip()) from None
        return self._conn

    def _migrate(self) -> None:
        with self._tx() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.migrate'))")
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            cur.execute("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            done = int(cur.fetchone()[0])
            for v, statements in enumerate(POSTGRES_MIGRATIONS[done:], start=done + 1):
                for s in statements:
                    cur.execute(s)
                cur.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (v, time.time()))

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        psycopg = self._psycopg
        with self._lock:
            conn = self._connect()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except psycopg.OperationalError as exc:
                conn.close()  # reconnect on the next call; the transaction did not commit
                raise StoreError(f"PostgreSQL unavailable: {exc}".strip()) from None
            except psycopg.Error as exc:
                raise StoreError(f"PostgreSQL refused the operation: {exc}".strip()) from None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._tx() as cur:
            cur.execute(self._sql(sql), tuple(params))
            return list(cur.fetchall())

    def _insert_events(self, cur: Any, events: Sequence[Event]) -> list[tuple[str, int]]:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(current_schema() || '.events'))")
        cols = list(zip(*(e.row() for e in events), strict=True))
        types = [
            "text",
            "text",
            "text",
            "text",
            "float8",
            "float8",
            "text",
            "int4",
            "text",
            "float8",
        ]
        unnest = ", ".join(f"%s::{t}[]" for t in types)
        cur.execute(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
            f"SELECT * FROM unnest({unnest}) ON CONFLICT (event_id) DO NOTHING "
            "RETURNING event_id, seq",
            [list(c) for c in cols],
        )
        return [(str(r[0]), int(r[1])) for r in cur.fetchall()]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
