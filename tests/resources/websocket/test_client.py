"""WebSocketClient against a real server on 127.0.0.1: messages, statistics, lifecycle."""

from __future__ import annotations

import asyncio

import pytest

from tether import Container, HealthStatus
from tether.exceptions import (
    ClosedError,
    ResourceError,
    ResourceTimeout,
    ResourceUnavailable,
)
from tether.resources.websocket import WebSocketClient, WebSocketConfig, WebSocketStats

from .conftest import eventually, fast_config
from .servers import EchoServer

pytestmark = pytest.mark.anyio


# -- messages ---------------------------------------------------------------------------


async def test_text_message_round_trips(client: WebSocketClient) -> None:
    await client.send("hello")

    assert await client.recv(timeout=10) == "hello"


async def test_binary_message_round_trips(client: WebSocketClient) -> None:
    await client.send(b"\x00\x01\xff")

    assert await client.recv(timeout=10) == b"\x00\x01\xff"


async def test_messages_arrive_in_order(client: WebSocketClient) -> None:
    for i in range(20):
        await client.send(str(i))

    assert [await client.recv(timeout=10) for _ in range(20)] == [str(i) for i in range(20)]


async def test_server_push_is_received(server: EchoServer, client: WebSocketClient) -> None:
    await eventually(lambda: len(server.connections) == 1)
    await server.push("tick")

    assert await client.recv(timeout=10) == "tick"


async def test_messages_iterates_until_dispose(
    server: EchoServer, client: WebSocketClient
) -> None:
    await client.send("a")
    await client.send("b")

    async def read() -> list[str | bytes]:
        return [message async for message in client.messages()]

    reader = asyncio.create_task(read())
    await eventually(lambda: client.statistics().messages_received_total == 2)
    await client.dispose()
    async with asyncio.timeout(10):
        seen = await reader

    assert seen == ["a", "b"]


async def test_headers_are_sent_with_the_handshake(server: EchoServer) -> None:
    ws = WebSocketClient(fast_config(server.url, headers={"Authorization": "Bearer t0k"}))
    await ws.initialize()
    await ws.dispose()

    assert server.request_headers[-1]["Authorization"] == "Bearer t0k"


async def test_send_refuses_what_is_not_str_or_bytes(client: WebSocketClient) -> None:
    with pytest.raises(TypeError, match="str or bytes, not dict"):
        await client.send({"a": 1})  # type: ignore[arg-type]


async def test_recv_times_out_when_nothing_arrives(client: WebSocketClient) -> None:
    with pytest.raises(ResourceTimeout, match=r"recv did not finish within timeout=0\.1s"):
        await client.recv(timeout=0.1)

    assert client.statistics().failures_total == 0  # a quiet server is not a fault


async def test_recv_after_a_timeout_still_gets_the_next_message(
    client: WebSocketClient,
) -> None:
    with pytest.raises(ResourceTimeout):
        await client.recv(timeout=0.05)
    await client.send("later")

    assert await client.recv(timeout=10) == "later"


# -- statistics -------------------------------------------------------------------------


async def test_statistics_count_messages(client: WebSocketClient) -> None:
    for _ in range(3):
        await client.send("x")
    for _ in range(3):
        await client.recv(timeout=10)

    stats = client.statistics()

    assert isinstance(stats, WebSocketStats)
    assert stats.connected == 1
    assert stats.messages_sent_total == 3
    assert stats.sends_total == 3
    assert stats.messages_received_total == 3
    assert stats.connections_lost_total == 0
    assert stats.reconnects_total == 0
    assert stats.failures_total == 0
    assert dict(stats.failures_by_kind) == {}


async def test_statistics_record_the_ping_round_trip(client: WebSocketClient) -> None:
    assert await client.health_check()

    assert client.statistics().ping_seconds > 0


async def test_statistics_are_frozen(client: WebSocketClient) -> None:
    stats = client.statistics()

    with pytest.raises(AttributeError):
        stats.messages_sent_total = 5  # type: ignore[misc]


# -- health -----------------------------------------------------------------------------


async def test_health_check_passes_on_a_live_connection(client: WebSocketClient) -> None:
    assert await client.health_check() is True


async def test_health_check_fails_once_the_connection_is_gone(server: EchoServer) -> None:
    ws = WebSocketClient(fast_config(server.url, reconnect=False))
    await ws.initialize()
    try:
        await server.close_connections(1012, "restart")
        await eventually(lambda: not ws.connected)

        with pytest.raises(ResourceUnavailable, match=r"not connected to ws://127\.0\.0\.1.*"
                           r"closed with code 1012 \(restart\)\); reconnect is off"):
            await ws.health_check()
    finally:
        await ws.dispose()


# -- connecting -------------------------------------------------------------------------


async def test_initialize_fails_when_nothing_listens() -> None:
    probe = await EchoServer().start()
    await probe.stop()  # a port that was just free: nothing listens on it now
    ws = WebSocketClient(fast_config(probe.url))

    with pytest.raises(ResourceUnavailable, match=r"cannot connect to ws://127\.0\.0\.1") as info:
        await ws.initialize()

    assert info.value.sent is False
    assert isinstance(info.value.__cause__, OSError)


async def test_initialize_times_out_when_the_handshake_never_comes() -> None:
    done: list[asyncio.Event] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accept the TCP connection, never answer the upgrade
        writer.close()
        await writer.wait_closed()
        done.append(asyncio.Event())

    tcp = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        ws = WebSocketClient(fast_config(f"ws://127.0.0.1:{port}/", open_timeout=0.2))
        with pytest.raises(ResourceTimeout, match=r"connect to ws://127\.0\.0\.1"):
            await ws.initialize()
        await eventually(lambda: len(done) == 1)  # the server side saw the abort
    finally:
        tcp.close()
        await tcp.wait_closed()


async def test_a_refused_handshake_is_a_resource_error() -> None:
    server = await EchoServer(reject_with=403).start()
    try:
        ws = WebSocketClient(fast_config(server.url))
        with pytest.raises(ResourceError, match="refused the WebSocket handshake: HTTP 403") \
                as info:
            await ws.initialize()
    finally:
        await server.stop()

    assert not isinstance(info.value, ResourceUnavailable)


async def test_a_server_error_at_handshake_is_unavailable() -> None:
    server = await EchoServer(reject_with=503).start()
    try:
        ws = WebSocketClient(fast_config(server.url))
        with pytest.raises(ResourceUnavailable, match="HTTP 503") as info:
            await ws.initialize()
    finally:
        await server.stop()

    assert info.value.sent is False


async def test_errors_never_show_the_url_credentials_or_query() -> None:
    probe = await EchoServer().start()
    await probe.stop()
    ws = WebSocketClient(fast_config(
        f"ws://ann:hunter2@127.0.0.1:{probe.port}/feed?token=s3cret"))

    with pytest.raises(ResourceUnavailable) as info:
        await ws.initialize()

    text = f"{info.value} {info.value!r} {ws!r}"
    assert "hunter2" not in text
    assert "s3cret" not in text
    assert f"ws://127.0.0.1:{probe.port}/feed" in str(info.value)


# -- lifecycle --------------------------------------------------------------------------


async def test_use_before_initialize_says_how_to_start_it(server: EchoServer) -> None:
    ws = WebSocketClient(fast_config(server.url))

    with pytest.raises(ResourceError, match="not initialized"):
        await ws.send("x")
    with pytest.raises(ResourceError, match="not initialized"):
        await ws.recv()


async def test_use_after_dispose_raises_closed_error(server: EchoServer) -> None:
    ws = WebSocketClient(fast_config(server.url))
    await ws.initialize()
    await ws.dispose()

    with pytest.raises(ClosedError, match="WebSocketClient 'websocket'"):
        await ws.send("x")
    with pytest.raises(ClosedError):
        await ws.recv()
    with pytest.raises(ClosedError):
        await ws.health_check()
    with pytest.raises(ClosedError):
        await ws.initialize()


async def test_dispose_twice_is_harmless(server: EchoServer) -> None:
    ws = WebSocketClient(fast_config(server.url))
    await ws.initialize()

    await ws.dispose()
    await ws.dispose()

    assert ws.statistics().connected == 0


async def test_dispose_closes_the_connection_with_a_normal_close(server: EchoServer) -> None:
    ws = WebSocketClient(fast_config(server.url))
    await ws.initialize()
    await eventually(lambda: len(server.connections) == 1)
    conn = next(iter(server.connections))

    await ws.dispose()
    await eventually(lambda: not server.connections)

    assert conn.close_code == 1000


async def test_dispose_wakes_a_waiting_recv_with_closed_error(client: WebSocketClient) -> None:
    waiting = asyncio.create_task(client.recv())
    await asyncio.sleep(0.05)

    await client.dispose()

    with pytest.raises(ClosedError):
        async with asyncio.timeout(10):
            await waiting


# -- through a container ----------------------------------------------------------------


async def test_container_builds_checks_and_disposes_the_client(server: EchoServer) -> None:
    container = Container()
    container.bind(WebSocketConfig, fast_config(server.url))
    container.bind(WebSocketClient)

    async with container:
        ws = await container.aget(WebSocketClient)
        await ws.send("via container")
        assert await ws.recv(timeout=10) == "via container"
        report = await container.health()
        assert report.status is HealthStatus.HEALTHY

    assert ws.statistics().connected == 0
    with pytest.raises(ClosedError):
        await ws.send("x")


async def test_container_runs_named_clients_side_by_side() -> None:
    feed, chat = await EchoServer().start(), await EchoServer().start()
    container = Container()
    container.bind(WebSocketClient, WebSocketClient(fast_config(feed.url, name="feed")),
                   name="feed")
    container.bind(WebSocketClient, WebSocketClient(fast_config(chat.url, name="chat")),
                   name="chat")
    try:
        async with container:
            a = await container.aget(WebSocketClient, name="feed")
            b = await container.aget(WebSocketClient, name="chat")
            await a.send("to feed")
            await b.send("to chat")
            assert await a.recv(timeout=10) == "to feed"
            assert await b.recv(timeout=10) == "to chat"
            report = await container.health()
            assert report.status is HealthStatus.HEALTHY
            assert len(report.resources) == 2
    finally:
        await feed.stop()
        await chat.stop()

    assert feed.received == ["to feed"]
    assert chat.received == ["to chat"]


async def test_container_reports_a_lost_connection_as_unhealthy_with_why(
    server: EchoServer,
) -> None:
    container = Container()
    container.bind(WebSocketConfig, fast_config(server.url, reconnect=False))
    container.bind(WebSocketClient)

    async with container:
        ws = await container.aget(WebSocketClient)
        await server.close_connections()
        await eventually(lambda: not ws.connected)
        report = await container.health()

    assert report.status is HealthStatus.UNHEALTHY
    line = report.resources["WebSocketClient"]
    assert line.last_error is not None
    assert "ResourceUnavailable" in line.last_error
    assert "not connected to ws://127.0.0.1" in line.last_error


async def test_container_reports_an_unreachable_server_at_resolution() -> None:
    probe = await EchoServer().start()
    await probe.stop()
    container = Container()
    container.bind(WebSocketConfig, fast_config(probe.url))
    container.bind(WebSocketClient)

    async with container:
        # tether's own errors pass through resolution as they are.
        with pytest.raises(ResourceUnavailable):
            await container.aget(WebSocketClient)
