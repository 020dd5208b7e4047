"""Raw readers: delimited text, JSON lines, Parquet -> `Source` frames with line numbers."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsage.data.sources.sniff import (
    _one_line,
    check_field_lengths,
    check_unique_columns,
    decode_bytes,
    detect_sep,
    header_names,
    parse_sep,
    record_lines,
)
from recsage.errors import DataError, RecsageError

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".ndjson", ".json")


def _require_file(path: Path, what: str = "file") -> Path:
    """Fail early, naming the path, when an input file is missing."""
    if not path.is_file():
        raise DataError(f"{what} not found", path=str(path))
    return path


@dataclass
class _Source:
    """A file read into a frame, remembering where each row came from (for error messages)."""

    path: Path
    frame: pd.DataFrame
    lines: np.ndarray | None  # 1-based file line per row; None -> report "row N" (Parquet)
    notes: list[str] = field(default_factory=list)  # what reading assumed (encoding, sep)

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
                if len(found) == 1 and any(c in found[0] for c in ",;\t|"):
                    msg += "; the header reads as ONE column: is the delimiter (--sep) right?"
                raise DataError(
                    msg + (f"; {hint}" if hint else ""), path=str(self.path), column=col
                )


@dataclass(frozen=True)
class ReadOptions:
    """How to read a user's table: delimiter and encoding (None = detect)."""

    sep: str | None = None
    encoding: str | None = None


def _read_text(path: Path) -> str:
    """File content as text (UTF-8, falling back to Latin-1 as old MovieLens files need)."""
    raw = _require_file(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _drop_blank_rows(
    frame: pd.DataFrame, first_line: int, lines: np.ndarray | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """Remove all-empty rows (blank lines) while keeping each row's true file line number."""
    if lines is None or len(lines) != len(frame):
        lines = np.arange(len(frame), dtype=np.int64) + first_line
    blank = frame.isna().all(axis=1).to_numpy() if len(frame.columns) else np.zeros(0, bool)
    if blank.any():
        frame = frame.loc[~blank].reset_index(drop=True)
        lines = lines[~blank]
    return frame, lines


_FIELDS_RE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _read_delimited(
    path: Path, sep: str, *, quoted: bool = True, options: ReadOptions | None = None
) -> _Source:
    """Read CSV/TSV with every column as text; header is line 1.

    With `options` (user tables) the bytes are checked first (gzip, UTF-16, Latin-1, NUL),
    the delimiter is detected when not given, duplicated column names and over-long fields
    are refused, and line numbers follow quoted fields that span several lines.
    """
    notes: list[str] = []
    if options is None:
        text = _read_text(path)
    else:
        decoded = decode_bytes(_require_file(path).read_bytes(), path, options.encoding)
        text, notes = decoded.text, list(decoded.notes)
        sep, note = detect_sep(text, sep, parse_sep(options.sep))
        if note:
            notes.append(note)
        if not text.strip():
            raise DataError("no interactions (the file is empty or holds only blank lines)",
                            path=str(path))  # fmt: skip
        check_unique_columns(header_names(text, sep), path)
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
        if "EOF inside string" in str(exc):
            odd = [i for i, ln in enumerate(text.split("\n"), start=1) if ln.count('"') % 2]
            raise DataError(
                'an unbalanced quote (") opens a field that never closes: quote the whole value '
                'and double any quote inside it ("")',
                path=str(path),
                line=odd[0] if odd else None,
            ) from None
        m = _FIELDS_RE.search(str(exc))
        if m:
            raise DataError(
                f"{m.group(3)} fields where the header has {m.group(1)} (an unquoted "
                f"delimiter inside a value? quote it, or check --sep)",
                path=str(path),
                line=int(m.group(2)),
            ) from None
        raise DataError(f"cannot parse file: {_one_line(exc)}", path=str(path)) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    lines = record_lines(text, sep) if options is not None and quoted else None
    frame, lines = _drop_blank_rows(frame, first_line=2, lines=lines)
    src = _Source(path, frame, lines, notes)
    if options is not None:
        check_field_lengths(frame, src.error)
    return src


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _json_record(text: str, path: Path, line: int | None) -> dict[str, Any]:
    try:
        rec = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise DataError(f"duplicate key '{exc.key}' in one record", path=str(path),
                        line=line, column=exc.key) from None  # fmt: skip
    except ValueError as exc:
        where = (
            "the line ends early (truncated?)"
            if "Unterminated" in str(exc)
            or ("Expecting" in str(exc) and getattr(exc, "pos", 0) >= len(text.rstrip()))
            else _one_line(exc)
        )
        raise DataError(f"invalid JSON: {where}", path=str(path), line=line) from None
    if not isinstance(rec, dict):
        raise DataError(
            f"expected a JSON object per line, got {type(rec).__name__}", path=str(path), line=line
        )
    return rec


def _read_json_lines(path: Path, options: ReadOptions | None = None) -> _Source:
    """Read JSON lines (or a JSON array of records); blank lines are skipped, lines kept.

    Every line must be one JSON object without repeated keys; the first that is not is
    refused with its line number (a truncated last line included).
    """
    decoded = decode_bytes(
        _require_file(path).read_bytes(), path, (options or ReadOptions()).encoding
    )
    text = decoded.text.lstrip("\ufeff")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text, object_pairs_hook=_unique_keys)
        except _DuplicateKey as exc:
            raise DataError(f"duplicate key '{exc.key}' in one record", path=str(path),
                            column=exc.key) from None  # fmt: skip
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno) from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError("expected a JSON array of objects", path=str(path))
        frame = pd.DataFrame.from_records(data) if data else pd.DataFrame()
        src = _Source(path, frame.reset_index(drop=True), None, list(decoded.notes))
        check_field_lengths(src.frame, src.error)
        return src
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    for number, raw_line in enumerate(text.split("\n"), start=1):
        if raw_line.strip():
            records.append(_json_record(raw_line, path, number))
            lines.append(number)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    src = _Source(path, frame, np.asarray(lines, np.int64), list(decoded.notes))
    check_field_lengths(frame, src.error)
    return src


def _read_parquet(path: Path) -> _Source:
    """Read Parquet; a truncated or corrupt file is one clean error, not a pyarrow trace."""
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types
        hint = (
            "; the file does not start with Parquet's 'PAR1' magic (is it CSV?)"
            if path.read_bytes()[:4] != b"PAR1"
            else "; the file is truncated or corrupt"
        )
        raise DataError(
            f"cannot read Parquet file: {_one_line(exc)}{hint}", path=str(path)
        ) from None
    dup = frame.columns[frame.columns.duplicated()]
    if len(dup):
        raise DataError(f"duplicate column name '{dup[0]}'", path=str(path), column=str(dup[0]))
    src = _Source(path, frame.reset_index(drop=True), None)
    check_field_lengths(src.frame, src.error)
    return src


def _read_table(path: Path, options: ReadOptions | None = None) -> _Source:
    """Read a generic table by suffix (.csv, .tsv, .parquet, .jsonl/.ndjson/.json)."""
    _require_file(path)
    options = options or ReadOptions()
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _read_delimited(path, ",", options=options)
    if suffix == ".tsv":
        return _read_delimited(path, "\t", options=options)
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_json_lines(path, options)
    raise DataError(
        f"unsupported table format '{suffix}' (use one of: {', '.join(TABLE_SUFFIXES)})",
        path=str(path),
    )


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
    repo_root = Path(__file__).resolve().parents[4]
    candidates = [repo_root.parent / "shared" / "data", Path.cwd() / "shared" / "data"]
    for cand in candidates:
        if cand.is_dir():
            return cand
    tried = ", ".join(str(c) for c in candidates)
    raise RecsageError(
        f"shared data folder not found (tried {tried}); set RECSAGE_DATA_DIR to the folder "
        "that holds ml-1m/, amazon-scientific/ ..."
    )
