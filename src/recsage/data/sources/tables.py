"""Generic CSV / TSV / Parquet / JSON-lines tables with a column mapping."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from recsage.data.schema import Dataset, LoadReport
from recsage.data.sources.assemble import UnknownItems, _assemble, _Columns, _repeat_note
from recsage.data.sources.columns import build_item_table, resolve_interaction_columns
from recsage.data.sources.events import parse_event_weights
from recsage.data.sources.readers import ReadOptions, _read_table
from recsage.data.vocab import Vocabulary
from recsage.errors import RecsageError


def load_table(
    path: Path,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    value_col: str | None = None,
    event_col: str | None = None,
    event_weights: str | dict[str, float] | None = None,
    time_format: str | None = None,
    items_path: Path | None = None,
    item_id_col: str | None = None,
    title_col: str | None = None,
    category_col: str | None = None,
    category_sep: str = "|",
    text_cols: Sequence[str] | None = None,
    sep: str | None = None,
    encoding: str | None = None,
    name: str | None = None,
    unknown_items: UnknownItems = "error",
) -> Dataset:
    """Interactions from a CSV / TSV / Parquet / JSON-lines table (format from the suffix).

    Column names left as None are found by their common names (user_id/customer_id/...,
    item_id/product_id/sku/..., timestamp/time/date/..., event_type/event/action/...);
    `time_col=""` means there is no time column. Timestamps may be epoch seconds (ms/us/ns
    recognised by size) or date strings (parsed by pandas, `time_format` optional).
    With `items_path`, the item vocabulary is that table's items in file order; its id,
    title, category (split on `category_sep`) and description columns are likewise named
    or found, the rest kept as attributes. Interactions naming other items raise (or are
    dropped and counted with `unknown_items="drop"`). `event_weights` ("purchase=3,view=1")
    weighs event types in training (`Dataset.event_weights`). `sep`/`encoding` override
    detection. What each column became is in `report.columns`. Errors name the file, the
    line (CSV: header = line 1; JSON lines: line of the record; Parquet: "row N") and column.
    """
    path = Path(path)
    if unknown_items not in ("error", "drop"):
        raise RecsageError(f"unknown_items must be 'error' or 'drop', not {unknown_items!r}")
    weights = parse_event_weights(event_weights)
    options = ReadOptions(sep=sep, encoding=encoding)
    report = LoadReport(source=str(path))
    src = _read_table(path, options)
    resolved = resolve_interaction_columns(
        src, report, user=user_col, item=item_col, time=time_col, value=value_col,
        event=event_col,
    )  # fmt: skip
    cols = _Columns(
        user=resolved.user,
        item=resolved.item,
        time=resolved.time,
        value=resolved.value,
        event=resolved.event,
        time_format=time_format,
    )
    item_table = None
    item_vocab = None
    if items_path is not None:
        items_path = Path(items_path)
        isrc = _read_table(items_path, options)
        item_table = build_item_table(
            isrc, report, id_col=item_id_col, title_col=title_col, category_col=category_col,
            category_sep=category_sep, text_cols=text_cols, interaction_item_col=resolved.item,
        )  # fmt: skip
        report.notes += [f"{items_path.name}: {n}" for n in isrc.notes]
        item_vocab = Vocabulary(item_table["item_id"].to_numpy(dtype=object))
    inter, users, items = _assemble(
        src,
        cols,
        report,
        item_vocab=item_vocab,
        unknown_items=unknown_items,
        item_file=items_path,
        event_weights=weights,
    )
    report.notes += [f"{path.name}: {n}" for n in src.notes]
    if item_table is None:
        item_table = pd.DataFrame({"item_id": items.ids})
    _repeat_note(report, inter, len(items))
    if resolved.event:
        counts = np.bincount(inter.event, minlength=len(inter.event_names))
        shown = " · ".join(f"{n} {c:,}" for n, c in zip(inter.event_names, counts, strict=True))
        w = (
            "; all weigh 1 in training, see --event-weights"
            if weights is None
            else "; weights " + ", ".join(f"{k}={v:g}" for k, v in weights.items())
        )
        report.columns = [
            (f, c, f"event type ({shown}{w})" if (f == path.name and c == resolved.event) else u)
            for f, c, u in report.columns
        ]
    ds = Dataset(name or path.stem, inter, users, items, item_table, None, report)
    if weights is not None:
        ds.event_weights = {n: weights[n] for n in inter.event_names if n in weights}
    return ds
