"""A loopback HTTP/1.1 server for the HTTP benchmarks, run in a process of its own.

    python -m benchmarks.batteries._http_server      # prints "port N", serves until killed

``GET /ping`` answers ``{"ok": true}`` (keep-alive, Content-Length); ``GET /stats``
answers ``{"connections": C, "requests": R}``: the connections accepted so far (its
own included) and the ``/ping`` requests answered. A bare asyncio protocol, no
framework: the less time the server takes, the more of each request's time is the
client's, which is what the benchmark compares.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import cast

HOST = "127.0.0.1"
PING_BODY = b'{"ok": true}'
_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"\r\n"
)
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


class Counters:
    connections = 0
    requests = 0


def _response(body: bytes) -> bytes:
    return _HEAD % len(body) + body


_PING = _response(PING_BODY)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # a TCP server's transports
        Counters.connections += 1

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        transport = self._transport
        while transport is not None:
            head, sep, rest = self._buffer.partition(b"\r\n\r\n")
            if not sep:
                return
            self._buffer = rest  # GET requests only: no body to skip
            line = head.split(b"\r\n", 1)[0]
            if line.startswith(b"GET /ping "):
                Counters.requests += 1
                transport.write(_PING)
            elif line.startswith(b"GET /stats "):
                stats = {"connections": Counters.connections, "requests": Counters.requests}
                transport.write(_response(json.dumps(stats).encode()))
            else:
                transport.write(_NOT_FOUND)


async def serve() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Protocol, HOST, 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"port {port}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve())
    sys.exit(0)
