"""What every battery benchmark shares: the shape of a scenario and how it is timed.

A ``Scenario`` is one operation (seal 1 KiB, GET one key...) done by several ``Row``s:
tether's call and the baseline that does the same work without tether (and, for some
scenarios, other points of comparison). A worker process measures one group's
scenarios in one event loop:

1. every row runs once and its result is checked (``Row.check``);
2. each row is calibrated: the first op count of 1, 2, 5, 10, 20, ... whose loop takes
   at least ``target`` seconds (these loops also warm the row up);
3. ``repeat`` timed loops per row, the rows interleaved in a shuffled order in each
   pass, so that tether and its baseline see the same machine state; the best loop is
   the row's value for this process;
4. the last result of every timed loop is checked, and ``Row.audit`` checks a counter
   around every timed loop (tether's own statistics, connections the server accepted,
   connections the pool opened);
5. every row runs once more and is checked.

Calls are sequential and awaited (``await op()`` in a loop) unless a row says it
sends ``per_op`` requests at once; its time is then divided by ``per_op``.
"""

from __future__ import annotations

import gc
import inspect
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Op = Callable[[], Any]  # its result is awaited when it is awaitable
Check = Callable[[Any], None]
Finish = Callable[[int], Awaitable[None]]  # after a timed loop of N ops: raises when wrong
Audit = Callable[[], Awaitable[Finish]]  # before a timed loop
Reader = Callable[[], int | Awaitable[int]]  # a counter: sync, or awaited


class WorkError(AssertionError):
    """A row did not do the work it claims to do (wrong result, wrong counter)."""


@dataclass
class Row:
    """One way of doing a scenario's operation.

    ``op`` is called with no arguments; when what it returns is awaitable (an ``async
    def``, or a plain method that returns a coroutine, as redis-py's commands do), the
    row is timed as ``await op()``: ``is_async`` is found on the first call.
    """

    label: str
    op: Op
    check: Check
    audit: Audit | None = None
    per_op: int = 1  # requests one op sends at once (10 for a batch of 10)
    note: str = ""
    is_async: bool | None = None


@dataclass(frozen=True)
class Scenario:
    """One operation and the rows that do it.

    ``baseline`` names the row every other row is divided by; ``target`` is the most
    tether's rows (``tether`` names them) may cost over it (0.10 = 10 %), None when no
    target is set.
    """

    key: str
    title: str
    rows: tuple[Row, ...]
    baseline: str
    tether: tuple[str, ...] = ("tether",)
    target: float | None = None
    unit: str = "µs"  # how the report shows the time per op: "ns", "µs" or "ms"

    def row(self, label: str) -> Row:
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(label)


@dataclass(frozen=True)
class Skip:
    """A scenario that cannot run here (a server did not start, a module is missing)."""

    key: str
    title: str
    reason: str


@dataclass(frozen=True)
class Env:
    """Where the servers the worker may use listen; ``missing`` says why one is absent."""

    urls: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def url(self, server: str) -> str | None:
        return self.urls.get(server)

    def why_not(self, server: str) -> str:
        return self.missing.get(server, f"no {server} server in this run")


@dataclass
class Timings:
    """One process's value (best seconds per request) for each row of one scenario."""

    seconds: dict[str, float] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            label: {"s": self.seconds[label], "number": self.numbers[label]}
            for label in self.seconds
        }


def numbers() -> Iterator[int]:
    """1, 2, 5, 10, 20, 50, ... as ``timeit.Timer.autorange`` tries them."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            yield scale * step
        scale *= 10


async def _once(row: Row) -> Any:
    result = row.op()
    if row.is_async is None:
        row.is_async = inspect.isawaitable(result)
    if row.is_async:
        result = await result
    return result


async def verify(row: Row, when: str) -> None:
    try:
        row.check(await _once(row))
    except AssertionError as error:
        raise WorkError(f"{row.label} ({when}): {error}") from error


async def _loop(row: Row, number: int) -> tuple[float, Any]:
    """``number`` ops back to back; (elapsed seconds, the last op's result)."""
    op = row.op
    result: Any = None
    if row.is_async:
        start = time.perf_counter()
        for _ in range(number):
            result = await op()
        elapsed = time.perf_counter() - start
    else:
        start = time.perf_counter()
        for _ in range(number):
            result = op()
        elapsed = time.perf_counter() - start
    return elapsed, result


async def timed(row: Row, number: int) -> float:
    """One checked timed loop: seconds for ``number`` ops."""
    finish = await row.audit() if row.audit is not None else None
    elapsed, result = await _loop(row, number)
    try:
        if finish is not None:
            await finish(number)  # first: the check may move the counters itself
        row.check(result)
    except AssertionError as error:
        raise WorkError(f"{row.label} (timed loop of {number}): {error}") from error
    return elapsed


async def calibrate(row: Row, target: float) -> int:
    for number in numbers():
        if await timed(row, number) >= target:
            return number
    raise AssertionError("unreachable")  # numbers() never ends


async def measure(scenario: Scenario, target: float, repeat: int) -> Timings:
    """The best of ``repeat`` interleaved timed loops per row (seconds per request)."""
    rows = list(scenario.rows)
    for row in rows:
        await verify(row, "before timing")
    gc.collect()
    counts = {row.label: await calibrate(row, target) for row in rows}
    best: dict[str, float] = {}
    for _ in range(repeat):
        random.shuffle(rows)
        for row in rows:
            elapsed = await timed(row, counts[row.label])
            per_request = elapsed / counts[row.label] / row.per_op
            best[row.label] = min(best.get(row.label, per_request), per_request)
    for row in rows:
        await verify(row, "after timing")
    return Timings(best, counts)


# checks ----------------------------------------------------------------------------


def expect(condition: bool, message: str) -> None:
    """Raise ``WorkError`` unless ``condition``: the benchmark's own checks, which must
    also hold under ``python -O``."""
    if not condition:
        raise WorkError(message)


def equals(expected: Any) -> Check:
    def check(result: Any) -> None:
        expect(result == expected, f"expected {expected!r:.80}, got {result!r:.80}")

    return check


async def _read(read: Reader) -> int:
    value = read()
    if inspect.isawaitable(value):
        value = await value
    return int(value)


def counted(read: Reader, what: str, per_op: int = 1) -> Audit:
    """An audit: ``read()`` must grow by exactly ``per_op`` per op in a timed loop
    (``per_op=0``: must not grow at all)."""

    async def start() -> Finish:
        before = await _read(read)

        async def finish(number: int) -> None:
            grown, wanted = await _read(read) - before, number * per_op
            expect(grown == wanted, f"{what} grew by {grown} in {number} ops, expected "
                                    f"{wanted}")

        return finish

    return start


def both(*audits: Audit) -> Audit:
    async def start() -> Finish:
        finishers = [await audit() for audit in audits]

        async def finish(number: int) -> None:
            for done in finishers:
                await done(number)

        return finish

    return start
