"""Deadlines for calls, kept by one watchdog per event loop.

``asyncio.timeout`` puts a timer in the loop's heap and cancels it for every call; for
a call that takes 50 µs on loopback that is a visible share of its cost. Here one
watchdog per loop holds the deadlines of every call in flight in a dict and keeps a
single timer, armed for the earliest of them: entering and leaving a deadline is a
dict insert and delete, and the timer is re-armed only when a new deadline is earlier
than the armed one (or, after it fires, once for the earliest left).

A deadline that passes cancels its task the way ``asyncio.timeout`` does
(``task.cancel()``, undone with ``task.uncancel()`` on the way out) and becomes
``TimeoutError``, so an outer ``asyncio.timeout`` or a task group's cancellation nests
with it as with the standard one.
"""

from __future__ import annotations

import _asyncio
import asyncio
import math
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

__all__ = ["Deadline", "deadline"]

_INF: Final = math.inf


class _Watchdog:
    """Every live deadline of one event loop and one timer for the earliest."""

    __slots__ = ("_armed_at", "_entries", "_loop", "_timer", "clock")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # loop.time(), without its Python frame where it is time.monotonic() (asyncio's
        # own loops); other loops (uvloop) keep their own clock.
        plain = getattr(type(loop), "time", None) is asyncio.BaseEventLoop.time
        self.clock: Callable[[], float] = time.monotonic if plain else loop.time
        self._entries: dict[Deadline, None] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = _INF

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = when
        self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed_at = _INF
        # The loop runs a timer once loop.time() + its clock resolution reaches it.
        now = self._loop.time() + self._loop._clock_resolution  # type: ignore[attr-defined]
        earliest = _INF
        expired = []
        for entry in self._entries:
            when = entry.when
            if when <= now:
                expired.append(entry)
            elif when < earliest:
                earliest = when
        for entry in expired:
            del self._entries[entry]
            entry._expire()
        if earliest < _INF:
            self._arm(earliest)


_watchdogs: dict[asyncio.AbstractEventLoop, _Watchdog] = {}
# The last loop asked for, and its watchdog: one identity check on the common path.
_last: list[Any] = [None, None]


def _watchdog(loop: asyncio.AbstractEventLoop) -> _Watchdog:
    if _last[0] is loop:
        last: _Watchdog = _last[1]
        return last
    dog = _watchdogs.get(loop)
    if dog is None:
        for old in [old for old in _watchdogs if old.is_closed()]:
            del _watchdogs[old]
        dog = _watchdogs[loop] = _Watchdog(loop)
    _last[0], _last[1] = loop, dog
    return dog


class Deadline:
    """``with deadline(seconds):`` inside a task; ``TimeoutError`` once it passes.

    A synchronous context manager: entering and leaving it never awaits. ``expired``
    tells whether this deadline cancelled the task (as ``asyncio.Timeout.expired()``).
    """

    __slots__ = ("_cancelling", "_dog", "_task", "expired", "when")

    def __init__(self, seconds: float) -> None:
        loop = _get_running_loop()
        task = task_of(loop) if task_of is not None else _current_task(loop)
        if task is None:
            raise RuntimeError("a deadline needs to run inside an asyncio task")
        self._dog = dog = _last[1] if _last[0] is loop else _watchdog(loop)
        self._task = task
        self.when = dog.clock() + seconds
        self.expired = False
        self._cancelling = 0

    def __enter__(self) -> Deadline:
        self._cancelling = self._task.cancelling()
        dog = self._dog
        dog._entries[self] = None
        if self.when < dog._armed_at:
            dog._arm(self.when)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.expired:
            self._dog._entries.pop(self, None)
            return
        # Our cancel is undone whatever happened; the CancelledError it caused becomes
        # TimeoutError unless someone else cancelled the task too.
        if self._task.uncancel() <= self._cancelling and exc_type is not None and \
                issubclass(exc_type, asyncio.CancelledError):
            raise TimeoutError from exc

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()

    def __repr__(self) -> str:
        state = "expired" if self.expired else "pending"
        return f"<Deadline when={self.when:.3f} {state}>"


def deadline(seconds: float) -> Deadline:
    """A deadline ``seconds`` from now for the running task (enter it at once)."""
    return Deadline(seconds)


_get_running_loop = asyncio.get_running_loop
_current_task = getattr(_asyncio, "current_task", asyncio.current_task)  # C from 3.12
# Python 3.11's asyncio.current_task is Python code around this dict of the C module
# (loop -> its running task): read it directly, one frame less on every call.
_tasks_by_loop: dict[Any, Any] | None = getattr(_asyncio, "_current_tasks", None)
task_of = None if hasattr(_asyncio, "current_task") or _tasks_by_loop is None \
    else _tasks_by_loop.get
