"""The one `Recommender` interface every model implements.

Saved models are `recsage.artifacts` directories of format `MODEL`: the manifest holds
the model name, config, data fingerprint, vocabularies and titles; `state.safetensors`
the arrays. Never pickle.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np
import scipy.sparse as sp

from recsage.artifacts import MODEL, read_artifact, write_artifact
from recsage.component import build_config, resolve_config
from recsage.data.schema import Dataset
from recsage.data.vocab import Vocabulary
from recsage.errors import ArtifactError, RecsageError
from recsage.models.memory import check_fit_memory

T = TypeVar("T", bound="Recommender")


# ---- capabilities beyond `Recommender` (checked with isinstance, never attribute sniffing) --
@runtime_checkable
class SupportsItemVectors(Protocol):
    """Scores are dot products of a user vector with these (n_items, dim) item vectors, so
    retrieval can run as an ANN search over them (ALS, SASRec, two-tower, KG)."""

    def item_vectors(self) -> np.ndarray: ...


@runtime_checkable
class SupportsUserVectors(Protocol):
    """Query vectors, (B, dim), for ordered item-index histories (oldest first)."""

    def user_vectors(self, sequences: Sequence[np.ndarray]) -> np.ndarray: ...


@runtime_checkable
class SupportsFoldIn(Protocol):
    """Query vectors, (B, dim), folded in from CSR history rows (ALS)."""

    def fold_in(self, history: sp.csr_matrix) -> np.ndarray: ...


@runtime_checkable
class SupportsSequenceScores(Protocol):
    """(B, n_items) scores for ordered item-index histories (sequence models)."""

    def score_sequences(self, sequences: Sequence[np.ndarray]) -> np.ndarray: ...


@runtime_checkable
class SupportsItemWeights(Protocol):
    """An (n_items, n_items) item-to-item weight matrix, dense or CSR, with
    score(u, j) = sum over history items i of W[i, j] (EASE, item-kNN)."""

    def item_weights(self) -> np.ndarray | sp.csr_matrix: ...


class Recommender(ABC):
    """fit / score / recommend / save / load, over dense user and item indices.

    `score(users, history=...)` returns a (len(users), n_items) float32 matrix; when
    `history` (CSR rows aligned with `users`) is given, it replaces what the model saw
    for those users in training (cold users, fresh clicks). Item-based models use it
    directly; factor models fold it in.
    """

    name: ClassVar[str] = "base"
    config_cls: ClassVar[type[Any]]
    #: keyword options `fit` takes besides the dataset; "valid" (a validation `Split` for
    #: early stopping) and "item_text_vectors" are passed by the pipeline's model channel
    fit_options: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: Any | None = None, **params: Any) -> None:
        self.config = resolve_config(self.config_cls, config, params, where=f"model '{self.name}'")
        self.n_users = 0
        self.n_items = 0
        self.train_matrix: sp.csr_matrix | None = None
        self.users: Vocabulary | None = None
        self.items: Vocabulary | None = None
        self.item_titles: list[str] | None = None
        self.data_fingerprint = ""
        self.fit_seconds = 0.0

    # ---- public API -------------------------------------------------------------------
    def fit(self: T, data: Dataset) -> T:
        """Train on the dataset's interactions."""
        if len(data.interactions) == 0:
            raise RecsageError(f"cannot fit {self.name}: dataset '{data.name}' has no interactions")
        check_fit_memory(self.name, self.config, data)  # refuse before allocating
        start = time.perf_counter()
        self.n_users, self.n_items = data.n_users, data.n_items
        self.train_matrix = data.matrix()
        self.users, self.items = data.users, data.items
        self.item_titles = [str(t) for t in data.item_titles()]
        self.data_fingerprint = data.fingerprint()
        self._fit(data, self.train_matrix)
        self.fit_seconds = time.perf_counter() - start
        return self

    def score(self, users: np.ndarray, *, history: sp.csr_matrix | None = None) -> np.ndarray:
        """Scores for every item, one row per user (higher is better)."""
        self._check_fitted()
        users = np.asarray(users, dtype=np.int64)
        if history is None:
            if ((users < 0) | (users >= self.n_users)).any():
                raise RecsageError(f"user index out of range 0..{self.n_users - 1}")
            assert self.train_matrix is not None
            history = self.train_matrix[users]
            given = False
        else:
            if history.shape != (len(users), self.n_items):
                raise RecsageError(
                    f"history must have shape ({len(users)}, {self.n_items}), got {history.shape}"
                )
            given = True
        return np.asarray(self._score(users, history.tocsr(), given=given), dtype=np.float32)

    def recommend(
        self,
        users: np.ndarray,
        n: int = 10,
        *,
        exclude_seen: bool = True,
        history: sp.csr_matrix | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n item indices and scores per user (seen items excluded by default)."""
        from recsage.types import top_k

        users = np.asarray(users, dtype=np.int64)
        scores = self.score(users, history=history)
        eligible = np.ones_like(scores, dtype=bool)
        if exclude_seen:
            assert self.train_matrix is not None
            seen = history if history is not None else self.train_matrix[users]
            eligible[seen.nonzero()] = False
        items = top_k(scores, eligible, n)
        top_scores = np.take_along_axis(scores, np.maximum(items, 0), axis=1)
        return items, np.where(items >= 0, top_scores, -np.inf).astype(np.float32)

    def save(self, path: str | Path) -> Path:
        """Write the artifact directory (manifest + safetensors state)."""
        self._check_fitted()
        assert self.train_matrix is not None and self.users is not None and self.items is not None
        arrays = {f"model.{k}": v for k, v in self._state().items()}
        tm = self.train_matrix
        arrays["train.indptr"] = tm.indptr.astype(np.int64)
        arrays["train.indices"] = tm.indices.astype(np.int64)
        return write_artifact(
            path,
            MODEL,
            name=self.name,
            config=dataclasses.asdict(self.config),
            data_fingerprint=self.data_fingerprint,
            arrays=arrays,
            extra={
                "n_users": self.n_users,
                "n_items": self.n_items,
                "fit_seconds": self.fit_seconds,
                "users": self.users.ids.tolist(),
                "items": self.items.ids.tolist(),
                "item_titles": self.item_titles,
                "extra": self._extra_manifest(),
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load any saved model; dispatches on the manifest's model name."""
        from recsage.models.registry import model_class

        art = read_artifact(path, MODEL)
        klass = model_class(art.name)
        if cls is not Recommender and not issubclass(klass, cls):
            raise ArtifactError(f"{art.path} holds a '{art.name}' model, not {cls.name}")
        model = klass(build_config(klass.config_cls, art.config, where=f"{art.path} config"))
        tensors = art.arrays()
        model.n_users, model.n_items = int(art.get("n_users")), int(art.get("n_items"))
        indptr, indices = tensors.pop("train.indptr"), tensors.pop("train.indices")
        model.train_matrix = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr),
            shape=(model.n_users, model.n_items),
        )
        model.users = Vocabulary(art.get("users"))
        model.items = Vocabulary(art.get("items"))
        model.item_titles = art.get("item_titles")
        model.data_fingerprint = art.data_fingerprint
        model.fit_seconds = float(art.get("fit_seconds", 0.0))
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        model._load_state(state, art.get("extra", {}))
        return model

    # ---- for implementations --------------------------------------------------------
    @abstractmethod
    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        """Learn parameters from the binary user x item matrix (and the dataset)."""

    @abstractmethod
    def _score(self, users: np.ndarray, history: sp.csr_matrix, *, given: bool) -> np.ndarray:
        """Score all items for `users` whose interactions are `history` (given=True when
        the caller supplied it rather than the training data)."""

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """Arrays to persist."""

    @abstractmethod
    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        """Restore from `_state()` output."""

    def _extra_manifest(self) -> dict[str, Any]:
        return {}

    def _check_fitted(self) -> None:
        if self.train_matrix is None:
            raise RecsageError(f"model '{self.name}' is not fitted; call fit() or load() first")
