"""Two-tower config and networks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from recsage.errors import ConfigError, RecsageError

LOSSES = ("softmax", "bpr")


POOLINGS = ("attention", "mean")


SIMILARITIES = ("cosine", "dot")


TEXT_MODES = ("auto", "profile", "item", "blend")


@dataclass
class TwoTowerConfig:
    """Two-tower hyper-parameters (saved with the model).

    Towers: `use_ids`, `use_text`, `use_categories`, `use_user_features` switch inputs on;
    `text_hidden` > 0 makes the text projection a one-hidden-layer MLP; `id_dropout` is
    the per-batch probability that an item's ID embedding is dropped in training (trains
    the text-only path cold items rely on); `fusion` ("concat" | "gated") merges extra
    item vectors (passed to `fit`, or read from the `extra_vectors` file with
    `recsage.encoders.fusion.load_item_vectors`) with text. `views` says how the ID view
    and the semantic (text) view of an item meet: "add" (sum) or "gate" (a learned
    per-dimension sigmoid gate over both, g·id + (1−g)·text; an item without an ID
    embedding — cold, or dropped in training — gets its text view alone). `pooling` "attention" or
    "mean" over the last `max_history` items. Loss: "softmax" (in-batch, `temperature`,
    `logq` correction) or "bpr" (`negatives` uniform negatives). `similarity`: "cosine"
    (normalized, / temperature) or "dot" (raw inner product / temperature). An epoch is
    `samples_per_epoch` sampled positions (0: as many as there are interactions), position
    weight ∝ user_length^-`user_balance` (0: every interaction alike, 1: every user alike);
    `short_history_rate` truncates that fraction of histories to 0-2 items (cold users).
    `profile_l2` is the ridge strength of the profile-text -> user map; `text_blend` the
    weight of the pseudo-item path in `score_text` "blend" mode. `cache_dir` / `text_model`
    ("" = defaults) configure the text encoder used when vectors are not passed in.
    """

    dim: int = 64
    use_ids: bool = True
    use_text: bool = True
    use_categories: bool = True
    use_user_features: bool = True
    text_hidden: int = 0
    id_dropout: float = 0.25
    fusion: str = "concat"
    views: str = "add"
    extra_vectors: str = ""
    max_categories: int = 256
    pooling: str = "attention"
    max_history: int = 50
    position_emb: bool = True
    mlp_hidden: int = 128
    dropout: float = 0.1
    loss: str = "softmax"
    temperature: float = 0.05
    logq: bool = True
    negatives: int = 4
    similarity: str = "cosine"
    lr: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 512
    max_epochs: int = 30
    samples_per_epoch: int = 0
    user_balance: float = 0.5
    short_history_rate: float = 0.05
    patience: int = 3
    max_minutes: float = 0.0
    profile_map: bool = True
    profile_l2: float = 10.0
    text_blend: float = 0.5
    seed: int = 0
    threads: int = 2
    progress: bool = True
    cache_dir: str = ""
    text_model: str = ""

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        checks: list[tuple[bool, str]] = [
            (self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}"),
            (self.pooling in POOLINGS, f"pooling must be one of {POOLINGS}"),
            (self.similarity in SIMILARITIES, f"similarity must be one of {SIMILARITIES}"),
            (self.fusion in ("concat", "gated"), "fusion must be 'concat' or 'gated'"),
            (self.views in ("add", "gate"), f"views must be 'add' or 'gate', not {self.views!r}"),
            (self.use_ids or self.use_text or self.use_categories, "the item tower needs input"),
            (self.dim >= 1 and self.max_history >= 1 and self.mlp_hidden >= 1, "dims"),
            (0.0 <= self.id_dropout < 1.0 and 0.0 <= self.dropout < 1.0, "dropouts in [0, 1)"),
            (self.temperature > 0, "temperature must be > 0"),
            (self.batch_size >= 2 and self.max_epochs >= 0, "batch_size >= 2, max_epochs >= 0"),
            (self.negatives >= 1 and self.patience >= 1 and self.threads >= 1, "counts >= 1"),
            (0.0 <= self.user_balance <= 1.0, "user_balance must be in [0, 1]"),
            (0.0 <= self.short_history_rate <= 1.0, "short_history_rate must be in [0, 1]"),
            (self.samples_per_epoch >= 0 and self.text_hidden >= 0, "sizes must be >= 0"),
            (self.profile_l2 >= 0 and self.text_blend >= 0, "profile_l2/text_blend >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"two_tower: {message}")


class ItemTower(nn.Module):
    """ID embedding + text projection (or fusion with extra vectors) + category projection."""

    def __init__(
        self, cfg: TwoTowerConfig, id_rows: int, text_dim: int, n_cats: int, extra_dim: int
    ) -> None:
        super().__init__()
        d = cfg.dim
        self.id_emb = nn.Embedding(id_rows, d) if cfg.use_ids and id_rows > 0 else None
        if self.id_emb is not None:
            nn.init.normal_(self.id_emb.weight, std=0.1)
        self.text_proj: nn.Module | None = None
        self.fusion: nn.Module | None = None
        if cfg.use_text and text_dim > 0:
            if extra_dim > 0:
                from recsage.encoders.fusion import make_fusion

                self.fusion = make_fusion(cfg.fusion, text_dim, extra_dim, d)
            elif cfg.text_hidden > 0:
                self.text_proj = nn.Sequential(
                    nn.Linear(text_dim, cfg.text_hidden), nn.GELU(), nn.Linear(cfg.text_hidden, d)
                )
            else:
                self.text_proj = nn.Linear(text_dim, d)
        self.cat_proj = nn.Linear(n_cats, d, bias=False) if cfg.use_categories and n_cats else None
        # two views (ID, text) fused by a per-dimension gate from both (starts at 0.5 / 0.5)
        two_views = self.id_emb is not None and (self.text_proj or self.fusion) is not None
        self.gate = nn.Linear(2 * d, d) if cfg.views == "gate" and two_views else None
        if self.gate is not None:
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)

    def forward(
        self,
        ids: torch.Tensor,
        id_on: torch.Tensor,
        text: torch.Tensor | None,
        cats: torch.Tensor | None,
        extra: torch.Tensor | None,
        present: torch.Tensor | None,
    ) -> torch.Tensor:
        """(n, dim) item vectors; `id_on` (n,) bool switches each item's ID embedding."""
        out: torch.Tensor | None = None
        if self.id_emb is not None:
            safe = torch.where(id_on, ids, torch.zeros_like(ids))
            out = self.id_emb(safe) * id_on.unsqueeze(-1).to(self.id_emb.weight.dtype)
        if text is not None:
            if self.fusion is not None:
                assert extra is not None and present is not None
                t = self.fusion(text, extra, present)
            elif self.text_proj is not None:
                t = self.text_proj(text)
            else:
                t = None
            if t is not None and out is not None and self.gate is not None:
                g = self.gate_values(out, t) * id_on.unsqueeze(-1).to(t.dtype)
                out = g * out + (1.0 - g) * t
            elif t is not None:
                out = t if out is None else out + t
        if self.cat_proj is not None and cats is not None:
            c = self.cat_proj(cats)
            out = c if out is None else out + c
        if out is None:
            raise RecsageError(
                "two_tower: the item tower got no input (no ids, text or categories)"
            )
        return out

    def gate_values(self, id_view: torch.Tensor, text_view: torch.Tensor) -> torch.Tensor:
        """(n, dim) weight of the ID view in (0, 1) per item and dimension (views="gate")."""
        assert self.gate is not None
        return torch.sigmoid(self.gate(torch.cat([id_view, text_view], dim=-1)))


class UserTower(nn.Module):
    """Pool history item vectors (+ recency embeddings), add user features, residual MLP."""

    def __init__(self, cfg: TwoTowerConfig, n_feature_values: int) -> None:
        super().__init__()
        d = cfg.dim
        self.dim = d
        self.attention = cfg.pooling == "attention"
        self.pos_emb = nn.Embedding(cfg.max_history, d) if cfg.position_emb else None
        if self.pos_emb is not None:
            nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.query = nn.Parameter(torch.zeros(d))
        self.q_proj = nn.Linear(d, d)
        self.empty = nn.Parameter(torch.zeros(d))
        self.feat_emb = (
            nn.Embedding(n_feature_values + 1, d, padding_idx=0) if n_feature_values > 0 else None
        )
        if self.feat_emb is not None:
            nn.init.normal_(self.feat_emb.weight, std=0.02)
            with torch.no_grad():
                self.feat_emb.weight[0].zero_()
        self.drop = nn.Dropout(cfg.dropout)
        self.mlp = nn.Sequential(
            nn.Linear(2 * d, cfg.mlp_hidden), nn.GELU(), nn.Linear(cfg.mlp_hidden, d)
        )

    def forward(
        self, hist: torch.Tensor, mask: torch.Tensor, feats: torch.Tensor | None
    ) -> torch.Tensor:
        """`hist` (B, L, d) item vectors, column j = j-th newest; `mask` (B, L) valid."""
        _b, length, _ = hist.shape
        x = hist
        if self.pos_emb is not None and length:
            x = x + self.pos_emb.weight[:length].unsqueeze(0)
        m = mask.to(x.dtype).unsqueeze(-1)
        mean = (x * m).sum(1) / m.sum(1).clamp_min(1.0)
        if self.attention and length:
            q = self.query + self.q_proj(mean)
            s = torch.einsum("bld,bd->bl", x, q) / math.sqrt(self.dim)
            w = torch.softmax(s.masked_fill(~mask, -1e4), dim=-1) * mask.to(x.dtype)
            pooled = torch.einsum("bl,bld->bd", w, x)
        else:
            pooled = mean
        empty = (~mask.any(dim=1)).to(x.dtype).unsqueeze(-1)
        pooled = pooled + empty * self.empty
        f = (
            self.feat_emb(feats).sum(1)
            if self.feat_emb is not None and feats is not None
            else torch.zeros_like(pooled)
        )
        # dropout on the (B, 2d) MLP input only: (B, L, d) masks cost more than the model
        return pooled + f + self.mlp(self.drop(torch.cat([pooled, f], dim=-1)))


class TwoTowerNet(nn.Module):
    """The two towers; features live outside (passed per call) so the catalogue can grow."""

    def __init__(
        self,
        cfg: TwoTowerConfig,
        *,
        id_rows: int,
        text_dim: int,
        n_cats: int,
        extra_dim: int,
        n_feature_values: int,
    ) -> None:
        super().__init__()
        self.items = ItemTower(cfg, id_rows, text_dim, n_cats, extra_dim)
        self.users = UserTower(cfg, n_feature_values)
