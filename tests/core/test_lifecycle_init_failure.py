"""Guarantee 2: a failed initialization is not cached, names the resource and the
chain, and the half-built dependencies made for it are disposed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tether import Container, Scope, resource
from tether.exceptions import ResourceInitError

from .helpers import Log

pytestmark = pytest.mark.anyio


class Pool:
    pass


class Service:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool


class Broken:
    pass


class Conn:
    pass


class Cached:
    pass


class Handler:
    def __init__(self, conn: Conn, broken: Broken) -> None:
        self.conn = conn
        self.broken = broken


class CachedHandler:
    def __init__(self, cached: Cached, broken: Broken) -> None:
        self.cached = cached
        self.broken = broken


class Flaky:
    """Fails the first ``failures`` times it is asked, then succeeds."""

    def __init__(self, failures: int = 1) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"attempt {self.calls} failed")


def register_flaky_pool(container: Container, flaky: Flaky) -> None:
    @container.provide
    async def pool() -> Pool:
        flaky()
        return Pool()


# -- the error ------------------------------------------------------------------


async def test_failed_build_raises_resource_init_error_naming_the_resource() -> None:
    container = Container()
    register_flaky_pool(container, Flaky())
    async with container:
        with pytest.raises(ResourceInitError) as info:
            await container.aget(Pool)
    assert info.value.dependency == "Pool"
    assert "Pool" in str(info.value)


async def test_resource_init_error_cause_is_the_original_error() -> None:
    original = ConnectionError("database is down")
    container = Container()

    @container.provide
    async def pool() -> Pool:
        raise original

    async with container:
        with pytest.raises(ResourceInitError) as info:
            await container.aget(Pool)
    assert info.value.__cause__ is original
    assert info.value.error is original


async def test_resource_init_error_message_quotes_the_original_error() -> None:
    container = Container()

    @container.provide
    async def pool() -> Pool:
        raise ConnectionError("database is down")

    async with container:
        with pytest.raises(ResourceInitError) as info:
            await container.aget(Pool)
    assert "ConnectionError: database is down" in str(info.value)


async def test_resource_init_error_chain_runs_from_the_requested_to_the_failed() -> None:
    container = Container()
    register_flaky_pool(container, Flaky())
    container.bind(Service)
    async with container:
        with pytest.raises(ResourceInitError) as info:
            await container.aget(Service)
    assert info.value.dependency == "Pool"
    assert info.value.chain == (("Service", Scope.APP), ("Pool", Scope.APP))


async def test_resource_init_error_message_draws_the_chain() -> None:
    container = Container()
    register_flaky_pool(container, Flaky())
    container.bind(Service, scope=Scope.REQUEST)
    async with container, container.scope() as request:
        with pytest.raises(ResourceInitError) as info:
            await request.aget(Service)
    assert "Service (REQUEST) -> Pool (APP)" in str(info.value)


def test_sync_failed_build_raises_resource_init_error_with_the_chain() -> None:
    container = Container()

    @container.provide
    def pool() -> Pool:
        raise ConnectionError("database is down")

    container.bind(Service)
    with container, pytest.raises(ResourceInitError) as info:
        container.get(Service)
    assert info.value.chain == (("Service", Scope.APP), ("Pool", Scope.APP))
    assert isinstance(info.value.__cause__, ConnectionError)


# -- not cached -----------------------------------------------------------------


async def test_failed_async_build_is_retried_on_the_next_access() -> None:
    flaky = Flaky(failures=1)
    container = Container()
    register_flaky_pool(container, flaky)
    async with container:
        with pytest.raises(ResourceInitError):
            await container.aget(Pool)
        pool = await container.aget(Pool)
        assert isinstance(pool, Pool)
        assert await container.aget(Pool) is pool
    assert flaky.calls == 2


async def test_failed_dependency_is_retried_when_its_dependent_is_asked_again() -> None:
    flaky = Flaky(failures=2)
    container = Container()
    register_flaky_pool(container, flaky)
    container.bind(Service)
    async with container:
        for _ in range(2):
            with pytest.raises(ResourceInitError):
                await container.aget(Service)
        service = await container.aget(Service)
        assert service.pool is await container.aget(Pool)
    assert flaky.calls == 3


def test_failed_sync_build_is_retried_on_the_next_access() -> None:
    flaky = Flaky(failures=1)
    container = Container()

    @container.provide
    def pool() -> Pool:
        flaky()
        return Pool()

    with container:
        with pytest.raises(ResourceInitError):
            container.get(Pool)
        assert isinstance(container.get(Pool), Pool)
    assert flaky.calls == 2


@resource
class Database:
    flaky: Flaky

    async def initialize(self) -> None:
        self.flaky()

    async def dispose(self) -> None:
        pass


async def test_failed_async_initialize_is_retried_on_the_next_access() -> None:
    flaky = Flaky(failures=1)

    @resource
    class FlakyDatabase(Database):
        pass

    FlakyDatabase.flaky = flaky
    container = Container()
    container.bind(Database, FlakyDatabase)
    async with container:
        with pytest.raises(ResourceInitError) as info:
            await container.aget(Database)
        assert info.value.dependency == "Database"
        assert isinstance(await container.aget(Database), FlakyDatabase)
    assert flaky.calls == 2


async def test_failed_async_generator_setup_is_retried_on_the_next_access() -> None:
    flaky = Flaky(failures=1)
    container = Container()

    @container.provide(scope=Scope.REQUEST)
    async def pool() -> AsyncIterator[Pool]:
        flaky()
        yield Pool()

    async with container, container.scope() as request:
        with pytest.raises(ResourceInitError):
            await request.aget(Pool)
        assert isinstance(await request.aget(Pool), Pool)


# -- half-built dependencies ----------------------------------------------------


def register_broken(container: Container, scope: Scope = Scope.TRANSIENT) -> None:
    @container.provide(scope=scope)
    def broken() -> Broken:
        raise ConnectionError("broken")


def register_transient_async_conn(container: Container, log: Log) -> None:
    @container.provide(scope=Scope.TRANSIENT)
    async def conn() -> AsyncIterator[Conn]:
        log("open Conn")
        try:
            yield Conn()
        finally:
            log("close Conn")


def register_transient_sync_conn(container: Container, log: Log) -> None:
    @container.provide(scope=Scope.TRANSIENT)
    def conn() -> Iterator[Conn]:
        log("open Conn")
        try:
            yield Conn()
        finally:
            log("close Conn")


def register_cached(container: Container, log: Log, scope: Scope) -> None:
    @container.provide(scope=scope)
    async def cached() -> AsyncIterator[Cached]:
        log("open Cached")
        try:
            yield Cached()
        finally:
            log("close Cached")


async def test_half_built_transient_async_generator_is_disposed_when_its_dependent_fails() -> None:
    log = Log()
    container = Container()
    register_transient_async_conn(container, log)
    register_broken(container)
    container.bind(Handler, scope=Scope.REQUEST)
    async with container, container.scope() as request:
        with pytest.raises(ResourceInitError):
            await request.aget(Handler)
        assert log.events == ["open Conn", "close Conn"]


async def test_half_built_transient_is_not_disposed_again_when_the_scope_closes() -> None:
    log = Log()
    container = Container()
    register_transient_async_conn(container, log)
    register_broken(container)
    container.bind(Handler, scope=Scope.REQUEST)
    async with container:
        async with container.scope() as request:
            with pytest.raises(ResourceInitError):
                await request.aget(Handler)
        assert log.events == ["open Conn", "close Conn"]


def test_half_built_transient_sync_generator_is_disposed_when_its_dependent_fails() -> None:
    log = Log()
    container = Container()
    register_transient_sync_conn(container, log)
    register_broken(container)
    container.bind(Handler, scope=Scope.REQUEST)
    with container, container.scope() as request:
        with pytest.raises(ResourceInitError):
            request.get(Handler)
        assert log.events == ["open Conn", "close Conn"]


async def test_half_built_transient_of_an_app_resource_is_disposed_when_it_fails() -> None:
    log = Log()
    container = Container()
    register_transient_async_conn(container, log)
    register_broken(container)
    container.bind(Handler)
    async with container:
        with pytest.raises(ResourceInitError):
            await container.aget(Handler)
        assert log.events == ["open Conn", "close Conn"]


async def test_failing_teardown_of_a_half_built_dependency_does_not_hide_the_build_error() -> None:
    container = Container()

    @container.provide(scope=Scope.TRANSIENT)
    async def conn() -> AsyncIterator[Conn]:
        yield Conn()
        raise RuntimeError("teardown failed too")

    register_broken(container)
    container.bind(Handler, scope=Scope.REQUEST)
    async with container, container.scope() as request:
        with pytest.raises(ResourceInitError) as info:
            await request.aget(Handler)
    assert info.value.dependency == "Broken"


async def test_cached_request_dependency_built_for_a_failed_build_is_not_disposed_early() -> None:
    log = Log()
    container = Container()
    register_cached(container, log, Scope.REQUEST)
    register_broken(container)
    container.bind(CachedHandler, scope=Scope.REQUEST)
    async with container, container.scope() as request:
        with pytest.raises(ResourceInitError):
            await request.aget(CachedHandler)
        assert log.events == ["open Cached"]


async def test_cached_request_dependency_built_for_a_failed_build_stays_in_its_scope() -> None:
    log = Log()
    container = Container()
    register_cached(container, log, Scope.REQUEST)
    register_broken(container)
    container.bind(CachedHandler, scope=Scope.REQUEST)
    async with container, container.scope() as request:
        with pytest.raises(ResourceInitError):
            await request.aget(CachedHandler)
        first = await request.aget(Cached)
        assert await request.aget(Cached) is first
        assert log.events == ["open Cached"]


async def test_cached_request_dependency_built_for_a_failed_build_is_disposed_with_its_scope() -> (
    None
):
    log = Log()
    container = Container()
    register_cached(container, log, Scope.REQUEST)
    register_broken(container)
    container.bind(CachedHandler, scope=Scope.REQUEST)
    async with container:
        async with container.scope() as request:
            with pytest.raises(ResourceInitError):
                await request.aget(CachedHandler)
        assert log.events == ["open Cached", "close Cached"]


async def test_cached_app_dependency_built_for_a_failed_build_is_not_disposed_early() -> None:
    log = Log()
    container = Container()
    register_cached(container, log, Scope.APP)
    register_broken(container, Scope.APP)
    container.bind(CachedHandler)
    async with container:
        with pytest.raises(ResourceInitError):
            await container.aget(CachedHandler)
        assert log.events == ["open Cached"]
        assert isinstance(await container.aget(Cached), Cached)
        assert log.events == ["open Cached"]
    assert log.events == ["open Cached", "close Cached"]
