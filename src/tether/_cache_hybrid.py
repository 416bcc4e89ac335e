"""``HybridCache``: a memory tier in front of Redis, kept coherent across processes.

Each instance subscribes to its namespace's invalidation channel (see
_cache_redis_io): a message from another process drops the key from the memory tier,
and a message from itself (its random origin id) is ignored. Whenever it
(re)subscribes it clears the memory tier, since it may have missed messages, and
replays the deletes it could not send while Redis was away.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any, Final

from redis.asyncio.client import PubSub

from ._cache_base import MISS, MemoryStore
from ._cache_config import HybridCacheConfig
from ._cache_redis import Read, RedisCache
from ._cache_redis_io import cancel_tasks
from ._health import describe_error
from ._providers import resource
from .exceptions import ResourceUnavailable
from .resources.redis import RedisClient

logger = logging.getLogger("tether.cache")

_PING_EVERY: Final = 1.0  # seconds of silence on the channel before a PING
_SILENCE_LIMIT: Final = 3.0  # seconds without any message (PONG included): reconnect
_RECONNECT_MAX: Final = 2.0
_CLOSE_WAIT: Final = 2.0


@resource
class HybridCache(RedisCache):
    """A memory tier in front of Redis, kept coherent across processes.

    Reads hit memory first, then Redis; a write or delete in any process drops the
    key from every other process's memory tier within milliseconds (Redis pub/sub).
    While Redis is down it serves from memory and the loader; when Redis is back it
    clears its memory tier (it may have missed invalidations) and replays the deletes
    it could not send.

        container.bind(HybridCacheConfig, HybridCacheConfig(name="users", max_size=5000))
        container.bind(HybridCache, critical=False)   # "degraded", not down, without Redis
    """

    config: HybridCacheConfig
    _fallback = "memory and the loader"

    def __init__(self, config: HybridCacheConfig, redis: RedisClient) -> None:
        super().__init__(config, redis)
        self._memory = MemoryStore(config.max_size, time.monotonic)
        # In-flight Redis reads per key; an invalidation marks them so that a value read
        # before it is not put in the memory tier after it.
        self._reading: dict[str, list[Read]] = {}
        self._invalidated = 0
        self._listener = _Listener(self)

    async def initialize(self) -> None:
        already = self._open
        await super().initialize()
        if already:
            return
        self._listener.start()
        wait = self.redis.config.socket_connect_timeout + 1.0
        if not await self._listener.wait_connected(wait):
            logger.warning("cache '%s': not subscribed to invalidations after %gs; the "
                           "memory tier stays off until it is", self.name, wait)

    async def dispose(self) -> None:
        if self._closed:
            return
        await self._listener.stop()
        await super().dispose()
        self._memory.clear()

    async def health_check(self) -> bool:
        """PING through the RedisClient, and the invalidation channel must be up:
        without it, this process would not see other processes' writes."""
        await super().health_check()
        if not self._listener.connected:
            raise ResourceUnavailable(
                self.name, "not subscribed to invalidations (reconnecting); the memory "
                "tier may hold values other processes changed",
            )
        return True

    # -- the memory tier -----------------------------------------------------------------

    def _local_get(self, key: str) -> Any:
        if not self._listener.ever_connected:
            return MISS  # never subscribed: nothing in memory can be trusted yet
        return self._memory.get(key)

    def _local_set(self, key: str, data: bytes, ttl: float | None) -> None:
        self._forget(key)
        self._local_put(key, self._codec.decode(data), ttl)

    def _local_put(self, key: str, value: Any, ttl: float | None) -> None:
        limit = self.config.memory_ttl
        if ttl is not None and ttl <= 0:
            return
        if limit is not None:
            ttl = limit if ttl is None else min(ttl, limit)
        self._memory.set(key, value, ttl)

    def _local_delete(self, key: str) -> bool:
        return self._forget(key)

    def _local_clear(self) -> None:
        self._memory.clear()
        for reads in self._reading.values():
            for read in reads:
                read.stale = True

    def _forget(self, key: str) -> bool:
        for read in self._reading.get(key, ()):
            read.stale = True
        return self._memory.delete(key)

    def _read_begins(self, key: str) -> Read:
        read = Read()
        self._reading.setdefault(key, []).append(read)
        return read

    def _read_ends(self, key: str, read: Read) -> None:
        reads = self._reading.get(key)
        if reads is not None:
            reads.remove(read)
            if not reads:
                del self._reading[key]

    def _memory_numbers(self) -> tuple[int, int, int, int]:
        m = self._memory
        return len(m), m.max_size, m.evictions, m.expirations

    def _invalidations(self) -> int:
        return self._invalidated

    def _subscribed(self) -> bool:
        return self._listener.connected

    # -- messages from other processes ---------------------------------------------------

    def _apply(self, data: bytes) -> None:
        origin, _, rest = data.partition(b"|")
        if origin == self._io.origin:
            return
        op, _, key = rest.partition(b"|")
        if op == b"k":
            self._forget(key.decode("utf-8", "replace"))
        elif op == b"c":
            self._local_clear()
        else:
            return
        self._invalidated += 1

    async def _subscribed_again(self, first: bool) -> None:
        # Messages sent while we were not subscribed are lost: start the tier afresh.
        self._local_clear()
        if not first:
            logger.info("cache '%s': invalidations reconnected; memory tier cleared",
                        self.name)
        await self._io.flush_pending()


class _Listener:
    """Keeps a HybridCache subscribed to its namespace's invalidation channel."""

    def __init__(self, cache: HybridCache) -> None:
        self._cache = cache
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self.connected = False
        self.ever_connected = False

    def start(self) -> None:
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"tether cache {self._cache.name!r} invalidations"
        )

    async def wait_connected(self, timeout: float) -> bool:
        if self._ready is None:
            return False
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        task, self._task = self._task, None
        self.connected = False
        if task is not None:
            await cancel_tasks(self._cache.name, [task])

    async def _run(self) -> None:
        pause = 0.05
        while True:
            pubsub: PubSub | None = None
            try:
                pubsub = self._cache.redis.client.pubsub()
                await self._subscribe(pubsub)
                pause = 0.05
                first = not self.ever_connected
                self.connected = self.ever_connected = True
                await self._cache._subscribed_again(first)
                if self._ready is not None:
                    self._ready.set()
                await self._listen(pubsub)
            except Exception as error:
                self._lost(error)
            finally:
                if pubsub is not None:
                    await _close_pubsub(self._cache.name, pubsub)
            await asyncio.sleep(pause + random.uniform(0, pause))
            pause = min(pause * 2, _RECONNECT_MAX)

    async def _subscribe(self, pubsub: PubSub) -> None:
        async with asyncio.timeout(self._cache.redis.config.socket_connect_timeout + 1.0):
            await pubsub.subscribe(self._cache._io.channel)
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is not None and message["type"] == "subscribe":
                    return

    async def _listen(self, pubsub: PubSub) -> None:
        heard = time.monotonic()
        while True:
            message = await pubsub.get_message(timeout=_PING_EVERY)
            now = time.monotonic()
            if message is None:
                if now - heard > _SILENCE_LIMIT:
                    raise ConnectionError(f"no reply to PING within {_SILENCE_LIMIT:g}s")
                await pubsub.ping()  # its PONG arrives as a message
                continue
            heard = now
            if message["type"] == "message":
                self._cache._apply(message["data"])

    def _lost(self, error: Exception) -> None:
        if self.connected:
            logger.warning("cache '%s': lost the invalidation channel (%s); reconnecting",
                           self._cache.name, describe_error(error))
        elif self.ever_connected:
            logger.debug("cache '%s': invalidation channel still down (%s)",
                         self._cache.name, describe_error(error))
        self.connected = False


async def _close_pubsub(name: str, pubsub: PubSub) -> None:
    try:
        async with asyncio.timeout(_CLOSE_WAIT):
            await pubsub.aclose()  # type: ignore[no-untyped-call]
    except Exception as error:  # the connection is dropped either way
        logger.debug("cache '%s': closing the pub/sub connection: %s", name,
                     describe_error(error))
