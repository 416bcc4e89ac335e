"""Caches: the latency of a hit.

- memory tier: ``await cache.get(key)`` on a warm key (a small dict value, 300 s
  TTL) in tether's ``MemoryCache`` and ``HybridCache`` (the memory tier in front of
  Redis), against a plain dict (the floor, awaited through an ``async def`` and
  called bare), cashews (``mem://``) and aiocache (``SimpleMemoryCache``) called
  directly, each with the same TTL;
- Redis tier: ``RedisCache.get`` (GET and msgpack decoding) against redis-py's GET of
  the same msgpack bytes and ``msgpack.unpackb``.

Each timed loop is checked against tether's own hit counters, and every row must
return the stored value.
"""

from __future__ import annotations

import functools
from contextlib import AsyncExitStack
from typing import Any

from benchmarks.batteries._harness import Env, Row, Scenario, Skip, counted, equals
from benchmarks.batteries.redis_client import raw_client, server_gets

TITLE = "Data kit: caches"
DISTRIBUTIONS = ("cashews", "aiocache", "msgpack", "redis")
KEY = "user:42"
VALUE = {"id": 42, "name": "ada", "roles": ["editor"]}
TTL = 300


async def _others(stack: AsyncExitStack) -> list[Row]:
    """cashews and aiocache, memory backends, called directly."""
    rows: list[Row] = []
    check = equals(VALUE)
    try:
        from cashews import Cache as Cashews
    except ImportError:
        pass
    else:
        cashews = Cashews()
        cashews.setup("mem://")
        stack.push_async_callback(cashews.close)
        await cashews.set(KEY, VALUE, expire=TTL)
        rows.append(Row("cashews (mem://)", functools.partial(cashews.get, KEY), check))
    try:
        from aiocache import SimpleMemoryCache  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        aio = SimpleMemoryCache()
        stack.push_async_callback(aio.close)
        await aio.set(KEY, VALUE, ttl=TTL)
        rows.append(Row("aiocache (SimpleMemoryCache)", functools.partial(aio.get, KEY), check))
    return rows


async def _hybrid(stack: AsyncExitStack, url: str) -> tuple[list[Row], list[Scenario]]:
    """HybridCache's memory-tier row, and the Redis-tier scenario."""
    import msgpack  # type: ignore[import-untyped]

    from tether import Container
    from tether.cache import HybridCache, HybridCacheConfig, RedisCache, RedisCacheConfig
    from tether.resources.redis import RedisClient, RedisConfig

    container = Container()
    container.bind(RedisConfig, RedisConfig(name="cache-redis", url=url))
    container.bind(RedisClient)
    container.bind(HybridCacheConfig, HybridCacheConfig(name="bench-hybrid", default_ttl=TTL))
    container.bind(HybridCache)
    container.bind(RedisCacheConfig, RedisCacheConfig(name="bench-redis", default_ttl=TTL))
    container.bind(RedisCache)
    await stack.enter_async_context(container)
    hybrid = await container.aget(HybridCache)
    redis_cache = await container.aget(RedisCache)
    await hybrid.set(KEY, VALUE)
    await redis_cache.set(KEY, VALUE)

    raw = await raw_client(stack, url)
    packed_key = "bench:cache:" + KEY
    await raw.set(packed_key, msgpack.packb(VALUE), ex=TTL)

    async def direct() -> Any:
        data = await raw.get(packed_key)
        return None if data is None else msgpack.unpackb(data)

    memory_row = Row(
        "tether HybridCache (memory tier)", functools.partial(hybrid.get, KEY), equals(VALUE),
        counted(lambda: hybrid.statistics().memory_hits_total, "memory_hits_total"),
    )
    gets = counted(server_gets(raw), "GET calls on the server")
    redis_tier = Scenario(
        "redis-hit", "Redis tier hit: GET + msgpack decode",
        (
            Row("tether RedisCache", functools.partial(redis_cache.get, KEY), equals(VALUE),
                gets),
            Row("redis-py GET + msgpack.unpackb", direct, equals(VALUE), gets),
        ),
        baseline="redis-py GET + msgpack.unpackb",
    )
    return [memory_row], [redis_tier]


async def scenarios(env: Env, stack: AsyncExitStack) -> list[Scenario | Skip]:
    from tether.cache import MemoryCache

    memory = MemoryCache(max_size=10_000, default_ttl=TTL)
    stack.callback(memory.dispose)
    await memory.set(KEY, VALUE)
    floor = {KEY: VALUE}

    async def dict_awaited() -> Any:
        return floor.get(KEY)

    hits = counted(lambda: memory.statistics().hits_total, "hits_total")
    rows = [
        Row("dict, awaited", dict_awaited, equals(VALUE),
            note="`async def` returning `d.get(key)`"),
        Row("dict, bare", functools.partial(floor.get, KEY), equals(VALUE),
            note="`d.get(key)`, no await"),
        Row("tether MemoryCache", functools.partial(memory.get, KEY), equals(VALUE), hits),
        Row("tether MemoryCache.get_sync", functools.partial(memory.get_sync, KEY),
            equals(VALUE), hits, note="no await"),
    ]
    rows += await _others(stack)
    found: list[Scenario | Skip] = []
    url = env.url("redis")
    if url is None:
        found.append(Skip("redis-hit", "Redis tier hit", env.why_not("redis")))
    else:
        hybrid_rows, redis_scenarios = await _hybrid(stack, url)
        rows += hybrid_rows
        found += redis_scenarios
    memory_tier = Scenario("memory-hit", "memory tier hit", tuple(rows),
                           baseline="dict, awaited", unit="ns")
    return [memory_tier, *found]
