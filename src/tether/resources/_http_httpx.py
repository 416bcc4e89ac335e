"""The httpx backend of ``HTTPClient`` (the default).

httpx leaks pool slots when requests are cancelled, in two ways; the churn test
(tests/resources/http/test_pool.py) reproduces each when its guard is taken away:

- A request cancelled while it waits in httpcore's pool can leave a connection that
  is neither idle nor closed, never reused nor reaped (encode/httpcore#1093, #658,
  #830; open in httpcore 1.0.9). The client's gate (``_http_wire.Gate``) lets no more
  requests into httpcore than it has connections, so none waits there.
- httpcore protects its cleanup (closing a response, giving its connection back) with
  anyio's shielded cancel scopes. A plain ``task.cancel()``, which is also how
  ``asyncio.timeout`` cancels, goes through them: landing during that cleanup, it
  leaves the request registered in the pool and its connection busy for good. So each
  httpx operation here runs in a task of its own under an anyio cancel scope, and a
  cancellation of the caller is passed on as ``scope.cancel()``, which waits for the
  shielded cleanup to end.
"""

from __future__ import annotations

try:
    import httpx
except ImportError:
    raise ImportError(
        "HTTPConfig(backend='httpx') needs the 'http' extra: pip install 'tether[http]'"
    ) from None

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TypeVar

import anyio  # httpcore's own dependency

from ..exceptions import ResourceError
from . import _http_wire as wire

T = TypeVar("T")


_URLS_KEPT = 512


class _NoCookies(DefaultCookiePolicy):
    # A client shared by every request of a service must not carry one caller's cookies
    # into another caller's request: nothing the servers set is kept.
    def set_ok(self, cookie: object, request: object) -> bool:
        return False


async def _guarded(
    work: Awaitable[T], undo: Callable[[T], Awaitable[None]] | None = None
) -> T:
    """Await ``work`` in a task of its own; cancel it through an anyio cancel scope.

    ``undo(result)`` runs when the caller was cancelled just as ``work`` succeeded
    (a response that holds a connection must still be closed).
    """
    loop = asyncio.get_running_loop()
    scope = anyio.CancelScope()
    # The task hands its outcome over itself, as its last step: the caller wakes one
    # loop iteration after the work ends (asyncio.shield would take two), and a
    # cancellation of the caller cancels this future, never the task.
    handoff: asyncio.Future[T] = loop.create_future()
    kept: list[T] = []
    task = loop.create_task(_run(work, scope, handoff, kept))
    try:
        return await handoff
    except asyncio.CancelledError:
        if not handoff.cancelled():
            raise  # the work itself raised CancelledError, the caller was not cancelled
        scope.cancel()
        # Short: the cleanup httpcore shields, no more. Shielded from an anyio caller's
        # cancel scope, which would otherwise cancel this wait again at once.
        with anyio.CancelScope(shield=True):
            await asyncio.wait([task])
        if undo is not None and kept:
            await _guarded(undo(kept[0]))
        raise


async def _run(work: Awaitable[T], scope: anyio.CancelScope, handoff: asyncio.Future[T],
               kept: list[T]) -> None:
    try:
        with scope:
            result = await work
    except BaseException as error:
        if not handoff.done():
            handoff.set_exception(error)
        if not isinstance(error, Exception | asyncio.CancelledError):
            raise  # KeyboardInterrupt, SystemExit: the loop must see them
        return
    if scope.cancelled_caught:
        return  # cancelled through the scope: the caller is already on its way out
    if handoff.done():
        kept.append(result)  # the caller was cancelled just as the work succeeded
    else:
        handoff.set_result(result)


class _Response:
    __slots__ = ("_chunks", "_response", "headers", "status_code")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks: AsyncIterator[bytes] | None = None
        self.status_code = response.status_code
        self.headers: Sequence[tuple[str, str]] = response.headers.multi_items()

    async def chunks(self) -> AsyncIterator[bytes]:
        # One task per chunk, so that a cancellation never lands inside httpx's cleanup.
        self._chunks = chunks = self._response.aiter_bytes()
        while True:
            try:
                yield await _guarded(anext(chunks))
            except StopAsyncIteration:
                return

    async def read(self) -> bytes:
        return await _guarded(self._response.aread())

    async def aclose(self) -> None:
        close = getattr(self._chunks, "aclose", None)  # httpx's is an async generator
        if close is not None:
            await _guarded(close())
        await _guarded(self._response.aclose())


async def _close(response: httpx.Response) -> None:
    await response.aclose()


class HttpxBackend:
    def __init__(self, settings: wire.Settings) -> None:
        self._s = s = settings
        # Parsing a URL is a third of httpx's work to build a request; URLs repeat.
        self._urls: dict[str, httpx.URL] = {}
        limits = httpx.Limits(
            max_connections=s.max_connections,
            max_keepalive_connections=s.max_keepalive,
            keepalive_expiry=s.keepalive_expiry,
        )
        # retries=0: tether's policy decides what is retried, on both backends alike.
        self._transport = httpx.AsyncHTTPTransport(
            verify=s.ssl_context, limits=limits, retries=0, trust_env=False
        )
        self._client = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(
                connect=s.connect_timeout, read=s.read_timeout, write=s.read_timeout,
                pool=s.pool_timeout,
            ),
            follow_redirects=s.follow_redirects,
            max_redirects=20,
            trust_env=False,
            cookies=CookieJar(policy=_NoCookies()),
        )

    async def fetch(self, request: wire.Outgoing) -> wire.Buffered:
        return await _guarded(self._fetch(request))

    async def _fetch(self, request: wire.Outgoing) -> wire.Buffered:
        response = await self._send(request)
        try:
            body = await response.aread()
        finally:
            await response.aclose()
        return wire.Buffered(response.status_code, response.headers.multi_items(), body)

    async def open(self, request: wire.Outgoing) -> _Response:
        return _Response(await _guarded(self._send(request), undo=_close))

    async def _send(self, request: wire.Outgoing) -> httpx.Response:
        url = self._urls.get(request.url)
        if url is None:
            if len(self._urls) >= _URLS_KEPT:
                self._urls.clear()
            url = self._urls[request.url] = httpx.URL(request.url)
        built = self._client.build_request(
            request.method, url, headers=request.headers, content=request.content
        )
        return await self._client.send(built, stream=True)

    def translate(self, error: Exception, request: wire.Outgoing) -> ResourceError | None:
        s, where = self._s, request.where
        if not isinstance(error, httpx.HTTPError | httpx.InvalidURL | ssl.SSLError):
            return None
        if isinstance(error, httpx.PoolTimeout):
            return wire.pool_timed_out(s)
        if isinstance(error, httpx.ConnectTimeout):
            return wire.connect_timed_out(s, where)
        if isinstance(error, httpx.ReadTimeout | httpx.WriteTimeout):
            return wire.read_timed_out(s, where)
        if isinstance(error, httpx.ConnectError):
            reason = wire.tls_reason(error)
            if reason is not None:
                return wire.tls_failed(s, where, reason)
            if wire.cause_of(error, ssl.SSLError) is not None:
                return wire.tls_handshake_failed(s, where, str(error))
            return wire.refused(s, where, wire.os_reason(error) or str(error))
        if isinstance(error, httpx.DecodingError):
            return wire.undecodable(s, where, str(error))
        if isinstance(error, httpx.ReadError | httpx.WriteError | httpx.RemoteProtocolError |
                      httpx.CloseError | ssl.SSLError):
            return wire.lost(s, where, wire.os_reason(error) or str(error) or
                             type(error).__name__)
        return wire.failed(s, where, error)

    def pool(self) -> tuple[int, int]:
        # httpcore's pool is the transport's private attribute; its ``connections`` list
        # and ``is_idle()`` are public httpcore API.
        pool = getattr(self._transport, "_pool", None)
        connections = list(getattr(pool, "connections", ()))
        idle = sum(1 for c in connections if c.is_idle())
        return len(connections), idle

    async def aclose(self) -> None:
        await _guarded(self._client.aclose())
