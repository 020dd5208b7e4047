"""The service's live state: the served pipeline (swapped by reference), online updates,
trending counts and the watcher that picks up a new `current` version.

Requests call `Runtime.served()` once and use that `ServedModel` to the end, so a swap
never changes the model under a running request. Feedback goes through `ingest_lock` and
item updates through `items_lock`: stored first (committed), then applied to the served
pipeline; a reload takes both and replays what arrived while the new version was loading,
so no event or item is lost between the old and the new model. Item updates build the
grown catalogue (text vectors included) outside the model's read/write lock and swap it in
under a short write lock, so a bulk add does not stall requests.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from recsage.errors import RecsageError
from recsage.feedback.events import TRAINING_TYPES, trending_weight
from recsage.feedback.store import Event, FeedbackStore, ItemUpdate
from recsage.feedback.updates import dedupe_updates, item_frame
from recsage.feedback.versions import ModelVersion, VersionRegistry
from recsage.pipeline.pipeline import Pipeline
from recsage.serving.auth import KeyRing, RateLimiter
from recsage.settings import Settings

log = logging.getLogger("recsage.serving")
T = TypeVar("T")
BULK_LOG_ITEMS = 200  # item updates this large log progress and encode at low priority


BACKGROUND_NICE = 19  # niceness of the thread that encodes bulk item texts (the lowest)


def run_in_background(fn: Callable[[], T]) -> T:
    """`fn()` on a worker thread at lower CPU priority with one torch thread, so a bulk
    item add leaves the cores to requests first; waits for it and returns its result."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            with contextlib.suppress(OSError, AttributeError):  # Linux: threads have own nice
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
            torch = sys.modules.get("torch")
            if torch is not None:
                torch.set_num_threads(1)  # OpenMP: this thread's setting
            box["value"] = fn()
        except BaseException as exc:  # re-raised on the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, name="recsage-items", daemon=True)
    worker.start()
    worker.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


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
        self.items_lock = threading.Lock()  # taken before ingest_lock, never after
        self._swap_lock = threading.Lock()
        self._served: ServedModel | None = None
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.on_swap: list[Any] = []

    # ---- the served model -----------------------------------------------------------------
    def served(self) -> ServedModel:
        sm = self._served
        if sm is None:
            raise RecsageError("no model is loaded")
        return sm

    @property
    def ready(self) -> bool:
        return self._served is not None

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
            self.trending.add(e.item_id, trending_weight(e.type), e.ts)
        return sm

    def load_version(self, version: ModelVersion) -> ServedModel:
        """Load a version and bring it up to date with the store (items, then events)."""
        t0 = time.perf_counter()
        pipe = Pipeline.open(version.pipeline_dir)
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
        with self._swap_lock, self.items_lock:
            name = self.registry.current_name()
            sm = self._served
            if name is None:
                raise RecsageError("no current model version")
            if sm is not None and sm.version == name and not force:
                return sm, False
            new = self.load_version(self.registry.get(name))
            with self.ingest_lock:  # events that arrived while loading
                self._catch_up(new)
                self._served = new
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
            return sm.pipeline.record_interactions(
                [e.user_id for e in train], [e.item_id for e in train]
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
            self.trending.add(e.item_id, trending_weight(e.type), e.ts)
        return new, applied

    def _apply_items(self, sm: ServedModel, rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Build the grown catalogue (text encoding included) outside `sm.lock`, then swap
        it in under a short write lock. Callers hold `items_lock`, so nothing else changes
        the catalogue between the two."""
        rows = dedupe_updates(rows)
        t0 = time.perf_counter()
        frame = item_frame(sm.pipeline, rows)
        bulk = len(rows) >= BULK_LOG_ITEMS
        if bulk:
            log.info("%s: adding %d items (text encoding outside the lock)", sm.version, len(rows))

        def progress(done: int, total: int) -> None:
            if bulk:
                log.info("%s: encoded %d/%d item texts", sm.version, done, total)

        def prepare() -> Any:
            return sm.pipeline.prepare_items(frame, progress=progress)

        # a bulk add encodes on a low-priority thread; a few items are quicker inline
        prepared = run_in_background(prepare) if bulk else prepare()
        t1 = time.perf_counter()
        with sm.lock.write():
            added, updated = sm.pipeline.commit_items(prepared)
        t2 = time.perf_counter()
        if bulk:
            log.info(
                "%s: %d items added, %d updated (prepared in %.2fs, swapped in %.1f ms)",
                sm.version, added, updated, t1 - t0, (t2 - t1) * 1000,
            )  # fmt: skip
        return added, updated

    def upsert_items(self, rows: Sequence[dict[str, Any]]) -> tuple[int, int]:
        """Store item updates durably, then add them to the served catalogue.

        Holds `items_lock` (one catalogue change at a time, and no reload in between), not
        `ingest_lock`: feedback keeps flowing while a bulk add encodes its texts. If a
        reload swapped models meanwhile, the new one has replayed these updates already."""
        with self.items_lock:
            sm = self.served()
            item_frame(sm.pipeline, dedupe_updates(rows))  # fails before anything is stored
            seq = self.store.append_items(rows)
            added, updated = self._apply_items(sm, rows)
            sm.items_applied = max(sm.items_applied, seq)
        return added, updated

    def item_updates(self, after_seq: int = 0) -> list[ItemUpdate]:
        return self.store.read_items(after_seq=after_seq)
