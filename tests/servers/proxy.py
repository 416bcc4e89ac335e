"""An asyncio TCP proxy that injects network faults between a client and a real server.

    async with FaultProxy(server.address) as proxy:
        client = connect_to(proxy.address)
        proxy.delay = 0.2                 # each chunk waits 0.2 s, both ways
        proxy.drop_next_reply()           # lose the next reply and cut the connection
        proxy.blackhole = True            # swallow requests, answer nothing
        proxy.reset_after = 100           # cut a connection after 100 bytes crossed it
        proxy.close_after_response = True # close the client side after one reply
        proxy.hold_replies()              # keep replies back until release_replies()
        await proxy.request_forwarded.wait()   # a request reached the server

Faults are read at every chunk, so a test may switch them at any moment; they apply
to the connections already open as well as to new ones. Events, not sleeps, tell a
test when something happened: ``request_forwarded`` (client bytes written to the
server), ``reply_forwarded`` (server bytes written to the client) and
``reply_dropped``; clear one before the step it should observe.

toxiproxy does the same as a separate binary; this stays in-process, on loopback,
with nothing to install. The pattern is redis-py's ``DelayProxy`` from
``tests/test_asyncio/test_cwe_404.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

__all__ = ["FaultProxy"]

CHUNK = 65536


class FaultProxy:
    """Listens on 127.0.0.1 (a free port) and relays every connection to ``target``."""

    def __init__(self, target: tuple[str, int], *, host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host
        self.port = 0
        # Faults (see the module docstring).
        self.delay = 0.0
        self.blackhole = False
        self.reset_after: int | None = None
        self.close_after_response = False
        self._drops = 0
        self._replies_flow = asyncio.Event()
        self._replies_flow.set()
        # What happened.
        self.request_forwarded = asyncio.Event()
        self.reply_forwarded = asyncio.Event()
        self.reply_dropped = asyncio.Event()
        self.connections_total = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def url(self, scheme: str = "redis", path: str = "/0") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def drop_next_reply(self, count: int = 1) -> None:
        """Discard the next ``count`` server-to-client chunks; after each, abort the
        client's connection (the server has done the work, the client never hears)."""
        self._drops += count

    def hold_replies(self) -> None:
        """Keep every server-to-client chunk back until ``release_replies()``: the
        requests reach the server, the answers wait (a slow network, with no timing)."""
        self._replies_flow.clear()

    def release_replies(self) -> None:
        self._replies_flow.set()

    def abort_all(self) -> None:
        """Cut every open connection at once (both sides), like a network failure."""
        for link in list(self._links):
            link.abort()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        """Stop listening, cut every connection and wait for the relays to end."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self.abort_all()  # the relays see their sockets die and end on their own
        tasks = list(self._tasks)
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=5.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- relaying -----------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections_total += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            await self._serve(link, reader)
        except asyncio.CancelledError:
            # Only aclose() cancels a relay. Ending normally keeps asyncio's stream
            # server from logging the cancellation as an error in its done-callback.
            pass
        finally:
            link.abort()
            self._links.discard(link)
            self._tasks.discard(task)

    async def _serve(self, link: _Link, reader: asyncio.StreamReader) -> None:
        if self.blackhole:
            await self._swallow(reader)
            return
        try:
            upstream_reader, link.upstream = await asyncio.open_connection(*self.target)
        except OSError:
            return  # the server is down: the client sees its connection closed
        to_server = asyncio.create_task(self._to_server(link, reader))
        to_client = asyncio.create_task(self._to_client(link, upstream_reader))
        try:
            # When one direction ends, the connection is over for both.
            await asyncio.wait((to_server, to_client), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in (to_server, to_client):
                pump.cancel()
            await asyncio.gather(to_server, to_client, return_exceptions=True)

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        while await reader.read(CHUNK):
            pass

    async def _to_server(self, link: _Link, reader: asyncio.StreamReader) -> None:
        writer = link.upstream
        assert writer is not None
        while data := await _read(reader):
            if self.blackhole:
                continue
            if self.delay:
                await asyncio.sleep(self.delay)
            writer.write(data)
            await writer.drain()
            self.request_forwarded.set()
            if self._crossed(link, len(data)):
                return

    async def _to_client(self, link: _Link, reader: asyncio.StreamReader) -> None:
        writer = link.client
        while data := await _read(reader):
            if self.blackhole:
                continue
            if self._drops:
                self._drops -= 1
                self.reply_dropped.set()
                return  # _accept aborts both sides
            await self._replies_flow.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            writer.write(data)
            await writer.drain()
            self.reply_forwarded.set()
            if self.close_after_response:
                await link.close_client()
                return
            if self._crossed(link, len(data)):
                return

    def _crossed(self, link: _Link, size: int) -> bool:
        link.bytes += size
        return self.reset_after is not None and link.bytes >= self.reset_after

    def __repr__(self) -> str:
        return (f"<FaultProxy {self.host}:{self.port} -> {self.target[0]}:{self.target[1]}, "
                f"{len(self._links)} open>")


async def _read(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.read(CHUNK)
    except ConnectionError:
        return b""


class _Link:
    """One client connection and the proxy's connection to the server behind it."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.bytes = 0

    async def close_client(self) -> None:
        """An orderly close (FIN) of the client side, as a server closing keep-alive."""
        self.client.close()
        with contextlib.suppress(ConnectionError):  # the client may have reset first
            await self.client.wait_closed()

    def abort(self) -> None:
        # abort() drops the socket at once, unsent data included: what the client sees
        # is a connection that died, not a server that said goodbye.
        self.client.transport.abort()
        if self.upstream is not None:
            self.upstream.transport.abort()
