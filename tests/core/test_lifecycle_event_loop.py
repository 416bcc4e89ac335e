"""Guarantee 7: an APP resource created on one event loop and used on another is
detected with a clear error (the pytest-asyncio trap: a container built in one
test's loop, used in the next one's).

Each test runs two ``asyncio.run`` calls, so each is a plain sync test.
"""

from __future__ import annotations

import asyncio

import pytest

from tether import Container, Scope
from tether.exceptions import WrongEventLoop

pytestmark = pytest.mark.anyio


class Pool:
    """Stands for a connection pool: bound to the loop it was created on."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()


class Cache:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()


class Handler:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool


def container_with_async_app_resources() -> Container:
    container = Container()

    @container.provide
    async def pool() -> Pool:
        await asyncio.sleep(0)
        return Pool()

    @container.provide
    async def cache() -> Cache:
        await asyncio.sleep(0)
        return Cache()

    container.bind(Handler, scope=Scope.REQUEST)
    return container


def build_pool_on_a_first_loop(container: Container) -> Pool:
    async def first() -> Pool:
        return await container.aget(Pool)

    return asyncio.run(first())


def test_awaiting_a_cached_app_resource_on_another_loop_raises_wrong_event_loop() -> None:
    container = container_with_async_app_resources()
    build_pool_on_a_first_loop(container)

    async def second() -> None:
        await container.aget(Pool)

    with pytest.raises(WrongEventLoop):
        asyncio.run(second())


def test_building_an_app_resource_on_another_loop_raises_wrong_event_loop() -> None:
    container = container_with_async_app_resources()
    build_pool_on_a_first_loop(container)

    async def second() -> None:
        await container.aget(Cache)

    with pytest.raises(WrongEventLoop):
        asyncio.run(second())


def test_entering_a_scope_on_another_loop_raises_wrong_event_loop() -> None:
    container = container_with_async_app_resources()
    build_pool_on_a_first_loop(container)

    async def second() -> None:
        async with container.scope():
            pass

    with pytest.raises(WrongEventLoop):
        asyncio.run(second())


def test_resolving_a_dependent_of_a_cached_app_resource_on_another_loop_raises() -> None:
    container = container_with_async_app_resources()
    build_pool_on_a_first_loop(container)

    async def second() -> None:
        async with container.scope() as request:
            await request.aget(Handler)

    with pytest.raises(WrongEventLoop):
        asyncio.run(second())


def test_starting_the_container_on_another_loop_raises_wrong_event_loop() -> None:
    container = container_with_async_app_resources()
    build_pool_on_a_first_loop(container)

    async def second() -> None:
        async with container:
            pass

    with pytest.raises(WrongEventLoop):
        asyncio.run(second())


def test_wrong_event_loop_says_what_happened_and_how_to_fix_it() -> None:
    container = container_with_async_app_resources()
    build_pool_on_a_first_loop(container)

    async def second() -> None:
        await container.aget(Cache)

    with pytest.raises(WrongEventLoop) as info:
        asyncio.run(second())
    message = str(info.value)
    assert "another event loop" in message
    assert "Hint:" in message


def test_a_fresh_container_on_each_loop_works() -> None:
    pools = []
    for _ in range(2):
        container = container_with_async_app_resources()
        pools.append(build_pool_on_a_first_loop(container))
    assert pools[0] is not pools[1]
    assert pools[0].loop is not pools[1].loop
