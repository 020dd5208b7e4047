"""Request operations beside `Pipeline.run`: similar items and natural-language search.

The CLI, the HTTP routes and the web page all call these through the Pipeline's methods, so
the maths lives in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recsage.errors import ConfigError, RecsageError
from recsage.types import QueryBatch, Recommendation, top_k

if TYPE_CHECKING:
    from recsage.pipeline.pipeline import Pipeline


def similar_items(pipe: Pipeline, item: str, n: int = 10) -> tuple[list[Recommendation], str]:
    """Items similar to `item`: cosine of text vectors when the pipeline has them, else
    the first model channel's scores for a one-item history. Returns (items, method)."""
    assert pipe.items is not None
    i = pipe.items.index_of(item, what="item")
    vectors = pipe.resources.item_text_vectors
    if vectors is not None:
        scores = (vectors @ vectors[i]).astype(np.float32)
        method = "text"
    else:
        channel = next(iter(pipe.model_channels), None)
        if channel is None:
            raise RecsageError(
                "this pipeline has no text vectors and no model channel to compare items with"
            )
        if i >= channel.n_items_fitted:
            raise RecsageError(
                f"item '{item}' was added after training and the pipeline has no text "
                "vectors; retrain to include it"
            )
        batch = QueryBatch(np.array([-1]), [np.array([i])], channel.n_items_fitted)
        fitted = channel.scores(batch)[0]
        scores = np.full(pipe.n_items, -np.inf, np.float32)
        scores[: len(fitted)] = fitted
        method = f"model:{channel.name}"
    eligible = np.isfinite(scores)
    eligible[i] = False
    top = top_k(scores[None, :], eligible[None, :], n)[0]
    top = top[top >= 0]
    return pipe.as_recommendations(top, scores[top], [method]), method


def search_items(
    pipe: Pipeline,
    text: str,
    *,
    user: str | None = None,
    n: int = 10,
    personal_weight: float = 0.3,
    exclude_history: bool = False,
) -> list[Recommendation]:
    """Natural-language search over item text, blended with a known user's taste."""
    from recsage.retrieval.search import semantic_search

    vectors, encoder = pipe.resources.item_text_vectors, pipe.resources.text_encoder
    if vectors is None or encoder is None:
        raise ConfigError(
            "this pipeline was trained without item text vectors; enable [text] in its "
            "spec to use search"
        )
    history = pipe.history_of(user)
    found, scores = semantic_search(
        text, vectors, encoder, k=n,
        user_history=history if len(history) else None,
        personal_weight=personal_weight, exclude_history=exclude_history,
    )  # fmt: skip
    return pipe.as_recommendations(found, scores, ["search"])
