"""``RedisCache``: a cache kept in Redis, shared by the processes of one namespace."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import Any, TypeVar

from redis.asyncio.cluster import RedisCluster

from ._cache_base import MISS, Cache, Counters, Flights, RedisCacheStats, closed_error
from ._cache_codec import Codec
from ._cache_config import RedisCacheConfig
from ._cache_memory import check_key, resolve_ttl
from ._cache_redis_io import RedisIO, cancel_tasks
from ._providers import resource
from .exceptions import ResourceError, ResourceUnavailable
from .resources.redis import RedisClient

T = TypeVar("T")
logger = logging.getLogger("tether.cache")


@resource
class RedisCache(Cache):
    """A cache kept in Redis, shared by every process that uses the same namespace.

    Values are stored as msgpack or JSON (``config.serializer``), never pickled;
    bytes under a key that a tether cache did not write are treated as a miss and
    never deserialized. Calls are bounded by ``config.timeout`` and a circuit breaker:
    while Redis fails, ``get`` misses, ``get_or_load`` runs the loader, and writes and
    deletes are remembered and replayed as deletes when Redis is back.

        container.bind(RedisConfig, RedisConfig(url="redis://127.0.0.1:6379/0"))
        container.bind(RedisClient)
        container.bind(RedisCacheConfig, RedisCacheConfig(name="pages", default_ttl=60))
        container.bind(RedisCache)
    """

    serializes = True
    _fallback = "the loader"

    def __init__(self, config: RedisCacheConfig, redis: RedisClient) -> None:
        self.config = config
        self.name = config.name
        self.redis = redis
        self._codec = Codec(config.name, config.serializer, config.compress_above,
                            config.max_value_size)
        self._io = RedisIO(config, redis, self._codec, self._fallback)
        self._counters = Counters()
        self._flights = Flights()
        self._lock_waits = 0
        self._open = False
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------

    async def initialize(self) -> None:
        if self._closed:
            raise closed_error(type(self).__name__, self.name)
        if self._open:
            return
        client = self.redis.client  # raises when the RedisClient is not initialized
        if isinstance(client, RedisCluster):
            raise ResourceError(self.name, f"{type(self).__name__} does not support Redis "
                                "Cluster yet: point its RedisClient at a single server")
        if self.redis.config.decode_responses:
            raise ResourceError(self.name, f"{type(self).__name__} stores bytes: its "
                                "RedisClient needs decode_responses=False")
        self._open = True

    async def dispose(self) -> None:
        """Cancel the loads in flight (bounded wait); safe to call twice. The
        RedisClient is not closed: the container disposes it after this cache."""
        if self._closed:
            return
        self._closed = True
        self._open = False
        await cancel_tasks(self.name, self._flights.cancel_all())

    async def health_check(self) -> bool:
        """PING through the RedisClient. When Redis is down this raises (the reason
        shows in the health report) while the cache keeps answering from its fallback."""
        self._require()
        try:
            return await self.redis.health_check()
        except ResourceError as error:
            raise ResourceUnavailable(
                self.name, f"Redis is unreachable ({type(error).__name__}); serving from "
                f"{self._fallback}",
            ) from error

    def statistics(self) -> RedisCacheStats:
        c, r, m = self._counters, self._io, self._io.meter
        size, max_size, evictions, expirations = self._memory_numbers()
        return RedisCacheStats(
            hits_total=c.hits, misses_total=c.misses, hit_ratio=c.hit_ratio,
            memory_hits_total=c.memory_hits, sets_total=c.sets, deletes_total=c.deletes,
            loads_total=c.loads, load_failures_total=c.load_failures,
            evictions_total=evictions, expirations_total=expirations,
            size=size, max_size=max_size,
            redis_calls_total=m.calls, redis_failures_total=m.failures_total,
            failures_by_kind=MappingProxyType(dict(m.failures)),
            redis_available=int(r.available), rejected_total=r.rejected,
            lock_waits_total=self._lock_waits, invalidations_total=self._invalidations(),
            invalidation_connected=int(self._subscribed()),
            pending_invalidations=len(r.pending) + r.pending_clear,
        )

    # -- the cache -----------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        self._require()
        check_key(key)
        value = self._local_get(key)
        if value is not MISS:
            self._memory_hit()
            return value
        await self._io.flush_pending()
        value = await self._fetch(key)
        if value is MISS:
            self._counters.misses += 1
            return default
        self._counters.hits += 1
        return value

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._require()
        check_key(key)
        ttl = resolve_ttl(ttl, self.config.default_ttl)
        await self._write(key, self._codec.encode(value), ttl)

    async def delete(self, key: str) -> bool:
        self._require()
        check_key(key)
        self._counters.deletes += 1
        held = self._local_delete(key)
        await self._io.flush_pending()
        try:
            return await self._io.remove(key) or held
        except ResourceError:
            self._io.defer(key)
            return held

    async def clear(self) -> None:
        """Delete every key of this cache's namespace (SCAN + UNLINK) and tell the
        other processes to clear their memory tiers."""
        self._require()
        self._local_clear()
        try:
            await self._io.clear()
        except ResourceError:
            self._io.defer(None)

    async def get_or_load(
        self, key: str, loader: Callable[[], Awaitable[T]], ttl: float | None = None
    ) -> T:
        self._require()
        check_key(key)
        ttl = resolve_ttl(ttl, self.config.default_ttl)
        value = self._local_get(key)
        if value is not MISS:
            self._memory_hit()
            return value  # type: ignore[no-any-return]
        task = self._flights.join(key, lambda: self._fill(key, loader, ttl))
        value, loaded = await self._flights.wait(
            task, lambda: closed_error(type(self).__name__, self.name)
        )
        if loaded:
            self._counters.misses += 1
        else:
            self._counters.hits += 1
        return value  # type: ignore[no-any-return]

    # -- filling a key -------------------------------------------------------------------

    async def _fill(self, key: str, loader: Callable[[], Awaitable[Any]],
                    ttl: float | None) -> tuple[Any, bool]:
        """The one load of ``key`` in this process: Redis, else (under the lock) the
        loader. Returns ``(value, whether the loader ran)``."""
        await self._io.flush_pending()
        value = await self._fetch(key)
        if value is not MISS:
            return value, False
        if self.config.lock and self._io.available:
            return await self._fill_locked(key, loader, ttl)
        return await self._load(key, loader, ttl), True

    async def _fill_locked(self, key: str, loader: Callable[[], Awaitable[Any]],
                           ttl: float | None) -> tuple[Any, bool]:
        token = secrets.token_hex(16)
        limit = self.config.lock_timeout
        deadline = time.monotonic() + limit
        pause = 0.005
        waited = False
        while True:
            try:
                locked = await self._io.try_lock(key, token, limit)
            except ResourceError:
                break  # Redis fails: load without the lock rather than not at all
            if locked:
                try:
                    # The previous holder may have stored it after our first read.
                    value = await self._fetch(key)
                    if value is not MISS:
                        return value, False
                    return await self._load(key, loader, ttl), True
                finally:
                    await self._io.unlock(key, token)
            if not waited:
                waited = True
                self._lock_waits += 1
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)
            value = await self._fetch(key)
            if value is not MISS:
                return value, False
            if time.monotonic() >= deadline:
                logger.warning("cache '%s': another process held the load lock of %r for "
                               "lock_timeout=%gs; loading here", self.name, key, limit)
                break
        return await self._load(key, loader, ttl), True

    async def _load(self, key: str, loader: Callable[[], Awaitable[Any]],
                    ttl: float | None) -> Any:
        self._counters.loads += 1
        try:
            value = await loader()
        except Exception:
            self._counters.load_failures += 1
            raise
        data = self._codec.encode(value)
        await self._write(key, data, ttl)
        # What the other callers will read back (tuples become lists, and so on).
        return self._codec.decode(data)

    async def _fetch(self, key: str) -> Any:
        read = self._read_begins(key)
        try:
            value, left = await self._io.read(key)
        finally:
            self._read_ends(key, read)
        if value is not MISS and not read.stale:
            self._local_put(key, value, left)
        return value

    async def _write(self, key: str, data: bytes, ttl: float | None) -> None:
        self._counters.sets += 1
        self._local_set(key, data, ttl)
        await self._io.flush_pending()
        try:
            await self._io.store(key, data, ttl)
        except ResourceError:
            # Other processes may hold the value this write replaces: delete it there
            # once Redis is back.
            self._io.defer(key)

    # -- the memory tier (HybridCache has one) -------------------------------------------

    def _local_get(self, key: str) -> Any:
        return MISS

    def _local_set(self, key: str, data: bytes, ttl: float | None) -> None:
        pass

    def _local_put(self, key: str, value: Any, ttl: float | None) -> None:
        pass

    def _local_delete(self, key: str) -> bool:
        return False

    def _local_clear(self) -> None:
        pass

    def _read_begins(self, key: str) -> Read:
        return Read()

    def _read_ends(self, key: str, read: Read) -> None:
        pass

    def _memory_numbers(self) -> tuple[int, int, int, int]:
        return 0, 0, 0, 0

    def _memory_hit(self) -> None:
        c = self._counters
        c.hits += 1
        c.memory_hits += 1

    def _invalidations(self) -> int:
        return 0

    def _subscribed(self) -> bool:
        return False

    # -- state ---------------------------------------------------------------------------

    def _require(self) -> None:
        if self._open:
            return
        if self._closed:
            raise closed_error(type(self).__name__, self.name)
        raise ResourceError(
            self.name,
            "not initialized: resolve it from the container (which calls initialize()) "
            "or await initialize() first",
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._open else "not initialized"
        return (f"<{type(self).__name__} {self.name!r} namespace="
                f"{self.config.key_namespace!r}, {state}>")


class Read:
    """One Redis read of a key; ``stale`` once the key was invalidated meanwhile."""

    __slots__ = ("stale",)

    def __init__(self) -> None:
        self.stale = False
