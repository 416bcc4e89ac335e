"""Guarantee 3: teardown runs in reverse order of creation (dependents before their
dependencies), however the scope ends: normally, by exception, by asyncio
``Task.cancel`` or by an anyio cancel scope."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import TaskStatus

from tether import Container, Scope, resource

from .helpers import Log

pytestmark = pytest.mark.anyio

# Bottom <- Middle <- Top: built Bottom, Middle, Top; disposed Top, Middle, Bottom.
CREATED = ["Bottom", "Middle", "Top"]
DISPOSED = ["Top", "Middle", "Bottom"]


class Bottom:
    pass


@resource
class Middle:
    """A resource class between two generators, so one order spans every kind."""

    def __init__(self, bottom: Bottom, log: Log) -> None:
        self.bottom = bottom
        self.log = log

    async def initialize(self) -> None:
        self.log("open Middle")

    async def dispose(self) -> None:
        await anyio.lowlevel.checkpoint()  # a teardown that really suspends
        self.log("close Middle")


@resource
class SyncMiddle:
    def __init__(self, bottom: Bottom, log: Log) -> None:
        self.bottom = bottom
        self.log = log

    def initialize(self) -> None:
        self.log("open Middle")

    def dispose(self) -> None:
        self.log("close Middle")


class Top:
    def __init__(self, middle: Middle) -> None:
        self.middle = middle


class SyncTop:
    def __init__(self, middle: SyncMiddle) -> None:
        self.middle = middle


class BodyError(Exception):
    pass


def register_async_chain(container: Container, log: Log, scope: Scope = Scope.REQUEST) -> None:
    """Bottom: async generator, Middle: resource with async dispose, Top: sync generator."""
    container.bind(Log, log)

    @container.provide(scope=scope)
    async def bottom() -> AsyncIterator[Bottom]:
        log("open Bottom")
        try:
            yield Bottom()
        finally:
            await anyio.lowlevel.checkpoint()
            log("close Bottom")

    container.bind(Middle, scope=scope)

    @container.provide(scope=scope)
    def top(middle: Middle) -> Iterator[Top]:
        log("open Top")
        try:
            yield Top(middle)
        finally:
            log("close Top")


def register_sync_chain(container: Container, log: Log, scope: Scope = Scope.REQUEST) -> None:
    container.bind(Log, log)

    @container.provide(scope=scope)
    def bottom() -> Iterator[Bottom]:
        log("open Bottom")
        try:
            yield Bottom()
        finally:
            log("close Bottom")

    container.bind(SyncMiddle, scope=scope)

    @container.provide(scope=scope)
    def top(middle: SyncMiddle) -> Iterator[SyncTop]:
        log("open Top")
        try:
            yield SyncTop(middle)
        finally:
            log("close Top")


async def failing_request(container: Container, error: BodyError) -> None:
    async with container.scope() as request:
        await request.aget(Top)
        raise error


def failing_sync_request(container: Container, error: BodyError) -> None:
    with container.scope() as request:
        request.get(SyncTop)
        raise error


async def failing_service(container: Container, error: BodyError) -> None:
    async with container:
        await container.aget(Top)
        raise error


# -- asyncio and anyio, REQUEST scope -----------------------------------------------


async def test_request_scope_creates_dependencies_before_dependents() -> None:
    log = Log()
    container = Container()
    register_async_chain(container, log)
    async with container, container.scope() as request:
        await request.aget(Top)
        assert log.opened() == CREATED


async def test_request_scope_normal_exit_disposes_dependents_first() -> None:
    log = Log()
    container = Container()
    register_async_chain(container, log)
    async with container:
        async with container.scope() as request:
            await request.aget(Top)
        assert log.closed() == DISPOSED


async def test_request_scope_exit_by_exception_disposes_dependents_first() -> None:
    log = Log()
    container = Container()
    register_async_chain(container, log)
    async with container:
        with pytest.raises(BodyError):
            await failing_request(container, BodyError("the handler failed"))
        assert log.closed() == DISPOSED


async def test_request_scope_exit_by_exception_reraises_the_body_error_unchanged() -> None:
    log = Log()
    container = Container()
    register_async_chain(container, log)
    error = BodyError("the handler failed")
    async with container:
        with pytest.raises(BodyError) as info:
            await failing_request(container, error)
    assert info.value is error


async def test_task_cancel_of_a_request_disposes_dependents_first() -> None:
    log = Log()
    container = Container()
    register_async_chain(container, log)
    ready = anyio.Event()

    async def handle() -> None:
        async with container.scope() as request:
            await request.aget(Top)
            ready.set()
            await anyio.sleep_forever()

    async with container:
        task = asyncio.create_task(handle())
        await ready.wait()
        task.cancel()
        await asyncio.wait([task])
        assert log.closed() == DISPOSED


async def test_task_cancel_of_a_request_still_ends_the_task_cancelled() -> None:
    log = Log()
    container = Container()
    register_async_chain(container, log)
    ready = anyio.Event()

    async def handle() -> None:
        async with container.scope() as request:
            await request.aget(Top)
            ready.set()
            await anyio.sleep_forever()

    async with container:
        task = asyncio.create_task(handle())
        await ready.wait()
        task.cancel()
        await asyncio.wait([task])
    assert task.cancelled()


async def test_anyio_cancel_scope_around_a_request_disposes_dependents_first() -> None:
    log = Log()
    container = Container()
    register_async_chain(container, log)
    async with container:
        with anyio.CancelScope() as cancel_scope:
            async with container.scope() as request:
                await request.aget(Top)
                cancel_scope.cancel()
                await anyio.sleep_forever()
        assert cancel_scope.cancelled_caught
        assert log.closed() == DISPOSED


async def test_task_group_cancelled_from_another_task_disposes_dependents_first() -> None:
    log = Log()
    container = Container()
    register_async_chain(container, log)

    async def handle(*, task_status: TaskStatus[None]) -> None:
        async with container.scope() as request:
            await request.aget(Top)
            task_status.started()
            await anyio.sleep_forever()

    async with container:
        async with anyio.create_task_group() as tg:
            await tg.start(handle)
            tg.cancel_scope.cancel()
        assert log.closed() == DISPOSED


async def test_move_on_after_deadline_disposes_dependents_first() -> None:
    log = Log()
    container = Container()
    register_async_chain(container, log)
    async with container:
        with anyio.move_on_after(0.05) as cancel_scope:
            async with container.scope() as request:
                await request.aget(Top)
                await anyio.sleep_forever()
        assert cancel_scope.cancelled_caught
        assert log.closed() == DISPOSED


class Other:
    pass


@pytest.mark.parametrize("order", [("Bottom", "Other"), ("Other", "Bottom")], ids=str)
async def test_independent_resources_are_disposed_newest_first(order: tuple[str, str]) -> None:
    log = Log()
    container = Container()

    @container.provide(scope=Scope.REQUEST)
    async def bottom() -> AsyncIterator[Bottom]:
        yield Bottom()
        log("close Bottom")

    @container.provide(scope=Scope.REQUEST)
    def other() -> Iterator[Other]:
        yield Other()
        log("close Other")

    by_name = {"Bottom": Bottom, "Other": Other}
    async with container:
        async with container.scope() as request:
            for name in order:
                await request.aget(by_name[name])
        assert log.closed() == list(reversed(order))


# -- sync scopes ------------------------------------------------------------------


def test_sync_request_scope_normal_exit_disposes_dependents_first() -> None:
    log = Log()
    container = Container()
    register_sync_chain(container, log)
    with container:
        with container.scope() as request:
            request.get(SyncTop)
            assert log.opened() == CREATED
        assert log.closed() == DISPOSED


def test_sync_request_scope_exit_by_exception_disposes_dependents_first() -> None:
    log = Log()
    container = Container()
    register_sync_chain(container, log)
    with container:
        with pytest.raises(BodyError):
            failing_sync_request(container, BodyError("the handler failed"))
        assert log.closed() == DISPOSED


def test_sync_container_exit_disposes_app_resources_dependents_first() -> None:
    log = Log()
    container = Container()
    register_sync_chain(container, log, Scope.APP)
    with container:
        container.get(SyncTop)
    assert log.closed() == DISPOSED


# -- the container -------------------------------------------------------------------


async def test_container_exit_disposes_app_resources_dependents_first() -> None:
    log = Log()
    container = Container()
    register_async_chain(container, log, Scope.APP)
    async with container:
        await container.aget(Top)
    assert log.closed() == DISPOSED


async def test_container_exit_by_exception_disposes_app_resources_dependents_first() -> None:
    log = Log()
    container = Container()
    register_async_chain(container, log, Scope.APP)
    with pytest.raises(BodyError):
        await failing_service(container, BodyError("the service failed"))
    assert log.closed() == DISPOSED


async def test_task_cancel_of_the_container_owner_disposes_app_resources_dependents_first() -> None:
    log = Log()
    container = Container()
    register_async_chain(container, log, Scope.APP)
    ready = anyio.Event()

    async def serve() -> None:
        async with container:
            await container.aget(Top)
            ready.set()
            await anyio.sleep_forever()

    task = asyncio.create_task(serve())
    await ready.wait()
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()
    assert log.closed() == DISPOSED


async def test_anyio_cancel_scope_around_the_container_disposes_app_resources_in_order() -> None:
    log = Log()
    container = Container()
    register_async_chain(container, log, Scope.APP)
    with anyio.CancelScope() as cancel_scope:
        async with container:
            await container.aget(Top)
            cancel_scope.cancel()
            await anyio.sleep_forever()
    assert cancel_scope.cancelled_caught
    assert log.closed() == DISPOSED


class Handler:
    def __init__(self, bottom: Bottom) -> None:
        self.bottom = bottom


async def test_container_exit_disposes_a_still_open_request_before_the_app_resources() -> None:
    log = Log()
    container = Container()
    container.bind(Log, log)

    @container.provide
    async def bottom() -> AsyncIterator[Bottom]:
        yield Bottom()
        log("close Bottom")

    @container.provide(scope=Scope.REQUEST)
    async def handler(b: Bottom) -> AsyncIterator[Handler]:
        yield Handler(b)
        log("close Handler")

    async with container:
        request = container.scope()
        await request.aget(Handler)
    assert log.closed() == ["Handler", "Bottom"]
    assert request.closed


async def test_request_resources_are_disposed_before_the_app_resources_they_use() -> None:
    log = Log()
    container = Container()
    container.bind(Log, log)

    @container.provide
    async def bottom() -> AsyncIterator[Bottom]:
        yield Bottom()
        log("close Bottom")

    @container.provide(scope=Scope.REQUEST)
    async def handler(b: Bottom) -> AsyncIterator[Handler]:
        yield Handler(b)
        log("close Handler")

    async with container:
        async with container.scope() as request:
            await request.aget(Handler)
        assert log.closed() == ["Handler"]
    assert log.closed() == ["Handler", "Bottom"]


async def test_nested_scope_exit_disposes_only_what_the_inner_scope_built() -> None:
    log = Log()
    container = Container()
    container.bind(Log, log)

    @container.provide(scope=Scope.REQUEST)
    async def bottom() -> AsyncIterator[Bottom]:
        yield Bottom()
        log("close Bottom")

    @container.provide(scope=Scope.REQUEST)
    async def handler(b: Bottom) -> AsyncIterator[Handler]:
        yield Handler(b)
        log("close Handler")

    async with container, container.scope() as outer:
        outer_bottom = await outer.aget(Bottom)
        async with outer.scope() as inner:
            assert (await inner.aget(Handler)).bottom is outer_bottom
        assert log.closed() == ["Handler"]
        assert await outer.aget(Bottom) is outer_bottom


# -- resource classes with only one of initialize()/dispose() --------------------------


@resource
class DisposeOnly:
    """``@resource`` accepts a class that defines only ``dispose()``."""

    def __init__(self, log: Log) -> None:
        self.log = log

    async def dispose(self) -> None:
        self.log("close DisposeOnly")


@resource
class SyncDisposeOnly:
    def __init__(self, log: Log) -> None:
        self.log = log

    def dispose(self) -> None:
        self.log("close SyncDisposeOnly")


async def test_resource_class_with_only_async_dispose_is_disposed_at_scope_exit() -> None:
    log = Log()
    container = Container()
    container.bind(Log, log)
    container.bind(DisposeOnly, scope=Scope.REQUEST)
    async with container:
        async with container.scope() as request:
            await request.aget(DisposeOnly)
        assert log.closed() == ["DisposeOnly"]


def test_resource_class_with_only_sync_dispose_is_disposed_at_scope_exit() -> None:
    log = Log()
    container = Container()
    container.bind(Log, log)
    container.bind(SyncDisposeOnly, scope=Scope.REQUEST)
    with container:
        with container.scope() as request:
            request.get(SyncDisposeOnly)
        assert log.closed() == ["SyncDisposeOnly"]
