"""The Redis side of ``RedisCache`` and ``HybridCache``: keys, calls, pending deletes.

Layout in Redis, for a cache whose namespace is ``ns``:

    tether:cache:ns:v:<key>       the value (framed JSON or msgpack, see _cache_codec)
    tether:cache:ns:lock:<key>    the load lock of get_or_load(lock=True): a random token
    tether:cache:ns:invalidate    the pub/sub channel: "<origin>|k|<key>" or "<origin>|c|"

Every write and delete publishes on the channel in the same round trip (a pipeline),
so a ``HybridCache`` in any process drops the key from its memory tier.

Calls run under the cache's own policy (a short deadline and a circuit breaker)
around ``RedisClient.call``. A write or delete that cannot reach Redis is remembered
and replayed as a delete once Redis answers again, so no process keeps serving the
value it replaced.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from redis.exceptions import ResponseError

from ._cache_base import MISS
from ._cache_codec import Codec, CorruptValue
from ._cache_config import RedisCacheConfig
from ._health import describe_error
from .exceptions import ResourceError
from .resilience import BreakerState, CircuitBreaker, Policy
from .resources._meter import Meter
from .resources._redis_driver import AnyRedis
from .resources.redis import RedisClient

T = TypeVar("T")
logger = logging.getLogger("tether.cache")

_PENDING_LIMIT: Final = 10_000  # remembered deletes; beyond it, the namespace is cleared
_DISPOSE_WAIT: Final = 2.0

_UNLOCK: Final = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end"
)


def _policy(config: RedisCacheConfig) -> Policy:
    policy = config.policy()
    if policy.breaker is not None:
        # Errors that are not ResourceErrors (a key of another type, a script error)
        # say nothing about Redis being reachable: they must not open the breaker.
        policy.breaker = CircuitBreaker(
            config.name, threshold=policy.breaker.threshold,
            reset_timeout=policy.breaker.reset_timeout,
            exclude=lambda error: not isinstance(error, ResourceError),
        )
    return policy


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class RedisIO:
    """One cache's side of Redis: its keys, its calls, and the deletes to replay."""

    def __init__(self, config: RedisCacheConfig, redis: RedisClient, codec: Codec,
                 fallback: str) -> None:
        base = f"tether:cache:{config.key_namespace}:"
        self.name = config.name
        self.values = base + "v:"
        self.locks = base + "lock:"
        self.channel = base + "invalidate"
        self.origin = secrets.token_hex(8).encode()
        self.redis = redis
        self.codec = codec
        self.policy = _policy(config)
        self.meter = Meter()
        self.available = True
        self.rejected = 0
        self.pending: set[str] = set()
        self.pending_clear = False
        self._fallback = fallback  # "the loader", or "memory and the loader"

    # -- calls ---------------------------------------------------------------------------

    async def call(self, fn: Callable[[AnyRedis], Awaitable[T]], *, idempotent: bool,
                   bounded: bool = True) -> T:
        """``fn(client)`` through the RedisClient, under this cache's policy (its short
        deadline and breaker) unless ``bounded`` is False (bulk work such as clear)."""
        started = self.meter.begin()
        failed: Exception | None = None
        try:
            if bounded:
                result = await self.policy.call(
                    lambda: self.redis.call(fn, idempotent=idempotent), idempotent=idempotent
                )
            else:
                result = await self.redis.call(fn, idempotent=idempotent)
        except Exception as error:
            failed = error
            if isinstance(error, ResourceError):
                self._down(error)
            raise
        finally:
            self.meter.end(started, failed)
        self._up()
        return result

    def _down(self, error: ResourceError) -> None:
        if self.available:
            self.available = False
            logger.warning("cache '%s': Redis calls fail (%s); serving from %s until it "
                           "is back", self.name, describe_error(error), self._fallback)

    def _up(self) -> None:
        if not self.available:
            self.available = True
            logger.info("cache '%s': Redis answers again", self.name)

    def message(self, op: bytes, key: str = "") -> bytes:
        return self.origin + b"|" + op + b"|" + key.encode()

    # -- operations ----------------------------------------------------------------------

    async def read(self, key: str) -> tuple[Any, float | None]:
        """``(value, seconds left)``; ``(MISS, None)`` for no value, an unreadable one
        (counted in ``rejected``), or a failing Redis."""
        rkey = self.values + key

        async def fetch(r: AnyRedis) -> list[Any]:
            async with r.pipeline(transaction=False) as pipe:
                pipe.get(rkey)
                pipe.pttl(rkey)
                return await pipe.execute()

        try:
            raw, pttl = await self.call(fetch, idempotent=True)
        except ResourceError:
            return MISS, None
        except ResponseError as error:  # the key holds a hash, a list...: not ours
            self._reject(key, f"Redis refused to read it as a string ({error})")
            return MISS, None
        if raw is None:
            return MISS, None
        try:
            value = self.codec.decode(raw)
        except CorruptValue as error:
            self._reject(key, str(error))
            return MISS, None
        return value, (None if pttl == -1 else max(pttl, 0) / 1000)

    def _reject(self, key: str, why: str) -> None:
        self.rejected += 1
        logger.warning("cache '%s': the value under %r is not a tether cache value (%s); "
                       "treated as a miss and never deserialized", self.name, key, why)

    async def store(self, key: str, data: bytes, ttl: float | None) -> None:
        rkey, message = self.values + key, self.message(b"k", key)

        async def write(r: AnyRedis) -> None:
            async with r.pipeline(transaction=False) as pipe:
                pipe.set(rkey, data, px=None if ttl is None else max(1, round(ttl * 1000)))
                pipe.publish(self.channel, message)
                await pipe.execute()

        await self.call(write, idempotent=True)

    async def remove(self, key: str) -> bool:
        rkey, message = self.values + key, self.message(b"k", key)

        async def delete(r: AnyRedis) -> int:
            async with r.pipeline(transaction=False) as pipe:
                pipe.delete(rkey)
                pipe.publish(self.channel, message)
                removed, _ = await pipe.execute()
                return int(removed)

        return await self.call(delete, idempotent=True) > 0

    async def remove_many(self, keys: list[str]) -> None:
        async def delete(r: AnyRedis) -> None:
            async with r.pipeline(transaction=False) as pipe:
                pipe.delete(*(self.values + k for k in keys))
                for k in keys:
                    pipe.publish(self.channel, self.message(b"k", k))
                await pipe.execute()

        await self.call(delete, idempotent=True)

    async def clear(self) -> None:
        pattern = _glob_escape(self.values) + "*"

        async def clear(r: AnyRedis) -> None:
            batch: list[Any] = []
            async for rkey in r.scan_iter(match=pattern, count=500):
                batch.append(rkey)
                if len(batch) >= 500:
                    await r.unlink(*batch)
                    batch = []
            if batch:
                await r.unlink(*batch)
            await r.publish(self.channel, self.message(b"c"))

        # Scanning a large namespace takes longer than one cache call's short deadline;
        # the RedisClient's own timeout bounds it.
        await self.call(clear, idempotent=True, bounded=False)

    async def try_lock(self, key: str, token: str, seconds: float) -> bool:
        rkey = self.locks + key
        return bool(await self.call(
            lambda r: r.set(rkey, token, nx=True, px=max(1, round(seconds * 1000))),
            idempotent=False,
        ))

    async def unlock(self, key: str, token: str) -> None:
        rkey = self.locks + key
        try:
            await self.call(lambda r: r.eval(_UNLOCK, 1, rkey, token),
                            idempotent=True)
        except ResourceError as error:
            logger.info("cache '%s': could not release the load lock of %r (%s); it "
                        "expires on its own", self.name, key, describe_error(error))

    # -- writes that could not reach Redis -----------------------------------------------

    def defer(self, key: str | None) -> None:
        """Remember to delete ``key`` (None: the whole namespace) once Redis is back."""
        if key is None or len(self.pending) >= _PENDING_LIMIT:
            self.pending_clear = True
            self.pending.clear()
        else:
            self.pending.add(key)

    @property
    def has_pending(self) -> bool:
        return self.pending_clear or bool(self.pending)

    async def flush_pending(self) -> None:
        """Replay the deferred deletes; they stay deferred if Redis still fails."""
        if not self.has_pending:
            return
        breaker = self.policy.breaker
        if breaker is not None and breaker.state is BreakerState.OPEN:
            return  # Redis is known to be down: the breaker says when to try again
        try:
            if self.pending_clear:
                await self.clear()
                self.pending_clear = False
                self.pending.clear()
            keys = list(self.pending)
            for start in range(0, len(keys), 500):
                batch = keys[start:start + 500]
                await self.remove_many(batch)
                self.pending.difference_update(batch)
        except ResourceError as error:
            logger.debug("cache '%s': %d deferred deletes wait for Redis (%s)", self.name,
                        len(self.pending) + self.pending_clear, describe_error(error))
            return
        logger.info("cache '%s': deferred deletes sent to Redis", self.name)


async def cancel_tasks(name: str, tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for them, at most a couple of seconds."""
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    _, pending = await asyncio.wait(tasks, timeout=_DISPOSE_WAIT)
    if pending:
        logger.warning("cache '%s': %d tasks did not stop within %gs of being cancelled",
                       name, len(pending), _DISPOSE_WAIT)
