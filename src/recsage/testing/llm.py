"""`ScriptedLLM`: a deterministic LLM backend that records every request (for tests)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from recsage.llm.backends.base import Completion, LLMBackend, Request

_NUMBERED = re.compile(r"^\[(\d+)\]", re.MULTILINE)


def reverse_ranking(k: int) -> list[int]:
    """The candidates' numbers (1-based) in reverse order: the opposite of upstream."""
    return list(range(k, 0, -1))


class ScriptedLLM(LLMBackend):
    """Answers a listwise re-rank prompt with ``{"ranking": order(k)}``, where k is the
    number of numbered candidate lines (``[1] …``) in the last user message, and keeps
    every request in `requests`, so a test can tell that the LLM was consulted and what
    its answer must do to the output."""

    supports_schema = True

    def __init__(self, order: Callable[[int], list[int]] = reverse_ranking) -> None:
        super().__init__(retries=0)
        self.order = order
        self.requests: list[Request] = []

    @property
    def model_id(self) -> str:
        return "scripted:1"

    def candidates_in(self, request: Request) -> int:
        """How many numbered candidate lines the request's last user message holds."""
        user = [c for r, c in request.messages if r == "user"]
        return len(_NUMBERED.findall(user[-1])) if user else 0

    def _call(self, request: Request, timeout: float) -> Completion:
        self.requests.append(request)
        k = self.candidates_in(request)
        return Completion(text=json.dumps({"ranking": self.order(k)}), tokens_in=1, tokens_out=1)
