"""MovieLens-100K (bundled in the recbole wheel) and MovieLens-1M (SASRec version)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pandas as pd

from recsage.data.schema import Dataset, Interactions, LoadReport
from recsage.data.sources.assemble import (
    _first_appearance_order,
    _parse_numbers,
    _reindex,
    _repeat_note,
)
from recsage.data.sources.readers import _read_text, _require_file, _Source, shared_data_dir
from recsage.data.sources.recbole import (
    _atomic_item_table,
    _recbole_example_dir,
    load_recbole_atomic,
)
from recsage.data.sources.sequences import _parse_sequence_file
from recsage.data.vocab import Vocabulary


def load_ml100k(root: Path | None = None) -> Dataset:
    """MovieLens-100K from RecBole atomic files: `root`, or the copy in the recbole wheel."""
    folder = _recbole_example_dir() if root is None else Path(root)
    return load_recbole_atomic(folder, "ml-100k")


def _ml1m_users(path: Path, report: LoadReport) -> pd.DataFrame:
    """`users.dat` (`UserID::Gender::Age::Occupation::Zip-code`), fixing user 1's age code."""
    text = _read_text(path)
    frame = pd.read_csv(
        io.StringIO(text.replace("::", "\t")),
        sep="\t",
        header=None,
        names=["user_id", "gender", "age", "occupation", "zip_code"],
        dtype=str,
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,
    )
    src = _Source(path, frame, np.arange(len(frame), dtype=np.int64) + 1)
    for col in ("age", "occupation"):
        frame[col] = _parse_numbers(src, col, col).astype(np.int64)
    first = frame["user_id"] == "1"
    if (first & (frame["age"] == 26)).any():
        frame.loc[first, "age"] = 1
        report.notes.append(
            "users.dat: user 1 has age code 26 (not a valid ML-1M code); corrected to 1 "
            "(under 18) as other copies of the file give"
        )
    return frame


def load_ml1m(root: Path | None = None) -> Dataset:
    """MovieLens-1M, SASRec version: 6,040 users, 3,416 items, 999,611 implicit interactions.

    Interactions come from `sequences/ml-1m.seq.txt` (original ids, chronological; the
    timestamps are positions). Items are indexed in `ml-1m.item` order (ascending
    MovieID) restricted to items in the sequences; users in `raw/users.dat` order
    (ascending UserID, so index = UserID - 1).
    """
    root = shared_data_dir() / "ml-1m" if root is None else Path(root)
    seq_path = root / "sequences" / "ml-1m.seq.txt"
    report = LoadReport(source=str(seq_path))
    users_raw, items_raw, pos = _parse_sequence_file(seq_path, report)

    item_table, _ = _atomic_item_table(_require_file(root / "ml-1m.item"))
    table_index = pd.Index(item_table["item_id"].to_numpy(dtype=object))
    in_table = table_index.get_indexer(pd.Index(items_raw)) >= 0
    report.drop("unknown item id", int((~in_table).sum()))
    users_raw, items_raw, pos = users_raw[in_table], items_raw[in_table], pos[in_table]
    used = table_index.isin(pd.Index(pd.unique(pd.Series(items_raw, dtype=object))))
    item_table = _reindex(item_table, np.flatnonzero(used))
    items = Vocabulary(item_table["item_id"].to_numpy(dtype=object))

    user_frame = _ml1m_users(_require_file(root / "raw" / "users.dat"), report)
    users = _first_appearance_order(users_raw, user_frame["user_id"].to_numpy(dtype=object))
    rows = pd.Index(user_frame["user_id"].to_numpy(dtype=object)).get_indexer(pd.Index(users.ids))
    user_table = user_frame.reindex(rows).reset_index(drop=True)
    user_table["user_id"] = users.ids

    inter = Interactions.build(users.lookup(users_raw), items.lookup(items_raw), timestamp=pos)
    report.notes.append("implicit feedback (value 1.0); timestamps are sequence positions")
    _repeat_note(report, inter, len(items))
    return Dataset("ml-1m", inter, users, items, item_table, user_table, report)
