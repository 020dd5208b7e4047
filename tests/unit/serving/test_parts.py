"""Keys, rate limits, settings, the version registry and the runtime's small helpers."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from recsage.errors import ConfigError
from recsage.feedback.store import FeedbackStore
from recsage.feedback.versions import VersionRegistry
from recsage.serving.auth import (
    KeyRing,
    Principal,
    RateLimiter,
    create_key,
    parse_scopes,
    split_key,
)
from recsage.serving.runtime import RWLock, Trending
from recsage.settings import Settings


# ---- keys ------------------------------------------------------------------------------------
def test_keys_are_stored_hashed_and_verified(tmp_path: Path) -> None:
    store = FeedbackStore.open(f"sqlite:///{tmp_path / 'f.db'}")
    key = create_key(store, "app", "read,feedback")
    key_id, secret = split_key(key) or ("", "")
    rec = store.key_by_id(key_id)
    assert rec is not None and secret not in rec.digest.hex() and len(rec.salt) == 16
    raw = (tmp_path / "f.db").read_bytes() + (tmp_path / "f.db-wal").read_bytes()
    assert secret.encode() not in raw  # only the salted hash is stored
    ring = KeyRing(store, ttl=0)
    p = ring.verify(key)
    assert p == Principal("app", frozenset({"read", "feedback"}))
    assert p.allows("read") and not p.allows("admin")
    assert ring.verify(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert ring.verify("rsk_nothing") is None and ring.verify("Bearer x") is None
    store.revoke_key("app")
    assert ring.verify(key) is None
    store.close()


def test_admin_implies_every_scope_and_scopes_are_validated() -> None:
    assert Principal("a", frozenset({"admin"})).allows("feedback")
    assert parse_scopes("read, feedback,read") == ("read", "feedback")
    with pytest.raises(ConfigError, match="unknown scope"):
        parse_scopes("read,write")
    with pytest.raises(ConfigError):
        parse_scopes("")


def test_token_bucket_limits_each_key() -> None:
    lim = RateLimiter(rate=1000.0, burst=3)
    assert [lim.allow("a")[0] for _ in range(4)] == [True, True, True, False]
    assert lim.allow("b")[0]  # another key has its own bucket
    time.sleep(0.01)
    assert lim.allow("a")[0]  # refilled
    assert RateLimiter(rate=0, burst=1).allow("x") == (True, 0.0)


# ---- settings --------------------------------------------------------------------------------
def test_settings_precedence_env_toml_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "s.toml"
    cfg.write_text('[service]\nrate_limit = 5\ncors_origins = ["https://a.example"]\n')
    env = {"RECSAGE_HOME": str(tmp_path), "RECSAGE_RATE_LIMIT": "7", "RECSAGE_CONFIG": str(cfg)}
    s = Settings.load(env=env)
    assert s.rate_limit == 7 and s.cors_origins == ["https://a.example"] and s.home == tmp_path
    assert Settings.load(env=env, rate_limit=9).rate_limit == 9
    assert s.resolved_store_url == f"sqlite:///{(tmp_path / 'feedback.db').resolve()}"
    env2 = {"RECSAGE_CORS_ORIGINS": "https://x, https://y", "RECSAGE_AUTH_REQUIRED": "false"}
    s2 = Settings.load(env=env2, home=tmp_path)
    assert s2.cors_origins == ["https://x", "https://y"] and s2.auth_required is False
    assert Settings.load(env={}, home=tmp_path).cors_origins == []  # CORS off by default


def test_bad_settings_say_which_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rate_limit"):
        Settings.load(env={"RECSAGE_RATE_LIMIT": "fast"}, home=tmp_path)
    with pytest.raises(ConfigError, match="store_url"):
        Settings.load(env={"RECSAGE_STORE_URL": "mysql://x"}, home=tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(tmp_path / "missing.toml", env={})


# ---- versions --------------------------------------------------------------------------------
def _fake_pipeline(d: Path, tag: str) -> Path:
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"tag": tag}))
    (d / "pipeline.toml").write_text("")
    return d


def test_registry_imports_once_points_atomically_and_rolls_back(tmp_path: Path) -> None:
    reg = VersionRegistry(tmp_path / "models")
    a = _fake_pipeline(tmp_path / "a", "a")
    b = _fake_pipeline(tmp_path / "b", "b")
    v1 = reg.ensure_imported(a)
    assert v1.name == "v1" and reg.current_name() == "v1"
    assert reg.ensure_imported(a).name == "v1"  # same source: no new version
    v2 = reg.ensure_imported(b)
    assert v2.name == "v2" and v2.parent == "v1" and (v2.pipeline_dir / "manifest.json").exists()
    assert [p.name for p in reg.root.iterdir() if p.name.startswith(".")] == []  # no temp files
    old, new = reg.rollback()
    assert (old.name, new.name) == ("v2", "v1") and reg.current_name() == "v1"
    with pytest.raises(ConfigError, match="no previous version"):
        reg.rollback()
    with pytest.raises(ConfigError, match="no model version 'v9'"):
        reg.set_current("v9")
    # a known source does not move `current` (a restart keeps a rolled-back version)
    assert reg.ensure_imported(b).name == "v1" and len(reg.list()) == 2


def test_concurrent_creates_get_distinct_versions(tmp_path: Path) -> None:
    reg = VersionRegistry(tmp_path / "models")
    names: list[str] = []

    def make(i: int) -> None:
        v = reg.create(lambda d: _fake_pipeline(d, str(i)), {"parent": None})
        names.append(v.name)

    threads = [threading.Thread(target=make, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(names, key=lambda n: int(n[1:])) == [f"v{i}" for i in range(1, 7)]


# ---- runtime helpers -------------------------------------------------------------------------
def test_trending_decays_and_ranks() -> None:
    t = Trending(half_life=10.0)
    now = time.time()
    t.add("old", 4.0, now - 20)  # two half-lives ago: worth 1
    t.add("new", 2.0, now)
    top = t.top(2)
    assert [k for k, _ in top] == ["new", "old"]
    assert top[1][1] == pytest.approx(1.0, rel=0.05)


def test_rwlock_lets_readers_share_and_writers_wait() -> None:
    lock = RWLock()
    order: list[str] = []
    with lock.read(), lock.read():  # re-entrant for readers when no writer waits
        order.append("readers")

    def writer() -> None:
        with lock.write():
            order.append("writer")

    with lock.read():
        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.05)
        order.append("reader done")
    t.join()
    assert order == ["readers", "reader done", "writer"]


def test_bulk_recording_appends_in_order_and_skips_unknown_items(pipeline_dir: Path) -> None:
    from recsage.pipeline.pipeline import Pipeline

    users = ["1", "new-a", "2", "1", "new-b", "new-a", "3"]
    items = ["50", "181", "nope", "1", "2", "3", "100"]
    pipe = Pipeline.load(pipeline_dir)
    before = {u: pipe.history_of(u).tolist() for u in ("1", "2", "3")}
    n_users = len(pipe.users)  # type: ignore[arg-type]
    assert pipe.record_interactions(users, items) == 1  # the unknown item
    idx = {i: int(pipe.items.index_of(i)) for i in ("50", "181", "1", "2", "3", "100")}  # type: ignore[union-attr]
    assert pipe.history_of("1").tolist() == [*before["1"], idx["50"], idx["1"]]
    assert pipe.history_of("2").tolist() == before["2"]
    assert pipe.history_of("3").tolist() == [*before["3"], idx["100"]]
    assert pipe.history_of("new-a").tolist() == [idx["181"], idx["3"]]
    assert pipe.history_of("new-b").tolist() == [idx["2"]]
    assert list(pipe.users.ids[n_users:]) == ["new-a", "new-b"]  # type: ignore[union-attr]
    assert len(pipe.sequences) == n_users + 2
