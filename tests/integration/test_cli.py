"""The `recsage` command end to end: quickstart, evaluate/train/recommend, clean errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def recsage(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recsage.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
    )


def test_quickstart_trains_evaluates_and_recommends(tmp_path: Path) -> None:
    res = recsage("quickstart", "--out", str(tmp_path / "qs"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for name in ("pop", "itemknn", "ease", "als"):
        assert name in out
    assert "Star Wars" in out or "recommended" in out
    report = json.loads((tmp_path / "qs" / "report" / "results.json").read_text())
    ndcg = {r["model"]: r["metrics"]["ndcg@10"] for r in report["results"]}
    # personalised models beat most-popular on ML-100K
    assert ndcg["ease"] > ndcg["pop"] and ndcg["itemknn"] > ndcg["pop"]
    assert (tmp_path / "qs" / "report" / "metrics.png").stat().st_size > 1000
    rec = recsage("recommend", "--model", str(tmp_path / "qs" / "ease"), "--user", "42", "-n", "5",
                  cwd=tmp_path)  # fmt: skip
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout.count("\n") >= 5
    # the quickstart also saves a servable pipeline around the same model
    pipe = recsage("recommend", "--pipeline", str(tmp_path / "qs" / "pipeline"), "--user", "42",
                   "-n", "5", cwd=tmp_path)  # fmt: skip
    assert pipe.returncode == 0, pipe.stderr

    def items(out: str) -> list[str]:  # the item column of the rich table rows
        rows = [ln.split("│") for ln in out.splitlines() if ln.count("│") >= 5]
        return [r[2].strip() for r in rows if r[1].strip().isdigit()]

    assert len(items(rec.stdout)) == 5 and items(pipe.stdout) == items(rec.stdout)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture
def csv_dir(tmp_path: Path) -> Path:
    _write(tmp_path / "items.csv", "item_id,title\nx,Film X\ny,Film Y\nz,Film Z\n")
    rows = ["user_id,item_id,timestamp"]
    for u in range(6):
        rows += [f"u{u},x,{10 * u + 1}", f"u{u},y,{10 * u + 2}", f"u{u},z,{10 * u + 3}"]
    _write(tmp_path / "good.csv", "\n".join(rows) + "\n")
    return tmp_path


def test_evaluate_train_recommend_on_a_csv(csv_dir: Path) -> None:
    args = ["--dataset", str(csv_dir / "good.csv"), "--items", str(csv_dir / "items.csv")]
    res = recsage("evaluate", *args, "--models", "pop,ease", "--out", "rep", cwd=csv_dir)
    assert res.returncode == 0, res.stderr
    assert (csv_dir / "rep" / "report.md").exists()
    res = recsage("train", *args, "--model", "ease", "-p", "l2=1", "--out", "m", cwd=csv_dir)
    assert res.returncode == 0, res.stderr
    res = recsage("recommend", "--model", "m", "--user", "u1", cwd=csv_dir)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("user_id,timestamp\nu1,5\n", ["bad.csv", "item_id"]),
        ("user_id,item_id,timestamp\nu1,x,5\nu1,y,yesterday\n", ["bad.csv", "line 3", "timestamp"]),
        (
            "user_id,item_id,timestamp\nu1,x,5\nu1,y,6\nu2,nope,7\n",
            ["bad.csv", "line 4", "item_id"],
        ),
    ],
    ids=["missing-column", "bad-timestamp", "unknown-item"],
)
def test_bad_input_is_one_clean_line(csv_dir: Path, content: str, expected: list[str]) -> None:
    _write(csv_dir / "bad.csv", content)
    res = recsage(
        "info", "--dataset", str(csv_dir / "bad.csv"), "--items", str(csv_dir / "items.csv"),
        cwd=csv_dir,
    )  # fmt: skip
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    err = res.stderr.strip()
    assert err.startswith("error:")
    assert len(err.splitlines()) <= 2  # one message (rich may wrap a long line once)
    for word in expected:
        assert word in err, err


def test_unknown_model_and_bad_param(csv_dir: Path) -> None:
    res = recsage("evaluate", "--models", "nope", cwd=csv_dir)
    assert res.returncode == 2 and "unknown model 'nope'" in res.stderr
    res = recsage("evaluate", "--models", "ease", "-p", "ease.l3=1", cwd=csv_dir)
    assert res.returncode == 2 and "valid: half_life, l2" in res.stderr
