"""Retraining from feedback: base histories + stored events → a new version, swapped in only
if it is not worse than the serving one on a recent holdout.

- Base data: the histories saved with the serving version (they already hold every event up
  to its `events_through` cursor) plus item updates stored after its `items_through`.
- New data: click / purchase / rating events after the cursor (impressions and skips are not
  training signal).
- Holdout: among the most recent `settings.holdout_events` training events, each user's last
  interaction (when it is the user's last overall and the user has an earlier one).
- Both pipelines rank for the holdout users from the same histories (everything but the
  holdout); NDCG@10 decides. The candidate is fitted on the same data, so the model that
  was measured is the model that ships (its serving histories then include the holdout).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsage.data.schema import DEFAULT_EVENT, Dataset, Interactions
from recsage.data.vocab import Vocabulary
from recsage.errors import RecsageError
from recsage.feedback.events import TRAINING_TYPES
from recsage.feedback.store import Event, FeedbackStore
from recsage.feedback.updates import dedupe_updates, item_frame
from recsage.feedback.versions import ModelVersion, VersionRegistry
from recsage.pipeline.pipeline import Pipeline
from recsage.settings import Settings
from recsage.types import QueryBatch

EVENT_NAMES = (DEFAULT_EVENT, *TRAINING_TYPES)
K = 10


@dataclass
class RetrainResult:
    """What a retrain did and why."""

    serving_version: str
    new_version: str | None
    swapped: bool
    reason: str
    events_used: int = 0
    holdout_users: int = 0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # new / serving
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def base_pipeline(version: ModelVersion, store: FeedbackStore) -> tuple[Pipeline, int]:
    """The version's pipeline as saved, with stored item updates after its cursor applied;
    returns (pipeline, last item-update seq)."""
    pipe = Pipeline.open(version.pipeline_dir)
    updates = store.read_items(after_seq=version.items_through)
    if updates:
        pipe.add_items(item_frame(pipe, dedupe_updates([u.fields for u in updates])))
        return pipe, updates[-1].seq
    return pipe, version.items_through


def build_dataset(
    pipe: Pipeline, events: list[Event], *, name: str = "feedback"
) -> tuple[Dataset, np.ndarray]:
    """Base histories (synthetic negative timestamps, so they precede every event) + events.

    Returns the dataset and, per (sorted) interaction row, the index of its event in
    `events` (-1 for base rows). Events whose item is unknown are dropped and reported.
    The dataset carries the pipeline's event weights (`Pipeline.event_weights`)."""
    from recsage.data.schema import LoadReport

    assert pipe.items is not None and pipe.users is not None and pipe.item_table is not None
    report = LoadReport(source=name)
    ev_items = pipe.items.lookup(np.array([e.item_id for e in events], dtype=object))
    keep = np.flatnonzero(ev_items >= 0)
    report.drop("event item not in the catalogue", len(events) - len(keep))
    users = pipe.users.extend([events[i].user_id for i in keep])
    lengths = np.array([len(s) for s in pipe.sequences], np.int64)
    base_items = (
        np.concatenate(pipe.sequences).astype(np.int64) if len(lengths) else np.zeros(0, np.int64)
    )
    base_users = np.repeat(np.arange(len(lengths)), lengths)
    # -len..-1 within each user: base rows come before any event (event times are >= 0)
    base_ts = np.arange(len(base_items)) - np.repeat(np.cumsum(lengths), lengths).astype(float)
    kept = [events[i] for i in keep]
    user = np.concatenate([base_users, users.lookup(np.array([e.user_id for e in kept], object))])
    item = np.concatenate([base_items, ev_items[keep]])
    ts = np.concatenate([base_ts, np.array([max(0.0, e.ts) for e in kept], np.float64)])
    value = np.concatenate(
        [
            np.ones(len(base_items), np.float32),
            np.array([1.0 if e.value is None else e.value for e in kept], np.float32),
        ]
    )
    code = np.concatenate(
        [
            np.zeros(len(base_items), np.int16),
            np.array([EVENT_NAMES.index(e.type) for e in kept], np.int16),
        ]
    )
    source = np.concatenate([np.full(len(base_items), -1, np.int64), keep.astype(np.int64)])
    order = np.lexsort((np.arange(len(user)), ts, user))  # the order Interactions.build uses
    inter = Interactions.build(
        user[order],
        item[order],
        timestamp=ts[order],
        value=value[order],
        event=code[order],
        event_names=EVENT_NAMES,
    )
    table = pipe.item_table.reset_index(drop=True)
    # the event weights the pipeline was trained with apply to feedback types of the same
    # name (a shop's "purchase"); other types and the base histories (whose types are not
    # kept) weigh 1
    ds = Dataset(
        name, inter, users, Vocabulary(pipe.items.ids), table, report=report,
        event_weights=pipe.event_weights,
    )  # fmt: skip
    return ds, source[order]


def holdout_rows(dataset: Dataset, recent_codes: np.ndarray) -> np.ndarray:
    """Boolean mask of holdout rows: each user's last row, when that row is a recent event
    (`recent_codes` marks them) and the user has an earlier row whose item differs."""
    inter = dataset.interactions
    n = len(inter)
    if n == 0:
        return np.zeros(0, bool)
    is_last = np.ones(n, bool)
    is_last[:-1] = inter.user[:-1] != inter.user[1:]
    has_prev = np.zeros(n, bool)
    has_prev[1:] = inter.user[1:] == inter.user[:-1]
    mask = is_last & has_prev & recent_codes
    # a target the user already has in the history cannot be recommended again
    for r in np.flatnonzero(mask):
        u = inter.user[r]
        start = np.searchsorted(inter.user, u)
        if inter.item[r] in inter.item[start:r]:
            mask[r] = False
    return mask


def rank_metrics(
    pipe: Pipeline, users: list[str], histories: list[np.ndarray], targets: np.ndarray
) -> dict[str, float]:
    """HR@10 and NDCG@10 of the pipeline's final lists for given histories and targets."""
    assert pipe.users is not None
    if not users:
        return {"hr@10": 0.0, "ndcg@10": 0.0, "users": 0}
    uidx = pipe.users.lookup(np.array(users, dtype=object))
    hits, gains = [], []
    for lo in range(0, len(users), 512):
        sl = slice(lo, lo + 512)
        batch = QueryBatch(uidx[sl], histories[sl], pipe.n_items)
        cands, _ = pipe.run_batch(batch)
        top = cands.items[:, :K]
        match = top == targets[sl, None]
        pos = np.where(match.any(axis=1), match.argmax(axis=1), -1)
        hits.append(pos >= 0)
        gains.append(np.where(pos >= 0, 1.0 / np.log2(np.maximum(pos, 0) + 2.0), 0.0))
    return {
        "hr@10": float(np.concatenate(hits).mean()),
        "ndcg@10": float(np.concatenate(gains).mean()),
        "users": len(users),
    }


def retrain(
    settings: Settings,
    *,
    min_improvement: float | None = None,
    force: bool = False,
    store: FeedbackStore | None = None,
    log: Callable[[str], None] | None = None,
) -> RetrainResult:
    """Fit a new version from the serving one's data plus stored feedback; make it current
    only if its holdout NDCG@10 >= serving's + `min_improvement` (or `force`)."""
    t0 = time.perf_counter()
    own_store = store is None
    store = store or FeedbackStore.open(settings.resolved_store_url)
    try:
        margin = settings.min_improvement if min_improvement is None else min_improvement
        result = _retrain(settings, store, margin=margin, force=force, say=log or (lambda _: None))
    finally:
        if own_store:
            store.close()
    result.seconds = time.perf_counter() - t0
    return result


def _retrain(
    settings: Settings,
    store: FeedbackStore,
    *,
    margin: float,
    force: bool,
    say: Callable[[str], None],
) -> RetrainResult:
    registry = VersionRegistry(settings.models_dir)
    serving_v = registry.current()
    if serving_v is None:
        raise RecsageError(
            f"no serving model version in {registry.root}; start the service with "
            "`recsage serve --model DIR` first"
        )
    serving, items_through = base_pipeline(serving_v, store)
    events = store.read(after_seq=serving_v.events_through, types=TRAINING_TYPES)
    result = RetrainResult(serving_v.name, None, False, "", events_used=len(events))
    if not events and not force:
        result.reason = f"no new training events since {serving_v.name}; nothing to do"
        return result
    say(f"{serving_v.name}: {len(events):,} new training events")
    full, source = build_dataset(serving, events)
    inter = full.interactions
    recent = (source >= 0) & (source >= len(events) - settings.holdout_events)
    hold = holdout_rows(full, recent)
    n_hold = int(hold.sum())
    result.holdout_users = n_hold
    if n_hold < settings.min_holdout_users and not force:
        result.reason = (
            f"only {n_hold} holdout users (need {settings.min_holdout_users}); "
            "collect more feedback or use --force"
        )
        return result
    train = full.with_interactions(inter.take(~hold))
    say(f"fitting a candidate on {len(train.interactions):,} interactions ({n_hold} held out)")
    candidate = Pipeline(serving.spec).fit(train, log=say)
    seqs = train.sequences()
    rows = np.flatnonzero(hold)
    users = [str(full.users.ids[inter.user[r]]) for r in rows]
    histories = [seqs[inter.user[r]] for r in rows]
    targets = inter.item[rows].astype(np.int64)
    m_new = rank_metrics(candidate, users, histories, targets)
    m_old = rank_metrics(serving, users, histories, targets)
    result.metrics = {"new": m_new, "serving": m_old}
    better = m_new["ndcg@10"] >= m_old["ndcg@10"] + margin
    say(
        f"holdout NDCG@10: candidate {m_new['ndcg@10']:.4f}, serving {m_old['ndcg@10']:.4f} "
        f"(required margin {margin:+.4f})"
    )
    if not (better or force):
        result.reason = "the candidate is worse than the serving model on the holdout"
        store.log_version(None, "rejected", {"parent": serving_v.name, **result.to_dict()})
        return result
    # ship what was measured, with full serving histories (holdout included)
    candidate.users = full.users
    candidate.sequences = full.sequences()
    candidate.data_fingerprint = full.fingerprint()
    info = {
        "source": "retrain",
        "parent": serving_v.name,
        "events_through": max([int(e.seq or 0) for e in events], default=serving_v.events_through),
        "items_through": items_through,
        "metrics": result.metrics,
        "data_fingerprint": candidate.data_fingerprint,
    }
    new_v = registry.create(candidate.save, info)
    registry.set_current(new_v.name)
    result.new_version = new_v.name
    result.swapped = True
    result.reason = (
        "forced"
        if force and not better
        else f"candidate NDCG@10 {m_new['ndcg@10']:.4f} >= serving {m_old['ndcg@10']:.4f} "
        f"{margin:+.4f}"
    )
    store.log_version(new_v.name, "promoted", {"parent": serving_v.name, **result.to_dict()})
    return result


def rollback(settings: Settings, *, store: FeedbackStore | None = None) -> tuple[str, str]:
    """Point `current` back at the previous version; returns (from, to)."""
    registry = VersionRegistry(settings.models_dir)
    old, new = registry.rollback()
    own = store is None
    store = store or FeedbackStore.open(settings.resolved_store_url)
    try:
        store.log_version(new.name, "rollback", {"from": old.name})
    finally:
        if own:
            store.close()
    return old.name, new.name
