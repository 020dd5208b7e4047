"""Vocabulary: external ids (strings) <-> dense integer indices, mapped once at the edge."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from recsage.errors import RecsageError


class Vocabulary:
    """An ordered, immutable mapping from external string ids to indices 0..n-1.

    Lookups are vectorized through a pandas Index, so encoding millions of ids costs
    one hash pass, not a Python loop.
    """

    def __init__(self, ids: Iterable[object]) -> None:
        arr = np.asarray([str(x) for x in ids] if not isinstance(ids, np.ndarray) else ids)
        arr = arr.astype(str).astype(object)
        index = pd.Index(arr)
        if not index.is_unique:
            dup = index[index.duplicated()][0]
            raise RecsageError(f"vocabulary ids must be unique; '{dup}' appears more than once")
        self._index = index
        self._ids = index.to_numpy(dtype=object)
        self._ids.flags.writeable = False

    @classmethod
    def from_values(cls, values: Sequence[object] | np.ndarray) -> Vocabulary:
        """Build from raw values in order of first appearance."""
        return cls(pd.unique(pd.Series(np.asarray(values)).astype(str)))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, external_id: object) -> bool:
        return str(external_id) in self._index

    @property
    def ids(self) -> np.ndarray:
        """External ids in index order (read-only object array of str)."""
        return self._ids

    def lookup(self, external_ids: Sequence[object] | np.ndarray) -> np.ndarray:
        """Indices for ids; -1 where an id is unknown."""
        keys = pd.Index(np.asarray(external_ids).astype(str).astype(object))
        return self._index.get_indexer(keys).astype(np.int64)

    def encode(
        self, external_ids: Sequence[object] | np.ndarray, *, what: str = "id"
    ) -> np.ndarray:
        """Indices for ids; raises naming the first unknown id."""
        idx = self.lookup(external_ids)
        if (idx < 0).any():
            bad = np.asarray(external_ids)[idx < 0][0]
            n_bad = int((idx < 0).sum())
            more = f" ({n_bad} unknown in total)" if n_bad > 1 else ""
            raise RecsageError(f"unknown {what} '{bad}'{more}")
        return idx

    def index_of(self, external_id: object, *, what: str = "id") -> int:
        """Index of one id (a hash lookup); raises a clear error if it is unknown."""
        try:
            return int(self._index.get_loc(str(external_id)))
        except KeyError:
            raise RecsageError(f"unknown {what} '{external_id}'") from None

    def decode(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """External ids for indices."""
        return self.ids[np.asarray(indices, dtype=np.int64)]

    def extend(self, external_ids: Iterable[object]) -> Vocabulary:
        """A new vocabulary with unseen ids appended (existing indices unchanged)."""
        new = [str(x) for x in external_ids if str(x) not in self._index]
        return Vocabulary(
            np.concatenate([self.ids, np.asarray(pd.unique(pd.Series(new)), dtype=object)])
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._index.equals(other._index)

    def __hash__(self) -> int:  # pragma: no cover - vocabularies are not dict keys
        return hash(tuple(self.ids[:16]))
