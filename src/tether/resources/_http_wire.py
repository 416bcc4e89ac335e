"""What the HTTP client shares with its backends: the request as sent, the response as
received, the connection gate, and the errors every backend raises in the same words."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..exceptions import PoolTimeout, ResourceError, ResourceTimeout, ResourceUnavailable

# RFC 9110 §9.2.2: a request with one of these methods may be sent twice to the same
# effect, so it may be retried after the connection broke with the request in flight.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A request ready for a backend: absolute URL (never with a user or password)."""

    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    content: bytes | None
    where: str  # "GET https://host:port/path" for messages: no query, no credentials


@dataclass(frozen=True, slots=True)
class Settings:
    """What a backend needs from the config, resolved."""

    resource: str
    max_connections: int
    max_keepalive: int
    keepalive_expiry: float
    connect_timeout: float
    read_timeout: float | None
    pool_timeout: float | None
    follow_redirects: bool
    ssl_context: ssl.SSLContext


class Incoming(Protocol):
    """A response whose head has arrived; the body is read through it, then it is closed."""

    status_code: int
    headers: Sequence[tuple[str, str]]

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def read(self) -> bytes: ...

    async def aclose(self) -> None: ...


class Backend(Protocol):
    """One HTTP library behind the client: httpx or aiohttp."""

    async def fetch(self, request: Outgoing) -> Buffered:
        """Send ``request`` and read the whole response; the connection goes back."""
        ...

    async def open(self, request: Outgoing) -> Incoming:
        """Send ``request``; return once the response head is in (holding a connection)."""
        ...

    def translate(self, error: Exception, request: Outgoing) -> ResourceError | None:
        """The tether error for a driver error, or None when ``error`` is not the driver's."""
        ...

    def pool(self) -> tuple[int, int]:
        """(open, idle) connections as the library's own pool counts them."""
        ...

    async def aclose(self) -> None: ...


class Buffered:
    """A response read to its end and closed: the body is in memory."""

    __slots__ = ("body", "headers", "status_code")

    def __init__(self, status_code: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.body = body

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.body:
            yield self.body

    async def read(self) -> bytes:
        return self.body

    async def aclose(self) -> None:
        return None


class Headers(Mapping[str, str]):
    """Response headers: names match in any case; a repeated header reads as its values
    joined by ", " (``get_list`` gives them one by one)."""

    __slots__ = ("_items", "_joined")

    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self._items = tuple(items)
        joined: dict[str, str] = {}
        for name, value in self._items:
            key = name.lower()
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        self._joined = joined

    def __getitem__(self, name: str) -> str:
        return self._joined[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._joined

    def __iter__(self) -> Iterator[str]:
        return iter(self._joined)

    def __len__(self) -> int:
        return len(self._joined)

    def get_list(self, name: str) -> list[str]:
        key = name.lower()
        return [value for n, value in self._items if n.lower() == key]

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self._joined.items())!r})"


class Gate:
    """At most ``size`` requests hold a connection at once; the rest wait in line.

    The client's own pool limit, in front of the library's, so that both backends wait
    for a connection, time out (``PoolTimeout``) and count connections the same way.
    The library's pool is sized the same, so a request that got through the gate never
    waits inside the library: cancelling one that waits inside httpcore's pool can leak
    the slot for good (encode/httpcore#1093), and cancelling one that waits here cannot.
    """

    __slots__ = ("_semaphore", "in_use", "peak", "size", "waiting")

    def __init__(self, size: int) -> None:
        self.size = size
        self._semaphore = asyncio.Semaphore(size)
        self.in_use = 0
        self.peak = 0
        self.waiting = 0

    async def acquire(self, resource: str, timeout: float | None) -> None:
        if self._semaphore.locked():
            self.waiting += 1
            try:
                async with asyncio.timeout(timeout):
                    await self._semaphore.acquire()
            except TimeoutError as error:
                raise PoolTimeout(resource, timeout or 0.0, self.size) from error
            finally:
                self.waiting -= 1
        else:
            await self._semaphore.acquire()  # free: returns without suspending
        self.in_use = in_use = self.in_use + 1
        if in_use > self.peak:
            self.peak = in_use

    def release(self) -> None:
        self.in_use -= 1
        self._semaphore.release()


# -- the errors, in the same words for every backend --------------------------------


def refused(s: Settings, where: str, reason: str) -> ResourceUnavailable:
    return ResourceUnavailable(s.resource, f"cannot connect for {where}: {reason}", sent=False)


def connect_timed_out(s: Settings, where: str) -> ResourceUnavailable:
    return ResourceUnavailable(
        s.resource,
        f"cannot connect for {where}: no connection within "
        f"connect_timeout={s.connect_timeout:g}s",
        sent=False,
    )


def tls_failed(s: Settings, where: str, reason: str) -> ResourceUnavailable:
    return ResourceUnavailable(
        s.resource,
        f"TLS verification failed for {where}: {reason}. Hint: if the server's certificate "
        f"is signed by a private CA, set ca_bundle to that CA's PEM file; "
        f"insecure_skip_verify=True turns verification off (never in production)",
        sent=False,
    )


def tls_handshake_failed(s: Settings, where: str, reason: str) -> ResourceUnavailable:
    return ResourceUnavailable(
        s.resource, f"TLS handshake failed for {where}: {reason}", sent=False
    )


def lost(s: Settings, where: str, reason: str) -> ResourceUnavailable:
    return ResourceUnavailable(
        s.resource,
        f"connection lost during {where}: {reason.rstrip('.')} (the server may have "
        f"received the request)",
        sent=True,
    )


def read_timed_out(s: Settings, where: str) -> ResourceTimeout:
    error = ResourceTimeout(s.resource, s.read_timeout or 0.0, "read")
    error.detail = (
        f"no data from the server within read_timeout={s.read_timeout or 0.0:g}s "
        f"during {where}"
    )
    return error


def pool_timed_out(s: Settings) -> PoolTimeout:
    return PoolTimeout(s.resource, s.pool_timeout or 0.0, s.max_connections)


def undecodable(s: Settings, where: str, reason: str) -> ResourceError:
    return ResourceError(
        s.resource, f"{where} failed: the response body cannot be decoded: {reason}"
    )


def failed(s: Settings, where: str, error: Exception) -> ResourceError:
    text = str(error)
    reason = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return ResourceError(s.resource, f"{where} failed: {reason}")


def cause_of(error: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first error of ``kind`` in ``error``'s chain of causes, itself included."""
    return next((link for link in _chain(error) if isinstance(link, kind)), None)


def os_reason(error: BaseException) -> str | None:
    """The system's words for the first OS error with an errno in ``error``'s causes
    ("Connection refused"), which the libraries wrap in words of their own."""
    for link in _chain(error):
        if isinstance(link, OSError) and not isinstance(link, ssl.SSLError) and \
                link.errno is not None:
            return os.strerror(link.errno)
    return None


def tls_reason(error: BaseException) -> str | None:
    """Why certificate verification failed, when that is what ``error`` comes from."""
    found: str | None = None
    for link in _chain(error):
        if isinstance(link, ssl.SSLCertVerificationError):
            message = getattr(link, "verify_message", None)  # aiohttp's subclass has none
            if message:
                return str(message)
            found = found or str(link)
    return found


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        yield current
        seen.add(id(current))
        current = current.__cause__ or current.__context__


class HTTP5xx(ResourceUnavailable):
    """A 5xx answer, raised inside the policy when ``server_errors_are_failures`` is set
    so that the breaker counts it and idempotent calls retry it; the client catches it
    and returns the response it carries. Its name is the ``failures_by_kind`` key."""

    def __init__(self, resource: str, where: str, reply: Buffered) -> None:
        super().__init__(resource, f"{where} answered {reply.status_code}", sent=True)
        self.reply = reply
