"""One on-disk format for everything recsage saves: a directory with `manifest.json`,
`state.safetensors` and, where a library has its own file format, native files.

The manifest names the format and its version, the component (e.g. ``"model": "sasrec"``),
its config, the data fingerprint and the package version, plus any JSON the component
adds. Arrays go to safetensors (numpy or torch tensors); LightGBM text models, FAISS
indexes and Hugging Face weights stay in their libraries' own files. Nothing is pickled.

Writes are staged in a hidden sibling folder and renamed into place, so a crash leaves
either the old artifact or the new one, never half of each. Every format recsage writes is
declared below, so a wrong directory gets an error naming what it actually holds.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsage import __version__
from recsage.errors import ArtifactError

MANIFEST = "manifest.json"
STATE = "state.safetensors"
RESERVED = ("format", "format_version", "package_version", "config", "data_fingerprint")


@dataclass(frozen=True)
class ArtifactFormat:
    """A directory format: `name` and the `version` written now; `kind` is the manifest key
    that names the component (``{"model": "ease"}``); `what` is said in errors.

    `readable` lists the versions this code still loads (default: only `version`);
    `files` must exist besides the manifest; `aliases` are older names of the format.
    """

    name: str
    version: int
    kind: str
    what: str
    files: tuple[str, ...] = (STATE,)
    readable: tuple[int, ...] = ()
    aliases: tuple[str, ...] = ()
    loader: str = ""  # how to load one, for hints when another kind was expected

    def reads(self, version: int) -> bool:
        return version in (self.readable or (self.version,))


MODEL = ArtifactFormat(
    "recsage-model", 1, "model", "a recsage model", loader="Recommender.load / --model"
)
RANKER = ArtifactFormat(
    "recsage-ranker", 1, "ranker", "a recsage ranker", loader="Ranker.load / a learned stage"
)
VECTOR_INDEX = ArtifactFormat(
    "recsage-vector-index", 2, "kind", "a saved vector index",
    aliases=("recsage.vector_index",), loader="load_index",
)  # fmt: skip
PIPELINE = ArtifactFormat(
    "recsage-pipeline", 2, "pipeline", "a recsage pipeline",
    files=(STATE, "pipeline.toml"), loader="Pipeline.load / --pipeline",
)  # fmt: skip
KNOWLEDGE_GRAPH = ArtifactFormat(
    "recsage-knowledge-graph", 2, "knowledge_graph", "a knowledge-graph folder",
    loader="ItemKnowledgeGraph.load",
)  # fmt: skip
TRANSE = ArtifactFormat("recsage-transe", 2, "embeddings", "a TransE folder", loader="TransE.load")
CROSS_ENCODER = ArtifactFormat(
    "recsage-cross-encoder", 2, "ranker", "a cross-encoder folder",
    files=("config.json",), loader="CrossEncoderRanker.load",
)  # fmt: skip
CROSS_ENCODER_STAGE = ArtifactFormat(
    "recsage-cross-encoder-stage", 1, "stage", "a saved cross-encoder stage", files=()
)
LLM_ADAPTER = ArtifactFormat(
    "recsage-llm-adapter", 1, "model", "LoRA adapters of a fine-tuned LLM ranker",
    loader="LMRanker.load",
)  # fmt: skip
LLM_RANKER_STAGE = ArtifactFormat(
    "recsage-llm-ranker-stage", 1, "stage", "a saved LLM ranker stage", files=()
)
CHECKPOINT = ArtifactFormat(
    "recsage-checkpoint", 1, "trainer", "a training checkpoint", loader="fit(checkpoint_dir=...)"
)
FORMATS: dict[str, ArtifactFormat] = {
    f.name: f
    for f in (
        MODEL, RANKER, VECTOR_INDEX, PIPELINE, KNOWLEDGE_GRAPH, TRANSE, CROSS_ENCODER,
        CROSS_ENCODER_STAGE, LLM_ADAPTER, LLM_RANKER_STAGE, CHECKPOINT,
    )
}  # fmt: skip
_ALIASES = {alias: f for f in FORMATS.values() for alias in f.aliases}

#: files that mark folders written by older recsage versions (before this format)
LEGACY_MARKERS = {
    "pipeline.toml": "a recsage pipeline (load it with Pipeline.load / --pipeline)",
    "graph.json": "a knowledge graph saved by an older recsage (rebuild it)",
    "transe.json": "TransE embeddings saved by an older recsage (retrain them)",
    "cross_encoder.json": "a cross-encoder saved by an older recsage (re-save it)",
    "checkpoint.json": "a checkpoint written by an older recsage (use a fresh folder)",
}


@dataclass
class Artifact:
    """A checked artifact directory: its manifest and lazy access to its files."""

    path: Path
    manifest: dict[str, Any]
    format: ArtifactFormat
    version: int
    _arrays: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The component's name (e.g. "sasrec" for a model)."""
        return str(self.manifest.get(self.format.kind, ""))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.manifest.get("config") or {})

    @property
    def data_fingerprint(self) -> str:
        return str(self.manifest.get("data_fingerprint") or "")

    def get(self, key: str, default: Any = None) -> Any:
        return self.manifest.get(key, default)

    def file(self, name: str) -> Path:
        """Path of a file or folder inside the artifact; a clear error when it is missing."""
        p = self.path / name
        if not p.exists():
            raise ArtifactError(
                f"{self.path}: missing {name}; {self.format.what} needs it (the artifact is "
                "incomplete or corrupt: save it again)"
            )
        return p

    def arrays(self) -> dict[str, np.ndarray]:
        """The named arrays of `state.safetensors` as numpy (read once)."""
        if self._arrays is None:
            from safetensors.numpy import load_file

            self._arrays = _read_state(self.file(STATE), load_file)
        return dict(self._arrays)

    def tensors(self) -> dict[str, Any]:
        """The named arrays of `state.safetensors` as torch tensors (needs torch)."""
        from safetensors.torch import load_file

        return dict(_read_state(self.file(STATE), load_file))


def _read_state(path: Path, load: Callable[[str], Any]) -> Any:
    try:
        return load(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise ArtifactError(f"{path}: unreadable safetensors file ({exc})") from exc


def write_artifact(
    path: str | Path,
    fmt: ArtifactFormat,
    *,
    name: str,
    config: Mapping[str, Any] | None = None,
    data_fingerprint: str = "",
    arrays: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    write: Callable[[Path], object] | None = None,
) -> Path:
    """Write an artifact directory at `path` (replacing an older artifact there).

    `arrays`: name -> numpy array or torch tensor, saved to `state.safetensors`; `extra`:
    JSON values stored at the manifest's top level; `write(folder)`: writes native files
    or nested artifacts into the staging folder. Returns `path`.
    """
    path = Path(path)
    clash = sorted(set(extra or {}) & {*RESERVED, fmt.kind})
    if clash:
        raise ArtifactError(f"{path}: manifest keys {clash} are reserved by the artifact format")
    _check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = path.parent / f".{path.name}.tmp-{secrets.token_hex(4)}"
    stage.mkdir()
    try:
        if arrays is not None:
            _write_state(stage / STATE, arrays)
        if write is not None:
            write(stage)
        manifest = {
            "format": fmt.name,
            "format_version": fmt.version,
            fmt.kind: name,
            "package_version": __version__,
            "config": dict(config or {}),
            "data_fingerprint": data_fingerprint,
            **dict(extra or {}),
        }
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _swap_into_place(stage, path)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return path


def read_artifact(path: str | Path, fmt: ArtifactFormat) -> Artifact:
    """Open an artifact directory of format `fmt`; ArtifactError saying what is wrong (and
    what the folder holds instead) when it is missing, corrupt, another kind or version."""
    path = Path(path)
    if not path.is_dir():
        state = "is a file" if path.exists() else "does not exist"
        raise ArtifactError(f"{path}: not {fmt.what} ({path} {state})")
    mpath = path / MANIFEST
    if not mpath.is_file():
        held = _legacy_kind(path)
        hint = f"; it looks like {held}" if held else ""
        raise ArtifactError(f"{path}: not {fmt.what} (missing {MANIFEST}){hint}")
    try:
        manifest = json.loads(mpath.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("the top level is not an object")
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{mpath}: unreadable manifest ({exc})") from exc
    name, version = format_of(manifest)
    actual = FORMATS.get(name) or _ALIASES.get(name)
    if actual is not fmt:
        raise ArtifactError(f"{path}: not {fmt.what}; it holds {_describe(name, actual)}")
    if not fmt.reads(version):
        newer = version > fmt.version
        advice = "upgrade recsage" if newer else "save it again with this recsage"
        raise ArtifactError(
            f"{mpath}: {fmt.name} format version {version} is not supported (this recsage "
            f"reads {', '.join(map(str, fmt.readable or (fmt.version,)))}); {advice}"
        )
    art = Artifact(path, manifest, fmt, version)
    for f in fmt.files:
        art.file(f)
    return art


def format_of(manifest: Mapping[str, Any]) -> tuple[str, int]:
    """(format name, version) of a manifest; understands the older "name/N" spelling."""
    raw = str(manifest.get("format", ""))
    if "/" in raw and "format_version" not in manifest:
        base, _, ver = raw.rpartition("/")
        if ver.isdigit():
            return base, int(ver)
    try:
        return raw, int(manifest.get("format_version", 0))
    except (TypeError, ValueError):
        return raw, 0


def describe_artifact(path: str | Path) -> str | None:
    """What kind of recsage artifact `path` holds ("a recsage pipeline", ...), or None."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return _legacy_kind(path)
    if not isinstance(manifest, dict):
        return None
    name, _ = format_of(manifest)
    fmt = FORMATS.get(name) or _ALIASES.get(name)
    return _describe(name, fmt)


def is_artifact(path: str | Path, fmt: ArtifactFormat) -> bool:
    """True when `path` has a manifest of format `fmt` (any version)."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    name, _ = format_of(manifest)
    return name == fmt.name or name in fmt.aliases


# ---- internals -----------------------------------------------------------------------------
def _describe(name: str, fmt: ArtifactFormat | None) -> str:
    if fmt is None:
        return f"an unknown format {name!r}" if name else "a manifest without a format"
    return f"{fmt.what}" + (f" (load it with {fmt.loader})" if fmt.loader else "")


def _legacy_kind(path: Path) -> str | None:
    for marker, what in LEGACY_MARKERS.items():
        if (path / marker).exists():
            return what
    return None


def _write_state(path: Path, arrays: Mapping[str, Any]) -> None:
    if any(not isinstance(v, np.ndarray) for v in arrays.values()):
        import torch
        from safetensors.torch import save_file as save_torch

        tensors = {
            k: (torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v)
            .detach()
            .cpu()
            .contiguous()
            for k, v in arrays.items()
        }
        save_torch(tensors, str(path))
        return
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path))


def _check_replaceable(path: Path) -> None:
    """Refuse to replace anything but an empty folder or an earlier recsage artifact."""
    if not path.exists():
        return
    if not path.is_dir():
        raise ArtifactError(f"{path} is a file; choose a folder path to save into")
    if (path / MANIFEST).exists() or _legacy_kind(path) or not any(path.iterdir()):
        return
    raise ArtifactError(
        f"{path} is a folder with other files and no {MANIFEST}; refusing to replace it "
        "(choose a new or empty folder)"
    )


def _swap_into_place(stage: Path, path: Path) -> None:
    if not path.exists():
        os.rename(stage, path)
        return
    old = path.parent / f".{path.name}.old-{secrets.token_hex(4)}"
    os.rename(path, old)
    try:
        os.rename(stage, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


__all__ = [
    "CHECKPOINT",
    "CROSS_ENCODER",
    "CROSS_ENCODER_STAGE",
    "FORMATS",
    "KNOWLEDGE_GRAPH",
    "MANIFEST",
    "MODEL",
    "PIPELINE",
    "RANKER",
    "STATE",
    "TRANSE",
    "VECTOR_INDEX",
    "Artifact",
    "ArtifactFormat",
    "describe_artifact",
    "format_of",
    "is_artifact",
    "read_artifact",
    "write_artifact",
]
