from __future__ import annotations

from enum import IntEnum


class Scope(IntEnum):
    """How long an instance lives, longest first.

    A registration may depend on registrations of its own scope or a longer-lived
    one; anything else is an error when the graph is validated.
    """

    SINGLETON = 0  # one per process, shared by every container
    APP = 1  # one per container
    SESSION = 2  # one per session id, disposed when the session expires
    REQUEST = 3  # one per request or ``container.scope()`` block
    TRANSIENT = 4  # a new one at every resolution


# Scopes a live scope object can be; TRANSIENT is never a live scope.
LIVE_SCOPES = (Scope.SINGLETON, Scope.APP, Scope.SESSION, Scope.REQUEST)
