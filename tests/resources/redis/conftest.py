from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.servers.proxy import FaultProxy
from tests.servers.redis import RedisServer, redis_cluster, redis_server
from tests.waiting import eventually
from tether.resources.redis import RedisClient, RedisConfig

__all__ = ["eventually", "redis_cluster", "redis_server"]

MakeClient = Callable[..., Awaitable[RedisClient]]


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
