from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.servers.proxy import FaultProxy
from tests.servers.redis import RedisServer, redis_cluster, redis_server
from tether.resources.redis import RedisClient, RedisConfig

__all__ = ["eventually", "redis_cluster", "redis_server"]

MakeClient = Callable[..., Awaitable[RedisClient]]


async def eventually(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until ``predicate()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[FaultProxy]:
    """A fault proxy in front of the test's redis-server."""
    async with FaultProxy(redis_server.address) as p:
        yield p


@pytest.fixture
async def make_client(redis_server: RedisServer) -> AsyncIterator[MakeClient]:
    """``await make_client(url=..., **config)``: an initialized RedisClient (on the test's
    server unless ``url`` says otherwise), disposed at teardown."""
    made: list[RedisClient] = []

    async def make(**options: Any) -> RedisClient:
        options.setdefault("url", redis_server.url)
        rc = RedisClient(RedisConfig(**options))
        made.append(rc)
        await rc.initialize()
        return rc

    yield make
    for rc in made:
        await rc.dispose()
