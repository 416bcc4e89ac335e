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
from typing import Annotated

try:
    from fastapi import Depends, HTTPException
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
except ImportError:
    raise ImportError(
        "tether.security.fastapi needs the 'fastapi' extra: pip install 'tether[fastapi]'"
    ) from None

from ..fastapi import dependency
from ._auth import Authenticator, Principal
from ._errors import InvalidToken, NotAllowed

__all__ = ["authenticated", "require_permission", "require_roles", "require_scopes"]

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
