"""Fixtures for the LLM layer: a scripted fake backend and the real bundled SmolLM2."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from recsage.llm.backends.base import Completion, LLMBackend, Request, run_with_timeout


class FakeBackend(LLMBackend):
    """Answers from a script: a string, a Completion, an exception, or a callable(request)."""

    supports_schema = True
    supports_logprobs = True

    def __init__(self, *answers: Any, delay: float = 0.0, **options: Any) -> None:
        options.setdefault("backoff_s", 0.01)
        super().__init__(**options)
        self.answers = list(answers)
        self.delay = delay
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return "fake:1"

    def _answer(self, request: Request) -> Completion:
        with self._lock:
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            ans = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        try:
            if self.delay:
                time.sleep(self.delay)
            if callable(ans) and not isinstance(ans, type):
                ans = ans(request)
            if isinstance(ans, BaseException) or (
                isinstance(ans, type) and issubclass(ans, BaseException)
            ):
                raise ans if isinstance(ans, BaseException) else ans("scripted failure")
            if isinstance(ans, Completion):
                return Completion(**ans.to_dict())
            return Completion(text=str(ans), tokens_in=10, tokens_out=3)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _call(self, request: Request, timeout: float) -> Completion:
        return run_with_timeout(lambda: self._answer(request), timeout)


@pytest.fixture
def fake() -> Callable[..., FakeBackend]:
    return FakeBackend


def _smollm2_missing() -> str | None:
    try:
        import xllamacpp  # noqa: F401

        from recsage.llm import models

        models.model_path("smollm2", check=False)
    except Exception as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> LLMBackend:
    """The bundled SmolLM2 through llama.cpp, loaded once; responses cached in a tmp dir."""
    missing = _smollm2_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"SmolLM2 must run in CI: {missing}")
        pytest.skip(f"SmolLM2 not installed ({missing}); run `make install`")
    from recsage.llm.backends.llamacpp import LlamaCppBackend

    cache = tmp_path_factory.mktemp("llm-cache")
    return LlamaCppBackend("smollm2", cache_dir=cache, timeout=120.0, n_ctx=2048).load()


MOVIES = [
    ("m1", "Toy Story", 1995, ["Animation", "Children's", "Comedy"]),
    ("m2", "Alien", 1979, ["Horror", "Sci-Fi"]),
    ("m3", "Star Wars", 1977, ["Action", "Adventure", "Sci-Fi"]),
    ("m4", "Scream", 1996, ["Horror", "Thriller"]),
    ("m5", "Groundhog Day", 1993, ["Comedy", "Romance"]),
    ("m6", "The Matrix", 1999, ["Action", "Sci-Fi", "Thriller"]),
    ("m7", "Airplane!", 1980, ["Comedy"]),
    ("m8", "Heat", 1995, ["Action", "Crime", "Thriller"]),
    ("m9", "Babe", 1995, ["Children's", "Comedy", "Drama"]),
    ("m10", "Gladiator", 2000, ["Action", "Drama"]),
    ("m11", "Shrek", 2001, ["Animation", "Children's", "Comedy"]),
    ("m12", "The Shining", 1980, ["Horror"]),
]


@pytest.fixture
def movie_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": [m[0] for m in MOVIES],
            "title": [m[1] for m in MOVIES],
            "year": pd.array([m[2] for m in MOVIES], dtype="Int64"),
            "categories": [m[3] for m in MOVIES],
        }
    )


@pytest.fixture
def catalogue(movie_table: pd.DataFrame) -> Any:
    from recsage.llm.conversation.catalogue import Catalogue, KeywordEncoder
    from recsage.llm.rerank import catalogue_texts

    enc = KeywordEncoder()
    vectors = enc.encode_items(catalogue_texts(movie_table))
    return Catalogue.from_table(list(movie_table["item_id"]), movie_table, vectors, enc)
