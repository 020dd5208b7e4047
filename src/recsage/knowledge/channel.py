"""The knowledge-graph retrieval channel (kind "kg") and the `KGModel` recommender behind it.

`KGModel` trains TransE on the dataset's item knowledge graph and scores items by cosine
between their KG vectors and a recency-weighted mean of the user's recent history vectors.
`KGChannel` is a `ModelChannel`, so the pipeline also writes the full score of every
candidate to the column ``<channel name>_full``, which learned stages read as a feature
("kg similarity between candidate and recent history"). To use the KG score as a feature
only, give the channel a merge quota of 0 (`[merge] quotas = { kg = 0 }`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsage.artifacts import KNOWLEDGE_GRAPH, is_artifact
from recsage.data.schema import Dataset
from recsage.errors import RecsageError
from recsage.knowledge.embeddings import TransE, TransEConfig, recency_profile
from recsage.knowledge.graph import ItemKnowledgeGraph
from recsage.models.base import Recommender
from recsage.retrieval.channels.base import Resources
from recsage.retrieval.channels.model import ModelChannel


@dataclass
class KGModelConfig:
    """`graph`: "auto" (item attributes + the dataset's known external triples), "none"
    (attributes only), a RecBole folder with `<dataset>.kg/.link`, or a saved graph folder.
    TransE: `dim`, `epochs`, `lr`, `margin`, `seed`, `threads`. Item vectors mix in their
    neighbours' mean with weight `propagate`. Users: the last `recent` items, each step back
    weighted by `decay`."""

    graph: str = "auto"
    dim: int = 64
    epochs: int = 20
    lr: float = 0.01
    margin: float = 1.0
    propagate: float = 1.0
    recent: int = 10
    decay: float = 0.8
    seed: int = 0
    threads: int = 2


def graph_for(data: Dataset, spec: str) -> ItemKnowledgeGraph:
    """The graph a KG model trains on: a saved graph folder, or one built for `data`."""
    folder = Path(spec).expanduser() if spec not in ("", "auto", "none") else None
    if folder is not None and is_artifact(folder, KNOWLEDGE_GRAPH):
        graph = ItemKnowledgeGraph.load(folder)
        if graph.n_items != data.n_items:
            raise RecsageError(
                f"graph {folder} has {graph.n_items} items, the dataset {data.n_items}"
            )
        return graph
    return ItemKnowledgeGraph.for_dataset(data, external=spec or "none")


class KGModel(Recommender):
    """Content recommender over TransE item vectors of the item knowledge graph."""

    name = "kg"
    config_cls = KGModelConfig

    def __init__(
        self,
        config: KGModelConfig | None = None,
        *,
        graph: ItemKnowledgeGraph | str | None = None,
        **params: Any,
    ) -> None:
        if isinstance(graph, str):  # the config field `graph` (create_model("kg", graph=...))
            params["graph"], graph = graph, None
        super().__init__(config, **params)
        self.graph = graph
        self.vectors = np.zeros((0, self.config.dim), np.float32)
        self.losses: list[float] = []

    # ---- Recommender ----------------------------------------------------------------
    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        cfg = self.config
        if self.graph is None:
            self.graph = graph_for(data, cfg.graph)
        elif self.graph.n_items != data.n_items:
            raise RecsageError(
                f"the graph has {self.graph.n_items} items, the dataset {data.n_items}"
            )
        transe = TransE(
            TransEConfig(
                dim=cfg.dim, epochs=cfg.epochs, lr=cfg.lr, margin=cfg.margin, seed=cfg.seed,
                threads=cfg.threads,
            )
        ).fit(self.graph)  # fmt: skip
        self.losses = transe.losses
        self.vectors = transe.item_vectors(self.graph, propagate=cfg.propagate)

    def _score(self, users: np.ndarray, history: sp.csr_matrix, *, given: bool) -> np.ndarray:
        prof = np.asarray(history @ self.vectors, dtype=np.float32)
        prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
        return prof @ self.vectors.T

    def score_sequences(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """(B, n_items) cosine to the recent-history profile; -inf rows without a profile."""
        prof = self.user_vectors(sequences)
        scores = prof @ self.vectors.T
        scores[~np.any(prof != 0, axis=1)] = -np.inf
        return scores.astype(np.float32)

    def user_vectors(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """Recency-weighted, L2-normalised mean KG vector of each history."""
        return recency_profile(
            sequences, self.vectors, recent=self.config.recent, decay=self.config.decay
        )

    def item_vectors(self) -> np.ndarray:
        """(n_items, dim) L2-normalised KG item vectors (zero rows: no triples)."""
        return self.vectors

    def _state(self) -> dict[str, np.ndarray]:
        assert self.graph is not None
        return {"vectors": self.vectors, **self.graph.arrays()}

    def _extra_manifest(self) -> dict[str, Any]:
        assert self.graph is not None
        return {"graph": self.graph.meta(), "losses": self.losses}

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.vectors = state["vectors"]
        self.graph = ItemKnowledgeGraph.from_parts(state, extra["graph"])
        self.losses = [float(x) for x in extra.get("losses", [])]


class KGChannel(ModelChannel):
    """Kind "kg": items whose KG vectors are closest (cosine) to the recent-history mean.

    Also provides the full KG score of every candidate as ``<name>_full`` for learned
    stages. `index` ("flat", "hnsw", …) retrieves through a vector index instead.
    """

    kind = "kg"
    reason = "close in the knowledge graph to what you chose recently"

    @dataclass
    class Config(KGModelConfig):
        """The model's settings plus the channel's own."""

        index: str = ""
        half_life: float = 0.0  # unused (KG profiles weight by `decay`); kept for ModelChannel

    def fit(self, data: Dataset, resources: Resources) -> None:
        names = {f.name for f in dataclasses.fields(KGModelConfig)}
        params = {k: v for k, v in dataclasses.asdict(self.config).items() if k in names}
        self.model = KGModel(KGModelConfig(**params)).fit(data)
        self.build_index()

    @property
    def graph(self) -> ItemKnowledgeGraph | None:
        """The knowledge graph the channel's model was trained on (for explanations)."""
        model = getattr(self, "model", None)  # set by fit or load
        return model.graph if isinstance(model, KGModel) else None


__all__ = ["KGChannel", "KGModel", "KGModelConfig", "graph_for"]
