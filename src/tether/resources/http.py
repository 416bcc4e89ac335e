"""An HTTP client as a tether resource: httpx by default, aiohttp behind the same calls.

    container.bind(HTTPConfig, HTTPConfig(name="api", base_url="http://127.0.0.1:8080"))
    container.bind(HTTPClient)
    ...
    api = await container.aget(HTTPClient)
    reply = await api.get("/users/1")            # HTTPResponse: body read, connection back
    reply.raise_for_status().json()

Every call runs under the config's policy (one deadline for the whole call, retries for
idempotent methods only, an optional circuit breaker), and driver errors arrive as
tether's: ``PoolTimeout``, ``ResourceTimeout``, ``ResourceUnavailable`` (``sent`` says
whether the server may have seen the request) or ``ResourceError``. HTTP 4xx and 5xx
are answers, not errors. docs/http.md has every option.
"""

from __future__ import annotations

try:
    import pydantic  # noqa: F401
except ImportError:
    raise ImportError(
        "tether.resources.http needs the 'http' extra: pip install 'tether[http]'"
    ) from None

import asyncio
import json as jsonlib
import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any, Literal, Self, TypedDict, Unpack
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from .. import __version__
from .._providers import resource
from ..exceptions import ClosedError, ResourceError, ResourceTimeout
from . import _http_wire as wire
from ._config import ResourceConfig
from ._http_request import Params, RequestBuilder, basic_auth, check_header, split_credentials
from ._meter import Meter

__all__ = [
    "HTTPClient",
    "HTTPConfig",
    "HTTPResponse",
    "HTTPStats",
    "HTTPStatusError",
    "HTTPStream",
]

logger = logging.getLogger("tether.resources.http")

# Header values kept as SecretStr even when given as plain strings: never in a repr.
_SECRET_HEADERS = frozenset({
    "authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-auth-token",
})
_DISPOSE_TIMEOUT = 5.0


class HTTPConfig(ResourceConfig):
    """One HTTP client's settings. Immutable; unknown keys are refused.

    A ``base_url`` with a user and password (``https://user:pw@host``) is split: the URL
    keeps the host, ``username`` and ``password`` (a ``SecretStr``) get the credentials,
    sent as basic auth to the base URL's origin only.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    name: str = Field(default="http", min_length=1)
    backend: Literal["httpx", "aiohttp"] = "httpx"
    base_url: str = ""
    username: str | None = None
    password: SecretStr | None = None
    headers: dict[str, str | SecretStr] = Field(default_factory=dict)
    max_connections: int = Field(default=100, ge=1)
    max_keepalive: int = Field(default=20, ge=0)
    keepalive_expiry: float = Field(default=5.0, ge=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float | None = Field(default=10.0, gt=0)
    pool_timeout: float | None = Field(default=5.0, gt=0)
    follow_redirects: bool = False
    verify: bool = True
    ca_bundle: Path | None = None
    insecure_skip_verify: bool = False
    server_errors_are_failures: bool = False
    health_method: Literal["GET", "HEAD", "OPTIONS"] = "GET"
    health_path: str = "/"
    health_status: tuple[int, ...] = ()
    health_timeout: float = Field(default=5.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _split_base_url_credentials(cls, data: Any) -> Any:
        # Before any other check, so that no error message can quote the password.
        if not isinstance(data, dict) or not isinstance(data.get("base_url"), str):
            return data
        bare, user, password = split_credentials(data["base_url"])
        if user is None:
            return data
        if data.get("username") is not None or data.get("password") is not None:
            raise ValueError(
                "base_url carries a user and password and username/password are set too: "
                "give the credentials one way"
            )
        return {**data, "base_url": bare, "username": user, "password": password or ""}

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        if not value:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("base_url must be an http:// or https:// URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("base_url must not have a query or a fragment: pass params=")
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str | SecretStr]) -> dict[str, str | SecretStr]:
        checked: dict[str, str | SecretStr] = {}
        for name, v in value.items():
            plain = v.get_secret_value() if isinstance(v, SecretStr) else v
            check_header(name, plain, "headers")
            secret = isinstance(v, SecretStr) or name.lower() in _SECRET_HEADERS
            checked[name] = SecretStr(plain) if secret else plain
        return checked

    @field_validator("health_status")
    @classmethod
    def _check_health_status(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        bad = [code for code in value if not 100 <= code <= 599]
        if bad:
            raise ValueError(f"health_status codes must be 100-599, not {bad}")
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> Self:
        if not self.verify and not self.insecure_skip_verify:
            raise ValueError(
                "verify=False turns TLS certificate verification off: to do that, set "
                "insecure_skip_verify=True as well (never in production); to trust a "
                "private CA instead, set ca_bundle"
            )
        if self.insecure_skip_verify and self.ca_bundle is not None:
            raise ValueError(
                "ca_bundle is unused when insecure_skip_verify=True: drop one of them"
            )
        if (self.username is not None or self.password is not None) and not self.base_url:
            raise ValueError(
                "username and password are sent to the base_url's origin only: set base_url"
            )
        return self


@dataclass(frozen=True, slots=True)
class HTTPStats:
    """One client's counters (``client.statistics()``).

    ``active`` and ``peak`` count requests in flight (waiting for a connection
    included); ``connections_in_use``, ``connections_peak`` and ``waiting`` are the
    client's connection gate; ``connections_open`` and ``connections_idle`` are read
    from the library's own pool.
    """

    requests_total: int
    failures_total: int
    failures_by_kind: Mapping[str, int]
    retries_total: int
    latency_seconds_total: float
    latency_seconds_max: float
    active: int
    peak: int
    waiting: int
    connections_in_use: int
    connections_peak: int
    connections_open: int
    connections_idle: int


_CHARSET = re.compile(r"charset\s*=\s*\"?([\w.:-]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True, repr=False)
class HTTPResponse:
    """A response read to its end: the connection is back in the pool already.

    ``url`` is the URL requested (after the base URL, without credentials).
    """

    method: str
    url: str
    status_code: int
    headers: Mapping[str, str]
    content: bytes
    resource: str = field(default="http", compare=False)

    @property
    def reason_phrase(self) -> str:
        return _reason(self.status_code)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def encoding(self) -> str:
        found = _CHARSET.search(self.headers.get("content-type", ""))
        return found.group(1) if found else "utf-8"

    @property
    def text(self) -> str:
        try:
            return self.content.decode(self.encoding, errors="replace")
        except LookupError:  # an unknown charset name
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    def raise_for_status(self) -> Self:
        """Raise ``HTTPStatusError`` for a 4xx or 5xx status; return the response."""
        if self.status_code >= 400:
            raise HTTPStatusError(self.resource, self.method, self.url, self.status_code, self)
        return self

    def __repr__(self) -> str:
        return f"<HTTPResponse [{self.status_code} {self.reason_phrase}] {self.method} " \
               f"{_no_query(self.url)}>"


class HTTPStatusError(ResourceError):
    """``raise_for_status()`` met a 4xx or 5xx; ``response`` is the response (for a
    stream, None: its body was not read)."""

    def __init__(
        self, resource: str, method: str, url: str, status_code: int,
        response: HTTPResponse | None = None,
    ) -> None:
        ResourceError.__init__(
            self, resource,
            f"{method} {_no_query(url)} answered {status_code} {_reason(status_code)}",
        )
        self.args = (resource, method, _no_query(url), status_code)
        self.status_code = status_code
        self.response = response


class HTTPStream:
    """A response whose body is read as it arrives (``client.stream(...)``).

    Valid inside its ``async with`` block only; leaving the block closes the
    connection if the body was not read to its end.
    """

    def __init__(self, client: HTTPClient, request: wire.Outgoing, raw: wire.Incoming,
                 holding: bool) -> None:
        self.method = request.method
        self.url = request.url
        self.status_code = raw.status_code
        self.headers: Mapping[str, str] = wire.Headers(raw.headers)
        self._client = client
        self._request = request
        self._raw = raw
        self._holding = holding  # of a connection slot, released at close
        self._closed = False
        self._error: Exception | None = None

    @property
    def reason_phrase(self) -> str:
        return _reason(self.status_code)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def raise_for_status(self) -> Self:
        if self.status_code >= 400:
            raise HTTPStatusError(self._client.name, self.method, self.url, self.status_code)
        return self

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body in chunks as they arrive (decompressed)."""
        self._check_open()
        with self._errors():
            async for chunk in self._raw.chunks():
                yield chunk

    async def aread(self) -> bytes:
        self._check_open()
        with self._errors():
            return await self._raw.read()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            with self._client._translating(self._request):
                yield
        except Exception as error:
            self._error = error
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise ResourceError(
                self._client.name, "the stream was read after its `async with` block ended"
            )

    async def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            with self._errors():
                await self._raw.aclose()
        finally:
            if self._holding:
                self._client._gate.release()

    def __repr__(self) -> str:
        return f"<HTTPStream [{self.status_code} {self.reason_phrase}] {self._request.where}>"


class _RequestOptions(TypedDict, total=False):
    params: Params | None
    headers: Mapping[str, str] | None
    content: bytes | str | None
    json: Any
    data: Mapping[str, str] | None
    idempotent: bool | None


@resource
class HTTPClient:
    """A pooled HTTP client with the config's limits, timeouts, TLS and policy.

    ``request()`` and the method helpers return an ``HTTPResponse`` with the body read;
    ``stream()`` gives the body as it arrives. Build it, then ``await initialize()``
    (the container does both); ``dispose()`` closes every connection.
    """

    def __init__(self, config: HTTPConfig) -> None:
        self.config = config
        self.name = config.name
        self._policy = config.policy()
        self._meter = Meter()
        self._gate = wire.Gate(config.max_connections)
        self._builder = RequestBuilder(config.name, config.base_url, _headers(config),
                                       _authorization(config))
        self._backend_type = _backend_type(config.backend)  # a missing extra fails here
        self._backend: wire.Backend | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    async def initialize(self) -> None:
        if self._closed:
            raise ClosedError(self._what)
        if self._backend is not None:
            return
        c = self.config
        settings = wire.Settings(
            resource=self.name, max_connections=c.max_connections,
            max_keepalive=c.max_keepalive, keepalive_expiry=c.keepalive_expiry,
            connect_timeout=c.connect_timeout, read_timeout=c.read_timeout,
            pool_timeout=c.pool_timeout, follow_redirects=c.follow_redirects,
            ssl_context=_ssl_context(c),
        )
        self._backend = self._backend_type(settings)

    async def dispose(self) -> None:
        """Close every connection, within 5 seconds; later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        backend, self._backend = self._backend, None
        if backend is None:
            return
        try:
            async with asyncio.timeout(_DISPOSE_TIMEOUT):
                await backend.aclose()
        except TimeoutError as error:
            logger.error("%s: closing the connections took over %gs; abandoned", self.name,
                         _DISPOSE_TIMEOUT)
            raise ResourceTimeout(self.name, _DISPOSE_TIMEOUT, "dispose") from error

    async def __aenter__(self) -> Self:
        await self.initialize()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.dispose()

    async def health_check(self) -> bool:
        """Send the configured health request; True when its status is the expected one.

        Raises the error that made it fail (a tether ``ResourceError``), which the
        container's health report shows; bounded by ``health_timeout``.
        """
        backend = self._live()
        c = self.config
        if not c.base_url and not urlsplit(c.health_path).scheme:
            return True  # no server of its own to ask: see docs/http.md, "Health"
        request = self._builder.build(c.health_method, c.health_path)
        try:
            async with asyncio.timeout(c.health_timeout):
                reply = await self._exchange(backend, request, count_5xx=False)
        except TimeoutError as error:
            if isinstance(error, ResourceTimeout):
                raise
            timeout = ResourceTimeout(self.name, c.health_timeout, "health check")
            timeout.detail = f"health check {request.where} did not finish within " \
                             f"health_timeout={c.health_timeout:g}s"
            raise timeout from error
        code = reply.status_code
        if code in c.health_status if c.health_status else 200 <= code < 300:
            return True
        expected = ", ".join(map(str, c.health_status)) if c.health_status else "2xx"
        raise ResourceError(self.name, f"health check {request.where} answered {code} "
                                       f"{_reason(code)}, expected {expected}")

    def statistics(self) -> HTTPStats:
        m, g = self._meter, self._gate
        opened, idle = self._backend.pool() if self._backend is not None else (0, 0)
        return HTTPStats(
            requests_total=m.calls,
            failures_total=m.failures_total,
            failures_by_kind=MappingProxyType(dict(m.failures)),
            retries_total=self._policy.retries_total,
            latency_seconds_total=m.latency_total,
            latency_seconds_max=m.latency_max,
            active=m.active,
            peak=m.peak,
            waiting=g.waiting,
            connections_in_use=g.in_use,
            connections_peak=g.peak,
            connections_open=opened,
            connections_idle=idle,
        )

    # -- calls -------------------------------------------------------------------------

    async def request(
        self, method: str, url: str, **options: Unpack[_RequestOptions]
    ) -> HTTPResponse:
        """Send a request and read the whole response.

        ``url`` is joined to ``base_url`` unless absolute. Keywords: ``params`` (query),
        ``headers``, one body of ``content`` (bytes or str), ``json`` or ``data`` (a
        form), and ``idempotent`` to override the method's own (RFC 9110: GET, HEAD,
        OPTIONS, TRACE, PUT and DELETE are), which decides whether a call that may have
        reached the server is retried.
        """
        backend = self._live()
        request, idempotent = self._build(method, url, options)
        started = self._meter.begin()
        error: Exception | None = None
        try:
            reply = await self._policy.call(
                lambda: self._exchange(backend, request), idempotent=idempotent
            )
        except wire.HTTP5xx as status:
            error, reply = status, status.reply
        except Exception as failure:
            error = failure
            raise
        finally:
            self._meter.end(started, error)
        return HTTPResponse(request.method, request.url, reply.status_code,
                            wire.Headers(reply.headers), reply.body, self.name)

    async def get(self, url: str, **options: Unpack[_RequestOptions]) -> HTTPResponse:
        return await self.request("GET", url, **options)

    async def head(self, url: str, **options: Unpack[_RequestOptions]) -> HTTPResponse:
        return await self.request("HEAD", url, **options)

    async def options(self, url: str, **options: Unpack[_RequestOptions]) -> HTTPResponse:
        return await self.request("OPTIONS", url, **options)

    async def post(self, url: str, **options: Unpack[_RequestOptions]) -> HTTPResponse:
        return await self.request("POST", url, **options)

    async def put(self, url: str, **options: Unpack[_RequestOptions]) -> HTTPResponse:
        return await self.request("PUT", url, **options)

    async def patch(self, url: str, **options: Unpack[_RequestOptions]) -> HTTPResponse:
        return await self.request("PATCH", url, **options)

    async def delete(self, url: str, **options: Unpack[_RequestOptions]) -> HTTPResponse:
        return await self.request("DELETE", url, **options)

    @asynccontextmanager
    async def stream(
        self, method: str, url: str, **options: Unpack[_RequestOptions]
    ) -> AsyncIterator[HTTPStream]:
        """Send a request and give the response as soon as its head arrives.

        The policy (deadline, retries, breaker) covers the call until the head arrives;
        each read of the body is bounded by ``read_timeout``. The connection is held
        until the block ends.
        """
        backend = self._live()
        request, idempotent = self._build(method, url, options)
        started = self._meter.begin()
        error: Exception | None = None
        try:
            raw: wire.Incoming = await self._policy.call(
                lambda: self._open(backend, request), idempotent=idempotent
            )
            holding = True
        except wire.HTTP5xx as status:
            error, raw, holding = status, status.reply, False
        except BaseException as failure:  # a cancelled call counts, but not as a failure
            self._meter.end(started, failure if isinstance(failure, Exception) else None)
            raise
        stream = HTTPStream(self, request, raw, holding)
        try:
            yield stream
        finally:
            try:
                await stream._close()
            finally:
                self._meter.end(started, stream._error or error)

    # -- internals ---------------------------------------------------------------------

    @property
    def _what(self) -> str:
        return f"HTTPClient '{self.name}'"

    def _live(self) -> wire.Backend:
        backend = self._backend
        if backend is None:
            if self._closed:
                raise ClosedError(self._what)
            raise ResourceError(self.name, "not initialized: resolve it from the container "
                                           "(which calls initialize()) or await initialize() "
                                           "first")
        return backend

    def _build(self, method: str, url: str,
               options: _RequestOptions) -> tuple[wire.Outgoing, bool]:
        idempotent = options.get("idempotent")
        request = self._builder.build(
            method, url, params=options.get("params"), headers=options.get("headers"),
            content=options.get("content"), json=options.get("json"), data=options.get("data"),
        )
        if idempotent is None:
            idempotent = request.method in wire.IDEMPOTENT_METHODS
        return request, idempotent

    async def _exchange(self, backend: wire.Backend, request: wire.Outgoing,
                        count_5xx: bool | None = None) -> wire.Buffered:
        """One attempt: a connection, the request, the whole response, the connection back."""
        await self._gate.acquire(self.name, self.config.pool_timeout)
        try:
            with self._translating(request):
                reply = await backend.fetch(request)
        finally:
            self._gate.release()
        if count_5xx is None:
            count_5xx = self.config.server_errors_are_failures
        if count_5xx and reply.status_code >= 500:
            raise wire.HTTP5xx(self.name, request.where, reply)
        return reply

    async def _open(self, backend: wire.Backend, request: wire.Outgoing) -> wire.Incoming:
        """One attempt of ``stream()``: returns holding a connection slot."""
        await self._gate.acquire(self.name, self.config.pool_timeout)
        try:
            with self._translating(request):
                raw = await backend.open(request)
        except BaseException:
            self._gate.release()
            raise
        if not (self.config.server_errors_are_failures and raw.status_code >= 500):
            return raw
        try:  # a failure to count: read the (error) body now and give the slot back
            with self._translating(request):
                try:
                    body = await raw.read()
                finally:
                    await raw.aclose()
        finally:
            self._gate.release()
        raise wire.HTTP5xx(self.name, request.where,
                           wire.Buffered(raw.status_code, raw.headers, body))

    @contextmanager
    def _translating(self, request: wire.Outgoing) -> Iterator[None]:
        try:
            yield
        except ResourceError:
            raise
        except Exception as error:
            if self._closed:
                raise ClosedError(self._what) from error
            backend = self._backend
            mapped = backend.translate(error, request) if backend is not None else None
            if mapped is None:
                raise
            raise mapped from error

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._backend else "not initialized"
        base = f" {self.config.base_url}" if self.config.base_url else ""
        return f"<HTTPClient {self.name!r} {self.config.backend}{base} {state}>"


def _reason(status_code: int) -> str:
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return ""


def _no_query(url: str) -> str:
    return url.split("?", 1)[0]


def _headers(config: HTTPConfig) -> list[tuple[str, str]]:
    given = {name.lower() for name in config.headers}
    headers = [] if "user-agent" in given else [("User-Agent", f"tether/{__version__}")]
    for name, value in config.headers.items():
        headers.append((name, value.get_secret_value() if isinstance(value, SecretStr)
                        else value))
    return headers


def _authorization(config: HTTPConfig) -> str | None:
    if config.username is None and config.password is None:
        return None
    password = config.password.get_secret_value() if config.password is not None else ""
    return basic_auth(config.username or "", password)


def _backend_type(kind: str) -> Callable[[wire.Settings], wire.Backend]:
    if kind == "aiohttp":
        from ._http_aiohttp import AiohttpBackend

        return AiohttpBackend
    from ._http_httpx import HttpxBackend

    return HttpxBackend


def _ssl_context(config: HTTPConfig) -> ssl.SSLContext:
    if config.insecure_skip_verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        logger.warning(
            "%s: TLS certificate verification is OFF (insecure_skip_verify=True): any "
            "server can pose as %s. Never use this in production.",
            config.name, config.base_url or "the servers it calls",
        )
        return context
    path = config.ca_bundle
    if path is None:
        return ssl.create_default_context()  # the system's trust store
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as error:
        raise ResourceError(config.name, f"ca_bundle={path} cannot be loaded: {error}") \
            from error
