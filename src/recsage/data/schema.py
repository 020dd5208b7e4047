"""Core data types: columnar interactions plus item/user tables and their vocabularies."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsage.data.vocab import Vocabulary
from recsage.errors import DataError

DEFAULT_EVENT = "interaction"


@dataclass
class LoadReport:
    """What a loader did: rows read, rows kept, and rows dropped per reason (never silent)."""

    source: str
    rows_read: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: (file name, column, what it became) for every column of every file read
    columns: list[tuple[str, str, str]] = field(default_factory=list)

    def drop(self, reason: str, count: int) -> None:
        """Record `count` rows dropped for `reason` (no-op for zero)."""
        if count:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(count)

    @property
    def rows_dropped(self) -> int:
        return sum(self.dropped.values())

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        out = [f"{self.source}: read {self.rows_read:,} rows, dropped {self.rows_dropped:,}"]
        out += [f"  dropped {n:,}: {reason}" for reason, n in self.dropped.items()]
        out += [f"  note: {n}" for n in self.notes]
        return out


@dataclass(frozen=True)
class Interactions:
    """Columnar interaction log, sorted by (user, timestamp) with ties kept in input order."""

    user: np.ndarray  # int64 dense user index
    item: np.ndarray  # int64 dense item index
    timestamp: np.ndarray  # float64 seconds (synthetic positions for sequence files)
    value: np.ndarray  # float32 (rating or 1.0)
    event: np.ndarray  # int16 code into event_names
    event_names: tuple[str, ...] = (DEFAULT_EVENT,)

    @classmethod
    def build(
        cls,
        user: np.ndarray,
        item: np.ndarray,
        *,
        timestamp: np.ndarray | None = None,
        value: np.ndarray | None = None,
        event: np.ndarray | None = None,
        event_names: tuple[str, ...] = (DEFAULT_EVENT,),
    ) -> Interactions:
        """Make a sorted interaction log; missing columns get defaults (order, 1.0, first event)."""
        user = np.asarray(user, dtype=np.int64)
        item = np.asarray(item, dtype=np.int64)
        n = len(user)
        if len(item) != n:
            raise DataError("user and item columns differ in length")
        ts = (
            np.arange(n, dtype=np.float64)
            if timestamp is None
            else np.asarray(timestamp, np.float64)
        )
        val = np.ones(n, np.float32) if value is None else np.asarray(value, np.float32)
        ev = np.zeros(n, np.int16) if event is None else np.asarray(event, np.int16)
        order = np.lexsort((np.arange(n), ts, user))
        return cls(user[order], item[order], ts[order], val[order], ev[order], tuple(event_names))

    def __len__(self) -> int:
        return len(self.user)

    def take(self, mask_or_index: np.ndarray) -> Interactions:
        """A subset (boolean mask or index array); sort order is preserved for masks."""
        return Interactions(
            self.user[mask_or_index],
            self.item[mask_or_index],
            self.timestamp[mask_or_index],
            self.value[mask_or_index],
            self.event[mask_or_index],
            self.event_names,
        )

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "user": self.user,
                "item": self.item,
                "timestamp": self.timestamp,
                "value": self.value,
                "event": np.asarray(self.event_names, dtype=object)[self.event],
            }
        )


@dataclass
class Dataset:
    """Interactions + item table (+ user table), with the vocabularies that index them.

    `item_table` is indexed by dense item index and may hold `title`, `year`,
    `categories` (list of str), `text` and any other attribute columns. `user_table`
    likewise by dense user index.
    """

    name: str
    interactions: Interactions
    users: Vocabulary
    items: Vocabulary
    item_table: pd.DataFrame
    user_table: pd.DataFrame | None = None
    report: LoadReport | None = None
    #: training weight per event type (e.g. purchase 3, cart 2, view 1); None = every
    #: interaction weighs 1. `matrix()` then holds, per (user, item), the largest weight.
    event_weights: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if len(self.item_table) != len(self.items):
            raise DataError(
                f"item table has {len(self.item_table)} rows but vocabulary has {len(self.items)}"
            )

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    def with_interactions(self, interactions: Interactions) -> Dataset:
        """The same catalogue and vocabularies over another interaction log."""
        return replace(self, interactions=interactions)

    def interaction_weights(self) -> np.ndarray | None:
        """Per-interaction training weight from `event_weights` (None without weights)."""
        if self.event_weights is None:
            return None
        inter = self.interactions
        table = np.array([self.event_weights.get(n, 1.0) for n in inter.event_names], np.float32)
        return table[inter.event] if len(table) else np.ones(len(inter), np.float32)

    def matrix(self, *, binary: bool | None = None) -> sp.csr_matrix:
        """User x item CSR matrix.

        Default (`binary=None`): 1 per (user, item) pair, or, when the dataset carries
        `event_weights`, the largest weight among the pair's events (a viewed-then-bought
        item weighs as a purchase). `binary=True` forces ones; `binary=False` adds values.
        """
        inter = self.interactions
        weights = self.interaction_weights() if binary is None else None
        if binary is None:
            binary = True
        if weights is not None:
            key = inter.user * np.int64(max(self.n_items, 1)) + inter.item
            order = np.lexsort((weights, key))
            last = np.ones(len(order), bool)
            last[:-1] = key[order][1:] != key[order][:-1]
            sel = order[last]
            return sp.csr_matrix(
                (weights[sel], (inter.user[sel], inter.item[sel])),
                shape=(self.n_users, self.n_items),
                dtype=np.float32,
            )
        data = np.ones(len(inter), np.float32) if binary else inter.value
        m = sp.csr_matrix(
            (data, (inter.user, inter.item)), shape=(self.n_users, self.n_items), dtype=np.float32
        )
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m

    def recency_matrix(self, half_life: float) -> sp.csr_matrix:
        """User x item weights 0.5 ** (steps back from the user's latest interaction / half_life).

        The latest item weighs 1, the one `half_life` interactions earlier 0.5. A repeated
        item keeps its most recent weight. Order-agnostic models scored on this matrix
        favour what the user did last.
        """
        if half_life <= 0:
            raise ValueError("half_life must be > 0")
        inter = self.interactions
        n = len(inter)
        is_last = np.ones(n, bool)
        is_last[:-1] = inter.user[:-1] != inter.user[1:]
        ends = np.flatnonzero(is_last)
        counts = np.diff(np.concatenate([[-1], ends]))
        steps_back = np.repeat(ends, counts) - np.arange(n)
        w = np.power(0.5, steps_back / half_life).astype(np.float32)
        m = sp.coo_matrix((w, (inter.user, inter.item)), shape=(self.n_users, self.n_items))
        out = m.tocsr()  # duplicates would add; take the max instead
        if out.nnz != n:
            key = inter.user * np.int64(self.n_items) + inter.item
            order = np.lexsort((-w, key))
            first = np.ones(n, bool)
            first[1:] = key[order][1:] != key[order][:-1]
            sel = order[first]
            out = sp.csr_matrix(
                (w[sel], (inter.user[sel], inter.item[sel])), shape=(self.n_users, self.n_items)
            )
        return out.astype(np.float32)

    def sequences(self) -> list[np.ndarray]:
        """Per-user item-index sequences in time order (empty arrays for users with none)."""
        inter = self.interactions
        bounds = np.searchsorted(inter.user, np.arange(self.n_users + 1))
        return [inter.item[bounds[u] : bounds[u + 1]] for u in range(self.n_users)]

    def item_popularity(self) -> np.ndarray:
        """Interaction count per item."""
        return np.bincount(self.interactions.item, minlength=self.n_items).astype(np.int64)

    def item_titles(self) -> np.ndarray:
        """Display title per item: the title with its year, e.g. "Heat (1995)" (the id
        where there is no title). The one rule every output uses (CLI, HTTP, chat)."""
        return display_titles(self.item_table, self.items.ids)

    def fingerprint(self) -> str:
        """A short hash of the interactions and vocabularies, stored with trained models."""
        h = hashlib.sha256()
        inter = self.interactions
        for arr in (inter.user, inter.item, inter.timestamp):
            h.update(np.ascontiguousarray(arr).tobytes())
        h.update("\x1f".join(self.items.ids.tolist()).encode())
        h.update("\x1f".join(self.users.ids.tolist()).encode())
        if self.event_weights is not None:  # weights change what models learn
            h.update(repr(sorted(self.event_weights.items())).encode())
            h.update(np.ascontiguousarray(inter.event).tobytes())
        return h.hexdigest()[:16]

    def describe(self) -> dict[str, object]:
        """Counts used in reports."""
        n = len(self.interactions)
        density = n / max(1, self.n_users * self.n_items)
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n,
            "density": round(density, 6),
        }


def display_titles(item_table: pd.DataFrame, ids: np.ndarray) -> np.ndarray:
    """Title per item with "(year)" appended when a year is known and the title does not
    already end with one; the external id where there is no title."""
    n = len(ids)
    if "title" in item_table.columns:
        titles = item_table["title"].iloc[:n].astype(object).to_numpy(copy=True)
        missing = pd.isna(titles)
        titles[missing] = np.asarray(ids, dtype=object)[missing]
    else:
        titles = np.array(ids, dtype=object)
    if "year" in item_table.columns and len(titles):
        years = pd.to_numeric(item_table["year"].iloc[:n], errors="coerce").to_numpy(np.float64)
        text = pd.Series(titles, dtype=object).astype(str)
        add = np.isfinite(years) & ~text.str.contains(r"\(\d{4}\)\s*$", regex=True).to_numpy()
        titles[add] = [f"{t} ({int(y)})" for t, y in zip(titles[add], years[add], strict=True)]
    return titles
