"""Guarantee 1: a shared async resource is built exactly once when many tasks race
for it, and a cancelled first asker never leaves the others with a broken future."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import anyio.lowlevel
import pytest

from tether import ActiveScope, Container, Scope, resource
from tether.exceptions import ResourceInitError, TetherError

pytestmark = pytest.mark.anyio

N = 100


class Pool:
    pass


class Counter:
    """How often a factory ran; the factory suspends so that every asker overlaps it."""

    def __init__(self) -> None:
        self.calls = 0


@resource
class AsyncPool:
    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    async def initialize(self) -> None:
        self.counter.calls += 1
        await anyio.sleep(0.01)

    async def dispose(self) -> None:
        pass


def register_factory(container: Container, counter: Counter, scope: Scope) -> type[object]:
    container.bind(Counter, counter, scope=Scope.SINGLETON)

    @container.provide(scope=scope)
    async def pool() -> Pool:
        counter.calls += 1
        await anyio.sleep(0.01)
        return Pool()

    return Pool


def register_generator(container: Container, counter: Counter, scope: Scope) -> type[object]:
    container.bind(Counter, counter, scope=Scope.SINGLETON)

    @container.provide(scope=scope)
    async def pool() -> AsyncIterator[Pool]:
        counter.calls += 1
        await anyio.sleep(0.01)
        yield Pool()
        await anyio.lowlevel.checkpoint()

    return Pool


def register_resource(container: Container, counter: Counter, scope: Scope) -> type[object]:
    container.bind(Counter, counter, scope=Scope.SINGLETON)
    container.bind(AsyncPool, scope=scope)
    return AsyncPool


REGISTRATIONS: dict[str, Callable[[Container, Counter, Scope], type[object]]] = {
    "async factory": register_factory,
    "async generator": register_generator,
    "resource with async initialize": register_resource,
}
SHARED_SCOPES = [Scope.APP, Scope.SINGLETON]


async def ask_concurrently(ask: Callable[[], Awaitable[object]], n: int = N) -> list[object]:
    results: list[object] = []

    async def one() -> None:
        results.append(await ask())

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return results


@pytest.mark.parametrize("scope", SHARED_SCOPES, ids=lambda s: s.name)
@pytest.mark.parametrize("register", list(REGISTRATIONS.values()), ids=list(REGISTRATIONS))
async def test_shared_async_resource_is_built_once_for_100_concurrent_askers(
    register: Callable[[Container, Counter, Scope], type[object]], scope: Scope
) -> None:
    counter = Counter()
    container = Container()
    tp = register(container, counter, scope)
    async with container:
        await ask_concurrently(lambda: container.aget(tp))
    assert counter.calls == 1


@pytest.mark.parametrize("scope", SHARED_SCOPES, ids=lambda s: s.name)
@pytest.mark.parametrize("register", list(REGISTRATIONS.values()), ids=list(REGISTRATIONS))
async def test_100_concurrent_askers_all_get_the_same_instance(
    register: Callable[[Container, Counter, Scope], type[object]], scope: Scope
) -> None:
    container = Container()
    tp = register(container, Counter(), scope)
    async with container:
        results = await ask_concurrently(lambda: container.aget(tp))
        assert len(results) == N
        assert all(r is results[0] for r in results)
        assert isinstance(results[0], tp)
        assert await container.aget(tp) is results[0]


class Handler:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool


async def test_app_resource_is_built_once_when_100_request_scopes_need_it_at_once() -> None:
    counter = Counter()
    container = Container()
    register_factory(container, counter, Scope.APP)
    container.bind(Handler, scope=Scope.REQUEST)

    async def handle() -> Pool:
        async with container.scope() as request:
            return (await request.aget(Handler)).pool

    async with container:
        pools = await ask_concurrently(handle)
    assert counter.calls == 1
    assert all(p is pools[0] for p in pools)


async def test_session_resource_is_built_once_for_100_concurrent_askers_in_a_session() -> None:
    counter = Counter()
    container = Container()
    register_generator(container, counter, Scope.SESSION)
    async with container, container.scope(Scope.SESSION, session_id="s1") as session:
        results = await ask_concurrently(lambda: session.aget(Pool))
    assert counter.calls == 1
    assert all(r is results[0] for r in results)


async def test_request_resource_is_built_once_for_100_concurrent_askers_in_a_request() -> None:
    counter = Counter()
    container = Container()
    register_generator(container, counter, Scope.REQUEST)
    async with container, container.scope() as request:
        results = await ask_concurrently(lambda: request.aget(Pool))
    assert counter.calls == 1
    assert all(r is results[0] for r in results)


# -- a failed build under contention ---------------------------------------------


async def test_a_failed_build_runs_once_for_100_concurrent_askers() -> None:
    calls = 0
    container = Container()

    @container.provide
    async def pool() -> Pool:
        nonlocal calls
        calls += 1
        await anyio.sleep(0.01)
        raise ConnectionError("database is down")

    async def ask() -> object:
        try:
            return await container.aget(Pool)
        except ResourceInitError as error:
            return error

    async with container:
        await ask_concurrently(ask)
    assert calls == 1


async def test_a_failed_build_gives_every_concurrent_asker_a_resource_init_error() -> None:
    container = Container()

    @container.provide
    async def pool() -> Pool:
        await anyio.sleep(0.01)
        raise ConnectionError("database is down")

    async def ask() -> object:
        try:
            return await container.aget(Pool)
        except Exception as error:
            return error

    async with container:
        outcomes = await ask_concurrently(ask)
    assert len(outcomes) == N
    assert all(isinstance(o, ResourceInitError) for o in outcomes), {type(o) for o in outcomes}
    assert all(isinstance(o, ResourceInitError) and o.dependency == "Pool" for o in outcomes)


# -- the first asker cancelled while the others wait --------------------------------


class FirstBuildHangs:
    """A factory whose first run hangs until cancelled; later runs finish at once."""

    def __init__(self) -> None:
        self.calls = 0
        self.first_started = anyio.Event()

    def register(self, container: Container) -> None:
        @container.provide
        async def pool() -> Pool:
            self.calls += 1
            if self.calls == 1:
                self.first_started.set()
                await anyio.sleep_forever()
            await anyio.sleep(0.01)
            return Pool()


def assert_one_outcome(outcomes: list[object]) -> None:
    """Every waiter got the same instance, or every waiter got one clear tether error."""
    assert outcomes
    assert not any(isinstance(o, asyncio.InvalidStateError) for o in outcomes), outcomes
    if isinstance(outcomes[0], Pool):
        assert all(o is outcomes[0] for o in outcomes), {type(o) for o in outcomes}
    else:
        assert all(isinstance(o, TetherError) for o in outcomes), outcomes
        assert len({type(o) for o in outcomes}) == 1, outcomes


async def ask_recording(container: ActiveScope, outcomes: list[object]) -> None:
    try:
        outcomes.append(await container.aget(Pool))
    except Exception as error:
        outcomes.append(error)


async def test_cancelling_the_first_asker_with_task_cancel_leaves_the_others_one_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hangs = FirstBuildHangs()
    container = Container()
    hangs.register(container)
    outcomes: list[object] = []
    async with container:
        first = asyncio.create_task(ask_recording(container, []))
        await hangs.first_started.wait()
        others = [asyncio.create_task(ask_recording(container, outcomes)) for _ in range(N - 1)]
        await anyio.wait_all_tasks_blocked()
        first.cancel()
        await asyncio.wait([first, *others])
        assert [t for t in others if t.cancelled() or t.exception() is not None] == []
    assert len(outcomes) == N - 1
    assert_one_outcome(outcomes)
    assert "InvalidStateError" not in caplog.text


async def test_first_asker_cancelled_with_task_cancel_ends_cancelled() -> None:
    hangs = FirstBuildHangs()
    container = Container()
    hangs.register(container)
    async with container:
        first = asyncio.create_task(ask_recording(container, []))
        await hangs.first_started.wait()
        others = [asyncio.create_task(ask_recording(container, [])) for _ in range(3)]
        await anyio.wait_all_tasks_blocked()
        first.cancel()
        await asyncio.wait([first, *others])
    assert first.cancelled()


async def test_cancelling_the_first_asker_with_a_cancel_scope_leaves_the_others_one_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hangs = FirstBuildHangs()
    container = Container()
    hangs.register(container)
    outcomes: list[object] = []
    first_scope = anyio.CancelScope()

    async def first_asker() -> None:
        with first_scope:
            await container.aget(Pool)

    async with container, anyio.create_task_group() as tg:
        tg.start_soon(first_asker)
        await hangs.first_started.wait()
        for _ in range(N - 1):
            tg.start_soon(ask_recording, container, outcomes)
        await anyio.wait_all_tasks_blocked()
        first_scope.cancel()
    assert first_scope.cancelled_caught
    assert len(outcomes) == N - 1
    assert_one_outcome(outcomes)
    assert "InvalidStateError" not in caplog.text


async def test_the_instance_left_after_the_first_asker_was_cancelled_is_cached() -> None:
    hangs = FirstBuildHangs()
    container = Container()
    hangs.register(container)
    outcomes: list[object] = []
    async with container:
        first = asyncio.create_task(ask_recording(container, []))
        await hangs.first_started.wait()
        others = [asyncio.create_task(ask_recording(container, outcomes)) for _ in range(10)]
        await anyio.wait_all_tasks_blocked()
        first.cancel()
        await asyncio.wait([first, *others])
        assert isinstance(outcomes[0], Pool)
        assert await container.aget(Pool) is outcomes[0]
    assert hangs.calls == 2


async def test_cancelling_a_waiting_asker_does_not_disturb_the_build_or_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0
    started = anyio.Event()
    release = anyio.Event()
    container = Container()

    @container.provide
    async def pool() -> Pool:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return Pool()

    outcomes: list[object] = []
    async with container:
        builder = asyncio.create_task(ask_recording(container, outcomes))
        await started.wait()
        waiters = [asyncio.create_task(ask_recording(container, outcomes)) for _ in range(N - 1)]
        await anyio.wait_all_tasks_blocked()
        waiters[0].cancel()
        waiters[50].cancel()
        await anyio.wait_all_tasks_blocked()
        release.set()
        await asyncio.wait([builder, *waiters])
    assert waiters[0].cancelled()
    assert calls == 1
    assert len(outcomes) == N - 2
    assert all(o is outcomes[0] and isinstance(o, Pool) for o in outcomes)
    assert "InvalidStateError" not in caplog.text


async def test_cancelling_the_builder_and_some_waiters_at_once_leaves_the_rest_one_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hangs = FirstBuildHangs()
    container = Container()
    hangs.register(container)
    outcomes: list[object] = []
    async with container:
        first = asyncio.create_task(ask_recording(container, []))
        await hangs.first_started.wait()
        others = [asyncio.create_task(ask_recording(container, outcomes)) for _ in range(N - 1)]
        await anyio.wait_all_tasks_blocked()
        first.cancel()
        for task in others[:10]:
            task.cancel()
        await asyncio.wait([first, *others])
    assert len(outcomes) == N - 11
    assert_one_outcome(outcomes)
    assert "InvalidStateError" not in caplog.text


async def test_cancelling_every_asker_leaves_no_pending_build_behind() -> None:
    hangs = FirstBuildHangs()
    container = Container()
    hangs.register(container)
    async with container:
        with anyio.CancelScope() as cancel_scope:
            async with anyio.create_task_group() as tg:
                for _ in range(N):
                    tg.start_soon(ask_recording, container, [])
                await hangs.first_started.wait()
                await anyio.wait_all_tasks_blocked()
                cancel_scope.cancel()
        with anyio.fail_after(5):
            assert isinstance(await container.aget(Pool), Pool)
