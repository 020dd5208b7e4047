"""Natural-language search over item text vectors, optionally personalised."""

from __future__ import annotations

from typing import Any

import numpy as np

from recsage.errors import ConfigError
from recsage.types import top_k


def profile_vector(
    item_vectors: np.ndarray, history: np.ndarray, *, half_life: float = 5.0
) -> np.ndarray:
    """Recency-weighted mean of the history's item vectors, L2-normalised (zeros if empty)."""
    if len(history) == 0:
        return np.zeros(item_vectors.shape[1], np.float32)
    steps_back = np.arange(len(history))[::-1]
    w = np.power(0.5, steps_back / half_life)[:, None]
    v = (item_vectors[history] * w).sum(axis=0)
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def semantic_search(
    query: str,
    item_vectors: np.ndarray,
    encoder: Any,
    *,
    k: int = 10,
    user_history: np.ndarray | None = None,
    personal_weight: float = 0.3,
    exclude_history: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items for a free-text query: cosine(query, item) blended with the user's taste.

    score = (1 - w) * cos(query, item) + w * cos(profile, item), w = `personal_weight`
    when a history is given (0 otherwise). Returns (items, scores).
    """
    if not query.strip():
        raise ConfigError("the search query is empty")
    if not 0.0 <= personal_weight <= 1.0:
        raise ConfigError(f"personal_weight must be in [0, 1], got {personal_weight}")
    q = np.asarray(encoder.encode_queries([query]), np.float32)[0]
    scores = item_vectors @ q
    eligible = np.ones(len(item_vectors), bool)
    if user_history is not None and len(user_history):
        prof = profile_vector(item_vectors, user_history)
        scores = (1 - personal_weight) * scores + personal_weight * (item_vectors @ prof)
        if exclude_history:
            eligible[user_history] = False
    items = top_k(scores[None, :], eligible[None, :], k)[0]
    items = items[items >= 0]
    return items, scores[items].astype(np.float32)
