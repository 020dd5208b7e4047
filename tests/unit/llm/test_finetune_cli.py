"""`recsage llm finetune`: trains the llm_ranker stage of a pipeline spec, saves the
pipeline with its adapters, and resumes from its checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recsage.cli import app
from recsage.llm.llm_ranker import LLMRankerStage
from recsage.pipeline.pipeline import Pipeline
from recsage.testing import tiny_dataset

SPEC = """
[text]
enabled = false
[[channels]]
name = "ease"
kind = "model"
model = "ease"
n = 40
params = { l2 = 100.0 }
[[stages]]
name = "base"
kind = "column"
column = "ease"
keep = 20
[[stages]]
name = "llm"
kind = "llm_ranker"
keep = 20
top = 6
"""


def _tiny_files(folder: Path) -> tuple[Path, Path]:
    """The conformance suites' tiny dataset as an interactions CSV and an item table."""
    data = tiny_dataset(0)
    inter = data.interactions
    pd.DataFrame(
        {"user_id": inter.user, "item_id": inter.item, "timestamp": inter.timestamp}
    ).to_csv(folder / "events.csv", index=False)
    pd.DataFrame({"item_id": np.arange(data.n_items), "title": data.item_table["title"]}).to_csv(
        folder / "items.csv", index=False
    )
    return folder / "events.csv", folder / "items.csv"


@pytest.mark.slow
def test_finetune_trains_saves_and_resumes(tmp_path: Path) -> None:
    spec = tmp_path / "p.toml"
    spec.write_text(SPEC)
    events, items = _tiny_files(tmp_path)
    out, ck = tmp_path / "pipe", tmp_path / "ck"
    args = ["llm", "finetune", "--pipeline", str(spec), "--dataset", str(events), "--items",
            str(items), "--out", str(out), "--model", "tiny", "--users", "30", "--checkpoint",
            str(ck)]  # fmt: skip
    res = CliRunner().invoke(app, [*args, "--epochs", "1"])
    assert res.exit_code == 0, res.output
    assert "trained on" in res.output and "users skipped" in res.output
    stage = Pipeline.load(out).stages[-1]
    assert isinstance(stage, LLMRankerStage) and stage.lm is not None
    assert [h["epoch"] for h in stage.lm.history] == [1]
    # a second call with more epochs continues from the checkpoint: epoch 2 only is new
    res = CliRunner().invoke(app, [*args, "--epochs", "2"])
    assert res.exit_code == 0, res.output
    stage = Pipeline.load(out).stages[-1]
    assert isinstance(stage, LLMRankerStage) and stage.lm is not None
    assert [h["epoch"] for h in stage.lm.history] == [1, 2]
