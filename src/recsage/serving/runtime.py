"""The service's live state: the served pipeline (swapped by reference), online updates,
trending counts and the watcher that picks up a new `current` version.

Requests call `Runtime.served()` once and use that `ServedModel` to the end, so a swap
never changes the model under a running request. Feedback and item updates go through
`ingest_lock`: stored first (committed), then applied to the served pipeline; a reload
replays what arrived while the new version was loading under the same lock, so no event
is lost between the old and the new model.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsage.errors import RecsageError
from recsage.feedback.store import TRAINING_TYPES, Event, FeedbackStore, ItemUpdate
from recsage.feedback.versions import ModelVersion, VersionRegistry
from recsage.pipeline.pipeline import Pipeline
from recsage.serving.auth import KeyRing, RateLimiter
from recsage.serving.settings import Settings

log = logging.getLogger("recsage.serving")

ITEM_FIELDS = ("title", "categories", "year", "text")
TRENDING_WEIGHTS = {"click": 1.0, "purchase": 3.0, "rating": 1.0}


class RWLock:
    """Many readers or one writer; waiting writers go first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass
class ServedModel:
    """One loaded version; `lock` guards its pipeline against concurrent mutation."""

    pipeline: Pipeline
    version: str
    info: dict[str, Any]
    loaded_at: float = field(default_factory=time.time)
    lock: RWLock = field(default_factory=RWLock)
    events_applied: int = 0  # store seq of the last event reflected in user histories
    items_applied: int = 0  # store seq of the last item update applied


class Trending:
    """Exponentially decayed interaction counts per item (half-life in seconds)."""

    def __init__(self, half_life: float = 3600.0) -> None:
        self.half_life = half_life
        self._t0 = time.time()
        self._scores: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, item: str, weight: float, ts: float | None = None) -> None:
        t = time.time() if ts is None else min(ts, time.time())
        exponent = (t - self._t0) / self.half_life
        if exponent > 500:  # rebase before the weights overflow
            self._rebase(t)
            exponent = 0.0
        w = weight * math.pow(2.0, max(exponent, -1000))
        with self._lock:
            self._scores[item] = self._scores.get(item, 0.0) + w

    def _rebase(self, t: float) -> None:
        with self._lock:
            f = math.pow(2.0, -(t - self._t0) / self.half_life)
            self._scores = {k: v * f for k, v in self._scores.items() if v * f > 1e-12}
            self._t0 = t

    def top(self, n: int) -> list[tuple[str, float]]:
        """(item, decayed score now) for the top-n items."""
        now_f = math.pow(2.0, -(time.time() - self._t0) / self.half_life)
        with self._lock:
            items = sorted(self._scores.items(), key=lambda kv: -kv[1])[:n]
        return [(k, v * now_f) for k, v in items]


def item_frame(pipe: Pipeline, rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """An `add_items` table for item updates; fields an update leaves out keep their
    current values (known items) or stay empty (new items)."""
    assert pipe.items is not None and pipe.item_table is not None
    cols = [f for f in ITEM_FIELDS if any(f in r for r in rows)]
    ids = [str(r["item_id"]) for r in rows]
    idx = pipe.items.lookup(ids)
    data: dict[str, list[Any]] = {"item_id": ids}
    table = pipe.item_table
    for c in cols:
        values = []
        for r, i in zip(rows, idx, strict=True):
            if c in r:
                values.append(r[c])
            elif i >= 0 and c in table.columns:
                values.append(table.iloc[int(i)][c])
            else:
                values.append(None)
        data[c] = values
    frame = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in data.items()})
    if "year" in frame.columns:
        frame["year"] = pd.array(
            [None if v is None or pd.isna(v) else int(v) for v in frame["year"]], dtype="Int64"
        )
    return frame


def dedupe_updates(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge several updates of one item (later fields win), keeping first-seen order."""
    merged: dict[str, dict[str, Any]] = {}
    for r in rows:
        merged.setdefault(str(r["item_id"]), {}).update(r)
    return list(merged.values())


def record_interactions(pipe: Pipeline, users: Sequence[str], items: Sequence[str]) -> int:
    """`Pipeline.record_interaction` for many events at once (vectorised id lookups, one
    vocabulary extension); unknown items are skipped. Returns how many were skipped."""
    assert pipe.items is not None and pipe.users is not None
    item_idx = pipe.items.lookup(np.array(items, dtype=object))
    ok = item_idx >= 0
    user_ids = np.array(users, dtype=object)[ok]
    item_idx = item_idx[ok]
    if len(user_ids):
        user_idx = pipe.users.lookup(user_ids)
        if (user_idx < 0).any():
            new = pd.unique(pd.Series(user_ids[user_idx < 0]))
            pipe.users = pipe.users.extend(new)
            pipe.sequences.extend(np.zeros(0, np.int64) for _ in range(len(new)))
            user_idx = pipe.users.lookup(user_ids)
        order = np.argsort(user_idx, kind="stable")
        bounds = np.flatnonzero(np.diff(user_idx[order])) + 1
        for chunk in np.split(order, bounds):
            u = int(user_idx[chunk[0]])
            pipe.sequences[u] = np.concatenate([pipe.sequences[u], item_idx[chunk]])
    return int((~ok).sum())


class Runtime:
    """Store, keys, rate limits, trending and the swappable served model of one app."""

    def __init__(self, settings: Settings, store: FeedbackStore) -> None:
        self.settings = settings
        self.store = store
        self.registry = VersionRegistry(settings.models_dir)
        self.keyring = KeyRing(store)
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst)
        self.trending = Trending()
        self.ingest_lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self.get_served: ServedModel | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.on_swap: list[Any] = []

    # ---- the served model -----------------------------------------------------------------
    def served(self) -> ServedModel:
        sm = self.get_served
        if sm is None:
            raise RecsageError("no model is loaded")
        return sm

    @property
    def ready(self) -> bool:
        return self.get_served is not None

    def start(self) -> ServedModel:
        """Register `settings.model_dir` (if given), load the current version, seed trending."""
        if self.settings.model_dir is not None:
            self.registry.ensure_imported(self.settings.model_dir)
        if self.registry.current() is None:
            raise RecsageError(
                f"no model version in {self.registry.root}: start with --model DIR "
                "(a pipeline saved by `recsage train --pipeline`)"
            )
        sm, _ = self.reload(force=True)
        since = time.time() - 24 * self.trending.half_life
        for e in self.store.read(since=since, types=TRAINING_TYPES, limit=200_000):
            self.trending.add(e.item_id, TRENDING_WEIGHTS.get(e.type, 1.0), e.ts)
        return sm

    def load_version(self, version: ModelVersion) -> ServedModel:
        """Load a version and bring it up to date with the store (items, then events)."""
        t0 = time.perf_counter()
        pipe = Pipeline.load(version.pipeline_dir)
        sm = ServedModel(
            pipe,
            version.name,
            version.info,
            events_applied=version.events_through,
            items_applied=version.items_through,
        )
        self._catch_up(sm)
        log.info("loaded model %s in %.2fs", version.name, time.perf_counter() - t0)
        return sm

    def _catch_up(self, sm: ServedModel) -> None:
        updates = self.store.read_items(after_seq=sm.items_applied)
        if updates:
            try:
                self._apply_items(sm, [u.fields for u in updates])
            except Exception:  # a bad stored update must not stop the model from loading
                log.exception("%s: replaying %d item updates failed", sm.version, len(updates))
            sm.items_applied = updates[-1].seq
        events = self.store.read(after_seq=sm.events_applied, types=TRAINING_TYPES)
        skipped = self._apply_events(sm, events)
        if events:
            sm.events_applied = max(int(e.seq or 0) for e in events)
        if skipped:
            log.warning("%s: %d stored events name items it does not know", sm.version, skipped)

    def reload(self, *, force: bool = False) -> tuple[ServedModel, bool]:
        """Load the `current` version if it differs from the served one; swap atomically."""
        with self._swap_lock:
            name = self.registry.current_name()
            sm = self.get_served
            if name is None:
                raise RecsageError("no current model version")
            if sm is not None and sm.version == name and not force:
                return sm, False
            new = self.load_version(self.registry.get(name))
            with self.ingest_lock:  # events that arrived while loading
                self._catch_up(new)
                self.get_served = new
            for hook in self.on_swap:
                hook(new)
            log.info("serving model %s", new.version)
            return new, True

    def start_watcher(self) -> None:
        interval = self.settings.reload_interval
        if interval <= 0 or self._watcher is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.reload()
                except Exception:  # keep serving the old model
                    log.exception("reloading the current model version failed")

        self._watcher = threading.Thread(target=loop, name="recsage-reload", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None

    # ---- online updates -------------------------------------------------------------------
    def _apply_events(self, sm: ServedModel, events: Sequence[Event]) -> int:
        """Append training events to user histories; returns how many were skipped."""
        train = [e for e in events if e.type in TRAINING_TYPES]
        if not train:
            return 0
        with sm.lock.write():
            return record_interactions(
                sm.pipeline, [e.user_id for e in train], [e.item_id for e in train]
            )

    def ingest(self, events: Sequence[Event]) -> tuple[list[Event], int]:
        """Store events durably, then apply the new ones online. Returns (new, applied).

        Once committed, events are acknowledged even if the online update fails (it is
        logged; the events reach the histories at the next load or retrain)."""
        with self.ingest_lock:
            sm = self.served()
            for e in events:
                e.model_version = sm.version
            new = self.store.append_new(events)
            train = [e for e in new if e.type in TRAINING_TYPES]
            try:
                applied = len(train) - self._apply_events(sm, train)
            except Exception:
                log.exception("online update of %d events failed (they are stored)", len(train))
                applied = 0
            if new:
                sm.events_applied = max(sm.events_applied, max(int(e.seq or 0) for e in new))
        for e in train:
            self.trending.add(e.item_id, TRENDING_WEIGHTS.get(e.type, 1.0), e.ts)
        return new, applied

    def _apply_items(self, sm: ServedModel, rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
        rows = dedupe_updates(rows)
        with sm.lock.write():
            frame = item_frame(sm.pipeline, rows)
            return sm.pipeline.add_items(frame)

    def upsert_items(self, rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Store item updates durably, then add them to the served catalogue."""
        with self.ingest_lock:
            sm = self.served()
            item_frame(sm.pipeline, dedupe_updates(rows))  # fails before anything is stored
            seq = self.store.append_items(rows)
            added, updated = self._apply_items(sm, rows)
            sm.items_applied = max(sm.items_applied, seq)
        return added, updated

    def item_updates(self, after_seq: int = 0) -> list[ItemUpdate]:
        return self.store.read_items(after_seq=after_seq)
