"""Catalogue text embedding as a Ray Data job, writing the same disk cache as the local path.

The driver renders item texts, looks them up in the encoder's `EmbeddingCache` and sends
only the misses to a `map_batches` job whose actor pool loads the text model once per actor.
The vectors come back to the driver, which appends them to the cache (one writer), so a
later local `TextEncoder.encode_items` - or `encode_dataset_items` - over the same texts is
a pure cache read, and the result is the vectors the local path would have computed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recsage.encoders.text import ItemTextTemplate, TextEncoder, TextTemplate, text_key
from recsage.errors import ConfigError, RecsageError
from recsage.executor import ensure_ray

if TYPE_CHECKING:
    from recsage.data.schema import Dataset


class _EncodeActor:
    """Ray Data actor: the text model is loaded once, in `__init__`."""

    def __init__(self, model: str, normalize: bool, batch_size: int, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.encoder = TextEncoder(model, batch_size=batch_size, normalize=normalize)
        self.encoder.model  # noqa: B018 - load now, not on the first batch

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = self.encoder.encode_queries(texts)  # no prefix: the driver added it
        return {"row": np.asarray(batch["row"], np.int64), "vector": vectors}


@dataclass
class EmbedStats:
    """What the job did: texts asked for, cache hits, texts the actors encoded, seconds."""

    texts: int
    hits: int
    encoded: int
    seconds: float
    actors: int


def encode_items_ray(
    encoder: TextEncoder,
    texts: Sequence[str],
    *,
    actors: int = 2,
    batch_size: int = 256,
    cpus_per_actor: float = 1.0,
    address: str | None = None,
) -> tuple[np.ndarray, EmbedStats]:
    """Vectors for item `texts` (as `encoder.encode_items`), the cache misses encoded by a
    Ray Data actor pool of `actors` model replicas. The encoder needs a `cache_dir`."""
    if actors < 1 or batch_size < 1:
        raise ConfigError("actors and batch_size must be >= 1")
    cache = encoder.cache
    if cache is None:
        raise ConfigError("the distributed embedding job writes the encoder's cache: set cache_dir")
    start = time.perf_counter()
    inputs = [encoder.item_prefix + t for t in texts] if encoder.item_prefix else list(texts)
    cache.refresh()
    keys = [text_key(t) for t in inputs]
    first: dict[bytes, int] = {}
    for i in np.flatnonzero(cache.lookup(keys) < 0).tolist():
        first.setdefault(keys[i], i)
    if first:
        vectors = _run_job(
            encoder, [inputs[i] for i in first.values()], actors=actors,
            batch_size=batch_size, cpus_per_actor=cpus_per_actor, address=address,
        )  # fmt: skip
        cache.append(list(first), vectors)
    out = encoder.encode_items(texts)  # every text is cached now: no model call
    if encoder.last_stats.misses:
        raise RecsageError(
            f"embedding cache incomplete after the Ray job ({encoder.last_stats.misses} misses)"
        )
    stats = EmbedStats(len(inputs), len(inputs) - len(first), len(first),
                       time.perf_counter() - start, actors)  # fmt: skip
    return out, stats


def _run_job(
    encoder: TextEncoder,
    texts: list[str],
    *,
    actors: int,
    batch_size: int,
    cpus_per_actor: float,
    address: str | None,
) -> np.ndarray:
    ensure_ray(address)
    import ray.data

    threads = max(1, int(cpus_per_actor))
    frame = pd.DataFrame({"row": np.arange(len(texts), dtype=np.int64), "text": texts})
    ds = ray.data.from_pandas(frame)
    out = ds.map_batches(
        _EncodeActor,
        fn_constructor_kwargs={
            "model": str(encoder.model_name_or_path),
            "normalize": encoder.normalize,
            "batch_size": encoder.batch_size,
            "threads": threads,
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=cpus_per_actor,
    )
    vectors: np.ndarray | None = None
    seen = np.zeros(len(texts), bool)
    for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
        rows = np.asarray(batch["row"], np.int64)
        vecs = np.asarray(batch["vector"], np.float32)
        if vectors is None:
            vectors = np.empty((len(texts), vecs.shape[1]), np.float32)
        vectors[rows] = vecs
        seen[rows] = True
    if vectors is None or not seen.all():
        raise RecsageError(f"the Ray embedding job returned {int(seen.sum())} of {len(texts)}")
    return vectors


def encode_dataset_items_ray(
    encoder: TextEncoder,
    dataset: Dataset,
    template: TextTemplate | None = None,
    **options: Any,
) -> tuple[np.ndarray, EmbedStats]:
    """`encode_dataset_items` on Ray: row i = dense item index i; same cache, same vectors."""
    table = dataset.item_table.sort_index()
    texts = (template or ItemTextTemplate()).render(table)
    return encode_items_ray(encoder, texts, **options)


__all__ = ["EmbedStats", "encode_dataset_items_ray", "encode_items_ray"]
