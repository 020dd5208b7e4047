"""FeedbackStore on SQLite and PostgreSQL: durability, duplicates, reads, migrations, keys."""

from __future__ import annotations

import threading
import time

import pytest

from recsage.feedback.store import (
    SCHEMA_VERSION,
    Event,
    FeedbackStore,
    KeyRecord,
    SQLiteStore,
    StoreError,
)


def ev(i: int, *, type: str = "click", ts: float | None = None, user: str = "u1") -> Event:
    return Event(f"e{i}", user, f"i{i % 7}", type, 1000.0 + i if ts is None else ts)


def test_append_is_durable_and_ignores_duplicates(store_url: str) -> None:
    store = FeedbackStore.open(store_url)
    assert store.append([ev(1), ev(2), ev(3)]) == (3, 0)
    # one known id, one new, one repeated inside the batch
    assert store.append([ev(2), ev(4), ev(4)]) == (1, 2)
    assert store.count() == 4
    store.close()
    reopened = FeedbackStore.open(store_url)  # what was acknowledged survives a reopen
    events = reopened.read()
    assert [e.event_id for e in events] == ["e1", "e2", "e3", "e4"]
    assert [e.seq for e in events] == sorted({e.seq for e in events})  # unique, increasing
    assert events[0].item_id == "i1" and events[0].type == "click" and events[0].ts == 1001.0
    assert reopened.count_ids(["e1", "e4", "nope"]) == {"e1": 1, "e4": 1, "nope": 0}
    reopened.close()


def test_append_new_returns_stored_events_with_seq(store_url: str) -> None:
    store = FeedbackStore.open(store_url)
    first = store.append_new([ev(1), ev(2)])
    again = store.append_new([ev(2), ev(3)])
    assert [e.event_id for e in first] == ["e1", "e2"]
    assert [e.event_id for e in again] == ["e3"]
    assert again[0].seq is not None and first[1].seq is not None and again[0].seq > first[1].seq
    assert store.max_seq() == again[0].seq
    store.close()


def test_read_by_time_seq_and_type(store_url: str) -> None:
    store = FeedbackStore.open(store_url)
    store.append([ev(1, ts=10), ev(2, ts=20, type="impression"), ev(3, ts=30), ev(4, ts=40)])
    assert [e.event_id for e in store.read(since=20, until=40)] == ["e2", "e3"]
    assert [e.event_id for e in store.read(types=["click"])] == ["e1", "e3", "e4"]
    seq2 = store.read()[1].seq
    assert [e.event_id for e in store.read(after_seq=seq2, limit=1)] == ["e3"]
    store.close()


def test_optional_fields_round_trip(store_url: str) -> None:
    store = FeedbackStore.open(store_url)
    e = Event("r1", "u", "i", "rating", 5.0, value=4.5, request_id="req", position=3)
    e.model_version = "v7"
    store.append([e])
    back = store.read()[0]
    assert (back.value, back.request_id, back.position, back.model_version) == (
        4.5,
        "req",
        3,
        "v7",
    )
    with pytest.raises(StoreError, match="unknown event type"):
        store.append([Event("x", "u", "i", "like", 1.0)])
    store.close()


def test_migrations_are_versioned_and_idempotent(store_url: str) -> None:
    a = FeedbackStore.open(store_url)
    assert a.schema_version() == SCHEMA_VERSION
    a.append([ev(1)])
    a.close()
    b = FeedbackStore.open(store_url)  # opening again applies nothing twice
    assert b.schema_version() == SCHEMA_VERSION and b.count() == 1
    b.close()


def test_concurrent_appends_store_each_event_once(store_url: str) -> None:
    store = FeedbackStore.open(store_url)
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for b in range(5):  # every thread also re-sends the other threads' ids
                store.append([ev(100 * b + j) for j in range(t, t + 10)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected = {f"e{100 * b + j}" for b in range(5) for j in range(13)}
    events = store.read()
    assert {e.event_id for e in events} == expected and len(events) == len(expected)
    assert len({e.seq for e in events}) == len(events)
    store.close()


def test_keys_items_and_version_log(store_url: str) -> None:
    store = FeedbackStore.open(store_url)
    rec = KeyRecord("bob", "abc123", b"salt", b"digest", ("read",), time.time())
    store.add_key(rec)
    with pytest.raises(StoreError, match="active key named 'bob'"):
        store.add_key(rec)
    got = store.key_by_id("abc123")
    assert got is not None and got.scopes == ("read",) and got.salt == b"salt"
    assert store.revoke_key("bob") and not store.revoke_key("bob")
    assert store.key_by_id("abc123").revoked_at is not None  # type: ignore[union-attr]
    seq = store.append_items([{"item_id": "x", "title": "X"}, {"item_id": "y", "year": 2001}])
    ups = store.read_items()
    assert [u.item_id for u in ups] == ["x", "y"] and ups[-1].seq == seq
    assert ups[1].fields == {"item_id": "y", "year": 2001}
    assert store.read_items(after_seq=ups[0].seq)[0].item_id == "y"
    store.log_version("v2", "promoted", {"parent": "v1"})
    assert store.version_log()[-1]["detail"] == {"parent": "v1"}
    assert store.ping()
    store.close()


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = FeedbackStore.open(f"sqlite:///{tmp_path / 'f.db'}")
    assert isinstance(store, SQLiteStore)
    assert store._w.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._w.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_bad_urls_are_refused() -> None:
    from recsage.errors import ConfigError

    with pytest.raises(ConfigError, match="unsupported store url"):
        FeedbackStore.open("mysql://x")
    with pytest.raises(StoreError, match="cannot connect"):
        FeedbackStore.open("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
