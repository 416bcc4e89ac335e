"""Losing the server and coming back (scenario P12): pings, reconnects, backoff, bounds."""

from __future__ import annotations

import asyncio
import statistics

import pytest

from tether.exceptions import ClosedError, ResourceTimeout, ResourceUnavailable
from tether.resources.websocket import WebSocketClient, WebSocketConfig

from .conftest import eventually, fast_config
from .servers import EchoProcess, EchoServer

pytestmark = pytest.mark.anyio


# -- a frozen server (SIGSTOP): only the pings can tell ------------------------------------


@pytest.mark.slow
async def test_a_frozen_server_is_noticed_by_ping_and_reported_unhealthy(
    process: EchoProcess,
) -> None:
    ws = WebSocketClient(fast_config(process.url))
    await ws.initialize()
    try:
        process.freeze()
        await eventually(lambda: not ws.connected)

        with pytest.raises(ResourceUnavailable, match=r"no pong within ping_timeout=0\.2s"):
            await ws.health_check()
        stats = ws.statistics()
        assert stats.connected == 0
        assert stats.ping_timeouts_total == 1
        assert stats.connections_lost_total == 1
    finally:
        process.thaw()
        await ws.dispose()


@pytest.mark.slow
async def test_the_client_reconnects_once_the_frozen_server_thaws(
    process: EchoProcess,
) -> None:
    ws = WebSocketClient(fast_config(process.url))
    await ws.initialize()
    try:
        process.freeze()
        await eventually(lambda: not ws.connected)
        # While frozen the kernel still accepts TCP, but no handshake comes back.
        await eventually(lambda: ws.statistics().failures_by_kind.get("ResourceTimeout", 0) > 0)
        process.thaw()
        await eventually(lambda: ws.connected)

        await ws.send("back")
        assert await ws.recv(timeout=10) == "back"
        assert await ws.health_check() is True
        stats = ws.statistics()
        assert stats.reconnects_total == 1
        assert stats.reconnect_attempts_total >= 2
    finally:
        process.thaw()
        await ws.dispose()


@pytest.mark.slow
async def test_dispose_is_bounded_when_the_server_is_frozen(process: EchoProcess) -> None:
    ws = WebSocketClient(fast_config(process.url, ping_interval=30.0))  # not noticed yet
    await ws.initialize()
    process.freeze()
    try:
        # The closing handshake gets no answer: close_timeout (0.5 s) ends it.
        async with asyncio.timeout(10):
            await ws.dispose()
    finally:
        process.thaw()

    assert ws.statistics().connected == 0


# -- a lost connection -------------------------------------------------------------------


async def test_a_dropped_connection_is_reconnected(
    server: EchoServer, client: WebSocketClient
) -> None:
    await eventually(lambda: server.accepted == 1)

    server.drop_connections()
    await eventually(lambda: client.statistics().reconnects_total == 1 and client.connected)

    await client.send("again")
    assert await client.recv(timeout=10) == "again"
    assert server.accepted == 2
    assert client.statistics().connections_lost_total == 1


async def test_a_connection_closed_by_the_server_is_reconnected(
    server: EchoServer, client: WebSocketClient
) -> None:
    await server.close_connections(1012, "restart")
    await eventually(lambda: client.statistics().reconnects_total == 1 and client.connected)

    assert await client.health_check() is True


async def test_the_client_reconnects_after_the_server_restarts_on_its_port(
    server: EchoServer, client: WebSocketClient
) -> None:
    await server.stop()
    await eventually(lambda: not client.connected)
    await eventually(
        lambda: client.statistics().failures_by_kind.get("ResourceUnavailable", 0) >= 2
    )  # refused while it is away, retried with backoff

    await server.start()
    await eventually(lambda: client.connected)

    await client.send("restarted")
    assert await client.recv(timeout=10) == "restarted"


async def test_recv_returns_what_arrived_before_the_loss_then_reports_it_once(
    server: EchoServer, client: WebSocketClient
) -> None:
    await client.send("one")
    await client.send("two")
    await eventually(lambda: len(server.received) == 2)
    assert await client.recv(timeout=10) == "one"  # "two" waits in the client's buffer

    await server.close_connections()
    await eventually(lambda: client.statistics().connections_lost_total == 1)

    assert await client.recv(timeout=10) == "two"
    with pytest.raises(ResourceUnavailable, match="messages the server sends before the "
                       "reconnect are lost") as info:
        await client.recv(timeout=10)
    assert info.value.sent is False
    await client.send("three")
    assert await client.recv(timeout=10) == "three"


async def test_a_waiting_recv_hears_of_the_loss(
    server: EchoServer, client: WebSocketClient
) -> None:
    waiting = asyncio.create_task(client.recv(timeout=30))
    await eventually(lambda: len(server.connections) == 1)

    server.drop_connections()

    with pytest.raises(ResourceUnavailable, match="closed without a closing handshake"):
        await waiting


async def test_send_waits_for_the_reconnect(server: EchoServer) -> None:
    ws = WebSocketClient(fast_config(server.url, timeout=30.0))
    await ws.initialize()
    try:
        await server.stop()
        await eventually(lambda: not ws.connected)
        sending = asyncio.create_task(ws.send("queued"))
        await asyncio.sleep(0.1)
        assert not sending.done()

        await server.start()
        async with asyncio.timeout(20):
            await sending

        assert await ws.recv(timeout=10) == "queued"
    finally:
        await ws.dispose()


async def test_send_fails_at_its_deadline_while_the_server_is_away(
    server: EchoServer,
) -> None:
    ws = WebSocketClient(fast_config(server.url, timeout=0.3))
    await ws.initialize()
    try:
        await server.stop()
        await eventually(lambda: not ws.connected)

        with pytest.raises(ResourceTimeout, match=r"within timeout=0\.3s"):
            await ws.send("lost")

        assert ws.statistics().failures_by_kind["ResourceTimeout"] == 1
        assert ws.statistics().messages_sent_total == 0
    finally:
        await ws.dispose()


# -- not reconnecting ----------------------------------------------------------------------


async def test_without_reconnect_a_send_after_a_loss_fails_as_never_sent(
    server: EchoServer,
) -> None:
    ws = WebSocketClient(fast_config(server.url, reconnect=False))
    await ws.initialize()
    try:
        await server.close_connections()
        await eventually(lambda: not ws.connected)

        with pytest.raises(ResourceUnavailable, match="reconnect is off") as info:
            await ws.send("x")

        assert info.value.sent is False
        assert server.accepted == 1
    finally:
        await ws.dispose()


async def test_the_client_gives_up_after_max_reconnect_attempts(server: EchoServer) -> None:
    ws = WebSocketClient(fast_config(server.url, max_reconnect_attempts=2))
    await ws.initialize()
    try:
        await server.stop()

        await eventually(lambda: ws.statistics().reconnect_attempts_total == 2)
        with pytest.raises(ResourceUnavailable, match="gave up after 2 reconnect attempts"):
            await ws.send("x")
        with pytest.raises(ResourceUnavailable, match="gave up"):
            await ws.health_check()
    finally:
        await ws.dispose()


async def test_dispose_during_reconnect_stops_the_attempts(server: EchoServer) -> None:
    ws = WebSocketClient(fast_config(server.url))
    await ws.initialize()
    await server.stop()
    await eventually(lambda: ws.statistics().reconnect_attempts_total >= 1)

    async with asyncio.timeout(10):
        await ws.dispose()
    attempts = ws.statistics().reconnect_attempts_total
    await server.start()
    await asyncio.sleep(0.3)

    assert ws.statistics().reconnect_attempts_total == attempts
    assert server.accepted == 1
    with pytest.raises(ClosedError):
        await ws.send("x")


# -- the backoff schedule -------------------------------------------------------------------


def _backoff(**options: float) -> WebSocketConfig:
    return WebSocketConfig.model_validate({"url": "ws://127.0.0.1:1/", **options})


def test_reconnect_delay_grows_then_stays_under_the_cap() -> None:
    config = _backoff(backoff_initial=1.0, backoff_max=10.0, backoff_multiplier=2.0,
                      backoff_jitter=0.2)

    firsts = [config.reconnect_delay(1) for _ in range(200)]
    fourths = [config.reconnect_delay(4) for _ in range(200)]
    late = [config.reconnect_delay(n) for n in range(5, 200)]

    assert all(0.8 <= d <= 1.2 for d in firsts)
    assert all(6.4 <= d <= 9.6 for d in fourths)
    assert all(8.0 <= d <= 10.0 for d in late)


def test_reconnect_delay_is_jittered() -> None:
    config = _backoff(backoff_initial=1.0, backoff_jitter=0.2)

    delays = [config.reconnect_delay(1) for _ in range(50)]

    assert statistics.pstdev(delays) > 0.01


def test_reconnect_delay_without_jitter_is_exact() -> None:
    config = _backoff(backoff_initial=0.5, backoff_max=3.0, backoff_multiplier=2.0,
                      backoff_jitter=0.0)

    assert [config.reconnect_delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
