"""Model channel: top items of any registered `Recommender`, optionally via an ANN index."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsage.data.schema import Dataset
from recsage.errors import ConfigError
from recsage.models.base import (
    Recommender,
    SupportsFoldIn,
    SupportsItemVectors,
    SupportsSequenceScores,
    SupportsUserVectors,
)
from recsage.retrieval.channels.base import Channel, Resources, exclude_top
from recsage.types import QueryBatch, history_matrix


class ModelChannel(Channel):
    """Top items of any registered `Recommender` (EASE, ALS, SASRec, two-tower, …).

    With `index` set ("hnsw", "flat", "ivfpq") and a model that exposes vectors, retrieval
    is an ANN search over the model's item vectors (FAISS) instead of full scoring.
    """

    kind = "model"
    reason = "scored high by the {name} model given your history"

    @dataclass
    class Config:
        model: str = "ease"
        params: dict[str, Any] = field(default_factory=dict)
        index: str = ""
        half_life: float = 0.0
        early_stopping: bool = False

    def fit(self, data: Dataset, resources: Resources) -> None:
        from recsage.models.registry import create_model

        self.model = create_model(self.config.model, **self.config.params)
        options = self.model.fit_options
        fit_kwargs: dict[str, Any] = {}
        if "item_text_vectors" in options and resources.item_text_vectors is not None:
            fit_kwargs["item_text_vectors"] = resources.item_text_vectors
        if "valid" in options and self.config.early_stopping and resources.valid is not None:
            fit_kwargs["valid"] = resources.valid
        self.model.fit(data, **fit_kwargs)
        self.build_index()

    def save(self, folder: Path) -> None:
        """The model saves its own artifact directory under `folder/model`."""
        super().save(folder)
        self.model.save(folder / "model")

    def load(self, folder: Path, resources: Resources) -> None:
        from recsage.models.base import Recommender

        self.model = Recommender.load(folder / "model")
        self.build_index()

    def build_index(self) -> None:
        self.index = None
        if not self.config.index:
            return
        from recsage.retrieval.index import make_index

        vecs = model_item_vectors(self.model)
        self.index = make_index(self.config.index)
        self.index.build(np.arange(len(vecs), dtype=np.int64), vecs)

    def scores(self, batch: QueryBatch) -> np.ndarray:
        """Full score matrix (B, n_items) for the batch's histories."""
        m = self.model
        if isinstance(m, SupportsSequenceScores):
            return np.asarray(m.score_sequences(batch.sequences), np.float32)
        hl = self.config.half_life or getattr(m.config, "half_life", 0.0)
        h = history_matrix(batch.sequences, batch.n_items, half_life=hl) if hl else batch.history
        return np.asarray(m.score(batch.users, history=h), np.float32)

    def retrieve(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            return exclude_top(self.scores(batch), batch, n)
        q = model_query_vectors(self.model, batch)
        s, ids = self.index.search(q, n, exclude=batch.excluded)
        return ids, np.where(ids >= 0, s, np.nan).astype(np.float32)


def model_item_vectors(model: Recommender) -> np.ndarray:
    """Item vectors of a model whose scores are user·item dot products."""
    if isinstance(model, SupportsItemVectors):
        return np.asarray(model.item_vectors(), np.float32)
    raise ConfigError(f"model '{model.name}' exposes no item vectors; drop `index` for it")


def model_query_vectors(model: Recommender, batch: QueryBatch) -> np.ndarray:
    """User vectors for the batch's histories (sequence models, two-tower, ALS fold-in)."""
    if isinstance(model, SupportsUserVectors):
        return np.asarray(model.user_vectors(batch.sequences), np.float32)
    if isinstance(model, SupportsFoldIn):
        return np.asarray(model.fold_in(batch.history), np.float32)
    raise ConfigError(f"model '{model.name}' exposes no user vectors; drop `index` for it")
