"""Memory guard: refuse a fit that cannot fit in memory before allocating anything.

`fit_bytes(name, config, n_users, n_items, nnz, pairs)` estimates a model's peak fit memory
from the data's shape (the formulas follow each `_fit`); `check_fit_memory` compares it with
the budget (RECSAGE_MEMORY_LIMIT when set, e.g. "24GiB", else the memory available now)
and raises `MemoryBudgetError` naming the models that do fit instead. `Recommender.fit`
calls it first, so the CLI, the pipeline and library users all get the refusal.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsage.errors import ConfigError

LIMIT_ENV = "RECSAGE_MEMORY_LIMIT"
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
#: models to offer instead, in order of preference
ALTERNATIVES = ("als", "itemknn", "pop")


class MemoryBudgetError(ConfigError):
    """A model's fit would need more memory than the budget allows."""


def parse_bytes(text: str) -> int:
    """'24GiB', '512m', '1e9' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text)
    if not m:
        raise ConfigError(f"{LIMIT_ENV}: cannot read '{text}' as a size (e.g. 24GiB, 512MiB)")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def available_bytes() -> int:
    """Memory this process may use: MemAvailable (Linux), else physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return 2**63 - 1


def memory_budget() -> int:
    """RECSAGE_MEMORY_LIMIT when set (capped by what is available), else available memory."""
    avail = available_bytes()
    env = os.environ.get(LIMIT_ENV)
    return min(parse_bytes(env), avail) if env else avail


def _cfg(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if is_dataclass(config) and not isinstance(config, type):
        return asdict(config)
    return dict(config)


def fit_bytes(name: str, config: Any, *, n_users: int, n_items: int, nnz: int, pairs: int) -> int:
    """Estimated peak bytes to fit model `name` (0 when there is no estimate for it).

    `nnz` is the number of distinct (user, item) pairs, `pairs` the number of item
    co-occurrence pairs (sum over users of history length squared), an upper bound on
    the non-zeros of X'X.
    """
    cfg = _cfg(config)
    data = 12 * nnz  # the CSR training matrix (float32 data, int32/64 indices)
    if name == "ease":
        # float64 Gram matrix, its inverse and the scaled copy, then float32 weights
        return data + 28 * n_items * n_items
    if name == "itemknn":
        co = min(pairs, n_items * n_items)
        return data + 3 * 12 * co  # X'X, the similarity copy and the top-k rebuild
    if name == "als":
        f = int(cfg.get("factors", 64))
        return 3 * data + 2 * 4 * f * (n_users + n_items) + 8 * f * f * 8
    if name == "pop":
        return data + 4 * n_items
    if name in ("sasrec", "two_tower"):
        d = int(cfg.get("dim", 64))
        params = 4 * 4 * d * n_items  # weights, gradients, two Adam moments
        batch = int(cfg.get("batch_size", 128))
        rows = batch * int(cfg.get("max_len", 1 if name == "two_tower" else 200))
        if name == "sasrec" and cfg.get("loss", "ce") == "ce":
            chunk_logits = 2 * min(rows, max(16, (64 << 20) // (4 * max(n_items, 1)))) * n_items * 4
        else:
            chunk_logits = 2 * rows * (int(cfg.get("negatives", 256)) + 1) * 4
        return data + params + chunk_logits + 16 * nnz  # + the sequences
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _data_shape(data: Any) -> dict[str, int]:
    inter = data.interactions
    key = np.unique(inter.user * np.int64(max(data.n_items, 1)) + inter.item)
    per_user = np.bincount(key // max(data.n_items, 1), minlength=data.n_users).astype(np.int64)
    return {
        "n_users": int(data.n_users),
        "n_items": int(data.n_items),
        "nnz": len(key),
        "pairs": int((per_user * per_user).sum()),
    }


def check_fit_memory(name: str, config: Any, data: Any, *, budget: int | None = None) -> int:
    """Raise MemoryBudgetError when fitting `name` on `data` would exceed the budget.

    Returns the estimate (bytes). The error names the models that would fit instead.
    """
    shape = _data_shape(data)
    need = fit_bytes(name, config, **shape)
    budget = memory_budget() if budget is None else budget
    if need <= budget:
        return need
    fits = [
        alt for alt in ALTERNATIVES if alt != name and 0 < fit_bytes(alt, None, **shape) <= budget
    ]
    why = {
        "ease": f"a dense {shape['n_items']:,} x {shape['n_items']:,} item-item matrix",
        "itemknn": "the item co-occurrence matrix",
        "sasrec": "the item embeddings and softmax logits (try loss=sampled)",
        "two_tower": "the item embeddings and logits",
    }.get(name, "its parameters")
    instead = f"use {' or '.join(fits)} instead" if fits else "no built-in model fits this budget"
    raise MemoryBudgetError(
        f"{name}: fitting on {shape['n_items']:,} items x {shape['n_users']:,} users needs "
        f"about {_human(need)} for {why}, more than the {_human(budget)} available "
        f"(set {LIMIT_ENV} to change the budget); {instead}"
    )


__all__ = [
    "ALTERNATIVES",
    "LIMIT_ENV",
    "MemoryBudgetError",
    "available_bytes",
    "check_fit_memory",
    "fit_bytes",
    "memory_budget",
    "parse_bytes",
]
