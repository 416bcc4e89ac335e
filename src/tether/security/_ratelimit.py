"""Rate limits in memory or on Redis: fixed windows, atomic on Redis, explicit about
what happens when the backend is down."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from .._providers import resource
from ..exceptions import ClosedError, ResourceError

if TYPE_CHECKING:
    from ..resources.redis import RedisClient

logger = logging.getLogger("tether.security")

_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)?\s*(second|minute|hour|day)s?\s*$")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``limit`` hits per ``period`` seconds; ``RateLimit.parse("100/minute")``."""

    limit: int
    period: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.period <= 0:
            raise ValueError(f"a rate limit needs limit >= 1 and period > 0, got "
                             f"{self.limit}/{self.period}s")

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"100/minute"``, ``"5/second"``, ``"1000/hour"``, ``"10/5 minutes"``."""
        found = _SPEC.match(text)
        if found is None:
            raise ValueError(
                f"cannot read the rate limit {text!r}: write it like '100/minute', "
                f"'5/second', '10/5 minutes' (units: second, minute, hour, day)")
        count, times, unit = found.groups()
        return cls(int(count), int(times or 1) * _UNITS[unit])

    def __str__(self) -> str:
        return f"{self.limit}/{self.period:g}s"


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    """One hit's verdict and what to tell the client (the ``RateLimit-*`` headers)."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # seconds until the window starts over
    backend_failed: bool = False  # the backend could not be asked; fail_open decided

    @property
    def retry_after(self) -> int:
        return max(1, int(self.reset_after + 0.999))

    def headers(self) -> dict[str, str]:
        headers = {"RateLimit-Limit": str(self.limit),
                   "RateLimit-Remaining": str(self.remaining),
                   "RateLimit-Reset": str(max(0, int(self.reset_after + 0.999)))}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


@runtime_checkable
class RateLimitBackend(Protocol):
    """Counts hits. ``hit`` must be atomic: count and expiry set together."""

    async def hit(self, key: str, limit: RateLimit, cost: int) -> tuple[int, float]:
        """Add ``cost`` to ``key``'s window; return (count so far, seconds to reset)."""
        ...

    async def ping(self) -> None: ...

    async def dispose(self) -> None: ...


class MemoryRateLimits:
    """Windows in one process's memory: right for one worker only."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._windows: dict[str, tuple[int, float]] = {}  # key -> (count, window end)

    async def hit(self, key: str, limit: RateLimit, cost: int) -> tuple[int, float]:
        now = self._clock()
        count, ends = self._windows.get(key, (0, 0.0))
        if ends <= now:
            count, ends = 0, now + limit.period
            if len(self._windows) >= self._max_keys:
                self._purge(now)
        count += cost
        self._windows[key] = (count, ends)
        return count, ends - now

    def _purge(self, now: float) -> None:
        self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
        while len(self._windows) >= self._max_keys:  # all live: drop the oldest
            self._windows.pop(next(iter(self._windows)))

    async def ping(self) -> None:
        return None

    async def dispose(self) -> None:
        self._windows.clear()


# INCRBY and PEXPIRE in one script: a process dying between the two cannot leave a
# counter without a TTL (which would limit its key forever). The window starts at the
# key's first hit and the server's clock times it, so workers' clocks never disagree.
_HIT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""


class RedisRateLimits:
    """Windows on Redis, shared by every process: one Lua script per hit, never
    retried (a lost reply must not count twice)."""

    def __init__(self, redis: RedisClient, *, prefix: str = "tether:ratelimit:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._script: object | None = None

    async def hit(self, key: str, limit: RateLimit, cost: int) -> tuple[int, float]:
        script = self._script
        if script is None:
            script = self._script = self.redis.client.register_script(_HIT)
        period_ms = max(1, int(limit.period * 1000))
        reply = await self.redis.call(
            lambda r: script(keys=[self.prefix + key], args=[period_ms, cost],  # type: ignore[operator]
                             client=r),
            idempotent=False)
        count, ttl_ms = int(reply[0]), int(reply[1])
        return count, ttl_ms / 1000.0

    async def ping(self) -> None:
        await self.redis.ping()

    async def dispose(self) -> None:
        return None  # the RedisClient is the container's to close


class RateLimiterConfig(BaseModel):
    """``fail_open``: when the backend cannot be asked, let requests through (logged
    and counted) rather than refuse them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="ratelimit", min_length=1)
    fail_open: bool = True


@resource
class RateLimiter:
    """Checks hits against limits (a ``@resource``); the backend is memory by default."""

    def __init__(self, config: RateLimiterConfig,
                 backend: RateLimitBackend | None = None) -> None:
        self.config = config
        self.backend: RateLimitBackend = backend if backend is not None else \
            MemoryRateLimits()
        self._closed = False
        self.allowed_total = self.limited_total = self.backend_failures_total = 0

    async def hit(self, key: str, limit: RateLimit | str, cost: int = 1) -> RateLimitResult:
        if self._closed:
            raise ClosedError(f"RateLimiter {self.config.name!r}")
        rule = RateLimit.parse(limit) if isinstance(limit, str) else limit
        try:
            count, reset_after = await self.backend.hit(key, rule, cost)
        except (ResourceError, OSError) as error:
            self.backend_failures_total += 1
            logger.warning(
                "rate limiter %s: backend failed (%s); %s", self.config.name,
                type(error).__name__,
                "letting the request through" if self.config.fail_open else "refusing it")
            return RateLimitResult(self.config.fail_open, rule.limit,
                                   rule.limit if self.config.fail_open else 0, 1.0,
                                   backend_failed=True)
        allowed = count <= rule.limit
        if allowed:
            self.allowed_total += 1
        else:
            self.limited_total += 1
        return RateLimitResult(allowed, rule.limit, max(0, rule.limit - count), reset_after)

    async def initialize(self) -> None:
        return None

    async def dispose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.backend.dispose()

    async def health_check(self) -> bool:
        await self.backend.ping()
        return True

    def statistics(self) -> RateLimiterStats:
        return RateLimiterStats(allowed_total=self.allowed_total,
                                limited_total=self.limited_total,
                                backend_failures_total=self.backend_failures_total,
                                fail_open=int(self.config.fail_open))


@dataclass(frozen=True, slots=True)
class RateLimiterStats:
    allowed_total: int
    limited_total: int
    backend_failures_total: int
    fail_open: int
