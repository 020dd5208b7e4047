"""Torch rankers (FM, NFM, DeepFM, DIN) trained with grouped losses."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from recsage.errors import ArtifactError, DataError
from recsage.ranking.learners.base import _PREDICT_ROWS, Ranker
from recsage.ranking.learners.data import RankingData, rows_of_groups
from recsage.ranking.learners.nets import (
    DeepFMNet,
    DINConfig,
    DINNet,
    FMNet,
    MLPRankerConfig,
    NFMNet,
    TorchRankerConfig,
)
from recsage.ranking.losses import (
    LossFn,
    grouped_ndcg,
    lambda_loss,
    listwise_softmax,
    pairwise_bpr,
    pairwise_ranknet,
    pointwise_bce,
)
from recsage.trainer import EpochContext, Trainer, TrainerConfig, torch_threads


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
        with torch_threads(self.config.threads):
            self._train(train, valid)

    def _train(self, train: RankingData, valid: RankingData | None) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        net = self._build_net()
        self.net = net
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn = self._loss()
        inputs = self._inputs(train)
        labels = inputs.label
        assert labels is not None
        offsets, sizes = train.group_bounds(), train.group_sizes()
        rng = np.random.default_rng(cfg.seed)  # one stream over all epochs

        def run_epoch(ctx: EpochContext) -> dict[str, float]:
            net.train()
            order = rng.permutation(train.n_groups)
            total, steps = 0.0, 0
            for start in range(0, len(order), cfg.batch_groups):
                sel = order[start : start + cfg.batch_groups]
                rows = torch.from_numpy(rows_of_groups(offsets, sel))
                gid = torch.from_numpy(np.repeat(np.arange(len(sel)), sizes[sel]))
                scores = net(*inputs.rows(rows))
                loss = loss_fn(scores, labels[rows], gid)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                steps += 1
            return {"loss": total / max(steps, 1)}

        def validate() -> float:
            assert valid is not None and valid.label is not None
            return grouped_ndcg(self._predict(valid), valid.label, valid.group, cfg.eval_k)

        trainer = Trainer(
            TrainerConfig(
                name=self.name, max_epochs=cfg.max_epochs, patience=cfg.patience,
                min_delta=1e-9, metric=f"ndcg@{cfg.eval_k}",
            )
        )  # fmt: skip
        result = trainer.fit(run_epoch, module=net, validate=None if valid is None else validate)
        self.log = result.history
        self.best_epoch = result.best_epoch
        self.best_score = result.best_score
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
