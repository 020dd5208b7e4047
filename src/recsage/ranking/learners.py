"""Learned rankers that score (query, candidate) rows of a feature table.

`RankingData` holds one row per candidate: standardizable dense features, categorical
codes, the query/user group, the relevance label and, for target attention, the candidate
item and each group's recent history. Every `Ranker` has `fit(train, valid)`, `predict`,
`save` and `load`; torch models (FM, NFM, DeepFM, DIN) train on mini-batches of whole
groups with a pointwise, pairwise or listwise objective and stop early on validation
NDCG@K within groups; `LGBMRanker` wraps LightGBM (binary / LambdaMART / XE-NDCG).

Artifacts are a directory: `manifest.json` (ranker name, config, feature schema, fit
summary) and `state.safetensors` (feature means/stds and network weights); LightGBM adds
`model.txt` (its own text format). Nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import json
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self, cast

import numpy as np
import torch
from torch import nn

from recsage import __version__
from recsage.errors import ArtifactError, ConfigError, DataError, RecsageError
from recsage.models.base import config_from_dict
from recsage.ranking.losses import (
    LossFn,
    group_offsets,
    grouped_ndcg,
    lambda_loss,
    listwise_softmax,
    pairwise_bpr,
    pairwise_ranknet,
    pointwise_bce,
)

FORMAT = "recsage-ranker/1"
MANIFEST = "manifest.json"
STATE = "state.safetensors"
LGBM_MODEL = "model.txt"
OBJECTIVES = ("pointwise", "pairwise", "listwise")
PAIRWISE_LOSSES = ("bpr", "ranknet", "lambda")
_PREDICT_ROWS = 8192


# ---------------------------------------------------------------------------- data


def _no_columns() -> np.ndarray:
    return np.zeros((0, 0), dtype=np.int64)


@dataclass(eq=False)
class RankingData:
    """Candidate rows for ranking: features, group (query/user) and label per row.

    - `dense` (n_rows, n_dense) float32, finite (fill missing values upstream);
    - `group` (n_rows,) int64, the rows of one group contiguous;
    - `label` (n_rows,) float32 relevance >= 0 (1 relevant, 0 not), None when predicting;
    - `categorical` (n_rows, n_cat) int64 codes, column j in [0, cardinalities[j]);
    - `item` (n_rows,) int64 candidate item index in [0, n_items);
    - `history` (n_groups, L) int64, each group's last L items, -1 padded on the left.
    """

    dense: np.ndarray
    group: np.ndarray
    label: np.ndarray | None = None
    categorical: np.ndarray = field(default_factory=_no_columns)
    cardinalities: tuple[int, ...] = ()
    item: np.ndarray | None = None
    history: np.ndarray | None = None
    n_items: int = 0
    _offsets: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.dense = np.ascontiguousarray(self.dense, dtype=np.float32)
        if self.dense.ndim != 2:
            raise DataError(f"dense must be 2-d (n_rows, n_dense), got shape {self.dense.shape}")
        n = self.dense.shape[0]
        self.group = self._vector(self.group, "group", np.int64, n)
        self._offsets = group_offsets(self.group)
        if not np.isfinite(self.dense).all():
            bad = ~np.isfinite(self.dense)
            col = int(np.flatnonzero(bad.any(0))[0])
            raise DataError(
                f"dense column {col} has {int(bad[:, col].sum())} non-finite value(s); "
                "fill missing values (and add an indicator column) before ranking"
            )
        if self.label is not None:
            self.label = self._vector(self.label, "label", np.float32, n)
            if not np.isfinite(self.label).all() or (self.label < 0).any():
                raise DataError("label must be finite and >= 0 (1 = relevant, 0 = not)")
        self._check_categorical(n)
        self.n_items = int(self.n_items)
        if (self.item is not None or self.history is not None) and self.n_items <= 0:
            raise DataError("n_items (the item catalogue size) is required with item/history")
        if self.item is not None:
            self.item = self._vector(self.item, "item", np.int64, n)
            if n and (self.item.min() < 0 or self.item.max() >= self.n_items):
                raise DataError(f"item indices must be in [0, {self.n_items})")
        if self.history is not None:
            self.history = np.ascontiguousarray(self.history, dtype=np.int64)
            if self.history.ndim != 2 or self.history.shape[0] != self.n_groups:
                raise DataError(
                    f"history must have shape (n_groups={self.n_groups}, L), "
                    f"got {self.history.shape}"
                )
            if self.history.size and (
                self.history.min() < -1 or self.history.max() >= self.n_items
            ):
                raise DataError(f"history items must be in [0, {self.n_items}) or -1 (padding)")

    @staticmethod
    def _vector(values: Any, name: str, dtype: type, n: int) -> np.ndarray:
        arr: np.ndarray = np.ascontiguousarray(values, dtype=dtype)
        if arr.shape != (n,):
            raise DataError(f"{name} must have shape (n_rows={n},), got {arr.shape}")
        return arr

    def _check_categorical(self, n: int) -> None:
        cat = np.ascontiguousarray(self.categorical, dtype=np.int64)
        if cat.ndim == 2 and cat.shape[1] == 0:
            cat = np.zeros((n, 0), dtype=np.int64)
        if cat.ndim != 2 or cat.shape[0] != n:
            raise DataError(f"categorical must have shape (n_rows={n}, n_cat), got {cat.shape}")
        self.categorical = cat
        self.cardinalities = tuple(int(c) for c in self.cardinalities)
        if len(self.cardinalities) != cat.shape[1]:
            raise DataError(
                f"cardinalities has {len(self.cardinalities)} entries for "
                f"{cat.shape[1]} categorical column(s); give one per column"
            )
        if n and cat.shape[1]:
            lo, hi = cat.min(0), cat.max(0)
            for j, card in enumerate(self.cardinalities):
                if lo[j] < 0 or hi[j] >= card:
                    raise DataError(
                        f"categorical column {j} has codes in [{lo[j]}, {hi[j]}], "
                        f"outside [0, {card}) given by cardinalities[{j}]"
                    )

    @property
    def n_rows(self) -> int:
        """Number of candidate rows."""
        return int(self.dense.shape[0])

    @property
    def n_groups(self) -> int:
        """Number of groups (queries / users)."""
        return len(self._offsets) - 1

    @property
    def n_dense(self) -> int:
        """Number of dense feature columns."""
        return int(self.dense.shape[1])

    def group_bounds(self) -> np.ndarray:
        """Row offsets (n_groups + 1,): group g is rows offsets[g]:offsets[g + 1]."""
        return self._offsets.copy()

    def group_sizes(self) -> np.ndarray:
        """Rows per group (n_groups,)."""
        return np.diff(self._offsets)

    def row_group(self) -> np.ndarray:
        """Group position 0..n_groups-1 of every row (n_rows,)."""
        return np.repeat(np.arange(self.n_groups, dtype=np.int64), self.group_sizes())

    def subset(self, groups_mask: np.ndarray) -> RankingData:
        """The rows (and history) of the selected groups: a bool mask over groups or
        group positions; rows keep their order within each group."""
        sel = np.asarray(groups_mask)
        if sel.dtype == bool:
            if sel.shape != (self.n_groups,):
                raise DataError(f"groups_mask must have shape ({self.n_groups},), got {sel.shape}")
            sel = np.flatnonzero(sel)
        sel = sel.astype(np.int64)
        if sel.size and (sel.min() < 0 or sel.max() >= self.n_groups):
            raise DataError(f"group positions must be in [0, {self.n_groups})")
        rows = rows_of_groups(self._offsets, sel)
        return RankingData(
            dense=self.dense[rows],
            group=self.group[rows],
            label=None if self.label is None else self.label[rows],
            categorical=self.categorical[rows],
            cardinalities=self.cardinalities,
            item=None if self.item is None else self.item[rows],
            history=None if self.history is None else self.history[sel],
            n_items=self.n_items,
        )


def rows_of_groups(offsets: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Row indices of the given group positions, concatenated (vectorized)."""
    starts = offsets[groups]
    sizes = offsets[groups + 1] - starts
    before = np.cumsum(sizes) - sizes
    return np.arange(int(sizes.sum()), dtype=np.int64) - np.repeat(before - starts, sizes)


@dataclass
class FeatureSchema:
    """What a fitted ranker expects from the data it scores."""

    n_dense: int
    cardinalities: tuple[int, ...]
    n_items: int
    uses_item: bool
    uses_history: bool

    def check(self, data: RankingData, name: str) -> None:
        """Raise DataError when `data` does not match what the ranker was trained on."""
        if data.n_dense != self.n_dense:
            raise DataError(
                f"{name}: data has {data.n_dense} dense column(s), the ranker was trained "
                f"on {self.n_dense}"
            )
        if len(data.cardinalities) != len(self.cardinalities) or any(
            c > t for c, t in zip(data.cardinalities, self.cardinalities, strict=True)
        ):
            raise DataError(
                f"{name}: categorical cardinalities {data.cardinalities} do not fit the "
                f"trained ones {self.cardinalities} (same columns, each at most as large)"
            )
        if self.uses_item and (data.item is None or data.n_items > self.n_items):
            raise DataError(
                f"{name}: needs `item` indices with n_items <= {self.n_items} "
                f"(got item={'None' if data.item is None else 'given'}, n_items={data.n_items})"
            )
        if self.uses_history and data.history is None:
            raise DataError(f"{name}: needs `history` (n_groups, L) item indices")


# ---------------------------------------------------------------------------- base


class Ranker(ABC):
    """fit / predict / save / load over `RankingData`; higher score = ranked higher."""

    name: ClassVar[str] = "ranker"
    config_cls: ClassVar[type[Any]]

    def __init__(self, config: Any | None = None, **params: Any) -> None:
        if config is not None and params:
            raise ConfigError("pass either a config object or keyword parameters, not both")
        self.config = config if config is not None else config_from_dict(self.config_cls, params)
        self.config.validate()
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
        from safetensors.numpy import save_file

        schema = self._check_fitted()
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {
            "stats.mean": np.ascontiguousarray(self.mean),
            "stats.std": np.ascontiguousarray(self.std),
        }
        tensors.update({f"model.{k}": np.ascontiguousarray(v) for k, v in self._state().items()})
        save_file(tensors, str(path / STATE))
        self._save_files(path)
        manifest = {
            "format": FORMAT,
            "ranker": self.name,
            "config": dataclasses.asdict(self.config),
            "package_version": __version__,
            "features": dataclasses.asdict(schema),
            "fit_seconds": self.fit_seconds,
            "best_epoch": self.best_epoch,
            "best_score": None if np.isnan(self.best_score) else self.best_score,
            "log": self.log,
        }
        (path / MANIFEST).write_text(json.dumps(manifest, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Load any saved ranker; dispatches on the manifest's ranker name."""
        from safetensors.numpy import load_file

        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.exists() or not (path / STATE).exists():
            raise ArtifactError(
                f"{path}: not a recsage ranker directory (missing {MANIFEST} or {STATE})"
            )
        try:
            manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{mpath}: unreadable manifest ({exc})") from exc
        if manifest.get("format") != FORMAT:
            raise ArtifactError(f"{mpath}: unsupported format {manifest.get('format')!r}")
        klass = ranker_class(manifest["ranker"])
        if cls is not Ranker and not issubclass(klass, cls):
            raise ArtifactError(f"{path} holds a '{manifest['ranker']}' ranker, not {cls.name}")
        model = klass(config_from_dict(klass.config_cls, manifest["config"]))
        feats = dict(manifest["features"])
        feats["cardinalities"] = tuple(feats["cardinalities"])
        model.schema = FeatureSchema(**feats)
        tensors = load_file(str(path / STATE))
        model.mean, model.std = tensors.pop("stats.mean"), tensors.pop("stats.std")
        model.fit_seconds = float(manifest.get("fit_seconds", 0.0))
        model.best_epoch = int(manifest.get("best_epoch", 0))
        best = manifest.get("best_score")
        model.best_score = float("nan") if best is None else float(best)
        model.log = list(manifest.get("log", []))
        state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        model._load_state(path, state)
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


# ---------------------------------------------------------------------------- torch nets


def _hidden_tuple(value: Any) -> tuple[int, ...]:
    if isinstance(value, str):
        return tuple(int(v) for v in value.replace(" ", "").split(",") if v)
    return tuple(int(v) for v in value)


@dataclass
class TorchRankerConfig:
    """Shared hyper-parameters of the torch rankers (saved with the model).

    `objective`: "pointwise" (BCE on labels in [0, 1]), "pairwise" (`pairwise_loss`:
    "bpr", "ranknet" or "lambda" = LambdaRank-weighted RankNet) or "listwise" (softmax
    cross-entropy, ListNet top-1). Mini-batches hold `batch_groups` whole groups. With
    validation data, training stops after `patience` epochs without a better NDCG@`eval_k`
    and keeps the best epoch's weights. `use_item` adds the candidate item id as a field
    when the data has one.
    """

    objective: str = "listwise"
    pairwise_loss: str = "bpr"
    embed_dim: int = 16
    use_item: bool = True
    lr: float = 5e-3
    weight_decay: float = 0.0
    batch_groups: int = 32
    max_epochs: int = 30
    patience: int = 3
    eval_k: int = 10
    seed: int = 0
    threads: int = 2

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        checks = [
            (
                self.objective in OBJECTIVES,
                f"objective must be one of {OBJECTIVES}, got {self.objective!r}",
            ),
            (
                self.pairwise_loss in PAIRWISE_LOSSES,
                f"pairwise_loss must be one of {PAIRWISE_LOSSES}, got {self.pairwise_loss!r}",
            ),
            (self.embed_dim >= 1 and self.batch_groups >= 1, "embed_dim, batch_groups >= 1"),
            (self.max_epochs >= 0 and self.patience >= 1, "max_epochs >= 0, patience >= 1"),
            (self.eval_k >= 1 and self.threads >= 1, "eval_k, threads >= 1"),
            (self.lr > 0 and self.weight_decay >= 0, "lr > 0, weight_decay >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"{type(self).__name__}: {message}")


@dataclass
class MLPRankerConfig(TorchRankerConfig):
    """Torch ranker with an MLP: `hidden` layer sizes (e.g. (64, 32) or "64,32"), `dropout`."""

    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.hidden = _hidden_tuple(self.hidden)

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        super().validate()
        if any(h < 1 for h in self.hidden) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{type(self).__name__}: hidden sizes >= 1, dropout in [0, 1)")


@dataclass
class DINConfig(MLPRankerConfig):
    """DIN: `attention_hidden` units of the attention MLP; `softmax_attention` normalizes
    the weights over the history (the paper keeps them unnormalized)."""

    attention_hidden: int = 32
    softmax_attention: bool = False

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        super().validate()
        if self.attention_hidden < 1:
            raise ConfigError("DINConfig: attention_hidden must be >= 1")


def _mlp(in_dim: int, hidden: tuple[int, ...], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
        d = h
    layers.append(nn.Linear(d, 1))
    return nn.Sequential(*layers)


def _offsets(sizes: list[int]) -> torch.Tensor:
    return torch.tensor(np.r_[0, np.cumsum(sizes)[:-1]] if sizes else [], dtype=torch.long)


class FieldEmbedding(nn.Module):
    """Per-field embeddings and linear weights for FM-style models.

    Dense field j contributes x_j * v_j (a learned vector scaled by the standardized value);
    categorical fields and the item id look up one shared, offset table.
    """

    offsets: torch.Tensor

    def __init__(self, n_dense: int, sizes: list[int], dim: int) -> None:
        super().__init__()
        self.n_dense = n_dense
        self.n_fields = n_dense + len(sizes)
        self.dense_v = nn.Parameter(torch.randn(n_dense, dim) * 0.1)
        self.dense_w = nn.Parameter(torch.zeros(n_dense))
        total = max(1, sum(sizes))
        self.emb = nn.Embedding(total, dim)
        nn.init.normal_(self.emb.weight, std=0.1)
        self.lin = nn.Embedding(total, 1)
        nn.init.zeros_(self.lin.weight)
        self.bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("offsets", _offsets(sizes))

    def forward(self, dense: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, n_fields, dim) field embeddings and the (b,) linear term."""
        linear = self.bias + dense @ self.dense_w
        parts = [dense.unsqueeze(2) * self.dense_v]
        if idx.shape[1]:
            idx = idx + self.offsets
            parts.append(self.emb(idx))
            linear = linear + self.lin(idx).sum((1, 2))
        return torch.cat(parts, 1), linear


def _fm_interaction(emb: torch.Tensor) -> torch.Tensor:
    """0.5 * ((Σ v)^2 - Σ v^2) per dimension: all pairwise products in O(k n)."""
    return 0.5 * (emb.sum(1).pow(2) - emb.pow(2).sum(1))


class FMNet(nn.Module):
    """Factorization machine: bias + linear + Σ_{i<j} <v_i, v_j>."""

    def __init__(self, n_dense: int, sizes: list[int], cfg: TorchRankerConfig) -> None:
        super().__init__()
        self.fields = FieldEmbedding(n_dense, sizes, cfg.embed_dim)

    def forward(
        self, dense: torch.Tensor, idx: torch.Tensor, hist: torch.Tensor | None
    ) -> torch.Tensor:
        emb, linear = self.fields(dense, idx)
        return linear + _fm_interaction(emb).sum(1)


class NFMNet(nn.Module):
    """Neural FM: linear + MLP(bi-interaction pooling of the field embeddings)."""

    def __init__(self, n_dense: int, sizes: list[int], cfg: MLPRankerConfig) -> None:
        super().__init__()
        self.fields = FieldEmbedding(n_dense, sizes, cfg.embed_dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.mlp = _mlp(cfg.embed_dim, cfg.hidden, cfg.dropout)

    def forward(
        self, dense: torch.Tensor, idx: torch.Tensor, hist: torch.Tensor | None
    ) -> torch.Tensor:
        emb, linear = self.fields(dense, idx)
        return linear + self.mlp(self.drop(_fm_interaction(emb))).squeeze(1)


class DeepFMNet(nn.Module):
    """DeepFM: FM + MLP over the concatenated field embeddings (shared)."""

    def __init__(self, n_dense: int, sizes: list[int], cfg: MLPRankerConfig) -> None:
        super().__init__()
        self.fields = FieldEmbedding(n_dense, sizes, cfg.embed_dim)
        self.mlp = _mlp(self.fields.n_fields * cfg.embed_dim, cfg.hidden, cfg.dropout)

    def forward(
        self, dense: torch.Tensor, idx: torch.Tensor, hist: torch.Tensor | None
    ) -> torch.Tensor:
        emb, linear = self.fields(dense, idx)
        fm = linear + _fm_interaction(emb).sum(1)
        return fm + self.mlp(emb.flatten(1)).squeeze(1)


class DINNet(nn.Module):
    """Deep Interest Network: attention of the candidate over the history embeddings.

    Attention MLP on [h, t, h - t, h * t] gives one weight per history item (padding
    masked); the weighted sum (the user's interest w.r.t. this candidate) is concatenated
    with the candidate embedding, the dense features and categorical embeddings -> MLP.
    """

    offsets: torch.Tensor

    def __init__(self, n_dense: int, cards: list[int], n_items: int, cfg: DINConfig) -> None:
        super().__init__()
        d = cfg.embed_dim
        self.n_items = n_items
        self.softmax = cfg.softmax_attention
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=n_items)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        with torch.no_grad():
            self.item_emb.weight[n_items].zero_()
        self.cat_emb = nn.Embedding(max(1, sum(cards)), d)
        nn.init.normal_(self.cat_emb.weight, std=0.1)
        self.register_buffer("offsets", _offsets(cards))
        self.attention = nn.Sequential(
            nn.Linear(4 * d, cfg.attention_hidden), nn.PReLU(), nn.Linear(cfg.attention_hidden, 1)
        )
        self.mlp = _mlp(2 * d + n_dense + len(cards) * d, cfg.hidden, cfg.dropout)

    def forward(
        self, dense: torch.Tensor, idx: torch.Tensor, hist: torch.Tensor | None
    ) -> torch.Tensor:
        assert hist is not None
        cats, item = idx[:, :-1], idx[:, -1]
        t = self.item_emb(item)  # (b, d)
        present = hist >= 0
        h = self.item_emb(torch.where(present, hist, torch.full_like(hist, self.n_items)))
        tt = t.unsqueeze(1).expand_as(h)
        a = self.attention(torch.cat([h, tt, h - tt, h * tt], -1)).squeeze(-1)  # (b, L)
        if self.softmax:
            a = torch.softmax(a.masked_fill(~present, float("-inf")), dim=1)
            a = torch.nan_to_num(a, nan=0.0)  # rows with an empty history
        else:
            a = a * present
        interest = (a.unsqueeze(-1) * h).sum(1)
        parts = [interest, t, dense]
        if cats.shape[1]:
            parts.append(self.cat_emb(cats + self.offsets).flatten(1))
        return self.mlp(torch.cat(parts, 1)).squeeze(1)


# ---------------------------------------------------------------------------- torch rankers


@dataclass
class _Inputs:
    dense: torch.Tensor
    idx: torch.Tensor  # categorical codes (+ item id as the last column when used)
    hist: torch.Tensor | None  # (n_groups, L)
    row_group: torch.Tensor
    label: torch.Tensor | None

    def rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        hist = None if self.hist is None else self.hist[self.row_group[rows]]
        return self.dense[rows], self.idx[rows], hist


class TorchRanker(Ranker):
    """Shared training loop: Adam, mini-batches of whole groups, early stopping on NDCG."""

    config_cls: ClassVar[type[Any]] = TorchRankerConfig

    def __init__(self, config: Any | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.net: nn.Module | None = None

    @abstractmethod
    def _build_net(self) -> nn.Module:
        """A fresh network for `self.schema` and `self.config`."""

    def _uses(self, train: RankingData) -> tuple[bool, bool]:
        return bool(self.config.use_item and train.item is not None), False

    def _check_labels(self, label: np.ndarray) -> None:
        if self.config.objective == "pointwise" and (label > 1).any():
            raise DataError(
                f"{self.name}: the pointwise objective needs labels in [0, 1]; graded labels "
                "go with objective='pairwise' or 'listwise'"
            )

    def _loss(self) -> LossFn:
        objective = self.config.objective
        if objective == "pointwise":
            return pointwise_bce
        if objective == "listwise":
            return listwise_softmax
        return {"bpr": pairwise_bpr, "ranknet": pairwise_ranknet, "lambda": lambda_loss}[
            self.config.pairwise_loss
        ]

    def _inputs(self, data: RankingData) -> _Inputs:
        schema = self._check_fitted()
        idx = data.categorical
        if schema.uses_item:
            assert data.item is not None
            idx = np.concatenate([idx, data.item[:, None]], axis=1)
        return _Inputs(
            dense=torch.from_numpy(self._standardize(data.dense)),
            idx=torch.from_numpy(np.ascontiguousarray(idx)),
            hist=None if not schema.uses_history else torch.from_numpy(data.history),
            row_group=torch.from_numpy(data.row_group()),
            label=None if data.label is None else torch.from_numpy(data.label),
        )

    def _fit(self, train: RankingData, valid: RankingData | None) -> None:
        old_threads = torch.get_num_threads()
        torch.set_num_threads(self.config.threads)
        try:
            self._train(train, valid)
        finally:
            torch.set_num_threads(old_threads)

    def _train(self, train: RankingData, valid: RankingData | None) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        net = self._build_net()
        self.net = net
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn = self._loss()
        inputs = self._inputs(train)
        assert inputs.label is not None
        offsets, sizes = train.group_bounds(), train.group_sizes()
        rng = np.random.default_rng(cfg.seed)
        best: dict[str, torch.Tensor] | None = None
        self.best_score, self.best_epoch, self.log = float("nan"), 0, []
        bad = 0
        for epoch in range(1, cfg.max_epochs + 1):
            t0 = time.perf_counter()
            net.train()
            order = rng.permutation(train.n_groups)
            total, steps = 0.0, 0
            for start in range(0, len(order), cfg.batch_groups):
                sel = order[start : start + cfg.batch_groups]
                rows = torch.from_numpy(rows_of_groups(offsets, sel))
                gid = torch.from_numpy(np.repeat(np.arange(len(sel)), sizes[sel]))
                scores = net(*inputs.rows(rows))
                loss = loss_fn(scores, inputs.label[rows], gid)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                steps += 1
            record = {"epoch": float(epoch), "loss": total / max(steps, 1)}
            if valid is not None:
                assert valid.label is not None
                ndcg = grouped_ndcg(self._predict(valid), valid.label, valid.group, cfg.eval_k)
                record[f"ndcg@{cfg.eval_k}"] = ndcg
                if best is None or ndcg > self.best_score + 1e-9:
                    self.best_score, self.best_epoch, bad = ndcg, epoch, 0
                    best = {k: v.detach().clone() for k, v in net.state_dict().items()}
                else:
                    bad += 1
            record["seconds"] = time.perf_counter() - t0
            self.log.append(record)
            if bad >= cfg.patience:
                break
        if best is not None:
            net.load_state_dict(best)
        else:
            self.best_epoch = len(self.log)
        net.eval()

    def _predict(self, data: RankingData) -> np.ndarray:
        assert self.net is not None
        net = self.net
        inputs = self._inputs(data)
        out = np.empty(data.n_rows, dtype=np.float32)
        was_training = net.training
        net.eval()
        old_threads = torch.get_num_threads()
        torch.set_num_threads(self.config.threads)
        try:
            with torch.no_grad():
                for start in range(0, data.n_rows, _PREDICT_ROWS):
                    rows = torch.arange(start, min(start + _PREDICT_ROWS, data.n_rows))
                    out[rows.numpy()] = net(*inputs.rows(rows)).numpy()
        finally:
            torch.set_num_threads(old_threads)
            net.train(was_training)
        return out

    def _state(self) -> dict[str, np.ndarray]:
        assert self.net is not None
        return {
            f"net.{k}": v.detach().cpu().numpy().copy() for k, v in self.net.state_dict().items()
        }

    def _load_state(self, path: Path, state: dict[str, np.ndarray]) -> None:
        net = self._build_net()
        weights = {k[len("net.") :]: torch.from_numpy(v) for k, v in state.items()}
        try:
            net.load_state_dict(weights)
        except RuntimeError as exc:
            message = f"{path}: weights do not match the {self.name} config ({exc})"
            raise ArtifactError(message) from exc
        net.eval()
        self.net = net

    def _field_sizes(self) -> list[int]:
        schema = self._check_fitted()
        sizes = list(schema.cardinalities)
        if schema.uses_item:
            sizes.append(schema.n_items)
        if schema.n_dense + len(sizes) == 0:
            raise DataError(f"{self.name}: the data has no feature columns")
        return sizes


class FMRanker(TorchRanker):
    """Factorization machine over dense fields, categorical fields and the item id."""

    name = "fm"
    config_cls = TorchRankerConfig

    def _build_net(self) -> nn.Module:
        return FMNet(self._check_fitted().n_dense, self._field_sizes(), self.config)


class NFMRanker(TorchRanker):
    """Neural factorization machine (bi-interaction pooling + MLP)."""

    name = "nfm"
    config_cls = MLPRankerConfig

    def _build_net(self) -> nn.Module:
        return NFMNet(self._check_fitted().n_dense, self._field_sizes(), self.config)


class DeepFMRanker(TorchRanker):
    """DeepFM: FM and a deep MLP sharing the field embeddings."""

    name = "deepfm"
    config_cls = MLPRankerConfig

    def _build_net(self) -> nn.Module:
        return DeepFMNet(self._check_fitted().n_dense, self._field_sizes(), self.config)


class DINRanker(TorchRanker):
    """Deep Interest Network: target attention of the candidate item over the history.

    Needs `item`, `history` and `n_items` in the data (train, valid and predict).
    """

    name = "din"
    config_cls = DINConfig

    def _uses(self, train: RankingData) -> tuple[bool, bool]:
        if train.item is None or train.history is None:
            raise DataError("din: the data needs `item` (n_rows,) and `history` (n_groups, L)")
        return True, True

    def _build_net(self) -> nn.Module:
        schema = self._check_fitted()
        return DINNet(schema.n_dense, list(schema.cardinalities), schema.n_items, self.config)


# ---------------------------------------------------------------------------- LightGBM

LGBM_OBJECTIVES = {
    "pointwise": "binary",
    "pairwise": "lambdarank",
    "listwise": "lambdarank",
    "lambdarank": "lambdarank",
    "xendcg": "rank_xendcg",
}


@dataclass
class LGBMConfig:
    """LightGBM ranker hyper-parameters (saved with the model).

    `objective`: "pointwise" -> binary log-loss (labels in [0, 1]); "listwise" /
    "lambdarank" -> LambdaMART (`lambdarank`, NDCG-weighted pair gradients, truncated at
    `truncation_level` as LightGBM does by default); "pairwise" -> `lambdarank` with the
    truncation level raised to the largest group, so every pair of rows with different
    labels contributes (LightGBM has no unweighted RankNet; LambdaMART's pair gradients
    are the closest); "xendcg" -> `rank_xendcg` (listwise softmax cross-entropy).
    Lambdarank objectives need integer grades (0..30). Categorical columns are LightGBM
    categorical features; `use_item` adds the item id as one more. `cat_smooth` and
    `cat_l2` default to 1, not LightGBM's 10: lambdarank hessians are small, and a
    smoothing of 10 swamps the per-category gradient sums (on the synthetic interaction
    data of the tests, lambdarank NDCG@10 drops from 0.92 to 0.67). With validation
    data, boosting stops after `early_stopping_rounds` rounds without a better grouped
    NDCG@`eval_k`. Training is deterministic for a given `seed` and `threads`.
    """

    objective: str = "listwise"
    n_estimators: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    feature_fraction: float = 1.0
    bagging_fraction: float = 1.0
    bagging_freq: int = 0
    lambda_l2: float = 0.0
    truncation_level: int = 30
    min_data_per_group: int = 100
    cat_smooth: float = 1.0
    cat_l2: float = 1.0
    max_cat_to_onehot: int = 4
    early_stopping_rounds: int = 30
    eval_k: int = 10
    use_item: bool = False
    seed: int = 0
    threads: int = 2

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        if self.objective not in LGBM_OBJECTIVES:
            raise ConfigError(
                f"LGBMConfig: objective must be one of {tuple(LGBM_OBJECTIVES)}, "
                f"got {self.objective!r}"
            )
        if min(self.n_estimators, self.num_leaves - 1, self.threads, self.eval_k) < 1:
            raise ConfigError("LGBMConfig: n_estimators, threads, eval_k >= 1, num_leaves >= 2")
        if not (0 < self.feature_fraction <= 1 and 0 < self.bagging_fraction <= 1):
            raise ConfigError("LGBMConfig: feature_fraction and bagging_fraction in (0, 1]")
        if self.learning_rate <= 0 or self.early_stopping_rounds < 1:
            raise ConfigError("LGBMConfig: learning_rate > 0, early_stopping_rounds >= 1")


class LGBMRanker(Ranker):
    """Gradient-boosted trees (LightGBM): binary, LambdaMART or XE-NDCG objectives."""

    name = "lgbm"
    config_cls = LGBMConfig

    def __init__(self, config: Any | None = None, **params: Any) -> None:
        super().__init__(config, **params)
        self.model_text = ""
        self._booster: Any = None

    def _uses(self, train: RankingData) -> tuple[bool, bool]:
        return bool(self.config.use_item and train.item is not None), False

    def _check_labels(self, label: np.ndarray) -> None:
        objective = LGBM_OBJECTIVES[self.config.objective]
        if objective == "binary" and (label > 1).any():
            raise DataError("lgbm: the pointwise (binary) objective needs labels in [0, 1]")
        if objective == "lambdarank" and ((label != np.round(label)).any() or label.max() > 30):
            raise DataError("lgbm: lambdarank objectives need integer relevance grades 0..30")

    def _matrix(self, data: RankingData) -> np.ndarray:
        schema = self._check_fitted()
        parts = [data.dense.astype(np.float64), data.categorical.astype(np.float64)]
        if schema.uses_item:
            assert data.item is not None
            parts.append(data.item[:, None].astype(np.float64))
        return np.concatenate(parts, axis=1)

    def _params(self, max_group: int) -> dict[str, Any]:
        cfg = self.config
        objective = LGBM_OBJECTIVES[cfg.objective]
        params: dict[str, Any] = {
            "objective": objective,
            "learning_rate": cfg.learning_rate,
            "num_leaves": cfg.num_leaves,
            "min_data_in_leaf": cfg.min_data_in_leaf,
            "feature_fraction": cfg.feature_fraction,
            "bagging_fraction": cfg.bagging_fraction,
            "bagging_freq": cfg.bagging_freq,
            "lambda_l2": cfg.lambda_l2,
            "min_data_per_group": cfg.min_data_per_group,
            "cat_smooth": cfg.cat_smooth,
            "cat_l2": cfg.cat_l2,
            "max_cat_to_onehot": cfg.max_cat_to_onehot,
            "metric": "None",
            "seed": cfg.seed,
            "num_threads": cfg.threads,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }
        if objective == "lambdarank":
            level = max_group if cfg.objective == "pairwise" else cfg.truncation_level
            params["lambdarank_truncation_level"] = max(1, level)
        return params

    def _fit(self, train: RankingData, valid: RankingData | None) -> None:
        try:
            import lightgbm as lgb
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigError("lgbm ranker needs the 'lightgbm' package installed") from exc
        cfg = self.config
        schema = self._check_fitted()
        n_cat = len(schema.cardinalities) + int(schema.uses_item)
        names = [f"dense_{j}" for j in range(schema.n_dense)]
        names += [f"cat_{j}" for j in range(len(schema.cardinalities))]
        names += ["item"] if schema.uses_item else []
        cat_cols = list(range(schema.n_dense, schema.n_dense + n_cat))
        ranking = LGBM_OBJECTIVES[cfg.objective] != "binary"

        def dataset(data: RankingData, reference: Any = None) -> Any:
            return lgb.Dataset(
                self._matrix(data),
                label=data.label,
                group=data.group_sizes() if ranking else None,
                feature_name=names,
                categorical_feature=cat_cols,
                reference=reference,
                free_raw_data=True,
            )

        train_set = dataset(train)
        kwargs: dict[str, Any] = {}
        record: dict[str, Any] = {}
        if valid is not None:
            label, group, k = valid.label, valid.group, cfg.eval_k
            assert label is not None

            def feval(preds: np.ndarray, _: Any) -> tuple[str, float, bool]:
                return f"ndcg@{k}", grouped_ndcg(preds, label, group, k), True

            kwargs = {
                "valid_sets": [dataset(valid, train_set)],
                "valid_names": ["valid"],
                "feval": feval,
                "callbacks": [
                    lgb.early_stopping(cfg.early_stopping_rounds, verbose=False),
                    lgb.record_evaluation(record),
                ],
            }
        booster = lgb.train(
            self._params(int(train.group_sizes().max())),
            train_set,
            num_boost_round=cfg.n_estimators,
            **kwargs,
        )
        best = int(booster.best_iteration or 0)
        if valid is not None:
            scores = record["valid"][f"ndcg@{cfg.eval_k}"]
            self.log = [{"epoch": float(i + 1), "ndcg": float(s)} for i, s in enumerate(scores)]
            best = best or len(scores)
            self.best_score = float(scores[best - 1])
        self.best_epoch = best or booster.current_iteration()
        self.model_text = booster.model_to_string(num_iteration=self.best_epoch)
        self._booster = lgb.Booster(model_str=self.model_text)

    def _predict(self, data: RankingData) -> np.ndarray:
        # one request's few hundred rows: thread start-up costs more than it saves
        threads = 1 if data.n_rows < 20_000 else self.config.threads
        return np.asarray(
            self._booster.predict(self._matrix(data), raw_score=True, num_threads=threads),
            dtype=np.float32,
        )

    def _state(self) -> dict[str, np.ndarray]:
        return {}

    def _save_files(self, path: Path) -> None:
        (path / LGBM_MODEL).write_text(self.model_text)

    def _load_state(self, path: Path, state: dict[str, np.ndarray]) -> None:
        import lightgbm as lgb

        mpath = path / LGBM_MODEL
        if not mpath.exists():
            raise ArtifactError(f"{path}: missing {LGBM_MODEL} (the LightGBM model text)")
        self.model_text = mpath.read_text()
        try:
            self._booster = lgb.Booster(model_str=self.model_text)
        except lgb.basic.LightGBMError as exc:
            raise ArtifactError(f"{mpath}: unreadable LightGBM model ({exc})") from exc


# ---------------------------------------------------------------------------- registry

RANKERS: dict[str, type[Ranker]] = {
    cls.name: cls for cls in (FMRanker, NFMRanker, DeepFMRanker, DINRanker, LGBMRanker)
}


def ranker_class(name: str) -> type[Ranker]:
    """The ranker class registered under `name`, or a clear error listing the known ones."""
    try:
        return RANKERS[name]
    except KeyError:
        raise ConfigError(f"unknown ranker '{name}'; known: {', '.join(sorted(RANKERS))}") from None


def create_ranker(name: str, **params: Any) -> Ranker:
    """Instantiate a registered ranker with keyword hyper-parameters."""
    return ranker_class(name)(**params)
