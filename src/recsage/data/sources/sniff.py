"""Byte-level checks before a table is parsed: compression, encoding, delimiter, header.

A user's file may be gzip content named `.csv`, UTF-16 from Excel, Latin-1 from an old
export, or semicolon-separated. Each of these is either read correctly with a note saying
what was assumed, or refused with one line naming the file (and line) and how to fix it —
never turned into NUL-laden column names or a tokenizer traceback.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from recsage.errors import ConfigError, DataError

#: longest field accepted in any table cell (characters); longer ones are almost always an
#: unbalanced quote that swallowed the rest of the file, or a blob pasted into a cell
MAX_FIELD_CHARS = 100_000

_SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
_SEP_CANDIDATES = (",", ";", "\t", "|")
_REFUSED_MAGIC = (
    (b"PK\x03\x04", "is a ZIP archive (or an Excel .xlsx workbook), not text; unzip it or "
     "export the sheet as CSV"),
    (b"PAR1", "holds Parquet data; rename it to .parquet"),
    (b"BZh", "is bzip2-compressed; decompress it first (bunzip2)"),
    (b"\xfd7zXZ\x00", "is xz-compressed; decompress it first (unxz)"),
    (b"\x28\xb5\x2f\xfd", "is zstd-compressed; decompress it first (unzstd)"),
)  # fmt: skip


@dataclass
class Decoded:
    """File text plus what was assumed to get it (printed as load-report notes)."""

    text: str
    notes: list[str] = field(default_factory=list)


def parse_sep(sep: str | None) -> str | None:
    """`--sep` value -> one delimiter character (accepts 'tab', '\\t', 'semicolon', ...)."""
    if sep is None or sep == "":
        return None
    value = _SEP_NAMES.get(sep.lower(), sep)
    if len(value) != 1:
        raise ConfigError(
            f"--sep must be one character (or tab, comma, semicolon, pipe), got {sep!r}"
        )
    return value


def check_encoding(encoding: str | None) -> str | None:
    """Validate an `--encoding` name early (unknown names are a config error, not a crash)."""
    if encoding is None or encoding == "" or encoding.lower() == "auto":
        return None
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise ConfigError(
            f"unknown --encoding {encoding!r} (e.g. utf-8, utf-16, latin-1, cp1252)"
        ) from None


def _line_of(raw: bytes, pos: int) -> int:
    return raw.count(b"\n", 0, pos) + 1


def _decompress(raw: bytes, path: Path) -> tuple[bytes, list[str]]:
    """Unwrap gzip content whatever the file is called; refuse other archive formats."""
    notes: list[str] = []
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"gzip-compressed content that cannot be decompressed ({_one_line(exc)}); "
                "the file is truncated or corrupt",
                path=str(path),
            ) from None
        notes.append("the file holds gzip-compressed content (decompressed while reading)")
    for magic, message in _REFUSED_MAGIC:
        if raw.startswith(magic):
            raise DataError(message, path=str(path))
    return raw, notes


def _utf16_without_bom(raw: bytes) -> str | None:
    """'utf-16-le' / 'utf-16-be' when every second byte of ASCII-ish text is NUL."""
    sample = np.frombuffer(raw[: 8192 - (min(len(raw), 8192) % 2)], np.uint8)
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if (odd == 0).mean() > 0.6 and (even == 0).mean() < 0.05:
        return "utf-16-le"
    if (even == 0).mean() > 0.6 and (odd == 0).mean() < 0.05:
        return "utf-16-be"
    return None


def decode_bytes(raw: bytes, path: Path, encoding: str | None = None) -> Decoded:
    """Bytes of a text table -> text, detecting gzip, UTF-16 (BOM or not) and Latin-1.

    With `encoding` given it is used strictly; otherwise UTF-8 is expected, a UTF-16 or
    UTF-8 byte-order mark is honoured, NUL-interleaved text is read as UTF-16, and a file
    with no valid UTF-8 multi-byte sequence at all is read as Windows-1252/Latin-1 (noted).
    A file that mixes valid UTF-8 with invalid bytes is refused at the first bad line.
    """
    raw, notes = _decompress(raw, path)
    enc = check_encoding(encoding)
    if enc is not None:
        text = _strict(raw, enc, path, hint="check --encoding")
        return Decoded(_no_nul(text.lstrip("\ufeff"), path), notes)
    if raw.startswith(codecs.BOM_UTF8):
        return Decoded(_no_nul(_strict(raw, "utf-8-sig", path), path), notes)
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text = _strict(raw, "utf-16", path, hint="the byte-order mark says UTF-16")
        notes.append("decoded as UTF-16 (byte-order mark)")
        return Decoded(_no_nul(text, path), notes)
    if b"\x00" in raw[:8192]:
        guess = _utf16_without_bom(raw)
        if guess is not None:
            text = _strict(raw, guess, path, hint="it looks like UTF-16; pass --encoding")
            notes.append(f"decoded as {guess.upper()} (no byte-order mark; NUL every other byte)")
            return Decoded(_no_nul(text, path), notes)
    try:
        return Decoded(_no_nul(raw.decode("utf-8"), path), notes)
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    replaced = raw.decode("utf-8", errors="replace")
    valid_multibyte = sum(1 for ch in replaced if ord(ch) > 127 and ch != "\ufffd")
    if valid_multibyte:
        raise DataError(
            f"byte 0x{raw[first_bad]:02x} is not valid UTF-8 though the rest of the file is "
            "UTF-8; fix those bytes or pass --encoding latin-1 to read everything as Latin-1",
            path=str(path),
            line=_line_of(raw, first_bad),
        )
    try:
        text, name = raw.decode("cp1252"), "Windows-1252"
    except UnicodeDecodeError:
        text, name = raw.decode("latin-1"), "Latin-1"
    lines = {_line_of(raw, int(p)) for p in np.flatnonzero(np.frombuffer(raw, np.uint8) > 127)}
    notes.append(
        f"not UTF-8: decoded as {name} ({len(lines):,} line(s) hold non-ASCII bytes, first "
        f"line {min(lines)}); pass --encoding to choose another"
    )
    return Decoded(_no_nul(text, path), notes)


def _strict(raw: bytes, encoding: str, path: Path, hint: str = "") -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = _line_of(raw, exc.start) if "16" not in encoding else None
        raise DataError(
            f"bytes at offset {exc.start:,} are not valid {encoding} ({exc.reason})"
            + (f"; {hint}" if hint else ""),
            path=str(path),
            line=line,
        ) from None


def _no_nul(text: str, path: Path) -> str:
    pos = text.find("\x00")
    if pos >= 0:
        raise DataError(
            "NUL character in the text: binary data, or a wrong --encoding",
            path=str(path),
            line=text.count("\n", 0, pos) + 1,
        )
    return text


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def detect_sep(text: str, default: str, explicit: str | None) -> tuple[str, str | None]:
    """The delimiter to use and a note when it was detected rather than the default."""
    if explicit is not None:
        return explicit, None
    header = text.split("\n", 1)[0]
    if header.count(default) > 0:
        return default, None
    counts = {c: header.count(c) for c in _SEP_CANDIDATES if c != default}
    best = max(counts, key=lambda c: counts[c])
    if counts[best] == 0:
        return default, None
    shown = {"\t": "tab", ";": "';'", "|": "'|'", ",": "','"}[best]
    return best, f"delimiter {shown} detected from the header (pass --sep to set it)"


def header_names(text: str, sep: str) -> list[str]:
    """Column names of the first line, as the CSV reader sees them (stripped)."""
    first = next(csv.reader(io.StringIO(text.split("\n", 1)[0].rstrip("\r")), delimiter=sep), [])
    return [c.strip() for c in first]


def check_unique_columns(names: list[str], path: Path) -> None:
    """Refuse duplicated column names, naming the column and both positions."""
    seen: dict[str, int] = {}
    for pos, name in enumerate(names, start=1):
        if name in seen and name != "":
            raise DataError(
                f"duplicate column name '{name}' (columns {seen[name]} and {pos}); "
                "rename one so each column is read once",
                path=str(path),
                line=1,
                column=name,
            )
        seen.setdefault(name, pos)


def record_lines(text: str, sep: str) -> np.ndarray | None:
    """1-based first line of every data record, following quoted fields across newlines.

    None when the text has no quote character (then record i is simply line i + 2).
    """
    if '"' not in text:
        return None
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    starts: list[int] = []
    prev_end = 0
    try:
        for _row in reader:
            starts.append(prev_end + 1)
            prev_end = reader.line_num
    except csv.Error:
        return None
    return np.asarray(starts[1:], dtype=np.int64)


def check_field_lengths(
    frame: pd.DataFrame, error: Callable[[int, str | None, str], DataError]
) -> None:
    """Refuse any text cell longer than MAX_FIELD_CHARS (`error(pos, col, msg)` raises)."""
    for col in frame.columns:
        series = frame[col]
        if pd.api.types.is_numeric_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
            continue
        lengths = series.map(lambda v: len(v) if isinstance(v, str) else 0)
        if len(lengths) and int(lengths.max()) > MAX_FIELD_CHARS:
            pos = int(np.argmax(lengths.to_numpy()))
            raise error(
                pos,
                str(col),
                f"a field of {int(lengths.iloc[pos]):,} characters (limit {MAX_FIELD_CHARS:,}): "
                "an unbalanced quote, or a blob in a table cell?",
            )
