"""Item updates from the feedback store -> the table `Pipeline.add_items` takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from recsage.pipeline.pipeline import Pipeline

ITEM_FIELDS = ("title", "categories", "year", "text")


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
