"""Torch networks for the FM family and DIN, and their configs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from recsage.errors import ConfigError
from recsage.ranking.learners.base import OBJECTIVES, PAIRWISE_LOSSES


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
