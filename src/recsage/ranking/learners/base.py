"""Ranker base: fit on grouped RankingData, predict scores, save/load."""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self, cast

import numpy as np

from recsage.artifacts import RANKER, read_artifact, write_artifact
from recsage.component import build_config, resolve_config
from recsage.errors import ArtifactError, DataError, RecsageError
from recsage.ranking.learners.data import FeatureSchema, RankingData
from recsage.ranking.losses import (
    grouped_ndcg,
)

OBJECTIVES = ("pointwise", "pairwise", "listwise")


PAIRWISE_LOSSES = ("bpr", "ranknet", "lambda")


#: rows scored per forward pass when predicting
PREDICT_ROWS = 8192
_PREDICT_ROWS = PREDICT_ROWS  # old name, still imported by learners/torch.py (being rewritten)


class Ranker(ABC):
    """fit / predict / save / load over `RankingData`; higher score = ranked higher."""

    name: ClassVar[str] = "ranker"
    config_cls: ClassVar[type[Any]]

    def __init__(self, config: Any | None = None, **params: Any) -> None:
        self.config = resolve_config(self.config_cls, config, params, where=f"ranker '{self.name}'")
        self.schema: FeatureSchema | None = None
        self.mean = np.zeros(0, dtype=np.float32)
        self.std = np.ones(0, dtype=np.float32)
        self.fit_seconds = 0.0
        self.best_epoch = 0
        self.best_score = float("nan")
        self.log: list[dict[str, float]] = []

    # ---- public API -------------------------------------------------------------------
    def fit(self, train: RankingData, valid: RankingData | None = None) -> Self:
        """Train on `train`; with `valid`, stop early on its grouped NDCG@K."""
        if train.label is None:
            raise DataError(f"{self.name}: training data needs labels")
        if train.n_rows == 0 or not (train.label > 0).any():
            raise DataError(f"{self.name}: training data has no row with a positive label")
        self._check_labels(train.label)
        uses_item, uses_history = self._uses(train)
        self.schema = FeatureSchema(
            train.n_dense, train.cardinalities, train.n_items, uses_item, uses_history
        )
        if valid is not None:
            self.schema.check(valid, f"{self.name} (valid)")
            if valid.label is None or not (valid.label > 0).any():
                raise DataError(
                    f"{self.name}: validation data needs labels with at least one positive "
                    "(early stopping uses its grouped NDCG)"
                )
        self.mean = train.dense.mean(0).astype(np.float32)
        std = train.dense.std(0).astype(np.float32)
        self.std = np.where(std > 1e-8, std, 1.0).astype(np.float32)
        start = time.perf_counter()
        self._fit(train, valid)
        self.fit_seconds = time.perf_counter() - start
        return self

    def predict(self, data: RankingData) -> np.ndarray:
        """Scores (n_rows,) float32, raw margins (logits for pointwise objectives); compare
        them within a group only."""
        schema = self._check_fitted()
        schema.check(data, self.name)
        if data.n_rows == 0:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self._predict(data), dtype=np.float32)

    def evaluate(self, data: RankingData, k: int = 10) -> float:
        """Grouped NDCG@k of this ranker's scores on labelled data."""
        if data.label is None:
            raise DataError(f"{self.name}: evaluate needs labelled data")
        return grouped_ndcg(self.predict(data), data.label, data.group, k)

    def save(self, path: str | Path) -> Path:
        """Write the artifact directory (manifest.json + state.safetensors [+ model.txt])."""
        schema = self._check_fitted()
        arrays = {"stats.mean": self.mean, "stats.std": self.std}
        arrays.update({f"model.{k}": v for k, v in self._state().items()})
        return write_artifact(
            path,
            RANKER,
            name=self.name,
            config=dataclasses.asdict(self.config),
            arrays=arrays,
            extra={
                "features": dataclasses.asdict(schema),
                "fit_seconds": self.fit_seconds,
                "best_epoch": self.best_epoch,
                "best_score": None if np.isnan(self.best_score) else self.best_score,
                "log": self.log,
            },
            write=self._save_files,
        )

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Load any saved ranker; dispatches on the manifest's ranker name."""
        from recsage.ranking.learners.registry import RANKERS

        art = read_artifact(path, RANKER)
        klass = RANKERS.get(art.name)
        if cls is not Ranker and not issubclass(klass, cls):
            raise ArtifactError(f"{art.path} holds a '{art.name}' ranker, not {cls.name}")
        model = klass(build_config(klass.config_cls, art.config, where=f"{art.path} config"))
        feats = dict(art.get("features"))
        feats["cardinalities"] = tuple(feats["cardinalities"])
        model.schema = FeatureSchema(**feats)
        tensors = art.arrays()
        model.mean, model.std = tensors.pop("stats.mean"), tensors.pop("stats.std")
        model.fit_seconds = float(art.get("fit_seconds", 0.0))
        model.best_epoch = int(art.get("best_epoch", 0))
        best = art.get("best_score")
        model.best_score = float("nan") if best is None else float(best)
        model.log = list(art.get("log", []))
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        model._load_state(art.path, state)
        return cast(Self, model)

    # ---- for implementations --------------------------------------------------------
    def _uses(self, train: RankingData) -> tuple[bool, bool]:
        """(uses item ids, uses history) given the training data."""
        return False, False

    def _check_labels(self, label: np.ndarray) -> None:
        """Objective-specific label checks (raise DataError)."""
        return None

    def _standardize(self, dense: np.ndarray) -> np.ndarray:
        return ((dense - self.mean) / self.std).astype(np.float32)

    def _check_fitted(self) -> FeatureSchema:
        if self.schema is None:
            raise RecsageError(f"ranker '{self.name}' is not fitted; call fit() or load() first")
        return self.schema

    def _save_files(self, path: Path) -> None:
        """Extra files next to the state (LightGBM's text model)."""
        return None

    @abstractmethod
    def _fit(self, train: RankingData, valid: RankingData | None) -> None:
        """Learn parameters; `self.schema`, `self.mean` and `self.std` are set."""

    @abstractmethod
    def _predict(self, data: RankingData) -> np.ndarray:
        """Scores for validated data."""

    @abstractmethod
    def _state(self) -> dict[str, np.ndarray]:
        """Arrays to persist."""

    @abstractmethod
    def _load_state(self, path: Path, state: dict[str, np.ndarray]) -> None:
        """Restore from `_state()` output (and files in `path`)."""
