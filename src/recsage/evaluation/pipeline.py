"""Pipeline evaluation: full-ranking metrics plus per-stage recall, per-channel
contribution and per-stage latency."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.table import Table

from recsage.data.schema import Dataset
from recsage.data.splits import Split, leave_one_out
from recsage.evaluation.protocol import EvalResult, evaluate
from recsage.pipeline.pipeline import Pipeline
from recsage.types import QueryBatch


@dataclass
class PipelineReport:
    result: EvalResult
    stage_recall: dict[str, float] = field(default_factory=dict)  # stage -> target kept share
    stage_size: dict[str, float] = field(default_factory=dict)  # mean candidates after stage
    channel_recall: dict[str, float] = field(default_factory=dict)  # target in channel's list
    channel_unique: dict[str, float] = field(default_factory=dict)  # only this channel had it
    seconds: dict[str, float] = field(default_factory=dict)  # per user, per stage

    def stage_table(self) -> Table:
        t = Table(title="where the target survives (share of test users)")
        t.add_column("after")
        t.add_column("recall", justify="right")
        t.add_column("mean size", justify="right")
        for k, v in self.stage_recall.items():
            t.add_row(k, f"{v:.4f}", f"{self.stage_size.get(k, 0):.0f}")
        for k, v in self.channel_recall.items():
            t.add_row(f"channel {k}", f"{v:.4f}", f"(unique {self.channel_unique[k]:.4f})")
        return t

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.result.to_dict(),
            "stage_recall": self.stage_recall,
            "stage_size": self.stage_size,
            "channel_recall": self.channel_recall,
            "channel_unique": self.channel_unique,
            "seconds_per_user": self.seconds,
        }


def _hits(items: np.ndarray, targets: np.ndarray) -> np.ndarray:
    return (items == targets[:, None]).any(axis=1)


def evaluate_pipeline(
    pipe: Pipeline,
    dataset: Dataset | None = None,
    *,
    split: Split | None = None,
    name: str = "pipeline",
    batch_size: int = 512,
    ks: tuple[int, ...] = (10, 20),
) -> PipelineReport:
    """Evaluate on the LOO test split: histories include the validation item; items outside
    the final list count as missed. Also traces every stage for recall diagnostics."""
    if split is None:
        assert dataset is not None
        split = leave_one_out(dataset).test
    histories = split.train.sequences()
    users = split.users
    t = split.targets
    first_target = np.array([t.indices[t.indptr[u]] for u in users], np.int64)
    stage_hits: dict[str, list[np.ndarray]] = {}
    stage_sizes: dict[str, list[np.ndarray]] = {}
    chan_hits: dict[str, list[np.ndarray]] = {}
    seconds: dict[str, float] = {}
    matrices: list[np.ndarray] = []
    t0 = time.perf_counter()
    for lo in range(0, len(users), batch_size):
        u = users[lo : lo + batch_size]
        batch = QueryBatch(u, [histories[i] for i in u], pipe.n_items)
        cands, trace = pipe.run_batch(batch, trace=True)
        assert trace is not None
        matrices.append(cands.to_score_matrix(pipe.n_items))
        tg = first_target[lo : lo + batch_size]
        for stage, items in trace.stages.items():
            stage_hits.setdefault(stage, []).append(_hits(items, tg))
            stage_sizes.setdefault(stage, []).append((items >= 0).sum(axis=1))
        for ch, items in trace.channels.items():
            chan_hits.setdefault(ch, []).append(_hits(items, tg))
        for k, v in trace.seconds.items():
            seconds[k] = seconds.get(k, 0.0) + v
    total = time.perf_counter() - t0
    scores = np.concatenate(matrices) if matrices else np.zeros((0, pipe.n_items), np.float32)
    pos = {int(u): i for i, u in enumerate(users)}

    def lookup(us: np.ndarray, history: Any = None) -> np.ndarray:
        return scores[[pos[int(x)] for x in us]]

    result = evaluate(lookup, split, name=name, ks=ks)
    result.extra["pipeline_seconds"] = total
    ch_all = {k: np.concatenate(v) for k, v in chan_hits.items()}
    found_by = np.sum([v.astype(int) for v in ch_all.values()], axis=0) if ch_all else 0
    n_users = max(1, len(users))
    return PipelineReport(
        result=result,
        stage_recall={k: float(np.concatenate(v).mean()) for k, v in stage_hits.items()},
        stage_size={k: float(np.concatenate(v).mean()) for k, v in stage_sizes.items()},
        channel_recall={k: float(v.mean()) for k, v in ch_all.items()},
        channel_unique={k: float((v & (found_by == 1)).mean()) for k, v in ch_all.items()},
        seconds={k: v / n_users for k, v in seconds.items()},
    )
