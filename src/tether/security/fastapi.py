"""FastAPI dependencies for the security kit: who is calling, and may they.

    from tether.security.fastapi import require_permission, require_scopes

    @app.get("/notes")
    async def notes(user: Annotated[Principal, Depends(require_scopes("notes:read"))]): ...

Each dependency reads ``Authorization: Bearer <token>``, verifies it through the
container's ``Authenticator`` and answers 401 (with ``WWW-Authenticate: Bearer``) when
the token is missing or refused, 403 when the caller is known but lacks what the
route requires. The bearer scheme appears in the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

try:
    from fastapi import Depends, HTTPException, Request, Response
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from starlette.requests import HTTPConnection
except ImportError:
    raise ImportError(
        "tether.security.fastapi needs the 'fastapi' extra: pip install 'tether[fastapi]'"
    ) from None

from .._container import Container
from ..fastapi import SessionValidator, dependency
from ._auth import Authenticator, Principal
from ._errors import InvalidToken, NotAllowed
from ._ratelimit import RateLimit, RateLimiter
from ._sessions import Session, Sessions

__all__ = [
    "authenticated",
    "current_session",
    "rate_limit",
    "require_permission",
    "require_roles",
    "require_scopes",
    "require_session",
    "session_validator",
]

SESSION_KEY = "tether.session"  # where the validated Session sits in the ASGI scope

_bearer = HTTPBearer(auto_error=False, description="An access token from the login route.")

Check = Callable[[Principal], None]


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


async def authenticated(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    auth: Annotated[Authenticator, Depends(dependency(Authenticator))],
) -> Principal:
    """The caller, from a valid access token; 401 otherwise."""
    if credentials is None:
        raise _unauthorized("not authenticated")
    try:
        return await auth.principal(credentials.credentials)
    except InvalidToken as error:
        raise HTTPException(
            401, "invalid token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from error


def _requiring(check: Check, label: str, challenge: str | None = None) -> Callable[
        ..., Awaitable[Principal]]:
    async def require(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        try:
            check(principal)
        except NotAllowed as error:
            headers = {"WWW-Authenticate": challenge} if challenge else None
            raise HTTPException(403, str(error), headers=headers) from error
        return principal

    require.__qualname__ = require.__name__ = f"require_{label}"
    return require


def require_scopes(*scopes: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's token must carry every one of ``scopes``."""
    wanted = " ".join(scopes)
    return _requiring(lambda p: p.require_scopes(*scopes), "scopes",
                      f'Bearer error="insufficient_scope", scope="{wanted}"')


def require_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller must hold every one of ``roles``."""
    return _requiring(lambda p: p.require_roles(*roles), "roles")


def require_permission(*permissions: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's roles must grant every one of ``permissions``."""
    return _requiring(lambda p: p.require_permission(*permissions), "permission")


def session_validator(container: Container, name: str | None = None) -> SessionValidator:
    """For ``install(app, container, session_cookie=..., validate_session=...)``: only
    ids the container's ``Sessions`` knows (alive, and from the same client when
    binding is on) open a SESSION scope; the ``Session`` is kept for
    ``current_session``. When a session ends (logout, rotation, timeout seen on a
    request), the container's SESSION scope for its id is disposed."""
    found: list[Sessions] = []

    async def validate(session_id: str, connection: HTTPConnection) -> str | None:
        if not found:
            sessions = await container.aget(Sessions, name)
            sessions.on_end(container.end_session)
            found.append(sessions)
        client = connection.client
        session = await found[0].get(session_id, ip=client.host if client else None,
                                     user_agent=connection.headers.get("user-agent"))
        if session is None:
            return None
        connection.scope[SESSION_KEY] = session
        return session.id

    return validate


def current_session(connection: HTTPConnection) -> Session | None:
    """The request's validated server-side session, or None."""
    found: Any = connection.scope.get(SESSION_KEY)
    return found if isinstance(found, Session) else None


def require_session(
    session: Annotated[Session | None, Depends(current_session)],
) -> Session:
    """The request's session; 401 when there is none (or it ended)."""
    if session is None:
        raise HTTPException(401, "no valid session")
    return session


Per = Callable[[Request], str]


def _client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def rate_limit(limit: str | RateLimit, *, per: str | Per = "ip",
               limiter: str | None = None) -> Callable[..., Awaitable[None]]:
    """A dependency that counts the request against ``limit`` ("100/minute").

    ``per`` picks whose budget it spends: ``"ip"`` (the client address), ``"user"``
    (the authenticated subject; 401 without a token), ``"route"`` (one budget for
    everybody), or a function of the request. Budgets are per route. An allowed request
    gets ``RateLimit-Limit/Remaining/Reset`` headers; a refused one 429 with
    ``Retry-After``; when the backend is down, a fail-closed limiter answers 503.
    """
    rule = RateLimit.parse(limit) if isinstance(limit, str) else limit
    if per not in ("ip", "user", "route") and not callable(per):
        raise ValueError(f"rate_limit(per={per!r}): use 'ip', 'user', 'route' or a "
                         f"function of the request")

    async def identity(request: Request) -> str:
        if per == "ip":
            return _client_ip(request)
        if per == "route":
            return "*"
        if per == "user":
            auth = await _authenticator(request)
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token:
                raise _unauthorized("not authenticated")
            try:
                return (await auth.principal(token)).subject
            except InvalidToken as error:
                raise _unauthorized("invalid token") from error
        return str(per(request))  # type: ignore[operator]

    async def check(request: Request, response: Response) -> None:
        from ..fastapi import current_scope

        who = await identity(request)
        route = getattr(request.scope.get("route"), "path", request.url.path)
        rl: RateLimiter = await current_scope(request).aget(RateLimiter, limiter)
        result = await rl.hit(f"{route}|{who}", rule)
        if result.backend_failed and not result.allowed:
            raise HTTPException(503, "rate limiter unavailable",
                                headers={"Retry-After": "1"})
        if not result.allowed:
            raise HTTPException(429, "too many requests", headers=result.headers())
        response.headers.update(result.headers())

    check.__qualname__ = check.__name__ = "rate_limit"
    return check


async def _authenticator(request: Request) -> Authenticator:
    from ..fastapi import current_scope

    found: Authenticator = await current_scope(request).aget(Authenticator)
    return found
