"""Channel base: fit(train, resources) then retrieve(batch, n) -> (items, scores).

Channels are fitted on a training `Dataset` and retrieve from query histories (item
sequences), so the same fitted channel serves known users, fresh clicks and cold users.
History items are never returned.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from recsage.data.schema import Dataset
from recsage.errors import ConfigError
from recsage.types import QueryBatch, top_k


@dataclass
class Resources:
    """Shared by all channels and stages: item text vectors, popularity, the training data."""

    item_text_vectors: np.ndarray | None = None
    text_encoder: Any = None
    #: the validation split while fitting (for channels that early-stop on it)
    valid: Any = None


def _exclude_top(scores: np.ndarray, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
    eligible = np.ones(scores.shape, bool)
    eligible[batch.history.nonzero()] = False
    eligible &= np.isfinite(scores)
    items = top_k(scores, eligible, n)
    if items.shape[1] < n:  # n beyond the catalogue: pad so every channel returns (B, n)
        items = np.pad(items, ((0, 0), (0, n - items.shape[1])), constant_values=-1)
    s = np.take_along_axis(scores, np.maximum(items, 0), axis=1).astype(np.float32)
    return items, np.where(items >= 0, s, np.nan).astype(np.float32)


class Channel(ABC):
    """fit(data, resources) then retrieve(batch, n) -> (items (B, n), scores (B, n))."""

    kind: ClassVar[str]
    #: True for channels that read the live item vectors and so see items added after fit
    grows: ClassVar[bool] = False

    def __init__(self, name: str, *, n: int = 100, **params: Any) -> None:
        self.name = name
        self.n = int(n)
        self.n_items_fitted = 0
        cfg_cls = getattr(self, "Config", None)
        if cfg_cls is None:
            if params:
                raise ConfigError(f"channel '{name}' ({self.kind}) takes no parameters {params}")
            self.config: Any = None
        else:
            names = {f.name for f in dataclasses.fields(cfg_cls)}
            bad = sorted(set(params) - names)
            if bad:
                raise ConfigError(
                    f"channel '{name}' ({self.kind}): unknown parameter(s) {', '.join(bad)}; "
                    f"valid: {', '.join(sorted(names))}"
                )
            self.config = cfg_cls(**params)

    def spec(self) -> dict[str, Any]:
        """What the TOML spec says about this channel."""
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "n": self.n}
        if self.config is not None:
            out |= dataclasses.asdict(self.config)
        return out

    @abstractmethod
    def fit(self, data: Dataset, resources: Resources) -> None: ...

    @abstractmethod
    def retrieve(self, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]: ...

    def state(self) -> dict[str, np.ndarray]:
        """Arrays to persist (models save their own directories)."""
        return {}

    def load_state(self, state: dict[str, np.ndarray], resources: Resources) -> None:  # noqa: B027
        """Restore from `state()` (stateless channels need nothing)."""
