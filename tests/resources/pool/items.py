"""Items for the pool tests: plain objects that record what the pool did with them,
and real TCP connections to an echo server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tests.waiting import eventually as eventually


class Conn:
    """An item with an async ``aclose()``; ``healthy`` is what ``validate`` reads."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.closed = False
        self.healthy = True

    async def aclose(self) -> None:
        self.closed = True

    def __repr__(self) -> str:
        return f"Conn({self.number})"


class Factory:
    """Makes ``Conn``s, counting calls and items. ``fail`` makes every call raise it,
    ``failures`` are raised once each first, ``gate`` makes calls wait until it is set."""

    def __init__(self) -> None:
        self.calls = 0
        self.made: list[Conn] = []
        self.fail: BaseException | None = None
        self.failures: list[BaseException] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self) -> Conn:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        if self.fail is not None:
            raise self.fail
        conn = Conn(len(self.made) + 1)
        self.made.append(conn)
        return conn


class EchoServer:
    """A TCP echo server on 127.0.0.1 that can drop every connection it holds."""

    def __init__(self) -> None:
        self.port = 0
        self.accepted = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        try:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def drop_all(self) -> None:
        for writer in list(self._writers):
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[EchoServer]:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            await self.drop_all()
            await self._server.wait_closed()


class Link:
    """One TCP connection to the echo server: the kind of item a pool exists for."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> Link:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def echo(self, data: bytes) -> bytes:
        self.writer.write(data)
        await self.writer.drain()
        return await self.reader.readexactly(len(data))

    async def alive(self) -> bool:
        # A peer that closed shows up as EOF on the reader once the loop has read it.
        await asyncio.sleep(0)
        return not (self.reader.at_eof() or self.writer.is_closing())

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
