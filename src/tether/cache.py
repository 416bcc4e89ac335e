"""Caches for a tether service: in memory, in Redis, and both (memory in front of Redis).

    container.bind(MemoryCache, MemoryCache(max_size=1000))

    @cached(ttl=60, cache=lambda: container.aget(MemoryCache))
    async def exchange_rate(currency: str) -> Decimal: ...

- ``MemoryCache``: LRU with ``max_size`` and per-entry expiry, one process.
- ``RedisCache``: values in Redis (JSON or msgpack, never pickle), shared by processes.
- ``HybridCache``: a ``MemoryCache`` in front of a ``RedisCache``; a write or delete
  in any process drops the key from every other process's memory tier (Redis
  pub/sub). When Redis is down it serves from memory or the loader, and recovers.
- ``@cached``: caches async and sync functions by qualified name and arguments;
  ``invalidate(fn, *args)`` drops one entry.
- ``cached_dependency(ttl)`` and ``singleton_dependency``: memoised DI providers.

Every cache is a ``@tether.resource``: the container initializes and disposes it,
checks its health and exports ``statistics()`` (hits, misses, evictions, hit ratio,
Redis calls) on ``/metrics``. ``get_or_load`` (and ``@cached``) runs the loader once
per key per process on concurrent misses, and once across processes with
``lock=True``.

``RedisCache`` and ``HybridCache`` need the 'redis' extra; the rest only 'cache'.
"""

from __future__ import annotations

try:
    import msgpack  # type: ignore[import-untyped]  # noqa: F401
    import pydantic  # noqa: F401
except ImportError:
    raise ImportError("tether.cache needs the 'cache' extra: pip install 'tether[cache]'") from None

from typing import TYPE_CHECKING, Any

from ._cache_base import Cache, CacheStats, RedisCacheStats
from ._cache_codec import SerializationError
from ._cache_config import HybridCacheConfig, MemoryCacheConfig, RedisCacheConfig
from ._cache_decorators import cached, cached_dependency, invalidate, singleton_dependency
from ._cache_memory import MemoryCache

if TYPE_CHECKING:
    from ._cache_hybrid import HybridCache
    from ._cache_redis import RedisCache

__all__ = [
    "Cache",
    "CacheStats",
    "HybridCache",
    "HybridCacheConfig",
    "MemoryCache",
    "MemoryCacheConfig",
    "RedisCache",
    "RedisCacheConfig",
    "RedisCacheStats",
    "SerializationError",
    "cached",
    "cached_dependency",
    "invalidate",
    "singleton_dependency",
]

_REDIS_BACKED = ("RedisCache", "HybridCache")


def __getattr__(name: str) -> Any:
    # The Redis-backed classes import redis-py: only when asked for.
    if name in _REDIS_BACKED:
        try:
            import redis  # noqa: F401
        except ImportError:
            raise ImportError(
                f"tether.cache.{name} needs the 'redis' extra: pip install 'tether[redis]'"
            ) from None
        from ._cache_hybrid import HybridCache
        from ._cache_redis import RedisCache

        return RedisCache if name == "RedisCache" else HybridCache
    raise AttributeError(f"module 'tether.cache' has no attribute {name!r}")
