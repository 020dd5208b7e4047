"""A multi-turn recommendation session: constraints accumulate, turns are scored and explained."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsage.errors import ConfigError
from recsage.llm.backends.base import LLMBackend, LLMError
from recsage.llm.conversation.catalogue import MOODS, Catalogue
from recsage.llm.conversation.parse import (
    Constraints,
    TurnParse,
    constraint_schema,
    llm_messages,
    parse_llm,
    parse_rules,
)
from recsage.types import Recommendation


@dataclass
class Turn:
    """One exchange: the user's text, how it was understood, and what was shown."""

    text: str
    understood: str
    source: str
    recommendations: list[Recommendation]
    llm_error: str | None = None


@dataclass
class SessionWeights:
    """How the per-turn score mixes its signals."""

    query: float = 1.0
    anchor: float = 0.8
    profile: float = 0.3
    pipeline: float = 0.3
    genre: float = 0.3
    mood: float = 0.08
    shown_penalty: float = 0.15
    query_decay: float = 0.6


class ConversationSession:
    """State across turns; `turn(text)` returns the understood constraints and top-n items.

    `history` (dense item indices, oldest first) is the user's long-term profile and is
    excluded from recommendations; `pipeline_scores` (I,) optionally adds a trained
    pipeline's opinion of each item for this user (higher is better, -inf = unranked).
    """

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        backend: LLMBackend | None = None,
        history: np.ndarray | None = None,
        pipeline_scores: np.ndarray | None = None,
        n: int = 5,
        weights: SessionWeights | None = None,
        llm_timeout: float = 30.0,
    ) -> None:
        if n < 1:
            raise ConfigError("n must be >= 1")
        self.cat = catalogue
        self.backend = backend
        self.history = np.asarray(history if history is not None else [], np.int64)
        self.n = n
        self.w = weights or SessionWeights()
        self.llm_timeout = llm_timeout
        self.profile: np.ndarray | None = None
        if len(self.history):
            from recsage.retrieval.search import profile_vector

            self.profile = profile_vector(self.cat.vectors, self.history[-50:])
        self.pipe = None
        if pipeline_scores is not None:
            s = np.asarray(pipeline_scores, np.float64)
            finite = np.isfinite(s)
            if finite.any():
                lo, span = s[finite].min(), s[finite].max() - s[finite].min()
                scaled = 0.1 + 0.9 * (s - lo) / span if span > 0 else np.ones_like(s)
                self.pipe = np.where(finite, scaled, 0.0)  # ranked items > 0 = unranked
        self.reset()

    def reset(self) -> None:
        """Forget the conversation (the long-term profile stays)."""
        self.constraints = Constraints()
        self.queries: list[np.ndarray] = []
        self.shown: list[int] = []
        self.shown_count = np.zeros(len(self.cat), np.int64)
        self.turns: list[Turn] = []

    # parsing -----------------------------------------------------------------

    def understand(self, text: str) -> tuple[TurnParse, str, str | None]:
        """Rules, plus the grounded part of the LLM's JSON when a backend is set."""
        rules = parse_rules(text, self.cat, shown=len(self.shown))
        if self.backend is None:
            return rules, "rules", None
        try:
            comp = self.backend.complete(
                llm_messages(text, [self.cat.display(i) for i in self.shown]),
                schema=constraint_schema(self.cat, len(self.shown)),
                max_tokens=120,
                timeout=self.llm_timeout,
            )
        except LLMError as exc:
            return rules, "rules (LLM failed)", str(exc)[:200]
        llm = parse_llm(comp.json, text, self.cat, len(self.shown))
        merged = rules
        merged.include |= {g for g in llm.include if g not in rules.exclude}
        merged.exclude |= {g for g in llm.exclude if g not in rules.include}
        for key in ("year_min", "year_max", "mood", "price_min", "price_max"):
            if getattr(merged, key) is None:
                setattr(merged, key, getattr(llm, key))
        if not merged.like_positions and not merged.reject_positions:
            merged.like_positions, merged.reject_positions = (
                llm.like_positions,
                llm.reject_positions,
            )
        if llm.query and not merged.query:
            merged.query = llm.query
        return merged, "llm+rules", None

    def _merge(self, p: TurnParse) -> None:
        c = self.constraints
        shown = list(self.shown)
        if p.reset:
            self.reset()
            c = self.constraints
        c.include_genres = (c.include_genres | p.include) - p.exclude
        c.exclude_genres = (c.exclude_genres | p.exclude) - p.include
        if p.year_min is not None or p.year_max is not None:
            c.year_min, c.year_max = p.year_min, p.year_max
        if p.price_min is not None or p.price_max is not None:
            c.price_min, c.price_max = p.price_min, p.price_max
        if p.mood:
            c.mood = p.mood
        for pos in p.like_positions:
            c.anchors.append(shown[pos - 1])
        for pos in p.reject_positions:
            c.rejected.add(shown[pos - 1])
        c.anchors.extend(p.like_items)
        c.rejected |= set(p.reject_items)
        if p.reject_shown:
            c.rejected |= set(shown) - set(c.anchors)
        c.anchors = [a for a in dict.fromkeys(c.anchors) if a not in c.rejected][-5:]
        words = [p.query]
        words += [self.cat.genre_names.get(g, g) for g in sorted(p.include)]
        if p.mood:
            words.append(MOODS[p.mood].text)
        qtext = " ".join(w for w in words if w).strip()
        if qtext:
            self.queries.append(np.asarray(self.cat.encoder.encode_queries([qtext]), np.float32)[0])

    # ranking -----------------------------------------------------------------

    def scores(self) -> np.ndarray:
        """Score of every item under the current state (-inf = filtered out)."""
        cat, c, w = self.cat, self.constraints, self.w
        n = len(cat)
        s = np.zeros(n, np.float64)
        if self.queries:
            k = len(self.queries)
            decay = np.power(w.query_decay, np.arange(k)[::-1])
            q = (np.stack(self.queries) * decay[:, None]).sum(axis=0)
            q /= max(float(np.linalg.norm(q)), 1e-12)
            s += w.query * (cat.vectors @ q)
        if c.anchors:
            s += w.anchor * (cat.vectors @ cat.vectors[c.anchors].T).mean(axis=1)
        if self.profile is not None:
            s += w.profile * (cat.vectors @ self.profile)
        if self.pipe is not None:
            s += w.pipeline * self.pipe
        has = [cat.genres[i] for i in range(n)]
        if c.include_genres:
            frac = np.array([len(g & c.include_genres) for g in has]) / len(c.include_genres)
            s += w.genre * frac
        if c.anchors:
            anchor_genres: set[str] = set().union(*(cat.genres[a] for a in c.anchors))
            if anchor_genres:
                s += 0.5 * w.genre * np.array([len(g & anchor_genres) / len(anchor_genres)
                                               for g in has])  # fmt: skip
        if c.mood:
            mood = MOODS[c.mood]
            s += w.mood * np.array(
                [len(g & set(mood.boost)) - len(g & set(mood.sink)) for g in has], np.float64
            )
        s -= w.shown_penalty * np.minimum(self.shown_count, 2)
        allowed = np.ones(n, bool)
        if c.exclude_genres:
            allowed &= np.array([not (g & c.exclude_genres) for g in has])
        if c.year_min is not None:
            allowed &= np.nan_to_num(cat.years, nan=-1e9) >= c.year_min
        if c.year_max is not None:
            allowed &= np.nan_to_num(cat.years, nan=1e9) <= c.year_max
        if cat.prices is not None:  # an unknown price does not pass a price limit
            if c.price_min is not None:
                allowed &= np.nan_to_num(cat.prices, nan=-np.inf) >= c.price_min
            if c.price_max is not None:
                allowed &= np.nan_to_num(cat.prices, nan=np.inf) <= c.price_max
        blocked = list(c.rejected) + list(c.anchors)
        if len(self.history):
            blocked += self.history.tolist()
        allowed[np.asarray(blocked, np.int64)] = False
        if c.include_genres:
            strict = allowed & np.array([bool(g & c.include_genres) for g in has])
            if strict.sum() >= self.n:
                allowed = strict
        return np.where(allowed, s, -np.inf)

    def observe(self, text: str) -> tuple[str, str | None]:
        """Update the state from an utterance without recommending; returns (source, error)."""
        parse, source, err = self.understand(text.strip())
        self._merge(parse)
        return source, err

    def turn(self, text: str) -> Turn:
        """Take one user utterance, update the state and recommend `n` items."""
        text = text.strip()
        source, err = self.observe(text)
        s = self.scores()
        order = np.argsort(-s, kind="stable")[: self.n]
        order = order[np.isfinite(s[order])]
        self.shown = [int(i) for i in order]
        self.shown_count[order] += 1
        recs = [
            Recommendation(
                item=str(self.cat.ids[i]),
                title=self.cat.display(i),
                score=float(s[i]),
                rank=r,
                sources=["chat"],
            )
            for r, i in enumerate(self.shown, start=1)
        ]
        turn = Turn(text, self.constraints.describe(self.cat), source, recs, err)
        self.turns.append(turn)
        return turn
