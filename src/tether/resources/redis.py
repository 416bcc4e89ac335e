"""Redis as a tether resource: redis-py's asyncio client on a blocking pool.

    container.bind(RedisConfig, RedisConfig(url="redis://127.0.0.1:6379/0"))
    container.bind(RedisClient)

    rc = await scope.aget(RedisClient)
    await rc.set("greeting", "hello", ex=60)
    hits = await rc.incr("hits")                      # never retried once sent
    await rc.execute("HSET", "user:1", "name", "ann", idempotent=True)
    rows = await rc.call(lambda r: r.hgetall("user:1"), idempotent=True)
    await rc.client.publish("news", "hi")             # the whole redis-py API, raw

Every call made through ``execute``, ``call`` or the typed helpers runs under the
config's policy: one deadline (``timeout``), retries only for idempotent calls or
requests that never left, an optional circuit breaker, and redis-py's errors
translated into ``tether.exceptions``. redis-py's own retries are off, so a lost
reply to ``INCR`` is reported, not applied twice. ``client`` is the raw
``redis.asyncio.Redis`` (or ``RedisCluster``): its calls skip the policy.
"""

from __future__ import annotations

try:
    import pydantic  # noqa: F401
    import redis.asyncio  # noqa: F401
except ImportError:
    raise ImportError(
        "tether.resources.redis needs the 'redis' extra: pip install 'tether[redis]'"
    ) from None

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from time import perf_counter
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator
from redis.asyncio.cluster import RedisCluster
from redis.typing import EncodableT, KeyT

from .._providers import resource
from ..exceptions import ClosedError, PoolTimeout, ResourceError, ResourceTimeout
from ..resilience import Policy
from ._config import ResourceConfig
from ._meter import Meter
from ._redis_driver import (
    AnyRedis,
    Limits,
    build_client,
    check_url,
    is_cluster_url,
    pool_counts,
    split_credentials,
    translate,
)

__all__ = ["RedisClient", "RedisConfig", "RedisStats"]

T = TypeVar("T")
logger = logging.getLogger("tether.resources.redis")

DEFAULT_URL = "redis://127.0.0.1:6379/0"


class RedisConfig(ResourceConfig):
    """How to reach Redis, and how patient to be.

    ``url`` is ``redis://host:port/db``, ``rediss://`` for TLS,
    ``unix:///path/to/redis.sock?db=0``, or ``redis+cluster://host:port`` (also
    ``rediss+cluster://``) for Redis Cluster. Credentials written in the URL
    (``redis://user:pw@host``, or ``?password=``) are moved to ``username`` and
    ``password`` (a ``SecretStr``), so the URL kept is safe to show in repr, logs and
    errors. Other query options in the URL go to redis-py; the fields below win over
    them.
    """

    # Validation errors must not echo the input back: it may hold a password.
    model_config = ConfigDict(hide_input_in_errors=True)

    name: str = Field(default="redis", min_length=1)
    url: str = DEFAULT_URL
    username: str | None = None
    password: SecretStr | None = None
    max_connections: int = Field(default=20, ge=1)
    pool_timeout: float = Field(default=5.0, gt=0)
    socket_timeout: float | None = Field(default=5.0, gt=0)
    socket_connect_timeout: float = Field(default=5.0, gt=0)
    health_check_interval: float = Field(default=0.0, ge=0)
    cluster: bool = False
    decode_responses: bool = False

    @model_validator(mode="before")
    @classmethod
    def _take_credentials_out_of_the_url(cls, data: Any) -> Any:
        # Before any other check, so that no later error message can quote the password.
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return data
        url, username, password = split_credentials(data["url"])
        if username is None and password is None:
            return data
        if data.get("username") is not None or data.get("password") is not None:
            raise ValueError("url carries credentials and username/password are set too: "
                             "give them one way")
        return {**data, "url": url, "username": username, "password": password}

    @field_validator("url")
    @classmethod
    def _url_is_redis(cls, url: str) -> str:
        try:
            check_url(url, cluster=False)
        except ValueError as error:
            raise ValueError(f"url: {error}") from None
        return url

    @model_validator(mode="after")
    def _cluster_url_is_possible(self) -> RedisConfig:
        if self.cluster:
            try:
                check_url(self.url, cluster=True)
            except ValueError as error:
                raise ValueError(f"url: {error}") from None
        return self

    @property
    def is_cluster(self) -> bool:
        """True for ``cluster=True`` or a ``redis+cluster://`` URL."""
        return self.cluster or is_cluster_url(self.url)


@dataclass(frozen=True, slots=True)
class RedisStats:
    """``RedisClient.statistics()``: calls through the policy, and the pool.

    ``in_use`` and ``idle`` count connections of every pool (one per node for a
    cluster); ``max_connections`` is the limit across them.
    """

    calls_total: int
    failures_total: int
    failures_by_kind: Mapping[str, int]
    active: int
    peak: int
    latency_seconds_total: float
    latency_seconds_max: float
    retries_total: int
    max_connections: int
    in_use: int
    idle: int
    pool_timeouts_total: int


@resource
class RedisClient:
    """A pooled Redis client with tether's policy, health check and statistics.

    ``initialize()`` builds the pool and sends PING (a cluster also discovers its
    nodes); ``health_check()`` sends PING; ``dispose()`` closes every connection.
    """

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self._policy = _policy(config)
        self._meter = Meter()
        self._limits = Limits(config.name, config.pool_timeout, config.max_connections,
                              config.socket_timeout)
        self._client: AnyRedis | None = None
        self._closed = False
        self._pool_timeouts = 0

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def client(self) -> AnyRedis:
        """The raw redis-py client, for the parts of the API without a helper here.

        Its calls skip tether's deadline, retries, breaker, error translation and
        statistics; wrap them in ``call()`` to get those.
        """
        return self._require()

    # -- lifecycle -------------------------------------------------------------------

    async def initialize(self) -> None:
        if self._closed:
            raise ClosedError(self._what)
        if self._client is not None:
            return
        config = self.config
        client = build_client(config.url, config.cluster, {
            "username": config.username,
            "password": config.password.get_secret_value() if config.password else None,
            "max_connections": config.max_connections,
            "pool_timeout": config.pool_timeout,
            "socket_timeout": config.socket_timeout,
            "socket_connect_timeout": config.socket_connect_timeout,
            "health_check_interval": config.health_check_interval,
            "decode_responses": config.decode_responses,
        })
        try:
            await self._within_timeout("start-up", lambda: self._open(client))
        except BaseException:
            await self._close(client)
            raise
        self._client = client

    async def dispose(self) -> None:
        """Close every connection; bounded by ``socket_connect_timeout`` + 1 s, safe to
        call twice. A failure to close is logged, not raised: the connections are
        dropped either way."""
        if self._closed:
            return
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await self._close(client)

    async def health_check(self) -> bool:
        """PING, bounded by ``timeout``. True on PONG; otherwise raises the translated
        error, which the container reports as the reason the resource is unhealthy."""
        client = self._require()
        return await self._within_timeout(
            "PING", lambda: self._attempt(lambda c: c.ping(), client))

    def statistics(self) -> RedisStats:
        meter, client = self._meter, self._client
        in_use, idle = pool_counts(client) if client is not None else (0, 0)
        nodes = max(1, len(client.get_nodes())) if isinstance(client, RedisCluster) else 1
        return RedisStats(
            calls_total=meter.calls,
            failures_total=meter.failures_total,
            failures_by_kind=MappingProxyType(dict(meter.failures)),
            active=meter.active,
            peak=meter.peak,
            latency_seconds_total=meter.latency_total,
            latency_seconds_max=meter.latency_max,
            retries_total=self._policy.retries_total,
            max_connections=self.config.max_connections * nodes,
            in_use=in_use,
            idle=idle,
            pool_timeouts_total=self._pool_timeouts,
        )

    # -- calls under the policy --------------------------------------------------------

    async def call(self, fn: Callable[[AnyRedis], Awaitable[T]], *, idempotent: bool) -> T:
        """``await fn(client)`` under the policy, with errors translated.

        ``fn`` is called again for each attempt. ``idempotent`` says whether running it
        twice is harmless: a read, a SET without NX. When False it is retried only
        if the request never left (the connection could not be made).
        """
        client = self._client
        if client is None:
            client = self._require()
        meter = self._meter
        meter.active = active = meter.active + 1  # meter.begin(), written out
        if active > meter.peak:
            meter.peak = active
        started = perf_counter()
        failed: Exception | None = None
        try:
            plain = self._policy.plain()
            if plain is None:
                return await self._policy.call(lambda: self._attempt(fn, client),
                                               idempotent=idempotent)
            with plain:  # no retries, no breaker: _attempt inline, every call pays it
                try:
                    return await fn(client)
                except Exception as error:
                    translated = self._translate(error)
                    if translated is None:
                        raise
                    raise translated from error
        except Exception as error:
            failed = error
            raise
        finally:
            meter.end(started, failed)

    async def execute(self, *args: EncodableT, idempotent: bool, **options: Any) -> Any:
        """One command as Redis spells it: ``execute("HINCRBY", "h", "f", 1,
        idempotent=False)``. The reply is parsed as redis-py parses it."""
        return await self.call(lambda r: r.execute_command(*args, **options),
                               idempotent=idempotent)

    def pipeline(self, transaction: bool = True) -> Any:
        """redis-py's pipeline (raw: run ``await pipe.execute()`` inside ``call()`` to
        put it under the policy)."""
        return self._require().pipeline(transaction=transaction)

    async def ping(self) -> bool:
        return await self.call(lambda r: r.ping(), idempotent=True)

    async def get(self, key: KeyT) -> bytes | str | None:
        return await self.call(lambda r: r.get(key), idempotent=True)

    async def set(
        self, key: KeyT, value: EncodableT, *, ex: int | timedelta | None = None,
        nx: bool = False, xx: bool = False,
    ) -> bool:
        """SET; True when the value was written (False when ``nx``/``xx`` said no).

        With ``nx`` the call is not idempotent: a retry would find the key it set
        itself and report False.
        """
        result = await self.call(lambda r: r.set(key, value, ex=ex, nx=nx, xx=xx),
                                 idempotent=not nx)
        return bool(result)

    async def delete(self, *keys: KeyT) -> int:
        """DEL; the number of keys removed (after a retry it may count fewer)."""
        return int(await self.call(lambda r: r.delete(*keys), idempotent=True))

    async def exists(self, *keys: KeyT) -> int:
        return int(await self.call(lambda r: r.exists(*keys), idempotent=True))

    async def expire(self, key: KeyT, seconds: int | timedelta) -> bool:
        return bool(await self.call(lambda r: r.expire(key, seconds), idempotent=True))

    async def ttl(self, key: KeyT) -> int:
        """Seconds left; -1 when the key has no expiry, -2 when it does not exist."""
        return int(await self.call(lambda r: r.ttl(key), idempotent=True))

    async def incr(self, key: KeyT, amount: int = 1) -> int:
        """INCRBY: never retried once the request may have reached the server."""
        return int(await self.call(lambda r: r.incrby(key, amount), idempotent=False))

    # -- internals --------------------------------------------------------------------------

    @property
    def _what(self) -> str:
        return f"RedisClient '{self.name}'"

    def _require(self) -> AnyRedis:
        client = self._client
        if client is None:
            if self._closed:
                raise ClosedError(self._what)
            raise ResourceError(
                self.name,
                "not initialized: resolve it from the container (which calls initialize()) "
                "or await initialize() first",
            )
        return client

    async def _attempt(self, fn: Callable[[AnyRedis], Awaitable[T]], client: AnyRedis) -> T:
        try:
            return await fn(client)
        except Exception as error:
            translated = self._translate(error)
            if translated is None:
                raise  # the caller's own error (WRONGTYPE, bad arguments): unchanged
            raise translated from error

    def _translate(self, error: Exception) -> ResourceError | None:
        translated = translate(error, self._limits)
        if isinstance(translated, PoolTimeout):
            self._pool_timeouts += 1
        return translated

    async def _open(self, client: AnyRedis) -> bool:
        if isinstance(client, RedisCluster):
            await self._attempt(lambda c: c.initialize(), client)  # reads the slot map
        return await self._attempt(lambda c: c.ping(), client)

    async def _within_timeout(self, operation: str, fn: Callable[[], Awaitable[T]]) -> T:
        """``await fn()`` bounded by ``timeout`` (by ``socket_connect_timeout`` when
        ``timeout`` is None), outside the policy: a start-up or a health check must
        reach the server even while the breaker is open."""
        timeout = self.config.timeout or self.config.socket_connect_timeout
        try:
            async with asyncio.timeout(timeout):
                return await fn()
        except ResourceError:
            raise
        except TimeoutError as error:
            raise ResourceTimeout(self.name, timeout, operation) from error

    async def _close(self, client: AnyRedis) -> None:
        bound = self.config.socket_connect_timeout + 1.0
        try:
            async with asyncio.timeout(bound):
                await client.aclose()
        except TimeoutError:
            logger.warning("%s: closing the connections took longer than %gs; they were "
                           "abandoned", self.name, bound)
        except Exception:
            logger.warning("%s: closing the connections failed; they were dropped",
                           self.name, exc_info=True)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._client else "not initialized"
        return f"<RedisClient {self.name!r} {self.config.url}, {state}>"


def _policy(config: RedisConfig) -> Policy:
    return Policy.from_options(
        config.name,
        timeout=config.timeout,
        max_retries=config.max_retries,
        circuit_breaker_threshold=config.circuit_breaker_threshold,
        circuit_breaker_reset=config.circuit_breaker_reset,
        exclude=_callers_fault,
    )


def _callers_fault(error: BaseException) -> bool:
    # Errors left untranslated (WRONGTYPE, a syntax error, a WATCH conflict, a bad
    # argument) are the caller's mistakes: they say nothing about the server and must
    # not open the breaker.
    return not isinstance(error, ResourceError)
