"""One training loop for every torch model: epochs, validation with early stopping and
best-state restore, a time budget, checkpoint/resume and a progress bar.

A model supplies `run_epoch(ctx) -> {"loss": ...}` (one pass over its data; it may call
`ctx.advance()` per step for the bar and `ctx.stop()` to end training), optionally
`validate() -> score` (higher is better) and the `module`/`optimizer` whose state the
trainer snapshots (best epoch) and checkpoints. The trainer owns the loop, the records
in `history`, and when to stop. torch is imported only when a run needs it, so importing
this module stays cheap.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from recsage.artifacts import CHECKPOINT, MANIFEST, read_artifact, write_artifact
from recsage.errors import ArtifactError, ConfigError

#: why a run ended
STOP_REASONS = ("max_epochs", "patience", "max_minutes", "requested")


class Stateful(Protocol):
    """Anything with torch's state-dict protocol (modules, optimizers)."""

    def state_dict(self) -> Any: ...

    def load_state_dict(self, state_dict: Any) -> Any: ...


@dataclass
class TrainerConfig:
    """How long to train and when to stop.

    `patience`: validations without an improvement (score > best + `min_delta`) before
    stopping (0: never stop early). Validation runs every `eval_every` epochs and always
    on the last one. `max_minutes` > 0 stops before an epoch that would overrun the budget
    (judged by the mean cost of the epochs so far, validation included). With `seed`,
    epoch e starts from torch seed ``seed * 1_000_003 + e`` and ``ctx.rng =
    default_rng([seed, e])``, so a resumed run draws what an uninterrupted one would.
    `metric` names the validation score in `history`.
    """

    name: str = "train"
    max_epochs: int = 10
    patience: int = 0
    min_delta: float = 0.0
    eval_every: int = 1
    max_minutes: float = 0.0
    seed: int | None = None
    metric: str = "score"
    progress: bool = False

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        if self.max_epochs < 0 or self.patience < 0 or self.eval_every < 1:
            raise ConfigError(
                f"trainer '{self.name}': max_epochs >= 0, patience >= 0 and eval_every >= 1 "
                f"(got {self.max_epochs}, {self.patience}, {self.eval_every})"
            )
        if not self.max_minutes >= 0:
            raise ConfigError(f"trainer '{self.name}': max_minutes must be >= 0")


@dataclass
class Checkpoint:
    """Checkpoint after every epoch into `folder` and resume from it when present.

    Resuming needs the same `config` (keys in `ignore` may differ, e.g. max_epochs) and
    the same `data_fingerprint`; otherwise the run refuses with a clear error.
    """

    folder: Path
    config: Mapping[str, Any]
    data_fingerprint: str = ""
    ignore: Collection[str] = ()


@dataclass
class TrainState:
    """The loop's counters; a checkpoint carries them across restarts."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = -math.inf
    bad: int = 0
    stopped: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None  # module state of the best epoch


@dataclass
class TrainResult:
    """What a run did: one record per epoch, the best (validated) epoch and why it ended.

    Without validation `best_epoch` is the last epoch and `best_score` is NaN.
    """

    history: list[dict[str, Any]]
    epochs: int
    best_epoch: int
    best_score: float
    stopped: str


class EpochContext:
    """Handed to `run_epoch`: the epoch number, its seeded RNG, the progress bar, the
    time budget and a way to end training after this epoch."""

    def __init__(self, trainer: Trainer, epoch: int, state: TrainState) -> None:
        cfg = trainer.config
        self.epoch = epoch
        self.seed: int | None = None if cfg.seed is None else cfg.seed * 1_000_003 + epoch
        self.rng: np.random.Generator | None = (
            None if cfg.seed is None else np.random.default_rng([cfg.seed, epoch])
        )
        self.stop_reason = ""
        self._trainer = trainer
        self._state = state

    def advance(self, steps: int = 1, **shown: float) -> None:
        """Move the bar by `steps`, showing e.g. the running loss."""
        self._trainer._advance(steps, {"epoch": self.epoch, **shown}, self._state)

    def out_of_time(self) -> bool:
        """True once the run's `max_minutes` are spent (for budgets checked per step)."""
        return self._trainer._out_of_time()

    def stop(self, reason: str = "requested") -> None:
        """End training after this epoch (it is still recorded and validated)."""
        self.stop_reason = reason


class Trainer:
    """Runs the epoch loop of `TrainerConfig` around a model's `run_epoch`.

    `clock` (seconds, monotonic) decides the time budget and the records' `seconds`; tests
    pass a fake one.
    """

    def __init__(
        self,
        config: TrainerConfig,
        *,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.process_time,
    ) -> None:
        config.validate()
        self.config = config
        self.clock = clock
        self.cpu_clock = cpu_clock
        self._start = 0.0
        self._bar: TrainingProgress | None = None
        self._task: Any = None

    def fit(
        self,
        run_epoch: Callable[[EpochContext], Mapping[str, float]],
        *,
        module: Stateful | None = None,
        optimizer: Stateful | None = None,
        validate: Callable[[], float] | None = None,
        steps: int = 0,
        checkpoint: Checkpoint | None = None,
    ) -> TrainResult:
        """Train until `max_epochs`, patience, the time budget or `ctx.stop()`; the best
        validated state is restored into `module`. `steps` per epoch sizes the bar."""
        cfg = self.config
        if checkpoint is not None and module is None:
            raise ConfigError(f"trainer '{cfg.name}': checkpoints need the module to save")
        state = TrainState()
        if checkpoint is not None:
            state = self._resume(checkpoint, module, optimizer) or state
        if state.stopped != "patience":  # a time budget or a request ends one session only
            state.stopped = ""
        self._start = self.clock()
        first = state.epoch + 1
        with TrainingProgress(cfg.progress) as bar:
            self._bar, self._task = bar, bar.add_task(cfg.name, total=max(1, steps))
            try:
                for epoch in range(first, cfg.max_epochs + 1):
                    if state.stopped:
                        break
                    self._epoch(epoch, first, state, run_epoch, module, validate)
                    if checkpoint is not None:
                        self._save(checkpoint, state, module, optimizer)
            finally:
                self._bar = None
        if state.best is not None and module is not None:
            module.load_state_dict(state.best)
        validated = state.best_epoch > 0
        return TrainResult(
            history=state.history,
            epochs=state.epoch,
            best_epoch=state.best_epoch if validated else state.epoch,
            best_score=state.best_score if validated else math.nan,
            stopped=state.stopped or "max_epochs",
        )

    # ---- one epoch ------------------------------------------------------------------------
    def _epoch(
        self,
        epoch: int,
        first: int,
        state: TrainState,
        run_epoch: Callable[[EpochContext], Mapping[str, float]],
        module: Stateful | None,
        validate: Callable[[], float] | None,
    ) -> None:
        cfg = self.config
        ctx = EpochContext(self, epoch, state)
        if ctx.seed is not None:
            import torch

            torch.manual_seed(ctx.seed)
        assert self._bar is not None
        self._bar.reset(self._task, description=self.describe({"epoch": epoch}, state))
        t0, c0 = self.clock(), self.cpu_clock()
        metrics = run_epoch(ctx)
        record: dict[str, Any] = {
            "epoch": epoch,
            **{k: float(v) for k, v in metrics.items()},
            "seconds": self.clock() - t0,
            # CPU seconds of all threads: on a shared machine wall time alone hides how much
            # of it went to other people's work
            "cpu_seconds": self.cpu_clock() - c0,
        }
        # stop before an epoch that would overrun the budget (mean epoch cost so far)
        elapsed = self.clock() - self._start
        per_epoch = elapsed / (epoch - first + 1)
        out_of_time = cfg.max_minutes > 0 and elapsed + per_epoch > 60 * cfg.max_minutes
        last = out_of_time or bool(ctx.stop_reason) or epoch == cfg.max_epochs
        if validate is not None and (epoch % cfg.eval_every == 0 or last):
            t1 = self.clock()
            score = float(validate())
            record[cfg.metric] = score
            record["eval_seconds"] = self.clock() - t1
            if state.best_epoch == 0 or score > state.best_score + cfg.min_delta:
                state.best_score, state.best_epoch, state.bad = score, epoch, 0
                if module is not None:
                    state.best = {k: v.detach().clone() for k, v in module.state_dict().items()}
            else:
                state.bad += 1
                if cfg.patience and state.bad >= cfg.patience:
                    state.stopped = "patience"
        state.epoch = epoch
        state.history.append(record)
        if not state.stopped:
            state.stopped = ctx.stop_reason or ("max_minutes" if out_of_time else "")
        self._bar.log(self.describe(record, state))

    def describe(self, record: Mapping[str, Any], state: TrainState) -> str:
        """``name epoch 3 | loss 0.1234 | 2.0s | val ndcg@10 0.4321`` (the bar's text)."""
        metric = self.config.metric
        parts = [f"{self.config.name} epoch {int(record['epoch'])}"]
        if "loss" in record:
            parts.append(f"loss {record['loss']:.4f}")
        if "seconds" in record:
            parts.append(f"{record['seconds']:.1f}s")
        if metric in record:
            parts.append(f"val {metric} {record[metric]:.4f}")
        elif state.best_epoch:
            parts.append(f"best {metric} {state.best_score:.4f} (epoch {state.best_epoch})")
        return " | ".join(parts)

    def _advance(self, steps: int, shown: dict[str, Any], state: TrainState) -> None:
        if self._bar is not None and self._bar.enabled:
            self._bar.update(self._task, advance=steps, description=self.describe(shown, state))

    def _out_of_time(self) -> bool:
        budget = self.config.max_minutes
        return budget > 0 and self.clock() - self._start > 60 * budget

    # ---- checkpoints ----------------------------------------------------------------------
    def _save(
        self,
        ckpt: Checkpoint,
        state: TrainState,
        module: Stateful | None,
        optimizer: Stateful | None,
    ) -> None:
        """Module, optimizer, best weights and counters (replaces the folder atomically)."""
        import torch

        assert module is not None
        arrays: dict[str, Any] = {f"module.{k}": v for k, v in module.state_dict().items()}
        if state.best is not None:
            arrays.update({f"best.{k}": v for k, v in state.best.items()})
        groups: list[Any] = []
        if optimizer is not None:
            opt_state = optimizer.state_dict()
            for pid, slots in opt_state["state"].items():
                for key, value in slots.items():
                    arrays[f"opt.{pid}.{key}"] = torch.as_tensor(value)
            groups = opt_state["param_groups"]
        counters = {
            "epoch": state.epoch,
            "best_epoch": state.best_epoch,
            "best_score": None if math.isinf(state.best_score) else state.best_score,
            "bad": state.bad,
            "stopped": state.stopped,
            "history": state.history,
        }
        write_artifact(
            ckpt.folder, CHECKPOINT, name=self.config.name, config=_jsonable(ckpt.config),
            data_fingerprint=ckpt.data_fingerprint, arrays=arrays,
            extra={"state": counters, "param_groups": groups},
        )  # fmt: skip

    def _resume(
        self, ckpt: Checkpoint, module: Stateful | None, optimizer: Stateful | None
    ) -> TrainState | None:
        """The saved state (restored into module and optimizer), or None for a fresh run."""
        folder = Path(ckpt.folder)
        if not (folder / MANIFEST).exists():
            if folder.is_dir() and any(folder.iterdir()):
                read_artifact(folder, CHECKPOINT)  # raises, saying what the folder holds
            return None
        art = read_artifact(folder, CHECKPOINT)
        if art.name != self.config.name:
            raise ArtifactError(
                f"{folder}: a checkpoint of '{art.name}', not '{self.config.name}'; "
                "use a fresh checkpoint directory"
            )
        ours, theirs = _jsonable(ckpt.config), art.config
        diff = sorted(k for k in ours if k not in ckpt.ignore and ours[k] != theirs.get(k))
        if diff:
            raise ArtifactError(
                f"{folder}: checkpoint was written with another config ({', '.join(diff)} "
                "differ); use a fresh checkpoint directory"
            )
        if art.data_fingerprint != ckpt.data_fingerprint:
            raise ArtifactError(f"{folder}: checkpoint was trained on other data; use a new folder")
        tensors = art.tensors()
        assert module is not None
        module.load_state_dict(_section(tensors, "module."))
        if optimizer is not None:
            slots: dict[int, dict[str, Any]] = {}
            for key, value in _section(tensors, "opt.").items():
                pid, name = key.split(".", 1)
                slots.setdefault(int(pid), {})[name] = value
            optimizer.load_state_dict({"state": slots, "param_groups": art.get("param_groups")})
        counters = art.get("state") or {}
        best_score = counters.get("best_score")
        return TrainState(
            epoch=int(counters.get("epoch", 0)),
            best_epoch=int(counters.get("best_epoch", 0)),
            best_score=-math.inf if best_score is None else float(best_score),
            bad=int(counters.get("bad", 0)),
            stopped=str(counters.get("stopped") or ""),
            history=list(counters.get("history", [])),
            best=_section(tensors, "best.") or None,
        )


def _section(tensors: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _jsonable(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as it reads back from JSON (tuples become lists), for comparisons."""
    return dict(json.loads(json.dumps(dict(config))))


@contextmanager
def torch_threads(
    threads: int, *, deterministic: bool | None = None, warn_only: bool = False
) -> Iterator[None]:
    """Run with `threads` torch CPU threads (and deterministic algorithms when asked),
    restoring the previous settings afterwards."""
    import torch

    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(max(1, int(threads)))
    if deterministic is not None:
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    try:
        yield
    finally:
        torch.set_num_threads(prev_threads)
        if deterministic is not None:
            torch.use_deterministic_algorithms(prev_det)


class TrainingProgress:
    """A rich progress bar over epochs, or nothing at all when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._p: Any = None
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            console = Console()
            if not console.is_terminal:  # log files: one line per epoch, not wrapped at 80
                console = Console(width=160)
            self._p = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            )

    def __enter__(self) -> TrainingProgress:
        if self._p is not None:
            self._p.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(None, None, None)

    def add_task(self, description: str, total: int) -> Any:
        return self._p.add_task(description, total=total) if self._p is not None else 0

    def reset(self, task: Any, description: str) -> None:
        if self._p is not None:
            self._p.reset(task, description=description)

    def update(self, task: Any, advance: int, description: str) -> None:
        if self._p is not None:
            self._p.update(task, advance=advance, description=description)

    def log(self, message: str) -> None:
        if self._p is not None:
            self._p.console.log(message)


__all__ = [
    "STOP_REASONS",
    "Checkpoint",
    "EpochContext",
    "Stateful",
    "TrainResult",
    "TrainState",
    "Trainer",
    "TrainerConfig",
    "TrainingProgress",
    "torch_threads",
]
