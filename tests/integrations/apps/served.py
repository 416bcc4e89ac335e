"""An app served by a real uvicorn in the loopback tests; events go to $TETHER_EVENTS."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

from fastapi import FastAPI, WebSocket
from fastapi.responses import StreamingResponse

from tether import Container, Scope
from tether.fastapi import Inject, install

EVENTS = os.environ.get("TETHER_EVENTS", os.devnull)


def event(text: str) -> None:
    with open(EVENTS, "a", encoding="utf-8") as out:
        out.write(text + "\n")


class Pool:
    closed = False


class Connection:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool


container = Container()


@container.provide(eager=True)
def pool() -> Iterator[Pool]:
    p = Pool()
    event("pool up")
    yield p
    p.closed = True
    event("pool disposed")


@container.provide(scope=Scope.REQUEST)
async def connection(pool: Pool) -> AsyncIterator[Connection]:
    try:
        yield Connection(pool)
    finally:
        await asyncio.sleep(0)
        event(f"connection returned (pool closed={pool.closed})")


app = FastAPI()
install(app, container, drain_timeout=float(os.environ.get("TETHER_DRAIN", "5")))


@app.get("/ping")
async def ping(conn: Inject[Connection]) -> str:
    return "pong"


@app.get("/slow")
async def slow(conn: Inject[Connection], seconds: float = 1.0) -> str:
    event("slow started")
    await asyncio.sleep(seconds)
    event("slow finished")
    return "done"


@app.get("/stream")
async def stream(conn: Inject[Connection]) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(50):
            yield f"{i}\n".encode()
            await asyncio.sleep(0.02)
        event("stream finished")

    return StreamingResponse(chunks(), media_type="text/plain")


@app.websocket("/ws")
async def ws(websocket: WebSocket, conn: Inject[Connection]) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(text.upper())
    await websocket.close()
