"""Backend spec (name, GGUF path or URL) -> backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recsage.errors import ConfigError
from recsage.llm.backends.base import LLMBackend
from recsage.llm.backends.llamacpp import LlamaCppBackend
from recsage.llm.backends.openai import OpenAICompatBackend
from recsage.llm.backends.transformers import TransformersBackend


def create_backend(spec: str | Path | None, **options: Any) -> LLMBackend | None:
    """A backend from a short spec: None/"none" -> None; a local model name ("smollm2",
    "qwen2.5-coder-0.5b", ...) or a .gguf path -> llama.cpp; an http(s) URL -> the
    OpenAI-compatible client; a folder with config.json -> transformers."""
    if spec is None:
        return None
    text = str(spec).strip()
    if text.lower() in ("", "none", "off", "rules"):
        return None
    if text.startswith(("http://", "https://")):
        return OpenAICompatBackend(text, **options)
    from recsage.llm import models

    if text in models.MODELS or text in models.ALIASES:
        return LlamaCppBackend(text, **options)
    path = Path(text).expanduser()
    if path.suffix == ".gguf":
        return LlamaCppBackend(path, **options)
    if path.is_dir():
        return TransformersBackend(path, **options)
    known = ", ".join(sorted([*models.MODELS, *models.ALIASES]))
    raise ConfigError(
        f"--llm {text!r}: not a local model name ({known}), a .gguf file, a model folder "
        "or an http(s) URL; use 'none' for rules only"
    )
