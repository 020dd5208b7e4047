"""SASRec: causal Transformer over item sequences (ID + text adapter or text-only)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recsage.data.schema import Dataset
from recsage.data.splits import Split
from recsage.errors import ConfigError, RecsageError
from recsage.models.base import Recommender
from recsage.models.registry import register
from recsage.models.sasrec.batches import (
    _bf16_supported,
    _bucketed_batches,
    _default_text_vectors,
    _flatten,
    _left_pad,
    _svd_item_factors,
    _text_item_factors,
    _text_table,
    _training_windows,
    _unflatten,
)
from recsage.models.sasrec.net import SASRecConfig, SASRecNet, softmax_cross_entropy
from recsage.models.validation import restore_training_record, training_record, validation_ndcg
from recsage.trainer import Checkpoint, EpochContext, Trainer, TrainerConfig, torch_threads


@register
class SASRec(Recommender):
    """Causal self-attention sequential recommender with tied item embeddings.

    `fit(dataset, valid=split)` trains on the dataset's sequences and early-stops on
    validation NDCG@10 (restoring the best weights). Scoring needs ordered histories:
    `score()` uses the stored training sequences; new histories go through
    `score_sequences()` / `user_vectors()`.
    """

    name = "sasrec"
    config_cls = SASRecConfig
    fit_options = frozenset({"valid", "item_text_vectors", "checkpoint_dir", "init_from"})

    def __init__(self, config: SASRecConfig | None = None, **params: Any) -> None:
        super().__init__(config, **params)  # builds and validates the config
        self.net: SASRecNet | None = None
        self.text_vectors: np.ndarray | None = None
        self.sequences: list[np.ndarray] = []
        self.history: list[dict[str, float]] = []
        self.best_epoch = 0
        self.best_ndcg = float("nan")
        self._item_cache: np.ndarray | None = None
        self._token_cache: torch.Tensor | None = None
        self._valid: Split | None = None
        self._checkpoint_dir: Path | None = None
        self._text_arg: np.ndarray | None = None
        self._init_from: SASRec | None = None

    # ---- training -------------------------------------------------------------------
    def fit(
        self,
        data: Dataset,
        *,
        valid: Split | None = None,
        item_text_vectors: np.ndarray | None = None,
        checkpoint_dir: str | Path | None = None,
        init_from: SASRec | None = None,
    ) -> SASRec:
        """Train on `data`'s sequences; early-stop on `valid` (NDCG@10) when given.

        `item_text_vectors` (n_items, d) are the frozen text vectors for the text modes
        (computed with `recsage.encoders.text` when omitted). With `checkpoint_dir`, the
        state is written after every epoch and training resumes from it when present.
        `init_from` starts from another fitted text-only model's weights (fine-tuning on a
        new domain: a text-only network has no per-item parameters, so any catalogue fits).
        """
        if init_from is not None:
            src = init_from.config
            if self.config.text != "text_only" or src.text != "text_only":
                raise ConfigError("sasrec: init_from needs text='text_only' on both models")
            for key in ("dim", "layers", "heads", "ffn_mult", "max_len"):
                if getattr(src, key) != getattr(self.config, key):
                    raise ConfigError(
                        f"sasrec: init_from has {key}={getattr(src, key)}, "
                        f"this model {getattr(self.config, key)}"
                    )
            init_from._net()
        self._valid = valid
        self._text_arg = item_text_vectors
        self._init_from = init_from
        self._checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        try:
            super().fit(data)
        finally:
            self._valid = None
            self._text_arg = None
            self._init_from = None
        return self

    def _fit(self, data: Dataset, matrix: sp.csr_matrix) -> None:
        with torch_threads(self.config.threads):
            self._train(data)

    def _setup_text(self, data: Dataset) -> int:
        cfg: SASRecConfig = self.config
        if cfg.text == "none":
            self.text_vectors = None
            return 0
        vecs = self._text_arg if self._text_arg is not None else _default_text_vectors(data)
        vecs = np.asarray(vecs, dtype=np.float32)
        if vecs.ndim != 2 or vecs.shape[0] != data.n_items:
            raise ConfigError(
                f"sasrec: item_text_vectors must have shape ({data.n_items}, d), got {vecs.shape}"
            )
        self.text_vectors = vecs
        return int(vecs.shape[1])

    def _train(self, data: Dataset) -> None:
        cfg: SASRecConfig = self.config
        self.sequences = [np.asarray(s, np.int64) for s in data.sequences()]
        text_dim = self._setup_text(data)
        torch.manual_seed(cfg.seed)
        net = SASRecNet(cfg, data.n_items, text_dim)
        net.set_item_frequency(np.bincount(data.interactions.item, minlength=data.n_items))
        if cfg.emb_init == "svd" and net.id_emb is not None:
            assert self.train_matrix is not None
            with torch.no_grad():
                net.id_emb.weight[1:] = torch.as_tensor(_svd_item_factors(self.train_matrix, cfg))
        if cfg.emb_init == "text" and net.id_emb is not None:
            vecs = self.text_vectors if self.text_vectors is not None else self._text_arg
            if vecs is None:
                vecs = _default_text_vectors(data)
            vecs = np.asarray(vecs, np.float32)
            if vecs.ndim != 2 or vecs.shape[0] != data.n_items:
                raise ConfigError(
                    f"sasrec: emb_init='text' needs item text vectors of shape "
                    f"({data.n_items}, d), got {vecs.shape}"
                )
            with torch.no_grad():
                net.id_emb.weight[1:] = torch.as_tensor(_text_item_factors(vecs, cfg))
        if self._init_from is not None:
            source = self._init_from._net()
            if self.text_vectors is None or source.adapter is None:
                raise ConfigError("sasrec: init_from needs text vectors on both models")
            if source.text_dim != self.text_vectors.shape[1]:
                raise ConfigError(
                    f"sasrec: init_from was trained on {source.text_dim}-d text "
                    f"vectors, these are {self.text_vectors.shape[1]}-d"
                )
            net.load_state_dict(source.state_dict())
        self.net = net
        self._item_cache = None
        self._token_cache = None
        text_t = _text_table(self.text_vectors) if self.text_vectors is not None else None
        opt = torch.optim.AdamW(
            net.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
        )
        rows = torch.as_tensor(_training_windows(self.sequences, cfg.max_len, cfg.window))
        if len(rows) == 0:
            raise RecsageError("sasrec: no user has two or more interactions to learn from")
        lengths = (rows > 0).sum(dim=1).numpy()
        use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and _bf16_supported())
        log_q = self._sampler_log_q(data) if cfg.loss == "sampled" else None

        valid_seqs = (
            [np.asarray(s, np.int64) for s in self._valid.train.sequences()]
            if self._valid is not None
            else None
        )

        def run_epoch(ctx: EpochContext) -> dict[str, float]:
            return {"loss": self._run_epoch(net, opt, rows, lengths, text_t, ctx, use_bf16, log_q)}

        trainer = Trainer(
            TrainerConfig(
                name="sasrec", max_epochs=cfg.max_epochs, patience=cfg.patience,
                eval_every=cfg.eval_every, max_minutes=cfg.max_minutes, seed=cfg.seed,
                metric="ndcg@10", progress=cfg.progress,
            )
        )  # fmt: skip
        ckpt = None
        if self._checkpoint_dir is not None:
            ckpt = Checkpoint(
                self._checkpoint_dir, dataclasses.asdict(cfg), data.fingerprint(),
                ignore={"max_epochs", "patience", "progress", "threads", "max_minutes"},
            )  # fmt: skip
        result = trainer.fit(
            run_epoch,
            module=net,
            optimizer=opt,
            validate=None if valid_seqs is None else lambda: self._validate(valid_seqs),
            steps=max(1, math.ceil(len(rows) / cfg.batch_size)),
            checkpoint=ckpt,
        )
        net.eval()
        self.history = result.history
        self.best_epoch = result.best_epoch
        self.best_ndcg = result.best_score
        self._item_cache = None
        self._token_cache = None

    def _sampler_log_q(self, data: Dataset) -> torch.Tensor:
        """log q(token) of the negative sampler over tokens 1..n (index 0 unused)."""
        cfg: SASRecConfig = self.config
        if cfg.sampler == "uniform":
            q = np.full(data.n_items, 1.0 / data.n_items)
        else:
            counts = data.item_popularity().astype(np.float64) + 1.0
            q = counts / counts.sum()
        return torch.as_tensor(np.concatenate([[1.0], q]), dtype=torch.float32).log()

    def _run_epoch(
        self,
        net: SASRecNet,
        opt: torch.optim.Optimizer,
        rows: torch.Tensor,
        lengths: np.ndarray,
        text_t: torch.Tensor | None,
        ctx: EpochContext,
        use_bf16: bool,
        log_q: torch.Tensor | None,
    ) -> float:
        """One pass over the shuffled training windows; returns the mean loss per position.

        The trainer seeds torch and `ctx.rng` per epoch, so a resumed run draws exactly
        what an uninterrupted one would."""
        cfg: SASRecConfig = self.config
        assert ctx.seed is not None and ctx.rng is not None
        epoch = ctx.epoch
        gen = torch.Generator().manual_seed(ctx.seed)
        batches = _bucketed_batches(lengths, cfg.batch_size, ctx.rng)
        net.train()
        total, count = 0.0, 0
        for step, index in enumerate(batches):
            if cfg.schedule == "cosine":
                done = ((epoch - 1) * len(batches) + step) / max(1, cfg.max_epochs * len(batches))
                ratio = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (
                    1 + math.cos(math.pi * done)
                )
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * ratio
            batch = rows[torch.as_tensor(index)]
            nonempty = (batch[:, :-1] > 0).any(dim=0).nonzero()
            first = int(nonempty[0]) if len(nonempty) else batch.shape[1] - 2
            inp, tgt = batch[:, first:-1], batch[:, first + 1 :]
            table = net.item_table(text_t)
            hidden = net.encode(inp, table)
            where = (tgt > 0) & (inp > 0)
            h = hidden[where]
            y = tgt[where]
            loss = self._loss(h, y, table, gen, log_q, use_bf16)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad > 0:
                nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
            opt.step()
            n = int(y.numel())
            total += float(loss.detach()) * n
            count += n
            ctx.advance(loss=total / max(count, 1))
        return total / max(count, 1)

    def _loss(
        self,
        h: torch.Tensor,
        y: torch.Tensor,
        table: torch.Tensor,
        gen: torch.Generator,
        log_q: torch.Tensor | None,
        bf16: bool,
    ) -> torch.Tensor:
        """Next-item loss for hidden states `h` (P, d) and target tokens `y` (P,)."""
        cfg: SASRecConfig = self.config
        n_tokens = table.shape[0]
        if cfg.loss == "ce":
            return softmax_cross_entropy(h, table[1:], y - 1, bf16=bf16)
        if cfg.loss == "bce":
            neg = torch.randint(1, n_tokens, y.shape, generator=gen)
            pos_logit = (h * table[y]).sum(-1).float()
            neg_logit = (h * table[neg]).sum(-1).float()
            keep = (neg != y).float()
            pos_loss = F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit))
            neg_each = F.binary_cross_entropy_with_logits(
                neg_logit, torch.zeros_like(neg_logit), reduction="none"
            )
            return pos_loss + (neg_each * keep).sum() / keep.sum().clamp_min(1.0)
        assert log_q is not None
        if cfg.sampler == "uniform":
            neg = torch.randint(1, n_tokens, (cfg.negatives,), generator=gen)
        else:
            neg = torch.multinomial(log_q[1:].exp(), cfg.negatives, True, generator=gen) + 1
        pos_logit = (h * table[y]).sum(-1, keepdim=True).float() - log_q[y].unsqueeze(1)
        neg_logit = (h @ table[neg].T).float() - log_q[neg].unsqueeze(0)
        neg_logit = neg_logit.masked_fill(neg.unsqueeze(0) == y.unsqueeze(1), float("-inf"))
        logits = torch.cat([pos_logit, neg_logit], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long))

    def _validate(self, valid_seqs: list[np.ndarray]) -> float:
        """Validation NDCG@10, each user scored from their ordered training sequence."""
        assert self._valid is not None
        self._item_cache = None
        self._token_cache = None

        def scorer(users: np.ndarray, history: Any = None) -> np.ndarray:
            return self.score_sequences([valid_seqs[u] for u in users])

        ndcg = validation_ndcg(scorer, self._valid, k=10)
        self._item_cache = None
        self._token_cache = None
        return ndcg

    # ---- inference ------------------------------------------------------------------
    def _net(self) -> SASRecNet:
        if self.net is None:
            raise RecsageError("model 'sasrec' is not fitted; call fit() or load() first")
        return self.net

    def _table(self, item_text_vectors: np.ndarray | None) -> torch.Tensor:
        net = self._net()
        if item_text_vectors is not None:
            if self.config.text != "text_only":
                raise ConfigError(
                    "sasrec: item_text_vectors at scoring time need text='text_only' "
                    f"(this model uses text={self.config.text!r})"
                )
            return net.item_table(_text_table(item_text_vectors))
        text_t = _text_table(self.text_vectors) if self.text_vectors is not None else None
        return net.item_table(text_t)

    @torch.inference_mode()
    def user_vectors(
        self,
        sequences: Sequence[np.ndarray],
        *,
        batch_size: int = 128,
        item_text_vectors: np.ndarray | None = None,
    ) -> np.ndarray:
        """Final hidden state (n, dim) for time-ordered item-index histories (oldest first).

        Only the last `max_len` items count. In text_only mode `item_text_vectors` may
        describe a new catalogue (histories then index into it).
        """
        net = self._net()
        net.eval()
        if item_text_vectors is None:
            if self._token_cache is None:
                self._token_cache = self._table(None)
            table = self._token_cache
        else:
            table = self._table(item_text_vectors)
        out = np.zeros((len(sequences), net.dim), np.float32)
        # a few histories: one thread (thread hand-offs cost more than they save, and on a
        # busy machine a second thread waits for a core: 0.6 ms becomes 100+ ms)
        threads = torch.get_num_threads()
        if len(sequences) <= 8 and threads > 1:
            torch.set_num_threads(1)
        try:
            for lo in range(0, len(sequences), batch_size):
                chunk = sequences[lo : lo + batch_size]
                length = max(1, min(net.max_len, max((len(s) for s in chunk), default=1)))
                tokens = torch.as_tensor(_left_pad(chunk, length))
                if int(tokens.max()) >= table.shape[0]:
                    raise RecsageError(
                        f"item index out of range 0..{table.shape[0] - 2} in history"
                    )
                out[lo : lo + len(chunk)] = net.encode(tokens, table)[:, -1].numpy()
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)
        return out

    @torch.inference_mode()
    def item_vectors(self, *, item_text_vectors: np.ndarray | None = None) -> np.ndarray:
        """Output item embeddings (n_items, dim): score = user_vector · item_vector."""
        if item_text_vectors is not None:
            return self._table(item_text_vectors)[1:].numpy().astype(np.float32)
        if self._item_cache is None:
            self._net().eval()
            self._item_cache = self._table(None)[1:].numpy().astype(np.float32)
        return self._item_cache

    def score_sequences(
        self, sequences: Sequence[np.ndarray], *, item_text_vectors: np.ndarray | None = None
    ) -> np.ndarray:
        """(len(sequences), n_items) float32 scores for arbitrary ordered histories."""
        users = self.user_vectors(sequences, item_text_vectors=item_text_vectors)
        items = self.item_vectors(item_text_vectors=item_text_vectors)
        return np.asarray(users @ items.T, dtype=np.float32)

    def _score(self, users: np.ndarray, history: sp.csr_matrix, *, given: bool) -> np.ndarray:
        if given:
            raise RecsageError(
                "sasrec scores ordered histories, and a CSR history has no order; call "
                "model.score_sequences([...item indices oldest first...]) instead"
            )
        return self.score_sequences([self.sequences[u] for u in users])

    # ---- persistence ----------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        net = self._net()
        state = {f"net.{k}": v.detach().numpy().copy() for k, v in net.state_dict().items()}
        flat, offsets = _flatten(self.sequences)
        state["seq.flat"], state["seq.offsets"] = flat, offsets
        if self.text_vectors is not None:
            state["text_vectors"] = self.text_vectors
        return state

    def _load_state(self, state: dict[str, np.ndarray], extra: dict[str, Any]) -> None:
        self.sequences = _unflatten(state["seq.flat"], state["seq.offsets"])
        self.text_vectors = state.get("text_vectors")
        text_dim = 0 if self.text_vectors is None else int(self.text_vectors.shape[1])
        net = SASRecNet(self.config, self.n_items, text_dim)
        weights = {k[4:]: torch.as_tensor(v) for k, v in state.items() if k.startswith("net.")}
        net.load_state_dict(weights)
        net.eval()
        self.net = net
        self._item_cache = None
        self._token_cache = None
        restore_training_record(self, extra)

    def _extra_manifest(self) -> dict[str, Any]:
        return training_record(self)


def sequence_scorer(model: SASRec, dataset: Dataset) -> Callable[..., np.ndarray]:
    """A callable for `evaluate` that scores each user from `dataset`'s ordered sequences.

    Standard SASRec test protocol: `evaluate(sequence_scorer(model, loo.test.train),
    loo.test)` feeds every history up to and including the validation item.
    """
    seqs = [np.asarray(s, np.int64) for s in dataset.sequences()]

    def score(users: np.ndarray, history: sp.csr_matrix | None = None) -> np.ndarray:
        return model.score_sequences([seqs[u] for u in np.asarray(users)])

    return score


__all__ = ["SASRec", "SASRecConfig", "SASRecNet", "sequence_scorer", "softmax_cross_entropy"]
