"""The security kit's errors live in ``tether.exceptions``, with every other error."""

from __future__ import annotations

from ..exceptions import InvalidCredentials, InvalidToken, NotAllowed, SecurityError

__all__ = ["InvalidCredentials", "InvalidToken", "NotAllowed", "SecurityError"]
