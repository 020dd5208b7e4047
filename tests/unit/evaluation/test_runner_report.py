"""The evaluation runner and report writer: the numbers on disk are `evaluate(...)`'s."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from recsage.errors import ConfigError
from recsage.evaluation import evaluate
from recsage.evaluation.report import headline_columns, markdown_table, write_reports
from recsage.evaluation.runner import make_split, parse_params, run_models
from recsage.models.registry import create_model
from recsage.testing import tiny_dataset


@pytest.fixture(scope="module")
def data():
    return tiny_dataset(0)


@pytest.fixture(scope="module")
def results(data):
    return run_models(data, ["pop", "ease"], params={"ease": {"l2": "10"}}, ks=(5, 10))


def test_run_models_equals_evaluate_on_the_same_split(data, results) -> None:
    split = make_split(data, "loo")
    assert [r.model for r in results] == ["pop", "ease"]
    for r, model in zip(results, [create_model("pop"), create_model("ease", l2=10.0)], strict=True):
        want = evaluate(model.fit(split.train), split, name=r.model, ks=(5, 10))
        assert r.metrics == pytest.approx(want.metrics, abs=1e-12)
        assert r.extra["fit_seconds"] >= 0.0
    assert results[1].extra["config"] == {"l2": "10"}
    # EASE learns the planted walks; popularity cannot
    assert results[1].metrics["ndcg@10"] > results[0].metrics["ndcg@10"] + 0.1


def test_reports_on_disk_hold_the_evaluated_numbers(data, results, tmp_path: Path) -> None:
    paths = write_reports(results, tmp_path / "rep", dataset=data.describe())
    payload = json.loads(paths["json"].read_text())
    assert payload["dataset"] == data.describe()
    for r, saved in zip(results, payload["results"], strict=True):
        assert saved["model"] == r.model
        assert saved["metrics"] == pytest.approx(r.metrics, abs=1e-12)
        assert saved["protocol"]["split"] == r.protocol["split"]
    md = paths["markdown"].read_text()
    cols = headline_columns(results)
    header = next(ln for ln in md.splitlines() if ln.startswith("| model |"))
    assert header.split(" | ")[1 : 2 + len(cols)] == ["users", *cols]
    for r in results:
        row = next(ln for ln in md.splitlines() if ln.startswith(f"| {r.model} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"{r.protocol['users']:,}" == f"{len(r.per_user):,}"
        assert cells[2 : 2 + len(cols)] == [f"{r.metrics[c]:.4f}" for c in cols]
    assert f"{results[0].protocol['users']} users" in md
    assert markdown_table(results) in md
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    for r in results:  # per-user rows average to the reported means
        per_user = pd.read_csv(tmp_path / "rep" / f"per_user_{r.model}.csv")
        assert len(per_user) == r.protocol["users"]
        assert per_user["ndcg@10"].mean() == pytest.approx(r.metrics["ndcg@10"], abs=1e-9)
        assert per_user["hr@10"].mean() == pytest.approx(r.metrics["hr@10"], abs=1e-9)


def test_splits_and_params_are_validated(data) -> None:
    assert make_split(data, "loo").name != make_split(data, "loo-valid").name
    test, valid = make_split(data, "loo"), make_split(data, "loo-valid")
    assert len(valid.train.interactions) < len(test.train.interactions)
    with pytest.raises(ConfigError, match="unknown split"):
        make_split(data, "nope")
    assert parse_params(["ease.l2=300", "als.factors=8", "ease.half_life=2"]) == {
        "ease": {"l2": "300", "half_life": "2"},
        "als": {"factors": "8"},
    }
    with pytest.raises(ConfigError, match=r"MODEL\.KEY=VALUE"):
        parse_params(["l2=300"])
    with pytest.raises(ConfigError, match="not being run"):
        run_models(data, ["pop"], params={"ease": {"l2": 1}})


def test_hand_checked_metrics_on_a_two_user_split() -> None:
    """The runner's numbers for a model whose ranking is known: popularity."""
    from tests.conftest import make_dataset

    rows = [("a", "i0", 1), ("a", "i1", 2), ("a", "i2", 3), ("b", "i0", 1), ("b", "i3", 2),
            ("b", "i1", 3), ("c", "i0", 1), ("c", "i3", 2), ("c", "i4", 3)]  # fmt: skip
    ds = make_dataset(rows, n_items=5)
    (res,) = run_models(ds, ["pop"], ks=(2, 3))
    # loo test: targets a:i2, b:i1, c:i4; train counts i0:3, i3:2, i1:1, i2:0, i4:0.
    # Ties count against the target. a (saw i0, i1): i3, then i2 tied with i4 -> rank 3;
    # b (saw i0, i3): i1 first -> rank 1; c (saw i0, i3): i1, then i4 tied with i2 -> rank 3
    assert res.metrics["hr@2"] == pytest.approx(1 / 3)
    assert res.metrics["ndcg@2"] == pytest.approx(1 / 3)
    assert res.metrics["hr@3"] == pytest.approx(1.0)
    assert res.metrics["ndcg@3"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
