"""The redis-py side of ``tether.resources.redis``: building the client with redis-py's
own retries turned off, telling a connect failure from a lost reply, and translating
redis-py's errors into tether's.

redis-py retries every failed command three times by default, idempotent or not: a
lost reply to ``INCR`` increments twice, and a frozen server answers a call with
``socket_timeout=0.5`` after 2.9 s. Here every connection gets ``Retry(NoBackoff(), 0)``
and tether's policy decides, knowing whether the call is idempotent and whether the
request can have left.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final, TypeAlias, TypeVar, cast
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    InvalidResponse,
    MaxConnectionsError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.maint_notifications import MaintNotificationsConfig

from ..exceptions import PoolTimeout, ResourceError, ResourceTimeout, ResourceUnavailable

AnyRedis: TypeAlias = Redis | RedisCluster
C = TypeVar("C", bound=AbstractConnection)

CLUSTER_SCHEMES: Final = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
SCHEMES: Final = ("redis", "rediss", "unix", *CLUSTER_SCHEMES)

# BlockingConnectionPool raises a plain ConnectionError with this text when no
# connection came free within its timeout (redis/redis-py#3237: the types differ).
_POOL_EXHAUSTED: Final = "No connection available."


def no_retries() -> Retry:
    return Retry(NoBackoff(), 0)


def no_maintenance_notifications() -> MaintNotificationsConfig:
    # With maintenance notifications on (redis-py's "auto" for RESP3), the pool skips
    # its check for connections the server has closed, counting on its own retries to
    # recover. Those are off here, so without the check the first call on every pooled
    # connection would fail after a server restart or an idle timeout.
    return MaintNotificationsConfig(enabled=False)


# -- knowing that a request never left --------------------------------------------------


class ConnectFailed(RedisConnectionError):
    """Connecting (or the handshake: AUTH, HELLO, SELECT) failed: no command of the
    caller's was written on this connection."""


class ConnectTimedOut(RedisTimeoutError):
    """Connecting (or the handshake) ran past ``socket_connect_timeout``/``socket_timeout``."""


class _MarksConnectFailures:
    """Mixed into redis-py's connection classes: a failure while connecting raises a
    subclass of the error redis-py raises, so the translation can tell "never sent"
    (safe to retry even INCR) from "sent, reply lost" without reading messages.

    Only the plain types are re-raised as subclasses; AuthenticationError, BusyLoading
    and the rest keep their own type.
    """

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        try:
            await super().connect_check_health(  # type: ignore[misc]
                check_health=check_health, retry_socket_connect=retry_socket_connect
            )
        except RedisError as error:
            if type(error) is RedisConnectionError:
                raise ConnectFailed(*error.args) from error
            if type(error) is RedisTimeoutError:
                raise ConnectTimedOut(*error.args) from error
            raise


class MarkedConnection(_MarksConnectFailures, Connection):
    pass


class MarkedSSLConnection(_MarksConnectFailures, SSLConnection):
    pass


class MarkedUnixConnection(_MarksConnectFailures, UnixDomainSocketConnection):
    pass


_MARKED: Final[dict[type[AbstractConnection], type[AbstractConnection]]] = {
    Connection: MarkedConnection,
    SSLConnection: MarkedSSLConnection,
    UnixDomainSocketConnection: MarkedUnixConnection,
}


def marked(connection_class: type[C]) -> type[C]:
    """The marking subclass of a redis-py connection class (itself if it has none)."""
    return cast("type[C]", _MARKED.get(connection_class, connection_class))


# -- building the client -------------------------------------------------------------------


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def plain_url(url: str) -> str:
    """``redis+cluster://...`` as the ``redis://...`` URL redis-py understands."""
    scheme, sep, rest = url.partition("://")
    return f"{CLUSTER_SCHEMES.get(scheme, scheme)}{sep}{rest}"


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``(url without credentials, username, password)``: the user and password taken
    from the URL's userinfo (``redis://user:pw@host``) or from its ``username=`` and
    ``password=`` query options, so the URL left over is safe to show."""
    parts = urlsplit(url)
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    query = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "username":
            username = value or username
        elif key == "password":
            password = value or password
        else:
            query.append((key, value))
    # Rebuilt by hand: urlunsplit() drops the "//" of schemes it does not know (unix).
    bare = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    if query:
        bare += f"?{urlencode(query)}"
    return bare, username, password


def check_url(url: str, cluster: bool) -> None:
    """Raise ValueError (without repeating the URL: it may hold a password) when
    redis-py would refuse ``url``."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ValueError(
            f"the scheme must be one of {', '.join(s + '://' for s in SCHEMES)}, "
            f"got {scheme + '://' if scheme else 'none'}"
        )
    try:
        options = parse_url(plain_url(url))
    except ValueError as error:
        raise ValueError(str(error)) from None
    if cluster or scheme in CLUSTER_SCHEMES:
        if scheme == "unix":
            raise ValueError("Redis Cluster cannot be reached over a unix:// socket")
        if options.get("db", 0) not in (0, "0"):
            raise ValueError("Redis Cluster has only database 0: drop the /N from the URL")


def build_client(url: str, cluster: bool, options: dict[str, Any]) -> AnyRedis:
    """A client whose connections never retry on their own; nothing is connected yet.

    ``options`` (pool size, timeouts, decoding) win over the same options written in
    the URL's query string.
    """
    if cluster or is_cluster_url(url):
        return _build_cluster(plain_url(url), options)
    kwargs: dict[str, Any] = {**parse_url(url), **options}
    kwargs["connection_class"] = marked(kwargs.get("connection_class", Connection))
    max_connections = kwargs.pop("max_connections")
    pool_timeout = kwargs.pop("pool_timeout")
    pool = BlockingConnectionPool(
        max_connections=max_connections, timeout=pool_timeout, retry=no_retries(),
        maint_notifications_config=no_maintenance_notifications(), **kwargs,
    )
    return Redis.from_pool(pool)


def _build_cluster(url: str, options: dict[str, Any]) -> RedisCluster:
    options = dict(options)
    options.pop("pool_timeout")  # redis-py's cluster pools do not wait: see docs
    client = RedisCluster.from_url(
        url, retry=no_retries(), maint_notifications_config=no_maintenance_notifications(),
        **options,
    )
    # RedisCluster has no connection_class option: it picks Connection or
    # SSLConnection itself. Swap in the marked class before anything connects; every
    # node it discovers later is built from these same connection_kwargs.
    kwargs = client.connection_kwargs
    kwargs["connection_class"] = marked(kwargs.get("connection_class", Connection))
    for node in client.startup_nodes:
        node.connection_class = marked(node.connection_class)
    return client


def pool_counts(client: AnyRedis) -> tuple[int, int]:
    """(connections in use, idle connections) across the client's pools."""
    if isinstance(client, Redis):
        idle, in_use = (count for count, _ in client.connection_pool.get_connection_count())
        return in_use, idle
    # redis-py keeps no public count for cluster nodes; read their pools directly.
    in_use = idle = 0
    for node in client.get_nodes():
        total, free = len(node._connections), len(node._free)
        in_use += total - free
        idle += free
    return in_use, idle


# -- translating errors ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Limits:
    """What a translated error reports about the resource: its name and limits."""

    name: str
    pool_timeout: float
    max_connections: int
    socket_timeout: float | None


def translate(error: BaseException, limits: Limits) -> ResourceError | None:
    """tether's error for a redis-py (or socket) error, or None when the error is the
    caller's own (a WRONGTYPE or syntax reply, a bad argument, a WATCH conflict) and
    should reach them unchanged."""
    name = limits.name
    if isinstance(error, ResourceError):
        return None  # already tether's (a nested call through the same resource)
    if isinstance(error, MaxConnectionsError):
        # The cluster's per-node pools do not wait; a full one fails at once.
        return PoolTimeout(name, 0.0, limits.max_connections)
    if type(error) is RedisConnectionError and error.args == (_POOL_EXHAUSTED,):
        return PoolTimeout(name, limits.pool_timeout, limits.max_connections)
    if isinstance(error, ConnectFailed):
        return ResourceUnavailable(name, f"cannot connect: {error}", sent=False)
    if isinstance(error, ConnectTimedOut):
        return ResourceUnavailable(name, f"connecting timed out: {error}", sent=False)
    if isinstance(error, AuthenticationError | AuthenticationWrongNumberOfArgsError |
                  AuthorizationError):
        return ResourceError(name, f"the server refused the credentials in the URL: {error}")
    if isinstance(error, BusyLoadingError | ClusterDownError | TryAgainError |
                  SlotNotCoveredError):
        # The server answered without running the command: safe to run again.
        return ResourceUnavailable(name, f"the server cannot serve yet: {error}", sent=False)
    if isinstance(error, RedisConnectionError | ConnectionError):
        return ResourceUnavailable(name, f"connection lost during the call: {error}", sent=True)
    if isinstance(error, RedisTimeoutError | asyncio.TimeoutError):
        return ResourceTimeout(name, limits.socket_timeout or 0.0, "socket read or write")
    if isinstance(error, OSError):
        return ResourceUnavailable(name, f"connection lost during the call: {error}", sent=True)
    if isinstance(error, RedisClusterException) and isinstance(
        error.__cause__, RedisConnectionError | RedisTimeoutError | OSError
    ):
        # "Redis Cluster cannot be connected": discovering the nodes failed, before
        # the command was sent. Other RedisClusterExceptions are the caller's (keys in
        # different slots, a command with no key).
        return ResourceUnavailable(name, f"cannot reach the cluster: {error}", sent=False)
    if isinstance(error, OutOfMemoryError | ReadOnlyError):
        return ResourceError(name, f"the server refused a write: {error}")
    if isinstance(error, InvalidResponse):
        return ResourceError(name, f"the server sent a reply that is not RESP: {error}")
    return None
