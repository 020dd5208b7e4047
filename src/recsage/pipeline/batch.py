"""Batch recommendation: top-n for every user (or a list of users), sharded over an executor.

Works for a fitted `Pipeline` and for a single `Recommender`. The target goes to the
executor once (Ray: the object store); each shard is a slice of user indices, scored in
memory-bounded batches. Results stream back in user order and are written as a long table
(`user, rank, item, score`) to Parquet or CSV without holding every row in memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsage.data.vocab import Vocabulary
from recsage.errors import ConfigError, DataError, RecsageError
from recsage.executor import Executor, LocalExecutor
from recsage.types import QueryBatch

OUT_FORMATS = (".parquet", ".csv")
#: scoring working set per batch (scores, masks, partition indices ~ 24 bytes per item)
BATCH_BYTES = 256 << 20


@dataclass
class RecBlock:
    """Top-n of a block of users: items (B, n) with -1 padding, scores (B, n) float32."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray


@dataclass
class _Job:
    target: Any
    n: int
    batch_size: int


def _is_pipeline(target: Any) -> bool:
    return hasattr(target, "run_batch") and hasattr(target, "sequences")


def _vocabularies(target: Any) -> tuple[Vocabulary, Vocabulary]:
    users, items = getattr(target, "users", None), getattr(target, "items", None)
    if users is None or items is None:
        raise RecsageError(
            f"{type(target).__name__} is not fitted (no user/item vocabularies); "
            "fit or load it first"
        )
    return users, items


def auto_batch_size(n_items: int, budget: int = BATCH_BYTES) -> int:
    """Users scored at once so that the per-batch working set stays near `budget`."""
    return int(np.clip(budget // (24 * max(n_items, 1)), 1, 4096))


def _top_n_pipeline(pipe: Any, users: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    batch = QueryBatch(users, [pipe.sequences[u] for u in users], pipe.n_items)
    cands, _ = pipe.run_batch(batch, min_keep=n)  # as `Pipeline.run`: n is never capped
    b, width = cands.shape
    items = np.full((b, n), -1, np.int64)
    scores = np.full((b, n), -np.inf, np.float32)
    k = min(n, width)
    items[:, :k] = cands.items[:, :k]
    scores[:, :k] = pipe.list_scores(cands)[:, :k]  # the scores `Pipeline.run` reports
    scores[items < 0] = -np.inf
    return items, scores


def _recommend_shard(job: _Job, users: np.ndarray) -> RecBlock:
    out_items, out_scores = [], []
    for lo in range(0, len(users), job.batch_size):
        u = users[lo : lo + job.batch_size]
        if _is_pipeline(job.target):
            items, scores = _top_n_pipeline(job.target, u, job.n)
        else:
            items, scores = job.target.recommend(u, job.n)
        out_items.append(np.asarray(items, np.int64))
        out_scores.append(np.asarray(scores, np.float32))
    if not out_items:
        return RecBlock(users, np.zeros((0, job.n), np.int64), np.zeros((0, job.n), np.float32))
    return RecBlock(users, np.concatenate(out_items), np.concatenate(out_scores))


def recommend_all(
    target: Any,
    *,
    users: np.ndarray | None = None,
    n: int = 10,
    executor: Executor | None = None,
    shard_size: int = 20_000,
    batch_size: int | None = None,
) -> Iterator[RecBlock]:
    """Top-n blocks for `users` (dense indices; default every user), in user order."""
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if shard_size < 1:
        raise ConfigError(f"shard_size must be >= 1, got {shard_size}")
    user_vocab, item_vocab = _vocabularies(target)
    all_users = np.arange(len(user_vocab), dtype=np.int64) if users is None else users
    all_users = np.asarray(all_users, dtype=np.int64)
    if len(all_users) and ((all_users < 0) | (all_users >= len(user_vocab))).any():
        raise RecsageError(f"user index out of range 0..{len(user_vocab) - 1}")
    bs = batch_size or auto_batch_size(len(item_vocab))
    shards = [all_users[lo : lo + shard_size] for lo in range(0, len(all_users), shard_size)]
    job = _Job(target, n, bs)
    yield from (executor or LocalExecutor()).imap(_recommend_shard, shards, shared=job)


def read_users(path: str | Path, vocab: Vocabulary) -> np.ndarray:
    """Dense indices of the users listed in `path`, one external id per line (a header
    `user_id` is allowed; blank lines are skipped). Unknown ids raise naming the line."""
    path = Path(path)
    if not path.is_file():
        raise DataError("user list not found", path=str(path))
    lines = path.read_text().splitlines()
    ids, where = [], []
    for i, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or (i == 1 and text.lower() in ("user", "user_id")):
            continue
        ids.append(text)
        where.append(i)
    if not ids:
        raise DataError("no user ids in the user list", path=str(path))
    idx = vocab.lookup(ids)
    if (idx < 0).any():
        bad = int(np.flatnonzero(idx < 0)[0])
        raise DataError(
            f"unknown user '{ids[bad]}' ({int((idx < 0).sum())} unknown in total)",
            path=str(path), line=where[bad],
        )  # fmt: skip
    return idx


def _frame(block: RecBlock, users: Vocabulary, items: Vocabulary) -> pd.DataFrame:
    b, n = block.items.shape
    ok = block.items >= 0
    rows = np.repeat(np.arange(b), n).reshape(b, n)[ok]
    ranks = np.tile(np.arange(1, n + 1), b).reshape(b, n)[ok]
    return pd.DataFrame(
        {
            "user": users.ids[block.users[rows]],
            "rank": ranks.astype(np.int32),
            "item": items.ids[block.items[ok]],
            "score": block.scores[ok].astype(np.float32),
        }
    )


@dataclass
class BatchSummary:
    """What a batch run wrote."""

    path: Path
    users: int
    rows: int
    seconds: float
    executor: str

    @property
    def users_per_second(self) -> float:
        return self.users / self.seconds if self.seconds > 0 else float("inf")


def write_recommendations(
    target: Any,
    out: str | Path,
    *,
    users: np.ndarray | None = None,
    n: int = 10,
    executor: Executor | None = None,
    shard_size: int = 20_000,
    batch_size: int | None = None,
) -> BatchSummary:
    """Run `recommend_all` and stream the rows (user, rank, item, score) to `out`
    (.parquet or .csv, by suffix), shard by shard."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in OUT_FORMATS:
        raise ConfigError(f"--out must end in {' or '.join(OUT_FORMATS)}, got '{out.name}'")
    user_vocab, item_vocab = _vocabularies(target)
    out.parent.mkdir(parents=True, exist_ok=True)
    executor = executor or LocalExecutor()
    start = time.perf_counter()
    n_users = n_rows = 0
    writer: Any = None
    try:
        blocks = recommend_all(
            target, users=users, n=n, executor=executor, shard_size=shard_size,
            batch_size=batch_size,
        )  # fmt: skip
        for i, block in enumerate(blocks):
            frame = _frame(block, user_vocab, item_vocab)
            n_users += len(block.users)
            n_rows += len(frame)
            if suffix == ".csv":
                frame.to_csv(out, mode="w" if i == 0 else "a", header=i == 0, index=False)
                continue
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
        if n_users == 0:
            raise RecsageError("no users to recommend for")
    finally:
        if writer is not None:
            writer.close()
    return BatchSummary(out, n_users, n_rows, time.perf_counter() - start, executor.name)


__all__ = [
    "BatchSummary",
    "RecBlock",
    "auto_batch_size",
    "read_users",
    "recommend_all",
    "write_recommendations",
]
