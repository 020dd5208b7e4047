"""Candidate channels: each retrieves items for a batch of queries with a score.

Channels are fitted on a training `Dataset` and retrieve from query histories (item
sequences), so the same fitted channel serves known users, fresh clicks and cold users.
History items are never returned.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recsage.data.schema import Dataset
from recsage.errors import ConfigError, RecsageError
from recsage.evaluation.metrics import top_k
from recsage.pipeline.candidates import history_matrix


@dataclass
class QueryBatch:
    """B queries: user indices (-1 = unknown user), ordered histories, optional texts."""

    users: np.ndarray
    sequences: list[np.ndarray]
    n_items: int
    texts: list[str | None] = field(default_factory=list)
    _history: sp.csr_matrix | None = None

    def __post_init__(self) -> None:
        if not self.texts:
            self.texts = [None] * len(self.sequences)

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def history(self) -> sp.csr_matrix:
        """Binary CSR of the histories (cached)."""
        if self._history is None:
            self._history = history_matrix(self.sequences, self.n_items)
        return self._history


@dataclass
class Resources:
    """Shared by all channels and stages: item text vectors, popularity, the training data."""

    item_text_vectors: np.ndarray | None = None
    text_encoder: Any = None
    #: the validation split while fitting (for channels that early-stop on it)
    valid: Any = None


def _exclude_top(scores: np.ndarray, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
    eligible = np.ones(scores.shape, bool)
    eligible[batch.history.nonzero()] = False
    eligible &= np.isfinite(scores)
    items = top_k(scores, eligible, n)
    s = np.take_along_axis(scores, np.maximum(items, 0), axis=1).astype(np.float32)
    return items, np.where(items >= 0, s, np.nan).astype(np.float32)


class Channel(ABC):
    """fit(data, resources) then retrieve(batch, n) -> (items (B, n), scores (B, n))."""

    kind: ClassVar[str]
    #: True for channels that read the live item vectors and so see items added after fit
    grows: ClassVar[bool] = False

    def __init__(self, name: str, *, n: int = 100, **params: Any) -> None:
        self.name = name
        self.n = int(n)
        self.n_items_fitted = 0
        cfg_cls = getattr(self, "Config", None)
        if cfg_cls is None:
            if params:
                raise ConfigError(f"channel '{name}' ({self.kind}) takes no parameters {params}")
            self.config: Any = None
        else:
            names = {f.name for f in dataclasses.fields(cfg_cls)}
            bad = sorted(set(params) - names)
            if bad:
                raise ConfigError(
                    f"channel '{name}' ({self.kind}): unknown parameter(s) {', '.join(bad)}; "
                    f"valid: {', '.join(sorted(names))}"
                )
            self.config = cfg_cls(**params)

    def spec(self) -> dict[str, Any]:
        """What the TOML spec says about this channel."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "n": self.n}
        if self.config is not None:
            out |= dataclasses.asdict(self.config)
        return out

    @abstractmethod
    def fit(self, data: Dataset, resources: Resources) -> None: ...

    @abstractmethod
    def retrieve(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]: ...

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to persist (models save their own directories)."""
        return {}

    def load_state(self, state: dict[str, np.ndarray], resources: Resources) -> None:  # noqa: B027
        """Restore from `state()` (stateless channels need nothing)."""


class PopularityChannel(Channel):
    """Most popular items; with `half_life_days` > 0, trending (time-decayed counts)."""

    kind = "popularity"

    @dataclass
    class Config:
        half_life_days: float = 0.0

    def fit(self, data: Dataset, resources: Resources) -> None:
        inter = data.interactions
        if self.config.half_life_days > 0 and len(inter):
            age_days = (inter.timestamp.max() - inter.timestamp) / 86400.0
            w = np.power(0.5, age_days / self.config.half_life_days)
        else:
            w = np.ones(len(inter))
        self.counts = np.bincount(inter.item, weights=w, minlength=data.n_items).astype(np.float32)

    def retrieve(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        scores = np.broadcast_to(self.counts, (len(batch), len(self.counts)))
        return _exclude_top(np.array(scores), batch, n)

    def state(self) -> dict[str, np.ndarray]:
        return {"counts": self.counts}

    def load_state(self, state: dict[str, np.ndarray], resources: Resources) -> None:
        self.counts = state["counts"]


class CooccurrenceChannel(Channel):
    """Items that follow/precede the user's recent items within `window` steps elsewhere.

    Co-occurrence counts are normalized like cosine (c_ij / sqrt(c_i c_j)) and summed over
    the last `recent` history items, the most recent weighted most (`decay` per step).
    """

    kind = "cooccurrence"

    @dataclass
    class Config:
        window: int = 3
        recent: int = 10
        decay: float = 0.8
        neighbors: int = 100

    def fit(self, data: Dataset, resources: Resources) -> None:
        from recsage.models.baselines import _keep_top_per_row

        inter = data.interactions
        n_items = data.n_items
        rows, cols = [], []
        for off in range(1, self.config.window + 1):
            if off >= len(inter):
                break
            ok = inter.user[:-off] == inter.user[off:]  # sorted by user: same user, off apart
            a, b = inter.item[:-off][ok], inter.item[off:][ok]
            rows += [a, b]
            cols += [b, a]
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        co = sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(n_items, n_items))
        co.sum_duplicates()
        co.setdiag(0)
        co.eliminate_zeros()
        deg = np.sqrt(np.asarray(co.sum(axis=1)).ravel()).astype(np.float32)
        rr = np.repeat(np.arange(n_items), np.diff(co.indptr))
        d = deg[rr] * deg[co.indices]
        co.data = co.data / np.where(d > 0, d, 1.0)
        self.graph = _keep_top_per_row(co.tocsr(), self.config.neighbors)

    def retrieve(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        recent = [s[-cfg.recent :] for s in batch.sequences]
        lengths = np.array([len(s) for s in recent])
        steps = [np.arange(k)[::-1] for k in lengths]
        flat = np.concatenate(steps) if steps else np.zeros(0, np.int64)
        w = np.power(cfg.decay, flat.astype(np.float64)).astype(np.float32)
        rows = np.repeat(np.arange(len(recent)), lengths)
        cols = np.concatenate(recent) if len(recent) else np.zeros(0, np.int64)
        h = sp.csr_matrix((w, (rows, cols)), shape=(len(recent), batch.n_items))
        scores = (h @ self.graph).toarray()
        scores[scores == 0] = -np.inf
        return _exclude_top(scores, batch, n)

    def state(self) -> dict[str, np.ndarray]:
        g = self.graph
        return {"data": g.data, "indices": g.indices.astype(np.int64), "indptr": g.indptr}

    def load_state(self, state: dict[str, np.ndarray], resources: Resources) -> None:
        n = len(state["indptr"]) - 1
        self.graph = sp.csr_matrix((state["data"], state["indices"], state["indptr"]), (n, n))


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
        return _exclude_top(scores.astype(np.float32), batch, n)

    def state(self) -> dict[str, np.ndarray]:
        return {"item_topics": self.item_topics}

    def load_state(self, state: dict[str, np.ndarray], resources: Resources) -> None:
        self.item_topics = state["item_topics"]


class TextChannel(Channel):
    """Semantic neighbours: cosine between item text vectors and the mean of recent ones."""

    kind = "text"
    grows = True

    @dataclass
    class Config:
        recent: int = 10

    def fit(self, data: Dataset, resources: Resources) -> None:
        if resources.item_text_vectors is None:
            raise RecsageError(f"text channel '{self.name}' needs item text vectors")
        self.resources = resources

    def retrieve(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = self.resources.item_text_vectors
        assert vectors is not None
        recent = [s[-self.config.recent :] for s in batch.sequences]
        h = history_matrix(recent, batch.n_items, half_life=3.0)
        prof = np.asarray(h @ vectors)
        prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
        scores = prof @ vectors.T
        scores[np.asarray(h.sum(axis=1)).ravel() == 0] = -np.inf
        return _exclude_top(scores.astype(np.float32), batch, n)

    def load_state(self, state: dict[str, np.ndarray], resources: Resources) -> None:
        self.fit(None, resources)  # type: ignore[arg-type]


class QueryChannel(Channel):
    """Natural-language query: cosine between the encoded query text and item text vectors."""

    kind = "query"
    grows = True

    def fit(self, data: Dataset, resources: Resources) -> None:
        if resources.item_text_vectors is None:
            raise RecsageError(f"query channel '{self.name}' needs item text vectors")
        self.resources = resources

    def retrieve(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        vectors = self.resources.item_text_vectors
        assert vectors is not None
        scores = np.full((len(batch), batch.n_items), -np.inf, np.float32)
        rows = [i for i, t in enumerate(batch.texts) if t]
        if rows:
            if self.resources.text_encoder is None:
                raise RecsageError("query channel: no text encoder available to encode the query")
            q = self.resources.text_encoder.encode_queries([batch.texts[i] for i in rows])
            scores[rows] = q @ vectors.T
        return _exclude_top(scores, batch, n)

    def load_state(self, state: dict[str, np.ndarray], resources: Resources) -> None:
        self.fit(None, resources)  # type: ignore[arg-type]


class ModelChannel(Channel):
    """Top items of any registered `Recommender` (EASE, ALS, SASRec, two-tower, …).

    With `index` set ("hnsw", "flat", "ivfpq") and a model that exposes vectors, retrieval
    is an ANN search over the model's item vectors (FAISS) instead of full scoring.
    """

    kind = "model"

    @dataclass
    class Config:
        model: str = "ease"
        params: dict[str, Any] = field(default_factory=dict)
        index: str = ""
        half_life: float = 0.0
        early_stopping: bool = False

    def fit(self, data: Dataset, resources: Resources) -> None:
        import inspect

        from recsage.models.registry import create_model

        self.model = create_model(self.config.model, **self.config.params)
        accepts = inspect.signature(self.model.fit).parameters
        fit_kwargs: dict[str, Any] = {}
        if "item_text_vectors" in accepts and resources.item_text_vectors is not None:
            fit_kwargs["item_text_vectors"] = resources.item_text_vectors
        if "valid" in accepts and self.config.early_stopping and resources.valid is not None:
            fit_kwargs["valid"] = resources.valid
        self.model.fit(data, **fit_kwargs)
        self._build_index()

    def _build_index(self) -> None:
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
        if hasattr(m, "score_sequences"):
            return np.asarray(m.score_sequences(batch.sequences), np.float32)
        hl = self.config.half_life or getattr(m.config, "half_life", 0.0)
        h = history_matrix(batch.sequences, batch.n_items, half_life=hl) if hl else batch.history
        return np.asarray(m.score(batch.users, history=h), np.float32)

    def retrieve(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.index is None:
            return _exclude_top(self.scores(batch), batch, n)
        q = model_query_vectors(self.model, batch)
        s, ids = self.index.search(q, n, exclude=batch.history)
        return ids, np.where(ids >= 0, s, np.nan).astype(np.float32)


def model_item_vectors(model: Any) -> np.ndarray:
    """Item vectors of a model whose scores are user·item dot products."""
    for attr in ("item_vectors", "item_embeddings"):
        if hasattr(model, attr):
            v = getattr(model, attr)
            return np.asarray(v() if callable(v) else v, np.float32)
    if hasattr(model, "item_factors"):
        return np.asarray(model.item_factors, np.float32)
    raise ConfigError(f"model '{model.name}' exposes no item vectors; drop `index` for it")


def model_query_vectors(model: Any, batch: QueryBatch) -> np.ndarray:
    """User vectors for the batch's histories (sequence models, two-tower, ALS fold-in)."""
    if hasattr(model, "user_vectors"):
        return np.asarray(model.user_vectors(batch.sequences), np.float32)
    if hasattr(model, "fold_in"):
        return np.asarray(model.fold_in(batch.history), np.float32)
    raise ConfigError(f"model '{model.name}' exposes no user vectors; drop `index` for it")


CHANNELS: dict[str, type[Channel]] = {
    c.kind: c
    for c in (
        PopularityChannel,
        CooccurrenceChannel,
        TopicChannel,
        TextChannel,
        QueryChannel,
        ModelChannel,
    )
}


def create_channel(spec: dict[str, Any]) -> Channel:
    """Channel from a spec dict {name, kind, n, ...params}."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    name = spec.pop("name", kind)
    if kind == "kg" and kind not in CHANNELS:  # imports torch: loaded on first use
        from recsage.knowledge.channel import KGChannel

        CHANNELS["kg"] = KGChannel
    if kind not in CHANNELS:
        raise ConfigError(f"channel '{name}': unknown kind {kind!r}; known: {sorted(CHANNELS)}")
    return CHANNELS[kind](str(name), **spec)
