"""RedisCache against a real redis-server: storing, expiry, namespaces, safe
serialization (scenario C3: a crafted pickle is never unpickled), locks, lifecycle."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import pickle
import zlib
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from pydantic import ValidationError

from tests.servers.redis import RedisServer
from tether import Container, HealthStatus
from tether.cache import (
    Cache,
    RedisCache,
    RedisCacheConfig,
    RedisCacheStats,
    SerializationError,
)
from tether.exceptions import ClosedError, ResourceError
from tether.resources.redis import RedisClient, RedisConfig

from .conftest import MakeRedisCache

pytestmark = pytest.mark.anyio


def value_key(key: str, namespace: str = "cache") -> str:
    """Where a RedisCache keeps a key (the layout docs/cache.md describes)."""
    return f"tether:cache:{namespace}:v:{key}"


# -- storing -----------------------------------------------------------------------------


async def test_set_then_get_returns_the_value(make_redis_cache: MakeRedisCache) -> None:
    cache = await make_redis_cache()

    await cache.set("user:1", {"name": "Ann", "tags": ["a", "b"], "age": 41, "ok": True})

    assert await cache.get("user:1") == {"name": "Ann", "tags": ["a", "b"], "age": 41, "ok": True}


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
async def test_values_come_back_as_plain_data(
    make_redis_cache: MakeRedisCache, serializer: str
) -> None:
    cache = await make_redis_cache(serializer=serializer)

    await cache.set("k", (1, 2.5, None, "x"))

    assert await cache.get("k") == [1, 2.5, None, "x"]  # a tuple is an array in both


async def test_msgpack_keeps_bytes_and_integer_keys(make_redis_cache: MakeRedisCache) -> None:
    cache = await make_redis_cache(serializer="msgpack")

    await cache.set("k", {1: b"\x00\xff"})

    assert await cache.get("k") == {1: b"\x00\xff"}


async def test_a_stored_none_is_a_hit(make_redis_cache: MakeRedisCache) -> None:
    cache = await make_redis_cache()
    await cache.set("k", None)

    assert await cache.get("k", "fallback") is None
    assert cache.statistics().hits_total == 1


async def test_get_of_a_missing_key_returns_the_default(make_redis_cache: MakeRedisCache) -> None:
    cache = await make_redis_cache()

    assert await cache.get("missing", "fallback") == "fallback"
    assert cache.statistics().misses_total == 1


async def test_delete_removes_the_key(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer
) -> None:
    cache = await make_redis_cache()
    await cache.set("k", 1)

    assert await cache.delete("k") is True
    assert await cache.delete("k") is False
    assert redis_server.command("EXISTS", value_key("k")) == 0


async def test_the_ttl_is_set_on_the_redis_key(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer
) -> None:
    cache = await make_redis_cache(default_ttl=300)
    await cache.set("short", 1, ttl=2.5)
    await cache.set("default", 1)

    short = redis_server.command("PTTL", value_key("short"))
    default = redis_server.command("PTTL", value_key("default"))

    assert isinstance(short, int)
    assert 0 < short <= 2500
    assert isinstance(default, int)
    assert 2500 < default <= 300_000


async def test_default_ttl_none_stores_without_expiry(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer
) -> None:
    cache = await make_redis_cache(default_ttl=None)
    await cache.set("k", 1)

    assert redis_server.command("PTTL", value_key("k")) == -1


async def test_an_expired_key_is_a_miss(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer
) -> None:
    cache = await make_redis_cache()
    await cache.set("k", 1, ttl=60)

    redis_server.command("PEXPIRE", value_key("k"), 1)
    await asyncio.sleep(0.05)

    assert await cache.get("k") is None


# -- namespaces --------------------------------------------------------------------------


async def test_caches_with_different_namespaces_do_not_see_each_other(
    make_redis_cache: MakeRedisCache,
) -> None:
    users = await make_redis_cache(name="users")
    pages = await make_redis_cache(name="pages")

    await users.set("1", "ann")

    assert await pages.get("1") is None
    assert await users.get("1") == "ann"


async def test_caches_with_one_namespace_share_entries(make_redis_cache: MakeRedisCache) -> None:
    writer = await make_redis_cache(name="a", namespace="shared")
    reader = await make_redis_cache(name="b", namespace="shared")

    await writer.set("k", "v")

    assert await reader.get("k") == "v"


async def test_clear_deletes_its_namespace_only(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer
) -> None:
    users = await make_redis_cache(name="users")
    pages = await make_redis_cache(name="pages")
    for i in range(1200):  # more than one SCAN batch
        await users.set(str(i), i)
    await pages.set("home", "html")
    redis_server.command("SET", "unrelated", "x")

    await users.clear()

    assert await users.get("7") is None
    assert redis_server.command("KEYS", "tether:cache:users:*") == []
    assert await pages.get("home") == "html"
    assert redis_server.command("GET", "unrelated") == b"x"


@pytest.mark.parametrize("namespace", ["has space", "", "a*", "x" * 101])
def test_a_namespace_that_cannot_be_part_of_a_key_is_refused(namespace: str) -> None:
    with pytest.raises(ValidationError, match="namespace must be"):
        RedisCacheConfig(namespace=namespace)


def test_the_name_is_the_default_namespace_and_is_checked_as_one() -> None:
    assert RedisCacheConfig(name="users").key_namespace == "users"
    with pytest.raises(ValidationError, match=r"name \(the default namespace\)"):
        RedisCacheConfig(name="my cache")


# -- safe serialization (C3) -------------------------------------------------------------


class Evil:
    """Unpickling this creates a folder: proof that a pickle was executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.path),))


@pytest.mark.parametrize("header", [b"", b"TC\x01\x00", b"TC\x01\x01"])
async def test_a_crafted_pickle_in_redis_is_rejected_never_unpickled(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer, tmp_path: Path, header: bytes
) -> None:
    cache = await make_redis_cache()
    marker = tmp_path / "pwned"
    redis_server.command("SET", value_key("k"), header + pickle.dumps(Evil(marker)))

    assert await cache.get("k", "miss") == "miss"

    assert not marker.exists()
    assert cache.statistics().rejected_total == 1


async def test_a_rejected_value_is_replaced_by_the_loader(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer, tmp_path: Path
) -> None:
    cache = await make_redis_cache()
    redis_server.command("SET", value_key("k"), pickle.dumps(Evil(tmp_path / "pwned")))

    async def load() -> str:
        return "fresh"

    assert await cache.get_or_load("k", load) == "fresh"
    assert await cache.get("k") == "fresh"
    assert not (tmp_path / "pwned").exists()


async def test_a_msgpack_extension_type_is_rejected(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer
) -> None:
    cache = await make_redis_cache()
    payload = msgpack.packb(msgpack.ExtType(42, b"data"))
    redis_server.command("SET", value_key("k"), b"TC\x01\x01" + payload)

    assert await cache.get("k", "miss") == "miss"
    assert cache.statistics().rejected_total == 1


async def test_a_compressed_payload_inflating_past_max_value_size_is_rejected(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer
) -> None:
    cache = await make_redis_cache(max_value_size=64 * 1024)
    bomb = zlib.compress(json.dumps("x" * (4 * 1024 * 1024)).encode(), 9)  # 4 MiB inflated
    redis_server.command("SET", value_key("k"), b"TC\x01\x02" + bomb)

    assert await cache.get("k", "miss") == "miss"
    assert cache.statistics().rejected_total == 1


async def test_a_key_holding_another_redis_type_is_a_miss(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer
) -> None:
    cache = await make_redis_cache()
    redis_server.command("HSET", value_key("k"), "field", "value")

    assert await cache.get("k", "miss") == "miss"
    assert cache.statistics().rejected_total == 1


@pytest.mark.parametrize("serializer", ["msgpack", "json"])
async def test_a_value_the_format_cannot_encode_is_refused_naming_its_type(
    make_redis_cache: MakeRedisCache, serializer: str
) -> None:
    cache = await make_redis_cache(serializer=serializer)

    with pytest.raises(SerializationError) as caught:
        await cache.set("k", {"when": datetime.date(2024, 1, 2)})

    assert caught.value.type_name == "datetime.date"
    assert "cannot store a value of type datetime.date" in str(caught.value)
    assert isinstance(caught.value, TypeError)


async def test_json_cannot_store_bytes(make_redis_cache: MakeRedisCache) -> None:
    cache = await make_redis_cache(serializer="json")

    with pytest.raises(SerializationError, match="bytes"):
        await cache.set("k", b"\x00")


async def test_a_value_over_max_value_size_is_refused(make_redis_cache: MakeRedisCache) -> None:
    cache = await make_redis_cache(max_value_size=1024)

    with pytest.raises(SerializationError, match="over max_value_size=1024"):
        await cache.set("k", "x" * 2000)


async def test_a_large_value_is_compressed_and_reads_back(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer
) -> None:
    cache = await make_redis_cache(compress_above=1000)
    value = "abc" * 10_000

    await cache.set("k", value)

    raw = redis_server.command("GET", value_key("k"))
    assert isinstance(raw, bytes)
    assert len(raw) < 2000
    assert raw[:4] == b"TC\x01\x03"  # msgpack, zlib
    assert await cache.get("k") == value


async def test_a_small_value_is_not_compressed(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer
) -> None:
    cache = await make_redis_cache(compress_above=1000)

    await cache.set("k", "small")

    raw = redis_server.command("GET", value_key("k"))
    assert isinstance(raw, bytes)
    assert raw[:4] == b"TC\x01\x01"


# -- get_or_load and the lock ------------------------------------------------------------


async def test_get_or_load_stores_the_loaded_value_in_redis(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer
) -> None:
    cache = await make_redis_cache()

    async def load() -> dict[str, int]:
        return {"n": 1}

    assert await cache.get_or_load("k", load, ttl=30) == {"n": 1}
    assert redis_server.command("EXISTS", value_key("k")) == 1
    assert await cache.get_or_load("k", load) == {"n": 1}
    stats = cache.statistics()
    assert (stats.loads_total, stats.hits_total, stats.misses_total) == (1, 1, 1)


async def test_get_or_load_returns_what_the_cache_will_return_later(
    make_redis_cache: MakeRedisCache,
) -> None:
    cache = await make_redis_cache()

    async def load() -> tuple[int, int]:
        return (1, 2)

    first: Any = await cache.get_or_load("k", load)
    again: Any = await cache.get_or_load("k", load)

    assert first == [1, 2] == again


async def test_concurrent_misses_in_one_process_load_once(
    make_redis_cache: MakeRedisCache,
) -> None:
    cache = await make_redis_cache()
    calls = 0
    release = asyncio.Event()

    async def load() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "v"

    waiting = [asyncio.create_task(cache.get_or_load("k", load)) for _ in range(100)]
    await asyncio.sleep(0.05)
    release.set()

    assert await asyncio.gather(*waiting) == ["v"] * 100
    assert calls == 1


async def test_with_the_lock_two_caches_on_one_namespace_load_once(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer
) -> None:
    # Two RedisCache objects stand for two processes: they share only Redis.
    first = await make_redis_cache(lock=True)
    second = await make_redis_cache(lock=True)
    calls = 0
    inside = asyncio.Event()
    release = asyncio.Event()

    async def load() -> str:
        nonlocal calls
        calls += 1
        inside.set()
        await release.wait()
        return "v"

    holder = asyncio.create_task(first.get_or_load("k", load))
    await inside.wait()
    assert redis_server.command("EXISTS", "tether:cache:cache:lock:k") == 1
    waiter = asyncio.create_task(second.get_or_load("k", load))
    await asyncio.sleep(0.1)  # the waiter polls while the holder loads
    release.set()

    assert list(await asyncio.gather(holder, waiter)) == ["v", "v"]
    assert calls == 1
    assert second.statistics().lock_waits_total == 1
    assert redis_server.command("EXISTS", "tether:cache:cache:lock:k") == 0


async def test_a_lock_left_by_a_crashed_holder_expires_and_the_waiter_takes_it(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    cache = await make_redis_cache(lock=True, lock_timeout=30)
    # What a holder that died leaves behind: its lock, with the expiry it set.
    redis_server.command("SET", "tether:cache:cache:lock:k", "someone-dead", "PX", 300)

    async def load() -> str:
        return "v"

    assert await cache.get_or_load("k", load) == "v"
    assert cache.statistics().lock_waits_total == 1
    assert "held the load lock" not in caplog.text  # it took the lock; it did not give up


async def test_a_waiter_gives_up_on_a_holder_that_outlives_lock_timeout(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    cache = await make_redis_cache(lock=True, lock_timeout=0.3)
    # A lock with no expiry, as a buggy holder might leave it.
    redis_server.command("SET", "tether:cache:cache:lock:k", "stuck")

    async def load() -> str:
        return "v"

    assert await cache.get_or_load("k", load) == "v"
    assert "held the load lock" in caplog.text
    assert redis_server.command("GET", "tether:cache:cache:lock:k") == b"stuck"  # not ours


async def test_the_lock_is_released_when_the_loader_fails(
    make_redis_cache: MakeRedisCache, redis_server: RedisServer
) -> None:
    cache = await make_redis_cache(lock=True)

    async def failing() -> str:
        raise LookupError("no")

    with pytest.raises(LookupError):
        await cache.get_or_load("k", failing)

    assert redis_server.command("EXISTS", "tether:cache:cache:lock:k") == 0
    assert redis_server.command("EXISTS", value_key("k")) == 0


# -- lifecycle, health, statistics -------------------------------------------------------


async def test_use_before_initialize_is_refused(redis_client: RedisClient) -> None:
    cache = RedisCache(RedisCacheConfig(name="pages"), redis_client)

    with pytest.raises(ResourceError, match="pages: not initialized"):
        await cache.get("k")


async def test_use_after_dispose_is_refused(make_redis_cache: MakeRedisCache) -> None:
    cache = await make_redis_cache(name="pages")
    await cache.dispose()
    await cache.dispose()

    with pytest.raises(ClosedError, match="RedisCache 'pages'"):
        await cache.get("k")


async def test_dispose_cancels_loads_in_flight_and_their_waiters_get_closed_error(
    make_redis_cache: MakeRedisCache,
) -> None:
    cache = await make_redis_cache(name="pages")
    started = asyncio.Event()

    async def forever() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    waiter = asyncio.create_task(cache.get_or_load("k", forever))
    await started.wait()
    await cache.dispose()

    with pytest.raises(ClosedError, match="RedisCache 'pages'"):
        await waiter


async def test_a_client_decoding_responses_is_refused(redis_server: RedisServer) -> None:
    rc = RedisClient(RedisConfig(url=redis_server.url, decode_responses=True))
    await rc.initialize()
    try:
        with pytest.raises(ResourceError, match="decode_responses=False"):
            await RedisCache(RedisCacheConfig(), rc).initialize()
    finally:
        await rc.dispose()


async def test_statistics_count_redis_calls(make_redis_cache: MakeRedisCache) -> None:
    cache = await make_redis_cache()
    await cache.set("k", 1)
    await cache.get("k")

    stats = cache.statistics()

    assert isinstance(stats, RedisCacheStats)
    assert stats.redis_calls_total == 2
    assert stats.redis_failures_total == 0
    assert stats.redis_available == 1
    assert (stats.size, stats.max_size) == (0, 0)  # no memory tier


async def test_the_container_builds_it_after_its_redis_client_and_disposes_it_first(
    redis_server: RedisServer,
) -> None:
    container = Container()
    container.bind(RedisConfig, RedisConfig(url=redis_server.url))
    container.bind(RedisClient)
    container.bind(RedisCacheConfig, RedisCacheConfig(name="pages"))
    container.bind(Cache, RedisCache)

    async with container:
        cache = await container.aget(Cache)
        await cache.set("k", "v")
        assert await cache.get("k") == "v"
        report = await container.health()
        stats = container.statistics()

    assert report.status is HealthStatus.HEALTHY
    assert report.resources["Cache"].is_healthy is True
    assert stats["Cache"].sets_total == 1
    with pytest.raises(ClosedError):
        await cache.get("k")
