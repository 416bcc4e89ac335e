"""Retries, a circuit breaker, deadlines and fallbacks for calls to outside servers.

One ``Policy`` per resource wraps each call::

    policy = Policy("payments", timeout=2.0, retry=Retry(attempts=3),
                    breaker=CircuitBreaker("payments", threshold=5, reset_timeout=30))
    reply = await policy.call(lambda: client.get("/status"), idempotent=True)

The rules it keeps:

- ``timeout`` is one deadline for the whole call, retries and backoff sleeps included:
  a call never takes ``attempts x socket timeout``.
- Only the errors in ``Retry.on`` are retried, and a call that is not idempotent is
  retried only when the error says the request never left (``ResourceUnavailable``
  with ``sent=False``): a lost reply to ``INCR`` is never applied twice.
- Backoff is exponential with jitter and capped: ``min(wait_max, wait_initial *
  2**(n-1)) + uniform(0, wait_jitter)``.
- The breaker counts failures when the awaited call fails (not when it is created),
  a call cut off by the deadline included; it uses a monotonic clock, holds no lock
  across the call, and in half-open lets exactly one probe through. A call cancelled
  from outside counts as neither success nor failure and gives its probe permit back;
  its ``CancelledError`` propagates (it never becomes a ``ResourceTimeout``).
- A retry never sleeps past the deadline (the last error is raised at once instead),
  nor calls into a breaker that its own failures just opened.

Batteries build their policy from their config (``timeout``, ``max_retries``,
``circuit_breaker_threshold``, ``circuit_breaker_reset``), so user code rarely builds
one by hand. Retries are written here rather than on stamina or tenacity: those
create a retry object per call (microseconds each, on every call of a resource that
answers in tens of microseconds), and neither knows the "never sent" rule.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import TypeVar

from ._deadline import Deadline
from ._deadline import deadline as _deadline_in
from .exceptions import CircuitOpen, PoolTimeout, ResourceTimeout, ResourceUnavailable

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "Policy",
    "PolicyStats",
    "Retry",
]

T = TypeVar("T")
logger = logging.getLogger("tether.resilience")

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Retry:
    """How often and how patiently to try again.

    ``attempts`` counts every try, the first one included. ``on`` lists the error types
    worth retrying; by default the ones a battery raises for a lost connection or a
    slow server (``PoolTimeout`` is a ``ResourceTimeout`` too, but a busy pool is not
    retried: waiting in line again only makes the line longer).
    """

    attempts: int = 3
    wait_initial: float = 0.05
    wait_max: float = 2.0
    wait_jitter: float = 0.05
    on: tuple[type[BaseException], ...] = (ResourceUnavailable, ResourceTimeout)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"Retry(attempts={self.attempts}): attempts counts the first "
                             f"try too, so it must be at least 1")
        if self.wait_initial < 0 or self.wait_max < 0 or self.wait_jitter < 0:
            raise ValueError("Retry waits (wait_initial, wait_max, wait_jitter) must be >= 0")
        if not self.on:
            raise ValueError("Retry(on=()) retries nothing: name the errors worth retrying")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.wait_max, self.wait_initial * 2.0 ** (attempt - 1))
        return base + random.uniform(0.0, self.wait_jitter)

    def retries(self, error: BaseException, idempotent: bool) -> bool:
        """Whether ``error`` is worth another attempt of a call that is (not) idempotent."""
        if not isinstance(error, self.on) or isinstance(error, PoolTimeout):
            return False
        # Only a request that provably never left is safe to send again when running it
        # twice is not harmless; any other error may come after the server acted on it.
        return idempotent or (isinstance(error, ResourceUnavailable) and not error.sent)


class BreakerState(StrEnum):
    """Where a ``CircuitBreaker`` stands."""

    CLOSED = "closed"  # calls pass; failures in a row are counted
    OPEN = "open"  # calls fail at once with CircuitOpen until reset_timeout passes
    HALF_OPEN = "half_open"  # one probe call is let through; the rest fail at once


class CircuitBreaker:
    """Stops calling a resource that keeps failing, then probes it with one call.

    ``threshold`` failures in a row open it; after ``reset_timeout`` seconds the next
    call is the probe: its success closes the breaker, its failure opens it again.
    ``exclude`` names errors (types, or a predicate) that say nothing about the
    resource's health — a 404, a validation error — and are not counted.
    """

    def __init__(
        self,
        resource: str,
        *,
        threshold: int = 5,
        reset_timeout: float = 30.0,
        exclude: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = (),
        clock: Clock = time.monotonic,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"CircuitBreaker(threshold={threshold}) must be at least 1")
        if reset_timeout <= 0:
            raise ValueError(f"CircuitBreaker(reset_timeout={reset_timeout}) must be > 0")
        self.resource = resource
        self.threshold = threshold
        self.reset_timeout = reset_timeout
        self._exclude = exclude
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.opened_total = 0
        self.rejected_total = 0

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= \
                self.reset_timeout:
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def failures(self) -> int:
        return self._failures

    def retry_after(self) -> float:
        """Seconds until the next probe may pass (0 when calls pass now)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self.reset_timeout - self._clock())

    def acquire(self) -> bool:
        """Ask to make a call. Returns whether this call is the half-open probe;
        raises ``CircuitOpen`` when the call must not be made."""
        if self._state is BreakerState.CLOSED:
            return False
        if self._state is BreakerState.OPEN:
            if self._clock() - self._opened_at < self.reset_timeout:
                self.rejected_total += 1
                raise CircuitOpen(self.resource, self.retry_after(), self._failures)
            self._state = BreakerState.HALF_OPEN
            logger.info("%s: circuit half-open, letting one probe through", self.resource)
        if self._probing:  # HALF_OPEN with the probe already out
            self.rejected_total += 1
            raise CircuitOpen(self.resource, 0.0, self._failures)
        self._probing = True
        return True

    def success(self, probe: bool) -> None:
        if probe:
            self._probing = False
            if self._state is not BreakerState.CLOSED:
                logger.info("%s: probe succeeded, circuit closed", self.resource)
            self._state = BreakerState.CLOSED
        if self._state is BreakerState.CLOSED:
            self._failures = 0

    def failure(self, error: BaseException, probe: bool) -> None:
        if self.excluded(error):
            self.success(probe)
            return
        if probe:
            self._probing = False
        self._failures += 1
        if probe or (self._state is BreakerState.CLOSED and self._failures >= self.threshold):
            self._state = BreakerState.OPEN
            self._opened_at = self._clock()
            self.opened_total += 1
            logger.warning("%s: circuit open after %d failures in a row (%s); next probe in "
                           "%gs", self.resource, self._failures, type(error).__name__,
                           self.reset_timeout)

    def release(self, probe: bool) -> None:
        """The call ended without a verdict (cancelled): give the probe permit back."""
        if probe:
            self._probing = False

    def excluded(self, error: BaseException) -> bool:
        if isinstance(self._exclude, tuple):
            return isinstance(error, self._exclude)
        return bool(self._exclude(error))

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` under the breaker."""
        probe = self.acquire()
        try:
            result = await fn()
        except Exception as error:
            self.failure(error, probe)
            raise
        except BaseException:
            self.release(probe)
            raise
        self.success(probe)
        return result

    def __repr__(self) -> str:
        return (f"CircuitBreaker({self.resource!r}, state={self.state.value}, "
                f"failures={self._failures}/{self.threshold})")


@dataclass(frozen=True, slots=True)
class PolicyStats:
    """Counters of one policy (``policy.statistics()``)."""

    calls_total: int
    failures_total: int
    retries_total: int
    timeouts_total: int
    fallbacks_total: int
    rejected_total: int
    breaker_state: BreakerState | None
    breaker_opened_total: int


class _Plain:
    """One call of a policy without retries, breaker or deadline: ``with _Plain(policy):``
    around the awaited call counts it. Synchronous, so that a battery's hot path can
    use it inline (``Policy.plain()``) instead of awaiting ``Policy.call``."""

    __slots__ = ("_policy",)

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        policy.calls_total += 1

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if isinstance(exc, Exception):
            self._policy.failures_total += 1


class _PlainBounded(Deadline):
    """``_Plain`` with the policy's deadline: the call is cut off when it passes, and
    ``ResourceTimeout`` raised."""

    __slots__ = ("_policy",)

    def __init__(self, policy: Policy, timeout: float) -> None:
        self._policy = policy
        policy.calls_total += 1
        Deadline.__init__(self, timeout)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        policy = self._policy
        if not self.expired:  # the common case, inline
            self._dog._entries.pop(self, None)
            if isinstance(exc, Exception):
                policy.failures_total += 1
            return
        try:
            Deadline.__exit__(self, exc_type, exc, tb)
        except TimeoutError as error:  # our deadline cancelled the call
            policy.timeouts_total += 1
            policy.failures_total += 1
            raise ResourceTimeout(policy.resource, policy.timeout or 0.0) from error
        if isinstance(exc, TimeoutError) and not isinstance(exc, ResourceTimeout):
            # Cut off by our deadline and reported as a timeout by the call itself.
            policy.timeouts_total += 1
            policy.failures_total += 1
            raise ResourceTimeout(policy.resource, policy.timeout or 0.0) from exc
        if isinstance(exc, Exception):
            policy.failures_total += 1


class Policy:
    """A resource's rules for each call: deadline, retries, breaker, fallback.

    ``clock`` (monotonic seconds) measures the deadline and ``sleep`` waits between
    attempts; tests replace both to run retries without waiting.
    """

    def __init__(
        self,
        resource: str,
        *,
        timeout: float | None = None,
        retry: Retry | None = None,
        breaker: CircuitBreaker | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        if timeout is not None and timeout <= 0:
            raise ValueError(f"Policy({resource!r}, timeout={timeout}) must be > 0 or None")
        self.resource = resource
        self.timeout = timeout
        self.retry = retry
        self.breaker = breaker
        self._sleep = sleep
        self._clock = clock
        self.calls_total = self.failures_total = self.retries_total = 0
        self.timeouts_total = self.fallbacks_total = 0

    @classmethod
    def from_options(
        cls,
        resource: str,
        *,
        timeout: float | None = None,
        max_retries: int = 0,
        circuit_breaker_threshold: int | None = None,
        circuit_breaker_reset: float = 30.0,
        exclude: tuple[type[BaseException], ...] | Callable[[BaseException], bool] = (),
        clock: Clock = time.monotonic,
    ) -> Policy:
        """The policy a battery's config describes; ``exclude`` names the caller's errors
        that the breaker must not count."""
        if max_retries < 0:
            raise ValueError(f"{resource}: max_retries={max_retries} must be >= 0")
        return cls(
            resource,
            timeout=timeout,
            retry=Retry(attempts=max_retries + 1) if max_retries else None,
            breaker=CircuitBreaker(resource, threshold=circuit_breaker_threshold,
                                   reset_timeout=circuit_breaker_reset, exclude=exclude,
                                   clock=clock)
            if circuit_breaker_threshold else None,
            clock=clock,
        )

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        idempotent: bool,
        fallback: Callable[[Exception], T | Awaitable[T]] | None = None,
    ) -> T:
        """Await ``fn()`` (a fresh awaitable per attempt) under this policy.

        ``idempotent`` says whether running the call twice is harmless (a GET, a read);
        when False, only errors raised before the request left are retried.
        ``fallback(error)`` gives the answer when the call failed (every attempt failed,
        the breaker is open, the deadline passed); the original error is logged, and
        chained as ``__cause__`` when the fallback raises. Cancellation from outside is
        never turned into an error or a fallback: ``CancelledError`` propagates.
        """
        # Read per call, not once: batteries may swap the breaker after building.
        if fallback is None:
            guard = self.plain()
            if guard is not None:
                # The common case (a deadline, or nothing): one await, no attempt loop.
                with guard:
                    return await fn()
        self.calls_total += 1
        try:
            return await self._attempts(fn, idempotent)
        except Exception as error:
            self.failures_total += 1
            if fallback is None:
                raise
            return await self._fall_back(fallback, error)

    def plain(self) -> AbstractContextManager[object] | None:
        """For a battery's hot path: when this policy has no retries and no breaker, a
        context manager to put around one awaited call, which does what ``call`` does
        for it (counts it, bounds it by the deadline, raises ``ResourceTimeout``)
        without a coroutine of its own; None otherwise (use ``call``)."""
        if self.retry is None and self.breaker is None:
            timeout = self.timeout
            return _Plain(self) if timeout is None else _PlainBounded(self, timeout)
        return None

    async def _fall_back(self, fallback: Callable[[Exception], T | Awaitable[T]],
                         error: Exception) -> T:
        self.fallbacks_total += 1
        logger.warning("%s: call failed (%s: %s); using the fallback", self.resource,
                       type(error).__name__, error)
        try:
            value = fallback(error)
            if inspect.isawaitable(value):
                value = await value
        except Exception as fallback_error:
            # The fallback's own failure must not hide why it was needed.
            raise fallback_error from error
        return value

    async def _attempts(self, fn: Callable[[], Awaitable[T]], idempotent: bool) -> T:
        retry, breaker = self.retry, self.breaker
        deadline = None if self.timeout is None else self._clock() + self.timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                if breaker is None:
                    return await self._attempt(fn, deadline)
                # The deadline runs inside the breaker's call, so a call cut off by it
                # counts as a failure there (a frozen server must open the breaker).
                return await breaker.call(lambda: self._attempt(fn, deadline))
            except CircuitOpen:
                raise
            except Exception as error:
                if retry is None or attempt >= retry.attempts or \
                        not retry.retries(error, idempotent):
                    raise
                wait = retry.backoff(attempt)
                if deadline is not None and self._clock() + wait >= deadline:
                    # Sleeping would eat the rest of the budget: report the real error
                    # now rather than a timeout later.
                    logger.info("%s: attempt %d failed (%s); no time left to retry within "
                                "timeout=%gs", self.resource, attempt, type(error).__name__,
                                self.timeout)
                    raise
                if breaker is not None and breaker.state is BreakerState.OPEN:
                    # Our own failures opened it: the next attempt would only be refused.
                    raise
                logger.info("%s: attempt %d of %d failed (%s); retrying in %.3fs",
                            self.resource, attempt, retry.attempts, type(error).__name__, wait)
                self.retries_total += 1
                await self._sleep(wait)

    async def _attempt(self, fn: Callable[[], Awaitable[T]], deadline: float | None) -> T:
        if deadline is None:
            return await fn()
        left = deadline - self._clock()
        if left <= 0:
            self.timeouts_total += 1
            raise ResourceTimeout(self.resource, self.timeout or 0.0)
        scope = _deadline_in(left)
        try:
            with scope:
                return await fn()
        except TimeoutError as error:
            # Only our own deadline becomes ResourceTimeout; a TimeoutError that fn
            # raised itself (a driver's socket timeout) goes through as it is.
            if not scope.expired or isinstance(error, ResourceTimeout):
                raise
            self.timeouts_total += 1
            raise ResourceTimeout(self.resource, self.timeout or 0.0) from error

    def statistics(self) -> PolicyStats:
        """A snapshot of this policy's counters and its breaker's state."""
        b = self.breaker
        return PolicyStats(
            calls_total=self.calls_total,
            failures_total=self.failures_total,
            retries_total=self.retries_total,
            timeouts_total=self.timeouts_total,
            fallbacks_total=self.fallbacks_total,
            rejected_total=b.rejected_total if b else 0,
            breaker_state=b.state if b else None,
            breaker_opened_total=b.opened_total if b else 0,
        )

    def __repr__(self) -> str:
        return (f"Policy({self.resource!r}, timeout={self.timeout}, retry={self.retry}, "
                f"breaker={self.breaker})")
