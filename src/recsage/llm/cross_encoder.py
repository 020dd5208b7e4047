"""A fine-tuned cross-encoder re-ranker: (user history text, candidate item text) -> score.

`CrossEncoderRanker` starts from the bundled all-MiniLM-L6-v2 encoder (transformers
`AutoModelForSequenceClassification`, a fresh 1-logit head), offline, and is fine-tuned
with a listwise loss (softmax over 1 positive + k hard negatives) or a pointwise BCE loss.
`CrossEncoderStage` (kind "cross_encoder") re-ranks the top candidates of the previous
stage, blending the cross-encoder score with the incoming score (both z-scored per list).
`train_cross_encoder` builds the training lists from a fitted pipeline's own candidates.

Artifacts: `recsage.artifacts` folders whose native files are the `save_pretrained`
safetensors weights and tokenizer JSON/text files; never pickle.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from recsage.artifacts import (
    CROSS_ENCODER,
    CROSS_ENCODER_STAGE,
    read_artifact,
    write_artifact,
)
from recsage.component import resolve_config
from recsage.errors import ConfigError, RecsageError
from recsage.ranking.features import row_zscore
from recsage.ranking.stages.base import Stage, StageContext
from recsage.trainer import EpochContext, Trainer, TrainerConfig, torch_threads
from recsage.types import CandidateBatch

CATALOGUE_FILE = "catalogue.json"


# --------------------------------------------------------------------------- texts


@dataclass
class TextCatalogue:
    """Per item: the candidate text ("Title (1995). Categories: A, B"), a short history
    name ("Title (1995)") and categories; builds the history text of a user."""

    docs: list[str]
    names: list[str]
    categories: list[list[str]]

    @classmethod
    def from_item_table(cls, table: pd.DataFrame) -> TextCatalogue:
        from recsage.encoders.templates import TextTemplate

        aliases = {"title": ("title", "name"), "year": ("year",), "brand": ("brand",),
                   "categories": ("categories", "genres")}  # fmt: skip
        names = TextTemplate(("{title}[ ({year})]",), aliases=aliases).render(table)
        docs = TextTemplate(
            ("{title}[ ({year})]", "Categories: {categories}", "Brand: {brand}"), aliases=aliases
        ).render(table)
        cats = (
            [
                [str(c) for c in v] if isinstance(v, list | tuple | np.ndarray) else []
                for v in table["categories"].tolist()
            ]
            if "categories" in table.columns
            else [[] for _ in range(len(table))]
        )
        ids = table["item_id"].astype(str).tolist() if "item_id" in table.columns else None
        names = [n or (ids[i] if ids else str(i)) for i, n in enumerate(names)]
        docs = [d or names[i] for i, d in enumerate(docs)]
        if "text" in table.columns:  # e.g. Amazon: "title. categories. brand." in one column
            text = TextTemplate(("{text}",)).render(table)
            docs = [
                t if d == names[i] and t else d
                for i, (d, t) in enumerate(zip(docs, text, strict=True))
            ]
        return cls(docs, names, cats)

    def query(
        self, history: Sequence[int] | np.ndarray, n: int = 10, top_categories: int = 3
    ) -> str:
        """``Top categories: Drama, Comedy. Recent: A (1997); B (1996); ...`` (newest first,
        so truncation drops the oldest items)."""
        seq = [int(i) for i in np.asarray(history).tolist() if 0 <= int(i) < len(self.names)]
        recent = seq[-n:][::-1] if n > 0 else []
        counts = Counter(c for i in seq[-50:] for c in self.categories[i])
        parts = []
        if counts and top_categories > 0:
            parts.append(
                "Top categories: " + ", ".join(c for c, _ in counts.most_common(top_categories))
            )
        parts.append("Recent: " + ("; ".join(self.names[i] for i in recent) or "nothing yet"))
        return ". ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"docs": self.docs, "names": self.names, "categories": self.categories}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TextCatalogue:
        return cls(list(d["docs"]), list(d["names"]), [list(c) for c in d["categories"]])


# --------------------------------------------------------------------------- ranker


@dataclass
class CrossEncoderConfig:
    """`base`: model folder ("" = bundled MiniLM). `loss`: "listwise" (softmax over each
    list, the positive first) or "pointwise" (BCE). Fine-tuning runs `epochs` passes with
    `lists_per_step` lists per optimizer step (pointwise: pairs per step), AdamW with
    linear warm-up/decay, `lr` for the encoder and `head_lr` for the fresh head; word
    embeddings stay frozen when `freeze_embeddings`.

    Residual mode (`prior_weight` > 0): every pair comes with a prior score (e.g. the
    incoming ranker's z-scored score) and the ranker's score is logit + prior_weight ·
    prior, the weight learned with the head. With `zero_head` the fresh head starts at
    zero, so before training the ranker orders exactly as the prior does: fine-tuning
    starts from the incoming ranking and learns corrections to it."""

    base: str = ""
    max_length: int = 128
    loss: str = "listwise"
    epochs: int = 1
    lists_per_step: int = 4
    lr: float = 2e-4  # short CPU schedules (hundreds of steps) need a high rate
    head_lr: float = 5e-3  # the fresh head learns faster than the pretrained encoder (0 = lr)
    weight_decay: float = 0.01
    warmup: float = 0.1
    freeze_embeddings: bool = True
    seed: int = 0
    threads: int = 2
    batch_size: int = 64  # inference pairs per forward pass
    prior_weight: float = 0.0  # > 0: residual mode, score = logit + w · prior (w learned)
    zero_head: bool = False  # start the fresh head at zero (residual mode: start = prior)


class CrossEncoderRanker:
    """Scores (query text, document text) pairs with a fine-tunable BERT cross-encoder."""

    def __init__(
        self,
        config: CrossEncoderConfig | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        **params: Any,
    ) -> None:
        self.config = resolve_config(CrossEncoderConfig, config, params, where="cross-encoder")
        if self.config.loss not in ("listwise", "pointwise"):
            raise ConfigError(f"loss must be 'listwise' or 'pointwise', not {self.config.loss!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.history: list[dict[str, float]] = []
        self.fit_seconds = 0.0
        self._train_priors: Sequence[Sequence[float]] | None = None
        self._prior_scale: Any = None
        if (model is None) != (tokenizer is None):
            raise ConfigError("pass both model and tokenizer, or neither")
        if model is None:
            self._load_base()
        elif self.config.zero_head:
            self._zero_head()

    def _head(self) -> list[Any]:
        """The fresh head's parameters (BERT's `classifier`, other families' `score`)."""
        return [
            p for n, p in self.model.named_parameters() if n.startswith(("classifier.", "score."))
        ]

    def _zero_head(self) -> None:
        import torch

        with torch.no_grad():
            for p in self._head():
                p.zero_()

    def _load_base(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from recsage.encoders.text import default_model_path

        folder = Path(self.config.base) if self.config.base else default_model_path()
        if not folder.is_dir():
            raise RecsageError(f"cross-encoder base model folder {folder} does not exist")
        verbosity = hf_logging.get_verbosity()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # the fresh head is expected: no "MISSING" report
        hf_logging.disable_progress_bar()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                str(folder), num_labels=1, local_files_only=True
            )
        except Exception as exc:
            raise RecsageError(
                f"could not load {folder} offline as a cross-encoder ({exc})"
            ) from exc
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
        if self.config.zero_head and not self.config.base:
            self._zero_head()  # only a fresh head; a saved ranker keeps its trained one

    # ---- scoring --------------------------------------------------------------------
    def _encode(self, queries: Sequence[str], docs: Sequence[str]) -> Any:
        return self.tokenizer(
            list(queries), list(docs), truncation="only_first", max_length=self.config.max_length,
            padding=True, return_tensors="pt",
        )  # fmt: skip

    def score(
        self,
        queries: Sequence[str],
        docs: Sequence[str],
        priors: Sequence[float] | np.ndarray | None = None,
    ) -> np.ndarray:
        """One score per (query, doc) pair (higher = more relevant), float32: the logit,
        plus prior_weight · prior in residual mode (which then needs `priors`)."""
        import torch

        if len(queries) != len(docs):
            raise RecsageError("queries and docs differ in length")
        prior = self._priors(priors, len(queries))
        n = len(queries)
        out = np.zeros(n, np.float32)
        if n == 0:
            return out
        order = np.argsort([-(len(q) + len(d)) for q, d in zip(queries, docs, strict=True)],
                           kind="stable")  # fmt: skip
        prev = torch.get_num_threads()
        torch.set_num_threads(max(1, self.config.threads))
        self.model.eval()
        try:
            with torch.inference_mode():
                for lo in range(0, n, self.config.batch_size):
                    idx = order[lo : lo + self.config.batch_size]
                    enc = self._encode([queries[i] for i in idx], [docs[i] for i in idx])
                    out[idx] = self.model(**enc).logits[:, 0].float().numpy()
        finally:
            torch.set_num_threads(prev)
        if prior is not None:
            out += np.float32(self.config.prior_weight) * prior
        return out

    def _priors(self, priors: Any, n: int) -> np.ndarray | None:
        if self.config.prior_weight <= 0:
            return None
        if priors is None:
            raise RecsageError("this cross-encoder is residual (prior_weight > 0): pass priors")
        out = np.nan_to_num(np.asarray(priors, np.float32).reshape(-1), nan=0.0)
        if len(out) != n:
            raise RecsageError(f"{len(out)} priors for {n} pairs")
        return out

    # ---- training -------------------------------------------------------------------
    def fit(
        self,
        queries: Sequence[str],
        docs: Sequence[Sequence[str]],
        labels: Sequence[Sequence[float]] | None = None,
        *,
        priors: Sequence[Sequence[float]] | None = None,
        progress: bool = False,
        max_minutes: float = 0.0,
    ) -> CrossEncoderRanker:
        """Fine-tune on lists: `docs[i]` are candidates for `queries[i]`.

        Listwise: the first doc of each list is the positive (labels ignored). Pointwise:
        `labels[i][j]` in {0, 1} per doc. Residual mode needs `priors[i][j]` per doc.
        `max_minutes` > 0 stops early (then the run is no longer a fixed amount of work;
        the number of steps done is in `history`).
        """
        cfg = self.config
        if len(queries) != len(docs):
            raise RecsageError("queries and docs differ in length")
        if cfg.loss == "pointwise" and labels is None:
            raise RecsageError("pointwise training needs labels")
        if not len(queries):
            raise RecsageError("no training lists")
        if cfg.prior_weight > 0 and (
            priors is None or [len(p) for p in priors] != [len(d) for d in docs]
        ):
            raise RecsageError("residual training (prior_weight > 0) needs one prior per doc")
        self._train_priors = priors
        start = time.perf_counter()
        # deterministic algorithms: the same seed gives the same weights
        with torch_threads(cfg.threads, deterministic=True, warn_only=True):
            try:
                self._train(queries, docs, labels, progress=progress, max_minutes=max_minutes)
            finally:
                self._train_priors = None  # training data is not kept with the ranker
        self.fit_seconds = time.perf_counter() - start
        return self

    def _train(
        self,
        queries: Sequence[str],
        docs: Sequence[Sequence[str]],
        labels: Sequence[Sequence[float]] | None,
        *,
        progress: bool,
        max_minutes: float,
    ) -> None:
        import torch

        cfg = self.config
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        model = self.model
        if cfg.freeze_embeddings:
            emb = getattr(getattr(model, "base_model", model), "embeddings", None)
            if emb is not None:
                emb.word_embeddings.weight.requires_grad_(False)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        head = [p for n, p in named if n.startswith(("classifier.", "score."))]
        body = [p for n, p in named if not n.startswith(("classifier.", "score."))]
        self._prior_scale = torch.nn.Parameter(torch.tensor(float(cfg.prior_weight)))
        if cfg.prior_weight > 0:
            head = [*head, self._prior_scale]
        params = head + body
        opt = torch.optim.AdamW(
            [{"params": body, "lr": cfg.lr}, {"params": head, "lr": cfg.head_lr or cfg.lr}],
            weight_decay=cfg.weight_decay,
        )
        if cfg.loss == "listwise":
            units: list[tuple[int, int]] = [(i, -1) for i in range(len(queries))]
        else:
            units = [(i, j) for i in range(len(queries)) for j in range(len(docs[i]))]
        per_step = max(1, cfg.lists_per_step)
        steps_per_epoch = (len(units) + per_step - 1) // per_step
        total = max(1, steps_per_epoch * cfg.epochs)
        warm = max(1, int(cfg.warmup * total))
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
        )
        model.train()
        done = 0  # optimizer steps over all epochs

        def run_epoch(ctx: EpochContext) -> dict[str, float]:
            nonlocal done
            perm = rng.permutation(len(units))
            epoch_loss, epoch_steps = 0.0, 0
            for lo in range(0, len(perm), per_step):
                chosen = [units[k] for k in perm[lo : lo + per_step]]
                loss = self._loss(chosen, queries, docs, labels)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                done += 1
                epoch_steps += 1
                epoch_loss += float(loss.detach())
                ctx.advance(loss=epoch_loss / epoch_steps)
                if ctx.out_of_time():  # one epoch can be long: the budget is checked per step
                    ctx.stop("max_minutes")
                    break
            return {"steps": done, "loss": epoch_loss / max(1, epoch_steps)}

        trainer = Trainer(
            TrainerConfig(
                name="cross_encoder", max_epochs=cfg.epochs, max_minutes=max_minutes,
                progress=progress,
            )
        )  # fmt: skip
        self.history = trainer.fit(run_epoch, steps=steps_per_epoch).history
        model.eval()
        if cfg.prior_weight > 0:  # the learned weight is part of the ranker from now on
            self.config.prior_weight = max(1e-6, float(self._prior_scale.detach()))

    def _loss(
        self,
        chosen: list[tuple[int, int]],
        queries: Sequence[str],
        docs: Sequence[Sequence[str]],
        labels: Sequence[Sequence[float]] | None,
    ) -> Any:
        import torch

        pri = self._train_priors
        if self.config.loss == "listwise":
            qs, ds, sizes, ps = [], [], [], []
            for i, _ in chosen:
                qs += [queries[i]] * len(docs[i])
                ds += list(docs[i])
                sizes.append(len(docs[i]))
                ps += list(pri[i]) if pri is not None else []
            logits = self.model(**self._encode(qs, ds)).logits[:, 0]
            if self.config.prior_weight > 0:
                logits = logits + self._prior_scale * torch.tensor(ps, dtype=logits.dtype)
            losses = []
            for part in torch.split(logits, sizes):  # positive first in every list
                losses.append(-torch.log_softmax(part, dim=0)[0])
            return torch.stack(losses).mean()
        assert labels is not None
        qs = [queries[i] for i, _ in chosen]
        ds = [docs[i][j] for i, j in chosen]
        y = torch.tensor([float(labels[i][j]) for i, j in chosen])
        logits = self.model(**self._encode(qs, ds)).logits[:, 0]
        if self.config.prior_weight > 0 and pri is not None:
            pt = torch.tensor([float(pri[i][j]) for i, j in chosen], dtype=logits.dtype)
            logits = logits + self._prior_scale * pt
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, y)

    # ---- persistence ----------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """An artifact folder: Hugging Face weights (safetensors) and tokenizer files as
        native files, config and training history in the manifest."""

        def write(folder: Path) -> None:
            self.model.save_pretrained(str(folder), safe_serialization=True)
            self.tokenizer.save_pretrained(str(folder))

        return write_artifact(
            path,
            CROSS_ENCODER,
            name="cross_encoder",
            config=dataclasses.asdict(self.config),
            extra={"history": self.history, "fit_seconds": self.fit_seconds},
            write=write,
        )

    @classmethod
    def load(cls, path: str | Path) -> CrossEncoderRanker:
        """Load a fine-tuned ranker saved by `save` (offline)."""
        art = read_artifact(path, CROSS_ENCODER)
        cfg = CrossEncoderConfig(**{**art.config, "base": str(art.path)})
        ranker = cls(cfg)
        ranker.history = list(art.get("history", []))
        ranker.fit_seconds = float(art.get("fit_seconds", 0.0))
        return ranker


def tiny_cross_encoder(**config: Any) -> CrossEncoderRanker:
    """A randomly initialised 2-layer BERT with the bundled MiniLM tokenizer (for tests)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from recsage.encoders.text import default_model_path

    tok = AutoTokenizer.from_pretrained(str(default_model_path()), local_files_only=True)
    bert = BertConfig(
        vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=256,
    )  # fmt: skip
    bert.num_labels = 1
    import torch

    torch.manual_seed(int(config.get("seed", 0)))
    return CrossEncoderRanker(
        CrossEncoderConfig(**config), model=BertForSequenceClassification(bert), tokenizer=tok
    )


# --------------------------------------------------------------------------- pipeline stage


def blend(base: np.ndarray, ce: np.ndarray, weight: float) -> np.ndarray:
    """weight * z(ce) + (1 - weight) * z(base), z-scored over each row's finite entries."""
    return weight * row_zscore(ce) + (1.0 - weight) * row_zscore(base)


class CrossEncoderStage(Stage):
    """Kind "cross_encoder": re-rank the `top` best candidates of the incoming `column`
    (default: the last score column) by weight·z(cross-encoder) + (1−weight)·z(incoming).
    With `prior = "incoming"` the ranker is residual: it scores logit + w·z(incoming)
    (z over the top block), so it learns corrections to the incoming order.

    `mode = "feature"`: the stage only writes its score column (the cross-encoder score of
    the top block, missing elsewhere) and keeps every candidate in place; a learned stage
    after it reads the column as a feature (score, presence, z within the block) and
    decides how much it is worth.

    The ranker is trained by `Pipeline.fit` on `train_users` validation users when that
    is > 0 (later learned stages then train on the other validation users, so they never
    see the cross-encoder's scores of its own training users), else outside fit (see
    `train_cross_encoder`) or loaded from `model_dir`; it is saved with the pipeline.
    Candidates past `top` keep their order below.
    """

    kind = "cross_encoder"
    needs_features = True  # the context then carries the users' recent histories

    @dataclass
    class Config:
        model_dir: str = ""
        top: int = 20
        weight: float = 0.5
        column: str = ""
        history: int = 10
        prior: str = "none"  # "incoming": a residual ranker over the incoming z-scores
        mode: str = "rerank"  # "feature": write the score column for a later learned stage
        train_users: int = 0  # > 0: Pipeline.fit trains the ranker on this many users
        negatives: int = 4  # hard negatives per training list (fit-time training)
        max_minutes: float = 0.0  # cap on fit-time training (0 = none)
        seed: int = 0

        def __post_init__(self) -> None:
            if self.prior not in ("none", "incoming"):
                raise ConfigError(f"prior must be 'none' or 'incoming', not {self.prior!r}")
            if self.mode not in ("rerank", "feature"):
                raise ConfigError(f"mode must be 'rerank' or 'feature', not {self.mode!r}")
            if self.top < 1 or self.train_users < 0 or self.negatives < 1:
                raise ConfigError("top and negatives must be >= 1, train_users >= 0")

    ranker: CrossEncoderRanker | None = None
    catalogue: TextCatalogue | None = None
    seconds: float = 0.0  # time spent in the cross-encoder (all calls)
    pairs: int = 0

    def _ready(self) -> tuple[CrossEncoderRanker, TextCatalogue]:
        if self.ranker is None and self.config.model_dir:
            self.load(Path(self.config.model_dir))
        if self.ranker is None or self.catalogue is None:
            raise ConfigError(
                f"stage '{self.name}' has no trained cross-encoder: run train_cross_encoder() "
                "or set model_dir"
            )
        return self.ranker, self.catalogue

    def incoming(self, cands: CandidateBatch) -> str:
        """The score column this stage re-ranks."""
        if self.config.column:
            return self.config.column
        names = [k for k in cands.scores if not k.endswith("_rank") and k != self.name]
        if not names:
            raise ConfigError(f"stage '{self.name}' needs an earlier score column")
        return names[-1]

    def top_slots(self, cands: CandidateBatch) -> np.ndarray:
        """(B, top) slot indices of the best incoming scores (-1 where fewer)."""
        base = cands.scores[self.incoming(cands)]
        key = np.where(cands.valid & np.isfinite(base), base, -np.inf)
        order = np.argsort(-key, axis=1, kind="stable")[:, : self.config.top]
        ok = np.take_along_axis(key, order, axis=1) > -np.inf
        return np.where(ok, order, -1)

    def prior_scores(self, cands: CandidateBatch, slots: np.ndarray) -> np.ndarray:
        """(B, N) incoming scores z-scored with each row's top-block mean and std (the
        residual ranker's prior; the same statistics in training and at serving)."""
        base = cands.scores[self.incoming(cands)].astype(np.float64)
        take = np.where(slots >= 0, slots, 0)
        block = np.where(slots >= 0, np.take_along_axis(base, take, axis=1), np.nan)
        mu = np.nanmean(np.where(np.isfinite(block), block, np.nan), axis=1, keepdims=True)
        sd = np.nanstd(np.where(np.isfinite(block), block, np.nan), axis=1, keepdims=True)
        return ((base - mu) / (np.nan_to_num(sd, nan=0.0) + 1e-6)).astype(np.float32)

    def cross_scores(self, cands: CandidateBatch, ctx: StageContext) -> np.ndarray:
        """(B, N) cross-encoder scores for the top slots, NaN elsewhere."""
        ranker, cat = self._ready()
        slots = self.top_slots(cands)
        b = cands.shape[0]
        hist = ctx.histories if ctx.histories is not None else np.full((b, 0), -1)
        prior = self.prior_scores(cands, slots) if self.config.prior == "incoming" else None
        queries, docs, where = [], [], []
        for r in range(b):
            q = cat.query(hist[r][hist[r] >= 0], self.config.history)
            for j in slots[r][slots[r] >= 0].tolist():
                item = int(cands.items[r, j])
                queries.append(q)
                docs.append(cat.docs[item] if item < len(cat.docs) else "")
                where.append((r, j))
        out = np.full(cands.shape, np.nan, np.float32)
        t0 = time.perf_counter()
        priors = None
        if prior is not None and where:
            rows, cols = np.array(where).T
            priors = prior[rows, cols]
        s = ranker.score(queries, docs, priors) if where else np.zeros(0, np.float32)
        self.seconds += time.perf_counter() - t0
        self.pairs += len(s)
        if where:
            rows, cols = np.array(where).T
            out[rows, cols] = s
        return out

    @property
    def feature_column(self) -> str | None:
        return self.name if self.config.mode == "feature" else None

    def score(self, cands: CandidateBatch, ctx: StageContext) -> np.ndarray:
        ce = self.cross_scores(cands, ctx)
        if self.config.mode == "feature":
            return ce
        return self.combine(cands, ce, self.config.weight)

    def order(self, cands: CandidateBatch, ctx: StageContext) -> CandidateBatch:
        if self.config.mode == "feature":  # a feature for a later stage: nothing moves
            return cands
        return super().order(cands, ctx)

    def train(self, pipe: Any, valid: Any, *, exclude: np.ndarray, say: Any) -> np.ndarray:
        """Fit-time training (`train_users` > 0 and no ranker yet): fine-tune on that many
        validation users not in `exclude`; returns the users it trained on."""
        if self.ranker is not None or self.config.model_dir or self.config.train_users <= 0:
            return np.zeros(0, np.int64)
        rng = np.random.default_rng(self.config.seed)
        pool = np.setdiff1d(valid.users, exclude)
        if len(pool) < 20:
            raise RecsageError(
                f"stage '{self.name}': only {len(pool)} validation users left to train on"
            )
        users = np.sort(rng.choice(pool, size=min(self.config.train_users, len(pool) // 2),
                                   replace=False))  # fmt: skip
        say(f"training stage {self.name} (cross-encoder) on {len(users):,} users…")
        t0 = time.perf_counter()
        data = train_cross_encoder(
            pipe, valid, stage_name=self.name, users=users, negatives=self.config.negatives,
            seed=self.config.seed, max_minutes=self.config.max_minutes,
        )  # fmt: skip
        say(f"trained stage {self.name} on {len(data.queries):,} lists in "
            f"{time.perf_counter() - t0:.1f}s")  # fmt: skip
        return users

    def combine(self, cands: CandidateBatch, ce: np.ndarray, weight: float) -> np.ndarray:
        """The stage's score column from cross-encoder scores `ce` (NaN outside the top
        block) at blend `weight` (lets a caller tune the weight without re-scoring)."""
        base = cands.scores[self.incoming(cands)]
        top = np.isfinite(ce)
        mixed = blend(np.where(top, base, np.nan), ce, weight)
        # below the re-ranked block, keep the incoming order
        pos = np.argsort(np.argsort(-np.where(cands.valid & np.isfinite(base), base, -np.inf),
                                    axis=1, kind="stable"), axis=1)  # fmt: skip
        rest = -1e6 - pos.astype(np.float64)
        out = np.where(top, mixed, np.where(cands.valid, rest, np.nan))
        return out.astype(np.float32)

    def save(self, path: Path) -> None:
        """An artifact folder: the ranker in `model/`, the item texts in `catalogue.json`."""
        ranker, catalogue = self.ranker, self.catalogue
        if ranker is None or catalogue is None:
            return

        def write(folder: Path) -> None:
            ranker.save(folder / "model")
            (folder / CATALOGUE_FILE).write_text(json.dumps(catalogue.to_json()))

        write_artifact(
            path, CROSS_ENCODER_STAGE, name=self.name, config=dataclasses.asdict(self.config),
            write=write,
        )  # fmt: skip

    def load(self, path: Path) -> None:
        art = read_artifact(path, CROSS_ENCODER_STAGE)
        self.ranker = CrossEncoderRanker.load(art.file("model"))
        catalogue = json.loads(art.file(CATALOGUE_FILE).read_text())
        self.catalogue = TextCatalogue.from_json(catalogue)


@dataclass
class TrainingLists:
    """Cross-encoder training data built from pipeline candidates."""

    queries: list[str] = field(default_factory=list)
    docs: list[list[str]] = field(default_factory=list)
    users: list[int] = field(default_factory=list)
    priors: list[list[float]] = field(default_factory=list)  # per doc (residual stages)
    skipped: int = 0  # users whose target could not be used (see `training_lists`)
    outside_pool: int = 0  # lists whose positive ranked below the pool


def training_lists(
    pipe: Any,
    split: Any,
    stage: CrossEncoderStage,
    *,
    users: np.ndarray | None = None,
    negatives: int = 4,
    pool: int = 30,
    seed: int = 0,
    batch_size: int = 256,
    outside_pool: bool = True,
) -> TrainingLists:
    """For each user of `split` (or `users`): the query text of its history, its target's
    text first, then `negatives` hard negatives sampled from the `pool` best candidates the
    pipeline ranks before `stage`. A target ranked below the pool is still used when
    `outside_pool` (counted), else skipped; a residual stage (`prior = "incoming"`) also
    skips targets the pipeline did not retrieve at all (they have no incoming score) and
    records each doc's prior."""
    from recsage.types import QueryBatch

    assert stage.catalogue is not None
    idx = next((k for k, s in enumerate(pipe.stages) if s is stage), None)
    if idx is None:
        raise ConfigError(f"stage '{stage.name}' is not part of this pipeline")
    rng = np.random.default_rng(seed)
    seqs = split.train.sequences()
    us = split.users if users is None else np.asarray(users, np.int64)
    targets = split.targets.tocsr()
    out = TrainingLists()
    cat = stage.catalogue
    for lo in range(0, len(us), batch_size):
        u = us[lo : lo + batch_size]
        batch = QueryBatch(u, [seqs[i] for i in u], pipe.n_items)
        cands, _, _ = pipe._run_until(batch, idx)
        base = cands.scores[stage.incoming(cands)] if cands.scores else None
        residual = stage.config.prior == "incoming" and base is not None
        prior = stage.prior_scores(cands, stage.top_slots(cands)) if residual else None
        for r, user in enumerate(u.tolist()):
            tgt = set(targets.indices[targets.indptr[user] : targets.indptr[user + 1]].tolist())
            items = cands.items[r]
            order = np.arange(len(items))
            if base is not None:
                key = np.where(items >= 0, base[r], -np.inf)
                order = np.argsort(-np.nan_to_num(key, nan=-np.inf), kind="stable")
            order = order[items[order] >= 0]
            ranked = items[order]
            top = ranked[:pool]
            pos = [int(i) for i in top if int(i) in tgt]
            below = False
            if not pos and outside_pool:
                if residual:  # needs the target's incoming score: retrieved, ranked lower
                    pos = [int(i) for i in ranked[pool:] if int(i) in tgt][:1]
                else:
                    pos = sorted(tgt)[:1]
                below = bool(pos)
            neg = [int(i) for i in top if int(i) not in tgt]
            if not pos or len(neg) < 1:
                out.skipped += 1
                continue
            out.outside_pool += below
            pick = sorted(rng.choice(len(neg), size=min(negatives, len(neg)), replace=False))
            out.queries.append(cat.query(seqs[user], stage.config.history))
            out.docs.append([cat.docs[pos[0]]] + [cat.docs[neg[k]] for k in pick])
            out.users.append(int(user))
            if prior is not None:
                slot = {int(items[j]): j for j in order.tolist()}
                out.priors.append(
                    [float(prior[r, slot[i]]) for i in (pos[0], *[neg[k] for k in pick])]
                )
    return out


S = TypeVar("S", bound="CrossEncoderStage")


def stage_to_train(pipe: Any, kind: type[S], stage_name: str | None = None) -> S:
    """The pipeline's (first, or named) stage of class `kind`, given the current catalogue
    texts: the common start of training a text-reading ranking stage after `Pipeline.fit`."""
    stages = [s for s in pipe.stages if isinstance(s, kind)]
    if stage_name is not None:
        stages = [s for s in stages if s.name == stage_name]
    if not stages:
        raise ConfigError(
            f"the pipeline has no {kind.kind} stage" + (f" '{stage_name}'" if stage_name else "")
        )
    if pipe.item_table is None:
        raise RecsageError(f"fit the pipeline's channels before training its {kind.kind} stage")
    stage = stages[0]
    stage.catalogue = TextCatalogue.from_item_table(pipe.item_table)
    return stage


def train_cross_encoder(
    pipe: Any,
    split: Any,
    *,
    stage_name: str | None = None,
    ranker: CrossEncoderRanker | None = None,
    users: np.ndarray | None = None,
    negatives: int = 4,
    pool: int = 30,
    seed: int = 0,
    progress: bool = False,
    max_minutes: float = 0.0,
    outside_pool: bool = True,
) -> TrainingLists:
    """Fine-tune the pipeline's cross-encoder stage on `split`'s targets (e.g. the LOO
    validation split, whose histories exclude the targets), listwise by default. A
    residual stage (`prior = "incoming"`) gets a residual ranker (zero-initialised head,
    prior weight 1) unless `ranker` is given."""
    stage = stage_to_train(pipe, CrossEncoderStage, stage_name)
    data = training_lists(pipe, split, stage, users=users, negatives=negatives, pool=pool,
                          seed=seed, outside_pool=outside_pool)  # fmt: skip
    residual = stage.config.prior == "incoming"
    if ranker is None:
        ranker = (
            CrossEncoderRanker(seed=seed, prior_weight=1.0, zero_head=True)
            if residual
            else CrossEncoderRanker(seed=seed)
        )
    if residual and ranker.config.prior_weight <= 0:
        raise ConfigError(f"stage '{stage.name}' is residual: its ranker needs prior_weight > 0")
    stage.ranker = ranker
    ranker.fit(data.queries, data.docs, priors=data.priors if residual else None,
               progress=progress, max_minutes=max_minutes)  # fmt: skip
    return data


__all__ = [
    "CrossEncoderConfig",
    "CrossEncoderRanker",
    "CrossEncoderStage",
    "TextCatalogue",
    "TrainingLists",
    "blend",
    "stage_to_train",
    "tiny_cross_encoder",
    "train_cross_encoder",
    "training_lists",
]
