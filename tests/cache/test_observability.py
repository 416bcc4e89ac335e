"""What the caches show the outside: /metrics, the status data, health, and never a
secret (scenario O1)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.servers.redis import RedisServer
from tether import Container
from tether.cache import HybridCache, HybridCacheConfig, MemoryCache
from tether.exceptions import ResourceError
from tether.fastapi import Inject, install
from tether.resources.redis import RedisClient, RedisConfig

pytestmark = pytest.mark.anyio

PASSWORD = "s3cret-Pa55word"


def samples(text: str) -> dict[tuple[str, str, str], float]:
    """(metric, resource, kind) -> value, for the tether_resource_* series."""
    out: dict[tuple[str, str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("tether_resource_"):
                key = (s.name, s.labels.get("resource", ""), s.labels.get("kind", ""))
                out[key] = s.value
    return out


def test_cache_statistics_are_served_on_metrics() -> None:
    container = Container()
    container.bind(MemoryCache, MemoryCache(max_size=100), eager=True)
    app = FastAPI()
    install(app, container)

    @app.get("/tea")
    async def tea(cache: Inject[MemoryCache]) -> str:
        async def brew() -> str:
            return "green"

        return await cache.get_or_load("tea", brew)

    with TestClient(app) as client:
        for _ in range(4):
            client.get("/tea")
        found = samples(client.get("/metrics").text)

    assert found[("tether_resource_hits_total", "MemoryCache", "")] == 3
    assert found[("tether_resource_misses_total", "MemoryCache", "")] == 1
    assert found[("tether_resource_loads_total", "MemoryCache", "")] == 1
    assert found[("tether_resource_evictions_total", "MemoryCache", "")] == 0
    assert found[("tether_resource_hit_ratio", "MemoryCache", "")] == 0.75
    assert found[("tether_resource_size", "MemoryCache", "")] == 1
    assert found[("tether_resource_max_size", "MemoryCache", "")] == 100


async def test_redis_failures_are_counted_by_kind(redis_server: RedisServer) -> None:
    container = Container()
    container.bind(RedisConfig, RedisConfig(url=redis_server.url, socket_connect_timeout=1.0))
    container.bind(RedisClient)
    container.bind(HybridCacheConfig, HybridCacheConfig(circuit_breaker_threshold=1))
    container.bind(HybridCache)

    async with container:
        cache = await container.aget(HybridCache)
        redis_server.stop()
        await cache.get("a")
        await cache.get("b")
        stats = container.statistics()["HybridCache"]

    assert stats.failures_by_kind == {"ResourceUnavailable": 1, "CircuitOpen": 1}
    assert stats.redis_available == 0


# -- secrets (O1) ------------------------------------------------------------------------


@pytest.fixture
def locked_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server that wants a password."""
    server = RedisServer(tmp_path / "redis", password=PASSWORD)
    server.start()
    try:
        yield server
    finally:
        server.close()


async def test_the_redis_password_never_shows_in_repr_health_errors_logs_or_metrics(
    locked_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    container = Container()
    container.bind(RedisConfig, RedisConfig(url=locked_server.url, socket_connect_timeout=1.0))
    container.bind(RedisClient)
    container.bind(HybridCacheConfig, HybridCacheConfig(name="users"))
    container.bind(HybridCache, critical=False)
    seen: list[str] = []

    async with container:
        cache = await container.aget(HybridCache)
        await cache.set("k", "v")
        seen += [repr(cache), repr(cache.config), str(cache.statistics())]
        locked_server.stop()
        await cache.get("other")
        try:
            await cache.health_check()
        except ResourceError as error:
            seen += [str(error), repr(error), str(error.__cause__)]
        report = await container.health()
        seen.append(str(report.to_dict()))

    assert len(seen) == 7  # the health check did fail, and its error was looked at
    seen.append(caplog.text)
    assert "serving from memory and the loader" in seen[3]
    assert not [text for text in seen if PASSWORD in text]
