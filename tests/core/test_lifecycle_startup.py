"""Guarantee 5: start-up with ``eager`` resources; if the third of five fails, the
first two are disposed in reverse order and ``StartupError`` names the third."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import anyio
import anyio.lowlevel
import pytest

from tether import Container, resource
from tether.exceptions import StartupError

from .helpers import Log, Stopwatch, causes

pytestmark = pytest.mark.anyio

TIMEOUT = 0.2


class E1:
    pass


class E2:
    pass


class E3:
    pass


class E4:
    pass


class E5:
    pass


EAGER: list[type[object]] = [E1, E2, E3, E4, E5]


class StartFailed(Exception):
    pass


def refuse() -> None:
    raise StartFailed("E3 cannot start")


def register_eager(container: Container, log: Log, tp: type[object]) -> None:
    """An eager APP async generator that logs its start and its teardown."""
    name = tp.__name__

    async def start() -> AsyncIterator[object]:
        log(f"open {name}")
        try:
            yield tp()
        finally:
            log(f"close {name}")

    container.provide(eager=True, provides=tp)(start)


def register_sync_eager(container: Container, log: Log, tp: type[object]) -> None:
    name = tp.__name__

    def start() -> Iterator[object]:
        log(f"open {name}")
        try:
            yield tp()
        finally:
            log(f"close {name}")

    container.provide(eager=True, provides=tp)(start)


# Ways the third eager registration can fail.


def failing_async_factory(container: Container, log: Log) -> None:
    async def start() -> object:
        log("open E3")
        await anyio.lowlevel.checkpoint()
        raise StartFailed("E3 cannot start")

    container.provide(eager=True, provides=E3)(start)


def failing_async_generator(container: Container, log: Log) -> None:
    async def start() -> AsyncIterator[object]:
        log("open E3")
        await anyio.lowlevel.checkpoint()
        refuse()
        yield E3()

    container.provide(eager=True, provides=E3)(start)


@resource
class FailingInit(E3):
    async def initialize(self) -> None:
        raise StartFailed("E3 cannot start")

    async def dispose(self) -> None:
        pass


def failing_initialize(container: Container, log: Log) -> None:
    log("open E3")
    container.bind(E3, FailingInit, eager=True)


def failing_sync_factory(container: Container, log: Log) -> None:
    def start() -> object:
        log("open E3")
        raise StartFailed("E3 cannot start")

    container.provide(eager=True, provides=E3)(start)


FAILURES: dict[str, Callable[[Container, Log], None]] = {
    "async factory": failing_async_factory,
    "async generator": failing_async_generator,
    "async initialize": failing_initialize,
    "sync factory": failing_sync_factory,
}


def five_with_a_failing_third(
    log: Log, fail: Callable[[Container, Log], None], startup_timeout: float = 60.0
) -> Container:
    container = Container(startup_timeout=startup_timeout)
    for tp in EAGER:
        if tp is E3:
            fail(container, log)
        else:
            register_eager(container, log, tp)
    return container


async def start_expecting_failure(container: Container) -> StartupError:
    with pytest.raises(StartupError) as info:
        async with container:
            pytest.fail("the container started although E3 failed")
    return info.value


# -- success ------------------------------------------------------------------------


async def test_eager_resources_start_in_registration_order_on_entry() -> None:
    log = Log()
    container = Container()
    for tp in EAGER:
        register_eager(container, log, tp)
    async with container:
        assert log.opened() == ["E1", "E2", "E3", "E4", "E5"]


async def test_eager_resources_are_disposed_in_reverse_order_on_exit() -> None:
    log = Log()
    container = Container()
    for tp in EAGER:
        register_eager(container, log, tp)
    async with container:
        pass
    assert log.closed() == ["E5", "E4", "E3", "E2", "E1"]


async def test_eager_resource_is_served_from_the_start_up_build() -> None:
    log = Log()
    container = Container()
    register_eager(container, log, E1)
    async with container:
        first = await container.aget(E1)
        assert container.get(E1) is first
    assert log.opened() == ["E1"]


# -- the third of five fails ----------------------------------------------------------


@pytest.mark.parametrize("fail", list(FAILURES.values()), ids=list(FAILURES))
async def test_startup_failure_disposes_the_started_resources_in_reverse_order(
    fail: Callable[[Container, Log], None],
) -> None:
    log = Log()
    await start_expecting_failure(five_with_a_failing_third(log, fail))
    assert log.closed() == ["E2", "E1"]


@pytest.mark.parametrize("fail", list(FAILURES.values()), ids=list(FAILURES))
async def test_startup_failure_names_the_failed_resource(
    fail: Callable[[Container, Log], None],
) -> None:
    error = await start_expecting_failure(five_with_a_failing_third(Log(), fail))
    assert error.dependency == "E3"
    assert "E3" in str(error)


async def test_startup_failure_keeps_the_original_error_in_its_cause_chain() -> None:
    error = await start_expecting_failure(five_with_a_failing_third(Log(), failing_async_factory))
    assert any(isinstance(e, StartFailed) for e in causes(error)), causes(error)


async def test_startup_failure_starts_nothing_after_the_failed_resource() -> None:
    log = Log()
    await start_expecting_failure(five_with_a_failing_third(log, failing_async_factory))
    assert log.opened() == ["E1", "E2", "E3"]


def test_sync_startup_failure_disposes_the_started_resources_in_reverse_order() -> None:
    log = Log()
    container = Container()
    for tp in EAGER:
        if tp is E3:
            failing_sync_factory(container, log)
        else:
            register_sync_eager(container, log, tp)
    with pytest.raises(StartupError) as info, container:
        pytest.fail("the container started although E3 failed")
    assert info.value.dependency == "E3"
    assert log.closed() == ["E2", "E1"]


# -- startup_timeout --------------------------------------------------------------------


def hanging_third(container: Container, log: Log) -> None:
    async def start() -> object:
        log("open E3")
        await anyio.sleep_forever()
        return E3()

    container.provide(eager=True, provides=E3)(start)


async def test_startup_timeout_names_the_resource_that_hung() -> None:
    container = five_with_a_failing_third(Log(), hanging_third, startup_timeout=TIMEOUT)
    error = await start_expecting_failure(container)
    assert error.dependency == "E3"
    assert isinstance(error.error, TimeoutError)


async def test_startup_timeout_ends_start_up_within_the_bound() -> None:
    container = five_with_a_failing_third(Log(), hanging_third, startup_timeout=TIMEOUT)
    with Stopwatch() as watch:
        await start_expecting_failure(container)
    assert watch.seconds < TIMEOUT + 1.0


async def test_startup_timeout_disposes_the_started_resources_in_reverse_order() -> None:
    log = Log()
    container = five_with_a_failing_third(log, hanging_third, startup_timeout=TIMEOUT)
    await start_expecting_failure(container)
    assert log.closed() == ["E2", "E1"]
