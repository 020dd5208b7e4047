"""Generative LLM layer: backends, LLM re-ranking, conversation and explanation phrasing.

Imports stay light: heavy runtimes (xllamacpp, httpx, transformers) load on first use.
"""

from __future__ import annotations

from recsage.llm.backends.base import (
    Budget,
    BudgetExceeded,
    Completion,
    LLMBackend,
    LLMError,
    LLMTimeout,
)
from recsage.llm.backends.llamacpp import LlamaCppBackend
from recsage.llm.backends.openai import OpenAICompatBackend
from recsage.llm.backends.registry import create_backend
from recsage.llm.backends.transformers import TransformersBackend

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
