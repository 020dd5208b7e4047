"""LDA topic channel over item text (scikit-learn)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsage.data.schema import Dataset
from recsage.errors import RecsageError
from recsage.retrieval.channels.base import Channel, Resources, exclude_top
from recsage.types import QueryBatch, history_matrix


def item_documents(data: Dataset) -> list[str]:
    """Plain text per item for bag-of-words models (title, categories, text)."""
    table = data.item_table
    parts: list[list[str]] = [[] for _ in range(len(table))]
    for col in ("title", "categories", "text", "brand"):
        if col not in table.columns:
            continue
        for i, v in enumerate(table[col].tolist()):
            if isinstance(v, list | tuple | np.ndarray):
                parts[i].append(" ".join(str(x) for x in v))
            elif isinstance(v, str):
                parts[i].append(v)
    return [" ".join(p) for p in parts]


class TopicChannel(Channel):
    """LDA topics over item text (scikit-learn); user profile = mean topics of recent items."""

    kind = "topic"

    @dataclass
    class Config:
        n_topics: int = 32
        recent: int = 20
        max_features: int = 5000
        seed: int = 0

    def fit(self, data: Dataset, resources: Resources) -> None:
        from sklearn.decomposition import LatentDirichletAllocation
        from sklearn.feature_extraction.text import CountVectorizer

        docs = item_documents(data)
        if not any(d.strip() for d in docs):
            raise RecsageError(f"topic channel '{self.name}': items have no text to model")
        cfg = self.config
        counts = CountVectorizer(
            max_features=cfg.max_features, stop_words="english", min_df=2
        ).fit_transform(docs)
        lda = LatentDirichletAllocation(
            n_components=cfg.n_topics, random_state=cfg.seed, learning_method="batch", max_iter=20
        )
        topics = lda.fit_transform(counts).astype(np.float32)
        self.item_topics = topics / np.maximum(topics.sum(axis=1, keepdims=True), 1e-12)

    def retrieve(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        recent = [s[-self.config.recent :] for s in batch.sequences]
        h = history_matrix(recent, batch.n_items)
        counts = np.maximum(np.asarray(h.sum(axis=1)), 1.0)
        profile = np.asarray(h @ self.item_topics) / counts
        scores = profile @ self.item_topics.T
        scores[np.asarray(h.sum(axis=1)).ravel() == 0] = -np.inf
        return exclude_top(scores.astype(np.float32), batch, n)

    def state(self) -> dict[str, np.ndarray]:
        return {"item_topics": self.item_topics}

    def load_state(self, state: dict[str, np.ndarray], resources: Resources) -> None:
        self.item_topics = state["item_topics"]
