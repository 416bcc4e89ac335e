"""HybridCache: a memory tier in front of Redis, invalidated across instances through
pub/sub, and its behaviour when Redis goes away and comes back (scenario C2).

Two HybridCache objects in one test stand for two processes: each has its own memory
tier and origin id, and they meet only through Redis. tests/cache/test_processes.py
runs the same protocol across real OS processes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from tests.servers.proxy import FaultProxy
from tests.servers.redis import RedisServer
from tether import Container, HealthStatus
from tether.cache import HybridCache, HybridCacheConfig
from tether.exceptions import ResourceUnavailable
from tether.resources.redis import RedisClient, RedisConfig

from .conftest import MakeHybrid, eventually
from .test_redis import value_key

pytestmark = pytest.mark.anyio


async def load_fresh() -> str:
    return "fresh"


# -- the memory tier ---------------------------------------------------------------------


async def test_a_second_read_is_served_from_memory(make_hybrid: MakeHybrid) -> None:
    cache = await make_hybrid()
    await cache.set("k", "v")
    await cache.get("k")
    calls = cache.statistics().redis_calls_total

    assert await cache.get("k") == "v"

    stats = cache.statistics()
    assert stats.redis_calls_total == calls
    assert stats.memory_hits_total == 2
    assert stats.size == 1


async def test_a_read_fills_the_memory_tier_from_redis(make_hybrid: MakeHybrid) -> None:
    writer = await make_hybrid()
    reader = await make_hybrid()
    await writer.set("k", "v")

    assert await reader.get("k") == "v"  # from Redis
    assert await reader.get("k") == "v"  # from memory

    assert reader.statistics().memory_hits_total == 1


async def test_the_memory_tier_holds_what_redis_returns(make_hybrid: MakeHybrid) -> None:
    cache = await make_hybrid()

    await cache.set("k", (1, 2))

    assert await cache.get("k") == [1, 2]  # as every other process reads it


async def test_memory_ttl_bounds_how_long_memory_serves_a_value(
    make_hybrid: MakeHybrid, redis_server: RedisServer
) -> None:
    cache = await make_hybrid(memory_ttl=0.2)
    await cache.set("k", "old")
    # Changed behind the cache's back: no invalidation message is sent.
    redis_server.command("SET", value_key("k"), b"TC\x01\x01\xa3new", "PX", 60_000)

    assert await cache.get("k") == "old"
    await asyncio.sleep(0.3)
    assert await cache.get("k") == "new"


async def test_a_memory_entry_does_not_outlive_the_redis_entry(make_hybrid: MakeHybrid) -> None:
    cache = await make_hybrid(memory_ttl=60)
    await cache.set("k", "v", ttl=0.2)

    await asyncio.sleep(0.3)

    assert await cache.get("k") is None


async def test_lru_eviction_applies_to_the_memory_tier(make_hybrid: MakeHybrid) -> None:
    cache = await make_hybrid(max_size=2)
    for key in ("a", "b", "c"):
        await cache.set(key, key)

    stats = cache.statistics()

    assert (stats.size, stats.max_size, stats.evictions_total) == (2, 2, 1)
    assert await cache.get("a") == "a"  # evicted from memory, still in Redis


# -- invalidation across instances -------------------------------------------------------


async def test_a_write_drops_the_key_from_the_other_memory_tier(make_hybrid: MakeHybrid) -> None:
    first = await make_hybrid()
    second = await make_hybrid()
    await first.set("k", "v1")
    assert await second.get("k") == "v1"
    assert await second.get("k") == "v1"  # now from second's memory

    await first.set("k", "v2")

    await eventually(lambda: second.statistics().invalidations_total >= 1)
    assert await second.get("k") == "v2"


async def test_a_delete_drops_the_key_from_the_other_memory_tier(make_hybrid: MakeHybrid) -> None:
    first = await make_hybrid()
    second = await make_hybrid()
    await first.set("k", "v")
    await second.get("k")

    await first.delete("k")

    await eventually(lambda: second.statistics().size == 0)
    assert await second.get("k") is None


async def test_clear_empties_the_other_memory_tiers(make_hybrid: MakeHybrid) -> None:
    first = await make_hybrid()
    second = await make_hybrid()
    for key in ("a", "b"):
        await first.set(key, key)
        await second.get(key)

    await first.clear()

    await eventually(lambda: second.statistics().size == 0)
    assert await second.get("a") is None


async def test_a_cache_ignores_its_own_messages(make_hybrid: MakeHybrid) -> None:
    cache = await make_hybrid()
    other = await make_hybrid()
    await cache.set("k", "v")
    await other.set("sentinel", 1)  # sent after ours: once it arrives, ours has too

    await eventually(lambda: cache.statistics().invalidations_total == 1)
    assert await cache.get("k") == "v"
    assert cache.statistics().memory_hits_total == 1


async def test_other_namespaces_do_not_invalidate(make_hybrid: MakeHybrid) -> None:
    users = await make_hybrid(name="users")
    pages = await make_hybrid(name="pages")
    await users.set("k", "v")
    await users.get("k")

    await pages.set("k", "other")
    await pages.delete("k")

    assert users.statistics().invalidations_total == 0
    assert await users.get("k") == "v"


async def test_get_or_load_fills_every_tier_once(make_hybrid: MakeHybrid) -> None:
    first = await make_hybrid()
    second = await make_hybrid()
    calls = 0

    async def load() -> str:
        nonlocal calls
        calls += 1
        return "v"

    assert await first.get_or_load("k", load) == "v"
    assert await second.get_or_load("k", load) == "v"  # from Redis
    assert await second.get_or_load("k", load) == "v"  # from memory

    assert calls == 1
    assert second.statistics().memory_hits_total == 1


# -- the invalidation channel ------------------------------------------------------------


async def test_reconnecting_the_channel_clears_the_memory_tier(
    make_hybrid: MakeHybrid, redis_server: RedisServer
) -> None:
    cache = await make_hybrid()
    await cache.set("k", "old")
    redis_server.command("SET", value_key("k"), b"TC\x01\x01\xa3new")  # no message sent

    killed = redis_server.command("CLIENT", "KILL", "TYPE", "pubsub")

    assert killed == 1
    await eventually(lambda: cache.statistics().size == 0)
    await eventually(lambda: cache.statistics().invalidation_connected == 1)
    assert await cache.get("k") == "new"


async def test_it_waits_for_its_subscription_before_using_memory(make_hybrid: MakeHybrid) -> None:
    cache = await make_hybrid()

    assert cache.statistics().invalidation_connected == 1


# -- Redis down and back (C2) ------------------------------------------------------------


async def test_with_redis_stopped_reads_are_served_from_memory(
    make_hybrid: MakeHybrid, redis_server: RedisServer
) -> None:
    cache = await make_hybrid()
    await cache.set("k", "v")

    redis_server.stop()

    assert await cache.get("k") == "v"


async def test_with_redis_stopped_misses_run_the_loader_and_the_breaker_opens(
    make_hybrid: MakeHybrid, redis_server: RedisServer
) -> None:
    cache = await make_hybrid(circuit_breaker_threshold=3, circuit_breaker_reset=60)
    redis_server.stop()

    values = [await cache.get_or_load(f"k{i}", load_fresh) for i in range(10)]

    assert values == ["fresh"] * 10
    stats = cache.statistics()
    assert stats.redis_available == 0
    assert stats.loads_total == 10
    # Three calls found Redis gone; the breaker refused the rest without trying.
    assert stats.failures_by_kind["ResourceUnavailable"] == 3
    assert stats.failures_by_kind["CircuitOpen"] >= 10


async def test_with_redis_stopped_writes_and_deletes_do_not_raise(
    make_hybrid: MakeHybrid, redis_server: RedisServer
) -> None:
    cache = await make_hybrid()
    await cache.set("k", "v")
    redis_server.stop()

    await cache.set("k", "v2")
    assert await cache.get("k") == "v2"  # this process reads its own write
    assert await cache.delete("k") is True
    await cache.clear()

    assert cache.statistics().pending_invalidations == 1  # "clear everything" supersedes


async def test_a_frozen_redis_costs_a_bounded_wait_and_the_loader_answers(
    make_hybrid: MakeHybrid, redis_server: RedisServer
) -> None:
    cache = await make_hybrid(timeout=0.25, circuit_breaker_threshold=2)

    with redis_server.frozen():
        values = [await cache.get_or_load(f"k{i}", load_fresh) for i in range(5)]

    assert values == ["fresh"] * 5
    kinds = cache.statistics().failures_by_kind
    assert kinds["ResourceTimeout"] == 2  # each cut at the 0.25 s deadline
    assert kinds["CircuitOpen"] >= 5


async def test_when_redis_is_back_it_reconnects_and_serves_from_redis_again(
    make_hybrid: MakeHybrid, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tether.cache")
    first = await make_hybrid(circuit_breaker_reset=0.2)
    second = await make_hybrid(circuit_breaker_reset=0.2)
    await first.set("k", "before")
    await second.get("k")
    redis_server.stop()
    assert await first.get_or_load("during", load_fresh) == "fresh"
    await eventually(lambda: first.statistics().invalidation_connected == 0)

    redis_server.restart()

    await eventually(lambda: first.statistics().invalidation_connected == 1)
    await eventually(lambda: second.statistics().invalidation_connected == 1)
    assert first.statistics().size == 0  # it may have missed messages: memory cleared
    await asyncio.sleep(0.25)  # the breaker's reset timeout
    await first.set("k", "after")
    await eventually(lambda: second.statistics().invalidations_total >= 1)
    assert await second.get("k") == "after"
    assert first.statistics().redis_available == 1
    assert "Redis answers again" in caplog.text


@pytest.fixture
async def partitioned(
    redis_server: RedisServer, redis_client: RedisClient
) -> AsyncIterator[tuple[HybridCache, HybridCache, FaultProxy]]:
    """Two hybrid caches: ``cut`` reaches Redis through a fault proxy, ``direct`` does not."""
    async with FaultProxy(redis_server.address) as proxy:
        rc = RedisClient(RedisConfig(url=proxy.url(), socket_connect_timeout=1.0))
        await rc.initialize()
        config = HybridCacheConfig(circuit_breaker_threshold=1, circuit_breaker_reset=0.2)
        cut = HybridCache(config, rc)
        direct = HybridCache(config, redis_client)
        await cut.initialize()
        await direct.initialize()
        try:
            yield cut, direct, proxy
        finally:
            await cut.dispose()
            await direct.dispose()
            await rc.dispose()


async def test_a_delete_that_missed_redis_is_replayed_when_redis_is_reachable_again(
    partitioned: tuple[HybridCache, HybridCache, FaultProxy], redis_server: RedisServer
) -> None:
    cut, direct, proxy = partitioned
    await direct.set("k", "stale")
    assert await direct.get("k") == "stale"  # in direct's memory tier

    proxy.blackhole = True
    assert await cut.delete("k") is False  # could not reach Redis: remembered
    assert cut.statistics().pending_invalidations == 1
    assert await direct.get("k") == "stale"
    proxy.blackhole = False
    await asyncio.sleep(0.25)  # the breaker's reset timeout

    await cut.get("anything")  # the next call replays the delete first

    assert cut.statistics().pending_invalidations == 0
    assert redis_server.command("EXISTS", value_key("k")) == 0
    await eventually(lambda: direct.statistics().size == 0)
    assert await direct.get("k") is None


# -- health ------------------------------------------------------------------------------


async def test_health_is_good_while_redis_and_the_channel_are_up(make_hybrid: MakeHybrid) -> None:
    cache = await make_hybrid()

    assert await cache.health_check() is True


async def test_health_names_the_fallback_while_redis_is_down(
    make_hybrid: MakeHybrid, redis_server: RedisServer
) -> None:
    cache = await make_hybrid(name="users")
    redis_server.stop()

    with pytest.raises(ResourceUnavailable, match="serving from memory and the loader"):
        await cache.health_check()


async def test_a_non_critical_hybrid_cache_makes_the_report_degraded_not_unhealthy(
    redis_server: RedisServer,
) -> None:
    container = Container(health_timeout=10)
    container.bind(RedisConfig, RedisConfig(url=redis_server.url, socket_connect_timeout=1.0))
    container.bind(RedisClient, critical=False)
    container.bind(HybridCacheConfig, HybridCacheConfig(name="users"))
    container.bind(HybridCache, critical=False)

    async with container:
        cache = await container.aget(HybridCache)
        await cache.set("k", "v")
        assert (await container.health()).status is HealthStatus.HEALTHY
        redis_server.stop()

        report = await container.health()

        assert report.status is HealthStatus.DEGRADED
        error = report.resources["HybridCache"].last_error
        assert error is not None
        assert "serving from memory and the loader" in error
        assert await cache.get("k") == "v"
