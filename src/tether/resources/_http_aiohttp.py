"""The aiohttp backend of ``HTTPClient`` (``backend="aiohttp"``)."""

from __future__ import annotations

try:
    import aiohttp
except ImportError:
    raise ImportError(
        "HTTPConfig(backend='aiohttp') needs the 'aiohttp' extra: pip install 'tether[aiohttp]'"
    ) from None

import asyncio
import zlib
from collections.abc import AsyncIterator, Sequence

from aiohttp.http_exceptions import ContentEncodingError

from ..exceptions import ResourceError
from . import _http_wire as wire


class _Response:
    __slots__ = ("_response", "headers", "status_code")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        self.headers: Sequence[tuple[str, str]] = list(response.headers.items())

    def chunks(self) -> AsyncIterator[bytes]:
        return self._response.content.iter_any()

    async def read(self) -> bytes:
        return await self._response.read()

    async def aclose(self) -> None:
        # Once the body was read to its end the connection is back in the pool already
        # and close() leaves it there; before that, close() drops the connection, which
        # cannot be reused with a body left unread in it.
        self._response.close()


class AiohttpBackend:
    def __init__(self, settings: wire.Settings) -> None:
        self._s = s = settings
        self._connector = aiohttp.TCPConnector(
            limit=s.max_connections,
            limit_per_host=0,
            keepalive_timeout=s.keepalive_expiry,
            ssl=s.ssl_context,
        )
        self._session = aiohttp.ClientSession(
            connector=self._connector,
            # The pool wait is tether's (its gate and pool_timeout); the whole call is
            # bounded by the policy's timeout, so aiohttp's 5-minute total is off.
            timeout=aiohttp.ClientTimeout(
                total=None, connect=None, sock_connect=s.connect_timeout,
                sock_read=s.read_timeout,
            ),
            cookie_jar=aiohttp.DummyCookieJar(),  # keep no cookie between callers
            trust_env=False,
            raise_for_status=False,
        )
        # aiohttp sends an idempotent request once more, silently, when the connection
        # drops (aio-libs/aiohttp#7363) and has no public switch for it (#10790);
        # aiohttp's own test client turns it off the same way. Retries are tether's
        # policy's, the same for both backends.
        self._session._retry_connection = False

    async def fetch(self, request: wire.Outgoing) -> wire.Buffered:
        response = await self.open(request)
        try:
            body = await response.read()
        finally:
            await response.aclose()
        return wire.Buffered(response.status_code, response.headers, body)

    async def open(self, request: wire.Outgoing) -> _Response:
        response = await self._session.request(
            request.method,
            request.url,
            headers=list(request.headers),
            data=request.content,
            allow_redirects=self._s.follow_redirects,
            max_redirects=20,
        )
        return _Response(response)

    def translate(self, error: Exception, request: wire.Outgoing) -> ResourceError | None:
        s, where = self._s, request.where
        if not isinstance(error, aiohttp.ClientError | asyncio.TimeoutError):
            return None
        if isinstance(error, aiohttp.ClientConnectorCertificateError):
            return wire.tls_failed(s, where, wire.tls_reason(error) or str(error))
        if isinstance(error, aiohttp.ClientSSLError):
            return wire.tls_handshake_failed(s, where, str(error))
        if isinstance(error, aiohttp.ConnectionTimeoutError):
            return wire.connect_timed_out(s, where)
        if isinstance(error, aiohttp.ClientConnectorError):
            return wire.refused(s, where, wire.os_reason(error) or _reason(error))
        if isinstance(error, aiohttp.SocketTimeoutError):
            return wire.read_timed_out(s, where)
        decoding = wire.cause_of(error, ContentEncodingError)
        if decoding is not None:
            zlib_error = wire.cause_of(decoding, zlib.error)
            return wire.undecodable(s, where, str(zlib_error or decoding))
        if isinstance(error, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
            return wire.lost(s, where, wire.os_reason(error) or _reason(error))
        if isinstance(error, aiohttp.ClientResponseError) and error.status == 400 and \
                not isinstance(error, aiohttp.TooManyRedirects):
            # aiohttp reports a reply it cannot parse as a 400 "error" of its own.
            return wire.lost(s, where, f"invalid response: {error.message}")
        if isinstance(error, asyncio.TimeoutError):
            return None  # the policy's deadline, not aiohttp's
        return wire.failed(s, where, error)

    def pool(self) -> tuple[int, int]:
        # aiohttp counts its connections in private attributes only.
        busy = len(getattr(self._connector, "_acquired", ()))
        idle = sum(len(v) for v in getattr(self._connector, "_conns", {}).values())
        return busy + idle, idle

    async def aclose(self) -> None:
        await self._session.close()


def _reason(error: aiohttp.ClientError) -> str:
    return str(error) or type(error).__name__
