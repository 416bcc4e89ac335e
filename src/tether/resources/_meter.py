"""Per-resource call counters that every battery keeps the same way."""

from __future__ import annotations

from time import perf_counter


class Meter:
    """Counts calls, failures by kind, latency and concurrency of one resource.

    ``begin()`` before a call, ``end(started, error)`` after it; cheap enough for every
    call (a few attribute updates, no locks: one event loop owns a resource).
    """

    __slots__ = ("active", "calls", "failures", "latency_max", "latency_total", "peak")

    def __init__(self) -> None:
        self.calls = 0
        self.active = 0
        self.peak = 0
        self.latency_total = 0.0
        self.latency_max = 0.0
        self.failures: dict[str, int] = {}

    def begin(self) -> float:
        self.active = active = self.active + 1
        if active > self.peak:
            self.peak = active
        return perf_counter()

    def end(self, started: float, error: BaseException | None = None) -> None:
        seconds = perf_counter() - started
        self.active -= 1
        self.calls += 1
        self.latency_total += seconds
        if seconds > self.latency_max:
            self.latency_max = seconds
        if error is not None:
            kind = type(error).__name__
            self.failures[kind] = self.failures.get(kind, 0) + 1

    @property
    def failures_total(self) -> int:
        return sum(self.failures.values())
