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

import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

try:
    from fastapi import APIRouter, FastAPI, params
    from fastapi.responses import JSONResponse
    from starlette.requests import HTTPConnection
    from starlette.types import ASGIApp, Receive, Send
    from starlette.types import Scope as ASGIScope
except ImportError:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "tether.fastapi needs the 'fastapi' extra: pip install 'tether[fastapi]'"
    ) from None

from ._container import Container
from ._health import HealthStatus
from ._scope import Scope

__all__ = ["Inject", "TetherMiddleware", "dependency", "health_router", "install"]

T = TypeVar("T")

SCOPE_KEY = "tether.scope"  # where the request's scope sits in the ASGI scope


class TetherMiddleware:
    """Pure ASGI middleware: one REQUEST scope per HTTP request or WebSocket connection.

    With ``session_cookie`` or ``session_header``, a request that carries a session id
    runs its REQUEST scope inside the SESSION scope for that id.
    """

    def __init__(
        self,
        app: ASGIApp,
        container: Container,
        *,
        session_cookie: str | None = None,
        session_header: str | None = None,
    ) -> None:
        self.app = app
        self.container = container
        self.session_cookie = session_cookie
        self.session_header = session_header.lower().encode() if session_header else None

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        if self.session_cookie is None and self.session_header is None:
            async with self.container.scope() as request:
                scope[SCOPE_KEY] = request
                await self.app(scope, receive, send)
            return
        session_id = self._session_id(scope)
        if session_id is None:
            async with self.container.scope() as request:
                scope[SCOPE_KEY] = request
                await self.app(scope, receive, send)
            return
        session = self.container.scope(Scope.SESSION, session_id=session_id)
        async with session, session.scope() as request:
            scope[SCOPE_KEY] = request
            await self.app(scope, receive, send)

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
    return found


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
            if isinstance(item, tuple):
                if len(item) != 2 or not isinstance(item[1], str):
                    raise TypeError(
                        f"Inject takes Inject[T] or Inject[T, 'name'], got Inject{list(item)}"
                    )
                tp, name = item
            else:
                tp, name = item, None
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


def install(
    app: FastAPI,
    container: Container,
    *,
    health_prefix: str | None = "/health",
    session_cookie: str | None = None,
    session_header: str | None = None,
) -> None:
    """Wire ``container`` into ``app``.

    - lifespan: the container starts before the app's own lifespan and closes after it
      (an existing lifespan keeps working);
    - a REQUEST scope per request and per WebSocket connection (``TetherMiddleware``);
    - ``/health``, ``/health/live``, ``/health/ready``, ``/health/detailed`` unless
      ``health_prefix=None``.
    """
    if getattr(app.state, "tether_container", None) is not None:
        raise RuntimeError("install() was already called for this app")
    app.state.tether_container = container
    original = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: Any) -> AsyncIterator[Mapping[str, Any] | None]:
        async with container, original(application) as state:
            yield state

    app.router.lifespan_context = lifespan  # type: ignore[assignment]
    app.add_middleware(
        TetherMiddleware,
        container=container,
        session_cookie=session_cookie,
        session_header=session_header,
    )
    if health_prefix is not None:
        app.include_router(health_router(container, prefix=health_prefix))
