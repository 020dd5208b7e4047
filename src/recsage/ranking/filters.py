"""Business filters inside ranking: which items a request may receive.

`blocked_items` turns an `ItemFilter` into one boolean mask over the catalogue (vectorised
over the item table); retrieval never returns a blocked item and `drop_blocked` removes any
that a channel without exclusion support let through, so filtered requests need no
over-fetching.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsage.data.vocab import Vocabulary
from recsage.types import CandidateBatch, ItemFilter


def blocked_items(
    flt: ItemFilter, items: Vocabulary, item_table: pd.DataFrame | None
) -> np.ndarray | None:
    """(n_items,) True for items the filter rules out; None when it rules out nothing."""
    if not flt.active:
        return None
    n = len(items)
    allowed = np.ones(n, bool)
    if flt.categories is not None:
        allowed &= _in_categories(item_table, n, set(flt.categories))
    if flt.min_year is not None or flt.max_year is not None:
        year = _years(item_table, n)
        known = ~np.isnan(year)
        allowed &= known
        if flt.min_year is not None:
            allowed &= np.where(known, year >= flt.min_year, False)
        if flt.max_year is not None:
            allowed &= np.where(known, year <= flt.max_year, False)
    if flt.exclude:
        idx = items.lookup(list(flt.exclude))
        allowed[idx[idx >= 0]] = False
    return ~allowed


def drop_blocked(cands: CandidateBatch, blocked: np.ndarray | None) -> CandidateBatch:
    """Empty the slots holding blocked items (in place; scores of empty slots become NaN)."""
    if blocked is None:
        return cands
    hit = cands.valid & blocked[np.maximum(cands.items, 0)]
    if hit.any():
        cands.items[hit] = -1
        for col in cands.scores.values():
            col[hit] = np.nan
    return cands


def _in_categories(table: pd.DataFrame | None, n: int, wanted: set[str]) -> np.ndarray:
    if table is None or "categories" not in table.columns:
        return np.zeros(n, bool)
    cats = table["categories"].iloc[:n]
    exploded = cats.explode()
    hit = exploded.isin(wanted).groupby(level=0, sort=False).any()
    out = np.zeros(n, bool)
    pos = table.index.get_indexer(hit.index[hit.to_numpy(bool)])
    out[pos[(pos >= 0) & (pos < n)]] = True
    return out


def _years(table: pd.DataFrame | None, n: int) -> np.ndarray:
    if table is None or "year" not in table.columns:
        return np.full(n, np.nan)
    return pd.to_numeric(table["year"].iloc[:n], errors="coerce").to_numpy(
        np.float64, na_value=np.nan
    )
