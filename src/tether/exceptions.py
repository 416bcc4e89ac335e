"""Every error tether raises.

    TetherError
    ├── RegistrationError        a registration that cannot work (bad target, no type hint)
    ├── ResolutionError          an instance could not be produced
    │   ├── DependencyNotFound   nothing is bound for a requested type (also a LookupError)
    │   ├── AsyncRequired        a sync ``get`` of something that needs ``await``
    │   ├── ScopeMismatch        resolved outside the scope it lives in
    │   └── ResourceInitError    the factory, constructor or ``initialize()`` raised
    ├── GraphError               validation found problems; ``.problems`` lists them
    │   ├── DependencyCycle
    │   └── ScopeViolation       a longer-lived registration depends on a shorter-lived one
    ├── ClosedError              a closed container or scope was used (also a RuntimeError)
    ├── WrongEventLoop           an async resource used from another event loop
    ├── StartupError             an eager resource failed during start-up
    ├── DisposeTimeout           a finalizer ran past ``dispose_timeout`` and was abandoned
    ├── TeardownError            finalizers failed; an ExceptionGroup of every error
    ├── ResourceError            a battery's call failed; ``.resource`` names the resource
    │   ├── ResourceTimeout      the call ran past its deadline (also a TimeoutError)
    │   │   └── PoolTimeout      no connection came free within ``pool_timeout``
    │   ├── ResourceUnavailable  the server cannot be reached or the connection was lost
    │   │                        (also a ConnectionError); ``.sent`` says whether the
    │   │                        request may have reached the server
    │   └── CircuitOpen          the circuit breaker is open; ``.retry_after`` seconds
    │                            until it lets a probe through
    ├── CryptoError              a crypto backend refused an input or an operation;
    │   │                        ``.resource`` names the backend
    │   ├── DecryptionError      an envelope failed to authenticate: one message for
    │   │                        every kind of tampering, never partial plaintext
    │   ├── InvalidSignature     a signature does not match its data (one message)
    │   └── UnknownKey           a key id that is not in the key ring (also a LookupError)
    └── SecurityError            the security kit refused a caller
        ├── InvalidToken         a token failed a check; ``.reason`` says which (for logs)
        ├── InvalidCredentials   a login failed: one error whatever was wrong
        └── NotAllowed           authenticated, but lacking a scope, role or permission

    BaseTeardownError            a BaseExceptionGroup: TeardownError's base, raised itself
                                 when a finalizer raised a BaseException on its own

Each error keeps the objects it talks about as attributes and renders its sentence
in ``__str__``. docs/errors.md lists every one with its fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._scope import Scope

__all__ = [
    "AsyncRequired",
    "BaseTeardownError",
    "CircuitOpen",
    "ClosedError",
    "CryptoError",
    "DecryptionError",
    "DependencyCycle",
    "DependencyNotFound",
    "DisposeTimeout",
    "GraphError",
    "InvalidCredentials",
    "InvalidSignature",
    "InvalidToken",
    "NotAllowed",
    "PoolTimeout",
    "RegistrationError",
    "ResolutionError",
    "ResourceError",
    "ResourceInitError",
    "ResourceTimeout",
    "ResourceUnavailable",
    "ScopeMismatch",
    "ScopeViolation",
    "SecurityError",
    "StartupError",
    "TeardownError",
    "TetherError",
    "UnknownKey",
    "WrongEventLoop",
]


def _article(word: str) -> str:
    return "An" if word[:1] in "AEIOU" else "A"


def _chain(chain: Sequence[tuple[str, Scope]]) -> str:
    return " -> ".join(f"{name} ({scope.name})" for name, scope in chain)


class TetherError(Exception):
    """Base of every tether error."""


class RegistrationError(TetherError, TypeError):
    """A registration that cannot work, caught when it is made."""


class ResolutionError(TetherError):
    """An instance could not be produced.

    ``chain`` is the resolution path, outermost first, as ``(name, scope)`` pairs.
    """

    chain: tuple[tuple[str, Scope], ...]

    def __init__(self, dependency: str, chain: Sequence[tuple[str, Scope]] = ()) -> None:
        super().__init__(dependency, tuple(chain))
        self.dependency = dependency
        self.chain = tuple(chain)

    def _path(self) -> str:
        return f" (chain: {_chain(self.chain)})" if len(self.chain) > 1 else ""


class DependencyNotFound(ResolutionError, LookupError):
    """Nothing is bound for a requested type (and name); ``available`` lists other names."""

    def __init__(
        self,
        dependency: str,
        chain: Sequence[tuple[str, Scope]] = (),
        *,
        needed_by: str | None = None,
        available: Sequence[str] = (),
    ) -> None:
        super().__init__(dependency, chain)
        self.needed_by = needed_by
        self.available = tuple(available)

    def __str__(self) -> str:
        where = f", needed by {self.needed_by}" if self.needed_by else ""
        msg = f"nothing is bound for {self.dependency}{where}{self._path()}."
        if self.available:
            msg += f" Bound under other names: {', '.join(self.available)}."
        bare = self.dependency.split("[")[0]
        return msg + f" Hint: register it with container.bind({bare}, ...)."


class AsyncRequired(ResolutionError):
    """A sync ``get`` reached something that needs ``await`` to build."""

    def __init__(
        self, dependency: str, chain: Sequence[tuple[str, Scope]] = (), *, because: str = ""
    ) -> None:
        super().__init__(dependency, chain)
        self.because = because

    def __str__(self) -> str:
        why = f" because {self.because}" if self.because else ""
        return (
            f"{self.dependency} needs await{why}{self._path()}: "
            f"use `await scope.aget(...)` instead of `scope.get(...)`, or register it with "
            f"eager=True and start the container with `async with container` so it is built "
            f"before any sync code asks for it."
        )


class ScopeMismatch(ResolutionError):
    """Resolved from a scope with no ``scope`` of the registration's kind around it."""

    def __init__(
        self,
        dependency: str,
        chain: Sequence[tuple[str, Scope]] = (),
        *,
        scope: Scope,
        current: Scope,
    ) -> None:
        super().__init__(dependency, chain)
        self.scope = scope
        self.current = current

    def __str__(self) -> str:
        hint = (
            "open one with `container.scope(Scope.SESSION, session_id=...)`"
            if self.scope.name == "SESSION"
            else f"open one with `container.scope(Scope.{self.scope.name})`"
        )
        return (
            f"{self.dependency} lives in {self.scope.name} scope but was resolved from "
            f"{self.current.name} scope, which has no {self.scope.name} scope around it"
            f"{self._path()}. Hint: {hint} and resolve it there."
        )


class ResourceInitError(ResolutionError):
    """The factory, constructor or ``initialize()`` raised; ``__cause__`` is the error."""

    def __init__(
        self, dependency: str, chain: Sequence[tuple[str, Scope]] = (), *, error: BaseException
    ) -> None:
        super().__init__(dependency, chain)
        self.error = error

    def __str__(self) -> str:
        return (
            f"building {self.dependency} failed{self._path()}: "
            f"{type(self.error).__name__}: {self.error}. Nothing was cached; "
            f"the next resolution tries again."
        )


class GraphError(TetherError):
    """Validation found problems; ``problems`` holds one error for each."""

    def __init__(self, problems: Sequence[TetherError]) -> None:
        super().__init__(tuple(problems))
        self.problems = tuple(problems)

    def __str__(self) -> str:
        lines = [f"the dependency graph has {len(self.problems)} problem(s):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


class DependencyCycle(GraphError):
    """Registrations that depend on each other in a loop; ``cycle`` is the loop."""

    def __init__(self, cycle: Sequence[tuple[str, Scope]]) -> None:
        TetherError.__init__(self, tuple(cycle))
        self.problems = ()
        self.cycle = tuple(cycle)

    def __str__(self) -> str:
        return (
            f"dependency cycle: {_chain(self.cycle)}. Hint: break it by depending on a "
            f"factory or moving shared state into a third registration."
        )


class ScopeViolation(GraphError):
    """A registration depends on a shorter-lived one.

    ``chain`` starts at the registration that would live too long and ends at the
    shorter-lived one it reaches (through TRANSIENTs in between, if any).
    """

    def __init__(self, chain: Sequence[tuple[str, Scope]]) -> None:
        TetherError.__init__(self, tuple(chain))
        self.problems = ()
        self.chain = tuple(chain)

    def __str__(self) -> str:
        (owner, owner_scope), (dep, dep_scope) = self.chain[0], self.chain[-1]
        via = " through TRANSIENT registrations" if len(self.chain) > 2 else ""
        return (
            f"{owner} ({owner_scope.name}) depends{via} on {dep} ({dep_scope.name}), which "
            f"lives shorter: {_chain(self.chain)}. {_article(owner_scope.name)} "
            f"{owner_scope.name} instance would keep a stale {dep}. Hint: try changing the "
            f"scope of {owner} to {dep_scope.name}, or of {dep} to {owner_scope.name}."
        )


class ClosedError(TetherError, RuntimeError):
    """A closed container or scope was used; ``what`` names it."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what

    def __str__(self) -> str:
        return (
            f"cannot use this {self.what} once it has been closed. "
            f"Hint: open a new one instead of keeping a reference past its `with` block."
        )


class WrongEventLoop(TetherError, RuntimeError):
    """Async resources built on one event loop were used from another."""

    def __str__(self) -> str:
        return (
            "this container's async resources were created on another event loop, "
            "which they stay bound to. Hint: create one container per event loop (for "
            "example a fresh container in each pytest-asyncio test, or run the tests on one "
            "session-wide loop), or close the container before the loop ends."
        )


class StartupError(TetherError):
    """An eager registration failed at start-up; ``error`` is why."""

    def __init__(self, dependency: str, *, error: BaseException) -> None:
        super().__init__(dependency)
        self.dependency = dependency
        self.error = error

    def __str__(self) -> str:
        error = self.error
        if isinstance(error, ResourceInitError):
            error = error.error  # the factory's own error, not the "tries again" sentence
        text = str(error).rstrip(".")
        what = f"{type(error).__name__}: {text}" if text else type(error).__name__
        return (
            f"start-up failed at {self.dependency}: {what}. The resources started before it "
            f"were disposed in reverse order."
        )


class DisposeTimeout(TetherError, TimeoutError):
    """A finalizer ran past ``dispose_timeout`` and was abandoned."""

    def __init__(self, dependency: str, timeout: float) -> None:
        super().__init__(dependency, timeout)
        self.dependency = dependency
        self.timeout = timeout

    def __str__(self) -> str:
        return (
            f"disposing {self.dependency} took longer than {self.timeout:g}s and was "
            f"abandoned. Hint: make its teardown bounded, or raise Container(dispose_timeout=...)."
        )


class BaseTeardownError(BaseExceptionGroup):
    """One or more finalizers failed, and one of the errors is not an ``Exception``
    (a finalizer raised CancelledError on its own). ``TeardownError`` is the usual,
    ``Exception`` case; ``except BaseTeardownError`` catches both.

    ``exceptions`` holds the scope body's own error first (when there was one), then
    each finalizer's error; ``resources`` names, position by position, the resource
    whose finalizer raised (``None`` for the body's error).
    """

    resources: tuple[str | None, ...]

    def __new__(
        cls,
        message: str,
        exceptions: Sequence[BaseException],
        resources: Sequence[str | None] = (),
    ) -> BaseTeardownError:
        self = super().__new__(cls, message, exceptions)
        self.resources = tuple(resources)
        return self

    def __init__(self, message: str, exceptions: Sequence[Any], resources: Any = ()) -> None:
        super().__init__(message, exceptions)

    def derive(self, excs: Sequence[BaseException]) -> BaseTeardownError:  # type: ignore[override]
        return BaseTeardownError(self.message, excs)


class TeardownError(BaseTeardownError, TetherError, ExceptionGroup):
    """One or more finalizers failed; an ``ExceptionGroup`` of every error.

    ``exceptions`` holds the scope body's own error first (when there was one), then
    each finalizer's error; ``resources`` names, position by position, the resource
    whose finalizer raised (``None`` for the body's error).
    """

    def derive(self, excs: Sequence[Exception]) -> TeardownError:  # type: ignore[override]
        return TeardownError(self.message, excs)


def _redact(text: str) -> str:
    from ._health import redact

    return redact(text)


class ResourceError(TetherError):
    """A call through a battery (HTTP, database, Redis, ...) failed.

    Driver errors are translated into this family where the battery calls the driver,
    so user code catches one set of types whatever the backend; the driver's own error
    is kept as ``__cause__``. ``resource`` names the registration, ``detail`` says what
    happened; neither ever carries a password (URLs are redacted).
    """

    def __init__(self, resource: str, detail: str) -> None:
        detail = _redact(detail)
        super().__init__(resource, detail)
        self.resource = resource
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.resource}: {self.detail}"


class ResourceTimeout(ResourceError, TimeoutError):
    """The call ran past its deadline (``timeout`` seconds) and was cancelled."""

    def __init__(self, resource: str, timeout: float, operation: str = "call") -> None:
        ResourceError.__init__(
            self, resource, f"{operation} did not finish within timeout={timeout:g}s"
        )
        self.args = (resource, timeout, operation)
        self.timeout = timeout
        self.operation = operation

    def __str__(self) -> str:
        return (
            f"{self.resource}: {self.detail}. Hint: raise the resource's timeout, or find "
            f"out why the server is slow (its health and latency are on /health/detailed)."
        )


class PoolTimeout(ResourceTimeout):
    """Every connection of the pool stayed busy for ``pool_timeout`` seconds.

    The same error for the database, Redis, HTTP and generic pools; ``size`` is the
    pool's limit when the battery knows it.
    """

    def __init__(self, resource: str, timeout: float, size: int | None = None) -> None:
        ResourceError.__init__(
            self, resource,
            f"no connection came free within pool_timeout={timeout:g}s"
            + (f" (pool size {size})" if size is not None else ""),
        )
        self.args = (resource, timeout, size)
        self.timeout = timeout
        self.operation = "pool checkout"
        self.size = size

    def __str__(self) -> str:
        return (
            f"{self.resource}: {self.detail}. Hint: raise the pool size or pool_timeout, "
            f"or hold connections for a shorter time (do not keep one across slow awaits)."
        )


class ResourceUnavailable(ResourceError, ConnectionError):
    """The server could not be reached, refused, or the connection broke mid-call.

    ``sent`` is False only when the request provably never left (a refused or timed-out
    connect): such a call is safe to retry even when it is not idempotent.
    """

    def __init__(self, resource: str, detail: str, sent: bool = True) -> None:
        ResourceError.__init__(self, resource, detail)
        self.args = (resource, self.detail, sent)
        self.sent = sent


class CircuitOpen(ResourceError):
    """The resource's circuit breaker is open: calls fail at once without reaching it.

    ``retry_after`` is the number of seconds until the breaker lets one probe call
    through; ``failures`` is how many failures in a row opened it.
    """

    def __init__(self, resource: str, retry_after: float, failures: int) -> None:
        ResourceError.__init__(
            self, resource,
            f"circuit open after {failures} failures in a row; the next probe is allowed "
            f"in {max(retry_after, 0.0):.2f}s",
        )
        self.args = (resource, retry_after, failures)
        self.retry_after = retry_after
        self.failures = failures


class CryptoError(TetherError):
    """A crypto backend refused an input or an operation; ``resource`` names the backend."""

    def __init__(self, resource: str, detail: str) -> None:
        super().__init__(resource, detail)
        self.resource = resource
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.resource}: {self.detail}"


class DecryptionError(CryptoError):
    """An envelope did not authenticate under the backend's keys.

    Every cause reads the same (a flipped byte, a wrong tag, wrong associated data, a
    truncated envelope, an unknown or retired key id, bad CBC padding behind a valid
    MAC), so the error tells an attacker nothing; no plaintext is ever returned.
    """

    def __init__(self, resource: str) -> None:
        super().__init__(
            resource,
            "decryption failed: the envelope is damaged or forged, was sealed with "
            "different associated data, or under a key this backend does not hold",
        )
        self.args = (resource,)


class InvalidSignature(CryptoError):
    """A signature does not match its data under the backend's keys (one message for
    every cause: changed data, changed signature, unknown or retired key id)."""

    def __init__(self, resource: str) -> None:
        super().__init__(
            resource,
            "signature verification failed: the data or the signature was changed, or "
            "it was signed with a key this backend does not hold",
        )
        self.args = (resource,)


class UnknownKey(CryptoError, LookupError):
    """A key operation named a key id that is not in the key ring (``key_id``)."""

    def __init__(self, resource: str, key_id: str) -> None:
        super().__init__(
            resource,
            f"no key with id {key_id!r} in the key ring. Hint: crypto.key_ids lists "
            f"the keys it holds; a retired key is gone for good",
        )
        self.args = (resource, key_id)
        self.key_id = key_id


class SecurityError(TetherError):
    """Base of the security kit's refusals (``tether.security``)."""


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
