"""Columns -> validated Interactions + item table (parsing, counting what was dropped)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recsage.data.schema import DEFAULT_EVENT, Interactions, LoadReport
from recsage.data.sources.readers import _Source
from recsage.data.vocab import Vocabulary
from recsage.errors import DataError

UnknownItems = Literal["error", "drop"]


_CATEGORY_COLUMNS = ("categories", "genres", "genre", "class")


def _id_strings(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """External ids as an object array of str plus a missing mask (NaN / empty / blank)."""
    missing = series.isna().to_numpy()
    if pd.api.types.is_float_dtype(series.dtype):
        vals = series.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = vals[~missing]
        if np.all(np.mod(finite, 1) == 0):  # ints that became floats because of gaps
            series = series.astype("Int64")
    text = series.astype(object).where(~missing, "").astype(str).str.strip()
    arr = text.to_numpy(dtype=object)
    missing = missing | (arr == "")
    return arr, missing


def _parse_numbers(src: _Source, col: str, what: str, hint: str = "") -> np.ndarray:
    """Float column (NaN where empty); unparseable text raises naming the first bad line."""
    series = src.frame[col]
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    text = series.astype(object).where(series.notna(), "").astype(str).str.strip()
    present = (text != "").to_numpy()
    nums = pd.to_numeric(text.where(present, None), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    bad = present & np.isnan(nums)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise src.error(pos, col, f"cannot parse {what} '{text.iloc[pos]}'{hint}")
    return nums


def _to_seconds(values: pd.Series) -> np.ndarray:
    """Epoch seconds (float64) from a datetime series (naive times are taken as UTC)."""
    dt = pd.to_datetime(values, utc=True)
    secs = (dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return np.asarray(secs, dtype=np.float64)


def _parse_times(src: _Source, col: str, time_format: str | None) -> np.ndarray:
    """Timestamps as float seconds: numbers are epoch seconds, strings are parsed as dates."""
    series = src.frame[col]
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return _to_seconds(series)
    if time_format is None and (
        pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)
    ):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    text = series.astype(object).where(series.notna(), "").astype(str).str.strip()
    present = (text != "").to_numpy()
    if time_format is None:
        nums = pd.to_numeric(text.where(present, None), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        bad = present & np.isnan(nums)
        if not bad.any():
            return nums
        first = np.flatnonzero(present)[0]
        if not np.isnan(nums[first]):  # the first value is a number: all must be
            pos = int(np.flatnonzero(bad)[0])
            raise src.error(
                pos,
                col,
                f"cannot parse timestamp '{text.iloc[pos]}' as epoch seconds "
                f"({int(bad.sum())} unparseable in total)",
            )
    values = text.where(present, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        parsed = pd.to_datetime(values, format=time_format, errors="coerce", utc=True)
        if time_format is None and (present & parsed.isna().to_numpy()).any():
            parsed = pd.to_datetime(values, format="mixed", errors="coerce", utc=True)
    bad = present & parsed.isna().to_numpy()
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        fmt = f" with format '{time_format}'" if time_format else ""
        raise src.error(
            pos,
            col,
            f"cannot parse timestamp '{text.iloc[pos]}'{fmt} ({int(bad.sum())} unparseable in "
            "total; give epoch seconds or dates, and time_format / --time-format if needed)",
        )
    out = np.full(len(text), np.nan)
    out[present] = _to_seconds(parsed[present])
    return out


def _split_categories(series: pd.Series, sep: str | None) -> pd.Series:
    """Text like 'A|B' (or 'A B' for RecBole token_seq) -> list[str]; missing -> []."""
    text = series.astype(object).where(series.notna(), "").astype(str)
    parts = text.str.split(sep) if sep is not None else text.str.split()
    return parts.map(lambda xs: [x.strip() for x in xs if x.strip()])


def _repeat_note(report: LoadReport, inter: Interactions, n_items: int) -> None:
    """Note how many interactions repeat an earlier (user, item) pair (they are kept)."""
    if len(inter) == 0:
        return
    keys = np.sort(inter.user * np.int64(max(n_items, 1)) + inter.item)
    repeats = int((keys[1:] == keys[:-1]).sum())
    if repeats:
        report.notes.append(f"{repeats:,} interactions repeat an earlier (user, item) pair (kept)")


@dataclass
class _Columns:
    user: str = "user_id"
    item: str = "item_id"
    time: str | None = "timestamp"
    value: str | None = None
    event: str | None = None
    time_format: str | None = None
    hint: str = ""


def _first_appearance_order(ids: np.ndarray, preferred: np.ndarray | None) -> Vocabulary:
    """Vocabulary of `ids`: those in `preferred` in that order, then the rest as they appear."""
    seen = pd.unique(pd.Series(ids, dtype=object))
    if preferred is None:
        return Vocabulary(np.asarray(seen, dtype=object))
    pref = pd.Index(np.asarray(preferred, dtype=object))
    seen_index = pd.Index(seen)
    first = pref[pref.isin(seen_index)]
    rest = seen_index[~seen_index.isin(pref)]
    return Vocabulary(np.concatenate([first.to_numpy(dtype=object), rest.to_numpy(dtype=object)]))


def _assemble(
    src: _Source,
    cols: _Columns,
    report: LoadReport,
    *,
    item_vocab: Vocabulary | None = None,
    unknown_items: UnknownItems = "error",
    item_file: Path | None = None,
    user_order: np.ndarray | None = None,
) -> tuple[Interactions, Vocabulary, Vocabulary]:
    """Validate an interaction frame and encode it; drops are counted in `report`."""
    needed = [cols.user, cols.item] + [c for c in (cols.time, cols.value, cols.event) if c]
    src.require(needed, cols.hint)
    frame = src.frame
    n = len(frame)
    report.rows_read += n
    if n == 0:
        raise DataError("no interactions (the file has a header but no rows)", path=str(src.path))

    users, user_missing = _id_strings(frame[cols.user])
    items, item_missing = _id_strings(frame[cols.item])
    keep = ~(user_missing | item_missing)
    report.drop("missing user or item id", int((~keep).sum()))

    timestamp = None
    if cols.time:
        timestamp = _parse_times(src, cols.time, cols.time_format)
        gap = keep & np.isnan(timestamp)
        report.drop("missing timestamp", int(gap.sum()))
        keep &= ~gap
    value = None
    if cols.value:
        value = _parse_numbers(src, cols.value, "value")
        gap = keep & np.isnan(value)
        report.drop("missing value", int(gap.sum()))
        keep &= ~gap
    event = None
    event_names: tuple[str, ...] = (DEFAULT_EVENT,)
    if cols.event:
        names, gap = _id_strings(frame[cols.event])
        gap &= keep
        report.drop("missing event", int(gap.sum()))
        keep &= ~gap
        codes, uniques = pd.factorize(pd.Series(names[keep], dtype=object))
        event = np.zeros(n, np.int16)
        event[keep] = codes
        event_names = tuple(str(u) for u in uniques)

    if item_vocab is not None:
        item_idx = item_vocab.lookup(items)
        unknown = keep & (item_idx < 0)
        if unknown.any():
            if unknown_items == "error":
                pos = int(np.flatnonzero(unknown)[0])
                where = f" in {item_file.name}" if item_file is not None else ""
                raise src.error(
                    pos,
                    cols.item,
                    f"unknown item id '{items[pos]}' (not{where or ' in the item table'}; "
                    f"{int(unknown.sum())} interactions reference unknown items; "
                    "pass unknown_items='drop' to drop them)",
                )
            report.drop("unknown item id", int(unknown.sum()))
            keep &= ~unknown
        items_out = item_vocab
    else:
        items_out = Vocabulary(np.asarray(pd.unique(pd.Series(items[keep], dtype=object))))
        item_idx = items_out.lookup(items)

    if not keep.any():
        raise DataError(
            f"no interactions left: all {n} rows were dropped ({report.dropped})",
            path=str(src.path),
        )
    users_out = _first_appearance_order(users[keep], user_order)
    inter = Interactions.build(
        users_out.lookup(users[keep]),
        item_idx[keep],
        timestamp=None if timestamp is None else timestamp[keep],
        value=None if value is None else value[keep],
        event=None if event is None else event[keep],
        event_names=event_names,
    )
    return inter, users_out, items_out


def _check_unique_ids(src: _Source, col: str, ids: np.ndarray) -> None:
    """Raise at the second occurrence of a duplicated id."""
    dup = pd.Series(ids, dtype=object).duplicated().to_numpy()
    if dup.any():
        pos = int(np.flatnonzero(dup)[0])
        raise src.error(pos, col, f"duplicate item id '{ids[pos]}' (item ids must be unique)")


def _item_table_from(src: _Source, id_col: str, *, renames: dict[str, str]) -> pd.DataFrame:
    """Item table in file order with `item_id` first; validates ids (present, unique)."""
    src.require([id_col], "name the id column with item_id_col (--item-id-col)")
    ids, missing = _id_strings(src.frame[id_col])
    if missing.any():
        pos = int(np.flatnonzero(missing)[0])
        raise src.error(pos, id_col, "missing item id in the item table")
    _check_unique_ids(src, id_col, ids)
    table = src.frame.drop(columns=[id_col]).rename(columns=renames)
    table.insert(0, "item_id", ids)
    return table.reset_index(drop=True)


def _reindex(table: pd.DataFrame, order: np.ndarray) -> pd.DataFrame:
    """Rows `order` of a table, re-indexed 0..n-1 (the dense index)."""
    return table.iloc[np.asarray(order, dtype=np.int64)].reset_index(drop=True)


def _infer_numeric(series: pd.Series) -> pd.Series:
    """Text columns (CSV/TSV) that hold only numbers become numeric: Int64 or float."""
    if pd.api.types.is_numeric_dtype(series.dtype) or len(series) == 0:
        return series
    present = series.dropna()
    if not len(present) or not all(isinstance(v, str) for v in present.iloc[:1]):
        return series
    nums = pd.to_numeric(present, errors="coerce")
    if nums.isna().any():
        return series
    out = pd.to_numeric(series, errors="coerce")
    if not present.str.contains(r"[.eE]", regex=True).any():
        return out.astype("Int64")
    return out


def _holds_lists(series: pd.Series) -> bool:
    """Whether a column already holds list-like values (Parquet/JSON arrays)."""
    first = series.dropna()
    return bool(len(first)) and isinstance(first.iloc[0], list | tuple | np.ndarray)
