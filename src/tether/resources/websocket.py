"""WebSocket client sessions that stay connected: keepalive pings, reconnects, health.

One ``WebSocketClient`` holds one connection to one server for the life of its scope.
A background supervisor pings the server every ``ping_interval`` seconds; when a pong
does not come within ``ping_timeout``, or the connection drops, the client is marked
disconnected at once and reconnects with capped, jittered exponential backoff.

    container.bind(WebSocketConfig, WebSocketConfig(url="wss://feed.example.com/ws"))
    container.bind(WebSocketClient)
    ...
    ws = await scope.aget(WebSocketClient)
    await ws.send('{"subscribe": "prices"}')
    message = await ws.recv(timeout=30)

WebSocket has no replay: what the server sends while the client is disconnected is
lost. ``recv()`` says so once per lost connection (``ResourceUnavailable``), so the
caller can subscribe again; messages that arrived before the loss are still returned.
"""

from __future__ import annotations

try:
    import pydantic  # noqa: F401
    import websockets  # noqa: F401
except ImportError:
    raise ImportError(
        "tether.resources.websocket needs the 'websocket' extra: "
        "pip install 'tether[websocket]'"
    ) from None

import asyncio
import logging
import random
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType

from pydantic import ConfigDict, Field, FilePath, SecretStr, field_validator, model_validator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidURI,
)
from websockets.protocol import State
from websockets.uri import parse_uri

from .._providers import resource
from ..exceptions import ClosedError, ResourceError, ResourceTimeout, ResourceUnavailable
from ._config import ResourceConfig
from ._meter import Meter

__all__ = ["WebSocketClient", "WebSocketConfig", "WebSocketStats"]

logger = logging.getLogger("tether.resources.websocket")

Message = str | bytes

_NOT_INITIALIZED = (
    "not initialized: resolve it from the container (which calls initialize()) "
    "or await initialize() first"
)


class WebSocketConfig(ResourceConfig):
    """Where to connect, how to notice a dead peer, and how to come back.

    ``url`` and ``headers`` are secrets (a token often rides in the query string or an
    ``Authorization`` header): they never appear in a repr, log line or error; messages
    name the server as ``scheme://host:port/path``. ``timeout`` is the deadline of one
    ``send()``, waiting for a reconnect included.
    """

    model_config = ConfigDict(hide_input_in_errors=True)

    name: str = Field(default="websocket", min_length=1)
    url: SecretStr
    headers: dict[str, str | SecretStr] = Field(default_factory=dict)
    subprotocols: tuple[str, ...] = ()
    open_timeout: float = Field(default=10.0, gt=0)
    ping_interval: float | None = Field(default=20.0, gt=0)
    ping_timeout: float | None = Field(default=20.0, gt=0)
    close_timeout: float = Field(default=10.0, gt=0)
    max_size: int | None = Field(default=2**20, ge=1)
    max_queue: int = Field(default=16, ge=1)
    compression: bool = True
    reconnect: bool = True
    max_reconnect_attempts: int | None = Field(default=None, ge=1)
    backoff_initial: float = Field(default=1.0, gt=0)
    backoff_max: float = Field(default=30.0, gt=0)
    backoff_multiplier: float = Field(default=1.6, ge=1)
    backoff_jitter: float = Field(default=0.2, ge=0, lt=1)
    verify: bool = True
    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    trust_env: bool = True

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: SecretStr) -> SecretStr:
        try:
            parse_uri(url.get_secret_value())
        except InvalidURI:
            # Not the URL itself in the message: it may carry a token.
            raise ValueError("url must be a ws:// or wss:// URL with a host") from None
        return url

    @field_validator("headers")
    @classmethod
    def _hide_headers(cls, headers: dict[str, str | SecretStr]) -> dict[str, str | SecretStr]:
        # Every value is kept secret: which header carries a token is the server's call.
        return {k: v if isinstance(v, SecretStr) else SecretStr(v) for k, v in headers.items()}

    @model_validator(mode="after")
    def _check_combinations(self) -> WebSocketConfig:
        if self.backoff_max < self.backoff_initial:
            raise ValueError(
                f"backoff_max={self.backoff_max:g} must be >= "
                f"backoff_initial={self.backoff_initial:g}"
            )
        tls = [n for n in ("ca_file", "cert_file", "key_file") if getattr(self, n) is not None]
        if not self.verify:
            tls.append("verify")
        if tls and not self.secure:
            raise ValueError(f"{', '.join(tls)} only apply to wss:// URLs")
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file (the client certificate)")
        return self

    @property
    def secure(self) -> bool:
        return parse_uri(self.url.get_secret_value()).secure

    @property
    def display_url(self) -> str:
        """The URL without user, password or query: safe for logs and errors."""
        uri = parse_uri(self.url.get_secret_value())
        scheme = "wss" if uri.secure else "ws"
        host = f"[{uri.host}]" if ":" in uri.host else uri.host
        return f"{scheme}://{host}:{uri.port}{uri.path}"

    def reconnect_delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect attempt ``attempt`` (1-based).

        Exponential from ``backoff_initial`` by ``backoff_multiplier``, capped at
        ``backoff_max``, then spread by ``backoff_jitter`` (a fraction) so that many
        clients cut off together do not come back together. Never above the cap.
        """
        base = min(self.backoff_max, self.backoff_initial * self.backoff_multiplier ** (
            min(attempt, 64) - 1))
        low = base * (1.0 - self.backoff_jitter)
        high = min(self.backoff_max, base * (1.0 + self.backoff_jitter))
        return random.uniform(low, high)


@dataclass(frozen=True, slots=True)
class WebSocketStats:
    """A snapshot of one client (``client.statistics()``).

    ``connected`` is 1 while a connection is up. ``connections_lost_total`` counts
    drops and ping timeouts; ``reconnect_attempts_total`` every try after a loss,
    ``reconnects_total`` the ones that succeeded. ``ping_seconds`` is the last ping
    round trip. ``retries_total`` counts sends retried under ``max_retries`` (only those
    that never left). ``failures_by_kind`` counts failed sends, receives and connects by
    the tether error raised.
    """

    connected: int
    messages_sent_total: int
    messages_received_total: int
    sends_total: int
    send_seconds_total: float
    send_seconds_max: float
    connections_lost_total: int
    ping_timeouts_total: int
    reconnect_attempts_total: int
    reconnects_total: int
    ping_seconds: float
    retries_total: int
    failures_total: int
    failures_by_kind: Mapping[str, int]


class _State(Enum):
    NEW = "new"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    DOWN = "down"  # lost, and not coming back: reconnect is off or gave up
    CLOSED = "closed"


@resource
class WebSocketClient:
    """A WebSocket connection that reconnects; see the module docstring."""

    def __init__(self, config: WebSocketConfig) -> None:
        self.config = config
        self.name = config.name
        self._policy = config.policy()
        self._meter = Meter()
        self._state = _State.NEW
        self._changed = asyncio.Event()
        self._conn: ClientConnection | None = None
        # The connection recv() last read from. After a loss it is kept until its
        # buffered messages are read and the loss is reported, once, by recv().
        self._reader: ClientConnection | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._ssl: ssl.SSLContext | None = None
        self._down_reason = ""  # why there is no connection, for errors and health
        self._loss = ""
        self._received = 0
        self._sent = 0
        self._lost = 0
        self._ping_timeouts = 0
        self._attempts = 0
        self._reconnects = 0
        self._latency = 0.0

    # -- lifecycle --------------------------------------------------------------------

    async def initialize(self) -> None:
        """Open the first connection (bounded by ``open_timeout``) and start watching it.

        Raises ``ResourceUnavailable`` (refused, unreachable), ``ResourceTimeout`` (no
        handshake within ``open_timeout``) or ``ResourceError`` (handshake refused, TLS):
        a client that never connected does not keep retrying on its own.
        """
        if self._state is _State.CLOSED:
            raise ClosedError(f"WebSocketClient '{self.name}'")
        if self._state is not _State.NEW:
            return
        self._ssl = self._ssl_context()
        conn = await self._open()
        if self._disposed():  # dispose() ran while we were connecting
            await self._close(conn)
            raise ClosedError(f"WebSocketClient '{self.name}'")
        self._up(conn)
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"tether websocket {self.name}"
        )
        logger.info("%s: connected to %s", self.name, self.config.display_url)

    async def dispose(self) -> None:
        """Stop reconnecting and close the connection; bounded by ``close_timeout``."""
        if self._state is _State.CLOSED:
            return
        self._set_state(_State.CLOSED)
        task, self._supervisor = self._supervisor, None
        if task is not None:
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=self.config.close_timeout)
            if not done:
                logger.warning("%s: the reconnect supervisor did not stop within %gs",
                               self.name, self.config.close_timeout)
            elif not task.cancelled() and task.exception() is not None:
                logger.error("%s: the reconnect supervisor had failed", self.name,
                             exc_info=task.exception())
        conns = {c for c in (self._conn, self._reader) if c is not None}
        self._conn = self._reader = None
        for conn in conns:
            await self._close(conn)

    async def health_check(self) -> bool:
        """A ping round trip on the live connection, bounded by ``ping_timeout``
        (``timeout`` when pings are off). Returns True, or raises why not:
        ``ResourceUnavailable`` while disconnected, ``ResourceTimeout`` for no pong."""
        self._check_usable()
        conn = self._conn
        if self._state is not _State.CONNECTED or conn is None:
            raise ResourceUnavailable(
                self.name, f"not connected to {self.config.display_url}: "
                f"{self._down_reason}", sent=False,
            )
        limit = self.config.ping_timeout or self.config.timeout or 10.0
        try:
            if await self._ping(conn, limit):
                return True
        except ConnectionClosed as err:
            raise ResourceUnavailable(
                self.name, f"the connection to {self.config.display_url} was lost "
                f"({_why(err)})", sent=False,
            ) from err
        raise ResourceTimeout(self.name, limit, f"ping to {self.config.display_url}")

    # -- calls ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._state is _State.CONNECTED

    async def send(self, message: Message) -> None:
        """Send one text (``str``) or binary (``bytes``) message.

        While the client is reconnecting this waits for the new connection, within
        ``timeout``. Raises ``ResourceUnavailable(sent=False)`` when there is no
        connection to send on (the message never left), ``ResourceUnavailable(sent=True)``
        when the connection broke during the send (the server may or may not have it),
        ``ResourceTimeout`` at the deadline.
        """
        self._check_usable()
        if not isinstance(message, str | bytes):
            raise TypeError(
                f"WebSocketClient.send() takes str or bytes, not {type(message).__name__}"
            )
        started = self._meter.begin()
        error: Exception | None = None
        try:
            await self._policy.call(lambda: self._send_once(message), idempotent=False)
        except Exception as err:
            error = err
            raise
        finally:
            self._meter.end(started, error)
        self._sent += 1

    async def recv(self, timeout: float | None = None) -> Message:
        """The next message: ``str`` for a text frame, ``bytes`` for a binary one.

        Waits as long as it takes (a server push has no deadline) unless ``timeout``
        is given (``ResourceTimeout`` then). Raises ``ResourceUnavailable`` once per
        lost connection, after the messages that arrived before the loss; the next call
        waits for the reconnect. Not for two tasks at once (websockets' ConcurrencyError).
        """
        self._check_usable()
        try:
            async with asyncio.timeout(timeout):
                return await self._recv_once()
        except TimeoutError as err:
            if isinstance(err, ResourceError) or timeout is None:
                raise
            # Not a failure: a quiet server is no fault.
            raise ResourceTimeout(self.name, timeout, "recv") from err

    async def messages(self) -> AsyncIterator[Message]:
        """``recv()`` in a loop. Ends when the client is disposed; raises what
        ``recv()`` raises otherwise (after a ``ResourceUnavailable``, iterate again)."""
        while True:
            try:
                yield await self.recv()
            except ClosedError:
                return

    def statistics(self) -> WebSocketStats:
        m = self._meter
        return WebSocketStats(
            connected=int(self._state is _State.CONNECTED),
            messages_sent_total=self._sent,
            messages_received_total=self._received,
            sends_total=m.calls,
            send_seconds_total=m.latency_total,
            send_seconds_max=m.latency_max,
            connections_lost_total=self._lost,
            ping_timeouts_total=self._ping_timeouts,
            reconnect_attempts_total=self._attempts,
            reconnects_total=self._reconnects,
            ping_seconds=self._latency,
            retries_total=self._policy.retries_total,
            failures_total=m.failures_total,
            failures_by_kind=MappingProxyType(dict(m.failures)),
        )

    def __repr__(self) -> str:
        return (f"WebSocketClient({self.name!r}, {self.config.display_url}, "
                f"{self._state.value})")

    # -- sending and receiving ----------------------------------------------------------

    async def _send_once(self, message: Message) -> None:
        conn = await self._live()
        try:
            await conn.send(message)
        except ConnectionClosed as err:
            raise ResourceUnavailable(
                self.name, f"the connection to {self.config.display_url} broke during "
                f"the send ({_why(err)}); the server may or may not have the message",
                sent=True,
            ) from err

    async def _recv_once(self) -> Message:
        conn = self._reader
        if conn is None:
            conn = self._reader = await self._live()
        try:
            message = await conn.recv()
        except ConnectionClosed as err:
            self._reader = None
            if self._state is _State.CLOSED:
                raise ClosedError(f"WebSocketClient '{self.name}'") from err
            self._count_failure("ResourceUnavailable")
            after = "the client reconnects" if self.config.reconnect else "reconnect is off"
            raise ResourceUnavailable(
                self.name, f"the connection to {self.config.display_url} was lost "
                f"({_why(err)}); messages the server sends before the reconnect are lost; "
                f"{after}", sent=False,
            ) from err
        self._received += 1
        return message

    async def _live(self) -> ClientConnection:
        """The open connection, waiting for a reconnect in progress.

        A connection that is closing (or closed, before the supervisor has noticed)
        is not returned: a send on it could not leave, and a recv would report its loss
        a second time.
        """
        while True:
            changed = self._changed
            conn = self._conn
            if self._state is _State.CONNECTED and conn is not None \
                    and conn.state is State.OPEN:
                return conn
            if self._state is _State.DOWN:
                raise ResourceUnavailable(
                    self.name, f"not connected to {self.config.display_url}: "
                    f"{self._down_reason}", sent=False,
                )
            self._check_usable()
            await changed.wait()

    def _disposed(self) -> bool:
        return self._state is _State.CLOSED

    def _check_usable(self) -> None:
        if self._state is _State.CLOSED:
            raise ClosedError(f"WebSocketClient '{self.name}'")
        if self._state is _State.NEW:
            raise ResourceError(self.name, _NOT_INITIALIZED)

    def _count_failure(self, kind: str) -> None:
        failures = self._meter.failures
        failures[kind] = failures.get(kind, 0) + 1

    # -- connecting ---------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext | None:
        cfg = self.config
        if not cfg.secure:
            return None
        try:
            context = ssl.create_default_context(
                cafile=str(cfg.ca_file) if cfg.ca_file is not None else None
            )
            if cfg.cert_file is not None:
                context.load_cert_chain(
                    str(cfg.cert_file), str(cfg.key_file) if cfg.key_file is not None else None
                )
        except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
            raise ResourceError(
                self.name, f"cannot load the TLS files (ca_file, cert_file, key_file): {err}"
            ) from err
        if not cfg.verify:
            logger.warning("%s: TLS certificate verification is off (verify=False) for %s",
                           self.name, cfg.display_url)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _open(self) -> ClientConnection:
        cfg = self.config
        options: dict[str, object] = {}
        if self._ssl is not None:
            options["ssl"] = self._ssl
        try:
            # Keepalive is ours (see _watch): websockets' own would hold the connection
            # as "open" for close_timeout more seconds after a missed pong.
            return await connect(
                cfg.url.get_secret_value(),
                additional_headers={k: _plain(v) for k, v in cfg.headers.items()},
                subprotocols=list(cfg.subprotocols) or None,  # type: ignore[arg-type]
                compression="deflate" if cfg.compression else None,
                proxy=True if cfg.trust_env else None,
                open_timeout=cfg.open_timeout,
                ping_interval=None,
                ping_timeout=None,
                close_timeout=cfg.close_timeout,
                max_size=cfg.max_size,
                max_queue=cfg.max_queue,
                **options,  # type: ignore[arg-type]
            )
        except Exception as err:
            raise self._connect_error(err) from err

    def _connect_error(self, err: Exception) -> Exception:
        where = self.config.display_url
        if isinstance(err, TimeoutError):
            return ResourceTimeout(self.name, self.config.open_timeout, f"connect to {where}")
        if isinstance(err, ssl.SSLError):  # before OSError: SSLError is one
            return ResourceError(self.name, f"TLS handshake with {where} failed: "
                                 f"{getattr(err, 'reason', None) or err}")
        if isinstance(err, InvalidStatus):
            status = err.response.status_code
            detail = f"the server at {where} refused the WebSocket handshake: HTTP {status}"
            if status >= 500:
                return ResourceUnavailable(self.name, detail, sent=False)
            return ResourceError(self.name, detail)
        if isinstance(err, InvalidMessage | OSError):
            return ResourceUnavailable(
                self.name, f"cannot connect to {where}: {err}", sent=False
            )
        if isinstance(err, InvalidHandshake):
            return ResourceError(self.name, f"WebSocket handshake with {where} failed: {err}")
        return err

    # -- the supervisor -----------------------------------------------------------------

    async def _supervise(self) -> None:
        try:
            while self._conn is not None:
                conn = self._conn
                reason = await self._watch(conn)
                self._lose(reason)
                if not self.config.reconnect:
                    self._down(f"{self._loss}; reconnect is off")
                    return
                new = await self._reconnect()
                if new is None:
                    self._down(f"{self._loss}; gave up after "
                               f"{self.config.max_reconnect_attempts} reconnect attempts")
                    return
                self._up(new)
        except Exception as err:
            # A bug, not a network fault: say so and stop waiters hanging on a reconnect.
            logger.exception("%s: the reconnect supervisor failed", self.name)
            self._down(f"the reconnect supervisor failed ({type(err).__name__})")

    async def _watch(self, conn: ClientConnection) -> str:
        """Return why ``conn`` is no longer usable: it closed, or a ping went unanswered."""
        interval, timeout = self.config.ping_interval, self.config.ping_timeout
        while True:
            try:
                async with asyncio.timeout(interval):
                    await conn.wait_closed()
                return _closed(conn.close_code, conn.close_reason)
            except TimeoutError:
                pass
            try:
                if await self._ping(conn, timeout):
                    continue
            except ConnectionClosed:
                continue  # wait_closed() returns at once on the next turn
            self._ping_timeouts += 1
            # A peer that misses pongs will not answer a closing handshake either.
            conn.transport.abort()
            return f"no pong within ping_timeout={timeout:g}s"

    async def _ping(self, conn: ClientConnection, timeout: float | None) -> bool:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                pong = await conn.ping()
                await pong
        except TimeoutError:
            return False
        self._latency = time.perf_counter() - started
        return True

    async def _reconnect(self) -> ClientConnection | None:
        cfg = self.config
        attempt = 0
        while cfg.max_reconnect_attempts is None or attempt < cfg.max_reconnect_attempts:
            attempt += 1
            delay = cfg.reconnect_delay(attempt)
            await asyncio.sleep(delay)
            self._attempts += 1
            try:
                conn = await self._open()
            except ResourceError as err:
                self._count_failure(type(err).__name__)
                self._down_reason = f"{self._loss}; reconnect attempt {attempt} failed: " \
                    f"{err.detail}"
                logger.info("%s: reconnect attempt %d failed: %s", self.name, attempt, err)
                continue
            self._reconnects += 1
            logger.info("%s: reconnected to %s (attempt %d)", self.name, cfg.display_url,
                        attempt)
            return conn
        return None

    def _up(self, conn: ClientConnection) -> None:
        self._conn = conn
        if self._state is not _State.CLOSED:  # dispose() closes it
            self._set_state(_State.CONNECTED)

    def _lose(self, reason: str) -> None:
        self._lost += 1
        self._conn = None
        self._loss = f"lost the connection ({reason})"
        self._down_reason = self._loss + ("; reconnecting" if self.config.reconnect else "")
        logger.warning("%s: lost the connection to %s (%s)", self.name,
                       self.config.display_url, reason)
        self._set_state(_State.RECONNECTING)

    def _down(self, reason: str) -> None:
        self._down_reason = reason
        logger.error("%s: %s; not connected to %s", self.name, reason, self.config.display_url)
        self._set_state(_State.DOWN)

    def _set_state(self, state: _State) -> None:
        if self._state is _State.CLOSED:
            return
        self._state = state
        # Wake everyone waiting on the old state; later waiters take the new event.
        self._changed.set()
        self._changed = asyncio.Event()

    async def _close(self, conn: ClientConnection) -> None:
        # websockets bounds the closing handshake by close_timeout, then aborts; the
        # outer bound is a backstop so that dispose() can never hang.
        try:
            async with asyncio.timeout(self.config.close_timeout * 2):
                await conn.close()
        except TimeoutError:
            logger.warning("%s: closing the connection took longer than %gs; aborted it",
                           self.name, self.config.close_timeout * 2)
            conn.transport.abort()
        except Exception:
            logger.warning("%s: closing the connection failed", self.name, exc_info=True)


def _plain(value: str | SecretStr) -> str:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _why(error: ConnectionClosed) -> str:
    frame = error.rcvd or error.sent
    return _closed(None if frame is None else int(frame.code),
                   None if frame is None else frame.reason)


def _closed(code: int | None, reason: str | None) -> str:
    if code is None or code == 1006:
        return "closed without a closing handshake"
    return f"closed with code {code}" + (f" ({reason})" if reason else "")
