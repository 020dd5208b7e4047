"""TransE knowledge-graph embeddings (Bordes et al., NeurIPS 2013) in PyTorch, seeded.

Entities and relations get vectors such that head + relation ≈ tail for stored triples;
the loss is the margin ranking loss against triples with a corrupted head or tail. Item
vectors for retrieval and ranking are the item entities' vectors, optionally mixed with the
mean of their neighbours' vectors (one LightGCN-style propagation step), which pulls items
sharing a director, genre or label together. Items without triples get a zero vector.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsage.artifacts import TRANSE, read_artifact, write_artifact
from recsage.component import resolve_config
from recsage.errors import ArtifactError, ConfigError, RecsageError
from recsage.knowledge.graph import ItemKnowledgeGraph
from recsage.trainer import EpochContext, Trainer, TrainerConfig, torch_threads


@dataclass
class TransEConfig:
    """TransE hyperparameters; `threads` caps torch's CPU threads while training."""

    dim: int = 64
    epochs: int = 20
    batch_size: int = 4096
    lr: float = 0.01
    margin: float = 1.0
    p_norm: int = 1
    seed: int = 0
    threads: int = 2


class TransE:
    """fit(graph) -> entity/relation vectors; `losses` holds the mean loss of every epoch."""

    def __init__(self, config: TransEConfig | None = None, **params: Any) -> None:
        self.config = resolve_config(TransEConfig, config, params, where="TransE")
        if self.config.dim < 1 or self.config.epochs < 0 or self.config.p_norm not in (1, 2):
            raise ConfigError("TransE needs dim >= 1, epochs >= 0 and p_norm in (1, 2)")
        self.entity_vectors = np.zeros((0, self.config.dim), np.float32)
        self.relation_vectors = np.zeros((0, self.config.dim), np.float32)
        self.losses: list[float] = []
        self.fit_seconds = 0.0

    def fit(self, graph: ItemKnowledgeGraph) -> TransE:
        """Train on every triple of `graph` (deterministic for a seed and thread count)."""
        cfg = self.config
        if graph.n_triples == 0:
            raise RecsageError("cannot train TransE on a graph without triples")
        start = time.perf_counter()
        # parallel scatter-adds in the backward pass would otherwise vary from run to run
        with torch_threads(cfg.threads, deterministic=True, warn_only=True):
            self._train(graph)
        self.fit_seconds = time.perf_counter() - start
        return self

    def _train(self, graph: ItemKnowledgeGraph) -> None:
        import torch

        cfg = self.config
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)  # one stream over all epochs
        n_ent, n_rel, dim = graph.n_entities, graph.n_relations, cfg.dim
        bound = 6.0 / np.sqrt(dim)
        params = torch.nn.ParameterDict(
            {
                "entity": torch.nn.Parameter(torch.empty(n_ent, dim).uniform_(-bound, bound)),
                "relation": torch.nn.Parameter(torch.empty(n_rel, dim).uniform_(-bound, bound)),
            }
        )
        ent, rel = params["entity"], params["relation"]
        with torch.no_grad():
            rel.div_(rel.norm(dim=1, keepdim=True).clamp_min(1e-12))
        opt = torch.optim.Adam([ent, rel], lr=cfg.lr)
        h_all = torch.from_numpy(graph.head)
        r_all = torch.from_numpy(graph.relation)
        t_all = torch.from_numpy(graph.tail)
        n = graph.n_triples

        def run_epoch(ctx: EpochContext) -> dict[str, float]:
            order = torch.from_numpy(rng.permutation(n))
            corrupt = torch.from_numpy(rng.integers(0, n_ent, n))
            side = torch.from_numpy(rng.random(n) < 0.5)
            total = 0.0
            for lo in range(0, n, cfg.batch_size):
                idx = order[lo : lo + cfg.batch_size]
                h, r, t = h_all[idx], r_all[idx], t_all[idx]
                c, s = corrupt[idx], side[idx]
                h_neg = torch.where(s, c, h)
                t_neg = torch.where(s, t, c)
                # entities are used on the unit sphere (TransE's norm constraint)
                e = torch.nn.functional.normalize(ent[torch.cat([h, t, h_neg, t_neg])], dim=1)
                eh, et, ehn, etn = e.split(len(idx))
                rv = rel[r]
                pos = (eh + rv - et).norm(p=cfg.p_norm, dim=1)
                neg = (ehn + rv - etn).norm(p=cfg.p_norm, dim=1)
                loss = torch.relu(cfg.margin + pos - neg).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            return {"loss": total / n}

        result = Trainer(TrainerConfig(name="transe", max_epochs=cfg.epochs)).fit(
            run_epoch, module=params
        )
        self.losses = [float(r["loss"]) for r in result.history]
        with torch.no_grad():
            ent_out = torch.nn.functional.normalize(ent, dim=1)
        self.entity_vectors = ent_out.numpy().astype(np.float32)
        self.relation_vectors = rel.detach().numpy().astype(np.float32)

    def item_vectors(self, graph: ItemKnowledgeGraph, *, propagate: float = 1.0) -> np.ndarray:
        """(n_items, dim) L2-normalised item vectors; zero rows for items without triples.

        v_i = e_i + propagate * mean(e_n for n one triple away from i).
        """
        if len(self.entity_vectors) != graph.n_entities:
            raise RecsageError("the embeddings were trained on another graph (entity count)")
        n_items = graph.n_items
        vec = self.entity_vectors[:n_items].astype(np.float64)
        if propagate:
            rows = np.concatenate([graph.head, graph.tail])
            cols = np.concatenate([graph.tail, graph.head])
            sel = rows < n_items
            adj = sp.csr_matrix(
                (np.ones(int(sel.sum())), (rows[sel], cols[sel])),
                shape=(n_items, graph.n_entities),
            )
            deg = np.asarray(adj.sum(axis=1)).ravel()
            mean = np.asarray(adj @ self.entity_vectors) / np.maximum(deg, 1.0)[:, None]
            vec = vec + propagate * mean
        linked = np.zeros(n_items, bool)
        for side in (graph.head, graph.tail):
            linked[side[side < n_items]] = True
        vec[~linked] = 0.0
        norm = np.linalg.norm(vec, axis=1, keepdims=True)
        return (vec / np.maximum(norm, 1e-12)).astype(np.float32)

    # ---- persistence --------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """An artifact folder: vectors in `state.safetensors`, config and losses in the
        manifest."""
        return write_artifact(
            path,
            TRANSE,
            name="transe",
            config=dataclasses.asdict(self.config),
            arrays={"entity": self.entity_vectors, "relation": self.relation_vectors},
            extra={"losses": self.losses, "fit_seconds": self.fit_seconds},
        )

    @classmethod
    def load(cls, path: str | Path) -> TransE:
        """Load embeddings written by `save`."""
        art = read_artifact(path, TRANSE)
        model = cls(TransEConfig(**art.config))
        arrays = art.arrays()
        try:
            model.entity_vectors, model.relation_vectors = arrays["entity"], arrays["relation"]
        except KeyError as exc:
            raise ArtifactError(f"{art.path}: state.safetensors lacks {exc}") from None
        model.losses = [float(x) for x in art.get("losses", [])]
        model.fit_seconds = float(art.get("fit_seconds", 0.0))
        return model


def recency_profile(
    sequences: Sequence[np.ndarray], vectors: np.ndarray, *, recent: int, decay: float
) -> np.ndarray:
    """(B, dim) L2-normalised weighted mean of the last `recent` items' vectors
    (weight decay**steps_back); zero rows where no history item has a vector."""
    out = np.zeros((len(sequences), vectors.shape[1]), np.float32)
    for b, seq in enumerate(sequences):
        tail = np.asarray(seq[-recent:], dtype=np.int64) if recent > 0 else np.zeros(0, np.int64)
        tail = tail[(tail >= 0) & (tail < len(vectors))]
        if not len(tail):
            continue
        w = np.power(decay, np.arange(len(tail))[::-1].astype(np.float64))
        out[b] = (w[:, None] * vectors[tail]).sum(axis=0)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return np.where(norm > 1e-9, out / np.maximum(norm, 1e-12), 0.0).astype(np.float32)


__all__ = ["TransE", "TransEConfig", "recency_profile"]
