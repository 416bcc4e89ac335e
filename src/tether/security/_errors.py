"""The security kit's errors (also exported from ``tether.exceptions``)."""

from __future__ import annotations

from ..exceptions import TetherError


class SecurityError(TetherError):
    """Base of the security kit's refusals."""


class InvalidToken(SecurityError):
    """A token was refused: bad signature, algorithm, key id, type or claims, expired,
    revoked, or reused. ``reason`` says which, for logs; HTTP answers say only 401."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"invalid token: {self.reason}"


class InvalidCredentials(SecurityError):
    """A login with an unknown user, a wrong password or a disabled account: one error
    for all three, so an answer never tells which names exist."""

    def __init__(self) -> None:
        super().__init__("wrong username or password")


class NotAllowed(SecurityError):
    """Authenticated, but without the scope, role or permission asked for (HTTP 403)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"not allowed: {self.reason}"
