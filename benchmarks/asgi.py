"""A minimal uvicorn-like driver for S4: an ASGI app called in-process.

``async with Driver(app) as driver`` runs the app's lifespan (startup before, shutdown
after, as uvicorn's ``lifespan="on"`` does) and keeps the lifespan state;
``await driver.get(path)`` then sends one ``GET`` through ``await app(scope, receive,
send)`` with a shallow copy of that state in the request scope (as uvicorn does) and
returns ``(status, body)``. No sockets, no HTTP parsing, no concurrency: what is left
is the framework and the DI library.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}
_DISCONNECT: Message = {"type": "http.disconnect"}


class LifespanError(RuntimeError):
    """The app's lifespan failed at startup or shutdown."""


class Driver:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self._events: asyncio.Queue[Message] = asyncio.Queue()
        self._replies: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    # lifespan ---------------------------------------------------------------------

    async def __aenter__(self) -> Driver:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        self._task = asyncio.create_task(
            self.app(scope, self._events.get, self._replies.put)  # type: ignore[arg-type]
        )
        await self._events.put({"type": "lifespan.startup"})
        await self._expect("lifespan.startup.complete")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._events.put({"type": "lifespan.shutdown"})
        await self._expect("lifespan.shutdown.complete")
        assert self._task is not None
        await self._task

    async def _expect(self, kind: str) -> None:
        assert self._task is not None
        reply = asyncio.ensure_future(self._replies.get())
        await asyncio.wait({reply, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not reply.done():
            reply.cancel()
            error = self._task.exception()
            raise LifespanError(f"the app's lifespan ended before {kind}: {error!r}")
        message = reply.result()
        if message["type"] != kind:
            raise LifespanError(f"expected {kind}, got {message}")

    # requests ---------------------------------------------------------------------

    async def get(self, path: str) -> tuple[int, bytes]:
        """One ``GET path``; the response's status and body."""
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": "GET",
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8000"), (b"accept", b"*/*")],
            "state": self.state.copy(),
        }
        status = 0
        body: list[bytes] = []
        received = done = False
        complete: asyncio.Future[None] | None = None  # made only if someone waits

        async def receive() -> Message:
            # The (empty) body first; then, as uvicorn does, wait until the response
            # has been sent and report the client gone.
            nonlocal received, complete
            if not received:
                received = True
                return _REQUEST
            if not done:
                if complete is None:
                    complete = asyncio.get_running_loop().create_future()
                await complete
            return _DISCONNECT

        async def send(message: Message) -> None:
            nonlocal status, done
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body":
                body.append(message.get("body", b""))
                if not message.get("more_body", False):
                    done = True
                    if complete is not None and not complete.done():
                        complete.set_result(None)

        await self.app(scope, receive, send)
        return status, b"".join(body)
