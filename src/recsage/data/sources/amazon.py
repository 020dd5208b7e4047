"""UniSRec folders (Amazon-Scientific and friends)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsage.data.schema import Dataset, Interactions, LoadReport
from recsage.data.sources.assemble import _item_table_from, _parse_numbers, _repeat_note
from recsage.data.sources.readers import _read_text, _require_file, _Source
from recsage.data.sources.recbole import _read_atomic
from recsage.data.vocab import Vocabulary
from recsage.errors import DataError


def _read_index_map(path: Path, what: str) -> Vocabulary:
    """`external_id \\t index` lines -> vocabulary in index order (indices must be 0..n-1)."""
    text = _read_text(_require_file(path))
    frame = pd.read_csv(
        io.StringIO(text),
        sep="\t",
        header=None,
        dtype=str,
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,
    )
    if frame.shape[1] != 2:
        raise DataError(
            f"expected 2 tab-separated columns (id, index), got {frame.shape[1]}", path=str(path)
        )
    frame.columns = ["id", "index"]
    src = _Source(path, frame, np.arange(len(frame), dtype=np.int64) + 1)
    idx = _parse_numbers(src, "index", f"{what} index").astype(np.int64)
    if not np.array_equal(np.sort(idx), np.arange(len(idx))):
        raise DataError(f"{what} indices are not 0..{len(idx) - 1}", path=str(path))
    ids = np.empty(len(idx), dtype=object)
    ids[idx] = frame["id"].astype(str).str.strip().to_numpy(dtype=object)
    return Vocabulary(ids)


@dataclass
class _SplitRows:
    """Rows of one UniSRec split file, parsed."""

    src: _Source
    user: np.ndarray  # int64
    target: np.ndarray  # int64
    hist: np.ndarray  # flat int64 history tokens
    hist_len: np.ndarray  # int64 per row
    hist_start: np.ndarray  # int64 offset of each row's history in `hist`


def _read_unisrec_split(path: Path, n_users: int, n_items: int) -> _SplitRows:
    src, _ = _read_atomic(_require_file(path))
    src.require(["user_id", "item_id_list", "item_id"])
    user = _parse_numbers(src, "user_id", "user index")
    target = _parse_numbers(src, "item_id", "item index")
    for col, arr, n in (("user_id", user, n_users), ("item_id", target, n_items)):
        bad = np.isnan(arr) | (arr < 0) | (arr >= n) | (np.mod(arr, 1) != 0)
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise src.error(pos, col, f"index '{src.frame[col].iloc[pos]}' is not in 0..{n - 1}")
    hist_text = src.frame["item_id_list"].fillna("").astype(str)
    hist_len = hist_text.str.split().map(len).to_numpy(dtype=np.int64)
    tokens = " ".join(hist_text.tolist()).split()
    try:
        hist = np.asarray(tokens, dtype=np.int64)
    except ValueError as exc:
        raise DataError(
            f"non-integer item index in item_id_list: {exc}", path=str(path), column="item_id_list"
        ) from exc
    if len(hist) and (hist.min() < 0 or hist.max() >= n_items):
        row = int(
            np.searchsorted(
                np.cumsum(hist_len), np.flatnonzero((hist < 0) | (hist >= n_items))[0], side="right"
            )
        )
        raise src.error(row, "item_id_list", f"item index out of range 0..{n_items - 1}")
    starts = np.concatenate([[0], np.cumsum(hist_len)[:-1]]).astype(np.int64)
    return _SplitRows(src, user.astype(np.int64), target.astype(np.int64), hist, hist_len, starts)


def _segments(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Indices starts[i] .. starts[i] + lengths[i] - 1 for all i, concatenated (vectorized)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    seg = np.repeat(np.arange(len(lengths)), lengths)
    offset = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.asarray(starts, dtype=np.int64)[seg] + offset


def load_amazon_unisrec(root: Path, name: str = "Scientific") -> Dataset:
    """An Amazon dataset in UniSRec format, with each user's full sequence rebuilt.

    The train file has one row per prefix (history -> next item). The full sequence of a
    user is the history of its earliest row (1 item) followed by every target in
    chronological order (train, then valid, then test). Every row's history (cut to its
    last <= 50 items) is checked against the rebuilt sequence; a mismatch is a DataError.
    Timestamps are positions. Users are reviewerIDs and items ASINs, both in index order.
    """
    root = Path(root)
    items = _read_index_map(root / f"{name}.item2index", "item")
    users = _read_index_map(root / f"{name}.user2index", "user")
    splits = [
        _read_unisrec_split(root / f"{name}.{part}.inter", len(users), len(items))
        for part in ("train", "valid", "test")
    ]
    report = LoadReport(source=str(root / f"{name}.{{train,valid,test}}.inter"))
    report.rows_read = sum(len(s.user) for s in splits)

    # All rows of the three splits in one table, then in chronological order per user.
    offsets = np.cumsum([0] + [len(s.hist) for s in splits[:-1]])
    user = np.concatenate([s.user for s in splits])
    target = np.concatenate([s.target for s in splits])
    hist = np.concatenate([s.hist for s in splits])
    hist_len = np.concatenate([s.hist_len for s in splits])
    hist_start = np.concatenate([s.hist_start + o for s, o in zip(splits, offsets, strict=True)])
    split_id = np.concatenate([np.full(len(s.user), k) for k, s in enumerate(splits)])
    file_pos = np.concatenate([np.arange(len(s.user)) for s in splits])
    # Equal history lengths only occur once histories are cut at 50; the train file lists
    # a user's prefixes longest-first, so there a later row is earlier in time.
    tr = splits[0]
    descending = bool(np.all((np.diff(tr.hist_len) <= 0) | (np.diff(tr.user) != 0)))
    tie = np.where(split_id == 0, -file_pos if descending else file_pos, file_pos)
    order = np.lexsort((tie, hist_len, split_id, user))
    user, target, hist_len, hist_start = (
        user[order],
        target[order],
        hist_len[order],
        hist_start[order],
    )
    split_id, file_pos = split_id[order], file_pos[order]

    # Sequence of user u: history of its earliest row, then the targets of all its rows.
    n_rows = np.bincount(user, minlength=len(users))
    first_row = np.cumsum(n_rows) - n_rows  # rows are sorted by user
    has_rows = n_rows > 0
    prefix_len = np.zeros(len(users), dtype=np.int64)
    prefix_len[has_rows] = hist_len[first_row[has_rows]]
    not_one = int((prefix_len[has_rows] != 1).sum())
    if not_one:
        report.notes.append(f"{not_one:,} users' earliest row has a history of length != 1")
    seq_len = prefix_len + n_rows
    user_start = np.cumsum(seq_len) - seq_len
    seq_item = np.empty(int(seq_len.sum()), dtype=np.int64)
    prefix_src = _segments(hist_start[first_row[has_rows]], prefix_len[has_rows])
    prefix_dst = _segments(user_start[has_rows], prefix_len[has_rows])
    seq_item[prefix_dst] = hist[prefix_src]
    rank = np.arange(len(user)) - first_row[user]
    target_pos = user_start[user] + prefix_len[user] + rank
    seq_item[target_pos] = target
    seq_user = np.repeat(np.arange(len(users), dtype=np.int64), seq_len)

    # Check every row's history against the rebuilt sequence.
    begin = target_pos - hist_len
    bad_row = begin < user_start[user]
    expected = seq_item[np.clip(_segments(begin, hist_len), 0, len(seq_item) - 1)]
    actual = hist[_segments(hist_start, hist_len)]
    row_of_token = np.repeat(np.arange(len(user)), hist_len)
    bad_row[np.unique(row_of_token[expected != actual])] = True
    if bad_row.any():
        cands = np.flatnonzero(bad_row)
        r = int(cands[np.argmax(split_id[cands])])  # prefer a test row: the documented check
        u = int(user[r])
        raise splits[int(split_id[r])].src.error(
            int(file_pos[r]),
            "item_id_list",
            f"history of user {users.ids[u]} (index {u}) does not match the sequence rebuilt "
            f"from the train/valid/test targets ({int(bad_row.sum())} rows differ)",
        )

    pos = (np.arange(len(seq_user)) - np.repeat(user_start, seq_len)).astype(np.float64)
    inter = Interactions.build(seq_user, seq_item, timestamp=pos)
    report.notes.append(
        f"rebuilt {len(inter):,} interactions from {report.rows_read:,} prefix rows; "
        "timestamps are sequence positions"
    )
    if not has_rows.all():
        n_empty = int((~has_rows).sum())
        report.notes.append(f"{n_empty:,} users in {name}.user2index have no interactions")
    _repeat_note(report, inter, len(items))
    return Dataset(
        "amazon-scientific" if name == "Scientific" else f"amazon-{name.lower()}",
        inter,
        users,
        items,
        _unisrec_item_table(root / f"{name}.text", items, report),
        None,
        report,
    )


def _unisrec_item_table(path: Path, items: Vocabulary, report: LoadReport) -> pd.DataFrame:
    """Item table from `<name>.text` (ASIN -> "title. categories. brand.")."""
    src, _ = _read_atomic(_require_file(path, "item text file"))
    src.require(["item_id", "text"])
    table = _item_table_from(src, "item_id", renames={})
    text = table["text"].astype(object).where(table["text"].notna(), "").astype(str).str.strip()
    rows = pd.Index(table["item_id"].to_numpy(dtype=object)).get_indexer(pd.Index(items.ids))
    missing = int((rows < 0).sum())
    if missing:
        report.notes.append(f"{missing:,} items have no text in {path.name}")
    full = text.reindex(rows).reset_index(drop=True)
    title = full.str.split(". ", n=1, regex=False).str[0].str.rstrip(".")
    return pd.DataFrame({"item_id": items.ids, "title": title, "text": full})
