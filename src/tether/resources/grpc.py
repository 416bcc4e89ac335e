"""gRPC channels (grpc.aio) with deadlines on every call, health and a bounded close.

One ``GRPCChannel`` owns one ``grpc.aio`` channel to one target. Generated stubs take
``channel.channel``; calls made through ``channel.call(...)`` get the resource's
deadline, retry and breaker policy, and tether's errors::

    container.bind(GRPCConfig, GRPCConfig(target="users.internal:443"))
    container.bind(GRPCChannel)
    ...
    grpc_channel = await scope.aget(GRPCChannel)
    users = UsersStub(grpc_channel.channel)
    user = await grpc_channel.call(users.Get, GetUser(id=7), idempotent=True)

The channel reconnects by itself, with gRPC's own backoff (initial 1 s, x1.6, jitter
0.2, at most 120 s; the ``grpc.*_reconnect_backoff_ms`` options change it). Health is
the standard ``grpc.health.v1`` service when the server offers it.
"""

from __future__ import annotations

try:
    import grpc
    import grpc.aio
    import pydantic  # noqa: F401
    from grpc_health.v1 import health_pb2, health_pb2_grpc
except ImportError:
    raise ImportError(
        "tether.resources.grpc needs the 'grpc' extra: pip install 'tether[grpc]'"
    ) from None

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar

from pydantic import Field, FilePath, field_validator, model_validator

from .._providers import resource
from ..exceptions import ClosedError, ResourceError, ResourceTimeout, ResourceUnavailable
from ..resilience import CircuitBreaker, Policy, Retry
from ._config import ResourceConfig
from ._meter import Meter

__all__ = ["DEFAULT_OPTIONS", "GRPCChannel", "GRPCConfig", "GRPCStats"]

T = TypeVar("T")
logger = logging.getLogger("tether.resources.grpc")

DEFAULT_OPTIONS: Mapping[str, int | str] = MappingProxyType({
    # Retries are tether's policy, which knows whether a call may run twice.
    "grpc.enable_retries": 0,
    # Notice a dead peer during a call within about 40 s; no pings on an idle channel,
    # which servers punish (GOAWAY "too_many_pings") under their default settings.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 0,
})

# UNAVAILABLE details that grpc-core gives when no connection could be made for the
# call: it never reached a server. Any other UNAVAILABLE may have been processed.
_NEVER_SENT = ("failed to connect to all addresses", "DNS resolution failed")

# Status codes that say the server is down, slow or failing, rather than that the
# caller asked for something wrong. DEADLINE_EXCEEDED and UNAVAILABLE have their own
# errors; every code not named here passes through as the AioRpcError it is.
_SERVER_FAULTS = frozenset({
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DATA_LOSS, grpc.StatusCode.CANCELLED,
})

# The deadline (event loop time) of the call() running in this task, for the retry sleeps.
_EXPIRES: ContextVar[float | None] = ContextVar("tether_grpc_expires", default=None)
_BACKSTOP_SLACK = 1.0

_NOT_INITIALIZED = (
    "not initialized: resolve it from the container (which calls initialize()) "
    "or await initialize() first"
)


class GRPCConfig(ResourceConfig):
    """Where the server is, how to reach it, and how long a call may take.

    ``timeout`` is the deadline of each call made through ``call()`` (retries
    included), sent to the server as the gRPC deadline. ``options`` are channel
    arguments, merged over ``DEFAULT_OPTIONS``.
    """

    name: str = Field(default="grpc", min_length=1)
    target: str = Field(min_length=1)
    secure: bool = True
    root_certificates: FilePath | None = None
    certificate_chain: FilePath | None = None
    private_key: FilePath | None = None
    options: dict[str, int | str] = Field(default_factory=dict)
    wait_for_ready: bool = False
    connect_on_start: bool = False
    close_grace: float = Field(default=1.0, ge=0)
    health_mode: Literal["auto", "service", "connectivity"] = "auto"
    health_service: str = ""

    @field_validator("target")
    @classmethod
    def _check_target(cls, target: str) -> str:
        if "://" in target and not target.startswith(("dns:", "unix:", "ipv4:", "ipv6:")):
            raise ValueError(
                "target is host:port (or a gRPC name such as dns:///host:port), not a URL"
            )
        return target

    @model_validator(mode="after")
    def _check_tls(self) -> GRPCConfig:
        tls = [n for n in ("root_certificates", "certificate_chain", "private_key")
               if getattr(self, n) is not None]
        if tls and not self.secure:
            raise ValueError(f"{', '.join(tls)} need secure=True")
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("certificate_chain and private_key go together (client TLS)")
        return self

    def channel_options(self) -> list[tuple[str, int | str]]:
        """The channel arguments the channel is built with: defaults, then ``options``."""
        return list({**DEFAULT_OPTIONS, **self.options}.items())


@dataclass(frozen=True, slots=True)
class GRPCStats:
    """A snapshot of one channel (``channel.statistics()``).

    Counts cover calls made through ``call()``; a stub used on ``.channel`` directly
    is not seen. ``connected`` is 1 while the channel is READY. ``failures_by_kind``
    is keyed by the tether error raised, or by the status code name for errors that
    pass through (``NOT_FOUND``, ``INVALID_ARGUMENT``...).
    """

    connected: int
    calls_total: int
    failures_total: int
    failures_by_kind: Mapping[str, int]
    active: int
    peak: int
    latency_seconds_total: float
    latency_seconds_max: float
    retries_total: int
    rejected_total: int


@resource
class GRPCChannel:
    """A gRPC channel under tether's lifecycle; see the module docstring."""

    def __init__(self, config: GRPCConfig) -> None:
        self.config = config
        self.name = config.name
        self._policy = _policy(config)
        self._meter = Meter()
        self._channel: Any = None
        self._health: Any = None
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------

    async def initialize(self) -> None:
        """Build the channel. gRPC connects on the first call; with
        ``connect_on_start`` this waits for a connection, within ``timeout``."""
        self._check_open()
        if self._channel is not None:
            return
        channel = self._create()
        if self.config.connect_on_start:
            limit = self.config.timeout or 10.0
            try:
                async with asyncio.timeout(limit):
                    await channel.channel_ready()
            except BaseException as err:  # a timeout, or initialize() was cancelled
                await channel.close(None)
                if not isinstance(err, TimeoutError):
                    raise
                raise ResourceUnavailable(
                    self.name, f"no connection to {self.config.target} within {limit:g}s "
                    f"(connect_on_start)", sent=False,
                ) from err
        self._channel = channel
        self._health = health_pb2_grpc.HealthStub(channel)

    async def dispose(self) -> None:
        """Close the channel: calls in flight get ``close_grace`` seconds, then are
        cancelled (they raise ``ResourceUnavailable``). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        channel, self._channel = self._channel, None
        if channel is None:
            return
        grace = self.config.close_grace
        try:
            # grpc bounds close() by the grace; the backstop keeps dispose() bounded
            # whatever the channel does.
            async with asyncio.timeout(grace + 5.0):
                await channel.close(grace or None)
        except TimeoutError:
            logger.warning("%s: closing the channel to %s took longer than %gs; abandoned",
                           self.name, self.config.target, grace + 5.0)
        except Exception:
            logger.warning("%s: closing the channel to %s failed", self.name,
                           self.config.target, exc_info=True)

    async def health_check(self) -> bool:
        """``grpc.health.v1.Health/Check`` for ``health_service``, bounded by ``timeout``.
        Returns True, or raises why not (``container.health()`` reports it).

        ``auto``: SERVING is healthy; a server without the health service that answers
        UNIMPLEMENTED is healthy too (it answered). ``service``: only SERVING is
        healthy. ``connectivity``: the channel reaches READY within ``timeout``.
        """
        channel = self.channel
        limit = self.config.timeout or 10.0
        if self.config.health_mode == "connectivity":
            if not await _ready(channel, limit):
                raise ResourceUnavailable(
                    self.name, f"no connection to {self.config.target} within {limit:g}s",
                    sent=False,
                )
            return True
        return await self._check_service(limit)

    # -- calls ------------------------------------------------------------------------

    @property
    def channel(self) -> Any:
        """The ``grpc.aio.Channel``, for generated stubs."""
        self._check_open()
        if self._channel is None:
            raise ResourceError(self.name, _NOT_INITIALIZED)
        return self._channel

    async def call(
        self,
        method: Callable[..., Awaitable[T]],
        request: Any,
        *,
        idempotent: bool,
        deadline: float | None = None,
        metadata: Sequence[tuple[str, str | bytes]] | None = None,
    ) -> T:
        """Make one unary call (``stub.Method`` or ``channel.unary_unary(...)``).

        ``deadline`` (seconds) replaces the config's ``timeout`` for this call; it is
        sent to the server as the gRPC deadline, and covers retries. ``idempotent``
        says whether the call may run twice: only then is a call that may have reached
        the server retried (``max_retries``). Raises ``ResourceUnavailable``,
        ``ResourceTimeout``, ``ResourceError``, ``CircuitOpen``; errors that are the
        caller's (``INVALID_ARGUMENT``, ``NOT_FOUND``...) pass through as
        ``grpc.aio.AioRpcError``.
        """
        _ = self.channel  # refuses before initialize() and after dispose()
        limit = deadline if deadline is not None else self.config.timeout
        if limit is not None and limit <= 0:
            raise ValueError(f"deadline must be > 0 seconds, got {limit!r}")
        loop = asyncio.get_running_loop()
        expires = None if limit is None else loop.time() + limit
        token = _EXPIRES.set(expires)
        started = self._meter.begin()
        error: Exception | None = None
        try:
            # gRPC's own deadline ends the call (and tells the server); the backstop,
            # a little later, only keeps call() bounded should that signal never come.
            backstop = None if expires is None else expires + _BACKSTOP_SLACK
            async with asyncio.timeout_at(backstop):
                return await self._policy.call(
                    lambda: self._attempt(method, request, expires, limit, metadata),
                    idempotent=idempotent,
                )
        except TimeoutError as err:
            if isinstance(err, ResourceError) or limit is None:
                error = err
                raise
            error = ResourceTimeout(self.name, limit)
            raise error from err
        except Exception as err:
            error = err
            raise
        finally:
            _EXPIRES.reset(token)
            self._meter.end(started)
            if error is not None:
                kind = _kind(error)
                self._meter.failures[kind] = self._meter.failures.get(kind, 0) + 1

    def statistics(self) -> GRPCStats:
        m, p = self._meter, self._policy.statistics()
        channel = self._channel
        ready = channel is not None and \
            channel.get_state(try_to_connect=False) is grpc.ChannelConnectivity.READY
        return GRPCStats(
            connected=int(ready),
            calls_total=m.calls,
            failures_total=m.failures_total,
            failures_by_kind=MappingProxyType(dict(m.failures)),
            active=m.active,
            peak=m.peak,
            latency_seconds_total=m.latency_total,
            latency_seconds_max=m.latency_max,
            retries_total=p.retries_total,
            rejected_total=p.rejected_total,
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._channel is not None else "new"
        return f"GRPCChannel({self.name!r}, {self.config.target}, {state})"

    # -- internals --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"GRPCChannel '{self.name}'")

    def _create(self) -> Any:
        cfg = self.config
        options = cfg.channel_options()
        if not cfg.secure:
            return grpc.aio.insecure_channel(cfg.target, options=options)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(cfg.root_certificates),
            private_key=_read(cfg.private_key),
            certificate_chain=_read(cfg.certificate_chain),
        )
        return grpc.aio.secure_channel(cfg.target, credentials, options=options)

    async def _attempt(
        self,
        method: Callable[..., Awaitable[T]],
        request: Any,
        expires: float | None,
        limit: float | None,
        metadata: Sequence[tuple[str, str | bytes]] | None,
    ) -> T:
        remaining = None if expires is None else expires - asyncio.get_running_loop().time()
        if remaining is not None and limit is not None and remaining <= 0:
            raise ResourceTimeout(self.name, limit)
        try:
            return await method(request, timeout=remaining, metadata=metadata,
                                wait_for_ready=self.config.wait_for_ready)
        except grpc.aio.AioRpcError as err:
            raise self._translate(err, limit) from err
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._closed and task is not None and not task.cancelling():
                # grpc cancels calls still running when the channel closes; to the
                # caller that is a lost connection, not a cancellation of its own task.
                raise ResourceUnavailable(
                    self.name, f"the channel to {self.config.target} was closed (dispose) "
                    f"while the call was in flight", sent=True,
                ) from None
            raise

    def _translate(self, err: Any, limit: float | None) -> Exception:
        code, details = err.code(), err.details() or ""
        target = self.config.target
        if code is grpc.StatusCode.UNAVAILABLE:
            sent = not any(marker in details for marker in _NEVER_SENT)
            return ResourceUnavailable(self.name, f"{target} is unavailable: {details}",
                                       sent=sent)
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return ResourceTimeout(self.name, limit if limit is not None else 0.0,
                                   f"call to {target}")
        if code in _SERVER_FAULTS:
            return ResourceError(self.name, f"{target} failed the call: {code.name}: {details}")
        return err  # type: ignore[no-any-return]

    async def _check_service(self, limit: float) -> bool:
        service = self.config.health_service
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            reply = await self._health.Check(request, timeout=limit)
        except grpc.aio.AioRpcError as err:
            code = err.code()
            if code is grpc.StatusCode.UNIMPLEMENTED and self.config.health_mode == "auto":
                return True
            translated = self._translate(err, limit)
            if isinstance(translated, ResourceError):
                raise translated from err
            raise ResourceError(  # NOT_FOUND: no such service; UNIMPLEMENTED: no health
                self.name, f"health check of service {service!r} on {self.config.target}: "
                f"{code.name}: {err.details()}",
            ) from err
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            raise ResourceUnavailable(
                self.name, f"{self.config.target} reports service {service!r} {status}",
                sent=False,
            )
        return True


def _policy(config: GRPCConfig) -> Policy:
    # The deadline is applied in call() (it changes per call and goes to the server), so
    # the policy only retries and breaks. Errors the caller caused say nothing about
    # the server: the breaker does not count them.
    breaker = None
    if config.circuit_breaker_threshold:
        breaker = CircuitBreaker(
            config.name, threshold=config.circuit_breaker_threshold,
            reset_timeout=config.circuit_breaker_reset,
            exclude=lambda error: not isinstance(error, ResourceError),
        )
    retry = Retry(attempts=config.max_retries + 1) if config.max_retries else None
    return Policy(config.name, timeout=None, retry=retry, breaker=breaker,
                  sleep=_sleep_within_deadline)


async def _sleep_within_deadline(seconds: float) -> None:
    # A backoff sleep never runs past the call's deadline: the attempt after it then
    # fails at once with ResourceTimeout instead of starting late.
    expires = _EXPIRES.get()
    if expires is not None:
        seconds = min(seconds, max(0.0, expires - asyncio.get_running_loop().time()))
    await asyncio.sleep(seconds)


async def _ready(channel: Any, limit: float) -> bool:
    if channel.get_state(try_to_connect=True) is grpc.ChannelConnectivity.READY:
        return True
    try:
        async with asyncio.timeout(limit):
            await channel.channel_ready()
    except TimeoutError:
        return False
    return True


def _kind(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        return str(error.code().name)
    return type(error).__name__


def _read(path: Path | None) -> bytes | None:
    return None if path is None else path.read_bytes()
