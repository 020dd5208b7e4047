"""Explanations that are true of the data: why an item is recommended to a history.

An `Explanation` cites (1) the channels that retrieved the item (passed in by the caller),
(2) the history items most responsible, by an item-item scorer (the model's own weights,
e.g. EASE's B[h, item], when given; else text or attribute similarity), (3) attributes the
item shares with history items (genre, decade, category, brand) and (4) knowledge-graph
paths from a history item to the item. Every reason is checked by construction and can be
re-checked with `check_faithful`: cited items are in the history, shared attributes are on
both items, and each path's triples are stored in the graph.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsage.data.schema import Dataset
from recsage.errors import RecsageError
from recsage.knowledge.graph import ATTRIBUTE, EXTERNAL, ItemKnowledgeGraph, KGPath
from recsage.models.base import SupportsItemWeights

#: (history item indices, candidate item) -> one weight per history item (higher = more)
ItemScorer = Callable[[np.ndarray, int], np.ndarray]

_KIND_OF_RELATION = {
    "has_genre": "genre",
    "has_category": "category",
    "released_in_decade": "decade",
    "released_in_year": "year",
    "has_brand": "brand",
}


@dataclass(frozen=True)
class HistoryReason:
    """A history item that pushes the recommendation, with its weight and recency."""

    item: int
    title: str
    weight: float
    steps_back: int  # 0 = the most recent history item


@dataclass(frozen=True)
class SharedAttribute:
    """An attribute value on the item and on each of `history_items`."""

    kind: str
    value: str
    history_items: tuple[int, ...]
    history_titles: tuple[str, ...]
    count: int  # history items (in the window) that have it; `history_items` lists a few


@dataclass(frozen=True)
class PathReason:
    """A knowledge-graph path from a history item to the recommended item."""

    history_item: int
    path: KGPath
    text: str


@dataclass
class Explanation:
    """Why `item` is recommended; `lines()` renders it for people."""

    item: int
    title: str
    sources: list[str] = field(default_factory=list)
    because: list[HistoryReason] = field(default_factory=list)
    attributes: list[SharedAttribute] = field(default_factory=list)
    paths: list[PathReason] = field(default_factory=list)
    scorer: str = ""
    in_history: bool = False
    in_history_steps_back: int = -1  # how recent its latest occurrence is (0 = latest item)

    def lines(self) -> list[str]:
        """One sentence per reason, most specific first."""
        out = []
        if self.in_history:  # first: the user has it already
            k = self.in_history_steps_back
            out.append(
                f"*{self.title}* is already in this history" + (f" ({_ago(k)})" if k >= 0 else "")
            )
        if self.sources:
            out.append(f"found by: {', '.join(self.sources)}")
        for r in self.because:
            ago = _ago(r.steps_back)
            out.append(
                f"because of *{r.title}* in your history ({ago}; "
                f"{self.scorer} weight {r.weight:.3g})"
            )
        for a in self.attributes:
            eg = ", ".join(f"*{t}*" for t in a.history_titles[:3])
            out.append(
                f"{a.kind} {a.value}: shared with {a.count} of your items"
                + (f", e.g. {eg}" if eg else "")
            )
        out += [p.text for p in self.paths]
        return out or ["no reason found in the data"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (paths as entity/relation index lists)."""
        d = asdict(self)
        for p, src in zip(d["paths"], self.paths, strict=True):
            p["path"] = {"entities": list(src.path.entities), "relations": list(src.path.relations),
                         "forward": list(src.path.forward)}  # fmt: skip
        return d


# --------------------------------------------------------------------------- readable names

#: Freebase MIDs (m.0bln8, g.11b6...), Wikidata ids (Q42) and bare numbers (Satori indices)
_ID_LIKE = re.compile(r"^(?:[mg]\.[0-9a-z_]+|Q[0-9]+|[0-9]+)$")


def looks_like_id(name: str) -> bool:
    """True for entity "names" that are only identifiers (a Freebase MID, a number)."""
    return bool(_ID_LIKE.match(name.strip()))


def readable_relation(relation: str) -> str:
    """``film.film.directed_by`` -> ``directed by``; ``has_genre`` -> ``has genre``."""
    last = relation.rsplit(".", 1)[-1].strip() or relation
    return last.replace("_", " ")


def _ago(steps_back: int) -> str:
    if steps_back == 0:
        return "your latest item"
    return f"{steps_back} item{'s' if steps_back > 1 else ''} back"


# --------------------------------------------------------------------------- scorers


def vector_scorer(vectors: np.ndarray) -> ItemScorer:
    """Cosine between item vectors (e.g. MiniLM text vectors, KG vectors)."""
    v = np.asarray(vectors, np.float32)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)

    def score(history: np.ndarray, item: int) -> np.ndarray:
        return np.asarray(v[history] @ v[item], np.float64)

    return score


def matrix_scorer(weights: np.ndarray | sp.spmatrix) -> ItemScorer:
    """Item-item weights W[h, item] of a model (EASE's B, item-kNN similarities)."""

    def score(history: np.ndarray, item: int) -> np.ndarray:
        col = weights[history, item]
        col = col.toarray() if sp.issparse(col) else col
        return np.asarray(col, np.float64).ravel()

    return score


def model_scorer(model: Any) -> ItemScorer | None:
    """The item-item weights of a fitted model when it has them (EASE, item-kNN)."""
    if isinstance(model, SupportsItemWeights):
        w = model.item_weights()
        if w.shape[0] == w.shape[1]:
            return matrix_scorer(w)
    return None


def item_attributes(item_table: pd.DataFrame) -> list[set[tuple[str, str]]]:
    """Per item, the set of (kind, value) attributes: genre/category, decade, brand."""
    from recsage.knowledge.graph import attribute_display, attribute_triples

    frame = attribute_triples(item_table)
    out: list[set[tuple[str, str]]] = [set() for _ in range(len(item_table))]
    if not len(frame):
        return out
    heads = frame["head"].astype(str).str.slice(len("\x00item:")).astype(np.int64).to_numpy()
    names = attribute_display(set(frame["tail"].astype(str)))
    for h, r, t in zip(heads.tolist(), frame["relation"], frame["tail"], strict=True):
        out[h].add((_KIND_OF_RELATION.get(str(r), str(r)), names[str(t)]))
    return out


def attribute_scorer(attributes: list[set[tuple[str, str]]]) -> ItemScorer:
    """Jaccard overlap of the items' attribute sets (genres, decade, brand)."""

    def score(history: np.ndarray, item: int) -> np.ndarray:
        a = attributes[item]
        out = np.zeros(len(history))
        for k, h in enumerate(history.tolist()):
            b = attributes[h]
            union = len(a | b)
            out[k] = len(a & b) / union if union else 0.0
        return out

    return score


def graph_scorer(graph: ItemKnowledgeGraph) -> ItemScorer:
    """Jaccard overlap of the items' knowledge-graph neighbours (shared entities)."""

    def score(history: np.ndarray, item: int) -> np.ndarray:
        a = graph.item_entities(item)
        out = np.zeros(len(history))
        for k, h in enumerate(history.tolist()):
            b = graph.item_entities(h)
            union = len(a | b)
            out[k] = len(a & b) / union if union else 0.0
        return out

    return score


# --------------------------------------------------------------------------- explainer


class Explainer:
    """Builds `Explanation`s for (history, item) pairs over one catalogue.

    `source` is a `Dataset`, a fitted `Pipeline` (its item table and text vectors are used)
    or an item table. `graph` adds knowledge paths. `scorer` ranks history items by
    responsibility; by default text similarity when item text vectors are known, else
    attribute overlap (shared knowledge-graph entities when items have no attributes).
    `scorer_name` labels the weights in the output.
    """

    def __init__(
        self,
        source: Any,
        graph: ItemKnowledgeGraph | None = None,
        *,
        scorer: ItemScorer | None = None,
        scorer_name: str | None = None,
        item_vectors: np.ndarray | None = None,
    ) -> None:
        table, titles, vectors = _catalogue(source)
        if item_vectors is not None:
            vectors = item_vectors
        self.item_table = table
        self.titles = [str(t) for t in titles]
        self.n_items = len(self.titles)
        if graph is not None and graph.n_items != self.n_items:
            raise RecsageError(
                f"the graph has {graph.n_items} items but the catalogue has {self.n_items}"
            )
        self.graph = graph
        self.attributes = item_attributes(table)
        if scorer is not None:
            self.scorer, self.scorer_name = scorer, scorer_name or "model"
        elif vectors is not None:
            self.scorer, self.scorer_name = vector_scorer(vectors), scorer_name or "text similarity"
        elif graph is not None and not any(self.attributes):
            self.scorer, self.scorer_name = graph_scorer(graph), scorer_name or "shared KG entities"
        else:
            self.scorer = attribute_scorer(self.attributes)
            self.scorer_name = scorer_name or "attribute overlap"

    def explain(
        self,
        history: Sequence[int] | np.ndarray,
        item: int,
        *,
        sources: Sequence[str] = (),
        n_items: int = 3,
        n_attributes: int = 4,
        n_paths: int = 3,
        window: int = 50,
        max_hops: int = 2,
    ) -> Explanation:
        """Reasons for recommending `item` after `history` (item indices, oldest first).

        Only the last `window` history items are considered.
        """
        item = int(item)
        if not 0 <= item < self.n_items:
            raise RecsageError(f"item index {item} out of range 0..{self.n_items - 1}")
        hist = np.asarray(history, dtype=np.int64)
        if len(hist) and (hist.min() < 0 or hist.max() >= self.n_items):
            raise RecsageError("history holds item indices outside the catalogue")
        seen = np.flatnonzero(hist == item)
        in_history = bool(len(seen))
        recent = hist[-window:] if window > 0 else hist[:0]
        # the most recent occurrence of each item, excluding the explained item itself
        rev = recent[::-1]
        uniq, first = np.unique(rev, return_index=True)
        keep = uniq != item
        uniq, steps = uniq[keep], first[keep]
        order = np.argsort(steps, kind="stable")
        cand_hist, steps = uniq[order], steps[order]  # most recent first
        exp = Explanation(item=item, title=self.titles[item], sources=[str(s) for s in sources],
                          scorer=self.scorer_name, in_history=in_history,
                          in_history_steps_back=int(len(hist) - 1 - seen[-1]) if in_history
                          else -1)  # fmt: skip
        if not len(cand_hist):
            return exp
        weights = np.asarray(self.scorer(cand_hist, item), np.float64)
        rank = np.lexsort((steps, -weights))  # by weight, ties: more recent first
        for j in rank[:n_items]:
            if weights[j] > 0 and np.isfinite(weights[j]):
                h = int(cand_hist[j])
                exp.because.append(HistoryReason(h, self.titles[h], float(weights[j]),
                                                 int(steps[j])))  # fmt: skip
        exp.attributes = self._shared_attributes(cand_hist, item, n_attributes)
        if self.graph is not None and n_paths > 0:
            exp.paths = self._paths(cand_hist[rank], item, n_paths, max_hops)
        return exp

    def _shared_attributes(self, hist: np.ndarray, item: int, limit: int) -> list[SharedAttribute]:
        mine = self.attributes[item]
        holders: dict[tuple[str, str], list[int]] = {a: [] for a in mine}
        for h in hist.tolist():  # most recent first
            for a in mine & self.attributes[h]:
                holders[a].append(h)
        ranked = sorted(
            ((a, hs) for a, hs in holders.items() if hs), key=lambda x: (-len(x[1]), x[0])
        )
        return [
            SharedAttribute(
                a[0], a[1], tuple(hs[:5]), tuple(self.titles[h] for h in hs[:5]), len(hs)
            )
            for a, hs in ranked[:limit]
        ]

    def _paths(
        self, hist_by_weight: np.ndarray, item: int, limit: int, max_hops: int
    ) -> list[PathReason]:
        """The most specific path (rarest intermediate entities) from each of the most
        responsible history items, through external (non-attribute) entities; the `limit`
        most specific of those, at most one per history item."""
        assert self.graph is not None
        g = self.graph
        log_deg = np.log1p(g.degree())
        best: list[tuple[int, float, int, KGPath]] = []
        for rank, h in enumerate(hist_by_weight[: max(10, limit * 3)].tolist()):
            paths = [
                p for p in g.paths(h, item, max_hops=max_hops, max_paths=50)
                if all(g.entity_kinds[e] != ATTRIBUTE for e in p.entities[1:-1])
            ]  # fmt: skip
            if paths:
                p = paths[0]
                best.append((len(p), float(log_deg[list(p.entities[1:-1])].sum()), rank, p))
        best.sort(key=lambda x: x[:3])
        return [PathReason(p.entities[0], p, self.describe(p)) for *_, p in best[:limit]]

    def describe(self, path: KGPath) -> str:
        """``*Alien* (in your history) — same "directed by" as *Aliens* (an entity linked to
        both)``: relations and entities in readable words, never a raw Freebase/Satori id."""
        assert self.graph is not None
        g = self.graph
        a, b = self.titles[path.entities[0]], self.titles[path.entities[-1]]
        if len(path) == 1:
            rel = readable_relation(str(g.relation_names[path.relations[0]]))
            link = f"*{a}* {rel} *{b}*" if path.forward[0] else f"*{b}* {rel} *{a}*"
            return f"*{a}* (in your history) — knowledge graph: {link}"
        if len(path) == 2 and path.entities[1] >= g.n_items:
            mid = path.entities[1]
            rel = readable_relation(str(g.relation_names[path.relations[0]]))
            if not path.forward[0]:
                rel = f"{rel} (inverse)"
            name = str(g.entity_names[mid])
            if looks_like_id(name):
                return (f'*{a}* (in your history) — same "{rel}" as *{b}* '
                        f"(an entity linked to both)")  # fmt: skip
            what = "entity" if g.entity_kinds[mid] == EXTERNAL else "value"
            return f'*{a}* (in your history) — same "{rel}" {what} ({name}) as *{b}*'
        if len(path) == 2:
            return (f"*{a}* (in your history) — linked through *{self.titles[path.entities[1]]}* "
                    f"({self._readable_path(path)})")  # fmt: skip
        return f"*{a}* (in your history) — {self._readable_path(path)}"

    def _readable_path(self, path: KGPath) -> str:
        """``A —[directed by]→ an entity linked to A ←[directed by]— B`` (items by title,
        named entities by name, id-only entities as "an entity linked to" the previous)."""
        assert self.graph is not None
        g = self.graph
        names: list[str] = []
        for k, e in enumerate(path.entities):
            if e < g.n_items:
                names.append(f"*{self.titles[e]}*")
                continue
            name = str(g.entity_names[e])
            if looks_like_id(name):
                prev = path.entities[k - 1]
                anchor = f"*{self.titles[prev]}*" if prev < g.n_items else "it"
                name = f"an entity linked to {anchor}"
            names.append(name)
        out = names[0]
        for i, (r, fwd) in enumerate(zip(path.relations, path.forward, strict=True)):
            rel = readable_relation(str(g.relation_names[r]))
            out += f" —[{rel}]→ " if fwd else f" ←[{rel}]— "
            out += names[i + 1]
        return out

    def check_faithful(self, history: Sequence[int] | np.ndarray, exp: Explanation) -> list[str]:
        """Problems found when re-checking every reason against the data ([] = faithful)."""
        hist = set(np.asarray(history, dtype=np.int64).tolist())
        problems = []
        for r in exp.because:
            if r.item not in hist:
                problems.append(f"cited item {r.item} is not in the history")
        mine = self.attributes[exp.item]
        for a in exp.attributes:
            key = (a.kind, a.value)
            if key not in mine:
                problems.append(f"{a.kind} {a.value} is not on item {exp.item}")
            for h in a.history_items:
                if h not in hist or key not in self.attributes[h]:
                    problems.append(f"{a.kind} {a.value} is not on history item {h}")
        for p in exp.paths:
            if p.history_item not in hist or p.path.entities[0] != p.history_item:
                problems.append(f"path does not start at a history item: {p.text}")
            if p.path.entities[-1] != exp.item:
                problems.append(f"path does not end at the item: {p.text}")
            if self.graph is None or not self.graph.verify_path(p.path):
                problems.append(f"path is not in the graph: {p.text}")
        return problems


def _catalogue(source: Any) -> tuple[pd.DataFrame, Sequence[str], np.ndarray | None]:
    """(item table, titles, item text vectors or None) of a Dataset, Pipeline or table."""
    if isinstance(source, Dataset):
        return source.item_table, [str(t) for t in source.item_titles()], None
    if isinstance(source, pd.DataFrame):
        titles = (
            source["title"].astype(str).tolist()
            if "title" in source.columns
            else [str(i) for i in range(len(source))]
        )
        return source.reset_index(drop=True), titles, None
    table = getattr(source, "item_table", None)
    if table is not None and hasattr(source, "item_titles"):
        vectors = getattr(getattr(source, "resources", None), "item_text_vectors", None)
        return table, [str(t) for t in source.item_titles()], vectors
    raise RecsageError(
        f"Explainer needs a Dataset, a Pipeline or an item table, not {type(source).__name__}"
    )


__all__ = [
    "Explainer",
    "Explanation",
    "HistoryReason",
    "ItemScorer",
    "PathReason",
    "SharedAttribute",
    "attribute_scorer",
    "graph_scorer",
    "item_attributes",
    "looks_like_id",
    "matrix_scorer",
    "model_scorer",
    "readable_relation",
    "vector_scorer",
]


# --------------------------------------------------------------------------- command line


@dataclass
class CommandResult:
    """What `recsage explain` prints: the explanation plus context lines."""

    explanation: Explanation
    user: str
    item: str
    notes: list[str] = field(default_factory=list)
    faithful: list[str] = field(default_factory=list)  # problems found on re-check


def explain_command(
    user: str,
    item: str,
    *,
    dataset: Dataset | None = None,
    pipeline: Any = None,
    graph: ItemKnowledgeGraph | None = None,
    scorer: str = "auto",
) -> CommandResult:
    """Explain `item` for `user` (external ids) from a dataset or a fitted pipeline.

    With a pipeline, the user's history and item text vectors are the pipeline's; the
    pipeline is run for the user to find which channels retrieved the item; the scorer is
    the EASE channel's weights when there is one ("auto"). The graph comes from a "kg"
    channel, else `graph`, else the item table's attributes. With a dataset only, no
    channel is known; "auto" scores history items by attribute overlap.
    """
    if (dataset is None) == (pipeline is None):
        raise RecsageError("give exactly one of a dataset or a pipeline")
    notes: list[str] = []
    sources: list[str] = []
    vectors = None
    model = None
    if pipeline is not None:
        items, users = pipeline.items, pipeline.users
        u = users.index_of(user, what="user")
        i = items.index_of(item, what="item")
        history = pipeline.sequences[u]
        from recsage.knowledge.channel import KGChannel
        from recsage.retrieval.channels.model import ModelChannel

        for ch in pipeline.channels:
            if graph is None and isinstance(ch, KGChannel) and ch.graph is not None:
                graph = ch.graph
            if model is None and isinstance(ch, ModelChannel) and ch.model.name == "ease":
                model = ch.model
        vectors = pipeline.resources.item_text_vectors
        from recsage.types import Query

        cands, _ = pipeline.run_batch(pipeline.query_batch(Query(user=user, n=10)))
        hit = np.flatnonzero(cands.items[0] == i)
        if len(hit):
            sources = cands.row_sources(0, int(hit[0]))
            notes.append(f"rank {int(hit[0]) + 1} in the pipeline's final list")
        else:
            notes.append("not in the pipeline's final list for this user (no channel cited)")
        source: Any = pipeline
        if graph is None:
            from recsage.knowledge.graph import attribute_display, attribute_triples

            frame = attribute_triples(pipeline.item_table)
            keys = set(frame["tail"].astype(str))
            graph = ItemKnowledgeGraph.build(
                pipeline.n_items, [frame], item_names=[str(t) for t in pipeline.item_titles()],
                entity_display=attribute_display(keys), attribute_keys=keys,
            )  # fmt: skip
            notes.append("knowledge graph: item attributes only (the pipeline has no kg channel)")
    else:
        assert dataset is not None
        u = dataset.users.index_of(user, what="user")
        i = dataset.items.index_of(item, what="item")
        history = dataset.sequences()[u]
        if graph is None:
            graph = ItemKnowledgeGraph.for_dataset(dataset)
        notes.append("no pipeline given: the retrieving channels are unknown")
        source = dataset
        if scorer == "ease":
            from recsage.models.registry import create_model

            model = create_model("ease", l2=200.0).fit(dataset)
        elif scorer == "text":
            from recsage.encoders.cache import default_cache_dir
            from recsage.encoders.text import TextEncoder, encode_dataset_items

            vectors = encode_dataset_items(TextEncoder(cache_dir=default_cache_dir()), dataset)
    notes += graph.notes
    chosen: ItemScorer | None = None
    name = None
    if scorer in ("auto", "ease") and model is not None:
        chosen, name = model_scorer(model), "EASE"
    elif scorer == "ease":
        raise RecsageError("--scorer ease: the pipeline has no EASE channel")
    elif scorer in ("auto", "text") and vectors is not None:
        chosen, name = vector_scorer(vectors), "text similarity"
    elif scorer == "text":
        raise RecsageError("--scorer text: no item text vectors available")
    elif scorer not in ("auto", "attributes"):
        raise RecsageError(f"unknown scorer '{scorer}'; use auto, ease, text or attributes")
    explainer = Explainer(source, graph, scorer=chosen, scorer_name=name, item_vectors=vectors)
    exp = explainer.explain(history, i, sources=sources)
    return CommandResult(exp, user, item, notes, explainer.check_faithful(history, exp))
