"""`ItemKnowledgeGraph`: items, attribute and external entities, and the triples between them.

Entities `0 .. n_items - 1` are the catalogue's items (dense item index = entity index), so
an external entity linked to an item (a Freebase MID, a Satori id) *becomes* that item.
Other entities are attribute values built from the item table (genre, decade, brand) or
external entities named by their id (Freebase MIDs carry no names in the shipped files, so a
MID is shown as itself, e.g. ``m.0bln8``). Triples are three int64 arrays, sorted and unique;
per-relation scipy CSR adjacency is built on demand. Saved as a `recsage.artifacts` folder
(safetensors + manifest), never pickle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsage import __version__
from recsage.artifacts import KNOWLEDGE_GRAPH, read_artifact, write_artifact
from recsage.data.schema import Dataset
from recsage.errors import ArtifactError, DataError, RecsageError

FORMAT = "recsage-kg/1"
KINDS = ("item", "attribute", "external")
ITEM, ATTRIBUTE, EXTERNAL = 0, 1, 2
_ITEM_KEY = "\x00item:"  # namespace for "this key is dense item index N" inside builders

#: item-table column -> (relation name, entity-key prefix) for attribute triples
DEFAULT_ATTRIBUTES: dict[str, tuple[str, str]] = {
    "categories": ("has_category", "category"),
    "brand": ("has_brand", "brand"),
}


@dataclass(frozen=True)
class KGPath:
    """A walk e0 -r1- e1 -r2- ... ek; `forward[i]` says (e_i, r_i+1, e_i+1) is a stored triple
    (else the stored triple is (e_i+1, r_i+1, e_i))."""

    entities: tuple[int, ...]
    relations: tuple[int, ...]
    forward: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.relations)

    def triples(self) -> list[tuple[int, int, int]]:
        """The stored (head, relation, tail) triples the path walks, in order."""
        out = []
        for i, (r, fwd) in enumerate(zip(self.relations, self.forward, strict=True)):
            a, b = self.entities[i], self.entities[i + 1]
            out.append((a, r, b) if fwd else (b, r, a))
        return out


@dataclass(frozen=True)
class Neighbor:
    """One edge at an entity: the relation, the entity at the other end, and the direction."""

    relation: str
    entity: int
    name: str
    outgoing: bool  # True: (this, relation, entity) is stored; False: (entity, relation, this)


class ItemKnowledgeGraph:
    """Entities (items first), relation names and (head, relation, tail) int triples."""

    def __init__(
        self,
        *,
        n_items: int,
        entity_names: Sequence[str] | np.ndarray,
        entity_kinds: np.ndarray,
        relation_names: Sequence[str] | np.ndarray,
        head: np.ndarray,
        relation: np.ndarray,
        tail: np.ndarray,
        notes: Sequence[str] = (),
    ) -> None:
        self.n_items = int(n_items)
        self.entity_names = np.asarray([str(x) for x in entity_names], dtype=object)
        self.entity_kinds = np.asarray(entity_kinds, dtype=np.int8)
        self.relation_names = np.asarray([str(x) for x in relation_names], dtype=object)
        self.notes = list(notes)
        n_ent, n_rel = len(self.entity_names), len(self.relation_names)
        if len(self.entity_kinds) != n_ent or n_ent < self.n_items:
            raise RecsageError("entity names/kinds must cover at least the items")
        h, r, t = (np.asarray(a, dtype=np.int64) for a in (head, relation, tail))
        if not (len(h) == len(r) == len(t)):
            raise RecsageError("head, relation and tail arrays differ in length")
        if len(h) and (
            min(h.min(), t.min(), r.min()) < 0 or max(h.max(), t.max()) >= n_ent or r.max() >= n_rel
        ):
            raise RecsageError("triple index out of range")
        key = (h * n_rel + r) * n_ent + t
        key, first = np.unique(key, return_index=True)
        self.head, self.relation, self.tail = h[first], r[first], t[first]
        self._key = key
        self._out: tuple[np.ndarray, np.ndarray] | None = None
        self._in: tuple[np.ndarray, np.ndarray] | None = None
        self._adj: dict[int, sp.csr_matrix] = {}
        self._rel_index = {str(n): i for i, n in enumerate(self.relation_names)}

    # ---- sizes --------------------------------------------------------------------------
    @property
    def n_entities(self) -> int:
        return len(self.entity_names)

    @property
    def n_relations(self) -> int:
        return len(self.relation_names)

    @property
    def n_triples(self) -> int:
        return len(self.head)

    def describe(self) -> dict[str, int]:
        kinds = np.bincount(self.entity_kinds, minlength=len(KINDS))
        linked = np.zeros(self.n_items, bool)
        for side in (self.head, self.tail):
            linked[side[side < self.n_items]] = True
        return {
            "items": self.n_items,
            "items_with_triples": int(linked.sum()),
            "attribute_entities": int(kinds[ATTRIBUTE]),
            "external_entities": int(kinds[EXTERNAL]),
            "relations": self.n_relations,
            "triples": self.n_triples,
        }

    def relation_id(self, name: str) -> int:
        """Index of a relation name (raises naming the known ones)."""
        if name not in self._rel_index:
            known = ", ".join(sorted(self._rel_index)[:30])
            raise RecsageError(f"unknown relation '{name}'; known: {known}")
        return self._rel_index[name]

    # ---- adjacency ----------------------------------------------------------------------
    def _outgoing(self) -> tuple[np.ndarray, np.ndarray]:
        """(indptr over heads, triple ids sorted by head) — triples are already head-sorted."""
        if self._out is None:
            ptr = np.searchsorted(self.head, np.arange(self.n_entities + 1)).astype(np.int64)
            self._out = (ptr, np.arange(self.n_triples, dtype=np.int64))
        return self._out

    def _incoming(self) -> tuple[np.ndarray, np.ndarray]:
        if self._in is None:
            order = np.argsort(self.tail, kind="stable").astype(np.int64)
            ptr = np.searchsorted(self.tail[order], np.arange(self.n_entities + 1))
            self._in = (ptr.astype(np.int64), order)
        return self._in

    def adjacency(self, relation: int | str) -> sp.csr_matrix:
        """Head x tail CSR matrix (entities x entities) of one relation (cached)."""
        r = self.relation_id(relation) if isinstance(relation, str) else int(relation)
        if r not in self._adj:
            sel = self.relation == r
            n = self.n_entities
            self._adj[r] = sp.csr_matrix(
                (np.ones(int(sel.sum()), np.float32), (self.head[sel], self.tail[sel])),
                shape=(n, n),
            )
        return self._adj[r]

    def degree(self) -> np.ndarray:
        """Number of triples touching each entity."""
        n = self.n_entities
        return np.bincount(self.head, minlength=n) + np.bincount(self.tail, minlength=n)

    def edges(self, entity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(other entity, relation, outgoing?) for every triple touching `entity`."""
        optr, oids = self._outgoing()
        iptr, iids = self._incoming()
        out_ids = oids[optr[entity] : optr[entity + 1]]
        in_ids = iids[iptr[entity] : iptr[entity + 1]]
        other = np.concatenate([self.tail[out_ids], self.head[in_ids]])
        rel = np.concatenate([self.relation[out_ids], self.relation[in_ids]])
        outgoing = np.concatenate([np.ones(len(out_ids), bool), np.zeros(len(in_ids), bool)])
        return other, rel, outgoing

    def has_triple(self, head: int, relation: int, tail: int) -> bool:
        """Whether (head, relation, tail) is stored."""
        n_ent, n_rel = self.n_entities, self.n_relations
        if not (0 <= head < n_ent and 0 <= tail < n_ent and 0 <= relation < n_rel):
            return False
        key = (int(head) * n_rel + int(relation)) * n_ent + int(tail)
        pos = int(np.searchsorted(self._key, key))
        return pos < len(self._key) and int(self._key[pos]) == key

    def verify_path(self, path: KGPath) -> bool:
        """True when every step of `path` is a stored triple (the faithfulness check)."""
        if len(path.entities) != len(path.relations) + 1:
            return False
        return all(self.has_triple(h, r, t) for h, r, t in path.triples())

    # ---- queries ------------------------------------------------------------------------
    def neighbors(self, item: int) -> list[Neighbor]:
        """Every entity one triple away from `item` (an entity index; items are 0..n-1)."""
        self._check_entity(item)
        other, rel, outgoing = self.edges(int(item))
        return [
            Neighbor(str(self.relation_names[r]), int(e), str(self.entity_names[e]), bool(o))
            for e, r, o in zip(other.tolist(), rel.tolist(), outgoing.tolist(), strict=True)
        ]

    def item_entities(self, item: int) -> set[int]:
        """Entities directly connected to `item`."""
        other, _, _ = self.edges(int(item))
        return set(other.tolist())

    def paths(
        self,
        item_a: int,
        item_b: int,
        *,
        max_hops: int = 2,
        max_paths: int = 20,
        max_expansions: int = 200_000,
    ) -> list[KGPath]:
        """Relation paths from `item_a` to `item_b` of at most `max_hops` triples.

        Bounded depth-first search over the stored triples in both directions, visiting no
        entity twice per path and giving up after `max_expansions` edge visits. Paths with
        the same entity sequence are reported once (the variant walking the most triples
        forward). Sorted by length, then by specificity: the rarer the intermediate
        entities (low degree), the earlier.
        """
        self._check_entity(item_a)
        self._check_entity(item_b)
        if max_hops < 1 or item_a == item_b:
            return []
        found: dict[tuple[int, ...], KGPath] = {}
        budget = [max_expansions]
        ents: list[int] = [int(item_a)]
        rels: list[int] = []
        fwds: list[bool] = []

        def walk(node: int, remaining: int) -> None:
            """Extend the current path; record it when it reaches b with exactly `remaining`
            = 1 step left (iterative deepening finds short paths before long ones)."""
            other, rel, outgoing = self.edges(node)
            budget[0] -= len(other)
            if budget[0] < 0:
                return
            for e, r, o in zip(other.tolist(), rel.tolist(), outgoing.tolist(), strict=True):
                if e in ents:
                    continue
                if remaining == 1:
                    if e == item_b:
                        path = KGPath((*ents, e), (*rels, r), (*fwds, bool(o)))
                        old = found.get(path.entities)
                        if old is None or sum(path.forward) > sum(old.forward):
                            found[path.entities] = path
                elif e != item_b:
                    ents.append(e)
                    rels.append(r)
                    fwds.append(bool(o))
                    walk(e, remaining - 1)
                    ents.pop()
                    rels.pop()
                    fwds.pop()

        for hops in range(1, max_hops + 1):
            if budget[0] < 0 or len(found) >= max_paths:
                break
            walk(int(item_a), hops)
        deg = self.degree()

        def sort_key(p: KGPath) -> tuple[int, float, tuple[int, ...]]:
            mids = p.entities[1:-1]
            return (len(p), float(np.log1p(deg[list(mids)]).sum()) if mids else 0.0, p.entities)

        return sorted(found.values(), key=sort_key)[:max_paths]

    def describe_path(self, path: KGPath, *, titles: Sequence[str] | None = None) -> str:
        """``Alien —[film.film.directed_by]→ m.0x2 ←[film.film.directed_by]— Aliens``."""
        names = [self.display_name(e, titles=titles) for e in path.entities]
        out = names[0]
        for i, (r, fwd) in enumerate(zip(path.relations, path.forward, strict=True)):
            rel = self.relation_names[r]
            out += f" —[{rel}]→ " if fwd else f" ←[{rel}]— "
            out += names[i + 1]
        return out

    def display_name(self, entity: int, *, titles: Sequence[str] | None = None) -> str:
        """Item title (when `titles` are given) or the stored entity name."""
        if titles is not None and entity < self.n_items:
            return str(titles[entity])
        return str(self.entity_names[entity])

    def _check_entity(self, e: int) -> None:
        if not 0 <= int(e) < self.n_entities:
            raise RecsageError(f"entity {e} out of range 0..{self.n_entities - 1}")

    # ---- persistence --------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """Integer arrays for safetensors (names live in `meta()`)."""
        return {
            "kg.head": self.head,
            "kg.relation": self.relation,
            "kg.tail": self.tail,
            "kg.entity_kinds": self.entity_kinds,
        }

    def meta(self) -> dict[str, Any]:
        """JSON-able names and counts."""
        return {
            "format": FORMAT,
            "package_version": __version__,
            "n_items": self.n_items,
            "kinds": list(KINDS),
            "entity_names": self.entity_names.tolist(),
            "relation_names": self.relation_names.tolist(),
            "notes": self.notes,
            "counts": self.describe(),
        }

    @classmethod
    def from_parts(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> ItemKnowledgeGraph:
        """Inverse of (`arrays()`, `meta()`)."""
        if meta.get("format") != FORMAT:
            raise ArtifactError(f"unsupported knowledge-graph format {meta.get('format')!r}")
        try:
            return cls(
                n_items=int(meta["n_items"]),
                entity_names=meta["entity_names"],
                entity_kinds=arrays["kg.entity_kinds"],
                relation_names=meta["relation_names"],
                head=arrays["kg.head"],
                relation=arrays["kg.relation"],
                tail=arrays["kg.tail"],
                notes=meta.get("notes", []),
            )
        except KeyError as exc:
            raise ArtifactError(f"knowledge graph artifact lacks {exc}") from None

    def save(self, path: str | Path) -> Path:
        """An artifact folder: int arrays in `state.safetensors`, names in the manifest."""
        return write_artifact(
            path, KNOWLEDGE_GRAPH, name="ItemKnowledgeGraph", arrays=self.arrays(),
            extra={"graph": self.meta()},
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> ItemKnowledgeGraph:
        """Load a graph written by `save`."""
        art = read_artifact(path, KNOWLEDGE_GRAPH)
        try:
            return cls.from_parts(art.arrays(), dict(art.get("graph") or {}))
        except ArtifactError as exc:
            raise ArtifactError(f"{art.path}: {exc}") from None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        n_items: int,
        triples: Iterable[pd.DataFrame],
        *,
        item_names: Sequence[str] | None = None,
        entity_display: dict[str, str] | None = None,
        attribute_keys: Iterable[str] = (),
        notes: Sequence[str] = (),
    ) -> ItemKnowledgeGraph:
        """Graph from frames of string keys `head, relation, tail`.

        A key ``item_key(i)`` names item i; other keys become entities in first-appearance
        order. Keys in `attribute_keys` are attribute entities, the rest external ones.
        `entity_display` maps a key to its shown name (default: the key itself).
        """
        frames = [f[["head", "relation", "tail"]] for f in triples]
        all_t = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame({"head": [], "relation": [], "tail": []}, dtype=object)
        )
        keys = np.asarray(
            pd.unique(pd.concat([all_t["head"], all_t["tail"]], ignore_index=True).astype(str)),
            dtype=object,
        )
        is_item = np.array([k.startswith(_ITEM_KEY) for k in keys], bool)
        other = keys[~is_item]
        ent_idx = np.full(len(keys), -1, np.int64)
        ent_idx[is_item] = [int(k[len(_ITEM_KEY) :]) for k in keys[is_item]]
        if is_item.any() and (ent_idx[is_item].min() < 0 or ent_idx[is_item].max() >= n_items):
            raise RecsageError(f"item index in a triple is outside 0..{n_items - 1}")
        ent_idx[~is_item] = n_items + np.arange(len(other))
        key_index = pd.Index(keys)
        h = ent_idx[key_index.get_indexer(all_t["head"].astype(str))]
        t = ent_idx[key_index.get_indexer(all_t["tail"].astype(str))]
        rel_codes, rel_names = pd.factorize(all_t["relation"].astype(str))
        display = entity_display or {}
        attr = set(attribute_keys)
        titles = (
            list(item_names) if item_names is not None else [f"item {i}" for i in range(n_items)]
        )
        names = [str(x) for x in titles] + [display.get(k, k) for k in other]
        kinds = np.concatenate(
            [
                np.full(n_items, ITEM, np.int8),
                np.array([ATTRIBUTE if k in attr else EXTERNAL for k in other], np.int8),
            ]
        )
        return cls(
            n_items=n_items,
            entity_names=names,
            entity_kinds=kinds,
            relation_names=[str(x) for x in rel_names],
            head=h,
            relation=rel_codes.astype(np.int64),
            tail=t,
            notes=notes,
        )

    @classmethod
    def for_dataset(
        cls,
        dataset: Dataset,
        *,
        external: str = "auto",
        category_relation: str | None = None,
    ) -> ItemKnowledgeGraph:
        """Attribute triples from the item table plus the dataset's known external triples.

        `external`: "auto" adds the ML-100K Freebase triples for `ml-100k` and the Satori
        triples for `lastfm`; "none" keeps attributes only; a folder path adds RecBole
        `<name>.kg` + `<name>.link` files found there (name = the dataset's name).
        """
        frames = [attribute_triples(dataset.item_table, category_relation=category_relation)]
        notes = [f"attribute triples from the item table of '{dataset.name}'"]
        ext = external.strip()
        if ext not in ("", "none", "auto"):
            frames.append(recbole_kg_triples(Path(ext), dataset.name, dataset.items.ids))
            notes.append(f"external triples from {ext}")
        elif ext == "auto" and dataset.name == "ml-100k":
            frames.append(recbole_kg_triples(ml100k_kg_dir(), "ml-100k", dataset.items.ids))
            notes.append("Freebase triples from ml-100k.kg / ml-100k.link (KB4Rec via RecBole)")
        elif ext == "auto" and dataset.name == "lastfm":
            frames.append(kgcn_triples(lastfm_kg_dir(), dataset.items.ids))
            notes.append("Satori triples from kgcn-lastfm/kg.txt (KGCN)")
        attr_keys = set(frames[0]["tail"].astype(str))
        return cls.build(
            dataset.n_items,
            frames,
            item_names=[str(t) for t in dataset.item_titles()],
            entity_display=attribute_display(attr_keys),
            attribute_keys=attr_keys,
            notes=notes,
        )


def item_key(index: int | np.ndarray) -> Any:
    """Builder key of dense item index `index` (vectorized over arrays)."""
    if isinstance(index, np.ndarray):
        return np.char.add(_ITEM_KEY, index.astype(str)).astype(object)
    return f"{_ITEM_KEY}{int(index)}"


def attribute_display(keys: Iterable[str]) -> dict[str, str]:
    """``genre:Comedy`` -> ``Comedy``; ``decade:1990`` -> ``1990s``."""
    out = {}
    for k in keys:
        prefix, _, value = k.partition(":")
        out[k] = f"{value}s" if prefix == "decade" else value
    return out


def _decade(year: object) -> int | None:
    try:
        y = int(float(str(year)))
    except (TypeError, ValueError):
        return None
    return y // 10 * 10 if y > 0 else None


def attribute_triples(
    item_table: pd.DataFrame,
    *,
    category_relation: str | None = None,
    years: bool = False,
) -> pd.DataFrame:
    """String-key triples from item attributes: categories/genres, decade (and year), brand.

    Categories use relation `has_genre` when `category_relation` is None and the table
    looks like a movie table (has `year`), else `has_category`.
    """
    rows_h: list[np.ndarray] = []
    rows_r: list[str] = []
    rows_t: list[np.ndarray] = []
    n = len(item_table)
    if category_relation is None:
        category_relation = "has_genre" if "year" in item_table.columns else "has_category"
    if "categories" in item_table.columns:
        lists = [
            [str(c) for c in v] if isinstance(v, list | tuple | np.ndarray) else []
            for v in item_table["categories"].tolist()
        ]
        lens = np.array([len(x) for x in lists], np.int64)
        prefix = "genre" if category_relation == "has_genre" else "category"
        tails = np.array([f"{prefix}:{c}" for x in lists for c in x], dtype=object)
        rows_h.append(np.repeat(np.arange(n), lens))
        rows_r += [category_relation] * int(lens.sum())
        rows_t.append(tails)
    if "year" in item_table.columns:
        dec = [_decade(y) for y in item_table["year"].tolist()]
        has = np.array([d is not None for d in dec], bool)
        rows_h.append(np.flatnonzero(has))
        rows_r += ["released_in_decade"] * int(has.sum())
        rows_t.append(np.array([f"decade:{d}" for d in dec if d is not None], dtype=object))
        if years:
            yr = pd.to_numeric(item_table["year"], errors="coerce").to_numpy(np.float64)
            ok = np.isfinite(yr)
            rows_h.append(np.flatnonzero(ok))
            rows_r += ["released_in_year"] * int(ok.sum())
            rows_t.append(np.array([f"year:{int(y)}" for y in yr[ok]], dtype=object))
    if "brand" in item_table.columns:
        brand = item_table["brand"].astype(object).where(item_table["brand"].notna(), "")
        b = brand.astype(str).str.strip().to_numpy(dtype=object)
        ok = b != ""
        rows_h.append(np.flatnonzero(ok))
        rows_r += ["has_brand"] * int(ok.sum())
        rows_t.append(np.array([f"brand:{x}" for x in b[ok]], dtype=object))
    if not rows_h:
        return pd.DataFrame({"head": [], "relation": [], "tail": []}, dtype=object)
    heads = np.concatenate(rows_h).astype(np.int64)
    return pd.DataFrame(
        {"head": item_key(heads), "relation": rows_r, "tail": np.concatenate(rows_t)}
    )


# --------------------------------------------------------------------------- external files


def ml100k_kg_dir() -> Path:
    """Folder holding `ml-100k.kg` + `ml-100k.link`: the shared data copy, else recbole's."""
    from recsage.data.sources.recbole import _recbole_example_dir
    from recsage.data.sources.registry import shared_data_dir

    try:
        shared = shared_data_dir() / "ml-100k"
        if (shared / "ml-100k.kg").is_file():
            return shared
    except RecsageError:
        pass
    return _recbole_example_dir()


def lastfm_kg_dir() -> Path:
    """The shared `kg/kgcn-lastfm` folder."""
    from recsage.data.sources.registry import shared_data_dir

    return shared_data_dir() / "kg" / "kgcn-lastfm"


def _read_tsv(path: Path, names: list[str], *, header: bool) -> pd.DataFrame:
    if not path.is_file():
        raise DataError("file not found", path=str(path))
    frame = pd.read_csv(
        path, sep="\t", header=0 if header else None, dtype=str, keep_default_na=False,
        quoting=3, engine="c",
    )  # fmt: skip
    if frame.shape[1] != len(names):
        raise DataError(
            f"expected {len(names)} tab-separated columns, found {frame.shape[1]}", path=str(path)
        )
    frame.columns = names
    empty = (frame == "").any(axis=1).to_numpy()
    if empty.any():
        line = int(np.flatnonzero(empty)[0]) + (2 if header else 1)
        raise DataError("empty field", path=str(path), line=line)
    return frame


def _link_external(
    triples: pd.DataFrame, link_item: np.ndarray, link_entity: np.ndarray, item_ids: np.ndarray
) -> pd.DataFrame:
    """Replace linked external keys by item keys (items missing from `item_ids` stay external)."""
    pos = pd.Index(np.asarray(item_ids, dtype=object).astype(str)).get_indexer(
        pd.Index(np.asarray(link_item).astype(str))
    )
    ok = pos >= 0
    mapping = pd.Series(item_key(pos[ok].astype(np.int64)), index=np.asarray(link_entity)[ok])
    mapping = mapping[~mapping.index.duplicated()]
    out = triples.copy()
    for col in ("head", "tail"):
        mapped = out[col].map(mapping)
        out[col] = mapped.where(mapped.notna(), out[col])
    return out


def recbole_kg_triples(folder: Path, name: str, item_ids: np.ndarray) -> pd.DataFrame:
    """RecBole `<name>.kg` (head_id, relation_id, tail_id) with `<name>.link` item links."""
    kg = _read_tsv(folder / f"{name}.kg", ["head", "relation", "tail"], header=True)
    link = _read_tsv(folder / f"{name}.link", ["item_id", "entity"], header=True)
    return _link_external(kg, link["item_id"].to_numpy(), link["entity"].to_numpy(), item_ids)


def kgcn_triples(folder: Path, item_ids: np.ndarray) -> pd.DataFrame:
    """KGCN `kg.txt` (entity indices) with `item_index2entity_id.txt` (item id -> entity)."""
    kg = _read_tsv(folder / "kg.txt", ["head", "relation", "tail"], header=False)
    link = _read_tsv(folder / "item_index2entity_id.txt", ["item_id", "entity"], header=False)
    kg["head"] = "satori:" + kg["head"]
    kg["tail"] = "satori:" + kg["tail"]
    ent = ("satori:" + link["entity"]).to_numpy()
    return _link_external(kg, link["item_id"].to_numpy(), ent, item_ids)


def load_lastfm_kg(root: str | Path | None = None) -> tuple[Dataset, ItemKnowledgeGraph]:
    """Last.FM (HetRec 2011) listening data over the KG-linked artists, plus the KGCN graph.

    Interactions: `user_artists.dat` rows whose artist is in `item_index2entity_id.txt`
    (the 3,846 KG-linked artists); the rest are dropped and counted. The value is the
    listening count; feedback is implicit. There are no timestamps, so each user's rows
    keep the file order (ascending artist id) and the timestamps are those positions:
    leave-one-out then holds out the last-listed artist of each user, a fixed but not a
    temporal split. Artists have no names in these files: titles are ``artist <id>``.
    """
    from recsage.data.schema import Interactions, LoadReport
    from recsage.data.vocab import Vocabulary

    folder = lastfm_kg_dir() if root is None else Path(root)
    inter_path = folder / "user_artists.dat"
    frame = _read_tsv(inter_path, ["user", "item", "weight"], header=True)
    link = _read_tsv(folder / "item_index2entity_id.txt", ["item_id", "entity"], header=False)
    report = LoadReport(source=str(inter_path))
    report.rows_read = len(frame)
    items = Vocabulary(link["item_id"].to_numpy(dtype=object))
    item_idx = items.lookup(frame["item"].to_numpy(dtype=object))
    keep = item_idx >= 0
    report.drop("artist not linked to the knowledge graph", int((~keep).sum()))
    users = Vocabulary.from_values(frame["user"].to_numpy(dtype=object)[keep])
    kept = frame.loc[keep]
    pos = kept.groupby("user", sort=False).cumcount().to_numpy(np.float64)
    try:
        weight = kept["weight"].astype(np.float64).to_numpy()
    except ValueError as exc:
        raise DataError(f"non-numeric weight: {exc}", path=str(inter_path)) from None
    inter = Interactions.build(
        users.lookup(kept["user"].to_numpy(dtype=object)),
        item_idx[keep],
        timestamp=pos,
        value=weight.astype(np.float32),
    )
    report.notes.append(
        "no timestamps: per-user file order (ascending artist id) is used as time, so LOO "
        "holds out each user's last-listed artist (not a temporal split)"
    )
    table = pd.DataFrame({"item_id": items.ids, "title": [f"artist {i}" for i in items.ids]})
    data = Dataset("lastfm", inter, users, items, table, None, report)
    graph = ItemKnowledgeGraph.build(
        data.n_items,
        [kgcn_triples(folder, items.ids)],
        item_names=[str(t) for t in table["title"]],
        notes=["Satori triples from kgcn-lastfm/kg.txt (KGCN); entities have no names"],
    )
    return data, graph


__all__ = [
    "KINDS",
    "ItemKnowledgeGraph",
    "KGPath",
    "Neighbor",
    "attribute_triples",
    "item_key",
    "kgcn_triples",
    "load_lastfm_kg",
    "recbole_kg_triples",
]
