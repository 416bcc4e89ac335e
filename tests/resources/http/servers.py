"""A small HTTP/1.1 server on 127.0.0.1 for the HTTP battery's tests.

It runs on the test's own event loop (asyncio streams, plain or TLS) and records what it
saw: every request, how many connections are open. Its paths choose its behaviour:

    /echo (and any other path)   200, the request as JSON
    /status/<code>               that status
    /block                       waits until ``unblock`` is set, then 200
    /hang                        never answers (until the client leaves or the server stops)
    /stall-body                  sends the head and 2 of 10 body bytes, then nothing
    /drop                        closes the connection without answering
    /jitter                      answers after 0-5 ms
    /chunks/<n>                  n chunks of 1 KiB, with a pause after the first
    /set-cookie                  200 with ``Set-Cookie: session=server-set; Path=/``
    /redirect                    302 to /echo
    /bad-gzip                    200 with ``Content-Encoding: gzip`` and a body that is not
    /garbage                     a reply that is not HTTP, then closes

With ``drop_reused=True`` it closes, without answering, any request that is not the
first on its connection: a keep-alive connection the server gave up on exactly when
the client sent its next request. With ``idle_close=s`` it closes a connection that
stays idle for ``s`` seconds after an answer (a server keep-alive shorter than the
client's).
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self


@dataclass(frozen=True)
class Seen:
    """One request as the server read it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    connection: int  # which connection (1, 2, ...)
    index: int  # its place on that connection (1 = first)


@dataclass
class _Connection:
    number: int
    writer: asyncio.StreamWriter
    requests: int = 0


@dataclass
class LoopbackHTTPServer:
    tls: ssl.SSLContext | None = None
    drop_reused: bool = False
    idle_close: float | None = None
    seen: list[Seen] = field(default_factory=list)
    connections_total: int = 0
    blocked: int = 0

    def __post_init__(self) -> None:
        self.unblock = asyncio.Event()
        self._changed = asyncio.Event()
        self._open: dict[int, _Connection] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Stop listening and drop every connection (handlers end on their own)."""
        if self._server is None:
            return
        self._server.close()
        self.unblock.set()
        for conn in list(self._open.values()):
            conn.writer.transport.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)
        await self._server.wait_closed()
        self._server = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    # -- what it saw -------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def hits(self, method: str, path: str) -> int:
        return sum(1 for s in self.seen if s.method == method and s.path == path)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Return once ``predicate()`` is true; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- serving -----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections_total += 1
        conn = _Connection(self.connections_total, writer)
        self._open[conn.number] = conn
        self._notify()
        try:
            while await self._one(reader, conn):
                pass
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client went away
        finally:
            writer.transport.abort()
            del self._open[conn.number]
            self._tasks.discard(task)
            self._notify()

    async def _one(self, reader: asyncio.StreamReader, conn: _Connection) -> bool:
        """Serve one request; False when the connection is to be closed."""
        try:
            async with asyncio.timeout(self.idle_close if conn.requests else None):
                head = await reader.readuntil(b"\r\n\r\n")  # stop() aborts it
        except TimeoutError:
            return False  # idle too long: close it
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await reader.readexactly(length) if length else b""
        path, _, query = target.partition("?")
        conn.requests += 1
        seen = Seen(method, path, query, headers, body, conn.number, conn.requests)
        self.seen.append(seen)
        self._notify()
        if (self.drop_reused and conn.requests > 1) or path == "/drop":
            return False
        return await self._answer(seen, reader, conn.writer)

    async def _answer(self, seen: Seen, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        path = seen.path
        if path.startswith("/status/"):
            code = int(path.removeprefix("/status/"))
            return await _send(writer, code, f"status {code}".encode())
        if path == "/block":
            self.blocked += 1
            self._notify()
            await self.unblock.wait()  # stop() sets it too
            self.blocked -= 1
            return await _send(writer, 200, b"released")
        if path == "/hang":
            await reader.read(1)  # until the client or stop() closes the connection
            return False
        if path == "/stall-body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
            await writer.drain()
            await reader.read(1)
            return False
        if path == "/jitter":
            await asyncio.sleep(random.random() * 0.005)
            return await _send(writer, 200, b"{}")
        if path == "/garbage":
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
            return False
        if path == "/bad-gzip":
            return await _send(writer, 200, b"not gzip at all", extra="Content-Encoding: gzip\r\n")
        if path == "/redirect":
            return await _send(writer, 302, b"", extra="Location: /echo\r\n")
        if path == "/set-cookie":
            return await _send(writer, 200, b"", extra="Set-Cookie: session=server-set; Path=/\r\n")
        if path.startswith("/chunks/"):
            return await _send_chunks(writer, int(path.removeprefix("/chunks/")))
        echo = {"method": seen.method, "path": seen.path, "query": seen.query,
                "headers": seen.headers, "body": seen.body.decode("utf-8", "replace")}
        return await _send(writer, 200, json.dumps(echo).encode(),
                           content_type="application/json", head=seen.method == "HEAD")


_REASONS = {200: "OK", 204: "No Content", 302: "Found", 404: "Not Found",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


async def _send(writer: asyncio.StreamWriter, code: int, body: bytes,
                content_type: str = "text/plain; charset=utf-8", head: bool = False,
                extra: str = "") -> bool:
    reason = _REASONS.get(code, "Whatever")
    writer.write(
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n".encode() + (b"" if head else body)
    )
    await writer.drain()
    return True


async def _send_chunks(writer: asyncio.StreamWriter, count: int) -> bool:
    chunk = b"x" * 1024
    writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {count * len(chunk)}\r\n\r\n".encode())
    for i in range(count):
        writer.write(chunk)
        await writer.drain()
        if i == 0:
            await asyncio.sleep(0.01)  # so that the client sees more than one chunk
    return True

