"""A first-come, first-served line of tasks waiting for something a pool hands out.

The pool hands a returned item (or a freed slot) straight to the task that has waited
longest, so a task that arrives later can never take it first. A waiter that gives
up, by timeout or cancellation, leaves the line without losing what it was handed in
the same instant: ``give_back`` passes it on.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

G = TypeVar("G")


class Marker(enum.Enum):
    """Grants that are not an item."""

    SLOT = "slot"  # a free slot: the receiver may make (or open) one more
    CLOSED = "closed"  # the pool closed while the receiver waited


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_result(None)  # None: the wait ran out (a grant is never None)


class Line(Generic[G]):
    """Waiting tasks in arrival order; ``G`` is what they are handed."""

    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: deque[asyncio.Future[G | None]] = deque()

    def __len__(self) -> int:
        return sum(1 for waiter in self._queue if not waiter.done())

    def has_waiters(self) -> bool:
        """Whether a live task is in line (then a newcomer must queue behind it)."""
        queue = self._queue
        # Waiters that timed out or were cancelled stay in the deque until their task
        # runs again; drop them from the head so they do not make newcomers queue.
        while queue and queue[0].done():
            queue.popleft()
        return bool(queue)

    def hand(self, grant: G) -> bool:
        """Give ``grant`` to the longest waiting task; False when nobody waits."""
        queue = self._queue
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(grant)
                return True
        return False

    async def wait(self, timeout: float, give_back: Callable[[G], None]) -> G | None:
        """Wait in line up to ``timeout`` seconds: the grant, or None when time ran out.

        When the task is cancelled after a grant was set but before it resumed, the
        grant goes to ``give_back`` so that nothing handed out is lost.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[G | None] = loop.create_future()
        self._queue.append(waiter)
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                grant = waiter.result()
                if grant is not None:
                    give_back(grant)
            raise
        finally:
            timer.cancel()
            if not waiter.done():
                waiter.cancel()
