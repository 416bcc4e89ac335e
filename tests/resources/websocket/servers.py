"""Real WebSocket servers on 127.0.0.1 for the client tests.

``EchoServer`` runs in the test's event loop: it echoes, records what it received and
the request headers, can push messages, drop every connection, stop, and start again
on the same port. ``EchoProcess`` runs ``echo_process.py`` in a child process that a
test can freeze with SIGSTOP and thaw with SIGCONT.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import IO

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

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


class EchoProcess:
    """``echo_process.py`` in a child process; ``freeze()`` / ``thaw()`` it."""

    def __init__(self) -> None:
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None
        self._stdout: IO[str] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/feed"

    def start(self) -> EchoProcess:
        proc = subprocess.Popen(
            [sys.executable, str(ECHO_PROCESS), str(self.port)],
            stdout=subprocess.PIPE, text=True,
        )
        self._proc, self._stdout = proc, proc.stdout
        assert self._stdout is not None
        line = self._stdout.readline()  # the port, once it listens; "" if it died
        if not line:
            self.stop()
            raise RuntimeError("the echo server process exited before listening")
        self.port = int(line)
        return self

    def freeze(self) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()  # SIGKILL ends a stopped process too
            self._proc.wait(timeout=30)
            self._proc = None
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None
