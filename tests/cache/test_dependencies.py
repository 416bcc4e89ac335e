"""cached_dependency(ttl) and singleton_dependency: memoised providers for the container
and for FastAPI's Depends."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Iterator

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from tether import Container, Scope
from tether.cache import cached_dependency, singleton_dependency

pytestmark = pytest.mark.anyio


class Settings:
    def __init__(self, region: str = "eu") -> None:
        self.region = region


class Rates:
    def __init__(self, region: str, serial: int) -> None:
        self.region = region
        self.serial = serial


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def next(self) -> int:
        self.n += 1
        return self.n


# -- cached_dependency -------------------------------------------------------------------


async def test_resolutions_within_the_ttl_share_one_value() -> None:
    counter = Counter()
    container = Container()
    container.bind(Settings, Settings())

    @container.provide(scope=Scope.TRANSIENT)
    @cached_dependency(ttl=60)
    async def rates(settings: Settings) -> Rates:
        return Rates(settings.region, counter.next())

    async with container:
        first = await container.aget(Rates)
        second = await container.aget(Rates)

    assert first is second
    assert first.region == "eu"
    assert counter.n == 1


async def test_the_value_is_computed_again_after_the_ttl() -> None:
    counter = Counter()
    container = Container()
    container.bind(Settings, Settings())

    @container.provide(scope=Scope.TRANSIENT)
    @cached_dependency(ttl=0.1)
    def rates(settings: Settings) -> Rates:
        return Rates(settings.region, counter.next())

    with container:
        first = container.get(Rates)
        await asyncio.sleep(0.2)
        second = container.get(Rates)

    assert (first.serial, second.serial) == (1, 2)


async def test_concurrent_first_resolutions_compute_it_once() -> None:
    counter = Counter()
    release = asyncio.Event()

    @cached_dependency(ttl=60)
    async def rates() -> Rates:
        serial = counter.next()
        await release.wait()
        return Rates("eu", serial)

    calls = [asyncio.create_task(rates()) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*calls)

    assert counter.n == 1
    assert all(r is results[0] for r in results)


async def test_different_dependencies_get_their_own_values() -> None:
    counter = Counter()

    @cached_dependency(ttl=60)
    def rates(settings: Settings) -> Rates:
        return Rates(settings.region, counter.next())

    eu, us = Settings("eu"), Settings("us")

    assert rates(eu).region == "eu"
    assert rates(us).region == "us"
    assert rates(eu).serial == 1
    assert counter.n == 2


async def test_an_error_is_not_cached() -> None:
    counter = Counter()

    @cached_dependency(ttl=60)
    async def flaky() -> Rates:
        if counter.next() == 1:
            raise ConnectionError("first call fails")
        return Rates("eu", counter.n)

    with pytest.raises(ConnectionError):
        await flaky()
    assert (await flaky()).serial == 2


def test_generators_are_refused_because_their_teardown_could_not_run() -> None:
    def session() -> Iterator[Rates]:
        yield Rates("eu", 1)

    async def connection() -> AsyncIterator[Rates]:
        yield Rates("eu", 1)

    for provider in (session, connection):
        with pytest.raises(TypeError, match="the values it yields need their teardown"):
            cached_dependency(ttl=60)(provider)


def test_the_wrapper_keeps_the_providers_signature() -> None:
    def rates(settings: Settings, region: str = "eu") -> Rates:
        return Rates(region, 1)

    wrapped = cached_dependency(ttl=1)(rates)

    assert inspect.signature(wrapped) == inspect.signature(rates)
    assert wrapped.__annotations__ == rates.__annotations__


def test_a_ttl_that_is_not_positive_is_refused() -> None:
    with pytest.raises(ValueError, match="ttl must be a positive number"):
        cached_dependency(ttl=0)


# -- singleton_dependency ----------------------------------------------------------------


def test_a_singleton_dependency_is_computed_once_for_every_container() -> None:
    counter = Counter()

    @singleton_dependency
    def settings() -> Settings:
        counter.next()
        return Settings()

    containers = [Container(), Container()]
    for container in containers:
        container.provide(scope=Scope.TRANSIENT)(settings)

    values = []
    for container in containers:
        with container:
            values += [container.get(Settings), container.get(Settings)]

    assert all(v is values[0] for v in values)
    assert counter.n == 1


def test_a_singleton_dependency_works_behind_fastapis_depends() -> None:
    counter = Counter()

    @singleton_dependency
    async def settings() -> Settings:
        counter.next()
        return Settings("us")

    app = FastAPI()

    @app.get("/region")
    async def region(s: Settings = Depends(settings)) -> str:  # noqa: B008
        return s.region

    with TestClient(app) as client:
        replies = [client.get("/region").json() for _ in range(3)]

    assert replies == ["us"] * 3
    assert counter.n == 1
