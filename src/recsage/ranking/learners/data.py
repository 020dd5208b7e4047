"""RankingData (grouped feature rows + labels) and the feature schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recsage.errors import DataError
from recsage.ranking.losses import (
    group_offsets,
)


def _no_columns() -> np.ndarray:
    return np.zeros((0, 0), dtype=np.int64)


@dataclass(eq=False)
class RankingData:
    """Candidate rows for ranking: features, group (query/user) and label per row.

    - `dense` (n_rows, n_dense) float32, finite (fill missing values upstream);
    - `group` (n_rows,) int64, the rows of one group contiguous;
    - `label` (n_rows,) float32 relevance >= 0 (1 relevant, 0 not), None when predicting;
    - `categorical` (n_rows, n_cat) int64 codes, column j in [0, cardinalities[j]);
    - `item` (n_rows,) int64 candidate item index in [0, n_items);
    - `history` (n_groups, L) int64, each group's last L items, -1 padded on the left.
    """

    dense: np.ndarray
    group: np.ndarray
    label: np.ndarray | None = None
    categorical: np.ndarray = field(default_factory=_no_columns)
    cardinalities: tuple[int, ...] = ()
    item: np.ndarray | None = None
    history: np.ndarray | None = None
    n_items: int = 0
    _offsets: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.dense = np.ascontiguousarray(self.dense, dtype=np.float32)
        if self.dense.ndim != 2:
            raise DataError(f"dense must be 2-d (n_rows, n_dense), got shape {self.dense.shape}")
        n = self.dense.shape[0]
        self.group = self._vector(self.group, "group", np.int64, n)
        self._offsets = group_offsets(self.group)
        if not np.isfinite(self.dense).all():
            bad = ~np.isfinite(self.dense)
            col = int(np.flatnonzero(bad.any(0))[0])
            raise DataError(
                f"dense column {col} has {int(bad[:, col].sum())} non-finite value(s); "
                "fill missing values (and add an indicator column) before ranking"
            )
        if self.label is not None:
            self.label = self._vector(self.label, "label", np.float32, n)
            if not np.isfinite(self.label).all() or (self.label < 0).any():
                raise DataError("label must be finite and >= 0 (1 = relevant, 0 = not)")
        self._check_categorical(n)
        self.n_items = int(self.n_items)
        if (self.item is not None or self.history is not None) and self.n_items <= 0:
            raise DataError("n_items (the item catalogue size) is required with item/history")
        if self.item is not None:
            self.item = self._vector(self.item, "item", np.int64, n)
            if n and (self.item.min() < 0 or self.item.max() >= self.n_items):
                raise DataError(f"item indices must be in [0, {self.n_items})")
        if self.history is not None:
            self.history = np.ascontiguousarray(self.history, dtype=np.int64)
            if self.history.ndim != 2 or self.history.shape[0] != self.n_groups:
                raise DataError(
                    f"history must have shape (n_groups={self.n_groups}, L), "
                    f"got {self.history.shape}"
                )
            if self.history.size and (
                self.history.min() < -1 or self.history.max() >= self.n_items
            ):
                raise DataError(f"history items must be in [0, {self.n_items}) or -1 (padding)")

    @staticmethod
    def _vector(values: Any, name: str, dtype: type, n: int) -> np.ndarray:
        arr: np.ndarray = np.ascontiguousarray(values, dtype=dtype)
        if arr.shape != (n,):
            raise DataError(f"{name} must have shape (n_rows={n},), got {arr.shape}")
        return arr

    def _check_categorical(self, n: int) -> None:
        cat = np.ascontiguousarray(self.categorical, dtype=np.int64)
        if cat.ndim == 2 and cat.shape[1] == 0:
            cat = np.zeros((n, 0), dtype=np.int64)
        if cat.ndim != 2 or cat.shape[0] != n:
            raise DataError(f"categorical must have shape (n_rows={n}, n_cat), got {cat.shape}")
        self.categorical = cat
        self.cardinalities = tuple(int(c) for c in self.cardinalities)
        if len(self.cardinalities) != cat.shape[1]:
            raise DataError(
                f"cardinalities has {len(self.cardinalities)} entries for "
                f"{cat.shape[1]} categorical column(s); give one per column"
            )
        if n and cat.shape[1]:
            lo, hi = cat.min(0), cat.max(0)
            for j, card in enumerate(self.cardinalities):
                if lo[j] < 0 or hi[j] >= card:
                    raise DataError(
                        f"categorical column {j} has codes in [{lo[j]}, {hi[j]}], "
                        f"outside [0, {card}) given by cardinalities[{j}]"
                    )

    @property
    def n_rows(self) -> int:
        """Number of candidate rows."""
        return int(self.dense.shape[0])

    @property
    def n_groups(self) -> int:
        """Number of groups (queries / users)."""
        return len(self._offsets) - 1

    @property
    def n_dense(self) -> int:
        """Number of dense feature columns."""
        return int(self.dense.shape[1])

    def group_bounds(self) -> np.ndarray:
        """Row offsets (n_groups + 1,): group g is rows offsets[g]:offsets[g + 1]."""
        return self._offsets.copy()

    def group_sizes(self) -> np.ndarray:
        """Rows per group (n_groups,)."""
        return np.diff(self._offsets)

    def row_group(self) -> np.ndarray:
        """Group position 0..n_groups-1 of every row (n_rows,)."""
        return np.repeat(np.arange(self.n_groups, dtype=np.int64), self.group_sizes())

    def subset(self, groups_mask: np.ndarray) -> RankingData:
        """The rows (and history) of the selected groups: a bool mask over groups or
        group positions; rows keep their order within each group."""
        sel = np.asarray(groups_mask)
        if sel.dtype == bool:
            if sel.shape != (self.n_groups,):
                raise DataError(f"groups_mask must have shape ({self.n_groups},), got {sel.shape}")
            sel = np.flatnonzero(sel)
        sel = sel.astype(np.int64)
        if sel.size and (sel.min() < 0 or sel.max() >= self.n_groups):
            raise DataError(f"group positions must be in [0, {self.n_groups})")
        rows = rows_of_groups(self._offsets, sel)
        return RankingData(
            dense=self.dense[rows],
            group=self.group[rows],
            label=None if self.label is None else self.label[rows],
            categorical=self.categorical[rows],
            cardinalities=self.cardinalities,
            item=None if self.item is None else self.item[rows],
            history=None if self.history is None else self.history[sel],
            n_items=self.n_items,
        )


def rows_of_groups(offsets: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Row indices of the given group positions, concatenated (vectorized)."""
    starts = offsets[groups]
    sizes = offsets[groups + 1] - starts
    before = np.cumsum(sizes) - sizes
    return np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(before - starts, sizes)


@dataclass
class FeatureSchema:
    """What a fitted ranker expects from the data it scores."""

    n_dense: int
    cardinalities: tuple[int, ...]
    n_items: int
    uses_item: bool
    uses_history: bool

    def check(self, data: RankingData, name: str) -> None:
        """Raise DataError when `data` does not match what the ranker was trained on."""
        if data.n_dense != self.n_dense:
            raise DataError(
                f"{name}: data has {data.n_dense} dense column(s), the ranker was trained "
                f"on {self.n_dense}"
            )
        if len(data.cardinalities) != len(self.cardinalities) or any(
            c > t for c, t in zip(data.cardinalities, self.cardinalities, strict=True)
        ):
            raise DataError(
                f"{name}: categorical cardinalities {data.cardinalities} do not fit the "
                f"trained ones {self.cardinalities} (same columns, each at most as large)"
            )
        if self.uses_item and (data.item is None or data.n_items > self.n_items):
            raise DataError(
                f"{name}: needs `item` indices with n_items <= {self.n_items} "
                f"(got item={'None' if data.item is None else 'given'}, n_items={data.n_items})"
            )
        if self.uses_history and data.history is None:
            raise DataError(f"{name}: needs `history` (n_groups, L) item indices")
