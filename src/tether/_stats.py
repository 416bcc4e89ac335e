"""Per-registration counters and the instrumentation hook."""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter
from typing import Protocol, runtime_checkable

from ._scope import Scope


@runtime_checkable
class Instrumentation(Protocol):
    """Receives lifecycle events; pass instances as ``Container(instrumentation=[...])``.

    Each hook runs inline, so keep it cheap. A container with none pays nothing.
    """

    def on_created(self, registration: str, scope: Scope, seconds: float) -> None: ...

    def on_disposed(self, registration: str, scope: Scope, seconds: float) -> None: ...

    def on_failed(self, registration: str, scope: Scope, error: BaseException) -> None: ...


@dataclass(frozen=True, slots=True)
class RegistrationMetrics:
    """A snapshot of one registration's counters (``container.metrics()``)."""

    registration: str
    scope: Scope
    created: int
    disposed: int
    failed: int
    active: int
    peak: int
    init_seconds_total: float
    init_seconds_last: float | None
    dispose_failed: int



class Stats:
    """Mutable counters behind ``RegistrationMetrics``; updated on the build path."""

    __slots__ = (
        "active",
        "born",
        "created",
        "display",
        "dispose_failed",
        "disposed",
        "failed",
        "hooks",
        "init_last",
        "init_total",
        "last_error",
        "peak",
        "scope",
        "tracked",
    )

    def __init__(
        self, display: str, scope: Scope, hooks: tuple[Instrumentation, ...], tracked: bool
    ) -> None:
        self.display = display
        self.scope = scope
        self.hooks = hooks
        # Plain transients are handed over and forgotten: no "active" count for them.
        self.tracked = tracked
        self.created = self.disposed = self.failed = self.active = self.peak = 0
        self.dispose_failed = 0
        self.init_total = 0.0
        self.init_last: float | None = None
        self.born: float | None = None  # perf_counter() when the last instance was made
        self.last_error: str | None = None  # the last build failure, type and message

    def made(self, started: float) -> None:
        self.born = now = perf_counter()
        seconds = now - started
        self.created += 1
        self.init_total += seconds
        self.init_last = seconds
        if self.tracked:
            self.active += 1
            if self.active > self.peak:
                self.peak = self.active
        if self.hooks:
            self.notify_created(seconds)

    def failure(self, error: BaseException) -> None:
        self.failed += 1
        from ._health import describe_error

        self.last_error = describe_error(error)
        for hook in self.hooks:
            hook.on_failed(self.display, self.scope, error)

    def notify_created(self, seconds: float) -> None:
        for hook in self.hooks:
            hook.on_created(self.display, self.scope, seconds)

    def notify_disposed(self, seconds: float) -> None:
        for hook in self.hooks:
            hook.on_disposed(self.display, self.scope, seconds)

    def snapshot(self, extra_created: int = 0) -> RegistrationMetrics:
        return RegistrationMetrics(
            registration=self.display,
            scope=self.scope,
            created=self.created + extra_created,
            disposed=self.disposed,
            failed=self.failed,
            active=self.active,
            peak=self.peak,
            init_seconds_total=self.init_total,
            init_seconds_last=self.init_last,
            dispose_failed=self.dispose_failed,
        )
