"""FastAPI (and Starlette) integration.

    from tether.fastapi import Inject, install

    app = FastAPI()
    install(app, container)     # lifespan, a REQUEST scope per request, /health*

    @app.get("/users/{user_id}")
    async def get_user(user_id: int, repo: Inject[UserRepo]) -> User: ...

Each HTTP request and each WebSocket connection runs in a REQUEST scope of its own,
opened by a pure ASGI middleware and closed when the response has been sent (after
the last chunk of a streaming response, and after the response's background tasks,
which therefore see the same, still open scope).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import json
import logging
import math
import os
import re
from asyncio import current_task, get_running_loop
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from http import HTTPStatus
from time import perf_counter
from typing import TYPE_CHECKING, Annotated, Any, TypeVar, cast

try:
    from fastapi import APIRouter, FastAPI, Request, params
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from fastapi.routing import APIRoute, APIWebSocketRoute
    from starlette.exceptions import HTTPException as StarletteHTTPException
    from starlette.requests import HTTPConnection
    from starlette.types import ASGIApp, Message, Receive, Send
    from starlette.types import Scope as ASGIScope
except ImportError:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "tether.fastapi needs the 'fastapi' extra: pip install 'tether[fastapi]'"
    ) from None

from ._active import ActiveScope, enter_request, exit_request
from ._container import Container
from ._deadline import task_of
from ._health import HealthStatus, redact
from ._markers import inject_arguments, split_annotation
from ._scope import Scope
from ._status import status_router
from .exceptions import CircuitOpen, ResolutionError, ResourceError, ScopeMismatch

if TYPE_CHECKING:
    from ._prometheus import PrometheusMetrics, RequestTimer

__all__ = [
    "REQUEST_ID",
    "Inject",
    "JsonFormatter",
    "RequestIdFilter",
    "Gate",
    "TetherMiddleware",
    "add_error_handlers",
    "add_request_id",
    "current_scope",
    "dependency",
    "health_router",
    "install",
    "lifespan",
    "resolve_inline",
    "status_router",
]

T = TypeVar("T")

SCOPE_KEY = "tether.scope"  # where the request's scope sits in the ASGI scope
REQUEST_ID_KEY = "tether.request_id"
ERROR_KEY = "tether.error"  # what the endpoint raised, even if a handler answered for it

logger = logging.getLogger("tether")


SessionValidator = Callable[[str, HTTPConnection], Awaitable[str | None]]
"""Checks a session id from a request: the id to use, or None to ignore it."""

REQUEST_ID: ContextVar[str | None] = ContextVar("tether_request_id", default=None)
"""The id of the request being served, for logs (see ``RequestIdFilter``)."""

_ID_PREFIX = os.urandom(4).hex()
_ids = itertools.count(1)
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def _request_id(scope: ASGIScope, header: bytes) -> str:
    for name, value in scope.get("headers", ()):
        if name == header:
            text = value.decode("latin-1")
            if _VALID_ID.fullmatch(text):
                return str(text)
            break  # an id we would not log as it is: make our own
    return f"{_ID_PREFIX}-{next(_ids):x}"


class Gate:
    """Requests in flight, for a graceful drain at shutdown."""

    def __init__(self) -> None:
        self.draining = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self._idle: asyncio.Future[None] | None = None  # made only while draining

    def quiet(self) -> None:
        """The last request in flight ended: wake a drain waiting for that."""
        if self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    async def drain(self, timeout: float) -> None:
        """Refuse new requests; wait up to ``timeout`` for those in flight, then cancel
        what is left and wait for it to finish unwinding (its scopes close)."""
        self.draining = True
        if not self.tasks:
            return
        self._idle = asyncio.get_running_loop().create_future()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle
        left = list(self.tasks)
        if left:
            logger.warning("drain: cancelling %d request(s) still running", len(left))
            for task in left:
                task.cancel()
            await asyncio.wait(left, timeout=timeout)


class TetherMiddleware:
    """Pure ASGI middleware: one REQUEST scope per HTTP request or WebSocket connection.

    It also gives every request an id (the incoming ``X-Request-ID`` when it is a
    sane one, else a new one) in ``REQUEST_ID``, in the response headers and in error
    bodies; and while the app drains at shutdown it answers new requests with 503.

    With ``session_cookie`` or ``session_header``, a request that carries a session id
    runs its REQUEST scope inside the SESSION scope for that id. ``validate_session``
    (e.g. server-side sessions from ``tether.security``) is asked first: it returns the
    id to use, or None for an unknown, expired or stolen one, which then gets no
    SESSION scope.

    With ``metrics`` (the ``PrometheusMetrics`` that ``install()`` serves on
    ``/metrics``) it also times each HTTP request, as ``MetricsMiddleware`` right
    outside it would, without a second middleware and a second ``send`` wrapper (so
    do not add ``MetricsMiddleware`` for the same metrics as well).
    """

    def __init__(
        self,
        app: ASGIApp,
        container: Container,
        *,
        session_cookie: str | None = None,
        session_header: str | None = None,
        request_id_header: str | None = "X-Request-ID",
        gate: Gate | None = None,
        open_while_draining: Iterable[str] = (),
        validate_session: SessionValidator | None = None,
        metrics: PrometheusMetrics | None = None,
    ) -> None:
        self.app = app
        self.validate_session = validate_session
        # Paths still served during a drain, such as the liveness probe: a probe that
        # failed there would get the process killed before its requests finished.
        self.open_while_draining = frozenset(open_while_draining)
        self.container = container
        self.session_cookie = session_cookie
        self.session_header = session_header.lower().encode() if session_header else None
        self.id_header = request_id_header.lower().encode() if request_id_header else None
        self.gate = gate or Gate()
        self.sessions = session_cookie is not None or session_header is not None
        # Everything but a plain HTTP request (WebSockets, lifespan, sessions) goes
        # through `_connection`; with metrics, timed by the same recorder.
        self._other: ASGIApp = self._connection
        self._timer: RequestTimer | None = None
        if metrics is not None:
            from ._prometheus import MetricsMiddleware

            timed = MetricsMiddleware(self._connection, metrics)
            self._other, self._timer = timed, timed.timer

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.sessions:
            await self._other(scope, receive, send)
            return
        # A plain HTTP request, the hot path: `_connection` and `_serve` written out in
        # one coroutine, with the metrics' timing folded into the request id's `send`
        # wrapper (a `_Reply`, made only when there is a header to add or a request to
        # time). Each frame and each wrapper left out here is saved on every request.
        timer = self._timer
        id_header = self.id_header
        request_id = None
        reply: _Reply | None = None
        out: Send = send
        if timer is not None:
            if id_header is not None:
                request_id = scope[REQUEST_ID_KEY] = _request_id(scope, id_header)
                out = reply = _Reply(send, (id_header, request_id.encode()), True)
            else:
                out = reply = _Reply(send, None, True)
        elif id_header is not None:  # a header to add, nothing to time: a plain closure
            request_id = scope[REQUEST_ID_KEY] = _request_id(scope, id_header)
            out = _adding(send, (id_header, request_id.encode()))
        started, root = 0.0, None
        if timer is not None:
            started = perf_counter()
            root = scope.get("app")  # for the route template: a mounted app replaces it
        try:
            gate = self.gate
            if gate.draining and scope.get("path") not in self.open_while_draining:
                await _unavailable(scope, receive, out, request_id)
            else:
                token = REQUEST_ID.set(request_id) if request_id is not None else None
                tasks = gate.tasks
                task = current_task() if task_of is None else task_of(get_running_loop())
                tasks.add(task)  # type: ignore[arg-type]
                try:
                    request = enter_request(self.container)
                    if request is None:  # the general case, which may also raise
                        request = self.container.scope()
                        await request.__aenter__()
                    scope[SCOPE_KEY] = request
                    try:
                        await self.app(scope, receive, out)
                    except BaseException as error:
                        closing = exit_request(request, error)
                        if closing is not None:
                            await closing
                        raise
                    # As `_serve`: close with the error a handler answered for, if any.
                    closing = exit_request(request, scope.pop(ERROR_KEY, None))
                    if closing is not None:  # a finalizer suspended
                        await closing
                finally:
                    tasks.discard(task)
                    if gate.draining and not tasks:
                        gate.quiet()
                    if token is not None:
                        REQUEST_ID.reset(token)
        except Exception:
            # As MetricsMiddleware: ServerErrorMiddleware, outside us, answers 500
            # unless a response started.
            if timer is not None and reply is not None:
                timer.record(scope, root, reply.status or 500,
                             (reply.finished or perf_counter()) - started)
            raise
        if timer is not None and reply is not None and reply.status:
            timer.record(scope, root, reply.status, (reply.finished or perf_counter()) - started)

    async def _connection(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        """A WebSocket connection, a request that may carry a session id, or anything
        else (lifespan) that passes through."""
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        request_id = None
        if self.id_header is not None:
            request_id = scope[REQUEST_ID_KEY] = _request_id(scope, self.id_header)
            if kind == "http":
                send = _adding(send, (self.id_header, request_id.encode()))
        if self.gate.draining and scope.get("path") not in self.open_while_draining:
            await _unavailable(scope, receive, send, request_id)
            return
        token = REQUEST_ID.set(request_id) if request_id is not None else None
        gate = self.gate
        tasks = gate.tasks
        task = current_task()
        tasks.add(task)  # type: ignore[arg-type]
        try:
            session_id = self._session_id(scope) if self.sessions else None
            if session_id is not None and self.validate_session is not None:
                session_id = await self.validate_session(session_id, HTTPConnection(scope))
            if session_id is None:
                await self._serve(self.container.scope(), scope, receive, send)
            else:
                session = self.container.scope(Scope.SESSION, session_id=session_id)
                async with session:
                    await self._serve(session.scope(), scope, receive, send)
        finally:
            tasks.discard(task)
            if gate.draining and not tasks:
                gate.quiet()
            if token is not None:
                REQUEST_ID.reset(token)

    async def _serve(
        self, request: ActiveScope, scope: ASGIScope, receive: Receive, send: Send
    ) -> None:
        await request.__aenter__()
        scope[SCOPE_KEY] = request
        try:
            await self.app(scope, receive, send)
        except BaseException as error:
            await request.__aexit__(type(error), error, error.__traceback__)
            raise
        # A handler may have answered for the endpoint's error: close with it all the
        # same, so generators see it (and roll back), without raising it again.
        noted = scope.pop(ERROR_KEY, None)
        if noted is None:
            await request.__aexit__(None, None, None)
        else:
            await request.__aexit__(type(noted), noted, noted.__traceback__)

    def _session_id(self, scope: ASGIScope) -> str | None:
        if self.session_header is not None:
            for name, value in scope.get("headers", ()):
                if name == self.session_header and value:
                    return str(value.decode("latin-1"))
        if self.session_cookie is not None:
            value = HTTPConnection(scope).cookies.get(self.session_cookie)
            if value:
                return str(value)
        return None


def _adding(send: Send, pair: tuple[bytes, bytes]) -> Send:
    """``send`` that adds the request id header to the response's start."""

    def sender(message: Message) -> Awaitable[None]:
        # Not a coroutine: it hands back the awaitable of the `send` it wraps.
        if message["type"] == "http.response.start":
            message = {**message}  # a copy: the app may send the same dict again
            message["headers"] = [*message.get("headers", ()), pair]
        return send(message)

    return sender


class _Reply:
    """The `send` a plain HTTP request's app gets when there is something to do on the
    way out: the request id header to add, the end of the response to time. Not a
    coroutine: it hands back the awaitable of the `send` it wraps."""

    __slots__ = ("finished", "pair", "send", "status", "timed")

    def __init__(self, send: Send, pair: tuple[bytes, bytes] | None, timed: bool) -> None:
        self.send = send
        self.pair = pair
        self.timed = timed
        self.status = 0
        self.finished = 0.0

    def __call__(self, message: Message) -> Awaitable[None]:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            pair = self.pair
            if pair is not None:
                message = {**message}  # a copy: the app may send the same dict again
                message["headers"] = [*message.get("headers", ()), pair]
        elif kind == "http.response.body" and self.timed and not message.get("more_body", False):
            self.finished = perf_counter()
        return self.send(message)



async def _unavailable(
    scope: ASGIScope, receive: Receive, send: Send, request_id: str | None
) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1012})  # service restart
        return
    body = {"error": "unavailable", "message": "The service is shutting down.",
            "request_id": request_id}
    response = JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
    await response(scope, receive, send)


def current_scope(connection: HTTPConnection) -> Any:
    """The REQUEST scope of a request or WebSocket connection."""
    try:
        return connection.scope[SCOPE_KEY]
    except KeyError:
        raise RuntimeError(
            "no tether scope on this request: call tether.fastapi.install(app, container) "
            "(or add TetherMiddleware) before the app starts."
        ) from None


_DEPENDENCIES: dict[tuple[Any, str | None], Callable[..., Any]] = {}


def dependency(dependency_type: Any, name: str | None = None) -> Callable[..., Any]:
    """The FastAPI dependency behind ``Inject[T]``: one per type and name, so
    ``app.dependency_overrides[dependency(T)] = ...`` overrides it."""
    key = (dependency_type, name)
    found = _DEPENDENCIES.get(key)
    if found is None:

        async def resolve(connection: HTTPConnection) -> Any:
            return await current_scope(connection).aget(dependency_type, name)

        resolve.__qualname__ = resolve.__name__ = f"tether_{_slug(dependency_type, name)}"
        found = _DEPENDENCIES[key] = resolve
        _RESOLVERS[resolve] = key
    return found


_RESOLVERS: dict[Callable[..., Any], tuple[Any, str | None]] = {}


def _walk(routes: Iterable[Any]) -> Iterator[Any]:
    """Every HTTP route with a dependant, included routers' effective routes too."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "effective_candidates"):  # an included router (FastAPI >= 0.137)
            yield from _walk(route.effective_candidates())
        elif getattr(route, "dependant", None) is not None and not isinstance(
            getattr(route, "original_route", None), APIWebSocketRoute
        ):
            yield route  # an included HTTP route's effective context


def resolve_inline(app: FastAPI) -> int:
    """Prepare every HTTP route at startup (``install()`` calls it):

    - ``Inject[...]`` parameters of async endpoints leave FastAPI's dependency solving;
      the endpoint is wrapped to resolve them straight from the request's scope. Same
      result, a fraction of the cost. Sync endpoints, WebSockets, dependencies of
      dependencies and parameters already in ``app.dependency_overrides`` keep going
      through ``Depends``.
    - an error the endpoint raises is noted on the request, so that the request's scope
      closes with it even when an exception handler turns it into a response: a
      request-scoped transaction rolls back on an ``HTTPException``.

    Returns how many routes it changed; a second call changes nothing.
    """
    changed = 0
    overridden = set(app.dependency_overrides)
    for route in _walk(app.routes):
        dependant = route.dependant
        call = dependant.call
        if call is None or getattr(call, "__tether_inline__", False):
            continue
        name = dependant.http_connection_param_name
        drop = name is None
        if name is None:
            name = dependant.http_connection_param_name = "_tether_connection"
        if inspect.iscoroutinefunction(call):
            ours = [
                d for d in dependant.dependencies
                if d.name and d.call in _RESOLVERS and d.call not in overridden
            ]
            wanted = [(d.name, _key(*_RESOLVERS[d.call]), d.call) for d in ours]
            dependant.dependencies = [d for d in dependant.dependencies if d not in ours]
            dependant.call = _inline(call, wanted, name, drop, app)
        else:
            dependant.call = _noting(call, name, drop)
        changed += 1
    return changed


def _key(dependency: Any, name: str | None) -> Any:
    return dependency if name is None else (dependency, name)


def _inline(
    endpoint: Callable[..., Any],
    wanted: list[tuple[str, Any, Callable[..., Any]]],
    connection_name: str,
    drop: bool,
    app: FastAPI,
) -> Callable[..., Any]:
    compiled = _compiled_inline(endpoint, wanted, connection_name, drop, app)
    if compiled is not None:
        return compiled

    @functools.wraps(endpoint)
    async def call(**values: Any) -> Any:
        connection = values.pop(connection_name) if drop else values[connection_name]
        scope = connection.scope
        if wanted:
            request = scope.get(SCOPE_KEY)
            if request is None:
                current_scope(connection)  # raises the sentence that says what to do
            overrides = app.dependency_overrides
            builders = request._registry.async_builders
            for name, key, resolver in wanted:
                if overrides and resolver in overrides:
                    # Added after start-up: called with no arguments.
                    value = overrides[resolver]()
                    if inspect.isawaitable(value):
                        value = await value
                else:
                    # What request.aget(key) does for a scope in a block, without its
                    # frame: the builder checks the cache and the scope itself.
                    builder = builders.get(key)
                    value = await (request.aget(key) if builder is None else builder(request))
                values[name] = value
        try:
            return await endpoint(**values)
        except BaseException as error:
            scope[ERROR_KEY] = error
            raise

    call.__tether_inline__ = True  # type: ignore[attr-defined]
    return call


_LOCAL = "_tether_"  # the prefix of the generated wrapper's own names


def _compiled_inline(
    endpoint: Callable[..., Any],
    wanted: list[tuple[str, Any, Callable[..., Any]]],
    connection_name: str,
    drop: bool,
    app: FastAPI,
) -> Callable[..., Any] | None:
    """``_inline``'s wrapper as code made for this endpoint: its parameters by name
    (FastAPI passes every one of them as a keyword), no ``**values`` dict to build,
    change and unpack again on every request. None when the signature does not allow
    it (``*args``, ``**kwargs``, positional-only or clashing names): then the general
    wrapper is used."""
    try:
        params = inspect.signature(endpoint).parameters
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if any(p.kind not in kinds for p in params.values()):
        return None
    names = list(params)
    if any(n.startswith(_LOCAL) and n != connection_name for n in names):
        return None
    injected = [name for name, _, _ in wanted]
    if any(name not in params for name in injected):
        return None
    passed = [n for n in names if n not in injected]  # what FastAPI hands over
    if drop:
        passed.append(connection_name)
    conn = connection_name
    lines = [f"async def {_LOCAL}call(*, {', '.join(passed)}):" if passed
             else f"async def {_LOCAL}call():"]
    lines.append(f"    {_LOCAL}scope = {conn}.scope")
    if wanted:
        lines += [
            f"    {_LOCAL}request = {_LOCAL}scope.get({_LOCAL}SCOPE_KEY)",
            f"    if {_LOCAL}request is None:",
            f"        {_LOCAL}current_scope({conn})",
            f"    {_LOCAL}overrides = {_LOCAL}app.dependency_overrides",
            f"    {_LOCAL}builders = {_LOCAL}request._registry.async_builders",
        ]
        for index, name in enumerate(injected):
            lines += [
                f"    if {_LOCAL}overrides and {_LOCAL}R{index} in {_LOCAL}overrides:",
                f"        {name} = {_LOCAL}overrides[{_LOCAL}R{index}]()",  # added after start-up
                f"        if {_LOCAL}isawaitable({name}):",
                f"            {name} = await {name}",
                "    else:",
                f"        {_LOCAL}b = {_LOCAL}builders.get({_LOCAL}K{index})",
                f"        {name} = await ({_LOCAL}request.aget({_LOCAL}K{index})"
                f" if {_LOCAL}b is None else {_LOCAL}b({_LOCAL}request))",
            ]
    forward = ", ".join(f"{n}={n}" for n in names)
    lines += [
        "    try:",
        f"        return await {_LOCAL}endpoint({forward})",
        f"    except BaseException as {_LOCAL}error:",
        f"        {_LOCAL}scope[{_LOCAL}ERROR_KEY] = {_LOCAL}error",
        "        raise",
    ]
    # Every global of the generated code has the prefix too: a parameter named `app`
    # or `scope` must not hide what the wrapper itself uses.
    namespace: dict[str, Any] = {
        f"{_LOCAL}SCOPE_KEY": SCOPE_KEY, f"{_LOCAL}ERROR_KEY": ERROR_KEY,
        f"{_LOCAL}current_scope": current_scope, f"{_LOCAL}app": app,
        f"{_LOCAL}isawaitable": inspect.isawaitable, f"{_LOCAL}endpoint": endpoint,
    }
    for index, (_, key, resolver) in enumerate(wanted):
        namespace[f"{_LOCAL}K{index}"] = key
        namespace[f"{_LOCAL}R{index}"] = resolver
    name = getattr(endpoint, "__qualname__", "endpoint")
    exec(compile("\n".join(lines) + "\n", f"<tether endpoint {name}>", "exec"), namespace)
    call = namespace[f"{_LOCAL}call"]
    functools.update_wrapper(call, endpoint)
    call.__tether_inline__ = True
    return call  # type: ignore[no-any-return]


def _noting(endpoint: Callable[..., Any], connection_name: str, drop: bool) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    def call(**values: Any) -> Any:
        connection = values.pop(connection_name) if drop else values[connection_name]
        try:
            return endpoint(**values)
        except BaseException as error:
            connection.scope[ERROR_KEY] = error
            raise

    call.__tether_inline__ = True  # type: ignore[attr-defined]
    return call


def _slug(tp: Any, name: str | None) -> str:
    base = getattr(tp, "__qualname__", repr(tp))
    return re.sub(r"\W+", "_", base + (f"_{name}" if name else ""))


if TYPE_CHECKING:
    from typing import Union as Inject
else:

    class Inject:
        """``Inject[T]`` or ``Inject[T, "name"]`` in an endpoint's signature: resolved from
        the request's scope, hidden from the OpenAPI schema."""

        __slots__ = ()

        def __class_getitem__(cls, item: Any) -> Any:
            tp, name = inject_arguments(item)
            if name is None:  # Inject[Annotated[T, Named("x")]], the typed named form
                tp, name, _ = split_annotation(tp)
            return Annotated[tp, params.Depends(dependency(tp, name))]


def health_router(container: Container, *, prefix: str = "/health") -> APIRouter:
    """``/health`` (summary), ``/health/live``, ``/health/ready`` and ``/health/detailed``.

    Readiness and the summary answer 503 when a critical resource is unhealthy; every
    check is bounded by the container's ``health_timeout``.
    """
    router = APIRouter(prefix=prefix, tags=["health"])

    def code(status: HealthStatus) -> int:
        return 503 if status is HealthStatus.UNHEALTHY else 200

    @router.get("", include_in_schema=True)
    async def health() -> JSONResponse:
        report = await container.health()
        return JSONResponse({"status": report.status.value}, status_code=code(report.status))

    @router.get("/live")
    async def live() -> JSONResponse:
        return JSONResponse({"status": "alive"})

    @router.get("/ready")
    async def ready() -> JSONResponse:
        if container.closed:
            return JSONResponse({"status": "closed"}, status_code=503)
        report = await container.health()
        return JSONResponse({"status": report.status.value}, status_code=code(report.status))

    @router.get("/detailed")
    async def detailed() -> JSONResponse:
        report = await container.health()
        return JSONResponse(report.to_dict(), status_code=code(report.status))

    return router


Lifespan = Callable[[Any], AbstractAsyncContextManager[Any]]


def lifespan(
    container: Container,
    inner: Lifespan | None = None,
    *,
    drain_timeout: float = 30.0,
    gate: Gate | None = None,
) -> Lifespan:
    """A lifespan that starts ``container`` around ``inner`` (the app's own, if any):
    ``FastAPI(lifespan=lifespan(container, my_lifespan))``. With the ``gate`` of a
    ``TetherMiddleware``, shutdown first drains the requests in flight."""

    @asynccontextmanager
    async def run(application: Any) -> AsyncIterator[Any]:
        if gate is not None:
            gate.draining = False
        own = inner(application) if inner is not None else contextlib.nullcontext()
        async with container, own as state:
            if isinstance(application, FastAPI):
                resolve_inline(application)
            try:
                yield state
            finally:
                if gate is not None:
                    await gate.drain(drain_timeout)

    return run


def install(
    app: FastAPI,
    container: Container,
    *,
    health_prefix: str | None = "/health",
    session_cookie: str | None = None,
    session_header: str | None = None,
    request_id_header: str | None = "X-Request-ID",
    drain_timeout: float = 30.0,
    error_handlers: bool = True,
    metrics_path: str | None = "/metrics",
    status_prefix: str | None = "/status",
    validate_session: SessionValidator | None = None,
) -> None:
    """Wire ``container`` into ``app``.

    - lifespan: the container starts before the app's own lifespan and closes after it
      (an existing lifespan keeps working); at shutdown new requests get 503 while
      those in flight finish, for up to ``drain_timeout`` seconds (then they are
      cancelled), and only then is anything disposed;
    - a REQUEST scope per request and per WebSocket connection (``TetherMiddleware``),
      with a request id;
    - ``/health``, ``/health/live``, ``/health/ready``, ``/health/detailed`` unless
      ``health_prefix=None``;
    - JSON error bodies that carry the request id and never internals, unless
      ``error_handlers=False``;
    - ``/metrics`` in Prometheus text format (tether's per-registration counters, and
      request latency by route template) unless ``metrics_path=None``;
    - ``/status``, a live status page (and ``/status.json``), unless
      ``status_prefix=None``.

    ``session_cookie`` / ``session_header`` name where a session id comes from (see
    ``TetherMiddleware``); ``validate_session`` checks it first.
    """
    if getattr(app.state, "tether_container", None) is not None:
        raise RuntimeError("install() was already called for this app")
    if drain_timeout <= 0:
        raise ValueError(
            f"drain_timeout must be a positive number of seconds, got {drain_timeout!r}"
        )
    metrics = None
    if metrics_path is not None:
        from ._prometheus import serve_metrics

        # No MetricsMiddleware: TetherMiddleware times the requests itself, in the
        # `send` wrapper it has anyway, where a middleware of its own would cost a
        # second layer and a second wrapper on every request.
        metrics = serve_metrics(app, container, path=metrics_path)
    app.state.tether_container = container
    app.state.tether_request_id_header = request_id_header
    gate = Gate()
    app.router.lifespan_context = lifespan(
        container, app.router.lifespan_context, drain_timeout=drain_timeout, gate=gate
    )
    app.add_middleware(
        TetherMiddleware,
        container=container,
        session_cookie=session_cookie,
        session_header=session_header,
        request_id_header=request_id_header,
        gate=gate,
        open_while_draining=[f"{health_prefix}/live"] if health_prefix is not None else [],
        validate_session=validate_session,
        metrics=metrics,
    )
    if health_prefix is not None:
        app.include_router(health_router(container, prefix=health_prefix))
    if status_prefix is not None:
        app.include_router(status_router(container, prefix=status_prefix))
    if error_handlers:
        add_error_handlers(app)


def request_id_of(request: HTTPConnection) -> str | None:
    found = request.scope.get(REQUEST_ID_KEY)
    return found if isinstance(found, str) else None


def _error(
    request: Request, status: int, error: str, message: str, *, header: bool = False,
    **extra: Any,
) -> JSONResponse:
    """An error body. ``header``: set the request id header too, for the handler that
    runs outside ``TetherMiddleware`` (which adds it to every other response)."""
    request_id = request_id_of(request)
    body: dict[str, Any] = {"error": error, "message": message, **extra, "request_id": request_id}
    headers = None
    if header and request_id:
        name = getattr(request.app.state, "tether_request_id_header", "X-Request-ID")
        headers = {name: request_id}
    return JSONResponse(body, status_code=status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    """JSON bodies for errors: ``{"error", "message", "request_id"}``, no tracebacks, no
    exception text from unexpected errors (it may hold a DSN or a secret)."""

    async def http_error(request: Request, error: Exception) -> Response:
        exc = cast(StarletteHTTPException, error)
        detail: Any = exc.detail  # typed str, but a dict or list is allowed and common
        if isinstance(detail, str):
            response = _error(request, exc.status_code, "http_error", detail)
        else:
            phrase = HTTPStatus(exc.status_code).phrase if exc.status_code in _STATUSES else ""
            response = _error(request, exc.status_code, "http_error", phrase, detail=detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def validation_error(request: Request, error: Exception) -> Response:
        exc = cast(RequestValidationError, error)
        details = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return _error(request, 422, "validation_error", "The request is not valid.",
                      details=details)

    async def unavailable(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ScopeMismatch) and exc.scope is Scope.SESSION:
            return _error(request, 400, "session_required",
                          "This endpoint needs a session: send the session cookie or header.")
        logger.error("a dependency could not be built: %s", redact(str(exc)),
                     extra={"request_id": request_id_of(request)})
        return _error(request, 503, "unavailable", "A service this request needs is unavailable.")

    async def resource_failed(request: Request, exc: Exception) -> Response:
        # A battery's server is down, slow or refusing: the service cannot answer now,
        # which is a 503, not a bug. Its name is safe to show; its detail may not be.
        error = cast(ResourceError, exc)
        logger.warning("%s failed: %s: %s", error.resource, type(error).__name__, error,
                       extra={"request_id": request_id_of(request)})
        response = _error(request, 503, "unavailable",
                          f"A service this request needs ({error.resource}) is unavailable.")
        if isinstance(error, CircuitOpen):
            response.headers["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
        return response

    async def internal(request: Request, exc: Exception) -> Response:
        logger.error("unhandled error in %s %s", request.method, request.url.path, exc_info=exc,
                     extra={"request_id": request_id_of(request)})
        return _error(request, 500, "internal_error", "Internal server error.", header=True)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ResolutionError, unavailable)
    app.add_exception_handler(ResourceError, resource_failed)
    app.add_exception_handler(Exception, internal)


_STATUSES = {s.value for s in HTTPStatus}


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (or ``"-"``) to every log record: attach it to a
    handler and use ``%(request_id)s`` in the format."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = REQUEST_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message, request id, and the
    exception's type (never its text or traceback, which may hold secrets)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            data["error"] = type(error).__name__
        return json.dumps(data, default=str)


def add_request_id(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """A structlog processor: ``structlog.configure(processors=[add_request_id, ...])``."""
    event.setdefault("request_id", REQUEST_ID.get())
    return event
