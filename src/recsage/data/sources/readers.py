"""Raw readers: delimited text, JSON lines, Parquet -> `Source` frames with line numbers."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsage.errors import DataError, RecsageError

_TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl", ".ndjson", ".json")


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
