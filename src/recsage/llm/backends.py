"""Generative LLM backends behind one `complete(messages, ...)` call.

`LLMBackend.complete` wraps every implementation with the same guards: request validation,
token and latency budgets (`BudgetExceeded`), a concurrency limit, bounded retries with
exponential backoff for transient failures, an on-disk JSON response cache keyed by
sha256(model id + messages + parameters), and JSON extraction (schema-constrained decoding
where the backend supports it, tolerant extraction from free text otherwise).

Implementations: `LlamaCppBackend` (a GGUF model in-process through xllamacpp; default the
bundled SmolLM2), `OpenAICompatBackend` (any OpenAI-compatible HTTP endpoint, via httpx),
`TransformersBackend` (a local Hugging Face model folder). `create_backend(spec)` picks one
from a short string: a local model name, a .gguf path, a model folder or an http(s) URL.
"""

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
from typing import Any, ClassVar, TypeVar

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


# --------------------------------------------------------------------------- JSON helpers

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


# --------------------------------------------------------------------------- cache


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


# --------------------------------------------------------------------------- base class


def _run_with_timeout(fn: Callable[[], T], timeout: float | None) -> T:
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


# --------------------------------------------------------------------------- llama.cpp


def default_threads() -> int:
    """Threads for in-process llama.cpp: $RECSAGE_LLM_THREADS, else 1.

    On a busy machine ggml's spinning worker threads slow each other down badly (measured
    here: 48 tokens/s with 1 thread, under 2 tokens/s with 2 on 2 shared cores).
    """
    env = os.environ.get("RECSAGE_LLM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ConfigError(f"RECSAGE_LLM_THREADS must be an integer, got {env!r}") from None
    return 1


_SERVERS: dict[tuple[str, int, int, int], Any] = {}
_SERVERS_LOCK = threading.Lock()


def _llama_server(path: Path, n_ctx: int, threads: int, parallel: int) -> Any:
    """One xllamacpp server per (model file, context, threads, slots), shared in-process."""
    key = (str(path), n_ctx, threads, parallel)
    with _SERVERS_LOCK:
        if key not in _SERVERS:
            try:
                import xllamacpp as xlc
            except ImportError:
                raise RecsageError(
                    "the llama.cpp backend needs xllamacpp: pip install 'recsage[llm]'"
                ) from None
            params = xlc.CommonParams()
            params.model.path = str(path)
            params.n_ctx = n_ctx * parallel
            params.n_parallel = parallel
            params.cpuparams.n_threads = threads
            params.cpuparams_batch.n_threads = threads
            params.warmup = False
            params.verbosity = -1
            try:
                _SERVERS[key] = xlc.Server(params)
            except Exception as exc:
                raise LLMError(f"llama.cpp could not load {path}: {exc}") from exc
        return _SERVERS[key]


def _top_logprobs(entries: Any) -> list[dict[str, float]]:
    out: list[dict[str, float]] = []
    for tok in entries or []:
        alts = {
            str(a.get("token", "")): float(a.get("logprob", -1e9))
            for a in tok.get("top_logprobs") or []
        }
        if not alts and "token" in tok:
            alts = {str(tok["token"]): float(tok.get("logprob", 0.0))}
        out.append(alts)
    return out


def parse_chat_response(data: dict[str, Any]) -> Completion:
    """A Completion from an OpenAI-style chat.completion body."""
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise LLMError(f"malformed chat completion response (keys: {sorted(data)})") from None
    usage = data.get("usage") or {}
    logprobs = choice.get("logprobs") or {}
    return Completion(
        text=str(text),
        tokens_in=int(usage.get("prompt_tokens") or 0),
        tokens_out=int(usage.get("completion_tokens") or 0),
        top_logprobs=_top_logprobs(logprobs.get("content") if isinstance(logprobs, dict) else None),
        finish_reason=str(choice.get("finish_reason") or ""),
    )


def chat_body(request: Request, *, schema_format: bool = True) -> dict[str, Any]:
    """An OpenAI-style chat.completions request body."""
    body: dict[str, Any] = {
        "messages": request.message_dicts(),
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "seed": request.seed,
    }
    if request.stop:
        body["stop"] = list(request.stop)
    if request.top_logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = request.top_logprobs
    if request.grammar is not None:
        body["grammar"] = request.grammar
    elif request.schema is not None and schema_format:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": request.schema, "strict": True},
        }
    return body


class LlamaCppBackend(LLMBackend):
    """A GGUF model run in-process by llama.cpp (xllamacpp), with grammar-constrained JSON.

    `model` is a local model name (`smollm2`, `qwen2.5-coder-0.5b`, ...; verified by sha256
    before loading) or a path to a .gguf file. The model loads on first use.
    """

    supports_schema = True
    supports_logprobs = True
    supports_grammar = True

    def __init__(
        self,
        model: str | Path = "smollm2",
        *,
        n_ctx: int = 4096,
        threads: int | None = None,
        parallel: int = 1,
        **options: Any,
    ) -> None:
        options.setdefault("max_concurrency", parallel)
        super().__init__(**options)
        self.model = model
        self.n_ctx = int(n_ctx)
        self.threads = threads or default_threads()
        self.parallel = int(parallel)
        self._path: Path | None = None
        self._id: str | None = None

    @property
    def path(self) -> Path:
        if self._path is None:
            from recsage.llm import models

            p = Path(str(self.model)).expanduser()
            if isinstance(self.model, Path) or p.suffix == ".gguf":
                if not p.is_file():
                    raise ConfigError(f"GGUF model file {p} does not exist")
                self._path = p
            else:
                self._path = models.model_path(str(self.model))
        return self._path

    @property
    def model_id(self) -> str:
        if self._id is None:
            from recsage.llm import models

            name = str(self.model)
            if isinstance(self.model, str) and not name.endswith(".gguf"):
                spec = models.model_spec(name)
                self._id = f"gguf:{spec.name}:{spec.sha256[:16]}"
            else:
                st = self.path.stat()
                self._id = f"gguf:{self.path.name}:{st.st_size}:{int(st.st_mtime)}"
        return self._id

    def load(self) -> LlamaCppBackend:
        """Load the model now (otherwise the first call does)."""
        _llama_server(self.path, self.n_ctx, self.threads, self.parallel)
        return self

    def _call(self, request: Request, timeout: float) -> Completion:
        server = _llama_server(self.path, self.n_ctx, self.threads, self.parallel)
        body = chat_body(request)
        data = _run_with_timeout(lambda: server.handle_chat_completions(body), timeout)
        if not isinstance(data, dict):
            raise LLMError(f"llama.cpp returned {type(data).__name__}, expected a JSON object")
        if "error" in data:
            err = data["error"] if isinstance(data["error"], dict) else {"message": data["error"]}
            code = int(err.get("code") or 500)
            msg = f"llama.cpp error {code}: {str(err.get('message'))[:300]}"
            raise TransientLLMError(msg) if code >= 500 else LLMError(msg)
        return parse_chat_response(data)


# --------------------------------------------------------------------------- HTTP


class _Secret:
    """Holds an API key; its repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str | None) -> None:
        self._value = value or None

    def get(self) -> str | None:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)" if self._value else "Secret(None)"

    __str__ = __repr__


class OpenAICompatBackend(LLMBackend):
    """Any OpenAI-compatible chat-completions endpoint over HTTP (httpx).

    The API key comes from `api_key`, else `$RECSAGE_LLM_API_KEY`; it is sent as a bearer
    token and never appears in reprs, logs or error messages.
    """

    supports_schema = True
    supports_logprobs = True

    def __init__(
        self,
        base_url: str,
        *,
        model: str = "",
        api_key: str | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("max_concurrency", 4)
        super().__init__(**options)
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        base = base_url.rstrip("/")
        if base.endswith("/chat/completions"):
            base = base[: -len("/chat/completions")]
        self.endpoint = (base if base.endswith("/v1") else base + "/v1") + "/chat/completions"
        self.base_url = base
        self.model = model or os.environ.get("RECSAGE_LLM_MODEL", "")
        self._key = _Secret(api_key or os.environ.get("RECSAGE_LLM_API_KEY"))
        self._schema_format = True
        self._client: Any = None

    @property
    def model_id(self) -> str:
        return f"openai:{self.base_url}:{self.model or 'default'}"

    def __repr__(self) -> str:
        return (
            f"OpenAICompatBackend(endpoint={self.endpoint!r}, model={self.model!r}, "
            f"key={self._key!r})"
        )

    def _redact(self, text: str) -> str:
        key = self._key.get()
        return text.replace(key, "***") if key else text

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _http(self) -> Any:
        if self._client is None:
            try:
                import httpx
            except ImportError:
                raise RecsageError(
                    "the HTTP backend needs httpx: pip install 'recsage[service]'"
                ) from None
            self._client = httpx.Client(follow_redirects=False, trust_env=False)
        return self._client

    def _call(self, request: Request, timeout: float) -> Completion:
        import httpx

        headers = {"Content-Type": "application/json"}
        key = self._key.get()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        body = chat_body(request, schema_format=self._schema_format)
        if self.model:
            body["model"] = self.model
        try:
            resp = self._http().post(self.endpoint, json=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            raise LLMTimeout(f"{self.endpoint} did not answer within {timeout:.1f}s") from None
        except httpx.HTTPError as exc:
            raise TransientLLMError(f"cannot reach {self.endpoint}: {type(exc).__name__}") from None
        if resp.status_code == 400 and request.schema is not None and self._schema_format:
            self._schema_format = False  # the server rejects response_format: extract instead
            return self._call(request, timeout)
        if resp.status_code == 429 or resp.status_code >= 500:
            raise TransientLLMError(f"{self.endpoint} answered HTTP {resp.status_code}")
        if resp.status_code >= 400:
            detail = self._redact(resp.text[:300])
            raise LLMError(f"{self.endpoint} answered HTTP {resp.status_code}: {detail}")
        try:
            data = resp.json()
        except ValueError:
            raise LLMError(f"{self.endpoint} answered with something that is not JSON") from None
        if not isinstance(data, dict):
            raise LLMError(f"{self.endpoint} answered with a JSON {type(data).__name__}")
        return parse_chat_response(data)


# --------------------------------------------------------------------------- transformers


class TransformersBackend(LLMBackend):
    """A local Hugging Face causal LM folder (offline, CPU by default); no schema-constrained
    decoding, so JSON is extracted from the text."""

    supports_schema = False
    supports_logprobs = True

    def __init__(self, path: str | Path, *, device: str = "cpu", **options: Any) -> None:
        super().__init__(**options)
        self.path = Path(path).expanduser()
        if not (self.path / "config.json").is_file():
            raise ConfigError(f"{self.path} is not a Hugging Face model folder (no config.json)")
        self.device = device
        self._model: Any = None
        self._tokenizer: Any = None
        self._id: str | None = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        if self._id is None:
            h = hashlib.sha256()
            for p in sorted(q for q in self.path.rglob("*") if q.is_file()):
                st = p.stat()
                h.update(f"{p.relative_to(self.path).as_posix()}:{st.st_size}\n".encode())
                if p.suffix in (".json", ".txt", ".model", ".jinja"):
                    h.update(p.read_bytes())
            self._id = f"hf:{self.path.name}:{h.hexdigest()[:16]}"
        return self._id

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    from transformers import AutoModelForCausalLM, AutoTokenizer
                except ImportError:
                    raise RecsageError(
                        "the transformers backend needs torch and transformers: "
                        "pip install 'recsage[semantic]'"
                    ) from None
                self._tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
                model: Any = AutoModelForCausalLM.from_pretrained(self.path, local_files_only=True)
                self._model = model.to(self.device).eval()
        return self._model, self._tokenizer

    def _call(self, request: Request, timeout: float) -> Completion:
        import torch

        model, tok = self._load()
        messages = request.message_dicts()
        if getattr(tok, "chat_template", None):
            prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:
            prompt = "\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\nassistant:"
        enc = tok(prompt, return_tensors="pt", add_special_tokens=False).to(self.device)
        n_in = int(enc["input_ids"].shape[1])
        sample = request.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_tokens,
            "do_sample": sample,
            "output_scores": request.top_logprobs > 0,
            "return_dict_in_generate": True,
            "max_time": max(timeout, 0.01),
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        }
        if sample:
            kwargs["temperature"] = request.temperature
            torch.manual_seed(request.seed)
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**enc, **kwargs)
        if time.perf_counter() - start > timeout:
            raise LLMTimeout(f"generation took longer than {timeout:.1f}s")
        new = out.sequences[0, n_in:]
        text = tok.decode(new, skip_special_tokens=True)
        for s in request.stop:
            if s and s in text:
                text = text[: text.index(s)]
        tops: list[dict[str, float]] = []
        if request.top_logprobs > 0:
            for step in out.scores:
                lp = torch.log_softmax(step[0].float(), dim=-1)
                vals, ids = torch.topk(lp, min(request.top_logprobs, lp.shape[-1]))
                tops.append(
                    {tok.decode([int(i)]): float(v) for v, i in zip(vals, ids, strict=True)}
                )
        return Completion(text=text, tokens_in=n_in, tokens_out=len(new), top_logprobs=tops)


# --------------------------------------------------------------------------- factory


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
