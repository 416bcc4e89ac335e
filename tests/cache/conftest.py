from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.servers.redis import RedisServer, redis_server
from tests.waiting import eventually
from tether.cache import HybridCache, HybridCacheConfig, RedisCache, RedisCacheConfig
from tether.resources.redis import RedisClient, RedisConfig

__all__ = ["MakeHybrid", "MakeRedisCache", "eventually", "redis_server"]

MakeRedisCache = Callable[..., Awaitable[RedisCache]]
MakeHybrid = Callable[..., Awaitable[HybridCache]]


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[RedisClient]:
    """An initialized RedisClient on the test's own redis-server."""
    rc = RedisClient(RedisConfig(url=redis_server.url, socket_connect_timeout=1.0))
    await rc.initialize()
    yield rc
    await rc.dispose()


@pytest.fixture
async def make_redis_cache(redis_client: RedisClient) -> AsyncIterator[MakeRedisCache]:
    """``await make_redis_cache(**config)``: an initialized RedisCache, disposed at teardown."""
    made: list[RedisCache] = []

    async def make(**options: Any) -> RedisCache:
        cache = RedisCache(RedisCacheConfig(**options), redis_client)
        made.append(cache)
        await cache.initialize()
        return cache

    yield make
    for cache in made:
        await cache.dispose()


@pytest.fixture
async def make_hybrid(redis_client: RedisClient) -> AsyncIterator[MakeHybrid]:
    """``await make_hybrid(**config)``: an initialized HybridCache, disposed at teardown.

    Two of them in one test stand for two processes: each has its own origin id and
    memory tier, and they meet only through Redis.
    """
    made: list[HybridCache] = []

    async def make(**options: Any) -> HybridCache:
        cache = HybridCache(HybridCacheConfig(**options), redis_client)
        made.append(cache)
        await cache.initialize()
        return cache

    yield make
    for cache in made:
        await cache.dispose()
