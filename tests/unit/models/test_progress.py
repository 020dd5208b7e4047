"""What the training progress display prints: one log line per epoch with that epoch's loss
and validation NDCG (the numbers the model records), the bar's final count, and nothing at
all when progress is off."""

from __future__ import annotations

import re
from typing import Any

import pytest

from recsage.data.splits import leave_one_out
from recsage.models.registry import create_model
from recsage.testing import tiny_dataset

TINY = {
    "sasrec": {"dim": 16, "layers": 1, "heads": 1, "max_len": 12, "max_epochs": 3,
               "batch_size": 32, "threads": 1, "patience": 10},
    "two_tower": {"dim": 16, "max_epochs": 3, "batch_size": 64, "use_text": False,
                  "profile_map": False, "threads": 1, "patience": 10},
}  # fmt: skip


def _train(name: str, progress: bool) -> Any:
    data = tiny_dataset(0)
    valid = leave_one_out(data).valid
    model = create_model(name, **TINY[name], progress=progress)
    return model.fit(valid.train, valid=valid)


@pytest.mark.parametrize("name", ["sasrec", "two_tower"])
def test_epoch_lines_report_the_recorded_loss_and_ndcg(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _train(name, progress=True)
    out = capsys.readouterr().out
    # log lines (the bar's own line describes the epoch in progress, without validation)
    lines = [ln for ln in out.splitlines() if re.search(rf"{name} epoch \d+ \| loss .* val ", ln)]
    assert len(model.history) == 3
    assert len(lines) == 3, out  # one line per epoch, not one per step or none
    for line, record in zip(lines, model.history, strict=True):
        assert f"epoch {int(record['epoch'])} | loss {record['loss']:.4f}" in line
        assert f"val ndcg@10 {record['ndcg@10']:.4f}" in line
        assert re.search(r"\| \d+\.\ds", line), "the epoch's seconds"
    # the bar itself ends full: steps done / steps per epoch
    done = re.findall(r"(\d+)/(\d+)", out)
    assert done and done[-1][0] == done[-1][1]


@pytest.mark.parametrize("name", ["sasrec", "two_tower"])
def test_progress_off_prints_nothing(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    model = _train(name, progress=False)
    assert len(model.history) == 3
    captured = capsys.readouterr()
    assert captured.out == "" and "epoch" not in captured.err
