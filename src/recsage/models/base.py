"""The one `Recommender` interface every model implements, and its artifact format.

Artifacts are a directory: `manifest.json` (model name, config, data fingerprint,
package version, vocabularies) and `state.safetensors` (arrays). Never pickle.
"""

from __future__ import annotations

import dataclasses
import json
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import scipy.sparse as sp

from recsage import __version__
from recsage.data.schema import Dataset
from recsage.data.vocab import Vocabulary
from recsage.errors import ArtifactError, ConfigError, RecsageError
from recsage.models.memory import check_fit_memory

T = TypeVar("T", bound="Recommender")
MANIFEST = "manifest.json"
STATE = "state.safetensors"


def config_from_dict(cls: type[Any], params: dict[str, Any]) -> Any:
    """Build a config dataclass, rejecting unknown keys with the list of valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - names)
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {', '.join(unknown)} for {cls.__name__}; "
            f"valid: {', '.join(sorted(names))}"
        )
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    converted = {}
    for key, value in params.items():
        t = str(types[key])
        try:
            if t in ("int", "'int'") and not isinstance(value, int):
                value = int(value)
            elif t in ("float", "'float'") and not isinstance(value, float):
                value = float(value)
            elif t in ("bool", "'bool'") and isinstance(value, str):
                value = value.lower() in ("1", "true", "yes")
        except ValueError as exc:
            raise ConfigError(f"parameter {key}={value!r}: expected {t}") from exc
        converted[key] = value
    return cls(**converted)


class Recommender(ABC):
    """fit / score / recommend / save / load, over dense user and item indices.

    `score(users, history=...)` returns a (len(users), n_items) float32 matrix; when
    `history` (CSR rows aligned with `users`) is given, it replaces what the model saw
    for those users in training (cold users, fresh clicks). Item-based models use it
    directly; factor models fold it in.
    """

    name: ClassVar[str] = "base"
    config_cls: ClassVar[type[Any]]

    def __init__(self, config: Any | None = None, **params: Any) -> None:
        if config is not None and params:
            raise ConfigError("pass either a config object or keyword parameters, not both")
        self.config = config if config is not None else config_from_dict(self.config_cls, params)
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
        from recsage.evaluation.metrics import top_k

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
        from safetensors.numpy import save_file

        self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        assert self.train_matrix is not None and self.users is not None and self.items is not None
        tensors = {f"model.{k}": np.ascontiguousarray(v) for k, v in self._state().items()}
        tm = self.train_matrix
        tensors["train.indptr"] = tm.indptr.astype(np.int64)
        tensors["train.indices"] = tm.indices.astype(np.int64)
        save_file(tensors, str(path / STATE))
        manifest = {
            "format": "recsage-model/1",
            "model": self.name,
            "config": dataclasses.asdict(self.config),
            "package_version": __version__,
            "data_fingerprint": self.data_fingerprint,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "fit_seconds": self.fit_seconds,
            "users": self.users.ids.tolist(),
            "items": self.items.ids.tolist(),
            "item_titles": self.item_titles,
            "extra": self._extra_manifest(),
        }
        (path / MANIFEST).write_text(json.dumps(manifest, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Recommender:
        """Load any saved model; dispatches on the manifest's model name."""
        from safetensors.numpy import load_file

        from recsage.models.registry import model_class

        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.exists() or not (path / STATE).exists():
            raise ArtifactError(
                f"{path}: not a recsage model directory (missing {MANIFEST} or {STATE})"
            )
        try:
            manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{mpath}: unreadable manifest ({exc})") from exc
        if manifest.get("format") != "recsage-model/1":
            raise ArtifactError(f"{mpath}: unsupported format {manifest.get('format')!r}")
        klass = model_class(manifest["model"])
        if cls is not Recommender and not issubclass(klass, cls):
            raise ArtifactError(f"{path} holds a '{manifest['model']}' model, not {cls.name}")
        model = klass(config_from_dict(klass.config_cls, manifest["config"]))
        tensors = load_file(str(path / STATE))
        model.n_users, model.n_items = int(manifest["n_users"]), int(manifest["n_items"])
        indptr, indices = tensors.pop("train.indptr"), tensors.pop("train.indices")
        model.train_matrix = sp.csr_matrix(
            (np.ones(len(indices), np.float32), indices, indptr),
            shape=(model.n_users, model.n_items),
        )
        model.users = Vocabulary(manifest["users"])
        model.items = Vocabulary(manifest["items"])
        model.item_titles = manifest.get("item_titles")
        model.data_fingerprint = manifest.get("data_fingerprint", "")
        model.fit_seconds = float(manifest.get("fit_seconds", 0.0))
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        model._load_state(state, manifest.get("extra", {}))
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
