"""LLM backends by name, and the short spec (name, GGUF path or URL) -> backend.

Built-in backends are lazy ``"module:attr"`` entries; a separate package adds one through
the ``recsage.llm_backends`` entry-point group and is then chosen with a spec of the form
``<backend>:<target>`` (e.g. ``mybackend:some-model``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recsage.component import Registry
from recsage.errors import ConfigError
from recsage.llm.backends.base import LLMBackend

BACKENDS: Registry[LLMBackend] = Registry(
    "llm backend", base=LLMBackend, group="recsage.llm_backends"
)
BACKENDS.register("llamacpp", "recsage.llm.backends.llamacpp:LlamaCppBackend")
BACKENDS.register("openai", "recsage.llm.backends.openai:OpenAICompatBackend")
BACKENDS.register("transformers", "recsage.llm.backends.transformers:TransformersBackend")


def backend_for(spec: str) -> tuple[str, str | Path]:
    """(backend name, target) a spec selects: ``<backend>:<target>`` names one explicitly;
    an http(s) URL -> "openai"; a local model name ("smollm2", "qwen2.5-coder-0.5b", ...)
    or a .gguf path -> "llamacpp"; a folder -> "transformers"."""
    text = spec.strip()
    if text.startswith(("http://", "https://")):
        return "openai", text
    prefix, sep, rest = text.partition(":")
    if sep and rest and prefix in BACKENDS:
        return prefix, rest
    from recsage.llm import models

    if text in models.MODELS or text in models.ALIASES:
        return "llamacpp", text
    path = Path(text).expanduser()
    if path.suffix == ".gguf":
        return "llamacpp", path
    if path.is_dir():
        return "transformers", path
    known = ", ".join(sorted([*models.MODELS, *models.ALIASES]))
    raise ConfigError(
        f"--llm {text!r}: not a local model name ({known}), a .gguf file, a model folder, "
        f"an http(s) URL or '<backend>:<target>' (backends: {', '.join(BACKENDS.names())}); "
        "use 'none' for rules only"
    )


def create_backend(spec: str | Path | None, **options: Any) -> LLMBackend | None:
    """A backend from a short spec (see `backend_for`); None/"none"/"off"/"rules" -> None."""
    if spec is None:
        return None
    text = str(spec).strip()
    if text.lower() in ("", "none", "off", "rules"):
        return None
    name, target = backend_for(text)
    return BACKENDS.create(name, target, **options)
