"""``Pool[T]``: lending, limits, first come first served, validation, factory errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, assert_type

import anyio
import pydantic
import pytest

from tests.resources.pool.items import Conn, Factory, eventually
from tether.exceptions import (
    CircuitOpen,
    PoolTimeout,
    ResourceError,
    ResourceTimeout,
    ResourceUnavailable,
)
from tether.resources.pool import Pool, PoolConfig, PoolStats

pytestmark = pytest.mark.anyio

MakePool = Callable[..., Awaitable[Pool[Conn]]]


@pytest.fixture
async def factory() -> Factory:
    return Factory()


@pytest.fixture
async def make_pool(factory: Factory) -> AsyncIterator[MakePool]:
    """``await make_pool(max_size=..., validate=...)``: an initialized pool of ``Conn``
    from the test's ``factory``, disposed at teardown."""
    made: list[Pool[Conn]] = []

    async def make(**options: Any) -> Pool[Conn]:
        hooks = {k: options.pop(k) for k in ("validate", "dispose", "discard_on")
                 if k in options}
        options.setdefault("pool_timeout", 5.0)
        pool = Pool(PoolConfig(name="conns", **options), factory=factory, **hooks)
        await pool.initialize()
        made.append(pool)
        return pool

    yield make
    for pool in made:
        await pool.dispose()


async def _hold(pool: Pool[Conn], release: asyncio.Event, got: list[Conn] | None = None) -> None:
    async with pool.acquire() as conn:
        if got is not None:
            got.append(conn)
        await release.wait()


# -- lending ---------------------------------------------------------------------------


async def test_acquire_hands_out_an_item_from_an_async_factory(make_pool: MakePool,
                                                               factory: Factory) -> None:
    pool = await make_pool()

    async with pool.acquire() as conn:
        assert conn is factory.made[0]
        assert pool.statistics().in_use == 1


async def test_sync_factory_is_called() -> None:
    def buffer() -> bytearray:
        return bytearray(b"ready")

    pool = Pool(PoolConfig(name="buffers"), factory=buffer)
    await pool.initialize()

    async with pool.acquire() as item:
        assert_type(item, bytearray)
        assert item == b"ready"
    await pool.dispose()


async def test_pool_is_typed_by_its_factory(make_pool: MakePool) -> None:
    pool = Pool(PoolConfig(name="conns"), factory=Factory())

    assert_type(pool, Pool[Conn])


async def test_returned_item_is_reused(make_pool: MakePool, factory: Factory) -> None:
    pool = await make_pool()

    async with pool.acquire() as first:
        pass
    async with pool.acquire() as second:
        pass

    assert first is second
    assert pool.statistics().created_total == 1


async def test_initialize_makes_min_size_items(make_pool: MakePool, factory: Factory) -> None:
    pool = await make_pool(min_size=3, max_size=5)

    stats = pool.statistics()
    assert (stats.size, stats.idle, stats.created_total) == (3, 3, 3)
    assert len(factory.made) == 3


async def test_failed_initialize_disposes_the_items_it_made(factory: Factory) -> None:
    made = 0

    async def third_fails() -> Conn:
        nonlocal made
        made += 1
        if made == 3:
            raise ConnectionRefusedError("no more")
        return await factory()

    pool = Pool(PoolConfig(name="conns", min_size=3), factory=third_fails)

    with pytest.raises(ConnectionRefusedError):
        await pool.initialize()

    assert all(conn.closed for conn in factory.made)
    assert pool.statistics().size == 0


async def test_acquire_before_initialize_is_refused(factory: Factory) -> None:
    pool = Pool(PoolConfig(name="conns"), factory=factory)

    with pytest.raises(ResourceError, match="not initialized"):
        async with pool.acquire():
            pass


async def test_statistics_are_a_frozen_snapshot(make_pool: MakePool) -> None:
    pool = await make_pool(max_size=4)

    stats = pool.statistics()

    assert isinstance(stats, PoolStats)
    assert stats.max_size == 4
    with pytest.raises(AttributeError):
        stats.size = 3  # type: ignore[misc]


# -- exhaustion and order --------------------------------------------------------------


async def test_exhausted_pool_raises_pool_timeout_after_pool_timeout(make_pool: MakePool) -> None:
    pool = await make_pool(max_size=1, pool_timeout=0.1)
    release = asyncio.Event()
    holder = asyncio.create_task(_hold(pool, release))
    await eventually(lambda: pool.statistics().in_use == 1)

    started = time.monotonic()
    with pytest.raises(PoolTimeout) as caught:
        async with pool.acquire():
            pass
    waited = time.monotonic() - started

    assert waited >= 0.09
    assert (caught.value.resource, caught.value.timeout, caught.value.size) == ("conns", 0.1, 1)
    assert pool.statistics().pool_timeouts_total == 1
    assert pool.statistics().failures_by_kind == {"PoolTimeout": 1}
    release.set()
    await holder


async def test_waiter_gets_the_item_returned_while_it_waits(make_pool: MakePool) -> None:
    pool = await make_pool(max_size=1)
    release = asyncio.Event()
    got: list[Conn] = []
    holder = asyncio.create_task(_hold(pool, release, got))
    await eventually(lambda: pool.statistics().in_use == 1)
    waiter = asyncio.create_task(_hold(pool, asyncio.Event(), got))
    await eventually(lambda: pool.statistics().waiting == 1)

    release.set()
    await holder
    await eventually(lambda: len(got) == 2)

    assert got[0] is got[1]
    assert pool.statistics().created_total == 1
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter


async def test_waiters_are_served_in_arrival_order(make_pool: MakePool) -> None:
    pool = await make_pool(max_size=1)
    order: list[int] = []

    async def borrower(number: int) -> None:
        async with pool.acquire():
            order.append(number)
            await asyncio.sleep(0)

    release = asyncio.Event()
    holder = asyncio.create_task(_hold(pool, release))
    await eventually(lambda: pool.statistics().in_use == 1)
    waiters = []
    for number in range(10):
        waiters.append(asyncio.create_task(borrower(number)))
        await eventually(lambda n=number: pool.statistics().waiting == n + 1)

    release.set()
    await asyncio.gather(holder, *waiters)

    assert order == list(range(10))


async def test_newcomer_does_not_take_an_item_from_a_waiter(make_pool: MakePool) -> None:
    pool = await make_pool(max_size=1)
    order: list[str] = []
    lease = pool.acquire()
    await lease.__aenter__()

    async def waiter() -> None:
        async with pool.acquire():
            order.append("waiter")

    task = asyncio.create_task(waiter())
    await eventually(lambda: pool.statistics().waiting == 1)
    await lease.__aexit__(None, None, None)  # hands the item to the waiter
    async with pool.acquire():  # arrives before the waiter has run again
        order.append("newcomer")
    await task

    assert order == ["waiter", "newcomer"]


async def test_a_hundred_tasks_share_max_size_items(make_pool: MakePool) -> None:
    pool = await make_pool(max_size=5, pool_timeout=30.0)
    holding = peak = 0

    async def work() -> None:
        nonlocal holding, peak
        async with pool.acquire():
            holding += 1
            peak = max(peak, holding)
            await asyncio.sleep(0.001)
            holding -= 1

    await asyncio.gather(*(work() for _ in range(100)))

    stats = pool.statistics()
    assert peak <= 5
    assert stats.in_use_peak == peak
    assert stats.created_total <= 5
    assert stats.acquires_total == 100
    assert (stats.in_use, stats.waiting, stats.idle) == (0, 0, stats.size)


# -- cancellation ----------------------------------------------------------------------


async def test_cancelled_waiter_leaves_the_line(make_pool: MakePool) -> None:
    pool = await make_pool(max_size=1)
    release = asyncio.Event()
    holder = asyncio.create_task(_hold(pool, release))
    await eventually(lambda: pool.statistics().in_use == 1)
    waiter = asyncio.create_task(_hold(pool, asyncio.Event()))
    await eventually(lambda: pool.statistics().waiting == 1)

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holder

    stats = pool.statistics()
    assert (stats.waiting, stats.in_use, stats.idle) == (0, 0, 1)


async def test_waiter_cancelled_as_it_is_handed_an_item_passes_it_on(
    make_pool: MakePool,
) -> None:
    pool = await make_pool(max_size=1)
    lease = pool.acquire()
    await lease.__aenter__()
    got: list[Conn] = []
    first = asyncio.create_task(_hold(pool, asyncio.Event(), got))
    await eventually(lambda: pool.statistics().waiting == 1)
    second = asyncio.create_task(_hold(pool, asyncio.Event(), got))
    await eventually(lambda: pool.statistics().waiting == 2)

    await lease.__aexit__(None, None, None)  # the item is handed to `first` ...
    first.cancel()  # ... which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await first

    await eventually(lambda: len(got) == 1)
    assert pool.statistics().in_use == 1
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    assert pool.statistics().idle == 1


async def test_holder_cancelled_inside_the_block_returns_the_item(make_pool: MakePool) -> None:
    pool = await make_pool(max_size=1)
    got: list[Conn] = []
    holder = asyncio.create_task(_hold(pool, asyncio.Event(), got))
    await eventually(lambda: pool.statistics().in_use == 1)

    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder

    stats = pool.statistics()
    assert (stats.in_use, stats.idle, stats.disposed_total) == (0, 1, 0)
    async with pool.acquire() as again:
        assert again is got[0]


@pytest.mark.slow
async def test_churn_of_cancellations_and_timeouts_leaks_no_slot(make_pool: MakePool) -> None:
    pool = await make_pool(max_size=4, pool_timeout=0.02)

    async def borrower(hold: float) -> None:
        try:
            async with pool.acquire():
                await asyncio.sleep(hold)
        except PoolTimeout:
            pass

    for round_number in range(20):
        tasks = [asyncio.create_task(borrower(0.001 * (i % 7))) for i in range(100)]
        await asyncio.sleep(0.001 * (round_number % 5))
        for task in tasks[round_number % 3::3]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    stats = pool.statistics()
    assert (stats.in_use, stats.waiting) == (0, 0)
    assert stats.idle == stats.size <= 4
    assert stats.pool_timeouts_total > 0
    # Every slot is still usable: four holders at once, without waiting.
    release = asyncio.Event()
    holders = [asyncio.create_task(_hold(pool, release)) for _ in range(4)]
    await eventually(lambda: pool.statistics().in_use == 4)
    release.set()
    await asyncio.gather(*holders)


# -- errors in the block ---------------------------------------------------------------


async def test_ordinary_error_in_the_block_returns_the_item(make_pool: MakePool) -> None:
    pool = await make_pool()

    with pytest.raises(KeyError):
        async with pool.acquire() as conn:
            raise KeyError("user")

    assert pool.statistics().idle == 1
    assert not conn.closed


async def test_connection_error_in_the_block_disposes_the_item(make_pool: MakePool) -> None:
    pool = await make_pool()

    with pytest.raises(ConnectionResetError):
        async with pool.acquire() as broken:
            raise ConnectionResetError("peer reset")
    async with pool.acquire() as fresh:
        pass

    assert fresh is not broken
    await eventually(lambda: broken.closed)
    stats = pool.statistics()
    assert (stats.size, stats.disposed_total, stats.created_total) == (1, 1, 2)


async def test_discard_on_chooses_the_errors_that_dispose_the_item(make_pool: MakePool) -> None:
    pool = await make_pool(discard_on=(ValueError,))

    with pytest.raises(ValueError, match="protocol"):
        async with pool.acquire() as conn:
            raise ValueError("protocol out of sync")

    await eventually(lambda: conn.closed)


# -- factory errors --------------------------------------------------------------------


async def test_factory_error_propagates_and_frees_its_slot(make_pool: MakePool,
                                                           factory: Factory) -> None:
    pool = await make_pool(max_size=1)
    factory.fail = ConnectionRefusedError("refused")

    with pytest.raises(ConnectionRefusedError):
        async with pool.acquire():
            pass
    factory.fail = None
    async with pool.acquire() as conn:
        pass

    assert conn is factory.made[0]
    stats = pool.statistics()
    assert stats.size == 1
    assert stats.failures_by_kind == {"ConnectionRefusedError": 1}


async def test_factory_past_the_timeout_raises_resource_timeout(make_pool: MakePool,
                                                                factory: Factory) -> None:
    pool = await make_pool(max_size=1, timeout=0.1)
    factory.gate = asyncio.Event()

    with pytest.raises(ResourceTimeout) as caught:
        async with pool.acquire():
            pass

    assert caught.value.resource == "conns"
    factory.gate = None
    async with pool.acquire():
        assert pool.statistics().in_use == 1


async def test_failing_factory_opens_the_breaker(make_pool: MakePool, factory: Factory) -> None:
    pool = await make_pool(circuit_breaker_threshold=2)
    factory.fail = ConnectionRefusedError("refused")
    for _ in range(2):
        with pytest.raises(ConnectionRefusedError):
            async with pool.acquire():
                pass
    factory.fail = None

    with pytest.raises(CircuitOpen):
        async with pool.acquire():
            pass

    assert factory.made == []
    assert pool.statistics().size == 0


async def test_factory_errors_that_never_reached_the_server_are_retried(
    make_pool: MakePool, factory: Factory
) -> None:
    pool = await make_pool(max_retries=2)
    factory.failures = [ResourceUnavailable("conns", "connection refused", sent=False)] * 2

    async with pool.acquire() as conn:
        assert conn is factory.made[0]

    assert factory.calls == 3


# -- validation and ages ---------------------------------------------------------------


async def test_invalid_item_is_disposed_and_replaced(make_pool: MakePool) -> None:
    pool = await make_pool(validate=lambda conn: conn.healthy)
    async with pool.acquire() as first:
        first.healthy = False

    async with pool.acquire() as second:
        pass

    assert second is not first
    assert first.closed
    stats = pool.statistics()
    assert (stats.validation_failures_total, stats.size, stats.disposed_total) == (1, 1, 1)


async def test_validate_that_raises_counts_as_invalid(make_pool: MakePool) -> None:
    def validate(conn: Conn) -> bool:
        raise OSError("ping failed")

    pool = await make_pool(validate=validate)
    async with pool.acquire() as first:
        pass

    async with pool.acquire() as second:
        pass

    assert second is not first
    assert pool.statistics().validation_failures_total == 1


async def test_async_validate_is_awaited(make_pool: MakePool) -> None:
    checked: list[Conn] = []

    async def validate(conn: Conn) -> bool:
        checked.append(conn)
        await asyncio.sleep(0)
        return True

    pool = await make_pool(validate=validate)
    async with pool.acquire() as first:
        pass
    async with pool.acquire() as second:
        pass

    assert second is first
    assert checked == [first]  # a fresh item is not validated, a reused one is


async def test_waiter_cancelled_during_validation_leaks_no_slot(make_pool: MakePool) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()

    async def slow_validate(conn: Conn) -> bool:
        entered.set()
        await gate.wait()
        return True

    pool = await make_pool(max_size=1, validate=slow_validate)
    async with pool.acquire() as first:
        pass
    task = asyncio.create_task(_hold(pool, asyncio.Event()))
    await entered.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await eventually(lambda: pool.statistics().size == 0)
    assert first.closed  # its state was unknown: disposed, not reused
    gate.set()
    async with pool.acquire():
        assert pool.statistics().in_use == 1


async def test_item_idle_longer_than_max_idle_is_replaced(make_pool: MakePool) -> None:
    pool = await make_pool(max_idle=0.05)
    async with pool.acquire() as first:
        pass
    await asyncio.sleep(0.1)

    async with pool.acquire() as second:
        pass

    assert second is not first
    assert pool.statistics().expired_total == 1
    await eventually(lambda: first.closed)  # expired idle items are disposed aside


async def test_item_older_than_recycle_is_replaced(make_pool: MakePool) -> None:
    pool = await make_pool(recycle=0.05)
    async with pool.acquire() as first:
        await asyncio.sleep(0.1)

    async with pool.acquire() as second:
        pass

    assert second is not first
    await eventually(lambda: first.closed)


async def test_expired_idle_items_beyond_the_load_are_disposed(make_pool: MakePool) -> None:
    pool = await make_pool(max_size=3, min_size=3, max_idle=0.05)
    await asyncio.sleep(0.1)

    async with pool.acquire():
        pass

    await eventually(lambda: pool.statistics().disposed_total == 3)
    assert pool.statistics().size == 1


# -- config ----------------------------------------------------------------------------


def test_min_size_above_max_size_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="min_size=5 is larger than max_size=2"):
        PoolConfig(name="conns", min_size=5, max_size=2)


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_size", 0), ("pool_timeout", 0), ("max_idle", -1), ("close_timeout", 0)],
)
def test_config_refuses_values_out_of_range(field: str, value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        PoolConfig(name="conns", **{field: value})


def test_config_refuses_unknown_options() -> None:
    with pytest.raises(pydantic.ValidationError, match="max_connections"):
        PoolConfig(name="conns", max_connections=3)  # type: ignore[call-arg]


def test_factory_must_be_callable() -> None:
    with pytest.raises(TypeError, match="factory must be callable"):
        Pool(PoolConfig(), factory=42)  # type: ignore[call-overload]


# -- anyio cancel scopes (level cancellation, as under Starlette) --------------------


async def test_holder_in_a_cancelled_anyio_scope_returns_the_item(make_pool: MakePool) -> None:
    pool = await make_pool(max_size=1)

    with anyio.move_on_after(0.05) as scope:
        async with pool.acquire() as conn:
            await anyio.sleep_forever()

    assert scope.cancelled_caught
    stats = pool.statistics()
    assert (stats.in_use, stats.idle) == (0, 1)
    async with pool.acquire() as again:
        assert again is conn


async def test_waiter_in_a_cancelled_anyio_scope_leaks_no_slot(make_pool: MakePool) -> None:
    pool = await make_pool(max_size=1)
    release = asyncio.Event()
    holder = asyncio.create_task(_hold(pool, release))
    await eventually(lambda: pool.statistics().in_use == 1)

    with anyio.move_on_after(0.05):
        async with pool.acquire():
            pytest.fail("the only item is held")
    release.set()
    await holder

    stats = pool.statistics()
    assert (stats.waiting, stats.in_use, stats.idle) == (0, 0, 1)


async def test_broken_item_in_a_cancelled_anyio_scope_is_disposed_and_its_error_kept(
    make_pool: MakePool,
) -> None:
    pool = await make_pool(max_size=1)

    held: list[Conn] = []

    async def broken_holder() -> None:
        with anyio.CancelScope() as scope:
            async with pool.acquire() as conn:
                held.append(conn)
                scope.cancel()
                raise ConnectionResetError("peer reset")

    with pytest.raises(ConnectionResetError):  # not replaced by the cancellation
        await broken_holder()

    conn = held[0]
    await eventually(lambda: conn.closed)
    await eventually(lambda: pool.statistics().size == 0)
    async with pool.acquire() as fresh:
        assert fresh is not conn
