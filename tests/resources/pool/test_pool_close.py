"""``Pool.dispose()``: every item disposed, bounded in time, new acquires refused."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.resources.pool.items import Conn, Factory, eventually
from tether.exceptions import ClosedError
from tether.resources.pool import Pool, PoolConfig

pytestmark = pytest.mark.anyio


async def _pool(factory: Factory, **options: float) -> Pool[Conn]:
    pool = Pool(PoolConfig(name="conns", **options), factory=factory)
    await pool.initialize()
    return pool


async def _hold(pool: Pool[Conn], release: asyncio.Event) -> None:
    async with pool.acquire():
        await release.wait()


async def test_dispose_disposes_every_idle_item() -> None:
    factory = Factory()
    pool = await _pool(factory, min_size=3)

    await pool.dispose()

    assert [conn.closed for conn in factory.made] == [True, True, True]
    stats = pool.statistics()
    assert (stats.size, stats.idle, stats.disposed_total) == (0, 0, 3)


async def test_dispose_waits_for_items_in_use_and_disposes_them_on_return() -> None:
    factory = Factory()
    pool = await _pool(factory, close_timeout=30.0)
    release = asyncio.Event()
    holder = asyncio.create_task(_hold(pool, release))
    await eventually(lambda: pool.statistics().in_use == 1)

    closing = asyncio.create_task(pool.dispose())
    await asyncio.sleep(0.05)
    conn = factory.made[0]
    assert not closing.done()
    assert pool.statistics().disposed_total == 0
    release.set()
    await holder
    await closing

    assert conn.closed
    assert pool.statistics().size == 0


async def test_items_still_in_use_after_close_timeout_are_disposed_anyway(
    caplog: pytest.LogCaptureFixture,
) -> None:
    factory = Factory()
    pool = await _pool(factory, close_timeout=0.1)
    release = asyncio.Event()
    holder = asyncio.create_task(_hold(pool, release))
    await eventually(lambda: pool.statistics().in_use == 1)

    with caplog.at_level(logging.WARNING, logger="tether.resources.pool"):
        await pool.dispose()

    assert factory.made[0].closed
    assert "still in use" in caplog.text
    release.set()
    await holder  # giving back an item disposed already is harmless
    assert pool.statistics().disposed_total == 1


async def test_acquire_after_dispose_raises_closed_error() -> None:
    pool = await _pool(Factory())
    await pool.dispose()

    with pytest.raises(ClosedError, match="Pool 'conns'"):
        async with pool.acquire():
            pass


async def test_waiters_get_closed_error_when_the_pool_closes() -> None:
    pool = await _pool(Factory(), max_size=1, close_timeout=30.0)
    release = asyncio.Event()
    holder = asyncio.create_task(_hold(pool, release))
    await eventually(lambda: pool.statistics().in_use == 1)
    waiter = asyncio.create_task(_hold(pool, asyncio.Event()))
    await eventually(lambda: pool.statistics().waiting == 1)

    closing = asyncio.create_task(pool.dispose())
    with pytest.raises(ClosedError):
        await waiter
    release.set()
    await asyncio.gather(holder, closing)

    assert pool.statistics().waiting == 0


async def test_item_made_while_the_pool_closes_is_disposed() -> None:
    factory = Factory()
    pool = await _pool(factory, close_timeout=30.0)
    factory.gate = asyncio.Event()
    acquirer = asyncio.create_task(_hold(pool, asyncio.Event()))
    await eventually(lambda: factory.calls == 1)

    closing = asyncio.create_task(pool.dispose())
    await asyncio.sleep(0)
    factory.gate.set()

    with pytest.raises(ClosedError):
        await acquirer
    await closing
    assert factory.made[0].closed
    assert pool.statistics().size == 0


async def test_dispose_twice_is_harmless() -> None:
    factory = Factory()
    pool = await _pool(factory, min_size=1)

    await pool.dispose()
    await pool.dispose()

    assert pool.statistics().disposed_total == 1


async def test_dispose_before_initialize_is_harmless() -> None:
    pool = Pool(PoolConfig(name="conns"), factory=Factory())

    await pool.dispose()

    with pytest.raises(ClosedError):
        await pool.initialize()


async def test_failing_dispose_hook_is_logged_and_the_rest_still_disposed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    factory = Factory()
    disposed: list[Conn] = []

    def dispose(conn: Conn) -> None:
        disposed.append(conn)
        if conn.number == 1:
            raise OSError("socket already gone")

    pool = Pool(PoolConfig(name="conns", min_size=3), factory=factory, dispose=dispose)
    await pool.initialize()

    with caplog.at_level(logging.WARNING, logger="tether.resources.pool"):
        await pool.dispose()

    assert len(disposed) == 3
    assert "disposing an item failed" in caplog.text
    assert "socket already gone" in caplog.text
    assert pool.statistics().dispose_failures_total == 1


async def test_dispose_hook_that_hangs_is_abandoned_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def hangs(conn: Conn) -> None:
        await asyncio.Event().wait()

    pool = Pool(PoolConfig(name="conns", min_size=1, timeout=0.1), factory=Factory(),
                dispose=hangs)
    await pool.initialize()

    with caplog.at_level(logging.WARNING, logger="tether.resources.pool"):
        await pool.dispose()

    assert "took longer than 0.1s" in caplog.text
    assert pool.statistics().size == 0


class Closable:
    """An item with a sync ``close()`` and no ``aclose()``."""

    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


async def test_item_close_method_is_used_without_a_dispose_hook() -> None:
    pool = Pool(PoolConfig(name="closables", min_size=1), factory=Closable)
    await pool.initialize()
    async with pool.acquire() as item:
        pass

    await pool.dispose()

    assert item.closed
