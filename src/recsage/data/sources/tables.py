"""Generic CSV / TSV / Parquet / JSON-lines tables with a column mapping."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recsage.data.schema import Dataset, LoadReport
from recsage.data.sources.assemble import (
    UnknownItems,
    _assemble,
    _Columns,
    _holds_lists,
    _infer_numeric,
    _item_table_from,
    _repeat_note,
    _split_categories,
)
from recsage.data.sources.readers import _read_table
from recsage.data.vocab import Vocabulary
from recsage.errors import RecsageError


def load_table(
    path: Path,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | None = "timestamp",
    value_col: str | None = None,
    event_col: str | None = None,
    time_format: str | None = None,
    items_path: Path | None = None,
    item_id_col: str = "item_id",
    title_col: str = "title",
    name: str | None = None,
    unknown_items: UnknownItems = "error",
) -> Dataset:
    """Interactions from a CSV / TSV / Parquet / JSON-lines table (format from the suffix).

    Timestamps may be epoch seconds or date strings (parsed by pandas, `time_format`
    optional). With `items_path`, the item vocabulary is that table's items in file
    order, and interactions naming other items raise (or are dropped and counted with
    `unknown_items="drop"`). Users (and items without a table) are in order of first
    appearance. Errors name the file, the line (CSV: header = line 1; JSON lines: line
    of the record; Parquet: "row N", 1-based) and the column.
    """
    path = Path(path)
    if unknown_items not in ("error", "drop"):
        raise RecsageError(f"unknown_items must be 'error' or 'drop', not {unknown_items!r}")
    report = LoadReport(source=str(path))
    src = _read_table(path)
    cols = _Columns(
        user=user_col,
        item=item_col,
        time=time_col,
        value=value_col,
        event=event_col,
        time_format=time_format,
        hint="name the columns with user_col/item_col/time_col "
        "(--user-col/--item-col/--time-col; --time-col '' if there is none)",
    )
    item_table = None
    item_vocab = None
    if items_path is not None:
        items_path = Path(items_path)
        isrc = _read_table(items_path)
        item_table = _item_table_from(isrc, item_id_col, renames={title_col: "title"})
        for col in ("categories", "genres"):
            if col in item_table.columns and not _holds_lists(item_table[col]):
                item_table[col] = _split_categories(item_table[col], "|")
        if "genres" in item_table.columns and "categories" not in item_table.columns:
            item_table = item_table.rename(columns={"genres": "categories"})
        skip = {"item_id", "title", "categories", "genres"}
        for col in item_table.columns:
            if col not in skip:
                item_table[col] = _infer_numeric(item_table[col])
        item_vocab = Vocabulary(item_table["item_id"].to_numpy(dtype=object))
    inter, users, items = _assemble(
        src,
        cols,
        report,
        item_vocab=item_vocab,
        unknown_items=unknown_items,
        item_file=items_path,
    )
    if item_table is None:
        item_table = pd.DataFrame({"item_id": items.ids})
    _repeat_note(report, inter, len(items))
    return Dataset(name or path.stem, inter, users, items, item_table, None, report)
