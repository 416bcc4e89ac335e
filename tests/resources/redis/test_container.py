"""RedisClient registered in a real tether.Container: lifecycle, health, statistics, and
a password that never leaks."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.redis import RedisServer, find_redis_server
from tether import Container, HealthStatus
from tether.exceptions import ClosedError, ResourceError, StartupError
from tether.resources.redis import RedisClient, RedisConfig, RedisStats

pytestmark = pytest.mark.anyio

SECRET = "hunter2-redis-pw"


@pytest.fixture
def locked_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server that requires ``SECRET``."""
    find_redis_server()
    server = RedisServer(tmp_path / "locked", password=SECRET)
    server.start()
    yield server
    server.close()


def _container(url: str, **options: object) -> Container:
    container = Container()
    container.bind(RedisConfig, RedisConfig(url=url, **options))
    container.bind(RedisClient)
    return container


async def test_container_builds_and_disposes_the_client(redis_server: RedisServer) -> None:
    async with _container(redis_server.url) as container:
        rc = await container.aget(RedisClient)
        await rc.set("k", "v")
        assert await rc.get("k") == b"v"

    with pytest.raises(ClosedError):
        await rc.get("k")


async def test_named_clients_live_side_by_side(redis_server: RedisServer) -> None:
    base = redis_server.url.rsplit("/", 1)[0]
    container = Container()
    container.bind(RedisClient, RedisClient(RedisConfig(name="cache", url=f"{base}/1")),
                   name="cache")
    container.bind(RedisClient, RedisClient(RedisConfig(name="queue", url=f"{base}/2")),
                   name="queue")

    async with container:
        cache = await container.aget(RedisClient, name="cache")
        queue = await container.aget(RedisClient, name="queue")
        await cache.set("k", "in cache")
        await queue.set("k", "in queue")

        assert await cache.get("k") == b"in cache"
        assert await queue.get("k") == b"in queue"
        assert set(container.statistics()) == {"RedisClient[cache]", "RedisClient[queue]"}


async def test_container_health_flips_unhealthy_then_healthy_across_a_restart(
    redis_server: RedisServer,
) -> None:
    async with _container(redis_server.url) as container:
        await container.aget(RedisClient)
        assert (await container.health()).status is HealthStatus.HEALTHY

        redis_server.kill()
        down = await container.health()
        redis_server.restart()
        up = await container.health()

    assert down.status is HealthStatus.UNHEALTHY
    assert "ResourceUnavailable" in (down.resources["RedisClient"].last_error or "")
    assert up.status is HealthStatus.HEALTHY


async def test_container_statistics_report_the_pool(redis_server: RedisServer) -> None:
    async with _container(redis_server.url, max_connections=4) as container:
        rc = await container.aget(RedisClient)
        await rc.ping()

        stats = container.statistics()["RedisClient"]

    assert isinstance(stats, RedisStats)
    assert (stats.max_connections, stats.in_use, stats.idle) == (4, 0, 1)


async def test_eager_start_against_a_stopped_server_fails_start_up(
    redis_server: RedisServer,
) -> None:
    container = Container()
    container.bind(RedisConfig, RedisConfig(url=redis_server.url))
    container.bind(RedisClient, eager=True)
    redis_server.kill()

    with pytest.raises(StartupError, match=r"RedisClient.*cannot connect"):
        async with container:
            pass


# -- the password ------------------------------------------------------------------------------


async def test_password_in_the_url_authenticates(locked_server: RedisServer) -> None:
    async with _container(locked_server.url) as container:
        rc = await container.aget(RedisClient)

        assert await rc.set("k", "v")
        assert SECRET not in repr(rc)
        assert SECRET not in repr(container.statistics())


async def test_wrong_password_fails_without_showing_either_password(
    locked_server: RedisServer, caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = "not-the-" + SECRET
    rc = RedisClient(RedisConfig(url=f"redis://:{wrong}@127.0.0.1:{locked_server.port}/0"))

    with caplog.at_level(logging.DEBUG), pytest.raises(ResourceError,
                                                       match="refused the credentials") as caught:
        await rc.initialize()
    await rc.dispose()

    shown = [str(caught.value), repr(caught.value), str(caught.value.__cause__), caplog.text]
    assert not [text for text in shown if SECRET in text]


async def test_password_never_reaches_the_health_report(locked_server: RedisServer) -> None:
    async with _container(locked_server.url) as container:
        await container.aget(RedisClient)
        locked_server.kill()

        report = await container.health()

    body = json.dumps(report.to_dict())
    assert report.status is HealthStatus.UNHEALTHY
    assert "ResourceUnavailable" in body
    assert SECRET not in body


async def test_password_never_reaches_the_start_up_error(locked_server: RedisServer) -> None:
    container = Container()
    container.bind(RedisConfig, RedisConfig(url=locked_server.url))
    container.bind(RedisClient, eager=True)
    locked_server.kill()

    with pytest.raises(StartupError) as caught:
        async with container:
            pass

    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value.error)
