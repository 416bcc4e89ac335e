"""Connection limits, reuse, the pool under cancellation, and the counters (P6)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import anyio
import pytest

from tether.exceptions import PoolTimeout
from tether.resources.http import HTTPClient

from .conftest import Clients
from .servers import LoopbackHTTPServer

pytestmark = pytest.mark.anyio


async def test_sequential_requests_reuse_one_keep_alive_connection(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open()

    for _ in range(3):
        await client.get("/echo")

    assert server.connections_total == 1
    assert client.statistics().connections_idle == 1


async def test_an_idle_connection_past_keepalive_expiry_is_replaced(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(keepalive_expiry=0.1)
    await client.get("/echo")
    await asyncio.sleep(0.3)

    await client.get("/echo")

    assert server.connections_total == 2
    await server.wait_until(lambda: server.open_connections == 1)


async def test_a_full_pool_raises_pool_timeout(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(name="api", max_connections=1, pool_timeout=0.2)
    holder = asyncio.create_task(client.get("/block"))
    await server.wait_until(lambda: server.blocked == 1)

    with pytest.raises(PoolTimeout, match=r"api: no connection came free within "
                                          r"pool_timeout=0.2s \(pool size 1\)") as caught:
        await client.get("/echo")

    assert caught.value.size == 1
    server.unblock.set()
    assert (await holder).status_code == 200


async def test_pool_timeout_is_not_retried(clients: Clients, server: LoopbackHTTPServer) -> None:
    client = await clients.open(max_connections=1, pool_timeout=0.2, max_retries=3)
    holder = asyncio.create_task(client.get("/block"))
    await server.wait_until(lambda: server.blocked == 1)

    with pytest.raises(PoolTimeout):
        await client.get("/echo")

    assert client.statistics().retries_total == 0
    server.unblock.set()
    await holder


async def test_a_waiting_request_gets_the_connection_when_it_comes_free(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(max_connections=1, pool_timeout=10)
    holder = asyncio.create_task(client.get("/block"))
    await server.wait_until(lambda: server.blocked == 1)
    waiter = asyncio.create_task(client.get("/echo"))
    await asyncio.sleep(0)

    server.unblock.set()

    assert (await holder).status_code == 200
    assert (await waiter).status_code == 200
    assert server.connections_total == 1


async def test_statistics_count_requests_in_flight_and_connections(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(max_connections=2, pool_timeout=10)
    tasks = [asyncio.create_task(client.get("/block")) for _ in range(3)]
    await server.wait_until(lambda: server.blocked == 2)

    busy = client.statistics()
    server.unblock.set()
    await asyncio.gather(*tasks)
    done = client.statistics()

    assert (busy.active, busy.connections_in_use, busy.waiting) == (3, 2, 1)
    assert busy.connections_open == 2
    assert busy.connections_idle == 0
    assert (done.active, done.connections_in_use, done.waiting) == (0, 0, 0)
    assert (done.peak, done.connections_peak) == (3, 2)
    assert done.requests_total == 3
    assert done.failures_total == 0
    assert 0 < done.latency_seconds_max <= done.latency_seconds_total


async def _cancel_with_task_cancel(client: HTTPClient, delay: float) -> None:
    tasks = [asyncio.create_task(client.get("/jitter")) for _ in range(20)]
    await asyncio.sleep(delay)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _cancel_with_anyio_scope(client: HTTPClient, delay: float) -> None:
    # How Starlette and FastAPI cancel: an anyio cancel scope around a task group.
    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(client.get, "/jitter")
        await anyio.sleep(delay)
        group.cancel_scope.cancel()


@pytest.mark.slow
@pytest.mark.parametrize("cancel", [_cancel_with_task_cancel, _cancel_with_anyio_scope],
                         ids=["task-cancel", "anyio-scope"])
async def test_cancelling_requests_under_contention_leaks_no_connection(
    clients: Clients, cancel: Callable[[HTTPClient, float], Awaitable[None]]
) -> None:
    # encode/httpcore#1093: with httpx alone, this leaves every slot of the pool taken
    # and the next request fails with PoolTimeout against a healthy server.
    client = await clients.open(max_connections=5, pool_timeout=3.0)
    rng = random.Random(1093)
    deadline = time.monotonic() + 3.0

    while time.monotonic() < deadline:
        await cancel(client, rng.random() * 0.005)

    stats = client.statistics()
    assert (stats.active, stats.connections_in_use, stats.waiting) == (0, 0, 0)
    assert stats.connections_open == stats.connections_idle  # none busy in the library
    assert (await client.get("/jitter")).status_code == 200


async def test_a_cancelled_request_is_not_counted_as_a_failure(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open()
    task = asyncio.create_task(client.get("/block"))
    await server.wait_until(lambda: server.blocked == 1)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    stats = client.statistics()
    assert stats.failures_total == 0
    assert (stats.active, stats.connections_in_use) == (0, 0)


async def test_a_stream_cancelled_before_its_head_leaves_nothing_in_use(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open()

    async def read() -> None:
        async with client.stream("GET", "/block") as stream:
            await stream.aread()

    task = asyncio.create_task(read())
    await server.wait_until(lambda: server.blocked == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    stats = client.statistics()
    assert (stats.active, stats.connections_in_use, stats.failures_total) == (0, 0, 0)
    assert stats.connections_open == stats.connections_idle


async def test_a_stream_cancelled_mid_body_closes_its_connection(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open()
    reading = asyncio.Event()

    async def read() -> None:
        async with client.stream("GET", "/stall-body") as stream:
            reading.set()
            await stream.aread()

    task = asyncio.create_task(read())
    await reading.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    stats = client.statistics()
    assert (stats.active, stats.connections_in_use, stats.failures_total) == (0, 0, 0)
    assert stats.connections_open == 0  # a half-read body: closed, not pooled
    await server.wait_until(lambda: server.open_connections == 0)
