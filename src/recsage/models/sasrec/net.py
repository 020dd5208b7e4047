"""SASRec config, network and the chunked full-softmax cross-entropy."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from recsage.errors import ConfigError, RecsageError

LOSSES = ("ce", "sampled", "bce")


TEXT_MODES = ("none", "add", "gate", "text_only")


WINDOWS = ("last", "all")


EMB_INITS = ("xavier", "normal", "svd", "text")


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass
class SASRecConfig:
    """SASRec hyper-parameters (saved with the model).

    `loss`: "ce" full softmax over the catalogue; "sampled" softmax over `negatives` shared
    negatives per batch drawn by `sampler` ("uniform" or "popularity") with logQ correction;
    "bce" one uniform negative per position (original SASRec). `window`: train on each
    user's last `max_len` items ("last") or on every `max_len` chunk of longer histories
    ("all"). `attn_dropout` (on attention weights) is off by default: on CPU it forces the
    unfused attention path, which costs more than it gives. `patience` counts validation
    evaluations without a better NDCG@10. `emb_init` sets the ID embeddings' start: "xavier"
    (normal, tiny for big catalogues), "normal" (N(0, 1/dim)), or "svd" (item factors of
    the popularity-normalized user x item matrix, scaled to the same spread), or "text"
    (the item text vectors' top principal components, same spread: semantically close
    items start close; needs item text vectors, in any `text` mode).
    `precision` "bf16" (or "auto": bf16 where the CPU supports it natively) runs the
    full-softmax loss's matrix products in bfloat16; all else, and scoring, is float32.
    `text`: "none", "add" (ID embedding + adapter over frozen text vectors), "gate" (two
    views, ID embedding and adapter over frozen text vectors, fused per dimension by a
    learned sigmoid gate over both: g * id + (1 - g) * sem) or "text_only" (adapter only:
    inductive). `gate_popularity` (text="gate") lets the gate also read the item's
    standardized log training frequency through a per-dimension slope started at 0, so the
    model can learn to trust the text view more for tail items, whose ID rows see few
    updates. `max_minutes` > 0 ends training (validating the last epoch)
    before an epoch that would, at the mean epoch cost so far, overrun that budget.
    `threads` is torch's intra-op thread count while training; 1 by default: at dim 64 the
    ops are too small to split, and on a shared 2-core machine a second thread spin-waits
    for a core (measured: an ML-1M epoch 15 s with 1 thread, 35-43 s with 2).
    `schedule` "cosine" decays the learning rate per step to `min_lr_ratio` * lr at
    `max_epochs` (so `max_epochs` is then part of the recipe, not only a cap).
    """

    dim: int = 64
    layers: int = 2
    heads: int = 1
    ffn_mult: int = 1
    max_len: int = 200
    dropout: float = 0.2
    attn_dropout: float = 0.0
    emb_init: str = "xavier"
    loss: str = "ce"
    negatives: int = 256
    sampler: str = "uniform"
    lr: float = 1e-3
    weight_decay: float = 0.0
    clip_grad: float = 0.0
    schedule: str = "constant"
    min_lr_ratio: float = 0.05
    batch_size: int = 128
    max_epochs: int = 200
    patience: int = 10
    eval_every: int = 1
    max_minutes: float = 0.0
    window: str = "last"
    seed: int = 0
    threads: int = 1
    precision: str = "auto"
    text: str = "none"
    gate_popularity: bool = False
    progress: bool = True

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        checks: list[tuple[bool, str]] = [
            (self.loss in LOSSES, f"loss must be one of {LOSSES}, got {self.loss!r}"),
            (self.text in TEXT_MODES, f"text must be one of {TEXT_MODES}, got {self.text!r}"),
            (self.window in WINDOWS, f"window must be one of {WINDOWS}, got {self.window!r}"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}"),
            (self.sampler in ("uniform", "popularity"), "sampler must be uniform|popularity"),
            (self.schedule in ("constant", "cosine"), "schedule must be constant|cosine"),
            (self.emb_init in EMB_INITS, f"emb_init must be one of {EMB_INITS}"),
            (self.dim >= 1 and self.layers >= 0 and self.heads >= 1, "dim/layers/heads"),
            (self.dim % self.heads == 0, f"dim {self.dim} must be divisible by heads"),
            (self.max_len >= 2, "max_len must be >= 2"),
            (0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)"),
            (0.0 <= self.attn_dropout < 1.0, "attn_dropout must be in [0, 1)"),
            (self.batch_size >= 1 and self.max_epochs >= 0, "batch_size/max_epochs"),
            (self.negatives >= 1, "negatives must be >= 1"),
            (self.eval_every >= 1 and self.patience >= 1, "eval_every/patience must be >= 1"),
            (self.threads >= 1 and self.ffn_mult >= 1, "threads/ffn_mult must be >= 1"),
            (not self.gate_popularity or self.text == "gate", "gate_popularity needs text=gate"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"sasrec: {message}")


class _Block(nn.Module):
    """Pre-LN Transformer block: causal multi-head self-attention, then a GELU FFN."""

    def __init__(
        self, dim: int, heads: int, dropout: float, ffn_dim: int, attn_dropout: float
    ) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.ff1 = nn.Linear(dim, ffn_dim)
        self.ff2 = nn.Linear(ffn_dim, dim)
        self.drop = nn.Dropout(dropout)
        self.p_attn = attn_dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        p = self.p_attn if self.training else 0.0
        if mask is None:
            a = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.ff2(F.gelu(self.ff1(self.ln2(x)))))


class SASRecNet(nn.Module):
    """Item table (ID and/or text adapter) + learned positions + causal blocks + final LN.

    Token 0 is padding; item index i is token i + 1. Sequences are right-aligned, so the
    newest item always sits at position `max_len - 1` whatever the padding.
    """

    def __init__(self, cfg: SASRecConfig, n_items: int, text_dim: int = 0) -> None:
        super().__init__()
        self.dim = cfg.dim
        self.max_len = cfg.max_len
        self.text = cfg.text
        self.text_dim = text_dim if cfg.text != "none" else 0
        self.id_emb = (
            nn.Embedding(n_items + 1, cfg.dim, padding_idx=0) if cfg.text != "text_only" else None
        )
        self.adapter: nn.Module | None = None
        if cfg.text != "none":
            if text_dim < 1:
                raise ConfigError(f"sasrec: text={cfg.text!r} needs item text vectors")
            self.adapter = nn.Sequential(
                nn.Linear(text_dim, 2 * cfg.dim), nn.GELU(), nn.Linear(2 * cfg.dim, cfg.dim)
            )
        # two-view fusion: per-dimension gate from both views (starts at 0.5 / 0.5)
        self.gate = nn.Linear(2 * cfg.dim, cfg.dim) if cfg.text == "gate" else None
        # popularity-aware gate: + slope * standardized log frequency (slope starts at 0)
        self.gate_pop = nn.Parameter(torch.zeros(cfg.dim)) if cfg.gate_popularity else None
        if cfg.gate_popularity:  # saved with the weights (only then: older files load)
            self.register_buffer("item_freq", torch.zeros(n_items + 1))
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.dim)
        self.emb_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            _Block(cfg.dim, cfg.heads, cfg.dropout, cfg.ffn_mult * cfg.dim, cfg.attn_dropout)
            for _ in range(cfg.layers)
        )
        self.ln_f = nn.LayerNorm(cfg.dim)
        for name, param in self.named_parameters():
            if param.dim() > 1:
                nn.init.xavier_normal_(param)
            elif name.endswith("bias"):
                nn.init.zeros_(param)
        if self.id_emb is not None:
            with torch.no_grad():
                if cfg.emb_init != "xavier":
                    self.id_emb.weight.normal_(0.0, cfg.dim**-0.5)
                self.id_emb.weight[0].zero_()

    def item_table(self, text_vectors: torch.Tensor | None) -> torch.Tensor:
        """(n_tokens, dim) embeddings, row 0 = padding; `text_vectors` has a zero row 0."""
        table: torch.Tensor | None = self.id_emb.weight if self.id_emb is not None else None
        if self.adapter is not None:
            if text_vectors is None:
                raise RecsageError("this SASRec model needs item text vectors")
            ada = self.adapter(text_vectors)
            ada = torch.cat([torch.zeros_like(ada[:1]), ada[1:]])
            if self.gate is not None and table is not None:
                g = self.gate_values(table, ada)
                table = g * table + (1.0 - g) * ada
            else:
                table = ada if table is None else table + ada
        assert table is not None
        return table

    def gate_values(self, id_table: torch.Tensor, sem_table: torch.Tensor) -> torch.Tensor:
        """Per-item, per-dimension weight of the ID view in (0, 1) (text="gate" only)."""
        assert self.gate is not None
        logits = self.gate(torch.cat([id_table, sem_table], dim=-1))
        if self.gate_pop is not None:
            logits = logits + self.get_buffer("item_freq").unsqueeze(-1) * self.gate_pop
        return torch.sigmoid(logits)

    def set_item_frequency(self, counts: np.ndarray) -> None:
        """Store each item's standardized log training frequency (row 0 = padding: 0);
        only the popularity-aware gate reads it."""
        if self.gate_pop is None:
            return
        f = np.log1p(np.asarray(counts, np.float64))
        z = (f - f.mean()) / (f.std() + 1e-6)
        buf = self.get_buffer("item_freq")
        with torch.no_grad():
            buf[1:] = torch.as_tensor(z, dtype=buf.dtype)
            buf[0] = 0.0

    def encode(self, tokens: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, T, dim) for left-padded token rows (B, T), T <= max_len."""
        t = tokens.shape[1]
        valid = tokens > 0
        pos = torch.arange(self.max_len - t, self.max_len, device=tokens.device)
        x = table[tokens] * math.sqrt(self.dim) + self.pos_emb(pos)
        x = self.emb_drop(x) * valid.unsqueeze(-1).to(x.dtype)
        mask: torch.Tensor | None = None
        if not bool(valid.all()):
            # causal, never attend to padding, but every row may see itself (no empty rows)
            causal = torch.ones(t, t, dtype=torch.bool, device=tokens.device).tril()
            eye = torch.eye(t, dtype=torch.bool, device=tokens.device)
            allowed = (causal & (valid[:, None, :] | eye)).unsqueeze(1)
            # an additive float mask is built once here instead of once per layer by SDPA
            mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device)
            mask.masked_fill_(~allowed, float("-inf"))
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)


# Logit blocks stay under glibc's largest mmap threshold (32 MiB): big fresh allocations
# page-fault on every step, and that (not the arithmetic) dominated full-softmax training.
_CHUNK_BYTES = 8 << 20


class _SoftmaxCE(torch.autograd.Function):
    """Mean full-softmax cross-entropy of `h @ items.T`, computed in row chunks.

    The gradients are formed chunk by chunk during the forward pass (softmax minus the
    one-hot target), so the (rows x items) logit matrix never exists whole and nothing is
    recomputed: same three matrix products as autograd, a fraction of the memory traffic.
    With `bf16` the three products run in bfloat16 (softmax and sums stay float32).
    """

    @staticmethod
    def forward(
        ctx: Any, h: torch.Tensor, items: torch.Tensor, y: torch.Tensor, bf16: bool
    ) -> torch.Tensor:
        h, items = h.float(), items.float()
        mm_dtype = torch.bfloat16 if bf16 else torch.float32
        h_mm, items_mm = h.to(mm_dtype), items.to(mm_dtype)
        rows, n = h.shape[0], items.shape[0]
        chunk = max(16, _CHUNK_BYTES // (4 * max(n, 1)))
        grad_h = torch.empty_like(h)
        grad_items = torch.zeros_like(items)
        total = torch.zeros((), dtype=torch.float64)
        scale = 1.0 / max(rows, 1)
        for lo in range(0, rows, chunk):
            hc, yc = h_mm[lo : lo + chunk], y[lo : lo + chunk]
            logits = (hc @ items_mm.T).float()
            lse = torch.logsumexp(logits, dim=1)
            picked = logits.gather(1, yc.unsqueeze(1)).squeeze(1)
            total += (lse - picked).sum(dtype=torch.float64)
            probs = logits.sub_(lse.unsqueeze(1)).exp_()
            probs[torch.arange(len(yc)), yc] -= 1.0
            probs = probs.mul_(scale).to(mm_dtype)
            grad_h[lo : lo + chunk] = probs @ items_mm
            if bf16:
                grad_items += (probs.T @ hc).float()
            else:
                grad_items.addmm_(probs.T, hc)
        ctx.save_for_backward(grad_h, grad_items)
        return (total * scale).to(torch.float32)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        grad_h, grad_items = ctx.saved_tensors
        return grad_h * grad, grad_items * grad, None, None


def softmax_cross_entropy(
    h: torch.Tensor, items: torch.Tensor, y: torch.Tensor, *, bf16: bool = False
) -> torch.Tensor:
    """`F.cross_entropy(h @ items.T, y)` (mean) in float32, chunked; `bf16` products."""
    out: torch.Tensor = _SoftmaxCE.apply(h, items, y, bf16)
    return out
