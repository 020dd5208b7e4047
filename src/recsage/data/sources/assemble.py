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
        nums = series.to_numpy(dtype=np.float64, na_value=np.nan)
        _refuse_infinite(src, col, what, nums, nums.astype(str))
        return nums
    text = series.astype(object).where(series.notna(), "").astype(str).str.strip()
    present = (text != "").to_numpy()
    nums = pd.to_numeric(text.where(present, None), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    bad = present & np.isnan(nums)
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        word = text.iloc[pos]
        if word.lower().lstrip("+-") in ("nan", "inf", "infinity"):
            raise src.error(pos, col, f"{what} '{word}' is not a finite number "
                            f"({int(bad.sum()):,} such row(s)){hint}")  # fmt: skip
        raise src.error(pos, col, f"cannot parse {what} '{word}'{hint}")
    _refuse_infinite(src, col, what, nums, text.to_numpy())
    return nums


def _refuse_infinite(
    src: _Source, col: str, what: str, nums: np.ndarray, shown: np.ndarray
) -> None:
    """NaN means missing; +-inf is never a usable rating, weight or time."""
    inf = np.isinf(nums)
    if inf.any():
        pos = int(np.flatnonzero(inf)[0])
        raise src.error(
            pos,
            col,
            f"{what} '{shown[pos]}' is not a finite number ({int(inf.sum()):,} such row(s))",
        )


def _to_seconds(values: pd.Series) -> np.ndarray:
    """Epoch seconds (float64) from a datetime series (naive times are taken as UTC)."""
    dt = pd.to_datetime(values, utc=True)
    secs = (dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return np.asarray(secs, dtype=np.float64)


def _parse_times(src: _Source, col: str, time_format: str | None) -> np.ndarray:
    """Timestamps as float seconds: numbers are epoch seconds, strings are parsed as dates.

    Epoch numbers that only make sense as milli-/micro-/nanoseconds are scaled (noted
    through `src.notes`); times before 1970 or more than a year ahead are refused.
    """
    series = src.frame[col]
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return _check_time_range(src, col, _to_seconds(series), None)
    if time_format is None and (
        pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)
    ):
        nums = series.to_numpy(dtype=np.float64, na_value=np.nan)
        return _check_time_range(src, col, _epoch_unit(src, col, nums), None)
    text = series.astype(object).where(series.notna(), "").astype(str).str.strip()
    present = (text != "").to_numpy()
    if time_format is None:
        nums = pd.to_numeric(text.where(present, None), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        bad = present & np.isnan(nums)
        if not bad.any():
            return _check_time_range(src, col, _epoch_unit(src, col, nums), text)
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
        try:
            parsed = pd.to_datetime(values, format=time_format, errors="coerce", utc=True)
            if time_format is None and (present & parsed.isna().to_numpy()).any():
                parsed = pd.to_datetime(values, format="mixed", errors="coerce", utc=True)
        except (ValueError, OverflowError) as exc:
            raise DataError(
                f"cannot parse timestamps: {' '.join(str(exc).split())}",
                path=str(src.path),
                column=col,
            ) from None
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
    return _check_time_range(src, col, out, text)


_UNITS = ((1e17, 1e9, "nanoseconds"), (1e14, 1e6, "microseconds"), (1e11, 1e3, "milliseconds"))


def _epoch_unit(src: _Source, col: str, nums: np.ndarray) -> np.ndarray:
    """Scale epoch numbers that are all far too large for seconds (ms, us, ns exports)."""
    finite = nums[np.isfinite(nums)]
    if not len(finite):
        return nums
    low = float(finite.min())
    for threshold, scale, unit in _UNITS:
        if low >= threshold:
            src.notes.append(f"column '{col}': epoch values read as {unit} (all >= {threshold:g})")
            return nums / scale
    return nums


#: latest accepted time: a year after loading (later ones are typos or unit mistakes)
def _latest_time() -> float:
    import time

    return time.time() + 366 * 86400.0


def _check_time_range(
    src: _Source, col: str, secs: np.ndarray, text: pd.Series | None
) -> np.ndarray:
    """Refuse times before 1970-01-01 or more than a year ahead, naming the first row."""
    with np.errstate(invalid="ignore"):
        early = secs < 0
        late = secs > _latest_time()
    for mask, why in ((early, "before 1970-01-01"), (late, "more than a year in the future")):
        if mask.any():
            pos = int(np.flatnonzero(mask)[0])
            shown = text.iloc[pos] if text is not None else _iso(secs[pos])
            raise src.error(
                pos,
                col,
                f"timestamp '{shown}' is {why} ({int(mask.sum()):,} such row(s)); give epoch "
                "seconds or dates between 1970 and next year",
            )
    return secs


def _iso(secs: float) -> str:
    if not np.isfinite(secs):
        return str(secs)
    try:
        return pd.Timestamp(secs, unit="s", tz="UTC").isoformat()
    except (ValueError, OverflowError, pd.errors.OutOfBoundsDatetime):
        return f"{secs:g} s"


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
    event_weights: dict[str, float] | None = None,
) -> tuple[Interactions, Vocabulary, Vocabulary]:
    """Validate an interaction frame and encode it; drops are counted in `report`.

    With `event_weights`, every event type in the file needs a weight (else the file is
    refused naming the types); rows of weight-0 types are dropped and counted.
    """
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
        if event_weights is not None:
            keep = _apply_event_weights(src, cols.event, names, keep, event_weights, report)
        codes, uniques = pd.factorize(pd.Series(names[keep], dtype=object))
        if len(uniques) > 32767:
            raise DataError(
                f"{len(uniques):,} distinct event types: is '{cols.event}' really an event "
                "type column?",
                path=str(src.path),
                column=cols.event,
            )
        event = np.zeros(n, np.int16)
        event[keep] = codes
        event_names = tuple(str(u) for u in uniques)
    elif event_weights is not None:
        raise DataError(
            "--event-weights needs an event type column; name it with --event-col "
            f"(found: {', '.join(str(c) for c in frame.columns)})",
            path=str(src.path),
        )

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
                    "pass --unknown-items drop (unknown_items='drop') to drop and count them)",
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


def _apply_event_weights(
    src: _Source,
    col: str,
    names: np.ndarray,
    keep: np.ndarray,
    weights: dict[str, float],
    report: LoadReport,
) -> np.ndarray:
    """Refuse event types without a weight; drop (and count) rows of weight-0 types."""
    counts = pd.Series(names[keep], dtype=object).value_counts()
    missing = [str(t) for t in counts.index if str(t) not in weights]
    if missing:
        shown = ", ".join(f"'{t}' ({int(counts[t]):,} rows)" for t in missing[:5])
        first = int(np.flatnonzero(keep & np.isin(names, missing))[0])
        raise src.error(
            first,
            col,
            f"event type(s) without a weight in --event-weights: {shown}; add them "
            f"(e.g. {missing[0]}=1) or give 0 to drop them",
        )
    absent = [t for t in weights if t not in counts.index]
    if absent:
        report.notes.append(f"--event-weights names types not in the file: {', '.join(absent)}")
    zero = [t for t, w in weights.items() if w == 0 and t in counts.index]
    if zero:
        drop = keep & np.isin(names, zero)
        report.drop(f"event type with weight 0 ({', '.join(zero)})", int(drop.sum()))
        keep = keep & ~drop
    return keep


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
