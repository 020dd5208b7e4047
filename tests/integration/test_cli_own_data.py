"""`recsage` on a user's own CSV pair: options shared by every command, splits, cut-offs,
event weights, and the everyday flags (--version, -h, --sampled checks, artefact hints)."""

from __future__ import annotations

import io
import json
import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from recsage.cli import common
from recsage.cli.main import main

T0 = 1_704_067_200  # 2024-01-01


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    old = sys.argv
    sys.argv = ["recsage", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 0
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common.console, "width", 220)
    monkeypatch.setattr(common.err_console, "width", 220)


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """60 shoppers over 12 products in 3 categories: views, carts, purchases, ISO times."""
    rng = np.random.default_rng(0)
    lines = ["sku,name,category,description,price"]
    for j in range(12):
        cat = ("Cat Litter", "Dog Toys", "Fish Food")[j % 3]
        lines.append(f"P{j},Product {j},{cat},A {cat.lower()} item,{1.5 + j}")
    (tmp_path / "products.csv").write_text("\n".join(lines) + "\n")
    rows = ["user_id,sku,when,event_type"]
    for u in range(60):
        fav = u % 3
        for k in range(6):  # round k of every shopper: users interleave in time
            j = int(fav + 3 * rng.integers(4))
            t = T0 + 3600 * (60 * k + u)
            iso = np.datetime64(t, "s").astype(str) + "Z"
            rows.append(f"U{u},P{j},{iso},view")
            if rng.random() < 0.5:
                rows.append(f"U{u},P{j},{iso[:-3]}30Z,purchase")
    (tmp_path / "events.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def data_args(d: Path) -> list[str]:
    return [
        "-d",
        str(d / "events.csv"),
        "--items",
        str(d / "products.csv"),
        "--item-col",
        "sku",
        "--time-col",
        "when",
        "--event-weights",
        "purchase=3,view=1",
    ]


def test_version_and_short_help(capsys: pytest.CaptureFixture[str]) -> None:
    from recsage import __version__

    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.strip() == f"recsage {__version__}"
    code, out, _ = run(["-h"], capsys)
    assert code == 0 and "evaluate" in out and "Usage" in out
    code, out, _ = run(["evaluate", "-h"], capsys)
    assert code == 0 and "--event-weights" in out and "--target-events" in out


@pytest.mark.parametrize("cmd", ["info", "evaluate", "train", "search", "explain", "chat"])
def test_every_data_command_takes_the_same_options(
    cmd: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run([cmd, "-h"], capsys)
    assert code == 0
    for opt in (
        "--items",
        "--item-id-col",
        "--title-col",
        "--category-col",
        "--text-col",
        "--event-col",
        "--event-weights",
        "--unknown-items",
        "--sep",
        "--encoding",
    ):
        assert opt in out, (cmd, opt)


def test_info_says_what_each_column_became(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["info", *data_args(shop)], capsys)
    assert code == 0, err
    assert re.search(r"│ users\s+│\s+60 │", out) and re.search(r"│ items\s+│\s+12 │", out)
    assert "time range" in out and "2024-01-01" in out
    assert "event weights" in out and "view=1, purchase=3" in out
    for line in (
        r"events\.csv\s+│ user_id\s+│ user id",
        r"events\.csv\s+│ sku\s+│ item id",
        r"events\.csv\s+│ when\s+│ timestamp",
        r"events\.csv\s+│ event_type\s+│ event type \(view 360 · purchase \d+; weights",
        r"products\.csv\s+│ sku\s+│ item id",  # the interactions' item column name, reused
        r"products\.csv\s+│ name\s+│ title",
        r"products\.csv\s+│ category\s+│ categories \(split on '\|', 3 distinct\)",
        r"products\.csv\s+│ description\s+│ text \(item description\)",
        r"products\.csv\s+│ price\s+│ attribute \(number",
    ):
        assert re.search(line, out), line
    # a table option on a built-in dataset is a mistake, said plainly
    code, _, err = run(["info", "-d", "ml-100k", "--user-col", "x"], capsys)
    assert code == 2 and "--user-col applies to table files" in err


def test_evaluate_splits_cutoffs_and_targets(
    shop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["evaluate", *data_args(shop), "--models", "pop,ease"]
    code, out, err = run([*args, "--k", "5,20", "--out", str(tmp_path / "rep")], capsys)
    assert code == 0, err
    header = next(line for line in out.splitlines() if "model" in line)
    assert [h for h in ("users", "hr@5", "ndcg@5", "hr@20", "ndcg@20") if h in header] == [
        "users",
        "hr@5",
        "ndcg@5",
        "hr@20",
        "ndcg@20",
    ]
    assert "hr@10" not in header
    assert re.search(r"│ ease\s+│\s+60 │", out)  # all 60 users evaluated
    report = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert {"hr@5", "hr@20"} <= set(report["results"][0]["metrics"])
    assert "warning" not in err  # 60 >= 50 users: no small-sample warning

    code, out, err = run(
        [*args, "--split", "temporal", "--cutoff", "2024-01-10", "--target-events", "purchase"],
        capsys,
    )
    assert code == 0, err
    assert "note: cutoff 2024-01-10" in out and "targets: purchase events only" in out
    users = int(re.search(r"│ ease\s+│\s+(\d+) │", out).group(1))  # type: ignore[union-attr]
    assert 5 <= users < 50 and f"only {users} users evaluated" in err

    code, out, err = run([*args, "--split", "kfold", "--folds", "3", "--min-users", "1"], capsys)
    assert code == 0, err
    assert "kfold (3 folds)" in out and re.search(r"ease: ndcg@10 [\d.]+ ± [\d.]+", out)

    code, out, err = run([*args, "--split", "random", "--seed", "4"], capsys)
    assert code == 0 and "random holdout of 20% per user (seed 4)" in out

    code, _, err = run([*args, "--split", "loo", "--cutoff", "2024-01-10"], capsys)
    assert code == 2 and "--split temporal" in err
    code, _, err = run([*args, "--target-events", "refund"], capsys)
    assert code == 2 and "its event types: view, purchase" in err


@pytest.mark.parametrize("n", ["0", "-5"])
def test_sampled_must_be_positive(n: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["evaluate", "--sampled", n], capsys)
    assert code == 2 and "Traceback" not in out + err
    assert "--sampled must be >= 1" in err and "omit it for full ranking" in err


def test_pipeline_temporal_and_artefact_hints(
    shop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "light.toml"
    spec.write_text(
        '[text]\nenabled = false\n\n[[channels]]\nname = "ease"\nkind = "model"\nmodel = "ease"\n'
        'n = 10\n\n[[channels]]\nname = "pop"\nkind = "popularity"\nn = 10\n'
    )
    code, out, err = run(
        [
            "evaluate",
            *data_args(shop),
            "--pipeline",
            str(spec),
            "--split",
            "temporal",
            "--cutoff",
            "2024-01-10",
        ],
        capsys,
    )
    assert code == 0, err
    assert "pipeline light.toml, temporal" in out and "note: cutoff 2024-01-10" in out
    code, out, err = run(
        ["train", *data_args(shop), "--pipeline", str(spec), "--out", str(tmp_path / "pipe")],
        capsys,
    )
    assert code == 0, err
    assert "event weights view=1, purchase=3" in out
    saved = tomllib.loads((tmp_path / "pipe" / "pipeline.toml").read_text())
    assert saved["pipeline"]["event_weights"] == {"view": 1.0, "purchase": 3.0}
    from recsage.pipeline.pipeline import Pipeline

    assert Pipeline.load(tmp_path / "pipe").event_weights == {"view": 1.0, "purchase": 3.0}
    code, _, err = run(["recommend", "--model", str(tmp_path / "pipe"), "-u", "U1"], capsys)
    assert (
        code == 2 and f"is a saved pipeline, not a model: use --pipeline {tmp_path / 'pipe'}" in err
    )
    code, _, err = run(
        ["train", *data_args(shop), "--model", "pop", "--out", str(tmp_path / "m")], capsys
    )
    assert code == 0, err
    code, _, err = run(["recommend", "--pipeline", str(tmp_path / "m"), "-u", "U1"], capsys)
    assert code == 2 and "is a saved model, not a pipeline: use --model" in err
    code, _, err = run(
        ["evaluate", *data_args(shop), "--pipeline", str(spec), "--split", "kfold"], capsys
    )
    assert code == 2 and "--split loo, temporal or random" in err


def test_search_and_chat_read_the_item_file(
    shop: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(
        [
            "search",
            "litter",
            "-d",
            str(shop / "events.csv"),
            "--item-col",
            "sku",
            "--time-col",
            "when",
        ],
        capsys,
    )
    assert code == 2 and "no item text" in err and "--items" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO("fish food please\nquit\n"))
    code, out, err = run(["chat", *data_args(shop), "--encoder", "keywords", "-n", "3"], capsys)
    assert code == 0, err
    picks = re.findall(r"^  \d\. (.+)$", out, flags=re.M)
    assert len(picks) == 3 and all(p.startswith("Product ") for p in picks)  # titles, not ids


def test_stage_parameter_hint_uses_the_toml_spelling(
    shop: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "typo.toml"
    spec.write_text(
        '[[channels]]\nname = "pop"\nkind = "popularity"\n\n'
        '[[stages]]\nname = "rerank"\nkind = "mmr"\nlamda = 0.5\n'
    )
    code, _, err = run(["evaluate", *data_args(shop), "--pipeline", str(spec)], capsys)
    assert code == 2 and "unknown parameter(s) lamda; valid: category_cap, column, lambda" in err
    assert "lambda_" not in err
