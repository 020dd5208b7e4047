"""Request and response models of the HTTP API (pydantic v2), and the API error type.

Every free-text field is data only: it is validated (length, no NUL/control characters,
valid Unicode) and never interpreted, templated or executed.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _clean_text(value: str) -> str:
    """Reject NUL/control characters and lone surrogates (they cannot be stored)."""
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _clean_id(value: str) -> str:
    _clean_text(value)
    if "\n" in value or "\r" in value or "\t" in value:
        raise ValueError("must not contain tabs or line breaks")
    return value


Id = Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(_clean_id)]
Text = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(_clean_text)]
Scope = Literal["read", "feedback", "admin"]
EventType = Literal["impression", "click", "purchase", "rating", "skip"]


class ApiError(Exception):
    """An error answered as `{"error": {"code", "message"}}` with an HTTP status."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---- errors ------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. unknown_item.")
    message: str = Field(description="What was wrong and how to fix it.")
    request_id: str | None = None
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": desc}
    for code, desc in (
        (400, "Bad request"),
        (401, "Missing or invalid API key"),
        (403, "The key lacks the scope this route needs"),
        (404, "Not found"),
        (409, "Not available for the served model"),
        (413, "Request body too large"),
        (422, "Invalid request"),
        (429, "Rate limit exceeded"),
    )
}


# ---- recommend -----------------------------------------------------------------------------
class Filters(_Strict):
    exclude_items: list[Id] = Field(default_factory=list, max_length=1000)
    categories: list[Annotated[str, StringConstraints(max_length=200)]] | None = Field(
        default=None, max_length=100, description="Keep items with any of these categories."
    )
    min_year: int | None = Field(default=None, ge=0, le=10_000)
    max_year: int | None = Field(default=None, ge=0, le=10_000)


class RecommendRequest(_Strict):
    user_id: Id | None = None
    history: list[Id] | None = Field(
        default=None, max_length=1000, description="Item ids, oldest first (overrides stored)."
    )
    n: int = Field(default=10, ge=1, le=100)
    filters: Filters | None = None
    query: Annotated[Text, StringConstraints(max_length=1000)] | None = Field(
        default=None, description="Optional free text (used by a query channel if present)."
    )


class Reason(BaseModel):
    kind: str = Field(description="Why the item is here: channel (for now; more kinds later).")
    channel: str | None = Field(default=None, description="The retrieval channel, if any.")
    detail: str = Field(description="A short human-readable explanation.")


class RecommendedItem(BaseModel):
    item_id: str
    title: str
    score: float
    rank: int
    sources: list[str]
    reasons: list[Reason]


class RecommendResponse(BaseModel):
    request_id: str
    model_version: str
    user_id: str | None
    cold_start: bool
    items: list[RecommendedItem]


# ---- similar / search / trending -----------------------------------------------------------
class ScoredItem(BaseModel):
    item_id: str
    title: str
    score: float
    rank: int


class SimilarResponse(BaseModel):
    request_id: str
    model_version: str
    item_id: str
    method: str = Field(description="text (item text vectors) or model:<channel>")
    items: list[ScoredItem]


class SearchRequest(_Strict):
    query: Annotated[Text, StringConstraints(min_length=1, max_length=1000)]
    user_id: Id | None = None
    n: int = Field(default=10, ge=1, le=100)
    personal_weight: float = Field(default=0.3, ge=0.0, le=1.0, allow_inf_nan=False)
    exclude_history: bool = False


class SearchResponse(BaseModel):
    request_id: str
    model_version: str
    query: str
    personalised: bool
    items: list[ScoredItem]


class ChatRequest(_Strict):
    session_id: Id
    message: Annotated[Text, StringConstraints(min_length=1, max_length=2000)]
    user_id: Id | None = None
    n: int = Field(default=5, ge=1, le=50)


class ChatResponse(BaseModel):
    request_id: str
    model_version: str
    session_id: str
    understood: str
    items: list[ScoredItem]


class TrendingResponse(BaseModel):
    items: list[ScoredItem]


# ---- feedback ------------------------------------------------------------------------------
class EventIn(_Strict):
    event_id: Id
    user_id: Id
    item_id: Id
    type: EventType
    timestamp: datetime | None = Field(
        default=None, description="ISO-8601 or Unix seconds; default: time of receipt."
    )
    value: float | None = Field(default=None, allow_inf_nan=False, ge=-1e9, le=1e9)
    request_id: Id | None = None
    position: int | None = Field(default=None, ge=0, le=1_000_000)

    def unix_time(self) -> float | None:
        if self.timestamp is None:
            return None
        ts = self.timestamp
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        t = ts.timestamp()
        return t if math.isfinite(t) else None


class FeedbackRequest(_Strict):
    events: list[EventIn] = Field(min_length=1, max_length=100_000)


class FeedbackResponse(BaseModel):
    request_id: str
    accepted: int
    duplicates: int
    online_updates: int = Field(description="Events applied to user histories at once.")


# ---- items ---------------------------------------------------------------------------------
class ItemIn(_Strict):
    item_id: Id
    title: Annotated[Text, StringConstraints(max_length=1000)] | None = None
    categories: list[Annotated[Text, StringConstraints(max_length=200)]] | None = Field(
        default=None, max_length=100
    )
    year: int | None = Field(default=None, ge=0, le=10_000)
    text: Text | None = Field(default=None, description="Free description (encoded as data).")


class ItemsRequest(_Strict):
    items: list[ItemIn] = Field(min_length=1, max_length=10_000)


class ItemsResponse(BaseModel):
    request_id: str
    added: int
    updated: int
    text_vectors: bool = Field(description="True when new items got text vectors at once.")


# ---- operations ----------------------------------------------------------------------------
class HealthResponse(BaseModel):
    status: str


class ReadyResponse(BaseModel):
    status: str
    model_version: str | None
    store: bool


class VersionResponse(BaseModel):
    package_version: str
    model_version: str
    data_fingerprint: str
    spec: dict[str, Any]
    loaded_at: float
    n_items: int
    n_users: int


class ReloadResponse(BaseModel):
    model_version: str
    changed: bool
