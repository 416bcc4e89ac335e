"""``Retry`` under a ``Policy``: bounded attempts, bounded time, the right errors (R4)."""

from __future__ import annotations

import asyncio
import statistics
import time

import pytest

from tether.exceptions import CircuitOpen, PoolTimeout, ResourceTimeout, ResourceUnavailable
from tether.resilience import CircuitBreaker, Policy, Retry
from tether.testing import FakeClock

pytestmark = pytest.mark.anyio


class Waits:
    """An injected ``sleep`` that records each wait and moves a fake clock by it."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


class Failing:
    """A dependency that always fails with ``error`` and counts its calls."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        raise self.error


def _policy(retry: Retry, timeout: float | None = None,
            breaker: CircuitBreaker | None = None) -> tuple[Policy, Waits]:
    clock = FakeClock()
    waits = Waits(clock)
    policy = Policy("payments", timeout=timeout, retry=retry, breaker=breaker, sleep=waits,
                    clock=clock.monotonic)
    return policy, waits


def _unavailable(sent: bool = True) -> ResourceUnavailable:
    return ResourceUnavailable("payments", "connection reset", sent=sent)


# -- attempts and time --------------------------------------------------------------


async def test_attempts_never_exceed_the_retry_attempts() -> None:
    policy, waits = _policy(Retry(attempts=4))
    dependency = Failing(_unavailable())

    with pytest.raises(ResourceUnavailable):
        await policy.call(dependency, idempotent=True)

    assert dependency.calls == 4
    assert len(waits.waits) == 3


async def test_retries_total_counts_each_retry() -> None:
    policy, _ = _policy(Retry(attempts=3))

    for _ in range(2):
        with pytest.raises(ResourceUnavailable):
            await policy.call(Failing(_unavailable()), idempotent=True)

    assert policy.statistics().retries_total == 4
    assert policy.statistics().failures_total == 2


async def test_total_time_with_backoff_stays_within_the_deadline() -> None:
    retry = Retry(attempts=100, wait_initial=0.1, wait_max=1.0, wait_jitter=0.1)
    policy, waits = _policy(retry, timeout=3.0)
    dependency = Failing(_unavailable())

    with pytest.raises(ResourceUnavailable):
        await policy.call(dependency, idempotent=True)

    assert waits.clock.now <= 3.0
    assert 1 < dependency.calls < 100


async def test_retry_gives_up_with_the_real_error_rather_than_sleep_past_the_deadline() -> None:
    retry = Retry(attempts=5, wait_initial=10.0, wait_max=10.0, wait_jitter=0.0)
    policy, waits = _policy(retry, timeout=5.0)
    error = _unavailable()

    with pytest.raises(ResourceUnavailable) as caught:
        await policy.call(Failing(error), idempotent=True)

    assert caught.value is error
    assert waits.waits == []


async def test_retries_in_real_time_end_by_the_deadline() -> None:
    # Real clock and sleep: a server that answers each call slowly, then fails.
    policy = Policy("payments", timeout=0.5,
                    retry=Retry(attempts=1000, wait_initial=0.01, wait_max=0.05))
    calls = 0

    async def slow_failure() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.02)
        raise _unavailable()

    started = time.monotonic()
    with pytest.raises((ResourceUnavailable, ResourceTimeout)):
        await policy.call(slow_failure, idempotent=True)
    elapsed = time.monotonic() - started

    assert elapsed < 0.5 + 2.0  # generous: a loaded machine may wake late
    assert 1 <= calls < 1000


# -- backoff ------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    retry = Retry(wait_initial=0.1, wait_max=0.5, wait_jitter=0.0)

    waits = [retry.backoff(n) for n in range(1, 6)]

    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


def test_backoff_has_jitter() -> None:
    retry = Retry(wait_initial=0.1, wait_max=2.0, wait_jitter=0.05)

    waits = [retry.backoff(2) for _ in range(20)]

    assert statistics.pvariance(waits) > 0
    assert all(0.2 <= w <= 0.25 for w in waits)


# -- which errors are retried -------------------------------------------------------


async def test_errors_not_declared_are_not_retried() -> None:
    policy, waits = _policy(Retry(attempts=5))
    dependency = Failing(ValueError("bad input"))

    with pytest.raises(ValueError, match="bad input"):
        await policy.call(dependency, idempotent=True)

    assert dependency.calls == 1
    assert waits.waits == []


async def test_declared_errors_are_retried() -> None:
    policy, _ = _policy(Retry(attempts=3, on=(KeyError,)))
    dependency = Failing(KeyError("shard moved"))

    with pytest.raises(KeyError):
        await policy.call(dependency, idempotent=True)

    assert dependency.calls == 3


async def test_non_idempotent_call_is_not_retried_once_the_request_may_have_left() -> None:
    policy, _ = _policy(Retry(attempts=5))
    dependency = Failing(_unavailable(sent=True))

    with pytest.raises(ResourceUnavailable):
        await policy.call(dependency, idempotent=False)

    assert dependency.calls == 1


async def test_non_idempotent_call_is_retried_when_the_request_never_left() -> None:
    policy, _ = _policy(Retry(attempts=5))
    dependency = Failing(_unavailable(sent=False))

    with pytest.raises(ResourceUnavailable):
        await policy.call(dependency, idempotent=False)

    assert dependency.calls == 5


async def test_non_idempotent_call_is_not_retried_after_a_timeout() -> None:
    policy, _ = _policy(Retry(attempts=5))
    dependency = Failing(ResourceTimeout("payments", 1.0))

    with pytest.raises(ResourceTimeout):
        await policy.call(dependency, idempotent=False)

    assert dependency.calls == 1


class Dropped(Exception):
    """Not a ResourceUnavailable, but with a ``sent`` attribute of its own."""

    sent = False


async def test_only_resource_unavailable_can_vouch_that_a_request_never_left() -> None:
    policy, _ = _policy(Retry(attempts=5, on=(Dropped,)))
    dependency = Failing(Dropped())

    with pytest.raises(Dropped):
        await policy.call(dependency, idempotent=False)

    assert dependency.calls == 1


async def test_pool_timeout_is_never_retried() -> None:
    policy, _ = _policy(Retry(attempts=5))
    dependency = Failing(PoolTimeout("payments", 1.0, 10))

    with pytest.raises(PoolTimeout):
        await policy.call(dependency, idempotent=True)

    assert dependency.calls == 1


async def test_retry_stops_when_its_own_failures_open_the_breaker() -> None:
    breaker = CircuitBreaker("payments", threshold=2, clock=FakeClock().monotonic)
    policy, _ = _policy(Retry(attempts=5), breaker=breaker)
    error = _unavailable()
    dependency = Failing(error)

    with pytest.raises(ResourceUnavailable) as caught:
        await policy.call(dependency, idempotent=True)

    assert caught.value is error  # the real failure, not the CircuitOpen after it
    assert dependency.calls == 2
    with pytest.raises(CircuitOpen):
        await policy.call(dependency, idempotent=True)


@pytest.mark.parametrize(
    ("options", "field"),
    [({"attempts": 0}, "attempts"), ({"wait_initial": -1.0}, "wait"), ({"on": ()}, "on=")],
)
def test_retry_refuses_nonsense_settings(options: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Retry(**options)  # type: ignore[arg-type]
