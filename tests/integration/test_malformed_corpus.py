"""A corpus of malformed user files, generated here, through `recsage info` and `evaluate`.

Every file must be either refused — exit code 2, ONE line on stderr naming the file (and
the line / column where that applies) — or accepted with every dropped or altered row
counted and printed. Never a traceback, never an empty or meaningless metrics table.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from recsage.cli import common
from recsage.cli.main import main

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
N_USERS = 30
HEADER = ["user_id", "item_id", "timestamp"]


def rows(n_users: int = N_USERS, per_user: int = 4) -> list[list[str]]:
    """Each user touches `per_user` of 10 items at increasing times: LOO-evaluable."""
    out = []
    for u in range(n_users):
        for j in range(per_user):
            out.append([f"u{u}", f"i{(u + j) % 10}", str(T0 + 3600 * (u * per_user + j))])
    return out


def as_text(table: list[list[str]], sep: str = ",", eol: str = "\n") -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=sep, lineterminator=eol).writerows(table)
    return buf.getvalue()


GOOD = as_text([HEADER, *rows()])
ITEMS = as_text(
    [["item_id", "title", "category"]] + [[f"i{j}", f"Item {j}", "A|B"] for j in range(10)]
)


def with_row(line: int, fields: list[str], base: list[list[str]] | None = None) -> str:
    """GOOD with `fields` replacing the data row at file line `line` (header = line 1)."""
    table = [HEADER, *(base or rows())]
    table[line - 1] = fields
    return as_text(table)


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def zip_bytes(name: str, text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(name, text)
    return buf.getvalue()


def jsonl(records: list[dict[str, object]]) -> str:
    return pd.DataFrame(records).to_json(orient="records", lines=True)


GOOD_RECORDS = [dict(zip(HEADER, (r[0], r[1], int(r[2])), strict=True)) for r in rows()]


@dataclass
class Case:
    """One malformed file (plus optional item file) and what recsage must say about it."""

    name: str
    content: str | bytes | Callable[[], str | bytes]
    suffix: str = ".csv"
    args: list[str] = field(default_factory=list)
    items: str | bytes | None = None
    refuse: list[str] | None = None  # substrings of the one error line (None: accepted)
    accept: list[str] = field(default_factory=list)  # substrings info must print
    evaluate_refuse: list[str] | None = None  # accepted by info, refused by evaluate
    items_suffix: str = ".csv"

    def data(self) -> bytes:
        c = self.content() if callable(self.content) else self.content
        return c.encode() if isinstance(c, str) else c


def _multiline_quoted() -> str:
    table = [[*HEADER, "note"]] + [[*r, "ok"] for r in rows()]
    table[2][3] = "first line\nsecond line\nthird line"  # record 2 spans lines 3-5
    table[4][2] = "whenever"  # record 4 starts at physical line 7
    return as_text(table)


CASES = [
    # ---- encodings ------------------------------------------------------------------------
    Case("utf16_bom", GOOD.encode("utf-16"), accept=["decoded as UTF-16 (byte-order mark)"]),
    Case("utf16le_no_bom", GOOD.encode("utf-16-le"), accept=["decoded as UTF-16-LE"]),
    Case("utf16be_no_bom", GOOD.encode("utf-16-be"), accept=["decoded as UTF-16-BE"]),
    Case(
        "latin1",
        with_row(3, ["Zoë", "i1", str(T0)]).encode("latin-1"),
        accept=["not UTF-8: decoded as Windows-1252", "first line 3"],
    ),
    Case(
        "invalid_utf8_bytes",
        with_row(2, ["Zoë", "i1", str(T0)]).encode().replace(b"u5,", b"u\xff5,", 1),
        refuse=["line 22", "not valid UTF-8"],
    ),
    Case(
        "wrong_explicit_encoding",
        with_row(4, ["Zoë", "i1", str(T0)]).encode("latin-1"),
        args=["--encoding", "utf-8"],
        refuse=["line 4", "not valid utf-8", "--encoding"],
    ),
    Case("utf8_bom_header", b"\xef\xbb\xbf" + GOOD.encode(), accept=[]),
    Case("bom_and_crlf", b"\xef\xbb\xbf" + as_text([HEADER, *rows()], eol="\r\n").encode()),
    Case("nul_bytes", GOOD.replace("u7,", "u7\x00,", 1), refuse=["line 30", "NUL"]),
    Case("gzip_named_csv", gzip.compress(GOOD.encode()), accept=["gzip-compressed content"]),
    Case("gzip_truncated", gzip.compress(GOOD.encode())[:60], refuse=["cannot be decompressed"]),
    Case("zip_named_csv", zip_bytes("log.csv", GOOD), refuse=["ZIP archive"]),
    # ---- delimiters -----------------------------------------------------------------------
    Case("semicolon_detected", as_text([HEADER, *rows()], ";"), accept=["delimiter ';' detected"]),
    Case("semicolon_given", as_text([HEADER, *rows()], ";"), args=["--sep", ";"]),
    Case("tab_in_csv_detected", as_text([HEADER, *rows()], "\t"), accept=["delimiter tab"]),
    Case("tab_given", as_text([HEADER, *rows()], "\t"), args=["--sep", "tab"]),
    Case("pipe_detected", as_text([HEADER, *rows()], "|"), accept=["delimiter '|' detected"]),
    Case("pipe_given", as_text([HEADER, *rows()], "|"), args=["--sep", "|"]),
    Case("tsv_file", as_text([HEADER, *rows()], "\t"), suffix=".tsv"),
    Case(
        "wrong_sep_given",
        GOOD,
        args=["--sep", ";"],
        refuse=["missing column 'user_id'", "ONE column", "--sep"],
    ),
    # ---- rows and fields ------------------------------------------------------------------
    Case(
        "ragged_long_row",
        with_row(6, ["u1", "i1", str(T0), "extra"]),
        refuse=["line 6", "4 fields where the header has 3"],
    ),
    Case(
        "ragged_short_row",
        with_row(6, ["u1", "i1"]),
        accept=["dropped 1", "dropped 1: missing timestamp"],
    ),
    Case(
        "empty_fields",
        as_text([HEADER, *rows(), ["", "i1", str(T0)], ["u1", "", str(T0)], ["", "", ""]]),
        accept=["dropped 2", "dropped 2: missing user or item id"],
    ),
    Case("blank_lines", GOOD.replace("\nu3,", "\n\n\nu3,"), accept=["read 120 rows, dropped 0"]),
    Case("crlf_endings", as_text([HEADER, *rows()], eol="\r\n")),
    Case("quoted_delimiters", GOOD, items=ITEMS.replace("Item 3", '"Toys, large, blue"')),
    Case(
        "quoted_newlines_line_numbers",
        _multiline_quoted,
        refuse=["line 7", "column 'timestamp'", "'whenever'"],
    ),
    Case(
        "huge_field_1mb",
        with_row(9, ["u1" + "x" * 1_048_576, "i1", str(T0)]),
        refuse=["line 9", "column 'user_id'", "limit 100,000"],
    ),
    Case(
        "huge_field_in_items",
        GOOD,
        items=ITEMS.replace("Item 4", "y" * 1_048_576),
        refuse=["items.csv", "line 6", "column 'title'"],
    ),
    Case(
        "unbalanced_quote", GOOD.replace("u4,", '"u4,', 1), refuse=["line 18", "unbalanced quote"]
    ),
    Case("empty_file", "", refuse=["empty"]),
    Case("whitespace_only", "\n \n\n", refuse=["only blank lines"]),
    Case("header_only", "user_id,item_id,timestamp\n", refuse=["no rows"]),
    Case(
        "duplicate_headers",
        "user_id,item_id,item_id,timestamp\nu1,i1,i2,5\n",
        refuse=["line 1", "duplicate column name 'item_id' (columns 2 and 3)"],
    ),
    Case(
        "duplicate_headers_in_items",
        GOOD,
        items="item_id,title,title\ni1,a,b\n",
        refuse=["items.csv", "duplicate column name 'title'"],
    ),
    # ---- values, events -------------------------------------------------------------------
    Case(
        "nan_value",
        as_text(
            [[*HEADER, "rating"]] + [[*r, "nan" if i == 7 else "4"] for i, r in enumerate(rows())]
        ),
        args=["--value-col", "rating"],
        refuse=["line 9", "column 'rating'", "not a finite number"],
    ),
    Case(
        "inf_value",
        as_text(
            [[*HEADER, "rating"]] + [[*r, "inf" if i == 3 else "4"] for i, r in enumerate(rows())]
        ),
        args=["--value-col", "rating"],
        refuse=["line 5", "'inf' is not a finite number"],
    ),
    Case(
        "unparseable_value",
        as_text(
            [[*HEADER, "rating"]] + [[*r, "five" if i == 2 else "4"] for i, r in enumerate(rows())]
        ),
        args=["--value-col", "rating"],
        refuse=["line 4", "cannot parse value 'five'"],
    ),
    Case(
        "non_finite_price_in_items",
        GOOD,
        items="item_id,title,price\n"
        + "".join(f"i{j},T{j},{'inf' if j == 2 else 'nan' if j == 5 else j}\n" for j in range(10)),
        accept=["2 non-finite value(s) (NaN/inf) in 'price' set to missing (first at line 4)"],
    ),
    Case(
        "event_type_without_weight",
        as_text(
            [[*HEADER, "event_type"]]
            + [[*r, "view" if i % 3 else "wishlist"] for i, r in enumerate(rows())]
        ),
        args=["--event-weights", "view=1,purchase=3"],
        refuse=["line 2", "column 'event_type'", "'wishlist' (40 rows)"],
    ),
    Case(
        "event_weight_zero_drops",
        as_text(
            [[*HEADER, "event"]]
            + [[*r, "view" if i % 4 else "impression"] for i, r in enumerate(rows(per_user=5))]
        ),
        args=["--event-weights", "view=1,impression=0"],
        accept=["dropped 38: event type with weight 0 (impression)"],
    ),
    Case(
        "weights_without_event_column",
        GOOD,
        args=["--event-weights", "view=1"],
        refuse=["--event-weights needs an event type column"],
    ),
    # ---- times ----------------------------------------------------------------------------
    Case(
        "negative_time",
        with_row(12, ["u2", "i3", "-5"]),
        refuse=["line 12", "'-5' is before 1970-01-01"],
    ),
    Case(
        "far_future_date",
        as_text(
            [HEADER]
            + [
                [u, i, "2200-01-01" if k == 3 else pd.Timestamp(int(t), unit="s").isoformat()]
                for k, (u, i, t) in enumerate(rows())
            ]
        ),
        refuse=["line 5", "'2200-01-01' is more than a year in the future"],
    ),
    Case("absurd_epoch", with_row(7, ["u2", "i3", "1e30"]), refuse=["line 7", "'1e30'"]),
    Case(
        "epoch_milliseconds",
        as_text([HEADER] + [[u, i, t + "000"] for u, i, t in rows()]),
        accept=["epoch values read as milliseconds"],
    ),
    Case(
        "unparseable_time",
        with_row(10, ["u2", "i3", "yesterday"]),
        refuse=["line 10", "'yesterday'"],
    ),
    Case(
        "iso_and_mixed_dates",
        as_text(
            [HEADER]
            + [
                [u, i, pd.Timestamp(int(t), unit="s").isoformat() + ("Z" if k % 2 else "")]
                for k, (u, i, t) in enumerate(rows())
            ]
        ),
    ),
    # ---- too few interactions for a split -------------------------------------------------
    Case(
        "one_interaction_each",
        as_text([HEADER, *rows(per_user=1)]),
        evaluate_refuse=["leaves 0 user(s)", "longest history 1"],
    ),
    Case(
        "three_users_only",
        as_text([HEADER, *rows(n_users=3)]),
        evaluate_refuse=["leaves 3 user(s) to evaluate (minimum 5)"],
    ),
    # ---- JSON lines -----------------------------------------------------------------------
    Case(
        "jsonl_good_with_blank_lines",
        jsonl(GOOD_RECORDS).replace("}\n", "}\n\n", 3),
        suffix=".jsonl",
    ),
    Case(
        "jsonl_truncated_last_line",
        jsonl(GOOD_RECORDS)[:-20],
        suffix=".jsonl",
        refuse=["line 120", "invalid JSON"],
    ),
    Case(
        "jsonl_invalid_line",
        jsonl(GOOD_RECORDS).replace('"u0"', "u0", 1),
        suffix=".jsonl",
        refuse=["line 1", "invalid JSON"],
    ),
    Case(
        "jsonl_duplicate_key",
        '{"user_id": "a", "item_id": "x", "item_id": "y"}\n',
        suffix=".jsonl",
        refuse=["line 1", "duplicate key 'item_id'"],
    ),
    Case(
        "jsonl_not_an_object",
        jsonl(GOOD_RECORDS) + "[1, 2, 3]\n",
        suffix=".jsonl",
        refuse=["line 121", "expected a JSON object"],
    ),
    Case(
        "json_array_truncated",
        pd.DataFrame(GOOD_RECORDS).to_json(orient="records")[:-30],
        suffix=".json",
        refuse=["invalid JSON"],
    ),
    # ---- Parquet --------------------------------------------------------------------------
    Case(
        "parquet_truncated",
        lambda: parquet_bytes(pd.DataFrame(GOOD_RECORDS))[:300],
        suffix=".parquet",
        refuse=["cannot read Parquet file", "truncated or corrupt"],
    ),
    Case("parquet_that_is_csv", GOOD, suffix=".parquet", refuse=["'PAR1' magic"]),
    Case(
        "parquet_inf_value",
        lambda: parquet_bytes(
            pd.DataFrame(GOOD_RECORDS).assign(
                rating=[float("inf") if i == 4 else 1.0 for i in range(len(GOOD_RECORDS))]
            )
        ),
        suffix=".parquet",
        args=["--value-col", "rating"],
        refuse=["row 5", "not a finite number"],
    ),
    # ---- columns --------------------------------------------------------------------------
    Case(
        "missing_item_column",
        "user_id,timestamp\nu1,5\n",
        refuse=["missing column 'item_id'", "--item-col"],
    ),
    Case(
        "items_without_id_column",
        GOOD,
        items="sku_code,title\ni1,a\n",
        refuse=["items.csv", "missing column 'item_id'", "--item-id-col"],
    ),
    Case(
        "unknown_item",
        with_row(8, ["u1", "zz", str(T0)]),
        items=ITEMS,
        refuse=["line 8", "unknown item id 'zz'", "--unknown-items drop"],
    ),
    Case(
        "unknown_item_dropped",
        with_row(8, ["u1", "zz", str(T0)]),
        items=ITEMS,
        args=["--unknown-items", "drop"],
        accept=["dropped 1: unknown item id"],
    ),
    Case(
        "own_column_names",
        as_text([["customer_id", "product_id", "event_time"], *rows()]),
        items=as_text(
            [["product_id", "name", "category", "description"]]
            + [[f"i{j}", f"P{j}", "Pets", "d"] for j in range(10)]
        ),
        accept=["customer_id", "user id", "product_id", "event_time", "categories"],
    ),
]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`recsage ARGS` in-process through the real entry point (exit codes included)."""
    old = sys.argv
    sys.argv = ["recsage", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def _write(case: Case, tmp_path: Path) -> list[str]:
    log = tmp_path / f"log{case.suffix}"
    log.write_bytes(case.data())
    args = ["--dataset", str(log), *case.args]
    if case.items is not None:
        items = tmp_path / f"items{case.items_suffix}"
        items.write_bytes(case.items.encode() if isinstance(case.items, str) else case.items)
        args += ["--items", str(items)]
    return args


def _check_refusal(code: int, out: str, err: str, case: Case, expected: list[str]) -> None:
    assert code == 2, f"{case.name}: exit {code}\n{out}\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{case.name}: not one line:\n{err}"
    assert lines[0].startswith("error: "), err
    named = "items" if any("items" in e for e in expected) else "log"
    assert f"{named}{case.items_suffix if named == 'items' else case.suffix}" in lines[0] or (
        "--" in lines[0]
    ), f"{case.name}: the error does not name the file: {lines[0]}"
    for part in expected:
        assert part in lines[0], f"{case.name}: {part!r} not in {lines[0]!r}"


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)
    assert {c.suffix for c in CASES} >= {".csv", ".tsv", ".jsonl", ".json", ".parquet"}
    refused = sum(c.refuse is not None for c in CASES)
    assert 20 <= refused <= len(CASES) - 15  # both outcomes well represented


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_file(
    case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(common.console, "width", 200)
    monkeypatch.setattr(common.err_console, "width", 200)
    args = _write(case, tmp_path)
    code, out, err = run_cli(["info", *args], capsys)
    assert "Traceback" not in out + err
    if case.refuse is not None:
        _check_refusal(code, out, err, case, case.refuse)
        code, out, err = run_cli(["evaluate", "--models", "pop", *args], capsys)
        _check_refusal(code, out, err, case, case.refuse)
        return
    assert code == 0, f"{case.name}: exit {code}\n{out}\n{err}"
    users = int(re.search(r"│ users\s+│\s+([\d,]+)", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert users > 0
    report = re.search(r"read ([\d,]+) rows, dropped ([\d,]+)", out)
    assert report is not None, out
    dropped = int(report.group(2).replace(",", ""))
    reasons = [int(n.replace(",", "")) for n in re.findall(r"  dropped ([\d,]+): ", out)]
    assert sum(reasons) == dropped  # every dropped row is counted under a reason
    for part in case.accept:
        assert part in out, f"{case.name}: {part!r} not printed:\n{out}"
    code, out, err = run_cli(["evaluate", "--models", "pop", *args], capsys)
    assert "Traceback" not in out + err
    if case.evaluate_refuse is not None:
        _check_refusal(code, out, err, case, case.evaluate_refuse)
        return
    assert code == 0, f"{case.name}: exit {code}\n{out}\n{err}"
    row = re.search(r"│ pop\s+│\s+([\d,]+) │\s+([\d.]+) │", out)
    assert row is not None, out
    assert int(row.group(1).replace(",", "")) >= 5  # a real evaluation, not an empty table
    if dropped or "note:" in out:
        assert "dropped" in out or "note" in out  # what was changed is said again


def test_refusals_through_the_console_script(tmp_path: Path) -> None:
    """A few cases end to end in a fresh process: exit 2 and exactly one stderr line."""
    picked = ("invalid_utf8_bytes", "quoted_newlines_line_numbers", "jsonl_truncated_last_line")
    for case in (c for c in CASES if c.name in picked):
        d = tmp_path / case.name
        d.mkdir()
        args = _write(case, d)
        res = subprocess.run(
            [sys.executable, "-m", "recsage.cli", "info", *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=d,
            env={
                "COLUMNS": "200",
                "PATH": "/usr/bin:/bin",
                "HF_HUB_OFFLINE": "1",
                "PYTHONPATH": ":".join(sys.path),
            },
        )
        assert res.returncode == 2, (case.name, res.stdout, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "Traceback" not in res.stderr
        assert case.refuse is not None and case.refuse[0] in res.stderr
