"""Tokens, passwords, permissions (extra: security).

    tokens = Tokens(TokenConfig(issuer="notes", audience="notes"))
    auth = Authenticator(tokens, users, Permissions({"editor": {"notes:write"}}))
    pair = await auth.login("alice", "correct horse")       # a TokenPair
    principal = await auth.principal(pair.access_token)     # who, roles, permissions

FastAPI dependencies (``require_scopes``, ``require_roles``, ``require_permission``)
are in ``tether.security.fastapi``.
"""

try:
    import argon2  # noqa: F401
    import cryptography  # noqa: F401
    import jwt  # noqa: F401
    import pydantic  # noqa: F401
except ImportError:
    raise ImportError(
        "tether.security needs the 'security' extra: pip install 'tether[security]'"
    ) from None

from ._auth import (
    Authenticator,
    MemoryUsers,
    PasswordHasher,
    Permissions,
    Principal,
    User,
    UserStore,
)
from ._errors import InvalidCredentials, InvalidToken, NotAllowed, SecurityError
from ._ratelimit import (
    MemoryRateLimits,
    RateLimit,
    RateLimitBackend,
    RateLimiter,
    RateLimiterConfig,
    RateLimiterStats,
    RateLimitResult,
    RedisRateLimits,
)
from ._sessions import (
    MemorySessionStore,
    RedisSessionStore,
    Session,
    SessionConfig,
    Sessions,
    SessionStats,
    SessionStore,
)
from ._stores import MemoryTokenStore, RedisTokenStore, TokenStore
from ._tokens import Claims, TokenConfig, TokenPair, Tokens, TokenStats

__all__ = [
    "Authenticator",
    "Claims",
    "InvalidCredentials",
    "InvalidToken",
    "MemoryRateLimits",
    "MemorySessionStore",
    "MemoryTokenStore",
    "MemoryUsers",
    "NotAllowed",
    "PasswordHasher",
    "Permissions",
    "Principal",
    "RateLimit",
    "RateLimitBackend",
    "RateLimitResult",
    "RateLimiter",
    "RateLimiterConfig",
    "RateLimiterStats",
    "RedisRateLimits",
    "RedisSessionStore",
    "RedisTokenStore",
    "SecurityError",
    "Session",
    "SessionConfig",
    "SessionStats",
    "SessionStore",
    "Sessions",
    "TokenConfig",
    "TokenPair",
    "TokenStats",
    "TokenStore",
    "Tokens",
    "User",
    "UserStore",
]
