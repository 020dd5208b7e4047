"""A tiny OpenAI-compatible chat-completions server over any `LLMBackend` (stdlib only).

Serves `GET /v1/models` and `POST /v1/chat/completions` (messages, max_tokens, temperature,
seed, stop, logprobs/top_logprobs, response_format json_schema). Used to test the HTTP
backend against a real model on loopback, and by `recsage llm serve` to share one local
model between processes. Binds 127.0.0.1 by default; an optional bearer key is checked in
constant time.
"""

from __future__ import annotations

import hmac
import json
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from recsage.llm.backends.base import LLMBackend, LLMError, LLMTimeout

MAX_BODY = 1 << 20


@dataclass
class RunningServer:
    """A server started in a background thread; `close()` stops it."""

    httpd: ThreadingHTTPServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _response(comp: Any, model: str, top_logprobs: int) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": comp.text},
        "finish_reason": comp.finish_reason or "stop",
    }
    if top_logprobs:
        choice["logprobs"] = {
            "content": [
                {
                    "token": max(alts, key=alts.get) if alts else "",
                    "logprob": max(alts.values()) if alts else 0.0,
                    "top_logprobs": [{"token": t, "logprob": lp} for t, lp in alts.items()],
                }
                for alts in comp.top_logprobs
            ]
        }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": {
            "prompt_tokens": comp.tokens_in,
            "completion_tokens": comp.tokens_out,
            "total_tokens": comp.tokens_in + comp.tokens_out,
        },
    }


def make_handler(
    backend: LLMBackend, *, api_key: str | None = None, model_name: str = "local"
) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to `backend`."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "recsage-llm/1"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            return

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str, kind: str) -> None:
            self._send(status, {"error": {"message": message, "type": kind, "code": status}})

        def _authorised(self) -> bool:
            if not api_key:
                return True
            given = self.headers.get("Authorization", "")
            expected = f"Bearer {api_key}"
            if hmac.compare_digest(given.encode(), expected.encode()):
                return True
            self._error(401, "missing or wrong API key", "authentication_error")
            return False

        def do_GET(self) -> None:
            if not self._authorised():
                return
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model"}]})
            else:
                self._error(404, f"no route {self.path}", "not_found")

        def do_POST(self) -> None:
            if not self._authorised():
                return
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._error(404, f"no route {self.path}", "not_found")
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 < length <= MAX_BODY:
                self._error(400, f"need a JSON body of 1..{MAX_BODY} bytes", "invalid_request")
                return
            try:
                body = json.loads(self.rfile.read(length))
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError:
                self._error(400, "the body is not a JSON object", "invalid_request")
                return
            fmt = body.get("response_format") or {}
            schema = None
            if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
                schema = (fmt.get("json_schema") or {}).get("schema")
            top = int(body.get("top_logprobs") or 0) if body.get("logprobs") else 0
            stop = body.get("stop") or []
            stop = [stop] if isinstance(stop, str) else [str(s) for s in stop]
            try:
                comp = backend.complete(
                    body.get("messages") or [],
                    schema=schema,
                    max_tokens=int(body.get("max_tokens") or 256),
                    temperature=float(body.get("temperature") or 0.0),
                    seed=int(body.get("seed") or 0),
                    stop=stop,
                    top_logprobs=top,
                )
            except LLMTimeout as exc:
                self._error(504, str(exc), "timeout")
                return
            except LLMError as exc:
                self._error(500, str(exc), "server_error")
                return
            except (TypeError, ValueError) as exc:
                self._error(400, f"bad request: {exc}", "invalid_request")
                return
            except Exception as exc:  # bad input (ConfigError etc.) never kills the server
                self._error(400, str(exc), "invalid_request")
                return
            self._send(200, _response(comp, model_name, top))

    return Handler


def start_server(
    backend: LLMBackend,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    model_name: str = "local",
) -> RunningServer:
    """Serve `backend` on host:port (0 = any free port) in a daemon thread."""
    handler = make_handler(backend, api_key=api_key, model_name=model_name)
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True, name="recsage-llm-http")
    thread.start()
    return RunningServer(httpd, thread)
