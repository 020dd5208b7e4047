"""llama.cpp in-process backend (xllamacpp) for local GGUF models."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Self

from recsage.errors import ConfigError, RecsageError
from recsage.llm.backends.base import (
    Completion,
    LLMBackend,
    LLMError,
    Request,
    TransientLLMError,
    run_with_timeout,
)
from recsage.llm.backends.openai import chat_body, parse_chat_response


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

    def load(self) -> Self:
        """Load the model now (otherwise the first call does)."""
        _llama_server(self.path, self.n_ctx, self.threads, self.parallel)
        return self

    def _call(self, request: Request, timeout: float) -> Completion:
        server = _llama_server(self.path, self.n_ctx, self.threads, self.parallel)
        body = chat_body(request)
        data = run_with_timeout(lambda: server.handle_chat_completions(body), timeout)
        if not isinstance(data, dict):
            raise LLMError(f"llama.cpp returned {type(data).__name__}, expected a JSON object")
        if "error" in data:
            err = data["error"] if isinstance(data["error"], dict) else {"message": data["error"]}
            code = int(err.get("code") or 500)
            msg = f"llama.cpp error {code}: {str(err.get('message'))[:300]}"
            raise TransientLLMError(msg) if code >= 500 else LLMError(msg)
        return parse_chat_response(data)
