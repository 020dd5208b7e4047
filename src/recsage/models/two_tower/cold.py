"""Two-tower cold start: the text encoder, the profile map, items and users from text.

`ColdStartMixin` holds the parts of `TwoTower` that serve what training never saw: new
items scored from their text/categories (`item_vectors_for_text`, `add_items`) and users
described only by text (`text_user_vectors`, `score_text`), plus the ridge profile map
fitted after training. Split from model.py to keep each module one concern.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
import torch

from recsage.data.schema import Dataset
from recsage.data.vocab import Vocabulary
from recsage.errors import ConfigError, RecsageError
from recsage.models.two_tower.features import _ItemFeatures, _multi_hot, default_cache_dir
from recsage.models.two_tower.net import TEXT_MODES, TwoTowerConfig, TwoTowerNet


class ColdStartMixin:
    """Text encoder, profile map and cold items/users for `TwoTower` (see the module)."""

    config: Any
    features: _ItemFeatures | None
    category_names: list[str]
    sequences: list[np.ndarray]
    profile_weights: np.ndarray | None
    encoder_fingerprint: str
    items: Vocabulary | None
    n_items: int
    train_matrix: sp.csr_matrix | None
    item_titles: list[str] | None
    _item_cache: np.ndarray | None
    _encoder: Any
    _fit_args: dict[str, Any]

    if TYPE_CHECKING:  # provided by TwoTower / Recommender

        def _net(self) -> TwoTowerNet: ...

        def _check_fitted(self) -> None: ...

        def _normed(self, x: np.ndarray) -> np.ndarray: ...

        def _scores_for(self, user_vecs: np.ndarray) -> np.ndarray: ...

        def user_vectors(
            self,
            histories: sp.spmatrix | Sequence[np.ndarray],
            *,
            users: np.ndarray | None = None,
            batch_size: int = 1024,
        ) -> np.ndarray: ...

    # ---- text: encoder, catalogue, profile map --------------------------------------
    def text_encoder(self) -> Any:
        """The `TextEncoder` this model uses for texts (built on first use, cached)."""
        if self._encoder is None:
            from recsage.encoders.text import TextEncoder

            cfg: TwoTowerConfig = self.config
            cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else default_cache_dir()
            model = Path(cfg.text_model).expanduser() if cfg.text_model else None
            self._encoder = TextEncoder(model, cache_dir=cache)
            if self.encoder_fingerprint and self._encoder.fingerprint != self.encoder_fingerprint:
                raise RecsageError(
                    f"two_tower: this model was trained on text vectors from encoder "
                    f"{self.encoder_fingerprint}, but the configured encoder is "
                    f"{self._encoder.fingerprint}; set text_model to the original model folder"
                )
        return self._encoder

    def _encode_catalogue(self, data: Dataset) -> np.ndarray:
        from recsage.encoders.text import encode_dataset_items

        enc = self.text_encoder()
        vecs = np.asarray(encode_dataset_items(enc, data, progress=self.config.progress))
        self.encoder_fingerprint = enc.fingerprint
        return vecs

    def _fit_profile_map(self, data: Dataset) -> None:
        """Ridge map [profile vector, 1] -> unit user vector, over users with a history."""
        cfg: TwoTowerConfig = self.config
        self.profile_weights = None
        qv = self._fit_args.get("user_text")
        if qv is None:
            if not (cfg.profile_map and cfg.use_text and data.user_table is not None):
                return
            from recsage.encoders.user import ProfileUserEncoder

            enc = ProfileUserEncoder(self.text_encoder())
            qv = enc.encode(data.user_table)
            self.encoder_fingerprint = self.text_encoder().fingerprint
        qv = np.asarray(qv, dtype=np.float64)
        if qv.shape[0] != data.n_users:
            raise ConfigError(f"two_tower: user_text_vectors must have {data.n_users} rows")
        has = (np.abs(qv).sum(axis=1) > 0) & np.array([len(s) > 0 for s in self.sequences])
        if has.sum() < 2:
            return
        users = np.flatnonzero(has)
        target = self._normed(self.user_vectors([self.sequences[u] for u in users], users=users))
        x = np.hstack([qv[users], np.ones((len(users), 1))])
        reg = cfg.profile_l2 * np.eye(x.shape[1])
        reg[-1, -1] = 0.0
        w = np.linalg.solve(x.T @ x + reg, x.T @ target.astype(np.float64))
        self.profile_weights = w.astype(np.float32)

    @torch.inference_mode()
    def item_vectors_for_text(
        self,
        texts: Sequence[str] | None = None,
        *,
        text_vectors: np.ndarray | None = None,
        categories: Sequence[Sequence[str]] | None = None,
        extra_vectors: np.ndarray | None = None,
    ) -> np.ndarray:
        """Item vectors for new items from text alone (ID embedding off): (n, dim).

        Give `texts` (encoded with the model's text encoder) or ready `text_vectors`;
        optional `categories` (lists of names known to the model) and `extra_vectors`.
        """
        feats = self._new_item_features(texts, text_vectors, categories, extra_vectors)
        net = self._net()
        net.eval()
        n = len(feats.seen)
        rows = feats.rows(np.arange(n))
        present = rows["present"]
        return net.items(
            torch.zeros(n, dtype=torch.long),
            torch.zeros(n, dtype=torch.bool),
            rows["text"],
            rows["cats"],
            rows["extra"],
            None if present is None else present.bool(),
        ).numpy()

    def _new_item_features(
        self,
        texts: Sequence[str] | None,
        text_vectors: np.ndarray | None,
        categories: Sequence[Sequence[str]] | None,
        extra_vectors: np.ndarray | None,
    ) -> _ItemFeatures:
        f = self.features
        if f is None:
            raise RecsageError("model 'two_tower' is not fitted; call fit() or load() first")
        if text_vectors is None and texts is not None:
            if isinstance(texts, str):
                raise RecsageError("pass a list of texts, not a single string")
            text_vectors = self.text_encoder().encode_items(list(texts))
        if f.text is not None:
            if text_vectors is None:
                raise RecsageError("two_tower: new items need texts or text_vectors")
            text_vectors = np.asarray(text_vectors, dtype=np.float32)
            if text_vectors.ndim != 2 or text_vectors.shape[1] != f.text.shape[1]:
                raise RecsageError(f"text vectors must have shape (n, {f.text.shape[1]})")
            n = len(text_vectors)
        elif categories is not None:
            n = len(categories)
        elif text_vectors is not None:
            n = len(text_vectors)
        else:
            raise RecsageError("two_tower: new items need text_vectors or categories")
        cats = None
        if f.cats is not None:
            lists = [list(map(str, c)) for c in categories] if categories is not None else [[]] * n
            if len(lists) != n:
                raise RecsageError(f"{len(lists)} category lists for {n} items")
            cats = _multi_hot(lists, self.category_names)
        extra: np.ndarray | None = None
        present: np.ndarray | None = None
        if f.extra is not None:
            extra = np.zeros((n, f.extra.shape[1]), np.float32)
            present = np.zeros(n, bool)
            if extra_vectors is not None:
                ev = np.asarray(extra_vectors, dtype=np.float32)
                if ev.shape != extra.shape:
                    raise RecsageError(f"extra vectors must have shape {extra.shape}")
                present = np.asarray(np.isfinite(ev).all(axis=1), dtype=bool)
                extra = np.where(present[:, None], np.nan_to_num(ev), 0.0).astype(np.float32)
        text = text_vectors if f.text is not None else None
        return _ItemFeatures(text, cats, extra, present, np.zeros(n, bool))

    def add_items(
        self,
        ids: Sequence[object],
        *,
        texts: Sequence[str] | None = None,
        text_vectors: np.ndarray | None = None,
        categories: Sequence[Sequence[str]] | None = None,
        extra_vectors: np.ndarray | None = None,
    ) -> np.ndarray:
        """Append new items (scored from text/categories at once); returns their indices."""
        self._check_fitted()
        assert self.items is not None and self.features is not None
        new_ids = [str(i) for i in ids]
        known = [i for i in new_ids if i in self.items]
        if known or len(set(new_ids)) != len(new_ids):
            raise RecsageError(f"item ids must be new and unique; '{(known or new_ids)[0]}' is not")
        feats = self._new_item_features(texts, text_vectors, categories, extra_vectors)
        if len(feats.seen) != len(new_ids):
            raise RecsageError(f"{len(new_ids)} ids for {len(feats.seen)} items")
        f = self.features

        def stack(old: np.ndarray | None, new: np.ndarray | None) -> np.ndarray | None:
            return None if old is None or new is None else np.concatenate([old, new])

        self.features = _ItemFeatures(
            stack(f.text, feats.text),
            stack(f.cats, feats.cats),
            stack(f.extra, feats.extra),
            stack(f.present, feats.present),
            np.concatenate([f.seen, feats.seen]),
        )
        start = self.n_items
        self.items = self.items.extend(new_ids)
        self.n_items = len(self.items)
        assert self.train_matrix is not None
        tm = self.train_matrix
        self.train_matrix = sp.csr_matrix(
            (tm.data, tm.indices, tm.indptr), shape=(tm.shape[0], self.n_items)
        )
        self.item_titles = [*(self.item_titles or []), *new_ids]
        self._item_cache = None
        return np.arange(start, self.n_items)

    def text_user_vectors(
        self,
        texts: Sequence[str] | None = None,
        *,
        query_vectors: np.ndarray | None = None,
        mode: str = "auto",
    ) -> np.ndarray:
        """User-space vectors (n, dim) for profile sentences or free-form queries.

        "profile": ridge map of the query vector (needs a profile map); "item": the query
        vector through the item tower's text path (a pseudo-item: "more like this text");
        "blend": unit profile vector + `text_blend` x unit pseudo-item vector; "auto":
        blend when a profile map exists, else item.
        """
        if mode not in TEXT_MODES:
            raise ConfigError(f"mode must be one of {TEXT_MODES}, got {mode!r}")
        if query_vectors is None:
            if texts is None:
                raise RecsageError("score_text needs texts or query_vectors")
            if isinstance(texts, str):
                raise RecsageError("pass a list of texts, not a single string")
            query_vectors = self.text_encoder().encode_queries(list(texts))
        q = np.asarray(query_vectors, dtype=np.float32)
        if mode == "auto":
            mode = "blend" if self.profile_weights is not None else "item"
        parts: list[np.ndarray] = []
        if mode in ("profile", "blend"):
            if self.profile_weights is None:
                raise RecsageError(
                    "two_tower: no profile map (the training data had no user table / profile "
                    "text); use mode='item'"
                )
            x = np.hstack([q, np.ones((len(q), 1), np.float32)])
            parts.append(_unit(x @ self.profile_weights))
        if mode in ("item", "blend"):
            pseudo = self.item_vectors_for_text(text_vectors=q)
            weight = self.config.text_blend if mode == "blend" else 1.0
            parts.append(np.float32(weight) * _unit(pseudo))
        return np.sum(parts, axis=0).astype(np.float32)

    def score_text(
        self,
        texts: Sequence[str] | None = None,
        *,
        query_vectors: np.ndarray | None = None,
        mode: str = "auto",
    ) -> np.ndarray:
        """(n, n_items) scores for users described only by text (see `text_user_vectors`)."""
        self._check_fitted()
        return self._scores_for(
            self.text_user_vectors(texts, query_vectors=query_vectors, mode=mode)
        )


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)
