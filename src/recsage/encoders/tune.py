"""Contrastive fine-tuning of the text encoder on the catalogue's own co-occurrence.

A pretrained sentence encoder places items by what their texts say; a recommender needs
them placed by what people consume together. Items that follow each other in training
histories are positive pairs; the other items of a batch are the negatives (in-batch
softmax over scaled cosines, the MultipleNegativesRanking objective of sentence-
transformers, written here as a short torch loop so it runs offline with our `Trainer`:
progress, time budget). Only training sequences are read, so a model tuned on the
validation split's training part never sees validation or test targets. The result is a
sentence-transformers folder: `TextEncoder(folder)`, `[text] model = "folder"` in a spec.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsage.component import resolve_config
from recsage.errors import ConfigError, RecsageError
from recsage.trainer import EpochContext, Trainer, TrainerConfig, torch_threads


def cooccurrence_pairs(
    sequences: Sequence[np.ndarray], *, window: int = 1, max_pairs: int = 20_000, seed: int = 0
) -> np.ndarray:
    """(P, 2) item pairs (a, b), b within `window` steps after a in one history, a != b;
    a uniform sample of at most `max_pairs` (the most frequent pairs are sampled most)."""
    if window < 1:
        raise ConfigError(f"window must be >= 1, got {window}")
    parts = []
    for s in sequences:
        s = np.asarray(s, np.int64)
        for d in range(1, window + 1):
            if len(s) > d:
                parts.append(np.stack([s[:-d], s[d:]], axis=1))
    if not parts:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate(parts)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    if len(pairs) > max_pairs:
        rng = np.random.default_rng(seed)
        pairs = pairs[np.sort(rng.choice(len(pairs), size=max_pairs, replace=False))]
    return pairs


@dataclass
class TuneConfig:
    """Fine-tuning settings: `epochs` passes over the pairs in batches of `batch_size`
    (each batch's other items are its negatives), AdamW at `lr` with linear warm-up/decay,
    cosine similarities times `scale` as logits; `max_minutes` > 0 caps the time."""

    epochs: int = 1
    batch_size: int = 64
    lr: float = 2e-5
    warmup: float = 0.1
    scale: float = 20.0
    max_length: int = 64
    threads: int = 1
    seed: int = 0
    max_minutes: float = 0.0
    progress: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ConfigError("batch_size must be >= 2 (the other pairs are the negatives)")


def tune_encoder(
    texts: Sequence[str],
    pairs: np.ndarray,
    out: str | Path,
    *,
    base: str | Path | None = None,
    config: TuneConfig | None = None,
    **params: Any,
) -> dict[str, Any]:
    """Fine-tune `base` (default: the bundled MiniLM) so that `texts[a]` and `texts[b]`
    of every pair embed close; save a sentence-transformers folder at `out`. Returns the
    training record (steps, loss per epoch, seconds)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from recsage.encoders.text import default_model_path

    cfg = resolve_config(TuneConfig, config, params, where="encoder tuning")
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    if len(pairs) < cfg.batch_size:
        raise RecsageError(
            f"{len(pairs)} co-occurrence pairs, fewer than one batch of {cfg.batch_size}"
        )
    if pairs.max(initial=0) >= len(texts) or pairs.min(initial=0) < 0:
        raise RecsageError("a pair refers to an item without a text")
    folder = Path(base) if base else default_model_path()
    start = time.perf_counter()
    with torch_threads(cfg.threads, deterministic=True, warn_only=True):
        torch.manual_seed(cfg.seed)
        model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        model.max_seq_length = cfg.max_length
        rng = np.random.default_rng(cfg.seed)
        steps = len(pairs) // cfg.batch_size
        total = max(1, steps * cfg.epochs)
        warm = max(1, int(cfg.warmup * total))
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
        )
        model.train()

        def embed(batch_texts: list[str]) -> Any:
            prep = getattr(model, "preprocess", None) or model.tokenize  # 6.x renamed it
            feats = prep(batch_texts)
            emb = model(feats)["sentence_embedding"]
            return torch.nn.functional.normalize(emb, dim=-1)

        def run_epoch(ctx: EpochContext) -> dict[str, float]:
            order = rng.permutation(len(pairs))
            total_loss, done = 0.0, 0
            for k in range(steps):
                batch = pairs[order[k * cfg.batch_size : (k + 1) * cfg.batch_size]]
                a = embed([texts[i] for i in batch[:, 0]])
                b = embed([texts[i] for i in batch[:, 1]])
                logits = cfg.scale * a @ b.T
                # the same item can sit in two pairs of a batch: mask those false negatives
                same = torch.as_tensor(batch[:, 1][None, :] == batch[:, 1][:, None])
                logits = logits.masked_fill(same & ~torch.eye(len(batch), dtype=torch.bool),
                                            float("-inf"))  # fmt: skip
                target = torch.arange(len(batch))
                loss = torch.nn.functional.cross_entropy(logits, target)
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                total_loss += float(loss.detach())
                done += 1
                ctx.advance(loss=total_loss / done)
                if ctx.out_of_time():
                    ctx.stop("max_minutes")
                    break
            return {"steps": done, "loss": total_loss / max(1, done)}

        trainer = Trainer(
            TrainerConfig(
                name="encoder_tuning", max_epochs=cfg.epochs, max_minutes=cfg.max_minutes,
                progress=cfg.progress,
            )
        )  # fmt: skip
        history = trainer.fit(run_epoch, steps=steps).history
        model.eval()
        Path(out).mkdir(parents=True, exist_ok=True)
        model.save(str(out))
    return {
        "base": str(folder),
        "pairs": len(pairs),
        "history": history,
        "seconds": time.perf_counter() - start,
        "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
    }


__all__ = ["TuneConfig", "cooccurrence_pairs", "tune_encoder"]
