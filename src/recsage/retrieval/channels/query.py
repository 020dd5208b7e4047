"""Natural-language query channel: item text vectors near the query text."""

from __future__ import annotations

import numpy as np

from recsage.data.schema import Dataset
from recsage.errors import RecsageError
from recsage.retrieval.channels.base import Channel, Resources, exclude_top
from recsage.types import QueryBatch


class QueryChannel(Channel):
    """Natural-language query: cosine between the encoded query text and item text vectors."""

    kind = "query"
    reason = "matches your query"
    grows = True

    def fit(self, data: Dataset, resources: Resources) -> None:
        if resources.item_text_vectors is None:
            raise RecsageError(f"query channel '{self.name}' needs item text vectors")
        self.resources = resources

    def retrieve(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = self.resources.item_text_vectors
        assert vectors is not None
        scores = np.full((len(batch), batch.n_items), -np.inf, np.float32)
        texts = {i: t for i, t in enumerate(batch.texts) if t}
        rows = list(texts)
        if rows:
            if self.resources.text_encoder is None:
                raise RecsageError("query channel: no text encoder available to encode the query")
            q = self.resources.text_encoder.encode_queries(list(texts.values()))
            scores[rows] = q @ vectors.T
        return exclude_top(scores, batch, n)

    def load_state(self, state: dict[str, np.ndarray], resources: Resources) -> None:
        self.fit(None, resources)  # type: ignore[arg-type]
