"""What every cache shares: the interface, the statistics, one load per key at a time."""

from __future__ import annotations

import asyncio
import functools
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from math import inf
from typing import Any, Final, TypeVar

from .exceptions import ClosedError

T = TypeVar("T")


class _Miss:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<cache miss>"


MISS: Final[Any] = _Miss()  # "no entry", distinct from a stored None


@dataclass(frozen=True, slots=True)
class CacheStats:
    """``cache.statistics()``: counters since the cache was built.

    A call to ``get`` or ``get_or_load`` counts one hit or one miss; ``hit_ratio`` is
    hits / (hits + misses), 0.0 before the first call. ``loads_total`` counts loader
    runs (concurrent misses on one key share one). ``size`` and ``max_size`` describe
    the memory tier (0 for ``RedisCache``, which has none).
    """

    hits_total: int
    misses_total: int
    hit_ratio: float
    memory_hits_total: int
    sets_total: int
    deletes_total: int
    loads_total: int
    load_failures_total: int
    evictions_total: int
    expirations_total: int
    size: int
    max_size: int


@dataclass(frozen=True, slots=True)
class RedisCacheStats(CacheStats):
    """``statistics()`` of ``RedisCache`` and ``HybridCache``: the counters of
    ``CacheStats``, plus Redis.

    ``redis_calls_total`` and ``redis_failures_total`` count calls to Redis and the
    ones that failed (``failures_by_kind``: by error type, ``CircuitOpen`` when the
    breaker refused the call); ``redis_available`` is 1 while the last call succeeded.
    ``rejected_total`` counts values read from Redis that were not written by a tether
    cache (never deserialized: treated as misses). ``lock_waits_total`` counts loads
    that waited for another process holding the key's lock. ``invalidations_total``
    counts messages from other processes applied to the memory tier, and
    ``invalidation_connected`` is 1 while the hybrid cache is subscribed to them.
    ``pending_invalidations`` are deletes made while Redis was down, sent when it is back.
    """

    redis_calls_total: int
    redis_failures_total: int
    failures_by_kind: Mapping[str, int]
    redis_available: int
    rejected_total: int
    lock_waits_total: int
    invalidations_total: int
    invalidation_connected: int
    pending_invalidations: int


class Counters:
    """The mutable counters behind ``CacheStats``."""

    __slots__ = ("deletes", "hits", "load_failures", "loads", "memory_hits", "misses", "sets")

    def __init__(self) -> None:
        self.hits = self.misses = self.memory_hits = self.sets = self.deletes = 0
        self.loads = self.load_failures = 0

    @property
    def hit_ratio(self) -> float:
        calls = self.hits + self.misses
        return self.hits / calls if calls else 0.0


class Cache(ABC):
    """The interface of ``MemoryCache``, ``RedisCache`` and ``HybridCache``.

    Keys are strings. ``ttl`` is in seconds; None means the cache's ``default_ttl``.
    """

    name: str

    # Whether values are encoded (JSON/msgpack) on their way to storage; @cached then
    # converts typed return values to plain data and back.
    serializes: bool = False

    @abstractmethod
    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``."""

    @abstractmethod
    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove ``key``; True when this cache held it."""

    @abstractmethod
    async def clear(self) -> None:
        """Remove every entry of this cache (its namespace only, for Redis)."""

    @abstractmethod
    async def get_or_load(
        self, key: str, loader: Callable[[], Awaitable[T]], ttl: float | None = None
    ) -> T:
        """The value under ``key``; on a miss, ``await loader()``, store and return it.

        Concurrent misses on one key in this process share one loader call; a loader
        error reaches every caller waiting on it and is not stored.
        """

    @abstractmethod
    def statistics(self) -> CacheStats:
        """A snapshot of the counters."""


class Flights:
    """At most one load per key at a time within this process (asyncio).

    A load runs in a task of its own, which callers await through ``asyncio.shield``:
    a caller that is cancelled stops waiting, while the load goes on for the others
    (and fills the cache for the next caller).
    """

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def join(self, key: str, start: Callable[[], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(start(), name=f"cache load {key!r}")
            self._tasks[key] = task
            task.add_done_callback(functools.partial(self._finished, key))
        return task

    def _finished(self, key: str, task: asyncio.Task[Any]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # the callers saw it; keep asyncio from logging it again

    @staticmethod
    async def wait(task: asyncio.Task[T], closed: Callable[[], Exception]) -> T:
        """The load's result. A load is cancelled only by ``dispose()``: its waiters get
        ``closed()`` rather than a CancelledError nobody asked for."""
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if task.cancelled() and (me is None or not me.cancelling()):
                raise closed() from None
            raise

    def cancel_all(self) -> list[asyncio.Task[Any]]:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        return tasks


class SyncFlights:
    """At most one load per key at a time across threads (the sync face)."""

    __slots__ = ("_lock", "_waiting")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, _SyncFlight] = {}

    def claim(self, key: str) -> tuple[_SyncFlight, bool]:
        """The key's flight, and whether this thread owns it (must run the loader)."""
        with self._lock:
            flight = self._waiting.get(key)
            if flight is not None:
                return flight, False
            flight = self._waiting[key] = _SyncFlight()
            return flight, True

    def finish(self, key: str, flight: _SyncFlight) -> None:
        with self._lock:
            if self._waiting.get(key) is flight:
                del self._waiting[key]
        flight.done.set()


class _SyncFlight:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = MISS
        self.error: BaseException | None = None

    def result(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.value


class MemoryStore:
    """A thread-safe LRU map with per-entry expiry: the memory tier of every cache.

    Expired entries are dropped when touched, or when the least recently used ones are
    evicted to make room; nothing runs in the background.
    """

    __slots__ = ("_clock", "_data", "_lock", "evictions", "expirations", "max_size")

    def __init__(self, max_size: int, clock: Callable[[], float]) -> None:
        self.max_size = max_size
        self._clock = clock
        self._data: OrderedDict[str, tuple[Any, float]] = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0
        self.expirations = 0

    def get(self, key: str) -> Any:
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                return MISS
            value, expires = entry
            if expires != inf and expires <= self._clock():
                del self._data[key]
                self.expirations += 1
                return MISS
            self._data.move_to_end(key)
            return value

    def set(self, key: str, value: Any, ttl: float | None) -> None:
        expires = inf if ttl is None else self._clock() + ttl
        with self._lock:
            data = self._data
            data[key] = (value, expires)
            data.move_to_end(key)
            while len(data) > self.max_size:
                _, (_, old_expiry) = data.popitem(last=False)
                if old_expiry != inf and old_expiry <= self._clock():
                    self.expirations += 1
                else:
                    self.evictions += 1

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._data.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


def closed_error(kind: str, name: str) -> ClosedError:
    return ClosedError(f"{kind} '{name}'")
