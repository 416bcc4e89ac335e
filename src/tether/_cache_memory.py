"""``MemoryCache``: an LRU cache with per-entry expiry, inside one process."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict, TypeVar, Unpack

from ._cache_base import (
    MISS,
    Cache,
    CacheStats,
    Counters,
    Flights,
    MemoryStore,
    SyncFlights,
    closed_error,
)
from ._cache_config import MemoryCacheConfig
from ._providers import resource

T = TypeVar("T")

_DEFAULT = MemoryCacheConfig()


class MemoryOptions(TypedDict, total=False):
    """The fields of ``MemoryCacheConfig``, as keyword arguments of ``MemoryCache``."""

    name: str
    max_size: int
    default_ttl: float | None


def check_key(key: object) -> None:
    if not isinstance(key, str):
        raise TypeError(f"cache keys are strings, got {type(key).__name__}")


def resolve_ttl(ttl: float | None, default: float | None) -> float | None:
    if ttl is None:
        return default
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise ValueError(f"ttl must be a positive number of seconds or None (the cache's "
                         f"default_ttl), got {ttl!r}")
    return float(ttl)


@resource
class MemoryCache(Cache):
    """An in-process LRU cache: ``max_size`` entries, each with its own expiry.

    Values are kept as they are (not copied, not serialized), so a hit returns the
    very object stored: treat cached values as read-only. Every method has a sync
    twin (``get_sync``, ``set_sync``, ``delete_sync``, ``clear_sync``,
    ``get_or_load_sync``), safe to call from several threads. No I/O, so it needs no
    ``initialize()``; after ``dispose()`` it refuses to be used.

        cache = MemoryCache(max_size=1000, default_ttl=60)       # or MemoryCache(config)
        container.bind(MemoryCache, cache)
    """

    def __init__(
        self,
        config: MemoryCacheConfig = _DEFAULT,
        *,
        clock: Callable[[], float] | None = None,
        **options: Unpack[MemoryOptions],
    ) -> None:
        if options:
            if config is not _DEFAULT:
                raise TypeError("MemoryCache takes a config or keyword options, not both")
            config = MemoryCacheConfig(**options)
        self.config = config
        self.name = config.name
        self._store = MemoryStore(config.max_size, clock or time.monotonic)
        self._counters = Counters()
        self._flights = Flights()
        self._sync_flights = SyncFlights()
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------

    def initialize(self) -> None:
        self._check()

    def dispose(self) -> None:
        """Drop every entry and cancel the loads in flight; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._store.clear()
        self._flights.cancel_all()

    def health_check(self) -> bool:
        self._check()
        return True

    def statistics(self) -> CacheStats:
        c, store = self._counters, self._store
        return CacheStats(
            hits_total=c.hits, misses_total=c.misses, hit_ratio=c.hit_ratio,
            memory_hits_total=c.memory_hits, sets_total=c.sets, deletes_total=c.deletes,
            loads_total=c.loads, load_failures_total=c.load_failures,
            evictions_total=store.evictions, expirations_total=store.expirations,
            size=len(store), max_size=store.max_size,
        )

    # -- sync face -----------------------------------------------------------------------

    def get_sync(self, key: str, default: Any = None) -> Any:
        self._check()
        check_key(key)
        value = self._store.get(key)
        if value is MISS:
            self._counters.misses += 1
            return default
        self._hit()
        return value

    def set_sync(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._check()
        check_key(key)
        self._store.set(key, value, resolve_ttl(ttl, self.config.default_ttl))
        self._counters.sets += 1

    def delete_sync(self, key: str) -> bool:
        self._check()
        check_key(key)
        self._counters.deletes += 1
        return self._store.delete(key)

    def clear_sync(self) -> None:
        self._check()
        self._store.clear()

    def get_or_load_sync(self, key: str, loader: Callable[[], T], ttl: float | None = None) -> T:
        """``get_or_load`` for sync code: concurrent misses on one key, in any number
        of threads, run ``loader`` once; the others wait for its result."""
        self._check()
        check_key(key)
        ttl = resolve_ttl(ttl, self.config.default_ttl)
        value = self._store.get(key)
        if value is not MISS:
            self._hit()
            return value  # type: ignore[no-any-return]
        self._counters.misses += 1
        flight, owner = self._sync_flights.claim(key)
        if not owner:
            return flight.result()  # type: ignore[no-any-return]
        try:
            # Another thread may have stored it between our miss and our claim.
            value = self._store.get(key)
            if value is MISS:
                value = self._run_sync(key, loader, ttl)
            flight.value = value
            return value  # type: ignore[no-any-return]
        except BaseException as error:
            flight.error = error
            raise
        finally:
            self._sync_flights.finish(key, flight)

    # -- async face ----------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        return self.get_sync(key, default)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self.set_sync(key, value, ttl)

    async def delete(self, key: str) -> bool:
        return self.delete_sync(key)

    async def clear(self) -> None:
        self.clear_sync()

    async def get_or_load(
        self, key: str, loader: Callable[[], Awaitable[T]], ttl: float | None = None
    ) -> T:
        self._check()
        check_key(key)
        ttl = resolve_ttl(ttl, self.config.default_ttl)
        value = self._store.get(key)
        if value is not MISS:
            self._hit()
            return value  # type: ignore[no-any-return]
        self._counters.misses += 1
        task = self._flights.join(key, lambda: self._load(key, loader, ttl))
        return await self._flights.wait(task, lambda: closed_error("MemoryCache", self.name))

    # -- internals -----------------------------------------------------------------------

    async def _load(self, key: str, loader: Callable[[], Awaitable[T]], ttl: float | None) -> T:
        self._counters.loads += 1
        try:
            value = await loader()
        except Exception:
            self._counters.load_failures += 1
            raise
        if not self._closed:
            self._store.set(key, value, ttl)
        return value

    def _run_sync(self, key: str, loader: Callable[[], T], ttl: float | None) -> T:
        self._counters.loads += 1
        try:
            value = loader()
        except Exception:
            self._counters.load_failures += 1
            raise
        if not self._closed:
            self._store.set(key, value, ttl)
        return value

    def _hit(self) -> None:
        c = self._counters
        c.hits += 1
        c.memory_hits += 1

    def _check(self) -> None:
        if self._closed:
            raise closed_error("MemoryCache", self.name)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._store)}/{self._store.max_size} entries"
        return f"<MemoryCache {self.name!r} {state}>"
