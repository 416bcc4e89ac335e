"""``Pool`` as a tether resource: in a real Container, with real TCP connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.resources.pool.items import Conn, EchoServer, Factory, Link, eventually
from tether import Container, HealthStatus
from tether.resources.pool import Pool, PoolConfig
from tether.testing import assert_no_leaks

pytestmark = pytest.mark.anyio


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    async with EchoServer().running() as server:
        yield server


def _link_pool(port: int, **options: float) -> Pool[Link]:
    return Pool(PoolConfig(name="echo", **options),
                factory=lambda: Link.connect(port), validate=Link.alive)


# -- real connections ------------------------------------------------------------------


async def test_pool_lends_working_tcp_connections(echo: EchoServer) -> None:
    pool = _link_pool(echo.port, max_size=2)
    await pool.initialize()

    async with pool.acquire() as link:
        assert await link.echo(b"ping") == b"ping"
    await pool.dispose()


async def test_connections_the_server_dropped_are_replaced(echo: EchoServer) -> None:
    pool = _link_pool(echo.port, max_size=3, min_size=3)
    await pool.initialize()
    await eventually(lambda: echo.accepted == 3)

    await echo.drop_all()
    await asyncio.sleep(0.05)  # let the loop read the EOFs
    async with pool.acquire() as link:
        assert await link.echo(b"after") == b"after"

    stats = pool.statistics()
    assert stats.validation_failures_total == 1
    assert stats.created_total == 4
    await pool.dispose()


async def test_dispose_closes_every_socket(echo: EchoServer) -> None:
    # filterwarnings=error turns an unclosed transport's ResourceWarning into a failure.
    pool = _link_pool(echo.port, max_size=4, min_size=2)
    await pool.initialize()
    async with pool.acquire() as a, pool.acquire() as b, pool.acquire() as c:
        await asyncio.gather(a.echo(b"a"), b.echo(b"b"), c.echo(b"c"))

    await pool.dispose()

    assert pool.statistics().disposed_total == 3


# -- through a Container ---------------------------------------------------------------


async def test_container_initializes_checks_and_disposes_the_pool() -> None:
    factory = Factory()
    container = Container()
    container.bind(Pool[Conn], Pool(PoolConfig(name="conns", min_size=2), factory=factory),
                   eager=True)

    async with container:
        pool = await container.aget(Pool[Conn])
        assert pool.statistics().idle == 2
        async with pool.acquire() as conn:
            assert conn in factory.made
        report = await container.health()
        assert report.status is HealthStatus.HEALTHY

    assert all(conn.closed for conn in factory.made)
    assert_no_leaks(container)


async def test_named_pools_live_side_by_side() -> None:
    container = Container()
    container.bind(Pool[Conn], Pool(PoolConfig(name="primary"), factory=Factory()),
                   name="primary")
    container.bind(Pool[Conn], Pool(PoolConfig(name="replica"), factory=Factory()),
                   name="replica")

    async with container:
        primary = await container.aget(Pool[Conn], name="primary")
        replica = await container.aget(Pool[Conn], name="replica")
        assert primary is not replica
        assert (primary.name, replica.name) == ("primary", "replica")


async def test_container_health_reports_a_factory_that_fails() -> None:
    factory = Factory()
    container = Container()
    container.bind(Pool[Conn], Pool(PoolConfig(name="conns"), factory=factory))

    async with container:
        await container.aget(Pool[Conn])
        factory.fail = ConnectionRefusedError("connection refused")
        report = await container.health()

    [health] = report.resources.values()
    assert report.status is HealthStatus.UNHEALTHY
    assert health.last_error is not None
    assert "connection refused" in health.last_error


async def test_health_check_validates_an_idle_item() -> None:
    factory = Factory()
    pool = Pool(PoolConfig(name="conns", min_size=1), factory=factory,
                validate=lambda conn: conn.healthy)
    await pool.initialize()
    factory.made[0].healthy = False

    assert await pool.health_check() is True

    assert pool.statistics().validation_failures_total == 1
    assert pool.statistics().idle == 1
    await pool.dispose()


async def test_health_check_passes_when_every_item_is_busy() -> None:
    factory = Factory()
    pool = Pool(PoolConfig(name="conns", max_size=1), factory=factory)
    await pool.initialize()
    release = asyncio.Event()

    async def hold() -> None:
        async with pool.acquire():
            await release.wait()

    holder = asyncio.create_task(hold())
    await eventually(lambda: pool.statistics().in_use == 1)
    factory.fail = ConnectionRefusedError("would fail if called")

    assert await pool.health_check() is True

    release.set()
    await holder
    await pool.dispose()
