"""Operator charts from the service's own Prometheus counters, and a buffer of recent errors.

The dashboard polls `/ui/api/admin/stats`; each poll reads `/metrics` (the same text a
Prometheus server scrapes), keeps a cumulative snapshot, and answers per-interval series
computed from consecutive snapshots: API requests per second, latency percentiles (from
histogram bucket deltas, interpolated like Prometheus' `histogram_quantile`) and feedback
events per minute. Only `/v1/...` routes count as API traffic, so the page's own calls
(which reach the API in-process under `/v1`) are counted once.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "recsage_http_requests"
LATENCY = "recsage_http_request_duration_seconds"
EVENTS = "recsage_feedback_events"
QUANTILES = (0.5, 0.95, 0.99)


@dataclass
class Snapshot:
    """Cumulative counters at time `t` (API routes only)."""

    t: float
    requests: float = 0.0
    by_status: dict[tuple[str, str, str], float] = field(default_factory=dict)
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    events: dict[str, float] = field(default_factory=dict)


def _api(route: str) -> bool:
    return route.startswith("/v1/")


def parse_metrics(text: str, t: float) -> Snapshot:
    """A snapshot of the request, latency-bucket and feedback counters in `text`."""
    snap = Snapshot(t)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            if s.name == f"{REQUESTS}_total" and _api(labels.get("route", "")):
                snap.requests += s.value
                key = (labels.get("method", ""), labels["route"], labels.get("status", ""))
                snap.by_status[key] = snap.by_status.get(key, 0.0) + s.value
            elif s.name == f"{LATENCY}_bucket" and _api(labels.get("route", "")):
                le = float(labels["le"])
                snap.buckets[le] = snap.buckets.get(le, 0.0) + s.value
            elif s.name == f"{EVENTS}_total":
                kind = labels.get("type", "")
                snap.events[kind] = snap.events.get(kind, 0.0) + s.value
    return snap


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of cumulative bucket counts {upper bound: count}, interpolated
    linearly inside the bucket it falls in (None for no observations). Falling into the
    +Inf bucket gives the largest finite bound, as Prometheus does."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside [0, 1]")
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for b in bounds:
        count = buckets[b]
        if count >= rank:
            if math.isinf(b):
                finite = [x for x in bounds if math.isfinite(x)]
                return finite[-1] if finite else None
            if count == prev_count:
                return b
            return prev_bound + (b - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = b, count
    return None  # pragma: no cover - the last bucket always holds the total


def interval(a: Snapshot, b: Snapshot) -> dict[str, Any]:
    """Rates and percentiles between two snapshots (counter resets count as restarts)."""
    dt = max(b.t - a.t, 1e-9)
    reqs = b.requests - a.requests
    if reqs < 0:  # a counter reset: start over from zero
        reqs, a = b.requests, Snapshot(a.t)
    delta = {le: max(0.0, n - a.buckets.get(le, 0.0)) for le, n in b.buckets.items()}
    out: dict[str, Any] = {"t": b.t, "rps": reqs / dt}
    for q in QUANTILES:
        v = histogram_quantile(q, delta)
        out[f"p{round(q * 100)}_ms"] = None if v is None else v * 1000.0
    ev = sum(b.events.values()) - sum(a.events.values())
    out["events_per_min"] = max(0.0, ev) * 60.0 / dt
    return out


class StatsSampler:
    """Snapshots taken when the dashboard polls (at most one per `min_gap` seconds),
    kept for `keep` seconds."""

    def __init__(self, *, keep: float = 600.0, min_gap: float = 1.0) -> None:
        self.keep = keep
        self.min_gap = min_gap
        self._snaps: deque[Snapshot] = deque()
        self._lock = threading.Lock()

    def add(self, snap: Snapshot) -> None:
        with self._lock:
            if self._snaps and snap.t - self._snaps[-1].t < self.min_gap:
                return
            self._snaps.append(snap)
            while self._snaps and snap.t - self._snaps[0].t > self.keep:
                self._snaps.popleft()

    def series(self) -> dict[str, Any]:
        """Per-interval points, the error responses seen in the window, and totals."""
        with self._lock:
            snaps = list(self._snaps)
        points = [interval(a, b) for a, b in itertools.pairwise(snaps)]
        errors: list[dict[str, Any]] = []
        if snaps:
            first, last = snaps[0], snaps[-1]
            for (method, route, status), n in sorted(last.by_status.items()):
                if status[:1] in ("4", "5"):
                    since = n - first.by_status.get((method, route, status), 0.0)
                    errors.append(
                        {
                            "method": method,
                            "route": route,
                            "status": status,
                            "total": int(n),
                            "in_window": int(max(0.0, since)),
                        }
                    )
        return {
            "points": points,
            "errors_by_route": errors,
            "total_requests": int(snaps[-1].requests) if snaps else 0,
            "window_s": snaps[-1].t - snaps[0].t if len(snaps) > 1 else 0.0,
        }


class RecentErrors(logging.Handler):
    """The last `size` WARNING-or-worse records of the `recsage` loggers (message only,
    no traceback: the log keeps those)."""

    def __init__(self, size: int = 50) -> None:
        super().__init__(level=logging.WARNING)
        self.records: deque[dict[str, Any]] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage().splitlines()[0][:500] if record.msg else ""
        except Exception:  # a bad format string must not break logging
            message = str(record.msg)[:500]
        self.records.append(
            {
                "t": record.created,
                "level": record.levelname,
                "logger": record.name,
                "message": message,
                "error": record.exc_info[0].__name__
                if record.exc_info and record.exc_info[0]
                else None,
            }
        )

    def recent(self, n: int = 20) -> list[dict[str, Any]]:
        return list(self.records)[-n:][::-1]


_handler: RecentErrors | None = None
_handler_lock = threading.Lock()


def recent_errors() -> RecentErrors:
    """The process-wide handler on the `recsage` logger (installed once)."""
    global _handler
    with _handler_lock:
        if _handler is None:
            _handler = RecentErrors()
            logging.getLogger("recsage").addHandler(_handler)
        return _handler


def as_rows(points: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """JSON-safe copies of series points (None stays None, floats are rounded)."""
    return [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()} for p in points]
