"""Shared pieces of the lifecycle tests: an event log, a stopwatch, a cause walker and
scopes dropped without being closed."""

from __future__ import annotations

import gc
import time
from types import TracebackType

from tether import ActiveScope


class Log:
    """What happened, in order: ``"open Pool"``, ``"close Pool"``...

    Bound as a value (``container.bind(Log, log)``), so factories and resource
    classes can take it as a dependency and report their own lifecycle.
    """

    def __init__(self) -> None:
        self.events: list[str] = []

    def __call__(self, event: str) -> None:
        self.events.append(event)

    def opened(self) -> list[str]:
        return [e.removeprefix("open ") for e in self.events if e.startswith("open ")]

    def closed(self) -> list[str]:
        return [e.removeprefix("close ") for e in self.events if e.startswith("close ")]


class Stopwatch:
    """``with Stopwatch() as watch: ...``, then ``watch.seconds``."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self.started = time.monotonic()
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.seconds = time.monotonic() - self.started


def causes(error: BaseException) -> list[BaseException]:
    """``error``, its ``__cause__``, that one's ``__cause__``... outermost first."""
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__
    return found


def abandon_request(container: ActiveScope, dependency: type[object]) -> None:
    """Open a REQUEST scope, resolve ``dependency`` in it, then drop the scope without
    closing it and collect the garbage."""
    request = container.scope()
    request.get(dependency)
    del request
    gc.collect()


async def abandon_async_request(container: ActiveScope, dependency: type[object]) -> None:
    request = container.scope()
    await request.aget(dependency)
    del request
    gc.collect()
