"""Channel base: fit(train, resources) then retrieve(batch, n) -> (items, scores).

Channels are fitted on a training `Dataset` and retrieve from query histories (item
sequences), so the same fitted channel serves known users, fresh clicks and cold users.
History items are never returned.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recsage.component import TextEncoderLike, build_config, check_params
from recsage.data.schema import Dataset
from recsage.types import QueryBatch, top_k

CHANNEL_STATE = "state.safetensors"


@dataclass
class Resources:
    """Shared by all channels and stages: item text vectors, popularity, the training data."""

    item_text_vectors: np.ndarray | None = None
    text_encoder: TextEncoderLike | None = None
    #: the validation split while fitting (for channels that early-stop on it)
    valid: Any = None


def exclude_top(scores: np.ndarray, batch: QueryBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-n per row of a (B, n_items) score matrix, never a history or blocked item.

    A row whose eligible scores are all equal carries no preference (e.g. a model scoring an
    empty history): it returns no items rather than catalogue order under the channel's name.
    """
    eligible = np.ones(scores.shape, bool)
    eligible[batch.history.nonzero()] = False
    if batch.blocked is not None:
        eligible[:, batch.blocked[: scores.shape[1]]] = False
    finite = np.isfinite(scores)
    # every open item scored, all equally: the channel has no preference for this row
    scored_all = (finite | ~eligible).all(axis=1)
    eligible &= finite
    lo = np.where(eligible, scores, np.inf).min(axis=1, initial=np.inf)
    hi = np.where(eligible, scores, -np.inf).max(axis=1, initial=-np.inf)
    eligible[(hi == lo) & scored_all & (eligible.sum(axis=1) > 1)] = False
    items = top_k(scores, eligible, n)
    if items.shape[1] < n:  # n beyond the catalogue: pad so every channel returns (B, n)
        items = np.pad(items, ((0, 0), (0, n - items.shape[1])), constant_values=-1)
    s = np.take_along_axis(scores, np.maximum(items, 0), axis=1).astype(np.float32)
    return items, np.where(items >= 0, s, np.nan).astype(np.float32)


class Channel(ABC):
    """fit(data, resources) then retrieve(batch, n) -> (items (B, n), scores (B, n))."""

    kind: ClassVar[str]
    #: why an item this channel found is in the list ({name} = the channel's name)
    reason: ClassVar[str] = "found by the {name} channel"
    #: True for channels that read the live item vectors and so see items added after fit
    grows: ClassVar[bool] = False
    #: the settings dataclass (None: the channel takes no parameters besides `n`)
    Config: ClassVar[type[Any] | None] = None

    def __init__(self, name: str, *, n: int = 100, **params: Any) -> None:
        self.name = name
        self.n = int(n)
        self.n_items_fitted = 0
        where = f"channel '{name}' ({self.kind})"
        cfg_cls = type(self).Config
        if cfg_cls is None:
            check_params(params, (), where=where)
        self.config: Any = None if cfg_cls is None else build_config(cfg_cls, params, where=where)

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

    def save(self, folder: Path) -> None:
        """Write the fitted channel into `folder` (a saved pipeline gives each channel one):
        the `state()` arrays as safetensors."""
        from safetensors.numpy import save_file

        folder.mkdir(parents=True, exist_ok=True)
        state = self.state()
        if state:
            arrays = {k: np.ascontiguousarray(v) for k, v in state.items()}
            save_file(arrays, str(folder / CHANNEL_STATE))

    def load(self, folder: Path, resources: Resources) -> None:
        """Restore what `save` wrote into `folder`."""
        from safetensors.numpy import load_file

        path = folder / CHANNEL_STATE
        self.load_state(load_file(str(path)) if path.exists() else {}, resources)
