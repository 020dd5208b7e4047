"""Generative LLM layer: backends, LLM re-ranking, conversation and explanation phrasing.

Imports stay light: heavy runtimes (xllamacpp, httpx, transformers) load on first use.
"""

from __future__ import annotations

from recsage.llm.backends import (
    Budget,
    BudgetExceeded,
    Completion,
    LlamaCppBackend,
    LLMBackend,
    LLMError,
    LLMTimeout,
    OpenAICompatBackend,
    TransformersBackend,
    create_backend,
)

__all__ = [
    "Budget",
    "BudgetExceeded",
    "Completion",
    "LLMBackend",
    "LLMError",
    "LLMTimeout",
    "LlamaCppBackend",
    "OpenAICompatBackend",
    "TransformersBackend",
    "create_backend",
]
