"""``tether.testing.find_leaks`` / ``assert_no_leaks``: every scope closed, every
resource disposed, with the culprit named."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tether import Container, Scope
from tether.testing import FakeClock, assert_no_leaks, find_leaks

from .helpers import abandon_request

pytestmark = pytest.mark.anyio


class Pool:
    pass


class Conn:
    pass


class Cart:
    pass


def leak_check_container() -> Container:
    container = Container(clock=FakeClock())

    @container.provide
    async def pool() -> AsyncIterator[Pool]:
        yield Pool()

    @container.provide(scope=Scope.REQUEST)
    def conn() -> Iterator[Conn]:
        yield Conn()

    @container.provide(scope=Scope.SESSION)
    async def cart() -> AsyncIterator[Cart]:
        yield Cart()

    return container


async def test_find_leaks_is_empty_after_a_clean_lifecycle() -> None:
    container = leak_check_container()
    async with container:
        await container.aget(Pool)
        async with container.scope() as request:
            await request.aget(Conn)
        async with container.scope(Scope.SESSION, session_id="s1") as session:
            await session.aget(Cart)
    assert find_leaks(container) == []


async def test_assert_no_leaks_passes_after_a_clean_lifecycle() -> None:
    container = leak_check_container()
    async with container, container.scope() as request:
        await request.aget(Conn)
    assert_no_leaks(container)


async def test_find_leaks_names_a_request_scope_still_open() -> None:
    container = leak_check_container()
    async with container:
        request = container.scope()
        await request.aget(Conn)
        leaks = find_leaks(container)
        assert len(leaks) == 1
        assert "REQUEST scope" in leaks[0]
        assert "Conn" in leaks[0]
        await request.aclose()


async def test_assert_no_leaks_fails_naming_the_open_scope() -> None:
    container = leak_check_container()
    async with container:
        request = container.scope()
        await request.aget(Conn)
        with pytest.raises(AssertionError, match=r"REQUEST scope is still open.*Conn"):
            assert_no_leaks(container)
        await request.aclose()


async def test_a_session_still_open_is_no_leak_while_the_container_is_open() -> None:
    container = leak_check_container()
    async with container:
        async with container.scope(Scope.SESSION, session_id="s1") as session:
            await session.aget(Cart)
        assert find_leaks(container) == []


def test_find_leaks_counts_a_request_scope_garbage_collected_without_closing() -> None:
    container = leak_check_container()
    with container:
        with pytest.warns(ResourceWarning):
            abandon_request(container, Conn)
        leaks = find_leaks(container)
    assert any("garbage-collected" in leak for leak in leaks), leaks


def test_find_leaks_names_a_resource_never_disposed_once_the_container_closed() -> None:
    container = leak_check_container()
    with container, pytest.warns(ResourceWarning):
        abandon_request(container, Conn)
    leaks = find_leaks(container)
    assert any("Conn" in leak and "never disposed" in leak for leak in leaks), leaks
