"""Guarantee 8: SESSION instances are disposed when their session expires (idle or
absolute), found by ``expire_sessions()``, by re-entering the same session id, by
the health monitor, or at the latest when the container closes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest

from tether import Container, Scope
from tether.testing import FakeClock

from .helpers import Log

pytestmark = pytest.mark.anyio

IDLE = 10.0
MAX_AGE = 100.0


class Cart:
    def __init__(self, session: str) -> None:
        self.session = session


class Basket:
    def __init__(self, cart: Cart) -> None:
        self.cart = cart


class SessionIds:
    """Counts carts so that each one is told apart in the log."""

    def __init__(self) -> None:
        self.made = 0


def session_container(log: Log, clock: FakeClock) -> Container:
    container = Container(clock=clock, session_idle_timeout=IDLE, session_max_age=MAX_AGE)
    ids = SessionIds()

    @container.provide(scope=Scope.SESSION)
    async def cart() -> AsyncIterator[Cart]:
        ids.made += 1
        name = f"Cart{ids.made}"
        log(f"open {name}")
        try:
            yield Cart(name)
        finally:
            await anyio.lowlevel.checkpoint()
            log(f"close {name}")

    @container.provide(scope=Scope.SESSION)
    async def basket(cart: Cart) -> AsyncIterator[Basket]:
        yield Basket(cart)
        log("close Basket")

    return container


async def visit(container: Container, session_id: str = "s1") -> Cart:
    async with container.scope(Scope.SESSION, session_id=session_id) as session:
        return await session.aget(Cart)


# -- a session outlives its block ----------------------------------------------------------


async def test_session_instances_survive_the_end_of_the_session_block() -> None:
    log = Log()
    container = session_container(log, FakeClock())
    async with container:
        first = await visit(container)
        assert log.closed() == []
        assert await visit(container) is first


async def test_session_instances_are_not_shared_between_session_ids() -> None:
    container = session_container(Log(), FakeClock())
    async with container:
        assert await visit(container, "s1") is not await visit(container, "s2")


# -- expire_sessions() ------------------------------------------------------------------------


async def test_idle_session_is_disposed_by_expire_sessions() -> None:
    log = Log()
    clock = FakeClock()
    container = session_container(log, clock)
    async with container:
        await visit(container)
        clock.advance(IDLE + 1)
        assert await container.expire_sessions() == 1
        assert log.closed() == ["Cart1"]


async def test_session_within_its_idle_timeout_is_kept() -> None:
    log = Log()
    clock = FakeClock()
    container = session_container(log, clock)
    async with container:
        first = await visit(container)
        clock.advance(IDLE - 1)
        assert await container.expire_sessions() == 0
        assert log.closed() == []
        assert await visit(container) is first


async def test_each_visit_restarts_the_idle_timeout() -> None:
    log = Log()
    clock = FakeClock()
    container = session_container(log, clock)
    async with container:
        first = await visit(container)
        for _ in range(3):
            clock.advance(IDLE - 1)
            assert await visit(container) is first
        assert await container.expire_sessions() == 0
        assert log.closed() == []


async def test_session_past_its_max_age_is_disposed_however_active() -> None:
    log = Log()
    clock = FakeClock()
    container = session_container(log, clock)
    async with container:
        await visit(container)
        while clock.now + (IDLE - 1) <= MAX_AGE:
            clock.advance(IDLE - 1)
            await visit(container)
        clock.advance(IDLE - 1)  # past its max age, still within its idle timeout
        assert await container.expire_sessions() == 1
        assert log.closed() == ["Cart1"]


async def test_expired_session_is_disposed_dependents_first() -> None:
    log = Log()
    clock = FakeClock()
    container = session_container(log, clock)
    async with container:
        async with container.scope(Scope.SESSION, session_id="s1") as session:
            await session.aget(Basket)
        clock.advance(IDLE + 1)
        await container.expire_sessions()
        assert log.closed() == ["Basket", "Cart1"]


async def test_expire_sessions_disposes_only_the_expired_ones() -> None:
    log = Log()
    clock = FakeClock()
    container = session_container(log, clock)
    async with container:
        await visit(container, "old")
        clock.advance(IDLE - 1)
        await visit(container, "fresh")
        clock.advance(2)
        assert await container.expire_sessions() == 1
        assert log.closed() == ["Cart1"]


async def test_a_session_id_after_expiry_gets_fresh_instances() -> None:
    clock = FakeClock()
    container = session_container(Log(), clock)
    async with container:
        first = await visit(container)
        clock.advance(IDLE + 1)
        await container.expire_sessions()
        assert await visit(container) is not first


# -- re-entry with the same session id ---------------------------------------------------


async def test_reentering_an_expired_session_gets_fresh_instances() -> None:
    clock = FakeClock()
    container = session_container(Log(), clock)
    async with container:
        first = await visit(container)
        clock.advance(IDLE + 1)
        second = await visit(container)
        assert second is not first
        assert second.session == "Cart2"


async def test_reentering_an_expired_session_disposes_its_old_instances() -> None:
    log = Log()
    clock = FakeClock()
    container = session_container(log, clock)
    async with container:
        await visit(container)
        clock.advance(IDLE + 1)
        await visit(container)
        assert log.closed() == ["Cart1"]


async def test_session_expired_on_reentry_is_disposed_by_the_next_expire_sessions() -> None:
    log = Log()
    clock = FakeClock()
    container = session_container(log, clock)
    async with container:
        await visit(container)
        clock.advance(IDLE + 1)
        await visit(container)
        await container.expire_sessions()
        assert log.closed() == ["Cart1"]


# -- the health monitor and the container ------------------------------------------------


async def test_health_monitor_disposes_expired_sessions_in_the_background() -> None:
    disposed = anyio.Event()
    clock = FakeClock()
    container = Container(
        clock=clock, session_idle_timeout=IDLE, session_max_age=MAX_AGE, health_interval=0.01
    )

    @container.provide(scope=Scope.SESSION)
    async def cart() -> AsyncIterator[Cart]:
        yield Cart("Cart1")
        disposed.set()

    async with container:
        await visit(container)
        assert not disposed.is_set()
        clock.advance(IDLE + 1)
        with anyio.fail_after(5):
            await disposed.wait()


async def test_container_close_disposes_live_sessions() -> None:
    log = Log()
    container = session_container(log, FakeClock())
    async with container:
        await visit(container, "s1")
        await visit(container, "s2")
    assert sorted(log.closed()) == ["Cart1", "Cart2"]


async def test_container_close_disposes_sessions_expired_on_reentry_but_not_yet_collected() -> None:
    log = Log()
    clock = FakeClock()
    container = session_container(log, clock)
    async with container:
        await visit(container)
        clock.advance(IDLE + 1)
        await visit(container)
    assert sorted(log.closed()) == ["Cart1", "Cart2"]


async def test_container_close_disposes_sessions_before_app_resources() -> None:
    log = Log()
    container = Container(clock=FakeClock())

    class Db:
        pass

    @container.provide(provides=Db)
    async def db() -> AsyncIterator[object]:
        yield Db()
        log("close Db")

    @container.provide(scope=Scope.SESSION)
    async def cart() -> AsyncIterator[Cart]:
        yield Cart("Cart1")
        log("close Cart1")

    async with container:
        await container.aget(Db)
        await visit(container)
    assert log.closed() == ["Cart1", "Db"]


def test_sync_session_block_keeps_the_session_open() -> None:
    container = Container(clock=FakeClock())
    container.bind(Basket, scope=Scope.SESSION)
    container.bind(Cart, Cart("c"))
    with container:
        with container.scope(Scope.SESSION, session_id="s1") as session:
            first = session.get(Basket)
        with container.scope(Scope.SESSION, session_id="s1") as session:
            assert session.get(Basket) is first


async def test_end_session_disposes_that_sessions_resources_at_once() -> None:
    closed: list[str] = []
    container = Container()

    @container.provide(scope=Scope.SESSION)
    async def cart() -> AsyncIterator[list[str]]:
        yield []
        closed.append("cart")

    async with container:
        async with container.scope(Scope.SESSION, session_id="s1") as session:
            first = await session.aget(list[str])
        assert await container.end_session("s1") is True
        assert closed == ["cart"]
        assert await container.end_session("s1") is False
        async with container.scope(Scope.SESSION, session_id="s1") as session:
            assert await session.aget(list[str]) is not first


async def test_past_max_sessions_the_least_recently_used_session_is_disposed() -> None:
    closed: list[str] = []
    container = Container(max_sessions=2)

    @container.provide(scope=Scope.SESSION)
    async def cart() -> AsyncIterator[list[str]]:
        items: list[str] = []
        yield items
        closed.append(",".join(items))

    async with container:
        for sid in ("a", "b"):
            async with container.scope(Scope.SESSION, session_id=sid) as session:
                (await session.aget(list[str])).append(sid)
        async with container.scope(Scope.SESSION, session_id="a") as session:
            await session.aget(list[str])  # "a" is now the most recently used
        async with container.scope(Scope.SESSION, session_id="c") as session:
            (await session.aget(list[str])).append("c")
        assert closed == ["b"]  # the oldest, disposed as the next scope was entered
        assert sorted(container._registry.sessions) == ["a", "c"]
    assert sorted(closed) == ["a", "b", "c"]


def test_max_sessions_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_sessions"):
        Container(max_sessions=0)
