"""Graceful drain: at shutdown new requests get 503, in-flight ones finish (up to
drain_timeout, then they are cancelled), and only then is anything disposed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from tether import Container, Scope
from tether.fastapi import Inject, install

pytestmark = pytest.mark.anyio


class Pool:
    def __init__(self) -> None:
        self.closed = False


class Events:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.started = asyncio.Event()


def make(drain_timeout: float) -> tuple[FastAPI, Events, asyncio.Event]:
    events = Events()
    release = asyncio.Event()
    container = Container()

    @container.provide(eager=True)
    def pool() -> Iterator[Pool]:
        p = Pool()
        yield p
        events.log.append("pool disposed")
        p.closed = True

    @container.provide(scope=Scope.REQUEST)
    def connection(pool: Pool) -> Iterator[str]:
        try:
            yield "conn"
        finally:
            events.log.append(f"connection returned, pool closed={pool.closed}")

    app = FastAPI()
    install(app, container, drain_timeout=drain_timeout)

    @app.get("/slow")
    async def slow(conn: Inject[str]) -> str:
        events.log.append("slow started")
        events.started.set()
        await release.wait()
        events.log.append("slow finished")
        return conn

    @app.get("/fast")
    async def fast() -> str:
        return "fast"

    return app, events, release


async def test_in_flight_requests_finish_before_resources_are_disposed() -> None:
    app, events, release = make(drain_timeout=5)
    transport = httpx.ASGITransport(app=app)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        slow = asyncio.create_task(client.get("/slow"))
        await events.started.wait()
        shutdown = asyncio.create_task(lifespan.__aexit__(None, None, None))
        for _ in range(10):  # let the shutdown reach the drain
            await asyncio.sleep(0)
        refused = await client.get("/fast")
        assert refused.status_code == 503
        assert refused.json()["error"] == "unavailable"
        assert (await client.get("/health/live")).status_code == 200  # the probe stays up
        assert "pool disposed" not in events.log
        release.set()
        assert (await slow).status_code == 200
        await shutdown
    assert events.log == [
        "slow started",
        "slow finished",
        "connection returned, pool closed=False",
        "pool disposed",
    ]


async def test_requests_still_running_after_the_drain_timeout_are_cancelled_first() -> None:
    app, events, _ = make(drain_timeout=0.2)
    transport = httpx.ASGITransport(app=app)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        slow = asyncio.create_task(client.get("/slow"))
        await events.started.wait()
        await asyncio.wait_for(lifespan.__aexit__(None, None, None), timeout=5)
        with pytest.raises((asyncio.CancelledError, httpx.HTTPError)):
            await slow
    assert events.log == [
        "slow started",
        "connection returned, pool closed=False",
        "pool disposed",
    ]
