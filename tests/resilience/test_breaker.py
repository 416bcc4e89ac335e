"""``CircuitBreaker``: trips, fails fast, probes once (scenarios R1, R2, R3)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tether.exceptions import CircuitOpen, ResourceUnavailable
from tether.resilience import BreakerState, CircuitBreaker
from tether.testing import FakeClock

pytestmark = pytest.mark.anyio


class Dependency:
    """A fake server: counts calls, fails while ``failing``, waits on ``gate`` if set."""

    def __init__(self, failing: bool = True) -> None:
        self.calls = 0
        self.failing = failing
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self) -> str:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.failing:
            raise ResourceUnavailable("payments", "connection refused")
        return "ok"

    def hold(self) -> asyncio.Event:
        """Make the next calls wait until the returned event is set."""
        self.gate = asyncio.Event()
        self.entered.clear()
        return self.gate


async def _fail(breaker: CircuitBreaker, dependency: Dependency, times: int) -> None:
    for _ in range(times):
        with pytest.raises(ResourceUnavailable):
            await breaker.call(dependency)


def _breaker(clock: FakeClock, **options: float) -> CircuitBreaker:
    return CircuitBreaker("payments", threshold=int(options.get("threshold", 5)),
                          reset_timeout=options.get("reset_timeout", 30.0),
                          clock=clock.monotonic)


# -- R1: trips and fails fast ---------------------------------------------------------


async def test_breaker_stays_closed_below_the_threshold() -> None:
    breaker, dependency = _breaker(FakeClock()), Dependency()

    await _fail(breaker, dependency, 4)

    assert breaker.state is BreakerState.CLOSED
    assert breaker.failures == 4


async def test_breaker_opens_after_threshold_failures_in_a_row() -> None:
    breaker, dependency = _breaker(FakeClock()), Dependency()

    await _fail(breaker, dependency, 5)

    assert breaker.state is BreakerState.OPEN
    assert breaker.opened_total == 1


async def test_open_breaker_fails_fast_without_calling_the_dependency() -> None:
    breaker, dependency = _breaker(FakeClock()), Dependency()
    await _fail(breaker, dependency, 5)

    for _ in range(10):
        with pytest.raises(CircuitOpen):
            await breaker.call(dependency)

    assert dependency.calls == 5
    assert breaker.rejected_total == 10


async def test_circuit_open_carries_the_time_to_the_next_probe() -> None:
    clock = FakeClock()
    breaker, dependency = _breaker(clock, reset_timeout=30.0), Dependency()
    await _fail(breaker, dependency, 5)
    clock.advance(12.0)

    with pytest.raises(CircuitOpen) as caught:
        await breaker.call(dependency)

    assert caught.value.retry_after == pytest.approx(18.0)
    assert caught.value.failures == 5
    assert caught.value.resource == "payments"


async def test_success_resets_the_count_of_failures_in_a_row() -> None:
    breaker, dependency = _breaker(FakeClock()), Dependency()
    await _fail(breaker, dependency, 4)
    dependency.failing = False
    await breaker.call(dependency)
    dependency.failing = True

    await _fail(breaker, dependency, 4)

    assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize("jump", [3600.0, -3600.0])
async def test_wall_clock_jump_does_not_end_the_open_state(
    monkeypatch: pytest.MonkeyPatch, jump: float
) -> None:
    # The default clock: a wall-clock jump (NTP, DST, an operator) must change nothing.
    breaker = CircuitBreaker("payments", threshold=2, reset_timeout=30.0)
    dependency = Dependency()
    await _fail(breaker, dependency, 2)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + jump)

    with pytest.raises(CircuitOpen) as caught:
        await breaker.call(dependency)

    assert breaker.state is BreakerState.OPEN
    assert 0 < caught.value.retry_after <= 30.0
    assert dependency.calls == 2


# -- half-open: one probe (R2) ----------------------------------------------------------


async def test_breaker_half_opens_after_the_reset_timeout() -> None:
    clock = FakeClock()
    breaker, dependency = _breaker(clock, reset_timeout=30.0), Dependency()
    await _fail(breaker, dependency, 5)

    clock.advance(30.0)

    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.retry_after() == 0.0


async def test_successful_probe_closes_the_breaker() -> None:
    clock = FakeClock()
    breaker, dependency = _breaker(clock), Dependency()
    await _fail(breaker, dependency, 5)
    clock.advance(30.0)
    dependency.failing = False

    assert await breaker.call(dependency) == "ok"

    assert breaker.state is BreakerState.CLOSED
    assert breaker.failures == 0


async def test_failed_probe_opens_the_breaker_for_another_reset_timeout() -> None:
    clock = FakeClock()
    breaker, dependency = _breaker(clock, reset_timeout=30.0), Dependency()
    await _fail(breaker, dependency, 5)
    clock.advance(30.0)

    await _fail(breaker, dependency, 1)

    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after() == pytest.approx(30.0)
    assert breaker.opened_total == 2


async def test_half_open_admits_exactly_one_probe_among_50_concurrent_calls() -> None:
    clock = FakeClock()
    breaker, dependency = _breaker(clock), Dependency()
    await _fail(breaker, dependency, 5)
    clock.advance(30.0)
    dependency.failing = False
    dependency.hold()
    calls_before = dependency.calls

    async def call() -> str:
        return await breaker.call(dependency)

    tasks = [asyncio.create_task(call()) for _ in range(50)]
    await dependency.entered.wait()
    await asyncio.sleep(0)  # let every task reach the breaker
    assert dependency.gate is not None
    dependency.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)

    assert dependency.calls - calls_before == 1
    assert results.count("ok") == 1
    assert sum(isinstance(r, CircuitOpen) for r in results) == 49
    assert breaker.state is BreakerState.CLOSED


async def test_cancelled_probe_gives_its_permit_back() -> None:
    clock = FakeClock()
    breaker, dependency = _breaker(clock), Dependency()
    await _fail(breaker, dependency, 5)
    clock.advance(30.0)
    dependency.hold()
    probe = asyncio.create_task(breaker.call(dependency))
    await dependency.entered.wait()

    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe

    dependency.failing, dependency.gate = False, None
    assert await breaker.call(dependency) == "ok"
    assert breaker.state is BreakerState.CLOSED


async def test_cancelled_probe_is_not_counted_as_a_failure() -> None:
    clock = FakeClock()
    breaker, dependency = _breaker(clock), Dependency()
    await _fail(breaker, dependency, 5)
    clock.advance(30.0)
    dependency.hold()
    probe = asyncio.create_task(breaker.call(dependency))
    await dependency.entered.wait()

    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe

    assert breaker.failures == 5
    assert breaker.opened_total == 1
    assert breaker.state is BreakerState.HALF_OPEN


async def test_call_while_the_probe_is_out_is_refused() -> None:
    clock = FakeClock()
    breaker, dependency = _breaker(clock), Dependency()
    await _fail(breaker, dependency, 5)
    clock.advance(30.0)
    dependency.hold()
    probe = asyncio.create_task(breaker.call(dependency))
    await dependency.entered.wait()

    with pytest.raises(CircuitOpen):
        await breaker.call(dependency)

    assert dependency.gate is not None
    dependency.gate.set()
    with pytest.raises(ResourceUnavailable):
        await probe


# -- excluded errors and async failures (R3) ----------------------------------------


class NotFound(Exception):
    pass


async def test_excluded_error_types_are_not_counted() -> None:
    breaker = CircuitBreaker("api", threshold=2, exclude=(NotFound,), clock=FakeClock().monotonic)

    async def missing() -> None:
        raise NotFound("404")

    for _ in range(10):
        with pytest.raises(NotFound):
            await breaker.call(missing)

    assert breaker.state is BreakerState.CLOSED
    assert breaker.failures == 0


async def test_errors_an_exclude_predicate_accepts_are_not_counted() -> None:
    breaker = CircuitBreaker("api", threshold=2, clock=FakeClock().monotonic,
                             exclude=lambda error: isinstance(error, KeyError))

    async def lookup() -> None:
        raise KeyError("user")

    for _ in range(5):
        with pytest.raises(KeyError):
            await breaker.call(lookup)

    assert breaker.state is BreakerState.CLOSED


async def test_errors_outside_the_exclusion_are_still_counted() -> None:
    breaker = CircuitBreaker("api", threshold=2, exclude=(NotFound,), clock=FakeClock().monotonic)

    await _fail(breaker, Dependency(), 2)

    assert breaker.state is BreakerState.OPEN


async def test_failures_of_an_awaited_async_def_are_counted() -> None:
    # pybreaker counts the creation of the coroutine, so these never open it.
    breaker = CircuitBreaker("api", threshold=4, clock=FakeClock().monotonic)

    async def broken() -> None:
        await asyncio.sleep(0)
        raise ResourceUnavailable("api", "connection reset")

    for _ in range(4):
        with pytest.raises(ResourceUnavailable):
            await breaker.call(broken)

    assert breaker.state is BreakerState.OPEN
    assert breaker.failures == 4


async def test_error_raised_before_the_awaitable_exists_is_counted() -> None:
    breaker = CircuitBreaker("api", threshold=1, clock=FakeClock().monotonic)

    def explodes() -> asyncio.Future[None]:
        raise ResourceUnavailable("api", "no route")

    with pytest.raises(ResourceUnavailable):
        await breaker.call(explodes)

    assert breaker.state is BreakerState.OPEN


@pytest.mark.parametrize(("option", "value"), [("threshold", 0), ("reset_timeout", 0.0)])
def test_breaker_refuses_nonsense_settings(option: str, value: float) -> None:
    with pytest.raises(ValueError, match=option):
        CircuitBreaker("api", **{option: value})  # type: ignore[arg-type]
