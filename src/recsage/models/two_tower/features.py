"""Item/user feature matrices and history blocks for the two-tower model."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

_ID_COLUMNS = {"id", "user_id", "item_id", "external_id"}


def default_cache_dir() -> Path:
    """Text-vector cache: `$RECSAGE_CACHE_DIR/embeddings`, else ~/.cache/recsage/embeddings."""
    root = os.environ.get("RECSAGE_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "recsage"
    return base / "embeddings"


@dataclass
class _ItemFeatures:
    """Per-item inputs aligned to the catalogue (numpy; rows grow with `add_items`)."""

    text: np.ndarray | None  # (n, text_dim) float32
    cats: np.ndarray | None  # (n, n_cats) float32, rows sum to 1 (or 0)
    extra: np.ndarray | None  # (n, extra_dim) float32
    present: np.ndarray | None  # (n,) bool: extra vector available
    seen: np.ndarray  # (n,) bool: has training interactions (ID embedding usable)

    def rows(self, idx: np.ndarray) -> dict[str, torch.Tensor | None]:
        def take(a: np.ndarray | None) -> torch.Tensor | None:
            return None if a is None else torch.as_tensor(a[idx])

        return {
            "text": take(self.text),
            "cats": take(self.cats),
            "extra": take(self.extra),
            "present": take(self.present),
        }


def category_matrix(
    item_table: pd.DataFrame, *, max_categories: int = 256, names: Sequence[str] | None = None
) -> tuple[np.ndarray | None, list[str]]:
    """Row-normalized multi-hot (n_items, C) over the `max_categories` most frequent values
    of the `categories` column (or over `names` when given); (None, []) without categories."""
    if "categories" not in item_table.columns:
        return None, []
    lists = [
        [str(c) for c in v] if isinstance(v, list | tuple | np.ndarray) else []
        for v in item_table["categories"].tolist()
    ]
    if names is None:
        counts = pd.Series([c for row in lists for c in row], dtype=object).value_counts()
        names = sorted(counts.index[:max_categories].tolist(), key=str)
    return _multi_hot(lists, list(names)), list(names)


def _multi_hot(lists: Sequence[Sequence[str]], names: list[str]) -> np.ndarray | None:
    if not names:
        return None
    pos = {c: i for i, c in enumerate(names)}
    rows = [i for i, row in enumerate(lists) for c in row if c in pos]
    cols = [pos[c] for row in lists for c in row if c in pos]
    m = np.zeros((len(lists), len(names)), np.float32)
    m[rows, cols] = 1.0
    sums = m.sum(axis=1, keepdims=True)
    return np.divide(m, sums, out=np.zeros_like(m), where=sums > 0)


def user_feature_matrix(
    user_table: pd.DataFrame | None, *, max_values: int = 64
) -> tuple[np.ndarray | None, list[str]]:
    """(n_users, F) int64 codes of categorical user columns (1-based; 0 = missing) and the
    value names ("column=value"). Columns with more than `max_values` distinct values
    (ids, zip codes) are skipped."""
    if user_table is None or len(user_table) == 0:
        return None, []
    names: list[str] = []
    columns: list[np.ndarray] = []
    for col in user_table.columns:
        if str(col) in _ID_COLUMNS or str(col).startswith("_"):
            continue
        values = user_table[col].astype("string")
        uniq = sorted(values.dropna().unique().tolist())
        if not uniq or len(uniq) > max_values:
            continue
        codes = pd.Categorical(values, categories=uniq).codes.astype(np.int64)
        base = len(names)
        columns.append(np.where(codes >= 0, codes + base + 1, 0))
        names += [f"{col}={v}" for v in uniq]
    if not columns:
        return None, []
    return np.stack(columns, axis=1), names


def _flatten(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(seqs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    flat = np.concatenate([np.asarray(s, np.int64) for s in seqs]) if seqs else np.zeros(0)
    return flat.astype(np.int64), offsets


def _history_block(
    flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """(B, L) item indices and mask: column j = the j-th newest item of flat[start:end]."""
    lengths = np.minimum(ends - starts, max_len)
    width = max(1, int(lengths.max(initial=0)))
    ages = np.arange(width)
    idx = ends[:, None] - 1 - ages[None, :]
    mask = ages[None, :] < lengths[:, None]
    items = np.where(mask, flat[np.clip(idx, 0, max(0, len(flat) - 1))] if len(flat) else 0, 0)
    return items.astype(np.int64), mask


def _histories_to_flat(
    histories: sp.spmatrix | Sequence[np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    if sp.issparse(histories):
        m = sp.csr_matrix(histories)
        return np.asarray(m.indices, np.int64), np.asarray(m.indptr, np.int64)
    return _flatten([np.asarray(h, np.int64).ravel() for h in histories])
