"""Rate limits: one allowed hit, in memory and on Redis.

- memory: tether's ``RateLimiter`` over ``MemoryRateLimits`` against the same fixed
  window written by hand over a dict (the floor: no library to compare with); a
  second tether row passes the limit as a string (``"1000000000/day"``), parsed on
  every hit, as the docs' examples write it.
- Redis: tether's ``RateLimiter`` over ``RedisRateLimits`` against redis-py running
  the same Lua script (INCRBY and PEXPIRE in one call, ``evalsha``) on a client with
  the same pool settings.

The limit is high enough that every hit is allowed; each tether row checks its
``allowed_total`` counter, and the Redis rows read the window's counter back.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from benchmarks.batteries._harness import Env, Row, Scenario, Skip, both, counted, expect
from benchmarks.batteries.redis_client import raw_client

TITLE = "Security kit: rate limits"
DISTRIBUTIONS = ("redis",)
TARGET = 0.10
LIMIT, PERIOD = 1_000_000_000, 86400.0  # a day: no window ends during a run
KEY = "user:42"


class DirectWindow:
    """A fixed window per key in a dict, as ``MemoryRateLimits`` keeps them."""

    def __init__(self) -> None:
        self.windows: dict[str, tuple[int, float]] = {}

    async def hit(self, key: str) -> tuple[bool, int, float]:
        now = time.monotonic()
        count, ends = self.windows.get(key, (0, 0.0))
        if ends <= now:
            count, ends = 0, now + PERIOD
        count += 1
        self.windows[key] = (count, ends)
        return count <= LIMIT, max(0, LIMIT - count), ends - now


def _allowed(result: Any) -> None:
    allowed = result.allowed if hasattr(result, "allowed") else result[0]
    expect(allowed is True, f"the hit was refused: {result!r}")


async def _memory(stack: AsyncExitStack) -> Scenario:
    from tether import Container
    from tether.security import MemoryRateLimits, RateLimit, RateLimiter, RateLimiterConfig

    container = Container()
    container.bind(RateLimiter, RateLimiter(RateLimiterConfig(name="memory"),
                                            MemoryRateLimits()))
    await stack.enter_async_context(container)
    limiter = await container.aget(RateLimiter)
    rule = RateLimit(LIMIT, PERIOD)
    allowed = counted(lambda: limiter.allowed_total, "allowed_total")
    return Scenario(
        "memory-hit", "memory: one allowed hit",
        (
            Row("tether", functools.partial(limiter.hit, KEY, rule), _allowed, allowed),
            Row("tether, limit as a string",
                functools.partial(limiter.hit, KEY, f"{LIMIT}/day"), _allowed, allowed,
                note="`RateLimit.parse` on every hit"),
            Row("dict, by hand", functools.partial(DirectWindow().hit, KEY), _allowed),
        ),
        baseline="dict, by hand",
    )


async def _redis(stack: AsyncExitStack, url: str) -> Scenario:
    from tether import Container
    from tether.resources.redis import RedisClient, RedisConfig
    from tether.security import RateLimit, RateLimiter, RateLimiterConfig, RedisRateLimits
    from tether.security._ratelimit import _HIT  # the very script tether sends

    container = Container()
    container.bind(RedisConfig, RedisConfig(name="ratelimit-redis", url=url))
    container.bind(RedisClient)
    await stack.enter_async_context(container)
    redis = await container.aget(RedisClient)
    limiter = RateLimiter(RateLimiterConfig(name="redis"), RedisRateLimits(redis))
    stack.push_async_callback(limiter.dispose)
    no_deadline_redis = RedisClient(RedisConfig(name="ratelimit-no-deadline", url=url,
                                                timeout=None))
    await no_deadline_redis.initialize()
    stack.push_async_callback(no_deadline_redis.dispose)
    # The same keys: both limiters count in one window.
    limiter_no_deadline = RateLimiter(RateLimiterConfig(name="redis-no-deadline"),
                                      RedisRateLimits(no_deadline_redis))
    stack.push_async_callback(limiter_no_deadline.dispose)
    rule = RateLimit(LIMIT, PERIOD)

    raw = await raw_client(stack, url)
    script = raw.register_script(_HIT)
    period_ms, direct_key = int(PERIOD * 1000), "bench:ratelimit:" + KEY

    async def direct_hit() -> tuple[bool, int, float]:
        count, ttl_ms = await script(keys=[direct_key], args=[period_ms, 1])
        count = int(count)
        return count <= LIMIT, max(0, LIMIT - count), int(ttl_ms) / 1000.0

    def counter(key: str) -> Callable[[], Awaitable[int]]:
        # The window's counter as Redis holds it.
        async def read() -> int:
            return int(await raw.get(key) or 0)

        return read

    tether_key = "tether:ratelimit:" + KEY
    on_server = counter(tether_key), counter(direct_key)
    audits = (
        both(counted(lambda: limiter.allowed_total, "allowed_total"),
             counted(on_server[0], "the window's counter on Redis")),
        counted(on_server[1], "the window's counter on Redis"),
        both(counted(lambda: limiter_no_deadline.allowed_total, "allowed_total"),
             counted(on_server[0], "the window's counter on Redis")),
    )
    return Scenario(
        "redis-hit", "Redis: one allowed hit (Lua script, one round trip)",
        (
            Row("tether", functools.partial(limiter.hit, KEY, rule), _allowed, audits[0]),
            Row("redis-py direct", direct_hit, _allowed, audits[1]),
            Row("tether, timeout=None", functools.partial(limiter_no_deadline.hit, KEY, rule),
                _allowed, audits[2],
                note="explains tether's row: its RedisClient without the per-call deadline"),
        ),
        baseline="redis-py direct", target=TARGET,
    )


async def scenarios(env: Env, stack: AsyncExitStack) -> list[Scenario | Skip]:
    found: list[Scenario | Skip] = [await _memory(stack)]
    url = env.url("redis")
    if url is None:
        found.append(Skip("redis-hit", "Redis: one allowed hit", env.why_not("redis")))
    else:
        found.append(await _redis(stack, url))
    return found
