"""Guarantee 4: every finalizer runs even if one raises ``Exception`` or
``CancelledError``; the errors come back as one ``TeardownError`` (an ExceptionGroup)
whose first entry is the body's own error, each tagged with its resource; finalizers
are shielded from the closing task's cancellation, and a hung one is abandoned after
``dispose_timeout``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import anyio
import anyio.lowlevel
import pytest

from tether import ActiveScope, Container, Scope, resource
from tether.exceptions import DisposeTimeout, TeardownError

from .helpers import Log, Stopwatch

pytestmark = pytest.mark.anyio

TIMEOUT = 0.2
BOUND = TIMEOUT + 1.0  # loose: a hung finalizer must not hold the close much past its timeout


class First:
    pass


class Second:
    pass


class Third:
    pass


class BodyError(Exception):
    pass


def register(
    container: Container,
    log: Log,
    *,
    failing: dict[str, BaseException] | None = None,
    scope: Scope = Scope.REQUEST,
) -> None:
    """First, Second, Third: async generators that log their teardown, then raise the
    error ``failing`` gives for their name, if any."""
    failing = failing or {}

    def teardown(name: str) -> None:
        log(f"close {name}")
        error = failing.get(name)
        if error is not None:
            raise error

    @container.provide(scope=scope)
    async def first() -> AsyncIterator[First]:
        try:
            yield First()
        finally:
            teardown("First")

    @container.provide(scope=scope)
    async def second() -> AsyncIterator[Second]:
        try:
            yield Second()
        finally:
            await anyio.lowlevel.checkpoint()
            teardown("Second")

    @container.provide(scope=scope)
    async def third() -> AsyncIterator[Third]:
        try:
            yield Third()
        finally:
            teardown("Third")


async def build_all(scope: ActiveScope) -> None:
    await scope.aget(First)
    await scope.aget(Second)
    await scope.aget(Third)


async def run_request(container: Container, raising: Exception | None = None) -> None:
    """A REQUEST scope that builds First, Second and Third, then raises ``raising``."""
    async with container.scope() as request:
        await build_all(request)
        if raising is not None:
            raise raising


async def serve(container: Container, raising: Exception | None = None) -> None:
    """The container's life: build First, Second and Third as APP, then raise ``raising``."""
    async with container:
        await build_all(container)
        if raising is not None:
            raise raising


# -- every finalizer runs, errors come back together ---------------------------------


async def test_every_finalizer_runs_when_one_raises() -> None:
    log = Log()
    container = Container()
    register(container, log, failing={"Second": RuntimeError("close failed")})
    async with container:
        with pytest.raises(TeardownError):
            await run_request(container)
        assert log.closed() == ["Third", "Second", "First"]


async def test_a_finalizer_error_comes_back_as_a_teardown_error_naming_its_resource() -> None:
    error = RuntimeError("close failed")
    container = Container()
    register(container, Log(), failing={"Second": error})
    async with container:
        with pytest.raises(TeardownError) as info:
            await run_request(container)
    assert info.value.exceptions == (error,)
    assert info.value.resources == ("Second",)


async def test_teardown_error_is_an_exception_group() -> None:
    container = Container()
    register(container, Log(), failing={"Second": RuntimeError("close failed")})
    caught: list[BaseException] = []
    async with container:
        try:
            await run_request(container)
        except* RuntimeError as group:
            caught.extend(group.exceptions)
    assert [str(e) for e in caught] == ["close failed"]


async def test_a_finalizer_error_is_tagged_with_its_resource_in_a_note() -> None:
    error = RuntimeError("close failed")
    container = Container()
    register(container, Log(), failing={"Second": error})
    async with container:
        with pytest.raises(TeardownError):
            await run_request(container)
    assert any("Second" in note for note in getattr(error, "__notes__", []))


async def test_several_failing_finalizers_are_all_reported_newest_first() -> None:
    second, third = RuntimeError("second failed"), ValueError("third failed")
    container = Container()
    register(container, Log(), failing={"Second": second, "Third": third})
    async with container:
        with pytest.raises(TeardownError) as info:
            await run_request(container)
    assert info.value.exceptions == (third, second)
    assert info.value.resources == ("Third", "Second")


async def test_the_body_error_is_the_first_entry_of_the_teardown_error() -> None:
    body = BodyError("the handler failed")
    finalizer = RuntimeError("close failed")
    container = Container()
    register(container, Log(), failing={"Second": finalizer})
    async with container:
        with pytest.raises(TeardownError) as info:
            await run_request(container, raising=body)
    assert info.value.exceptions == (body, finalizer)
    assert info.value.resources == (None, "Second")


async def test_every_finalizer_runs_when_the_body_and_a_finalizer_both_raise() -> None:
    log = Log()
    container = Container()
    register(container, log, failing={"Third": RuntimeError("close failed")})
    async with container:
        with pytest.raises(TeardownError):
            await run_request(container, raising=BodyError("the handler failed"))
        assert log.closed() == ["Third", "Second", "First"]


async def test_every_finalizer_runs_when_one_raises_cancelled_error() -> None:
    log = Log()
    container = Container()
    register(container, log, failing={"Second": asyncio.CancelledError()})
    async with container:
        with pytest.raises((asyncio.CancelledError, BaseExceptionGroup)):
            await run_request(container)
        assert log.closed() == ["Third", "Second", "First"]


async def test_every_finalizer_runs_when_a_first_one_raises_cancelled_error() -> None:
    log = Log()
    container = Container()
    register(container, log, failing={"Third": asyncio.CancelledError()})
    async with container:
        with pytest.raises((asyncio.CancelledError, BaseExceptionGroup)):
            await run_request(container)
        assert log.closed() == ["Third", "Second", "First"]


async def test_other_finalizer_errors_come_back_in_a_group_when_one_raises_cancelled_error() -> (
    None
):
    error = RuntimeError("close failed")
    container = Container()
    register(container, Log(), failing={"Third": asyncio.CancelledError(), "First": error})
    async with container:
        with pytest.raises((asyncio.CancelledError, BaseExceptionGroup)) as info:
            await run_request(container)
    assert isinstance(info.value, BaseExceptionGroup), repr(info.value)
    assert error in info.value.exceptions


async def test_a_finalizer_s_own_cancelled_error_comes_back_in_the_group_naming_it() -> None:
    cancelled = asyncio.CancelledError()
    container = Container()
    register(container, Log(), failing={"Second": cancelled})
    async with container:
        with pytest.raises((asyncio.CancelledError, BaseExceptionGroup)) as info:
            await run_request(container)
    assert isinstance(info.value, BaseExceptionGroup), repr(info.value)
    assert info.value.exceptions == (cancelled,)
    assert getattr(info.value, "resources", None) == ("Second",)


async def test_a_finalizer_s_own_cancelled_error_does_not_cancel_the_closing_task() -> None:
    container = Container()
    register(container, Log(), failing={"Second": asyncio.CancelledError()})
    async with container:
        with pytest.raises((asyncio.CancelledError, BaseExceptionGroup)):
            await run_request(container)
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0
        await anyio.lowlevel.checkpoint()  # a task cancelled by mistake would raise here


@resource
class FailingDispose:
    def __init__(self, log: Log) -> None:
        self.log = log

    def initialize(self) -> None:
        pass

    def dispose(self) -> None:
        self.log("close FailingDispose")
        raise RuntimeError("dispose failed")


def test_sync_scope_finalizer_error_comes_back_as_a_teardown_error() -> None:
    log = Log()
    container = Container()
    container.bind(Log, log)
    container.bind(FailingDispose, scope=Scope.REQUEST)

    @container.provide(scope=Scope.REQUEST)
    def first() -> Iterator[First]:
        yield First()
        log("close First")

    def run_sync_request() -> None:
        with container.scope() as request:
            request.get(First)
            request.get(FailingDispose)

    with container:
        with pytest.raises(TeardownError) as info:
            run_sync_request()
        assert info.value.resources == ("FailingDispose",)
        assert log.closed() == ["FailingDispose", "First"]


async def test_container_close_runs_every_app_finalizer_and_reports_the_failures() -> None:
    log = Log()
    container = Container()
    register(container, log, failing={"Second": RuntimeError("close failed")}, scope=Scope.APP)
    with pytest.raises(TeardownError) as info:
        await serve(container)
    assert log.closed() == ["Third", "Second", "First"]
    assert info.value.resources == ("Second",)


async def test_container_close_puts_the_body_error_first() -> None:
    body = BodyError("the service failed")
    container = Container()
    register(container, Log(), failing={"Second": RuntimeError("close failed")}, scope=Scope.APP)
    with pytest.raises(TeardownError) as info:
        await serve(container, raising=body)
    assert info.value.exceptions[0] is body
    assert info.value.resources[0] is None


# -- shielded from the closing task's cancellation ------------------------------------


class SlowTeardown:
    """A REQUEST generator whose teardown waits for ``release``; First is built before it."""

    def __init__(self, container: Container, log: Log) -> None:
        self.entered = anyio.Event()
        self.release = anyio.Event()

        @container.provide(scope=Scope.REQUEST)
        async def first() -> AsyncIterator[First]:
            yield First()
            log("close First")

        @container.provide(scope=Scope.REQUEST)
        async def second() -> AsyncIterator[Second]:
            yield Second()
            self.entered.set()
            await self.release.wait()
            log("close Second")


async def handle(container: Container) -> None:
    async with container.scope() as request:
        await request.aget(First)
        await request.aget(Second)


async def test_task_cancel_mid_finalizer_lets_every_finalizer_finish() -> None:
    log = Log()
    container = Container()
    slow = SlowTeardown(container, log)
    async with container:
        task = asyncio.create_task(handle(container))
        await slow.entered.wait()
        task.cancel()
        await anyio.sleep(0.05)
        slow.release.set()
        await asyncio.wait([task])
        assert log.closed() == ["Second", "First"]


async def test_task_cancel_mid_finalizer_still_ends_the_task_cancelled() -> None:
    log = Log()
    container = Container()
    slow = SlowTeardown(container, log)
    async with container:
        task = asyncio.create_task(handle(container))
        await slow.entered.wait()
        task.cancel()
        await anyio.sleep(0.05)
        slow.release.set()
        await asyncio.wait([task])
    assert task.cancelled()


async def test_anyio_cancel_mid_finalizer_lets_every_finalizer_finish() -> None:
    log = Log()
    container = Container()
    slow = SlowTeardown(container, log)
    cancel_scope = anyio.CancelScope()

    async def cancellable() -> None:
        with cancel_scope:
            await handle(container)

    async with container:
        async with anyio.create_task_group() as tg:
            tg.start_soon(cancellable)
            await slow.entered.wait()
            cancel_scope.cancel()
            await anyio.sleep(0.05)
            slow.release.set()
        assert log.closed() == ["Second", "First"]


# -- a hung finalizer is abandoned after dispose_timeout --------------------------------


@resource
class Hung:
    async def initialize(self) -> None:
        pass

    async def dispose(self) -> None:
        await anyio.sleep_forever()


@resource
class AlsoHung:
    async def initialize(self) -> None:
        pass

    async def dispose(self) -> None:
        await anyio.sleep_forever()


def register_hung(container: Container, log: Log, scope: Scope) -> None:
    @container.provide(scope=scope)
    async def first() -> AsyncIterator[First]:
        try:
            yield First()
        finally:
            log("close First")

    container.bind(Hung, scope=scope)


async def resolve_in_request(container: Container, *types: type[object]) -> None:
    async with container.scope() as request:
        for tp in types:
            await request.aget(tp)


async def resolve_in_app(container: Container, *types: type[object]) -> None:
    async with container:
        for tp in types:
            await container.aget(tp)


async def close_with_hung(container: Container) -> TeardownError:
    async with container:
        with pytest.raises(TeardownError) as info:
            await resolve_in_request(container, First, Hung)
    return info.value


async def test_hung_dispose_is_abandoned_within_the_dispose_timeout() -> None:
    container = Container(dispose_timeout=TIMEOUT)
    register_hung(container, Log(), Scope.REQUEST)
    with Stopwatch() as watch:
        await close_with_hung(container)
    assert watch.seconds < BOUND


async def test_hung_dispose_is_reported_as_dispose_timeout_naming_the_resource() -> None:
    container = Container(dispose_timeout=TIMEOUT)
    register_hung(container, Log(), Scope.REQUEST)
    error = await close_with_hung(container)
    assert error.resources == ("Hung",)
    (timeout,) = error.exceptions
    assert isinstance(timeout, DisposeTimeout)
    assert timeout.dependency == "Hung"
    assert timeout.timeout == TIMEOUT
    assert "Hung" in str(timeout)


async def test_finalizers_after_a_hung_one_still_run() -> None:
    log = Log()
    container = Container(dispose_timeout=TIMEOUT)
    register_hung(container, log, Scope.REQUEST)
    await close_with_hung(container)
    assert log.closed() == ["First"]


async def test_each_hung_finalizer_gets_its_own_timeout_and_all_are_reported() -> None:
    container = Container(dispose_timeout=TIMEOUT)
    container.bind(Hung, scope=Scope.REQUEST)
    container.bind(AlsoHung, scope=Scope.REQUEST)
    async with container:
        with Stopwatch() as watch, pytest.raises(TeardownError) as info:
            await resolve_in_request(container, Hung, AlsoHung)
    assert watch.seconds < 2 * TIMEOUT + 1.0
    assert info.value.resources == ("AlsoHung", "Hung")
    assert all(isinstance(e, DisposeTimeout) for e in info.value.exceptions)


async def test_hung_async_generator_teardown_is_abandoned_and_reported() -> None:
    container = Container(dispose_timeout=TIMEOUT)

    @container.provide(scope=Scope.REQUEST)
    async def first() -> AsyncIterator[First]:
        yield First()
        await anyio.sleep_forever()

    async with container:
        with Stopwatch() as watch, pytest.raises(TeardownError) as info:
            await resolve_in_request(container, First)
    assert watch.seconds < BOUND
    assert info.value.resources == ("First",)
    assert isinstance(info.value.exceptions[0], DisposeTimeout)


async def test_container_close_abandons_a_hung_app_dispose_within_the_bound() -> None:
    log = Log()
    container = Container(dispose_timeout=TIMEOUT)
    register_hung(container, log, Scope.APP)
    with Stopwatch() as watch, pytest.raises(TeardownError) as info:
        await resolve_in_app(container, First, Hung)
    assert watch.seconds < BOUND
    assert info.value.resources == ("Hung",)
    assert isinstance(info.value.exceptions[0], DisposeTimeout)
    assert log.closed() == ["First"]


async def test_cancelled_close_with_a_hung_finalizer_still_finishes_within_the_bound() -> None:
    log = Log()
    container = Container(dispose_timeout=TIMEOUT)
    register_hung(container, log, Scope.REQUEST)
    ready = anyio.Event()

    async def handle_hung() -> None:
        async with container.scope() as request:
            await request.aget(First)
            await request.aget(Hung)
            ready.set()
            await anyio.sleep_forever()

    async with container:
        task = asyncio.create_task(handle_hung())
        await ready.wait()
        with Stopwatch() as watch:
            task.cancel()
            await asyncio.wait([task])
    assert watch.seconds < BOUND
    assert task.cancelled()
    assert log.closed() == ["First"]
