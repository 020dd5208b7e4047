"""The catalogue a conversation talks about: titles, years, genres, moods, text vectors."""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from recsage.errors import ConfigError

GENRE_WORDS: dict[str, tuple[str, ...]] = {
    "action": ("action", "action-packed", "action packed"),
    "adventure": ("adventure", "adventures", "adventurous"),
    "animation": ("animation", "animated", "cartoon", "cartoons", "anime", "pixar"),
    "children's": ("children's", "childrens", "children", "kids", "kid", "family"),
    "comedy": ("comedy", "comedies", "funny", "hilarious", "comedic", "laugh"),
    "crime": ("crime", "gangster", "gangsters", "heist", "mafia", "mob"),
    "documentary": ("documentary", "documentaries"),
    "drama": ("drama", "dramas", "dramatic"),
    "fantasy": ("fantasy", "magic", "magical"),
    "film-noir": ("film-noir", "film noir", "noir"),
    "horror": ("horror", "horrors", "scary", "slasher", "creepy", "spooky", "frightening"),
    "musical": ("musical", "musicals"),
    "mystery": ("mystery", "mysteries", "whodunit", "detective"),
    "romance": ("romance", "romantic", "romances", "rom-com", "romcom", "love story"),
    "sci-fi": ("sci-fi", "scifi", "sci fi", "science fiction", "science-fiction", "space"),
    "thriller": ("thriller", "thrillers", "suspense", "suspenseful"),
    "war": ("war", "wartime", "military"),
    "western": ("western", "westerns", "cowboy", "cowboys"),
}


@dataclass(frozen=True)
class Mood:
    words: tuple[str, ...]
    boost: tuple[str, ...]
    sink: tuple[str, ...]
    text: str


MOODS: dict[str, Mood] = {
    "light": Mood(
        ("lighter", "light", "light-hearted", "lighthearted", "fun", "feel-good", "feel good",
         "cheerful", "happy", "uplifting", "silly", "upbeat", "less dark", "less serious"),
        ("comedy", "animation", "children's", "musical", "romance", "adventure"),
        ("horror", "war", "film-noir", "crime", "thriller"),
        "light-hearted fun feel-good",
    ),
    "dark": Mood(
        ("darker", "dark", "serious", "bleak", "gritty", "intense", "heavy", "grim", "disturbing"),
        ("drama", "crime", "thriller", "film-noir", "war"),
        ("children's", "animation", "musical", "comedy"),
        "dark serious intense",
    ),
    "exciting": Mood(
        ("exciting", "thrilling", "adrenaline", "fast-paced", "fast paced", "edge of my seat"),
        ("action", "adventure", "thriller"),
        ("documentary", "musical"),
        "exciting fast-paced thrilling",
    ),
    "thoughtful": Mood(
        ("thought-provoking", "thought provoking", "cerebral", "mind-bending", "smart",
         "intelligent", "deep", "philosophical"),
        ("drama", "sci-fi", "mystery", "documentary"),
        ("children's",),
        "thought-provoking intelligent",
    ),
}  # fmt: skip


WORD_RE = re.compile(r"[a-z0-9']+(?:-[a-z0-9']+)*")

#: item-table columns read as the price (the first present)
PRICE_COLUMNS = ("price", "unit_price", "sale_price", "cost")


def singular(word: str) -> str:
    """A crude English singular for matching catalogue words: toys -> toy, leashes ->
    leash, hutches -> hutch, puppies -> puppy; words ending in "ss" stay."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith("es") and word[:-2].endswith(("s", "x", "ch", "sh")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _norm(text: str) -> str:
    return " ".join(WORD_RE.findall(text.lower()))


class KeywordEncoder:
    """Hashed bag of words and word bigrams, L2-normalised: a deterministic stand-in for a
    sentence encoder when torch is not installed (and in tests)."""

    def __init__(self, dim: int = 1024) -> None:
        self.dim = dim
        self.fingerprint = f"keywords-{dim}"

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, np.float32)
        words = WORD_RE.findall(text.lower())
        grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        for g in grams:
            h = int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little")
            v[h % self.dim] += 1.0 if " " not in g else 0.5
        n = float(np.linalg.norm(v))
        return v / n if n > 0 else v

    def encode_queries(self, texts: Sequence[str], **_: Any) -> np.ndarray:
        return (
            np.stack([self._vec(t) for t in texts])
            if texts
            else np.zeros((0, self.dim), np.float32)
        )

    encode_items = encode_queries


@dataclass
class Catalogue:
    """What a conversation recommends from: ids, titles, years, genres, text vectors."""

    ids: np.ndarray
    titles: list[str]
    years: np.ndarray  # float, NaN = unknown
    genres: list[frozenset[str]]  # lower-case genre names
    vectors: np.ndarray  # (I, D), L2-normalised
    encoder: Any  # .encode_queries(list[str]) -> (n, D)
    genre_names: dict[str, str] = field(default_factory=dict)  # lower -> display
    prices: np.ndarray | None = None  # float, NaN = unknown; None = no price column
    _title_index: dict[str, list[int]] | None = None
    _category_terms: dict[str, frozenset[str]] | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not (len(self.titles) == len(self.years) == len(self.genres) == len(self.vectors) == n):
            raise ConfigError("catalogue columns must all have one row per item")
        if self.prices is not None and len(self.prices) != n:
            raise ConfigError("catalogue prices must have one row per item")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_table(
        cls, ids: Sequence[str], table: pd.DataFrame, vectors: np.ndarray, encoder: Any
    ) -> Catalogue:
        """From an item table with optional `title`, `year`, `categories` columns."""
        n = len(table)
        titles = (
            [str(t) if isinstance(t, str) else str(ids[i]) for i, t in enumerate(table["title"])]
            if "title" in table
            else [str(i) for i in ids]
        )
        years = (
            pd.to_numeric(table["year"], errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
            if "year" in table
            else np.full(n, np.nan)
        )
        names: dict[str, str] = {}
        genres: list[frozenset[str]] = []
        cats = table["categories"].tolist() if "categories" in table else [None] * n
        for c in cats:
            vals = [str(x) for x in c] if isinstance(c, list | tuple | np.ndarray) else []
            for v in vals:
                names.setdefault(v.lower(), v)
            genres.append(frozenset(v.lower() for v in vals))
        price_col = next((c for c in PRICE_COLUMNS if c in table.columns), None)
        prices = None
        if price_col is not None:
            raw = pd.to_numeric(table[price_col], errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
            prices = np.where(np.isfinite(raw), raw, np.nan)
            if not np.isfinite(prices).any():
                prices = None
        return cls(np.asarray(ids, dtype=object), titles, years, genres,
                   np.asarray(vectors, np.float32), encoder, names, prices)  # fmt: skip

    @classmethod
    def from_dataset(cls, dataset: Any, *, encoder: Any = None) -> Catalogue:
        """Encode the dataset's items (MiniLM with its disk cache by default)."""
        from recsage.encoders.templates import ItemTextTemplate

        if encoder is None:
            from recsage.encoders.cache import default_cache_dir
            from recsage.encoders.text import TextEncoder

            encoder = TextEncoder(cache_dir=default_cache_dir())
        table = dataset.item_table.sort_index()
        vectors = encoder.encode_items(ItemTextTemplate().render(table))
        return cls.from_table(list(dataset.items.ids), table, vectors, encoder)

    @classmethod
    def from_pipeline(cls, pipe: Any) -> Catalogue:
        """A fitted or loaded pipeline's catalogue, text vectors and encoder."""
        vectors, encoder = pipe.resources.item_text_vectors, pipe.resources.text_encoder
        if vectors is None or encoder is None:
            raise ConfigError("this pipeline has no text vectors; enable [text] and refit it")
        return cls.from_table(list(pipe.items.ids), pipe.item_table, vectors, encoder)

    @property
    def has_years(self) -> bool:
        return bool(np.isfinite(self.years).any())

    def category_terms(self) -> dict[str, frozenset[str]]:
        """Word (singular) -> the categories whose names hold it, for the words of
        multi-word category names ("litter" -> {"cat litter"}, "cat" -> every cat
        category): a shop's own vocabulary, read from its catalogue."""
        if self._category_terms is None:
            terms: dict[str, set[str]] = {}
            for g in self.genre_names:
                words = WORD_RE.findall(g)
                if len(words) < 2:
                    continue
                for w in words:
                    if len(w) >= 3 and w not in STOP_WORDS_SET:
                        terms.setdefault(singular(w), set()).add(g)
            self._category_terms = {w: frozenset(gs) for w, gs in terms.items()}
        return self._category_terms

    def display(self, i: int) -> str:
        y = self.years[i]
        t = self.titles[i]
        if not np.isfinite(y) or re.search(r"\(\d{4}\)\s*$", t):
            return t
        return f"{t} ({int(y)})"

    def title_index(self) -> dict[str, list[int]]:
        """Normalised title -> items; "Matrix, The" is also indexed as "the matrix"."""
        if self._title_index is None:
            idx: dict[str, list[int]] = {}
            for i, t in enumerate(self.titles):
                variants = {t}
                m = re.match(r"^(.*), (The|A|An)$", t.strip())
                if m:
                    variants.add(f"{m.group(2)} {m.group(1)}")
                for v in variants:
                    key = _norm(v)
                    if key:
                        idx.setdefault(key, []).append(i)
                        if key.startswith("the "):
                            idx.setdefault(key[4:], []).append(i)
            self._title_index = idx
        return self._title_index

    def find_titles(self, text: str) -> list[tuple[int, int, int]]:
        """(item, start, end) of catalogue titles named in `text` (longest match first;
        one-word titles only when written with a capital letter)."""
        index = self.title_index()
        low = text.lower()
        spans = [(m.start(), m.end()) for m in WORD_RE.finditer(low)]
        words = [low[a:b] for a, b in spans]
        found: list[tuple[int, int, int]] = []
        used = np.zeros(len(words), bool)
        for size in range(min(10, len(words)), 0, -1):
            for s in range(len(words) - size + 1):
                if used[s : s + size].any():
                    continue
                key = " ".join(words[s : s + size])
                if key not in index or len(key) < 4:
                    continue
                a, b = spans[s][0], spans[s + size - 1][1]
                if size == 1 and (not text[a].isupper() or key in _COMMON_WORDS):
                    continue
                items = index[key]
                best = max(items, key=lambda i: self.years[i] if np.isfinite(self.years[i]) else 0)
                found.append((best, a, b))
                used[s : s + size] = True
        return sorted(found, key=lambda f: f[1])


_STOP_WORDS = (
    "a an the i i'm im me my we you your it its this that these those is are was were be "
    "to of in on at for from with and or but so if then than as by about into like likes "
    "liked love loved want wanted would could should can will just really very much more "
    "less some something anything any one ones movie movies film films show shows please "
    "thanks thank okay ok yes no not don't dont do does did have has had get give me maybe "
    "else other others another again also too what which who how kind sort lot lots bit "
    "watch watched seen see saw good nice great hate hated dislike recent new old"
)


STOP_WORDS_SET = frozenset(_STOP_WORDS.split())


_COMMON_TEXT = (
    "something anything nothing movie movies film films love like more less other others "
    "good great best first second third last maybe sure thanks hello please yes"
)


_COMMON_WORDS = frozenset(
    _COMMON_TEXT.split()
    + [w for ws in GENRE_WORDS.values() for w in ws]
    + [w for m in MOODS.values() for w in m.words]
)
