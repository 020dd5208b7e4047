"""Deterministic train/validation/test splits: leave-one-out, temporal, random holdout, k-fold,
cold item, cold user; optionally only some event types as targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsage.data.schema import Dataset, Interactions
from recsage.errors import ConfigError, DataError


@dataclass
class Split:
    """One evaluation setting: what models fit on, and what they must find for which users.

    `history` holds, per user, the items known at query time; those are excluded from the
    ranking. `targets` holds the relevant items. `candidates`, when set, restricts ranking
    to those item indices (e.g. cold items only).
    """

    name: str
    train: Dataset
    users: np.ndarray
    targets: sp.csr_matrix
    history: sp.csr_matrix
    candidates: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)
    #: True when evaluated users' histories are not in `train` (cold users): models must
    #: score from `history` passed at query time.
    query_history: bool = False

    @property
    def n_items(self) -> int:
        return self.train.n_items


@dataclass
class LeaveOneOut:
    """The two LOO settings: tune on `valid`, report on `test`."""

    valid: Split
    test: Split


def _csr(users: np.ndarray, items: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def dedupe_first(dataset: Dataset) -> tuple[Dataset, int]:
    """Keep each (user, item) pair's first interaction; returns the dataset and rows removed.

    Repeated consumption would otherwise put a target among the excluded history items.
    """
    inter = dataset.interactions
    key = inter.user * np.int64(dataset.n_items) + inter.item
    _, first = np.unique(key, return_index=True)
    if len(first) == len(inter):
        return dataset, 0
    keep = np.zeros(len(inter), bool)
    keep[first] = True
    return dataset.with_interactions(inter.take(keep)), int(len(inter) - len(first))


def _position_from_end(user: np.ndarray) -> np.ndarray:
    """For interactions sorted by user, 0 for each user's last row, 1 for the one before..."""
    n = len(user)
    if n == 0:
        return np.zeros(0, np.int64)
    is_last = np.ones(n, bool)
    is_last[:-1] = user[:-1] != user[1:]
    ends = np.flatnonzero(is_last)
    counts = np.diff(np.concatenate([[-1], ends]))
    end_for_row = np.repeat(ends, counts)
    return end_for_row - np.arange(n)


def target_rows(dataset: Dataset, target_events: Sequence[str] | None) -> np.ndarray:
    """Boolean per interaction: may it be an evaluation target (its event type is listed)?"""
    inter = dataset.interactions
    if not target_events:
        return np.ones(len(inter), bool)
    names = list(inter.event_names)
    unknown = [t for t in target_events if t not in names]
    if unknown:
        raise ConfigError(
            f"target event type(s) {', '.join(unknown)} not in dataset '{dataset.name}' "
            f"(its event types: {', '.join(names)})"
        )
    codes = np.array([names.index(t) for t in target_events], np.int16)
    return np.isin(inter.event, codes)


def _pair_reaches_target(dataset: Dataset, is_target: np.ndarray) -> np.ndarray:
    """Per interaction: does any interaction of the same (user, item) pair count as a target?"""
    inter = dataset.interactions
    key = inter.user * np.int64(max(dataset.n_items, 1)) + inter.item
    uniq, inv = np.unique(key, return_inverse=True)
    hit = np.zeros(len(uniq), bool)
    np.logical_or.at(hit, inv, is_target)
    return hit[inv]


def leave_one_out(
    dataset: Dataset, *, dedupe: bool = True, target_events: Sequence[str] | None = None
) -> LeaveOneOut:
    """Per user: last interaction = test target, second-last = validation target.

    The test setting fits on everything but the last item; the validation setting on
    everything but the last two. Users with one interaction only train; users with two
    have a test target but no validation target.

    With `target_events` (e.g. ("purchase",)), repeated (user, item) pairs are merged into
    their first interaction, which counts as a target when any of the pair's events is of
    a listed type. The test target is the user's last such row that has an earlier row;
    the setting fits on the rows before it (later rows are left out: they are the future).
    The validation target is the previous such row, fitted likewise.
    """
    notes: list[str] = []
    reaches = None
    if target_events:
        is_target = target_rows(dataset, target_events)
        reaches = _pair_reaches_target(dataset, is_target)
    if dedupe:
        inter0 = dataset.interactions
        key = inter0.user * np.int64(dataset.n_items) + inter0.item
        _, first = np.unique(key, return_index=True)
        if len(first) < len(inter0):
            keep = np.zeros(len(inter0), bool)
            keep[first] = True
            dataset = dataset.with_interactions(inter0.take(keep))
            reaches = None if reaches is None else reaches[keep]
            notes.append(
                f"{len(inter0) - len(first):,} repeated (user, item) interactions merged into "
                "the first"
            )
    inter = dataset.interactions
    if len(inter) == 0:
        raise DataError(f"dataset '{dataset.name}' has no interactions to split")
    shape = (dataset.n_users, dataset.n_items)
    if reaches is None:
        pos = _position_from_end(inter.user)
        counts = np.bincount(inter.user, minlength=dataset.n_users)
        row_count = counts[inter.user]
        test_rows = (pos == 0) & (row_count >= 2)
        valid_rows = (pos == 1) & (row_count >= 3)
        test_keep = ~test_rows
        valid_keep = ~test_rows & ~valid_rows
    else:
        notes.append(f"targets: {', '.join(target_events or ())} events only")
        test_rows, test_keep = _last_target_rows(inter, reaches, dataset.n_users)
        valid_rows, valid_keep = _last_target_rows(
            inter, reaches & test_keep & ~test_rows, dataset.n_users, within=test_keep
        )
    test_train = dataset.with_interactions(inter.take(test_keep))
    valid_train = dataset.with_interactions(inter.take(valid_keep))

    def make(name: str, train: Dataset, rows: np.ndarray) -> Split:
        users = inter.user[rows]
        return Split(
            name=name,
            train=train,
            users=users,
            targets=_csr(users, inter.item[rows], shape),
            history=train.matrix(),
            notes=list(notes),
        )

    return LeaveOneOut(
        valid=make("loo-valid", valid_train, valid_rows),
        test=make("loo-test", test_train, test_rows),
    )


def _last_target_rows(
    inter: Interactions, eligible: np.ndarray, n_users: int, within: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per user the last `eligible` row having an earlier row (of `within`), and the mask of
    rows strictly before it (users without a target keep all their `within` rows)."""
    n = len(inter)
    within = np.ones(n, bool) if within is None else within
    starts = np.searchsorted(inter.user, np.arange(n_users))
    # rank of each row among the user's `within` rows (0 = the first)
    cum = np.cumsum(within) - within
    rank = cum - cum[starts[inter.user]]
    cand = eligible & within & (rank >= 1)
    last = np.full(n_users, -1, np.int64)
    idx = np.flatnonzero(cand)
    np.maximum.at(last, inter.user[idx], idx)
    rows = np.zeros(n, bool)
    rows[last[last >= 0]] = True
    cut = last[inter.user]
    keep = within & ((cut < 0) | (np.arange(n) < cut))
    return rows, keep


def temporal_split(
    dataset: Dataset,
    *,
    test_fraction: float = 0.2,
    cutoff: float | None = None,
    target_events: Sequence[str] | None = None,
) -> Split:
    """Global time cutoff: interactions after it are targets for users seen before it.

    The cutoff is `cutoff` (epoch seconds) when given, else the time that leaves
    `test_fraction` of the interactions after it. Targets on items never seen before the
    cutoff are dropped (counted in notes); use `cold_item_split` to evaluate those. With
    `target_events`, only interactions of those types after the cutoff are targets.
    """
    inter = dataset.interactions
    if len(inter) == 0:
        raise DataError(f"dataset '{dataset.name}' has no interactions to split")
    if cutoff is None:
        if not 0 < test_fraction < 1:
            raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
        cutoff = float(np.quantile(inter.timestamp, 1 - test_fraction))
    else:
        lo, hi = float(inter.timestamp.min()), float(inter.timestamp.max())
        if not lo <= cutoff < hi:
            raise ConfigError(
                f"cutoff {when_text(cutoff)} is outside the data's time range "
                f"{when_text(lo)} .. {when_text(hi)}: nothing to train on or nothing to test"
            )
    before = inter.timestamp <= cutoff
    train = dataset.with_interactions(inter.take(before))
    seen_users = np.bincount(train.interactions.user, minlength=dataset.n_users) > 0
    seen_items = np.bincount(train.interactions.item, minlength=dataset.n_items) > 0
    after = ~before
    notes = [f"cutoff {when_text(cutoff)}"]
    if target_events:
        is_target = target_rows(dataset, target_events)
        other = int((after & ~is_target).sum())
        after &= is_target
        notes.append(f"targets: {', '.join(target_events)} events only ({other:,} others after "
                     "the cutoff not scored)")  # fmt: skip
    keep = after & seen_users[inter.user] & seen_items[inter.item]
    history = train.matrix()
    # a target already in the history is not a new discovery: drop it
    already = (
        np.asarray(history[inter.user[keep], inter.item[keep]]).ravel() > 0
        if keep.any()
        else np.zeros(0, bool)
    )
    idx = np.flatnonzero(keep)[~already]
    dropped_user = int((after & ~seen_users[inter.user]).sum())
    dropped_item = int((after & seen_users[inter.user] & ~seen_items[inter.item]).sum())
    for n, why in (
        (dropped_user, "by users with no history before the cutoff"),
        (dropped_item, "on items first seen after the cutoff"),
        (int(already.sum()), "repeating an item already in the history"),
    ):
        if n:
            notes.append(f"{n:,} test interactions dropped {why}")
    shape = (dataset.n_users, dataset.n_items)
    targets = _csr(inter.user[idx], inter.item[idx], shape)
    users = np.flatnonzero(np.diff(targets.indptr) > 0)
    return Split("temporal", train, users, targets, history, notes=notes)


def when_text(seconds: float) -> str:
    """A cutoff for people: an ISO date for real epoch times, the number for synthetic ones."""
    if seconds >= 86400 * 365:  # after 1971: a real date
        ts = pd.Timestamp(seconds, unit="s", tz="UTC")
        return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.strftime("%Y-%m-%d %H:%M:%S")
    return f"{seconds:g}"


def parse_cutoff(value: str) -> float:
    """`--cutoff` as epoch seconds: an ISO date/time (UTC) or a number of seconds."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        ts = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise ConfigError(
            f"--cutoff {value!r} is neither a date (e.g. 2024-03-01) nor epoch seconds"
        ) from None
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return float(ts.timestamp())


def _holdout_pool(
    dataset: Dataset, target_events: Sequence[str] | None
) -> tuple[Dataset, np.ndarray, list[str]]:
    """Deduplicated data and which rows may be held out (users keep >= 1 training row)."""
    reaches = None
    if target_events:
        reaches = _pair_reaches_target(dataset, target_rows(dataset, target_events))
    inter0 = dataset.interactions
    key = inter0.user * np.int64(max(dataset.n_items, 1)) + inter0.item
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(len(inter0), bool)
    keep[first] = True
    notes = []
    if len(first) < len(inter0):
        notes.append(f"{len(inter0) - len(first):,} repeated (user, item) interactions merged")
    dataset = dataset.with_interactions(inter0.take(keep))
    pool = np.ones(len(dataset.interactions), bool) if reaches is None else reaches[keep]
    if target_events:
        notes.append(f"targets: {', '.join(target_events)} events only")
    if len(dataset.interactions) == 0:
        raise DataError(f"dataset '{dataset.name}' has no interactions to split")
    return dataset, pool, notes


def _holdout_split(name: str, dataset: Dataset, test: np.ndarray, notes: list[str]) -> Split:
    inter = dataset.interactions
    train = dataset.with_interactions(inter.take(~test))
    shape = (dataset.n_users, dataset.n_items)
    targets = _csr(inter.user[test], inter.item[test], shape)
    users = np.flatnonzero(np.diff(targets.indptr) > 0)
    return Split(name, train, users, targets, train.matrix(), notes=list(notes))


def _fold_ids(dataset: Dataset, pool: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold number per row (-1 = always trains): each user's poolable rows are shuffled and
    dealt round-robin to folds, leaving every user at least one training row per fold."""
    inter = dataset.interactions
    rng = np.random.default_rng(seed)
    n = len(inter)
    fold = np.full(n, -1, np.int64)
    noise = rng.random(n)
    order = np.lexsort((noise, inter.user))
    starts = np.searchsorted(inter.user[order], np.arange(dataset.n_users + 1))
    for u in range(dataset.n_users):
        rows = order[starts[u] : starts[u + 1]]
        if len(rows) < 2:
            continue
        cand = rows[pool[rows]]
        if len(cand) == len(rows):  # keep one row of the user out of every fold
            cand = cand[1:]
        if not len(cand):
            continue
        offset = int(rng.integers(folds))
        fold[cand] = (np.arange(len(cand)) + offset) % folds
    return fold


def random_split(
    dataset: Dataset,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    target_events: Sequence[str] | None = None,
) -> Split:
    """Random holdout: per user with >= 2 distinct items, a seeded `test_fraction` of the
    (deduplicated) interactions become targets, at least one stays in training.

    With `target_events`, only pairs that reach one of those event types are held out.
    """
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    data, pool, notes = _holdout_pool(dataset, target_events)
    inter = data.interactions
    rng = np.random.default_rng(seed)
    test = np.zeros(len(inter), bool)
    order = np.lexsort((rng.random(len(inter)), inter.user))
    starts = np.searchsorted(inter.user[order], np.arange(data.n_users + 1))
    for u in range(data.n_users):
        rows = order[starts[u] : starts[u + 1]]
        if len(rows) < 2:
            continue
        cand = rows[pool[rows]]
        if len(cand) == len(rows):
            cand = cand[1:]
        k = min(len(cand), max(1, round(test_fraction * len(rows))))
        test[cand[:k]] = True
    notes.insert(0, f"random holdout of {test_fraction:.0%} per user (seed {seed})")
    return _holdout_split("random", data, test, notes)


def kfold_splits(
    dataset: Dataset,
    *,
    folds: int = 5,
    seed: int = 0,
    target_events: Sequence[str] | None = None,
) -> list[Split]:
    """`folds` random folds over each user's (deduplicated) interactions.

    Fold f's targets are the rows dealt to f; it trains on everything else. Users with a
    single interaction always train. Every row is a target in at most one fold.
    """
    if folds < 2:
        raise ConfigError(f"--folds must be >= 2, got {folds}")
    data, pool, notes = _holdout_pool(dataset, target_events)
    fold = _fold_ids(data, pool, folds, seed)
    out = []
    for f in range(folds):
        fold_notes = [f"fold {f + 1} of {folds} (seed {seed})", *notes]
        out.append(_holdout_split(f"kfold-{f + 1}/{folds}", data, fold == f, fold_notes))
    return out


#: what each split needs of a user before it can evaluate them
REQUIREMENTS = {
    "loo-test": "leave-one-out evaluates users with at least 2 distinct items",
    "loo-valid": "the leave-one-out validation setting needs users with at least 3 distinct items",
    "temporal": "the temporal split evaluates users active before the cutoff who, after it, "
    "touch a new item that was seen before the cutoff",
    "random": "the random split evaluates users with at least 2 distinct items",
    "cold-item": "the cold-item split evaluates users with history who later touch one of the "
    "newest items",
    "cold-user": "the cold-user split evaluates held-out users with at least 2 interactions",
}


def require_users(
    split: Split, dataset: Dataset, *, minimum: int = 5, path: str | None = None
) -> None:
    """Refuse a split that evaluates fewer than `minimum` users, saying why.

    Metrics over a handful of users are noise (a 9-user HR@10 of 1.0 means nothing), and an
    empty split would print an empty table. `path` (the data file) prefixes the message.
    """
    n = len(split.users)
    if n >= max(1, minimum):
        return
    inter = dataset.interactions
    distinct = np.zeros(dataset.n_users, np.int64)
    if len(inter):
        key = np.unique(inter.user * np.int64(max(dataset.n_items, 1)) + inter.item)
        distinct = np.bincount(key // max(dataset.n_items, 1), minlength=dataset.n_users)
    need = REQUIREMENTS.get(split.name) or (
        REQUIREMENTS["random"] if split.name.startswith("kfold") else ""
    )
    raise DataError(
        f"split '{split.name}' leaves {n} user(s) to evaluate (minimum {minimum}): {need}; "
        f"dataset '{dataset.name}' has {dataset.n_users:,} users, "
        f"{int((distinct >= 2).sum()):,} with >= 2 distinct items, longest history "
        f"{int(distinct.max()) if len(distinct) else 0} item(s)"
        + ("; " + split.notes[-1] if split.notes else ""),
        path=path,
    )


def cold_item_split(dataset: Dataset, *, cold_fraction: float = 0.2) -> Split:
    """The items first seen last (by time, `cold_fraction` of items) are cold.

    Training drops every interaction with a cold item; targets are users' interactions
    with cold items, for users who keep some training history. Candidates are the cold
    items, so the task is "which new item will this user pick".
    """
    if not 0 < cold_fraction < 1:
        raise ConfigError(f"cold_fraction must be in (0, 1), got {cold_fraction}")
    inter = dataset.interactions
    if len(inter) == 0:
        raise DataError(f"dataset '{dataset.name}' has no interactions to split")
    first_seen = np.full(dataset.n_items, np.inf)
    np.minimum.at(first_seen, inter.item, inter.timestamp)
    seen = np.flatnonzero(np.isfinite(first_seen))
    # order by first-seen time, ties by item index: deterministic
    order = seen[np.lexsort((seen, first_seen[seen]))]
    n_cold = max(1, round(cold_fraction * len(order)))
    cold = np.zeros(dataset.n_items, bool)
    cold[order[-n_cold:]] = True
    train = dataset.with_interactions(inter.take(~cold[inter.item]))
    has_history = np.bincount(train.interactions.user, minlength=dataset.n_users) > 0
    rows = cold[inter.item] & has_history[inter.user]
    shape = (dataset.n_users, dataset.n_items)
    targets = _csr(inter.user[rows], inter.item[rows], shape)
    users = np.flatnonzero(np.diff(targets.indptr) > 0)
    notes = [f"{n_cold:,} cold items (first seen last)"]
    return Split(
        "cold-item",
        train,
        users,
        targets,
        train.matrix(),
        candidates=np.flatnonzero(cold),
        notes=notes,
    )


def cold_user_split(
    dataset: Dataset, *, cold_fraction: float = 0.1, n_given: int = 0, seed: int = 0
) -> Split:
    """A random `cold_fraction` of users is held out of training entirely.

    Each cold user's first `n_given` interactions are given at query time (their
    `history`); the last interaction is the target. Users too short for that are skipped.
    """
    if not 0 < cold_fraction < 1:
        raise ConfigError(f"cold_fraction must be in (0, 1), got {cold_fraction}")
    if n_given < 0:
        raise ConfigError(f"n_given must be >= 0, got {n_given}")
    inter = dataset.interactions
    counts = np.bincount(inter.user, minlength=dataset.n_users)
    eligible = np.flatnonzero(counts >= n_given + 1)
    rng = np.random.default_rng(seed)
    n_cold = max(1, round(cold_fraction * len(eligible)))
    cold_users = np.sort(rng.choice(eligible, size=n_cold, replace=False))
    is_cold = np.zeros(dataset.n_users, bool)
    is_cold[cold_users] = True
    train = dataset.with_interactions(inter.take(~is_cold[inter.user]))

    starts = np.searchsorted(inter.user, np.arange(dataset.n_users))
    pos_from_start = np.arange(len(inter)) - starts[inter.user]
    pos_from_end = _position_from_end(inter.user)
    cold_row = is_cold[inter.user]
    given = cold_row & (pos_from_start < n_given)
    target = cold_row & (pos_from_end == 0)
    shape = (dataset.n_users, dataset.n_items)
    history = _csr(inter.user[given], inter.item[given], shape)
    targets = _csr(inter.user[target], inter.item[target], shape)
    notes = [f"{n_cold:,} cold users, {n_given} interaction(s) given at query time"]
    return Split("cold-user", train, cold_users, targets, history, notes=notes, query_history=True)


def given_histories(split: Split) -> list[np.ndarray]:
    """Per evaluated user, the item indices in their query-time history (sorted)."""
    h = split.history
    return [h.indices[h.indptr[u] : h.indptr[u + 1]] for u in split.users]


__all__ = [
    "Interactions",
    "LeaveOneOut",
    "Split",
    "cold_item_split",
    "cold_user_split",
    "dedupe_first",
    "given_histories",
    "kfold_splits",
    "leave_one_out",
    "parse_cutoff",
    "random_split",
    "require_users",
    "target_rows",
    "temporal_split",
]
