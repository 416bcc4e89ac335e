"""Real WebSocket servers on 127.0.0.1 for the client tests.

``EchoServer`` runs in the test's event loop: it echoes, records what it received and
the request headers, can push messages, drop every connection, stop, and start again
on the same port. ``EchoProcess`` runs ``echo_process.py`` in a child process that a
test can freeze with SIGSTOP and thaw with SIGCONT.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.servers.child import ChildServer

ECHO_PROCESS = Path(__file__).with_name("echo_process.py")


class EchoServer:
    def __init__(self, *, ssl_context: ssl.SSLContext | None = None,
                 reject_with: int | None = None) -> None:
        self.port = 0
        self.received: list[str | bytes] = []
        self.request_headers: list[Headers] = []
        self.connections: set[ServerConnection] = set()
        self.accepted = 0
        self._ssl = ssl_context
        self._reject_with = reject_with
        self._server: Server | None = None

    @property
    def url(self) -> str:
        scheme = "wss" if self._ssl is not None else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/feed"

    async def start(self) -> EchoServer:
        self._server = await serve(
            self._handle, "127.0.0.1", self.port, ssl=self._ssl, ping_interval=None,
            process_request=self._process_request,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def push(self, message: str | bytes) -> None:
        for ws in list(self.connections):
            await ws.send(message)

    async def close_connections(self, code: int = 1012, reason: str = "restart") -> None:
        for ws in list(self.connections):
            await ws.close(code, reason)

    def drop_connections(self) -> None:
        """Cut every TCP connection without a closing handshake."""
        for ws in list(self.connections):
            ws.transport.abort()

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        self.request_headers.append(request.headers)
        if self._reject_with is not None:
            return ws.respond(self._reject_with, "refused\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.accepted += 1
        self.connections.add(ws)
        try:
            async for message in ws:
                self.received.append(message)
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            self.connections.discard(ws)


class EchoProcess(ChildServer):
    """``echo_process.py`` in a child process; ``freeze()`` / ``thaw()`` it."""

    def __init__(self) -> None:
        super().__init__(ECHO_PROCESS, "echo server")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/feed"
