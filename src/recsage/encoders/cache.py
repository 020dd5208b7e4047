"""On-disk embedding cache keyed by content hash and encoder fingerprint."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recsage.errors import RecsageError

_KEY_BYTES = 20  # sha1 digest


def default_cache_dir() -> Path:
    """Text-vector cache: `$RECSAGE_CACHE_DIR/embeddings`, else ~/.cache/recsage/embeddings."""
    root = os.environ.get("RECSAGE_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "recsage"
    return base / "embeddings"


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
