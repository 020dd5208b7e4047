"""One-line-per-user sequence files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsage.data.schema import Dataset, Interactions, LoadReport
from recsage.data.sources.assemble import _repeat_note
from recsage.data.sources.readers import _read_text
from recsage.data.vocab import Vocabulary
from recsage.errors import DataError


def _parse_sequence_file(
    path: Path, report: LoadReport
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`user item item ...` lines -> (user ids, item ids, position within user), all flat."""
    text = _read_text(path)
    rows = [line.split() for line in text.splitlines()]
    rows = [r for r in rows if r]  # blank lines are not rows
    report.rows_read += len(rows)
    lengths = np.fromiter((len(r) - 1 for r in rows), dtype=np.int64, count=len(rows))
    report.drop("user with no items", int((lengths == 0).sum()))
    if not lengths.any():
        raise DataError("no interactions (no line has a user followed by items)", path=str(path))
    heads = np.asarray([r[0] for r in rows], dtype=object)
    users = np.repeat(heads, lengths)
    items = np.asarray([tok for r in rows for tok in r[1:]], dtype=object)
    pos = pd.Series(users).groupby(users, sort=False).cumcount().to_numpy(dtype=np.float64)
    return users, items, pos


def load_sequences(path: Path, *, name: str | None = None) -> Dataset:
    """One line per user, `user item item ...`, oldest first; timestamps are positions 0, 1, ...

    Users and items are indexed in order of first appearance. A user on several lines gets
    the lines concatenated in file order.
    """
    path = Path(path)
    report = LoadReport(source=str(path))
    users_raw, items_raw, pos = _parse_sequence_file(path, report)
    users = Vocabulary.from_values(users_raw)
    items = Vocabulary.from_values(items_raw)
    inter = Interactions.build(users.lookup(users_raw), items.lookup(items_raw), timestamp=pos)
    report.notes.append("timestamps are positions within each user's sequence (synthetic)")
    _repeat_note(report, inter, len(items))
    table = pd.DataFrame({"item_id": items.ids})
    return Dataset(name or path.stem, inter, users, items, table, None, report)
