"""MemoryCache: LRU with a size bound, per-entry expiry, one load per key, sync and async
faces, and its life in a container."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import ValidationError

from tether import Container, HealthStatus, Scope
from tether.cache import Cache, CacheStats, MemoryCache, MemoryCacheConfig
from tether.exceptions import ClosedError
from tether.testing import FakeClock

pytestmark = pytest.mark.anyio


# -- storing -----------------------------------------------------------------------------


async def test_set_then_get_returns_the_value() -> None:
    cache = MemoryCache()

    await cache.set("k", {"a": [1, 2]})

    assert await cache.get("k") == {"a": [1, 2]}


async def test_get_of_a_missing_key_returns_the_default() -> None:
    cache = MemoryCache()

    assert await cache.get("missing") is None
    assert await cache.get("missing", "fallback") == "fallback"


async def test_a_stored_none_is_a_hit() -> None:
    cache = MemoryCache()
    await cache.set("k", None)

    assert await cache.get("k", "fallback") is None
    assert cache.statistics().hits_total == 1


async def test_values_are_kept_as_they_are_not_copied() -> None:
    cache = MemoryCache()
    value = object()
    await cache.set("k", value)

    assert await cache.get("k") is value


async def test_delete_removes_the_key_and_says_whether_it_was_there() -> None:
    cache = MemoryCache()
    await cache.set("k", 1)

    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    assert await cache.get("k") is None


async def test_clear_removes_every_key() -> None:
    cache = MemoryCache()
    await cache.set("a", 1)
    await cache.set("b", 2)

    await cache.clear()

    assert cache.statistics().size == 0


async def test_keys_must_be_strings() -> None:
    cache = MemoryCache()

    with pytest.raises(TypeError, match="keys are strings, got int"):
        await cache.set(1, "v")  # type: ignore[arg-type]


# -- size bound --------------------------------------------------------------------------


async def test_the_least_recently_used_entry_is_evicted_past_max_size() -> None:
    cache = MemoryCache(max_size=2)
    await cache.set("a", 1)
    await cache.set("b", 2)
    await cache.get("a")  # "b" is now the least recently used

    await cache.set("c", 3)

    assert await cache.get("b") is None
    assert await cache.get("a") == 1
    assert await cache.get("c") == 3
    assert cache.statistics().evictions_total == 1


async def test_size_never_exceeds_max_size() -> None:
    cache = MemoryCache(max_size=10)

    for i in range(100):
        await cache.set(str(i), i)

    stats = cache.statistics()
    assert stats.size == 10
    assert stats.evictions_total == 90


# -- expiry ------------------------------------------------------------------------------


async def test_an_entry_expires_after_its_ttl() -> None:
    clock = FakeClock()
    cache = MemoryCache(clock=clock.monotonic)
    await cache.set("k", "v", ttl=10)

    clock.advance(9.9)
    assert await cache.get("k") == "v"
    clock.advance(0.1)
    assert await cache.get("k") is None
    assert cache.statistics().expirations_total == 1


async def test_default_ttl_applies_when_set_gives_none() -> None:
    clock = FakeClock()
    cache = MemoryCache(MemoryCacheConfig(default_ttl=5), clock=clock.monotonic)
    await cache.set("k", "v")

    clock.advance(5)

    assert await cache.get("k") is None


async def test_default_ttl_none_keeps_entries_until_evicted() -> None:
    clock = FakeClock()
    cache = MemoryCache(default_ttl=None, clock=clock.monotonic)
    await cache.set("k", "v")

    clock.advance(10**9)

    assert await cache.get("k") == "v"


@pytest.mark.parametrize("ttl", [0, -1, True, "10"])
async def test_a_ttl_that_is_not_a_positive_number_is_refused(ttl: object) -> None:
    cache = MemoryCache()

    with pytest.raises(ValueError, match="ttl must be a positive number of seconds"):
        await cache.set("k", "v", ttl=ttl)  # type: ignore[arg-type]


# -- get_or_load -------------------------------------------------------------------------


async def test_get_or_load_runs_the_loader_on_a_miss_and_stores_the_value() -> None:
    cache = MemoryCache()

    async def load() -> str:
        return "loaded"

    assert await cache.get_or_load("k", load) == "loaded"
    assert await cache.get("k") == "loaded"


async def test_concurrent_misses_on_one_key_run_the_loader_once() -> None:
    cache = MemoryCache()
    calls = 0
    release = asyncio.Event()

    async def load() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "v"

    waiting = [asyncio.create_task(cache.get_or_load("k", load)) for _ in range(100)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiting)

    assert calls == 1
    assert results == ["v"] * 100
    stats = cache.statistics()
    assert stats.loads_total == 1
    assert stats.misses_total == 100


async def test_misses_on_different_keys_load_separately() -> None:
    cache = MemoryCache()
    loaded: list[str] = []

    def loader(key: str) -> Callable[[], Awaitable[str]]:
        async def load() -> str:
            loaded.append(key)
            return key
        return load

    await asyncio.gather(*(cache.get_or_load(k, loader(k)) for k in ("a", "b", "c")))

    assert sorted(loaded) == ["a", "b", "c"]


async def test_a_loader_error_reaches_every_waiter_and_is_not_stored() -> None:
    cache = MemoryCache()
    calls = 0
    release = asyncio.Event()

    async def failing() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        raise LookupError("no such user")

    waiting = [asyncio.create_task(cache.get_or_load("k", failing)) for _ in range(5)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)

    assert calls == 1
    assert all(isinstance(r, LookupError) for r in results)

    async def working() -> str:
        return "v"

    assert await cache.get_or_load("k", working) == "v"
    assert cache.statistics().load_failures_total == 1


async def test_a_cancelled_caller_does_not_cancel_the_load_for_the_others() -> None:
    cache = MemoryCache()
    release = asyncio.Event()

    async def load() -> str:
        await release.wait()
        return "v"

    first = asyncio.create_task(cache.get_or_load("k", load))
    second = asyncio.create_task(cache.get_or_load("k", load))
    await asyncio.sleep(0)
    first.cancel()
    release.set()

    assert await second == "v"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await cache.get("k") == "v"


# -- the sync face -----------------------------------------------------------------------


def test_sync_face_stores_and_reads() -> None:
    cache = MemoryCache()

    cache.set_sync("k", 1)

    assert cache.get_sync("k") == 1
    assert cache.delete_sync("k") is True
    assert cache.get_sync("k", "gone") == "gone"


def test_concurrent_sync_misses_in_threads_run_the_loader_once() -> None:
    cache = MemoryCache()
    calls = 0
    entered = threading.Event()
    release = threading.Event()

    def load() -> str:
        nonlocal calls
        calls += 1
        entered.set()
        release.wait(timeout=30)
        return "v"

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(cache.get_or_load_sync, "k", load) for _ in range(8)]
        assert entered.wait(timeout=30)
        release.set()
        results = [f.result(timeout=30) for f in futures]

    assert calls == 1
    assert results == ["v"] * 8


def test_a_sync_loader_error_reaches_the_waiting_threads_and_is_not_stored() -> None:
    cache = MemoryCache()
    entered = threading.Event()
    release = threading.Event()

    def failing() -> str:
        entered.set()
        release.wait(timeout=30)
        raise LookupError("nope")

    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(cache.get_or_load_sync, "k", failing) for _ in range(4)]
        assert entered.wait(timeout=30)
        release.set()
        errors = [f.exception(timeout=30) for f in futures]

    assert all(isinstance(e, LookupError) for e in errors)
    assert cache.get_or_load_sync("k", lambda: "v") == "v"


# -- statistics --------------------------------------------------------------------------


async def test_statistics_count_hits_misses_and_the_hit_ratio() -> None:
    cache = MemoryCache(max_size=5)
    await cache.set("k", 1)
    await cache.get("k")
    await cache.get("k")
    await cache.get("k")
    await cache.get("missing")

    stats = cache.statistics()

    assert isinstance(stats, CacheStats)
    assert (stats.hits_total, stats.misses_total, stats.sets_total) == (3, 1, 1)
    assert stats.hit_ratio == 0.75
    assert (stats.size, stats.max_size) == (1, 5)


def test_hit_ratio_is_zero_before_any_call() -> None:
    assert MemoryCache().statistics().hit_ratio == 0.0


# -- config ------------------------------------------------------------------------------


def test_keyword_options_build_the_config() -> None:
    cache = MemoryCache(name="sessions", max_size=7, default_ttl=None)

    assert cache.config == MemoryCacheConfig(name="sessions", max_size=7, default_ttl=None)
    assert cache.name == "sessions"


def test_a_config_and_keyword_options_together_are_refused() -> None:
    with pytest.raises(TypeError, match="a config or keyword options, not both"):
        MemoryCache(MemoryCacheConfig(), max_size=3)


@pytest.mark.parametrize(("options", "field"), [
    ({"max_size": 0}, "max_size"),
    ({"default_ttl": 0}, "default_ttl"),
    ({"name": ""}, "name"),
    ({"size": 3}, "size"),
])
def test_invalid_config_names_the_field(options: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        MemoryCacheConfig(**options)


def test_config_is_frozen() -> None:
    config = MemoryCacheConfig()

    with pytest.raises(ValidationError):
        config.max_size = 3  # type: ignore[misc]


# -- lifecycle and the container ---------------------------------------------------------


async def test_a_disposed_cache_refuses_to_be_used() -> None:
    cache = MemoryCache(name="pages")
    cache.dispose()
    cache.dispose()  # twice is fine

    with pytest.raises(ClosedError, match="MemoryCache 'pages'"):
        await cache.get("k")
    with pytest.raises(ClosedError):
        cache.set_sync("k", 1)


async def test_dispose_cancels_loads_in_flight_and_their_waiters_get_closed_error() -> None:
    cache = MemoryCache()
    started = asyncio.Event()

    async def forever() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    waiter = asyncio.create_task(cache.get_or_load("k", forever))
    await started.wait()
    cache.dispose()

    with pytest.raises(ClosedError, match="MemoryCache 'cache'"):
        await waiter


async def test_a_bound_instance_is_served_checked_measured_and_disposed_by_the_container() -> None:
    container = Container()
    cache = MemoryCache(max_size=1000)
    container.bind(MemoryCache, cache)

    async with container:
        got = await container.aget(MemoryCache)
        await got.set("k", "v")
        await got.get("k")
        report = await container.health()
        stats = container.statistics()

    assert got is cache
    assert report.status is HealthStatus.HEALTHY
    assert report.resources["MemoryCache"].is_healthy is True
    assert stats["MemoryCache"].hits_total == 1
    assert stats["MemoryCache"].max_size == 1000
    with pytest.raises(ClosedError):
        await cache.get("k")


def test_it_resolves_from_a_sync_container_autowired_from_its_config() -> None:
    container = Container()
    container.bind(MemoryCacheConfig, MemoryCacheConfig(max_size=3))
    container.bind(Cache, MemoryCache)

    with container:
        cache = container.get(Cache)
        assert isinstance(cache, MemoryCache)
        assert cache.config.max_size == 3
        cache.set_sync("k", 1)

    with pytest.raises(ClosedError):
        cache.get_sync("k")


def test_it_can_live_in_singleton_scope_shared_by_containers() -> None:
    first, second = Container(), Container()
    for container in (first, second):
        container.bind(MemoryCache, scope=Scope.SINGLETON)

    with first, second:
        assert first.get(MemoryCache) is second.get(MemoryCache)
