"""Guarantee 6: a closed container or scope refuses use with a sentence (like httpx's
closed client), and a scope garbage-collected with cleanups pending emits a
``ResourceWarning``."""

from __future__ import annotations

import gc
import warnings
from collections.abc import AsyncIterator, Iterator

import pytest

from tether import Container, Scope
from tether.exceptions import ClosedError

from .helpers import Log, abandon_async_request, abandon_request

pytestmark = pytest.mark.anyio

CLOSED = "once it has been closed"


class Pool:
    pass


class Conn:
    pass


def closed_container() -> Container:
    container = Container()
    container.bind(Pool, Pool())
    container.bind(Conn, scope=Scope.REQUEST)
    with container:
        container.get(Pool)
    return container


# -- the container ------------------------------------------------------------------


def test_closed_container_refuses_get_with_a_sentence() -> None:
    container = closed_container()
    with pytest.raises(ClosedError, match=f"cannot use this container {CLOSED}"):
        container.get(Pool)


async def test_closed_container_refuses_aget_with_a_sentence() -> None:
    container = closed_container()
    with pytest.raises(ClosedError, match=CLOSED):
        await container.aget(Pool)


def test_closed_container_refuses_a_registration_it_never_had() -> None:
    container = closed_container()
    with pytest.raises(ClosedError, match=CLOSED):
        container.get(Conn)


def test_closed_error_is_a_runtime_error() -> None:
    container = closed_container()
    with pytest.raises(RuntimeError):
        container.get(Pool)


def test_closed_container_refuses_to_open_a_scope() -> None:
    container = closed_container()
    with pytest.raises(ClosedError, match=CLOSED):
        container.scope()


def test_closed_container_refuses_to_open_a_session() -> None:
    container = closed_container()
    with pytest.raises(ClosedError, match=CLOSED):
        container.scope(Scope.SESSION, session_id="s1")


def test_closed_container_refuses_new_registrations() -> None:
    container = closed_container()
    with pytest.raises(ClosedError, match=CLOSED):
        container.bind(Conn, scope=Scope.TRANSIENT)


def test_closed_container_refuses_an_override() -> None:
    container = closed_container()
    with pytest.raises(ClosedError, match=CLOSED), container.override(Pool, Pool()):
        pass


async def test_closed_container_refuses_to_start_again() -> None:
    container = Container()
    async with container:
        pass
    with pytest.raises(ClosedError, match=CLOSED):
        async with container:
            pass


def test_closed_container_refuses_to_start_again_synchronously() -> None:
    container = closed_container()
    with pytest.raises(ClosedError, match=CLOSED), container:
        pass


async def test_closing_a_closed_container_again_does_nothing() -> None:
    log = Log()
    container = Container()

    @container.provide
    async def pool() -> AsyncIterator[Pool]:
        yield Pool()
        log("close Pool")

    async with container:
        await container.aget(Pool)
    await container.aclose()
    container.close()
    assert log.closed() == ["Pool"]


def test_closed_container_reports_closed() -> None:
    assert closed_container().closed


# -- scopes ---------------------------------------------------------------------------


async def test_closed_request_scope_refuses_aget_with_a_sentence() -> None:
    container = Container()
    container.bind(Conn, scope=Scope.REQUEST)
    async with container:
        async with container.scope() as request:
            await request.aget(Conn)
        with pytest.raises(ClosedError, match=f"cannot use this REQUEST scope {CLOSED}"):
            await request.aget(Conn)


def test_closed_request_scope_refuses_get_with_a_sentence() -> None:
    container = Container()
    container.bind(Conn, scope=Scope.REQUEST)
    with container:
        with container.scope() as request:
            request.get(Conn)
        with pytest.raises(ClosedError, match=f"REQUEST scope {CLOSED}"):
            request.get(Conn)


def test_closed_request_scope_refuses_what_it_never_built() -> None:
    container = Container()
    container.bind(Conn, scope=Scope.REQUEST)
    container.bind(Pool, Pool())
    with container:
        with container.scope() as request:
            pass
        with pytest.raises(ClosedError, match=CLOSED):
            request.get(Conn)


def test_closed_request_scope_refuses_app_instances_too() -> None:
    container = Container()
    container.bind(Pool, Pool())
    with container:
        with container.scope() as request:
            request.get(Pool)
        with pytest.raises(ClosedError, match=CLOSED):
            request.get(Pool)


def test_closed_request_scope_refuses_to_open_a_nested_scope() -> None:
    container = Container()
    with container:
        with container.scope() as request:
            pass
        with pytest.raises(ClosedError, match=CLOSED):
            request.scope()


async def test_request_scope_left_open_is_closed_by_the_container_and_refuses_use() -> None:
    container = Container()
    container.bind(Conn, scope=Scope.REQUEST)
    async with container:
        request = container.scope()
        await request.aget(Conn)
    assert request.closed
    with pytest.raises(ClosedError, match=CLOSED):
        await request.aget(Conn)


async def test_expired_session_scope_refuses_use_with_a_sentence() -> None:
    from tether.testing import FakeClock

    clock = FakeClock()
    container = Container(clock=clock, session_idle_timeout=10)
    container.bind(Conn, scope=Scope.SESSION)
    async with container:
        async with container.scope(Scope.SESSION, session_id="s1") as session:
            await session.aget(Conn)
        clock.advance(11)
        await container.expire_sessions()
        with pytest.raises(ClosedError, match=f"SESSION scope 's1' {CLOSED}"):
            await session.aget(Conn)


# -- garbage-collected scopes -----------------------------------------------------------


def register_sync_conn(container: Container, log: Log) -> None:
    @container.provide(scope=Scope.REQUEST)
    def conn() -> Iterator[Conn]:
        try:
            yield Conn()
        finally:
            log("close Conn")


def test_request_scope_collected_with_cleanups_pending_emits_resource_warning() -> None:
    container = Container()
    register_sync_conn(container, Log())
    with container, pytest.warns(ResourceWarning, match="garbage-collected"):
        abandon_request(container, Conn)


def test_resource_warning_names_the_pending_teardowns() -> None:
    container = Container()
    register_sync_conn(container, Log())
    with container, pytest.warns(ResourceWarning, match="Conn"):
        abandon_request(container, Conn)


async def test_async_request_scope_collected_with_cleanups_pending_emits_resource_warning() -> None:
    container = Container()

    @container.provide(scope=Scope.REQUEST)
    async def conn() -> AsyncIterator[Conn]:
        yield Conn()

    async with container:
        with pytest.warns(ResourceWarning, match="garbage-collected"):
            await abandon_async_request(container, Conn)


def test_request_scope_collected_without_pending_cleanups_warns_nothing() -> None:
    container = Container()
    container.bind(Conn, scope=Scope.REQUEST)
    with container, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        request = container.scope()
        request.get(Conn)
        del request
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_closed_request_scope_collected_warns_nothing() -> None:
    container = Container()
    register_sync_conn(container, Log())
    with container, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with container.scope() as request:
            request.get(Conn)
        del request
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
