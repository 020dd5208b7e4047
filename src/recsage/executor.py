"""Executors: map one function over shards of work, locally or on a Ray cluster.

Every batch job (recommend for all users, sharded evaluation, ...) is written as
`fn(shared, shard) -> result`: `shared` is one read-only object (a fitted model and its
data), `shard` a small description of a slice of the work (user indices). The local
executor calls `fn` in this process; the Ray executor puts `shared` into the object store
once, runs one task per shard and yields results in shard order with a bounded number of
tasks in flight. Ray is imported only when a Ray executor is made, so the core never needs
it (`pip install 'recsage[ray]'`).

`RECSAGE_RAY_ADDRESS` (e.g. ``ray://head:10001`` or ``auto``) makes `make_executor()`
default to Ray on that cluster.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, TypeVar

from recsage.errors import ConfigError, RecsageError

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

EXECUTORS = ("local", "ray")
ADDRESS_ENV = "RECSAGE_RAY_ADDRESS"
_RAY_HINT = "install the Ray extra: pip install 'recsage[ray]'"


class Executor(Protocol):
    """What batch jobs need from an executor."""

    name: str
    workers: int

    def imap(self, fn: Callable[[S, T], R], shards: Sequence[T], *, shared: S) -> Iterator[R]: ...

    def map(self, fn: Callable[[S, T], R], shards: Sequence[T], *, shared: S) -> list[R]: ...


class LocalExecutor:
    """Runs every shard in this process, one after the other (no extra dependency)."""

    name = "local"

    def __init__(self) -> None:
        self.workers = 1

    def imap(self, fn: Callable[[S, T], R], shards: Sequence[T], *, shared: S) -> Iterator[R]:
        """Results of `fn(shared, shard)` in shard order, computed lazily."""
        for shard in shards:
            yield fn(shared, shard)

    def map(self, fn: Callable[[S, T], R], shards: Sequence[T], *, shared: S) -> list[R]:
        """All results of `fn(shared, shard)`, in shard order."""
        return list(self.imap(fn, shards, shared=shared))

    def __repr__(self) -> str:
        return "LocalExecutor()"


def _call(fn: Callable[[Any, Any], Any], shared: Any, shard: Any) -> Any:
    return fn(shared, shard)


def import_ray() -> Any:
    """The `ray` module, or a clear error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RecsageError(f"the Ray executor needs Ray; {_RAY_HINT}") from None
    return ray


def ensure_ray(address: str | None = None, *, workers: int | None = None) -> Any:
    """Connect to Ray once: an already-initialised session is reused, `address` (or
    RECSAGE_RAY_ADDRESS) joins a running cluster, else a local one with `workers` CPUs."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get(ADDRESS_ENV) or None
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address is None and workers is not None:
        kwargs["num_cpus"] = workers
    try:
        ray.init(address=address, **kwargs)
    except ConnectionError as exc:
        raise RecsageError(
            f"cannot connect to the Ray cluster at {address!r} ({exc}); start one with "
            f"`ray start --head` or unset {ADDRESS_ENV}"
        ) from exc
    return ray


class RayExecutor:
    """Runs shards as Ray tasks; the shared object is put in the object store once.

    `workers` bounds the tasks in flight (default: the cluster's CPU count), `cpus_per_task`
    is each task's CPU reservation.
    """

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_task: float = 1.0,
    ) -> None:
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}")
        if cpus_per_task <= 0:
            raise ConfigError(f"cpus_per_task must be > 0, got {cpus_per_task}")
        self.ray = ensure_ray(address, workers=workers)
        cluster = int(self.ray.cluster_resources().get("CPU", 1))
        self.workers = workers or max(1, int(cluster // cpus_per_task))
        self.cpus_per_task = cpus_per_task
        self._remote = self.ray.remote(num_cpus=cpus_per_task)(_call)

    def imap(self, fn: Callable[[S, T], R], shards: Sequence[T], *, shared: S) -> Iterator[R]:
        """Results in shard order; at most 2 x workers tasks run or wait at a time."""
        ray = self.ray
        ref = ray.put(shared)
        fn_ref = ray.put(fn)
        limit = max(1, 2 * self.workers)
        pending: list[Any] = []
        shards = list(shards)
        nxt = 0
        try:
            while nxt < len(shards) or pending:
                while nxt < len(shards) and len(pending) < limit:
                    pending.append(self._remote.remote(fn_ref, ref, shards[nxt]))
                    nxt += 1
                head = pending.pop(0)
                try:
                    result = ray.get(head)
                except ray.exceptions.RayTaskError as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, RecsageError):  # bad input: the worker's own message
                        raise cause from None
                    raise
                yield result
        finally:
            for left in pending:
                ray.cancel(left)

    def map(self, fn: Callable[[S, T], R], shards: Sequence[T], *, shared: S) -> list[R]:
        """All results, in shard order."""
        return list(self.imap(fn, shards, shared=shared))

    def __repr__(self) -> str:
        return f"RayExecutor(workers={self.workers})"


def make_executor(
    name: str | None = None, *, workers: int | None = None, address: str | None = None
) -> LocalExecutor | RayExecutor:
    """`local`, `ray`, or None: Ray when RECSAGE_RAY_ADDRESS (or `address`) is set, else local."""
    if name is None:
        name = "ray" if (address or os.environ.get(ADDRESS_ENV)) else "local"
    key = name.strip().lower()
    if key == "local":
        return LocalExecutor()
    if key == "ray":
        return RayExecutor(address=address, workers=workers)
    raise ConfigError(f"unknown executor '{name}'; known: {', '.join(EXECUTORS)}")


def shard_ranges(n: int, shard_size: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges covering 0..n in steps of `shard_size` (the last one shorter)."""
    if shard_size < 1:
        raise ConfigError(f"shard size must be >= 1, got {shard_size}")
    return [(lo, min(n, lo + shard_size)) for lo in range(0, n, shard_size)]


__all__ = [
    "ADDRESS_ENV",
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "ensure_ray",
    "import_ray",
    "make_executor",
    "shard_ranges",
]
