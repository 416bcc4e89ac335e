"""Helpers for testing code that uses tether.

    with overrides(container, {Clock: FrozenClock(), Mailer: FakeMailer}):
        ...
    assert_no_leaks(container)       # every scope closed, every resource disposed
    clock = FakeClock(); Container(clock=clock); clock.advance(3600)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

from ._container import Container
from ._scope import Scope

__all__ = ["FakeClock", "assert_no_leaks", "find_leaks", "overrides"]


class FakeClock:
    """A monotonic clock that moves only when told: ``Container(clock=FakeClock())``.

    Session expiry reads it, so a test can expire a session without waiting.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = float(start)

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a monotonic clock cannot go back ({seconds!r} seconds)")
        self.now += seconds


@contextmanager
def overrides(container: Container, replacements: Mapping[Any, Any]) -> Iterator[None]:
    """Several ``container.override(...)`` at once; keys are types or ``(type, name)``."""
    with ExitStack() as stack:
        for key, replacement in replacements.items():
            if isinstance(key, tuple):
                dependency, name = key
                stack.enter_context(container.override(dependency, replacement, name=name))
            else:
                stack.enter_context(container.override(key, replacement))
        yield


def find_leaks(container: Container) -> list[str]:
    """What is still open or undisposed, one sentence each (empty when nothing leaks).

    While the container is open, a scope that is still open is a leak; once it is
    closed, so is any resource with a teardown that did not run.
    """
    reg = container._registry
    leaks = []
    for scope in reg.open_scopes():
        if scope.kind is Scope.SESSION and not container.closed:
            continue  # sessions outlive their blocks by design
        pending = ", ".join(p.display for _, _, p in scope._exits) or "nothing yet"
        leaks.append(f"{scope.describe()} is still open (pending teardown: {pending})")
    if reg.leaked:
        leaks.append(f"{reg.leaked} scope(s) were garbage-collected without being closed")
    if container.closed:
        for name, m in container.metrics().items():
            p = reg.providers.get(_key_for(reg, name))
            if p is not None and p.has_teardown and m.active > 0:
                leaks.append(f"{name} ({m.scope.name}): {m.active} instance(s) never disposed")
    return leaks


def _key_for(reg: Any, display: str) -> Any:
    for key, p in reg.providers.items():
        if p.display == display:
            return key
    return None


def assert_no_leaks(container: Container) -> None:
    """Fail with every leak named; see ``find_leaks``."""
    leaks = find_leaks(container)
    if leaks:
        raise AssertionError("tether found leaks:\n  - " + "\n  - ".join(leaks))
