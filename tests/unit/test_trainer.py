"""The shared training loop: early stopping, time budget, checkpoint/resume, progress.

A one-parameter "model" whose weight is set by the epoch function makes every expectation
checkable by hand; the clock is a fake one that advances only when the test says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recsage.errors import ArtifactError, ConfigError
from recsage.trainer import Checkpoint, EpochContext, Trainer, TrainerConfig


class FakeClock:
    """Seconds that move only by `tick` (no real time in these tests)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


def test_early_stopping_restores_the_best_state() -> None:
    net = torch.nn.Linear(1, 1, bias=False)
    scores = [0.1, 0.5, 0.4, 0.3, 0.9]  # epoch 2 is best; two worse ones end the run

    def run_epoch(ctx: EpochContext) -> dict[str, float]:
        with torch.no_grad():
            net.weight.fill_(float(ctx.epoch))  # the weight remembers which epoch wrote it
        return {"loss": 1.0 / ctx.epoch}

    def validate() -> float:
        return scores[int(net.weight.item()) - 1]

    cfg = TrainerConfig(name="toy", max_epochs=5, patience=2, metric="ndcg@10")
    result = Trainer(cfg).fit(run_epoch, module=net, validate=validate)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]  # epoch 5 never ran
    assert [r["ndcg@10"] for r in result.history] == [0.1, 0.5, 0.4, 0.3]
    assert result.history[2]["loss"] == pytest.approx(1 / 3)
    assert result.stopped == "patience"
    assert (result.best_epoch, result.best_score) == (2, 0.5)
    assert net.weight.item() == 2.0  # epoch 4's weight was replaced by the best (epoch 2)


def test_min_delta_and_eval_every() -> None:
    seen: list[int] = []

    def validate() -> float:
        seen.append(len(seen))
        return 0.5 + 1e-12 * len(seen)  # "improves" by less than min_delta

    cfg = TrainerConfig(max_epochs=7, patience=2, eval_every=3, min_delta=1e-9)
    result = Trainer(cfg).fit(lambda ctx: {"loss": 0.0}, validate=validate)
    # validated at epochs 3 and 6 (no improvement at 6), then 7 as the last epoch: 2 misses
    assert [r["epoch"] for r in result.history if "score" in r] == [3, 6, 7]
    assert result.best_epoch == 3 and result.stopped == "patience"


def test_max_minutes_stops_before_an_epoch_that_would_overrun() -> None:
    clock = FakeClock()
    validated: list[int] = []

    def run_epoch(ctx: EpochContext) -> dict[str, float]:
        clock.tick(25.0)  # every epoch costs 25 s of a 60 s budget
        return {"loss": 0.0}

    def validate() -> float:
        validated.append(1)
        return 0.0

    cfg = TrainerConfig(max_epochs=10, eval_every=5, max_minutes=1.0)
    result = Trainer(cfg, clock=clock).fit(run_epoch, validate=validate)
    # after epoch 2: 50 s spent + 25 s for a third epoch > 60 s, so it stops there
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert result.stopped == "max_minutes"
    assert [r["seconds"] for r in result.history] == [25.0, 25.0]
    assert len(validated) == 1 and "score" in result.history[-1]  # the last epoch is validated


def test_step_level_budget_through_the_context() -> None:
    clock = FakeClock()
    steps: list[int] = []

    def run_epoch(ctx: EpochContext) -> dict[str, float]:
        for step in range(100):
            clock.tick(1.0)
            steps.append(step)
            if ctx.out_of_time():
                ctx.stop("max_minutes")
                break
        return {"steps": float(len(steps))}

    result = Trainer(TrainerConfig(max_epochs=3, max_minutes=0.5), clock=clock).fit(run_epoch)
    assert len(steps) == 31 and len(result.history) == 1  # 31 s > 30 s: stop mid-epoch
    assert result.stopped == "max_minutes"


def _seeded_run(max_epochs: int, folder: Path | None, data: str = "d1") -> tuple[object, ...]:
    """A tiny regression trained with SGD+momentum on seeded random batches."""
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    x_all = torch.randn(64, 3, generator=torch.Generator().manual_seed(1))
    y_all = x_all @ torch.tensor([[1.0], [-2.0], [0.5]])

    def run_epoch(ctx: EpochContext) -> dict[str, float]:
        assert ctx.rng is not None
        idx = torch.as_tensor(ctx.rng.permutation(64)[:16])
        noise = 0.1 * torch.randn(16, 1)  # from the per-epoch torch seed
        loss = ((net(x_all[idx]) - y_all[idx] - noise) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": float(loss.detach())}

    def validate() -> float:
        with torch.no_grad():
            return -float(((net(x_all) - y_all) ** 2).mean())

    cfg = TrainerConfig(name="reg", max_epochs=max_epochs, patience=3, seed=7)
    ckpt = None if folder is None else Checkpoint(folder, {"lr": 0.1, "max_epochs": 0}, data,
                                                  ignore={"max_epochs"})  # fmt: skip
    result = Trainer(cfg).fit(
        run_epoch, module=net, optimizer=opt, validate=validate, checkpoint=ckpt
    )
    return result, net.weight.detach().clone()


def test_resume_continues_like_an_uninterrupted_run(tmp_path: Path) -> None:
    full, full_w = _seeded_run(6, None)
    _seeded_run(3, tmp_path / "ckpt")
    resumed, resumed_w = _seeded_run(6, tmp_path / "ckpt")
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4, 5, 6]
    # equal losses need the restored weights, momentum buffers and per-epoch seeds
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    assert resumed.best_epoch == full.best_epoch
    torch.testing.assert_close(resumed_w, full_w, rtol=0, atol=0)
    assert (tmp_path / "ckpt" / "manifest.json").is_file()
    with pytest.raises(ArtifactError, match="other data"):
        _seeded_run(6, tmp_path / "ckpt", data="d2")


def test_checkpoint_refuses_other_config_and_foreign_folders(tmp_path: Path) -> None:
    net = torch.nn.Linear(1, 1)
    Trainer(TrainerConfig(name="a", max_epochs=1)).fit(
        lambda ctx: {}, module=net, checkpoint=Checkpoint(tmp_path / "c", {"dim": 8})
    )
    with pytest.raises(ArtifactError, match=r"another config \(dim differ"):
        Trainer(TrainerConfig(name="a", max_epochs=2)).fit(
            lambda ctx: {}, module=net, checkpoint=Checkpoint(tmp_path / "c", {"dim": 4})
        )
    with pytest.raises(ArtifactError, match="checkpoint of 'a', not 'b'"):
        Trainer(TrainerConfig(name="b", max_epochs=2)).fit(
            lambda ctx: {}, module=net, checkpoint=Checkpoint(tmp_path / "c", {"dim": 8})
        )
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("x")
    with pytest.raises(ArtifactError, match=r"missing manifest\.json"):
        Trainer(TrainerConfig(max_epochs=1)).fit(
            lambda ctx: {}, module=net, checkpoint=Checkpoint(other, {})
        )
    assert (other / "todo.txt").read_text() == "x"


def test_progress_disabled_is_silent_and_enabled_reports_epochs(capsys) -> None:
    def run_epoch(ctx: EpochContext) -> dict[str, float]:
        ctx.advance(loss=0.25)
        return {"loss": 0.25}

    Trainer(TrainerConfig(name="quiet", max_epochs=2)).fit(run_epoch, validate=lambda: 0.5)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    Trainer(TrainerConfig(name="loud", max_epochs=2, progress=True)).fit(
        run_epoch, validate=lambda: 0.5
    )
    printed = capsys.readouterr().out
    assert "loud epoch 1 | loss 0.2500" in printed and "val score 0.5000" in printed
    assert "loud epoch 2" in printed


def test_bad_config_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="eval_every >= 1"):
        Trainer(TrainerConfig(eval_every=0))
    with pytest.raises(ConfigError, match="checkpoints need the module"):
        Trainer(TrainerConfig(max_epochs=1)).fit(
            lambda ctx: {}, checkpoint=Checkpoint(Path("unused"), {})
        )
