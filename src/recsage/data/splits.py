"""Deterministic train/validation/test splits (leave-one-out, temporal, cold item, cold user)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
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


def leave_one_out(dataset: Dataset, *, dedupe: bool = True) -> LeaveOneOut:
    """Per user: last interaction = test target, second-last = validation target.

    The test setting fits on everything but the last item; the validation setting on
    everything but the last two. Users with one interaction only train; users with two
    have a test target but no validation target.
    """
    notes: list[str] = []
    if dedupe:
        dataset, removed = dedupe_first(dataset)
        if removed:
            notes.append(f"{removed:,} repeated (user, item) interactions merged into the first")
    inter = dataset.interactions
    if len(inter) == 0:
        raise DataError(f"dataset '{dataset.name}' has no interactions to split")
    pos = _position_from_end(inter.user)
    counts = np.bincount(inter.user, minlength=dataset.n_users)
    row_count = counts[inter.user]
    shape = (dataset.n_users, dataset.n_items)

    test_rows = (pos == 0) & (row_count >= 2)
    valid_rows = (pos == 1) & (row_count >= 3)
    test_train = dataset.with_interactions(inter.take(~test_rows))
    valid_train = dataset.with_interactions(inter.take(~test_rows & ~valid_rows))

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


def temporal_split(dataset: Dataset, *, test_fraction: float = 0.2) -> Split:
    """Global time cutoff: interactions after it are targets for users seen before it.

    Targets on items never seen before the cutoff are dropped (counted in notes); use
    `cold_item_split` to evaluate those.
    """
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    inter = dataset.interactions
    if len(inter) == 0:
        raise DataError(f"dataset '{dataset.name}' has no interactions to split")
    cutoff = float(np.quantile(inter.timestamp, 1 - test_fraction))
    before = inter.timestamp <= cutoff
    train = dataset.with_interactions(inter.take(before))
    seen_users = np.bincount(train.interactions.user, minlength=dataset.n_users) > 0
    seen_items = np.bincount(train.interactions.item, minlength=dataset.n_items) > 0
    after = ~before
    keep = after & seen_users[inter.user] & seen_items[inter.item]
    history = train.matrix()
    # a target already in the history is not a new discovery: drop it
    already = np.asarray(history[inter.user[keep], inter.item[keep]]).ravel() > 0
    idx = np.flatnonzero(keep)[~already]
    notes = [f"cutoff timestamp {cutoff:g}"]
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
    "leave_one_out",
    "temporal_split",
]
