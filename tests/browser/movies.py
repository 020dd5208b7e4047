"""A tiny made-up movie catalogue (titles, genres, years) with genre-loyal users, and a
text-enabled pipeline fitted on it in a few seconds: enough for recommendations with
reasons, search and chat in the browser tests and the screenshot script."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsage.data.schema import Dataset, Interactions
from recsage.data.vocab import Vocabulary

MOVIES: list[tuple[str, list[str], int]] = [
    ("The Laughing Detective", ["Comedy", "Mystery"], 1994),
    ("Office Pranksters", ["Comedy"], 1997),
    ("My Cousin the Clown", ["Comedy"], 1992),
    ("Wedding Crashers of Ohio", ["Comedy", "Romance"], 1999),
    ("Silly Summer Camp", ["Comedy", "Children's"], 1995),
    ("Pizza Delivery Panic", ["Comedy"], 2003),
    ("Grandpa Goes Surfing", ["Comedy"], 1978),
    ("The Haunted Lighthouse", ["Horror"], 1996),
    ("Midnight Slasher", ["Horror", "Thriller"], 1991),
    ("Scream of the Swamp", ["Horror"], 1983),
    ("The Creeping Fog", ["Horror"], 2001),
    ("Funny Bones of Terror", ["Comedy", "Horror"], 1993),
    ("Rivers of Regret", ["Drama"], 1998),
    ("A Quiet Farewell", ["Drama", "Romance"], 1994),
    ("The Long Winter", ["Drama"], 1975),
    ("Letters to My Father", ["Drama"], 2004),
    ("Courtroom Nine", ["Drama", "Crime"], 1990),
    ("Rocket Raiders", ["Action", "Sci-Fi"], 1996),
    ("Planet of Glass", ["Sci-Fi"], 1989),
    ("Star Courier", ["Sci-Fi", "Adventure"], 1999),
    ("The Last Android", ["Sci-Fi", "Drama"], 2002),
    ("Bullet Highway", ["Action"], 1995),
    ("Jungle Pursuit", ["Action", "Adventure"], 1987),
    ("Harbor Heist", ["Action", "Crime"], 1998),
    ("Paris in the Rain", ["Romance"], 1993),
    ("Love on Line Five", ["Romance", "Comedy"], 1998),
    ("The Lighthouse Keeper's Daughter", ["Romance", "Drama"], 1981),
    ("Dragon School", ["Animation", "Children's"], 1997),
    ("The Brave Little Robot", ["Animation", "Children's", "Sci-Fi"], 1999),
    ("Kitten Kingdom", ["Animation", "Children's", "Comedy"], 1995),
]
GENRE_GROUPS = ["Comedy", "Horror", "Drama", "Sci-Fi", "Action", "Romance", "Animation"]


def dataset(n_users: int = 42, seed: int = 0) -> Dataset:
    """Users "1".."n": each mostly watches one genre (user "42" likes comedies)."""
    rng = np.random.default_rng(seed)
    users: list[str] = []
    items: list[str] = []
    times: list[float] = []
    ids = [str(100 + i) for i in range(len(MOVIES))]
    by_genre = {g: [i for i, (_, cats, _) in enumerate(MOVIES) if g in cats] for g in GENRE_GROUPS}
    for u in range(1, n_users + 1):
        genre = GENRE_GROUPS[u % len(GENRE_GROUPS)]
        pool = by_genre[genre]
        picks = rng.choice(pool, size=min(4, len(pool)), replace=False).tolist()
        picks.append(int(rng.integers(len(MOVIES))))  # one random item per user
        for t, i in enumerate(picks):
            users.append(str(u))
            items.append(ids[i])
            times.append(float(u * 100 + t))
    uv = Vocabulary.from_values(users)
    iv = Vocabulary(ids)
    inter = Interactions.build(uv.encode(users), iv.encode(items), timestamp=np.array(times))
    table = pd.DataFrame(
        {
            "item_id": ids,
            "title": [m[0] for m in MOVIES],
            "categories": pd.Series([list(m[1]) for m in MOVIES], dtype=object),
            "year": pd.array([m[2] for m in MOVIES], dtype="Int64"),
        }
    )
    return Dataset("tiny-movies", inter, uv, iv, table)


def spec(cache_dir: Path) -> dict[str, Any]:
    return {
        "text": {"enabled": True, "cache_dir": str(cache_dir)},
        "merge": {"max_candidates": 30},
        "channels": [
            {"name": "ease", "kind": "model", "model": "ease", "n": 20, "params": {"l2": 10.0}},
            {"name": "text", "kind": "text", "n": 10},
            {"name": "pop", "kind": "popularity", "n": 10},
        ],
        "stages": [{"name": "prerank", "kind": "rrf", "keep": 20}],
    }


def fit_and_save(out: Path, cache_dir: Path) -> Path:
    """Fit the pipeline on the tiny catalogue and save it under `out`."""
    from recsage.pipeline.pipeline import Pipeline

    pipe = Pipeline(spec(cache_dir)).fit(dataset())
    return Path(pipe.save(out))
