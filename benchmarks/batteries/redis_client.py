"""Redis: one GET of a 100-byte value through tether's ``RedisClient``.

Against redis-py's asyncio client with the pool tether builds (a
``BlockingConnectionPool`` of 20 connections, 5 s pool, socket and connect timeouts),
called directly: the difference is tether's policy (the call's deadline), its error
translation and its counters.

Every timed loop is checked on the server too: ``INFO commandstats`` must count one
GET per op.

Two more rows explain tether's: ``timeout=None`` (the same call without the
per-call deadline, ``asyncio.timeout``) and ``.client`` (tether's own redis-py client
called raw: the driver as tether configures it).
"""

from __future__ import annotations

import functools
import os
from contextlib import AsyncExitStack
from typing import Any

from benchmarks.batteries._harness import Env, Row, Scenario, Skip, both, counted, equals

TITLE = "Network: Redis"
DISTRIBUTIONS = ("redis",)
TARGET = 0.05
KEY = "bench:get"


async def raw_client(stack: AsyncExitStack, url: str) -> Any:
    """redis-py's asyncio client with the pool settings tether uses by default."""
    from redis.asyncio import BlockingConnectionPool, Redis

    pool = BlockingConnectionPool.from_url(
        url, max_connections=20, timeout=5.0, socket_timeout=5.0, socket_connect_timeout=5.0,
    )
    client = Redis.from_pool(pool)
    stack.push_async_callback(client.aclose)
    await client.ping()
    return client


def server_gets(raw: Any) -> Any:
    async def read() -> int:
        stats = await raw.info("commandstats")
        return int(stats.get("cmdstat_get", {}).get("calls", 0))

    return read


async def scenarios(env: Env, stack: AsyncExitStack) -> list[Scenario | Skip]:
    url = env.url("redis")
    if url is None:
        return [Skip("get", "GET a 100-byte value", env.why_not("redis"))]
    from tether import Container
    from tether.resources.redis import RedisClient, RedisConfig

    container = Container()
    container.bind(RedisConfig, RedisConfig(name="bench", url=url))
    container.bind(RedisClient)
    container.bind(RedisClient, RedisClient(RedisConfig(name="bench-no-deadline", url=url,
                                                        timeout=None)), name="no-deadline")
    await stack.enter_async_context(container)
    redis = await container.aget(RedisClient)
    no_deadline = await container.aget(RedisClient, name="no-deadline")
    raw = await raw_client(stack, url)
    value = os.urandom(100)
    await raw.set(KEY, value)
    gets = counted(server_gets(raw), "GET calls on the server")
    calls = counted(lambda: redis.statistics().calls_total, "calls_total")
    return [
        Scenario(
            "get", "GET a 100-byte value",
            (
                Row("tether", functools.partial(redis.get, KEY), equals(value),
                    both(calls, gets)),
                Row("redis-py direct", functools.partial(raw.get, KEY), equals(value), gets),
                Row("tether, timeout=None", functools.partial(no_deadline.get, KEY),
                    equals(value), gets,
                    note="explains tether's row: the policy without its deadline"),
                Row("tether's .client (redis-py, no policy)",
                    functools.partial(redis.client.get, KEY), equals(value), gets,
                    note="tether's own redis-py client, called raw"),
            ),
            baseline="redis-py direct", target=TARGET,
        ),
    ]
