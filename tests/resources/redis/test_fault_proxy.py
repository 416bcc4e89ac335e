"""The fault proxy on its own, in front of a small in-process TCP server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.servers.proxy import FaultProxy

pytestmark = pytest.mark.anyio


class CountingEcho:
    """Echoes every chunk back and remembers what reached it."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.data_arrived = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> CountingEcho:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            while data := await reader.read(4096):
                self.received += data
                self.data_arrived.set()
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.transport.abort()


@pytest.fixture
async def echo() -> AsyncIterator[CountingEcho]:
    server = await CountingEcho().start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy(echo: CountingEcho) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(("127.0.0.1", echo.port)) as p:
        yield p


async def _connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*proxy.address)


async def _closed_by_peer(reader: asyncio.StreamReader) -> bool:
    try:
        rest = await asyncio.wait_for(reader.read(), 10)
    except ConnectionError:
        return True
    return rest == b""


def _close(writer: asyncio.StreamWriter) -> None:
    writer.transport.abort()


async def test_relays_both_ways(proxy: FaultProxy, echo: CountingEcho) -> None:
    reader, writer = await _connect(proxy)
    writer.write(b"hello")

    assert await asyncio.wait_for(reader.readexactly(5), 10) == b"hello"
    assert bytes(echo.received) == b"hello"
    assert proxy.request_forwarded.is_set()
    assert proxy.reply_forwarded.is_set()
    _close(writer)


async def test_delay_holds_each_chunk(proxy: FaultProxy) -> None:
    reader, writer = await _connect(proxy)
    proxy.delay = 0.2
    started = time.monotonic()
    writer.write(b"x")

    assert await asyncio.wait_for(reader.readexactly(1), 10) == b"x"
    assert time.monotonic() - started >= 0.4  # once on the way in, once on the way out
    _close(writer)


async def test_drop_next_reply_cuts_the_client_after_the_server_got_the_request(
    proxy: FaultProxy, echo: CountingEcho,
) -> None:
    reader, writer = await _connect(proxy)
    proxy.drop_next_reply()
    writer.write(b"incr")

    assert await _closed_by_peer(reader)
    assert proxy.reply_dropped.is_set()
    assert bytes(echo.received) == b"incr"
    _close(writer)


async def test_drop_next_reply_drops_only_one(proxy: FaultProxy) -> None:
    proxy.drop_next_reply()
    reader, writer = await _connect(proxy)
    writer.write(b"a")
    assert await _closed_by_peer(reader)
    _close(writer)

    reader, writer = await _connect(proxy)
    writer.write(b"b")

    assert await asyncio.wait_for(reader.readexactly(1), 10) == b"b"
    _close(writer)


async def test_held_replies_wait_for_release(proxy: FaultProxy, echo: CountingEcho) -> None:
    reader, writer = await _connect(proxy)
    proxy.hold_replies()
    writer.write(b"q")
    await asyncio.wait_for(echo.data_arrived.wait(), 10)  # the request got through

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)
    proxy.release_replies()

    assert await asyncio.wait_for(reader.readexactly(1), 10) == b"q"
    _close(writer)


async def test_blackhole_never_reaches_the_server(
    proxy: FaultProxy, echo: CountingEcho,
) -> None:
    proxy.blackhole = True
    reader, writer = await _connect(proxy)
    writer.write(b"lost")
    await writer.drain()

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)
    assert echo.received == b""
    assert not proxy.request_forwarded.is_set()
    _close(writer)


async def test_blackhole_swallows_traffic_on_open_connections_too(
    proxy: FaultProxy, echo: CountingEcho,
) -> None:
    reader, writer = await _connect(proxy)
    writer.write(b"a")
    assert await asyncio.wait_for(reader.readexactly(1), 10) == b"a"

    proxy.blackhole = True
    writer.write(b"b")
    await writer.drain()

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)
    _close(writer)


async def test_reset_after_cuts_a_connection_once_that_many_bytes_crossed(
    proxy: FaultProxy,
) -> None:
    proxy.reset_after = 4
    reader, writer = await _connect(proxy)
    writer.write(b"ab")
    assert await asyncio.wait_for(reader.readexactly(2), 10) == b"ab"  # 4 bytes crossed

    assert await _closed_by_peer(reader)
    _close(writer)


async def test_close_after_response_ends_the_connection_after_one_reply(
    proxy: FaultProxy,
) -> None:
    proxy.close_after_response = True
    reader, writer = await _connect(proxy)
    writer.write(b"ping")

    assert await asyncio.wait_for(reader.read(), 10) == b"ping"  # then EOF
    _close(writer)


async def test_server_down_closes_the_client_connection(proxy: FaultProxy,
                                                        echo: CountingEcho) -> None:
    await echo.stop()
    reader, writer = await _connect(proxy)

    assert await _closed_by_peer(reader)
    _close(writer)


async def test_abort_all_cuts_open_connections(proxy: FaultProxy) -> None:
    reader, writer = await _connect(proxy)
    writer.write(b"a")
    assert await asyncio.wait_for(reader.readexactly(1), 10) == b"a"

    proxy.abort_all()

    assert await _closed_by_peer(reader)
    _close(writer)


async def test_aclose_ends_every_connection_and_stops_listening(echo: CountingEcho) -> None:
    proxy = FaultProxy(("127.0.0.1", echo.port))
    await proxy.start()
    reader, writer = await _connect(proxy)
    writer.write(b"a")
    assert await asyncio.wait_for(reader.readexactly(1), 10) == b"a"

    await proxy.aclose()

    assert await _closed_by_peer(reader)
    assert proxy.open_connections == 0
    with pytest.raises(ConnectionRefusedError):
        await _connect(proxy)
    _close(writer)
