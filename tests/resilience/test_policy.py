"""``Policy``: the deadline, cancellation, fallbacks (R5) and the counters."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tether.exceptions import CircuitOpen, ResourceTimeout, ResourceUnavailable
from tether.resilience import BreakerState, CircuitBreaker, Policy, PolicyStats, Retry
from tether.resources._config import ResourceConfig
from tether.testing import FakeClock

pytestmark = pytest.mark.anyio


async def _never() -> str:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def _ok() -> str:
    return "ok"


async def _refused() -> str:
    raise ResourceUnavailable("payments", "connection refused", sent=False)


def _open_breaker(clock: FakeClock | None = None) -> CircuitBreaker:
    breaker = CircuitBreaker("payments", threshold=1, reset_timeout=30.0,
                             clock=(clock or FakeClock()).monotonic)
    breaker.failure(ResourceUnavailable("payments", "down"), probe=False)
    return breaker


# -- nothing configured ------------------------------------------------------------


async def test_policy_with_nothing_configured_returns_the_result() -> None:
    policy = Policy("payments")

    assert await policy.call(_ok, idempotent=False) == "ok"
    assert policy.statistics().calls_total == 1


async def test_policy_with_nothing_configured_lets_the_same_error_through() -> None:
    policy = Policy("payments")
    error = ValueError("bad input")

    async def fails() -> None:
        raise error

    with pytest.raises(ValueError, match="bad input") as caught:
        await policy.call(fails, idempotent=True)

    assert caught.value is error
    assert caught.value.__cause__ is None
    assert policy.statistics().failures_total == 1


# -- the deadline --------------------------------------------------------------------


async def test_deadline_raises_resource_timeout_naming_the_resource() -> None:
    policy = Policy("payments", timeout=0.2)

    with pytest.raises(ResourceTimeout) as caught:
        await policy.call(_never, idempotent=True)

    assert caught.value.resource == "payments"
    assert caught.value.timeout == 0.2
    assert "payments" in str(caught.value)
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert policy.statistics().timeouts_total == 1


async def test_deadline_counts_as_a_breaker_failure() -> None:
    # A frozen server fails every call at the deadline: that must open the breaker.
    breaker = CircuitBreaker("payments", threshold=2, clock=FakeClock().monotonic)
    policy = Policy("payments", timeout=0.05, breaker=breaker)
    calls = 0

    async def frozen() -> None:
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()

    for _ in range(2):
        with pytest.raises(ResourceTimeout):
            await policy.call(frozen, idempotent=True)
    with pytest.raises(CircuitOpen):
        await policy.call(frozen, idempotent=True)

    assert breaker.state is BreakerState.OPEN
    assert calls == 2


async def test_timeout_error_raised_by_the_call_itself_is_not_the_deadline() -> None:
    policy = Policy("payments", timeout=30.0)
    error = TimeoutError("socket read timed out")

    async def driver_timeout() -> None:
        raise error

    with pytest.raises(TimeoutError) as caught:
        await policy.call(driver_timeout, idempotent=True)

    assert caught.value is error
    assert policy.statistics().timeouts_total == 0


async def test_deadline_cuts_off_a_retry_in_progress() -> None:
    policy = Policy("payments", timeout=0.3, retry=Retry(attempts=5, wait_initial=0.01))
    calls = 0

    async def refused_then_frozen() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ResourceUnavailable("payments", "connection refused", sent=False)
        await asyncio.Event().wait()

    with pytest.raises(ResourceTimeout):
        await policy.call(refused_then_frozen, idempotent=True)

    assert calls == 2


# -- cancellation from outside ------------------------------------------------------


async def _cancel_while_inside(policy: Policy, **options: object) -> asyncio.Task[str]:
    entered = asyncio.Event()

    async def blocked() -> str:
        entered.set()
        await asyncio.Event().wait()
        return "unreachable"

    task = asyncio.create_task(policy.call(blocked, idempotent=True, **options))  # type: ignore[arg-type]
    await entered.wait()
    task.cancel()
    return task


async def test_outside_cancellation_propagates_as_cancelled_error() -> None:
    policy = Policy("payments", timeout=30.0, retry=Retry(attempts=3))

    task = await _cancel_while_inside(policy)

    with pytest.raises(asyncio.CancelledError):
        await task
    stats = policy.statistics()
    assert stats.timeouts_total == 0
    assert stats.retries_total == 0
    assert stats.failures_total == 0


async def test_outside_cancellation_does_not_use_the_fallback() -> None:
    policy = Policy("payments", timeout=30.0)
    used: list[Exception] = []

    def fallback(error: Exception) -> str:
        used.append(error)
        return "cached"

    task = await _cancel_while_inside(policy, fallback=fallback)

    with pytest.raises(asyncio.CancelledError):
        await task
    assert used == []


async def test_outside_cancellation_is_not_a_breaker_failure() -> None:
    breaker = CircuitBreaker("payments", threshold=1, clock=FakeClock().monotonic)
    policy = Policy("payments", timeout=30.0, breaker=breaker)

    task = await _cancel_while_inside(policy)

    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is BreakerState.CLOSED
    assert breaker.failures == 0


# -- fallback (R5) -------------------------------------------------------------------


async def test_fallback_answers_while_the_breaker_is_open() -> None:
    policy = Policy("payments", breaker=_open_breaker())
    calls = 0
    seen: list[Exception] = []

    async def dependency() -> str:
        nonlocal calls
        calls += 1
        return "live"

    def fallback(error: Exception) -> str:
        seen.append(error)
        return "cached"

    assert await policy.call(dependency, idempotent=True, fallback=fallback) == "cached"
    assert calls == 0
    assert isinstance(seen[0], CircuitOpen)
    assert policy.statistics().fallbacks_total == 1


async def test_fallback_answers_when_retries_are_exhausted() -> None:
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    policy = Policy("payments", retry=Retry(attempts=3), sleep=sleep, clock=clock.monotonic)
    seen: list[Exception] = []

    def fallback(error: Exception) -> str:
        seen.append(error)
        return "cached"

    assert await policy.call(_refused, idempotent=True, fallback=fallback) == "cached"
    assert isinstance(seen[0], ResourceUnavailable)
    assert policy.statistics().retries_total == 2


async def test_async_fallback_is_awaited() -> None:
    policy = Policy("payments", timeout=5.0)

    async def fallback(error: Exception) -> str:
        await asyncio.sleep(0)
        return "cached"

    assert await policy.call(_refused, idempotent=True, fallback=fallback) == "cached"


async def test_fallback_is_not_used_when_the_call_succeeds() -> None:
    policy = Policy("payments", timeout=5.0)

    assert await policy.call(_ok, idempotent=True, fallback=lambda e: "cached") == "ok"
    assert policy.statistics().fallbacks_total == 0


async def test_fallback_logs_the_original_error(caplog: pytest.LogCaptureFixture) -> None:
    policy = Policy("payments", timeout=5.0)

    with caplog.at_level(logging.WARNING, logger="tether.resilience"):
        await policy.call(_refused, idempotent=True, fallback=lambda e: "cached")

    [record] = [r for r in caplog.records if "fallback" in r.getMessage()]
    assert "payments" in record.getMessage()
    assert "ResourceUnavailable" in record.getMessage()
    assert "connection refused" in record.getMessage()


async def test_error_in_the_fallback_keeps_the_original_as_its_cause() -> None:
    policy = Policy("payments", timeout=5.0)

    def broken_fallback(error: Exception) -> str:
        raise KeyError("cache miss")

    with pytest.raises(KeyError) as caught:
        await policy.call(_refused, idempotent=True, fallback=broken_fallback)

    assert isinstance(caught.value.__cause__, ResourceUnavailable)
    assert "connection refused" in str(caught.value.__cause__)


# -- statistics and construction ----------------------------------------------------


async def test_statistics_report_the_breaker_state_and_counters() -> None:
    policy = Policy("payments", breaker=_open_breaker())

    with pytest.raises(CircuitOpen):
        await policy.call(_ok, idempotent=True)

    stats = policy.statistics()
    assert isinstance(stats, PolicyStats)
    assert stats.breaker_state is BreakerState.OPEN
    assert stats.breaker_opened_total == 1
    assert stats.rejected_total == 1
    assert stats.calls_total == 1
    assert stats.failures_total == 1


async def test_breaker_replaced_after_construction_is_used() -> None:
    policy = Policy("payments")
    policy.breaker = _open_breaker()

    with pytest.raises(CircuitOpen):
        await policy.call(_ok, idempotent=True)


def test_config_describes_the_policy() -> None:
    config = ResourceConfig(name="payments", timeout=2.0, max_retries=2,
                            circuit_breaker_threshold=4, circuit_breaker_reset=15.0)

    policy = config.policy()

    assert policy.resource == "payments"
    assert policy.timeout == 2.0
    assert policy.retry is not None
    assert policy.retry.attempts == 3
    assert policy.breaker is not None
    assert (policy.breaker.threshold, policy.breaker.reset_timeout) == (4, 15.0)


def test_default_config_has_a_deadline_and_no_retries_or_breaker() -> None:
    policy = ResourceConfig(name="payments").policy()

    assert policy.timeout == 10.0
    assert policy.retry is None
    assert policy.breaker is None


async def test_from_options_passes_the_exclusion_to_the_breaker() -> None:
    policy = Policy.from_options("payments", circuit_breaker_threshold=1,
                                 exclude=(LookupError,))

    async def missing() -> None:
        raise KeyError("user")

    with pytest.raises(KeyError):
        await policy.call(missing, idempotent=True)

    assert policy.breaker is not None
    assert policy.breaker.state is BreakerState.CLOSED


def test_policy_refuses_a_nonpositive_timeout() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Policy("payments", timeout=0)


# -- plain(): the inline form of call() for a policy without retries or breaker --------


async def test_plain_counts_bounds_and_translates_like_call() -> None:
    policy = Policy("cache", timeout=0.05)

    guard = policy.plain()
    assert guard is not None
    with guard:
        await asyncio.sleep(0)
    timed_out = policy.plain()
    assert timed_out is not None
    with pytest.raises(ResourceTimeout) as caught, timed_out:
        await _never()
    failing = policy.plain()
    assert failing is not None
    with pytest.raises(KeyError), failing:
        raise KeyError("mine")

    assert caught.value.timeout == 0.05
    stats = policy.statistics()
    assert (stats.calls_total, stats.failures_total, stats.timeouts_total) == (3, 2, 1)


async def test_plain_is_none_when_the_policy_retries_or_has_a_breaker() -> None:
    assert Policy("a", retry=Retry(attempts=2)).plain() is None
    assert Policy("b", breaker=CircuitBreaker("b", threshold=1)).plain() is None
    assert Policy("c").plain() is not None


async def test_plain_lets_a_cancellation_from_outside_through() -> None:
    policy = Policy("cache", timeout=5.0)
    started = asyncio.Event()

    async def call() -> None:
        guard = policy.plain()
        assert guard is not None
        with guard:
            started.set()
            await _never()

    task = asyncio.create_task(call())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert policy.statistics().timeouts_total == 0
