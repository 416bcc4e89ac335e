"""The per-loop deadline watchdog behind Policy's deadline."""

from __future__ import annotations

import asyncio
import time

import pytest

from tether._deadline import Deadline, _watchdog, deadline

pytestmark = pytest.mark.anyio


def _live() -> int:
    return len(_watchdog(asyncio.get_running_loop())._entries)


async def test_a_passed_deadline_raises_timeout_error_and_undoes_its_cancel() -> None:
    task = asyncio.current_task()
    assert task is not None
    started = time.monotonic()
    with pytest.raises(TimeoutError), deadline(0.05) as scope:
        await asyncio.sleep(5)
    assert 0.04 <= time.monotonic() - started < 1.0
    assert scope.expired
    assert task.cancelling() == 0
    assert _live() == 0
    await asyncio.sleep(0)  # the task is not cancelled again later


async def test_a_call_that_finishes_in_time_leaves_nothing_behind() -> None:
    for _ in range(1000):
        with deadline(5.0) as scope:
            await asyncio.sleep(0)
        assert not scope.expired
    assert _live() == 0


async def test_an_earlier_deadline_added_after_a_later_one_still_fires_on_time() -> None:
    async def wait(seconds: float) -> float:
        started = time.monotonic()
        try:
            with deadline(seconds):
                await asyncio.sleep(10)
        except TimeoutError:
            return time.monotonic() - started
        raise AssertionError("the deadline did not fire")

    late = asyncio.create_task(wait(2.0))
    await asyncio.sleep(0.01)
    early = await wait(0.05)
    assert early < 0.5
    late.cancel()
    with pytest.raises(asyncio.CancelledError):
        await late


async def test_many_deadlines_each_fire_at_their_own_time() -> None:
    fired: list[float] = []

    async def wait(seconds: float) -> None:
        with pytest.raises(TimeoutError), deadline(seconds):
            await asyncio.sleep(10)
        fired.append(seconds)

    await asyncio.gather(*(wait(s) for s in (0.25, 0.05, 0.15, 0.1, 0.2)))
    assert fired == [0.05, 0.1, 0.15, 0.2, 0.25]
    assert _live() == 0


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    entered = asyncio.Event()

    async def call() -> None:
        with deadline(5.0):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(call())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _live() == 0


async def test_a_shorter_outer_timeout_wins_and_stays_its_own() -> None:
    async def call() -> None:
        async with asyncio.timeout(0.05) as outer:
            scopes.append(outer)
            with deadline(5.0) as inner:
                scopes.append(inner)
                await asyncio.sleep(10)

    scopes: list[object] = []
    with pytest.raises(TimeoutError):
        await call()
    outer, inner = scopes
    assert isinstance(outer, asyncio.Timeout)
    assert isinstance(inner, Deadline)
    assert outer.expired()
    assert not inner.expired


async def test_a_shorter_inner_deadline_does_not_trip_the_outer_timeout() -> None:
    async with asyncio.timeout(5.0) as outer:
        with pytest.raises(TimeoutError), deadline(0.05) as inner:
            await asyncio.sleep(10)
        await asyncio.sleep(0.01)  # still inside the outer timeout, not cancelled
    assert inner.expired
    assert not outer.expired()


async def test_an_error_raised_in_time_goes_through_unchanged() -> None:
    async def call() -> None:
        with deadline(5.0):
            await asyncio.sleep(0)
            raise KeyError("mine")

    with pytest.raises(KeyError):
        await call()
    assert _live() == 0


def test_each_event_loop_gets_a_watchdog_of_its_own() -> None:
    async def once() -> bool:
        try:
            with deadline(0.02):
                await asyncio.sleep(1)
        except TimeoutError:
            return True
        return False

    assert asyncio.run(once())
    assert asyncio.run(once())  # a fresh loop: a timer armed in the old one is not enough


def test_outside_a_task_it_says_so() -> None:
    with pytest.raises(RuntimeError, match=r"event loop|asyncio"):
        deadline(1.0)
