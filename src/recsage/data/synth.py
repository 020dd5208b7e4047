"""Synthetic interaction data at any scale, with structure a recommender can learn.

`generate(SynthConfig(users=..., items=..., events=...))` plants three things:

- popularity: item weight ∝ rank^-`zipf` (a power law over a random item order);
- categories: every item has one category; every user has `favourites` favourite
  categories (drawn by category weight) that a share `p_category` of their steps come from;
- sequences: every item has `successors` fixed successors (the next items in a random
  chain through its category); with probability `p_next` a user's next item is one of
  the previous item's successors (the first most likely), so order matters.

The rest of the steps (1 - p_next - p_category) are global popularity draws. Item text
("title", "text") names the category and its theme words, so text encoders see the
category structure too. Users' lengths are `min_length` plus a log-normal share of the
remaining events; timestamps increase within each user.

`write_synth(dataset, folder)` writes RecBole atomic files (`synth.inter`, `synth.item`)
that `load_dataset(folder)` reads back, or Parquet tables for `load_table`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsage.data.schema import Dataset, Interactions, LoadReport
from recsage.data.vocab import Vocabulary
from recsage.errors import ConfigError

FORMATS = ("atomic", "parquet")
NAME = "synth"

_CATEGORY_NAMES = [
    "drama",
    "comedy",
    "thriller",
    "romance",
    "horror",
    "documentary",
    "animation",
    "fantasy",
    "western",
    "musical",
    "mystery",
    "adventure",
    "crime",
    "history",
    "science",
    "sport",
    "travel",
    "cooking",
    "poetry",
    "jazz",
]
_WORDS = [
    "river",
    "stone",
    "ember",
    "harbor",
    "lantern",
    "meadow",
    "orbit",
    "cipher",
    "canyon",
    "velvet",
    "thunder",
    "glacier",
    "compass",
    "willow",
    "falcon",
    "marble",
    "summit",
    "prism",
    "ivory",
    "tide",
    "echo",
    "quartz",
    "aurora",
    "bramble",
    "cedar",
    "delta",
    "fable",
    "grove",
    "haven",
    "island",
    "jungle",
    "kestrel",
    "lagoon",
    "mosaic",
    "nebula",
    "oasis",
    "pillar",
    "quiver",
    "raven",
    "saffron",
    "timber",
    "umber",
    "vale",
    "wharf",
    "zephyr",
    "anchor",
    "beacon",
    "cobalt",
    "dune",
    "fern",
    "garnet",
]
_ADJECTIVES = [
    "quiet",
    "bright",
    "hidden",
    "golden",
    "broken",
    "silent",
    "distant",
    "wild",
    "gentle",
    "hollow",
    "lost",
    "crimson",
    "frozen",
    "secret",
    "ancient",
    "restless",
]


@dataclass
class SynthConfig:
    """Sizes and planted structure of a synthetic dataset (see the module docstring)."""

    users: int = 10_000
    items: int = 2_000
    events: int = 200_000
    categories: int = 0  # 0: about sqrt(items) / 2, between 4 and 1,000
    zipf: float = 1.0
    p_next: float = 0.5
    p_category: float = 0.3
    successors: int = 3
    favourites: int = 2
    min_length: int = 5
    seed: int = 0

    def n_categories(self) -> int:
        if self.categories > 0:
            return self.categories
        return int(np.clip(round(np.sqrt(self.items) / 2), 4, 1000))

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        c = self.n_categories()
        checks = [
            (self.users >= 1, f"users must be >= 1, got {self.users}"),
            (self.items >= 2, f"items must be >= 2, got {self.items}"),
            (self.min_length >= 1, f"min_length must be >= 1, got {self.min_length}"),
            (
                self.events >= self.users * self.min_length,
                f"events ({self.events:,}) must be >= users x min_length "
                f"({self.users:,} x {self.min_length} = {self.users * self.min_length:,})",
            ),
            (c <= self.items, f"categories ({c}) must be <= items ({self.items})"),
            (self.zipf >= 0, f"zipf must be >= 0, got {self.zipf}"),
            (0 <= self.p_next <= 1 and 0 <= self.p_category <= 1, "p_next, p_category in [0, 1]"),
            (self.p_next + self.p_category <= 1, "p_next + p_category must be <= 1"),
            (self.successors >= 1, f"successors must be >= 1, got {self.successors}"),
            (1 <= self.favourites <= c, f"favourites must be in 1..{c}, got {self.favourites}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"synth: {message}")


@dataclass
class _Catalogue:
    category: np.ndarray  # (M,) category of each item
    weight: np.ndarray  # (M,) popularity weight (sums to 1)
    by_cat: np.ndarray  # items ordered by category, then by chain position
    cat_start: np.ndarray  # (C + 1,) offsets into by_cat
    cum: np.ndarray  # cumulative weight along by_cat
    successors: np.ndarray  # (M, S) successor items


def _catalogue(cfg: SynthConfig, rng: np.random.Generator) -> _Catalogue:
    m, c = cfg.items, cfg.n_categories()
    category = rng.permutation(np.arange(m) % c)  # every category non-empty
    rank = rng.permutation(m)
    weight = (rank + 1.0) ** -cfg.zipf
    weight /= weight.sum()
    by_cat = np.lexsort((rng.random(m), category))  # random chain order inside a category
    cat_start = np.searchsorted(category[by_cat], np.arange(c + 1))
    cum = np.cumsum(weight[by_cat])
    pos = np.empty(m, np.int64)
    pos[by_cat] = np.arange(m)
    start = cat_start[category]
    size = cat_start[category + 1] - start
    steps = np.arange(1, cfg.successors + 1)
    succ_pos = start[:, None] + (pos[:, None] - start[:, None] + steps[None, :]) % size[:, None]
    return _Catalogue(category, weight, by_cat, cat_start, cum, by_cat[succ_pos])


def _draw_in_categories(cat: _Catalogue, cats: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Items drawn by popularity weight inside the given categories (one per entry)."""
    lo = np.where(cat.cat_start[cats] > 0, cat.cum[np.maximum(cat.cat_start[cats] - 1, 0)], 0.0)
    hi = cat.cum[cat.cat_start[cats + 1] - 1]
    pos = np.searchsorted(cat.cum, lo + u * (hi - lo), side="right")
    pos = np.clip(pos, cat.cat_start[cats], cat.cat_start[cats + 1] - 1)
    return cat.by_cat[pos]


def _draw_global(cat: _Catalogue, u: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(cat.cum, u * cat.cum[-1], side="right")
    return cat.by_cat[np.minimum(pos, len(cat.by_cat) - 1)]


def _lengths(cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    extra_total = cfg.events - cfg.users * cfg.min_length
    raw = rng.lognormal(0.0, 1.0, cfg.users)
    extra = np.floor(raw / raw.sum() * extra_total).astype(np.int64)
    short = extra_total - int(extra.sum())
    if short:
        extra += np.bincount(rng.integers(0, cfg.users, short), minlength=cfg.users)
    return extra + cfg.min_length


def _texts(cfg: SynthConfig, cat: _Catalogue, rng: np.random.Generator) -> pd.DataFrame:
    c = cfg.n_categories()
    names = [
        _CATEGORY_NAMES[k % len(_CATEGORY_NAMES)]
        + (f"-{k // len(_CATEGORY_NAMES)}" if k >= 20 else "")
        for k in range(c)
    ]
    themes = rng.integers(0, len(_WORDS), size=(c, 3))
    adj = rng.integers(0, len(_ADJECTIVES), size=cfg.items)
    pick = rng.integers(0, 3, size=cfg.items)
    titles, texts = [], []
    for i in range(cfg.items):
        k = int(cat.category[i])
        a = _ADJECTIVES[adj[i]]
        noun = _WORDS[themes[k, pick[i]]]
        t0, t1, t2 = (_WORDS[w] for w in themes[k])
        titles.append(f"{a.title()} {noun.title()} {i}")
        texts.append(f"A {a} {names[k]} piece about the {t0}, the {t1} and the {t2}.")
    return pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(cfg.items)],
            "title": titles,
            "categories": [[names[k]] for k in cat.category],
            "text": texts,
        }
    )


def generate(cfg: SynthConfig | None = None) -> Dataset:
    """A synthetic `Dataset` with the structure described in the module docstring."""
    cfg = cfg or SynthConfig()
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    cat = _catalogue(cfg, rng)
    c = cfg.n_categories()
    cat_weight = np.bincount(cat.category, weights=cat.weight, minlength=c)
    cat_cum = np.cumsum(cat_weight)
    fav = np.minimum(
        np.searchsorted(cat_cum, rng.random((cfg.users, cfg.favourites)) * cat_cum[-1]), c - 1
    )
    lengths = _lengths(cfg, rng)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    order = np.argsort(-lengths, kind="stable")  # active users at step t are a prefix
    active = np.cumsum(np.bincount(lengths, minlength=int(lengths.max()) + 1)[::-1])[::-1]
    out = np.empty(cfg.events, np.int64)
    succ_p = 0.5 ** np.arange(cfg.successors)
    succ_cum = np.cumsum(succ_p / succ_p.sum())
    prev = np.zeros(cfg.users, np.int64)
    for t in range(int(lengths.max())):
        k = int(active[t + 1]) if t + 1 < len(active) else 0  # users with length > t
        users = order[:k]
        r = rng.random(k)
        cats = fav[users, rng.integers(0, cfg.favourites, k)]
        nxt = np.where(
            r < cfg.p_next + cfg.p_category,
            _draw_in_categories(cat, cats, rng.random(k)),
            _draw_global(cat, rng.random(k)),
        )
        if t > 0:
            follow = r < cfg.p_next
            j = np.searchsorted(succ_cum, rng.random(int(follow.sum())), side="right")
            nxt[follow] = cat.successors[prev[:k][follow], np.minimum(j, cfg.successors - 1)]
        prev[:k] = nxt
        out[offsets[users] + t] = nxt
    user = np.repeat(np.arange(cfg.users), lengths)
    gaps = 1.0 + np.floor(rng.exponential(3600.0, cfg.events))
    csum = np.cumsum(gaps)
    seg_start = np.repeat(csum[offsets] - gaps[offsets], lengths)
    start = rng.uniform(0, 365 * 86400.0, cfg.users).round()
    ts = 1.6e9 + start[user] + (csum - seg_start)
    inter = Interactions.build(user, out, timestamp=ts)
    table = _texts(cfg, cat, rng)
    report = LoadReport(source=f"synth({json.dumps(asdict(cfg))})", rows_read=cfg.events)
    user_vocab = Vocabulary(np.array([f"u{u}" for u in range(cfg.users)], dtype=object))
    item_vocab = Vocabulary(table["item_id"].to_numpy(dtype=object))
    return Dataset(NAME, inter, user_vocab, item_vocab, table, None, report)


def write_synth(dataset: Dataset, folder: str | Path, *, fmt: str = "atomic") -> list[Path]:
    """Write `dataset` so the loaders read it back: RecBole atomic files (`synth.inter`,
    `synth.item`; `load_dataset(folder)`) or Parquet (`events.parquet`, `items.parquet`;
    `load_table(events, items_path=items)`). Returns the files written."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown synth format '{fmt}'; known: {', '.join(FORMATS)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inter = dataset.interactions
    events = pd.DataFrame(
        {
            "user_id": dataset.users.ids[inter.user],
            "item_id": dataset.items.ids[inter.item],
            "timestamp": inter.timestamp.astype(np.int64),
        }
    )
    table = dataset.item_table
    if fmt == "parquet":
        paths = [folder / "events.parquet", folder / "items.parquet"]
        events.to_parquet(paths[0], index=False)
        table.to_parquet(paths[1], index=False)
        return paths
    paths = [folder / f"{NAME}.inter", folder / f"{NAME}.item"]
    events.columns = ["user_id:token", "item_id:token", "timestamp:float"]
    events.to_csv(paths[0], sep="\t", index=False, quoting=csv.QUOTE_NONE)
    items = pd.DataFrame(
        {
            "item_id:token": table["item_id"],
            "title:token_seq": table["title"],
            "categories:token_seq": [" ".join(c) for c in table["categories"]],
            "text:token_seq": table["text"],
        }
    )
    items.to_csv(paths[1], sep="\t", index=False, quoting=csv.QUOTE_NONE)
    return paths


__all__ = ["FORMATS", "SynthConfig", "generate", "write_synth"]
