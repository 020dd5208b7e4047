"""LLMBackend base: messages -> Completion with timeouts, retries, JSON schema, cache, budget."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from recsage.errors import ConfigError, RecsageError

Message = dict[str, str]


T = TypeVar("T")


CACHE_VERSION = "recsage.llm-cache/1"


_ROLES = ("system", "user", "assistant")


class LLMError(RecsageError):
    """A generative model call failed (the caller decides whether to fall back)."""


class TransientLLMError(LLMError):
    """A failure worth retrying (connection problem, HTTP 429/5xx, a busy server)."""


class LLMTimeout(LLMError):
    """The call did not finish within its timeout."""


class BudgetExceeded(LLMError):
    """A request would exceed (or did exceed) its token or latency budget."""


@dataclass(frozen=True)
class Budget:
    """Per-request limits; None = unlimited. Prompt tokens are estimated before the call
    (about 3 characters per token, so the estimate errs high) and checked again after."""

    max_prompt_tokens: int | None = None
    max_output_tokens: int | None = None
    max_latency_s: float | None = None


@dataclass
class Completion:
    """One model answer. `json` is set when a schema was requested and the text held a
    JSON value matching it; `top_logprobs` has, per generated token, the most likely
    alternatives (token text -> log probability) when asked for and supported.
    `latency_s` is this call's wall time (a cache lookup when `cached`); `model_latency_s`
    is the time the model took to produce the answer, kept through the cache."""

    text: str
    json: Any = None
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0
    cached: bool = False
    top_logprobs: list[dict[str, float]] = field(default_factory=list)
    finish_reason: str = ""
    model: str = ""
    model_latency_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Request:
    """What one call asks for (everything that keys the cache besides the model id)."""

    messages: tuple[tuple[str, str], ...]
    schema: dict[str, Any] | None
    max_tokens: int
    temperature: float
    top_logprobs: int
    seed: int
    stop: tuple[str, ...]
    grammar: str | None = None  # llama.cpp GBNF; other backends use `schema`

    def message_dicts(self) -> list[Message]:
        return [{"role": r, "content": c} for r, c in self.messages]

    def payload(self) -> dict[str, Any]:
        return {
            "messages": self.message_dicts(),
            "schema": self.schema,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_logprobs": self.top_logprobs,
            "seed": self.seed,
            "stop": list(self.stop),
            "grammar": self.grammar,
        }


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S | re.I)


_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def extract_json(text: str) -> Any:
    """The first JSON object or array found in free text (code fences, prose around it and
    trailing commas tolerated); None when there is none."""
    candidates = [text.strip(), *(m.group(1).strip() for m in _FENCE.finditer(text))]
    for cand in candidates:
        for variant in (cand, _TRAILING_COMMA.sub(r"\1", cand)):
            try:
                return json.loads(variant)
            except (ValueError, RecursionError):
                pass
    decoder = json.JSONDecoder()
    for variant in (text, _TRAILING_COMMA.sub(r"\1", text)):
        for m in re.finditer(r"[\[{]", variant):
            try:
                value, _ = decoder.raw_decode(variant, m.start())
            except (ValueError, RecursionError):
                continue
            return value
    return None


_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def matches_schema(value: Any, schema: dict[str, Any]) -> bool:
    """Check the JSON-schema subset prompts here use: type (or list of types), enum,
    properties/required, items, minimum/maximum, maxItems."""
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_TYPES.get(t, lambda _: True)(value) for t in names):
            return False
    if "enum" in schema and value not in schema["enum"]:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return False
        if "maximum" in schema and value > schema["maximum"]:
            return False
    if isinstance(value, dict):
        if any(k not in value for k in schema.get("required", [])):
            return False
        props = schema.get("properties", {})
        return all(matches_schema(value[k], s) for k, s in props.items() if k in value)
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return False
        items = schema.get("items")
        return items is None or all(matches_schema(v, items) for v in value)
    return True


class ResponseCache:
    """Completions on disk as JSON files named by sha256(model id + request); no pickle."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @staticmethod
    def key(model_id: str, request: Request) -> str:
        blob = json.dumps(
            {"v": CACHE_VERSION, "model": model_id, "request": request.payload()},
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        path = self._path(key)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Completion.from_dict(data["completion"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, model_id: str, completion: Completion) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        record = {"v": CACHE_VERSION, "model": model_id, "completion": completion.to_dict()}
        tmp.write_text(json.dumps(record, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)


def default_cache_dir() -> Path:
    """Where responses are cached by default: $RECSAGE_CACHE_DIR/llm or ~/.cache/recsage/llm."""
    root = os.environ.get("RECSAGE_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "recsage") / "llm"


def run_with_timeout(fn: Callable[[], T], timeout: float | None) -> T:
    """Run `fn` in a worker thread and give up waiting after `timeout` seconds.

    In-process model calls cannot be interrupted: on timeout the worker finishes in the
    background (bounded by max_tokens) while the caller gets `LLMTimeout` at the deadline.
    """
    if timeout is None:
        return fn()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=work, daemon=True, name="recsage-llm-call")
    worker.start()
    worker.join(max(timeout, 0.0))
    if worker.is_alive():
        raise LLMTimeout(f"the model did not answer within {timeout:.1f}s")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class LLMBackend(ABC):
    """`complete(messages, ...)` with timeouts, retries, a concurrency limit, a response
    cache, budgets and JSON extraction; subclasses implement `_call` only."""

    supports_schema: ClassVar[bool] = False
    supports_logprobs: ClassVar[bool] = False
    supports_grammar: ClassVar[bool] = False

    def __init__(
        self,
        *,
        timeout: float = 60.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        max_concurrency: int = 1,
        cache_dir: str | Path | None = None,
        budget: Budget | None = None,
    ) -> None:
        if retries < 0 or max_concurrency < 1 or timeout <= 0:
            raise ConfigError("need retries >= 0, max_concurrency >= 1 and timeout > 0")
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self.max_concurrency = int(max_concurrency)
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self.cache = ResponseCache(cache_dir) if cache_dir is not None else None
        self.budget = budget or Budget()
        self.calls = 0  # model calls made (cache misses), for reports
        self.cache_hits = 0

    @property
    @abstractmethod
    def model_id(self) -> str:
        """Stable identity of the model (part of the cache key)."""

    @abstractmethod
    def _call(self, request: Request, timeout: float) -> Completion:
        """One model call; raise TransientLLMError for retryable failures."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model_id!r})"

    def load(self) -> Self:
        """Load the model now instead of on the first call (remote and lazily loading
        backends have nothing to do)."""
        return self

    def complete(
        self,
        messages: Sequence[Message],
        *,
        schema: dict[str, Any] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        timeout: float | None = None,
        top_logprobs: int = 0,
        seed: int = 0,
        stop: Sequence[str] = (),
        budget: Budget | None = None,
        use_cache: bool = True,
        grammar: str | None = None,
    ) -> Completion:
        """Answer a chat; raises LLMError (LLMTimeout, BudgetExceeded) when it cannot.

        `grammar` (GBNF) constrains llama.cpp output more tightly than `schema` (e.g. compact
        JSON); backends without grammar support ignore it and rely on `schema`.
        """
        request = self._request(messages, schema, max_tokens, temperature, top_logprobs, seed, stop)
        if grammar is not None and self.supports_grammar:
            request = dataclasses.replace(request, grammar=grammar)
        budget = budget or self.budget
        self._check_budget_before(request, budget)
        start = time.perf_counter()
        key = ResponseCache.key(self.model_id, request) if self.cache is not None else ""
        if self.cache is not None and use_cache:
            hit = self.cache.get(key)
            if hit is not None:
                self.cache_hits += 1
                hit.cached = True
                hit.model_latency_s = hit.model_latency_s or hit.latency_s
                hit.latency_s = time.perf_counter() - start
                return hit
        limit = self.timeout if timeout is None else float(timeout)
        latency_bound = budget.max_latency_s is not None and budget.max_latency_s < limit
        if budget.max_latency_s is not None:
            limit = min(limit, budget.max_latency_s)
        deadline = start + limit
        comp = self._call_with_retries(request, deadline, latency_bound)
        comp.latency_s = comp.model_latency_s = time.perf_counter() - start
        comp.cached = False
        comp.model = comp.model or self.model_id
        if budget.max_prompt_tokens is not None and comp.tokens_in > budget.max_prompt_tokens:
            raise BudgetExceeded(
                f"the prompt used {comp.tokens_in} tokens, over the budget of "
                f"{budget.max_prompt_tokens}"
            )
        if budget.max_latency_s is not None and comp.latency_s > budget.max_latency_s:
            raise BudgetExceeded(
                f"the call took {comp.latency_s:.2f}s, over the budget of {budget.max_latency_s}s"
            )
        if schema is not None:
            value = extract_json(comp.text)
            comp.json = value if value is not None and matches_schema(value, schema) else None
        if self.cache is not None:
            self.cache.put(key, self.model_id, comp)
        return comp

    # internals

    def _request(
        self,
        messages: Sequence[Message],
        schema: dict[str, Any] | None,
        max_tokens: int,
        temperature: float,
        top_logprobs: int,
        seed: int,
        stop: Sequence[str],
    ) -> Request:
        if not messages:
            raise ConfigError("an LLM request needs at least one message")
        pairs = []
        for i, m in enumerate(messages):
            role, content = m.get("role"), m.get("content")
            if role not in _ROLES or not isinstance(content, str):
                raise ConfigError(
                    f"message #{i} must be {{'role': one of {_ROLES}, 'content': str}}, "
                    f"got role={role!r} and content of type {type(content).__name__}"
                )
            pairs.append((str(role), content))
        if max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {max_tokens}")
        if not 0.0 <= temperature <= 2.0:
            raise ConfigError(f"temperature must be in [0, 2], got {temperature}")
        return Request(
            tuple(pairs), schema, int(max_tokens), float(temperature),
            max(0, int(top_logprobs)), int(seed), tuple(stop),
        )  # fmt: skip

    @staticmethod
    def estimate_tokens(request: Request) -> int:
        """A deliberately high prompt-size estimate (3 characters per token + overhead)."""
        return sum(len(c) // 3 + 4 for _, c in request.messages) + 8

    def _check_budget_before(self, request: Request, budget: Budget) -> None:
        if budget.max_output_tokens is not None and request.max_tokens > budget.max_output_tokens:
            raise BudgetExceeded(
                f"max_tokens={request.max_tokens} is over the output budget of "
                f"{budget.max_output_tokens} tokens"
            )
        if budget.max_prompt_tokens is not None:
            est = self.estimate_tokens(request)
            if est > budget.max_prompt_tokens:
                raise BudgetExceeded(
                    f"the prompt is about {est} tokens, over the budget of "
                    f"{budget.max_prompt_tokens}; shorten it (fewer or shorter items)"
                )

    def _call_with_retries(
        self, request: Request, deadline: float, latency_bound: bool
    ) -> Completion:
        attempt = 0
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise self._timeout_error(latency_bound)
            if not self._slots.acquire(timeout=remaining):
                raise self._timeout_error(latency_bound)
            try:
                self.calls += 1
                return self._call(request, deadline - time.perf_counter())
            except LLMTimeout:
                raise self._timeout_error(latency_bound) from None
            except TransientLLMError:
                if attempt >= self.retries:
                    raise
            finally:
                self._slots.release()
            pause = self.backoff_s * (2**attempt)
            attempt += 1
            if time.perf_counter() + pause >= deadline:
                raise self._timeout_error(latency_bound)
            time.sleep(pause)

    @staticmethod
    def _timeout_error(latency_bound: bool) -> LLMError:
        if latency_bound:
            return BudgetExceeded("the request ran past its latency budget")
        return LLMTimeout("the model did not answer before the timeout")
