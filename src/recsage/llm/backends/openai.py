"""OpenAI-compatible HTTP backend."""

from __future__ import annotations

import os
from typing import Any

from recsage.errors import ConfigError, RecsageError
from recsage.llm.backends.base import (
    Completion,
    LLMBackend,
    LLMError,
    LLMTimeout,
    Request,
    TransientLLMError,
)


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
