"""Two-tower model (ID + text + categories) trained with in-batch softmax or BPR."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from recsage.data.schema import Dataset
from recsage.data.splits import Split
from recsage.errors import ConfigError, RecsageError
from recsage.models.base import Recommender
from recsage.models.registry import register
from recsage.models.two_tower.cold import ColdStartMixin
from recsage.models.two_tower.features import (
    _flatten,
    _histories_to_flat,
    _history_block,
    _ItemFeatures,
    category_matrix,
    default_cache_dir,
    user_feature_matrix,
)
from recsage.models.two_tower.net import (
    ItemTower,
    TwoTowerConfig,
    TwoTowerNet,
    UserTower,
)
from recsage.models.validation import restore_training_record, training_record, validation_ndcg
from recsage.trainer import Checkpoint, EpochContext, Trainer, TrainerConfig, torch_threads


@register
class TwoTower(ColdStartMixin, Recommender):
    """Two-tower retrieval (ID + text + categories items; history + demographics users).

    `fit(dataset, valid=split, item_text_vectors=..., user_text_vectors=...,
    extra_item_vectors=..., extra_item_mask=...)`; vectors not passed are computed with
    `recsage.encoders.text` (items always when `use_text`; user profiles when the dataset
    has a user table and `profile_map` is on). Cold items: `item_vectors_for_text`,
    `add_items`. Cold users: `score(users, history=csr)` or `score_sequences`, and
    `score_text`.
    """

    name = "two_tower"
    config_cls = TwoTowerConfig
    fit_options = frozenset(
        {
            "valid",
            "item_text_vectors",
            "user_text_vectors",
            "extra_item_vectors",
            "extra_item_mask",
            "checkpoint_dir",
        }
    )

    def __init__(self, config: TwoTowerConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)  # builds and validates the config
        self.net: TwoTowerNet | None = None
        self.features: _ItemFeatures | None = None
        self.category_names: list[str] = []
        self.user_features: np.ndarray | None = None
        self.user_feature_names: list[str] = []
        self.sequences: list[np.ndarray] = []
        self.profile_weights: np.ndarray | None = None
        self.encoder_fingerprint = ""
        self.history: list[dict[str, float]] = []
        self.best_epoch = 0
        self.best_ndcg = float("nan")
        self.id_rows = 0
        self._item_cache: np.ndarray | None = None
        self._encoder: Any = None
        self._fit_args: dict[str, Any] = {}

    # ---- training -------------------------------------------------------------------
    def fit(
        self,
        data: Dataset,
        *,
        valid: Split | None = None,
        item_text_vectors: np.ndarray | None = None,
        user_text_vectors: np.ndarray | None = None,
        extra_item_vectors: np.ndarray | None = None,
        extra_item_mask: np.ndarray | None = None,
        checkpoint_dir: str | Path | None = None,
    ) -> TwoTower:
        """Train on `data`'s sequences, early-stopping on `valid` (NDCG@10) when given.

        `item_text_vectors` (n_items, d_text): frozen item text vectors (row = dense item
        index); `user_text_vectors` (n_users, d_text): profile-text query vectors for the
        profile map (rows of all-zero = no profile); `extra_item_vectors` (n_items, d_x)
        with `extra_item_mask` (n_items,) bool: an extra modality fused with text. With
        `checkpoint_dir`, the state is written after every epoch and training resumes from
        it when present.
        """
        self._fit_args = {
            "valid": valid,
            "item_text": item_text_vectors,
            "user_text": user_text_vectors,
            "extra": extra_item_vectors,
            "extra_mask": extra_item_mask,
            "checkpoint_dir": checkpoint_dir,
        }
        try:
            super().fit(data)
        finally:
            self._fit_args = {}
        return self

    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        # multi-threaded scatter-adds (gather backward) are otherwise order-dependent
        with torch_threads(self.config.threads, deterministic=True):
            self._setup_features(data, matrix)
            self._train(data)
            self._fit_profile_map(data)

    def _setup_features(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        cfg: TwoTowerConfig = self.config
        args = self._fit_args
        n = data.n_items
        text = None
        if cfg.use_text:
            text = args["item_text"]
            if text is None:
                text = self._encode_catalogue(data)
            text = np.asarray(text, dtype=np.float32)
            if text.ndim != 2 or text.shape[0] != n:
                raise ConfigError(
                    f"two_tower: item_text_vectors must have shape ({n}, d), got {text.shape}"
                )
        cats, self.category_names = (
            category_matrix(data.item_table, max_categories=cfg.max_categories)
            if cfg.use_categories
            else (None, [])
        )
        extra, present = args["extra"], args["extra_mask"]
        if extra is None and cfg.extra_vectors:
            from recsage.encoders.fusion import load_item_vectors

            extra, present = load_item_vectors(cfg.extra_vectors, data.items)
        if extra is not None:
            if not cfg.use_text:
                raise ConfigError("two_tower: extra item vectors are fused with text; use_text")
            extra = np.asarray(extra, dtype=np.float32)
            if extra.ndim != 2 or extra.shape[0] != n:
                raise ConfigError(f"two_tower: extra_item_vectors must have shape ({n}, d)")
            present = (
                np.isfinite(extra).all(axis=1)
                if present is None
                else np.asarray(present, dtype=bool)
            )
            extra = np.where(present[:, None], np.nan_to_num(extra), 0.0).astype(np.float32)
        seen = np.asarray(matrix.sum(axis=0)).ravel() > 0
        self.features = _ItemFeatures(text, cats, extra, present, seen)
        self.id_rows = n if cfg.use_ids else 0
        if cfg.use_user_features:
            self.user_features, self.user_feature_names = user_feature_matrix(data.user_table)
        else:
            self.user_features, self.user_feature_names = None, []

    def _build_net(self) -> TwoTowerNet:
        f = self.features
        assert f is not None
        return TwoTowerNet(
            self.config,
            id_rows=self.id_rows,
            text_dim=0 if f.text is None else int(f.text.shape[1]),
            n_cats=0 if f.cats is None else int(f.cats.shape[1]),
            extra_dim=0 if f.extra is None else int(f.extra.shape[1]),
            n_feature_values=len(self.user_feature_names),
        )

    def _train(self, data: Dataset) -> None:
        cfg: TwoTowerConfig = self.config
        self.sequences = [np.asarray(s, np.int64) for s in data.sequences()]
        flat, offsets = _flatten(self.sequences)
        if len(flat) == 0:
            raise RecsageError("two_tower: no training interactions")
        lengths = np.diff(offsets)
        user_of = np.repeat(np.arange(len(lengths)), lengths)
        weights = lengths[user_of].astype(np.float64) ** (-cfg.user_balance)
        probs = weights / weights.sum()
        q = np.bincount(flat, weights=probs, minlength=data.n_items)
        log_q = torch.as_tensor(np.log(np.maximum(q, 1e-12)), dtype=torch.float32)
        seen_items = np.flatnonzero(q > 0)

        torch.manual_seed(cfg.seed)
        net = self._build_net()
        self.net = net
        self._item_cache = None
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        n_samples = cfg.samples_per_epoch or len(flat)
        steps = max(1, n_samples // cfg.batch_size)
        valid: Split | None = self._fit_args.get("valid")

        def run_epoch(ctx: EpochContext) -> dict[str, float]:
            rng = ctx.rng
            assert rng is not None
            positions = rng.choice(len(flat), size=steps * cfg.batch_size, p=probs)
            net.train()
            total = 0.0
            for s in range(steps):
                g = positions[s * cfg.batch_size : (s + 1) * cfg.batch_size]
                loss = self._step(net, flat, offsets, user_of, g, log_q, seen_items, rng)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                ctx.advance(loss=total / (s + 1))
            return {"loss": total / steps}

        trainer = Trainer(
            TrainerConfig(
                name="two_tower", max_epochs=cfg.max_epochs, patience=cfg.patience,
                max_minutes=cfg.max_minutes, seed=cfg.seed, metric="ndcg@10",
                progress=cfg.progress,
            )
        )  # fmt: skip
        folder = self._fit_args.get("checkpoint_dir")
        ckpt = None
        if folder is not None:
            ckpt = Checkpoint(
                Path(folder), dataclasses.asdict(cfg), data.fingerprint(),
                ignore={"max_epochs", "patience", "progress", "threads", "max_minutes"},
            )  # fmt: skip
        result = trainer.fit(
            run_epoch,
            module=net,
            optimizer=opt,
            validate=None if valid is None else lambda: self._validate(valid),
            steps=steps,
            checkpoint=ckpt,
        )
        self.history = result.history
        self.best_epoch = result.best_epoch
        self.best_ndcg = result.best_score
        net.eval()
        self._item_cache = None

    def _step(
        self,
        net: TwoTowerNet,
        flat: np.ndarray,
        offsets: np.ndarray,
        user_of: np.ndarray,
        g: np.ndarray,
        log_q: torch.Tensor,
        seen_items: np.ndarray,
        rng: np.random.Generator,
    ) -> torch.Tensor:
        """Loss of one batch of sampled positions `g` (indices into `flat`)."""
        cfg: TwoTowerConfig = self.config
        users = user_of[g]
        starts = offsets[users].copy()
        short = rng.random(len(g)) < cfg.short_history_rate
        if short.any():
            keep = rng.integers(0, 3, size=int(short.sum()))
            starts[short] = np.maximum(starts[short], g[short] - keep)
        hist, mask = _history_block(flat, starts, g, cfg.max_history)
        targets = flat[g]
        negs = (
            seen_items[rng.integers(0, len(seen_items), size=(len(g), cfg.negatives))]
            if cfg.loss == "bpr"
            else np.zeros((len(g), 0), np.int64)
        )
        wanted = np.concatenate([hist[mask], targets, negs.ravel()])
        uniq, inverse = np.unique(wanted, return_inverse=True)
        id_on = self._id_on(uniq)
        if cfg.id_dropout > 0:
            id_on &= rng.random(len(uniq)) >= cfg.id_dropout
        table = self._tower(net, uniq, id_on)
        n_hist = int(mask.sum())
        slots = np.zeros(hist.shape, np.int64)  # 0 = padding row, k + 1 = table row k
        slots[mask] = inverse[:n_hist] + 1
        padded = torch.cat([torch.zeros(1, table.shape[1]), table])
        hist_vecs = padded[torch.as_tensor(slots)]
        feats = self._feature_rows(users)
        u = net.users(hist_vecs, torch.as_tensor(mask), feats)
        t_pos = torch.as_tensor(inverse[n_hist : n_hist + len(g)])
        v = table[t_pos]
        if cfg.similarity == "cosine":
            u, v = F.normalize(u, dim=-1), F.normalize(v, dim=-1)
        tgt = torch.as_tensor(targets)
        if cfg.loss == "softmax":
            logits = (u @ v.T) / cfg.temperature
            if cfg.logq:
                logits = logits - log_q[tgt].unsqueeze(0)
            same = tgt.unsqueeze(0) == tgt.unsqueeze(1)
            same.fill_diagonal_(False)
            logits = logits.masked_fill(same, float("-inf"))
            return F.cross_entropy(logits, torch.arange(len(g)))
        n_idx = torch.as_tensor(inverse[n_hist + len(g) :]).view(len(g), cfg.negatives)
        vn = table[n_idx]
        if cfg.similarity == "cosine":
            vn = F.normalize(vn, dim=-1)
        pos = (u * v).sum(-1, keepdim=True) / cfg.temperature
        neg = torch.einsum("bd,bnd->bn", u, vn) / cfg.temperature
        valid = torch.as_tensor(negs != targets[:, None]).to(pos.dtype)
        per = -F.logsigmoid(pos - neg) * valid
        return per.sum() / valid.sum().clamp_min(1.0)

    def _validate(self, valid: Split) -> float:
        """Validation NDCG@10 of the current weights (item vectors recomputed)."""
        assert self.net is not None
        self.net.eval()
        self._item_cache = None

        def scorer(users: np.ndarray, history: sp.csr_matrix | None = None) -> np.ndarray:
            return self.score(users, history=history)

        ndcg = validation_ndcg(scorer, valid, k=10)
        self._item_cache = None
        return ndcg

    # ---- item side ------------------------------------------------------------------
    def _id_on(self, idx: np.ndarray) -> np.ndarray:
        assert self.features is not None
        if not self.id_rows:
            return np.zeros(len(idx), bool)
        return self.features.seen[idx] & (idx < self.id_rows)

    def _tower(self, net: TwoTowerNet, idx: np.ndarray, id_on: np.ndarray) -> torch.Tensor:
        assert self.features is not None
        rows = self.features.rows(idx)
        return net.items(
            torch.as_tensor(idx),
            torch.as_tensor(id_on),
            rows["text"],
            rows["cats"],
            rows["extra"],
            None if rows["present"] is None else rows["present"].bool(),
        )

    def _feature_rows(self, users: np.ndarray | None) -> torch.Tensor | None:
        if self.user_features is None or users is None:
            return None
        users = np.asarray(users, np.int64)
        ok = (users >= 0) & (users < len(self.user_features))
        rows = np.zeros((len(users), self.user_features.shape[1]), np.int64)
        rows[ok] = self.user_features[users[ok]]
        return torch.as_tensor(rows)

    def _net(self) -> TwoTowerNet:
        if self.net is None or self.features is None:
            raise RecsageError("model 'two_tower' is not fitted; call fit() or load() first")
        return self.net

    @torch.inference_mode()
    def item_vectors(self, *, batch_size: int = 8192) -> np.ndarray:
        """(n_items, dim) item-tower outputs (ID embedding only for items seen in training)."""
        if self._item_cache is None:
            net = self._net()
            net.eval()
            out = np.zeros((self.n_items, self.config.dim), np.float32)
            for lo in range(0, self.n_items, batch_size):
                idx = np.arange(lo, min(self.n_items, lo + batch_size))
                out[idx] = self._tower(net, idx, self._id_on(idx)).numpy()
            self._item_cache = out
        return self._item_cache

    # ---- user side and scoring --------------------------------------------------------
    @torch.inference_mode()
    def user_vectors(
        self,
        histories: sp.spmatrix | Sequence[np.ndarray],
        *,
        users: np.ndarray | None = None,
        batch_size: int = 1024,
    ) -> np.ndarray:
        """(n, dim) user-tower outputs for histories (lists oldest first, or CSR rows, whose
        column order stands in for time). `users` (dense indices) adds their features."""
        net = self._net()
        net.eval()
        table = torch.as_tensor(self.item_vectors())
        flat, offsets = _histories_to_flat(histories)
        if flat.size and (flat.min() < 0 or flat.max() >= self.n_items):
            raise RecsageError(f"history item index out of range 0..{self.n_items - 1}")
        n = len(offsets) - 1
        if users is not None and len(users) != n:
            raise RecsageError(f"{len(users)} users for {n} histories")
        out = np.zeros((n, self.config.dim), np.float32)
        for lo in range(0, n, batch_size):
            hi = min(n, lo + batch_size)
            items, mask = _history_block(
                flat, offsets[lo:hi], offsets[lo + 1 : hi + 1], self.config.max_history
            )
            feats = self._feature_rows(None if users is None else np.asarray(users)[lo:hi])
            vecs = table[torch.as_tensor(items)]
            out[lo:hi] = net.users(vecs, torch.as_tensor(mask), feats).numpy()
        return out

    def _normed(self, x: np.ndarray) -> np.ndarray:
        if self.config.similarity != "cosine":
            return np.asarray(x, dtype=np.float32)
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        return (x / np.maximum(norms, 1e-12)).astype(np.float32)

    def _scores_for(self, user_vecs: np.ndarray) -> np.ndarray:
        items = self._normed(self.item_vectors())
        return (self._normed(user_vecs) @ items.T / self.config.temperature).astype(np.float32)

    def score_sequences(
        self, sequences: Sequence[np.ndarray], *, users: np.ndarray | None = None
    ) -> np.ndarray:
        """(n, n_items) scores for ordered histories (oldest first); `users` adds features."""
        return self._scores_for(self.user_vectors(sequences, users=users))

    def _score(self, users: np.ndarray, history: sp.csr_matrix, *, given: bool) -> np.ndarray:
        if given:
            return self._scores_for(self.user_vectors(history, users=users))
        return self.score_sequences([self.sequences[u] for u in users], users=users)

    # ---- persistence ----------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        net = self._net()
        f = self.features
        assert f is not None
        state = {f"net.{k}": v.detach().numpy().copy() for k, v in net.state_dict().items()}
        flat, offsets = _flatten(self.sequences)
        state["seq.flat"], state["seq.offsets"] = flat, offsets
        state["item_seen"] = f.seen.astype(np.uint8)
        for key, arr in (("text_vectors", f.text), ("item_cats", f.cats), ("extra", f.extra)):
            if arr is not None:
                state[key] = arr
        if f.present is not None:
            state["extra_present"] = f.present.astype(np.uint8)
        if self.user_features is not None:
            state["user_features"] = self.user_features
        if self.profile_weights is not None:
            state["profile_weights"] = self.profile_weights
        return state

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.sequences = [
            state["seq.flat"][a:b]
            for a, b in zip(state["seq.offsets"][:-1], state["seq.offsets"][1:], strict=True)
        ]
        present = state.get("extra_present")
        self.features = _ItemFeatures(
            state.get("text_vectors"),
            state.get("item_cats"),
            state.get("extra"),
            None if present is None else present.astype(bool),
            state["item_seen"].astype(bool),
        )
        self.user_features = state.get("user_features")
        self.profile_weights = state.get("profile_weights")
        self.category_names = list(extra.get("category_names", []))
        self.user_feature_names = list(extra.get("user_feature_names", []))
        self.id_rows = int(extra.get("id_rows", 0))
        self.encoder_fingerprint = str(extra.get("encoder_fingerprint", ""))
        net = self._build_net()
        net.load_state_dict(
            {k[4:]: torch.as_tensor(v) for k, v in state.items() if k.startswith("net.")}
        )
        net.eval()
        self.net = net
        self._item_cache = None
        restore_training_record(self, extra)

    def _extra_manifest(self) -> dict[str, Any]:
        return {
            **training_record(self),
            "id_rows": self.id_rows,
            "category_names": self.category_names,
            "user_feature_names": self.user_feature_names,
            "encoder_fingerprint": self.encoder_fingerprint,
        }


def sequence_scorer(model: TwoTower, dataset: Dataset) -> Any:
    """A callable for `evaluate` scoring each user from `dataset`'s ordered sequences (e.g.
    LOO test: train with early stopping on the validation split, then score test users from
    `loo.test.train`, whose histories include the validation item)."""
    seqs = [np.asarray(s, np.int64) for s in dataset.sequences()]

    def score(users: np.ndarray, history: sp.csr_matrix | None = None) -> np.ndarray:
        users = np.asarray(users)
        return model.score_sequences([seqs[u] for u in users], users=users)

    return score


__all__ = [
    "ItemTower",
    "TwoTower",
    "TwoTowerConfig",
    "TwoTowerNet",
    "UserTower",
    "category_matrix",
    "default_cache_dir",
    "sequence_scorer",
    "user_feature_matrix",
]
