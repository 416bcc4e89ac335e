"""tether, written the way its API contract shows."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

from benchmarks.cases import Once, ResolveAll, SyncCase
from benchmarks.model import A, B, Base, C, Config, D, Handler, resource_gen
from tether import Container, Scope

DIST = "tether"
HOW = {
    "s1": "`container.bind(Config, Config())`; `container.get(Config)`",
    "s2": "`bind(cls, scope=Scope.TRANSIENT)` for A, B, C, D; `container.get(A)`",
    "s3": "`provide(scope=Scope.REQUEST)(resource_gen)`, `bind(Handler, scope=Scope.REQUEST)`; "
    "`async with container.scope() as r: await r.aget(Handler)` inside `async with container`",
    "s1000": "`bind(Base)`, `bind(S{i})` (default APP scope); `container.get(S{i})`",
}


@contextmanager
def s1() -> Iterator[SyncCase]:
    container = Container()
    container.bind(Config, Config())
    container.get(Config)
    yield SyncCase("container.get(Config)", {"container": container, "Config": Config})


@contextmanager
def s2() -> Iterator[SyncCase]:
    container = Container()
    for cls in (A, B, C, D):
        container.bind(cls, scope=Scope.TRANSIENT)
    yield SyncCase("container.get(A)", {"container": container, "A": A})


@asynccontextmanager
async def s3() -> AsyncIterator[Once]:
    container = Container()
    container.bind(Config, Config())
    container.provide(scope=Scope.REQUEST)(resource_gen)
    container.bind(Handler, scope=Scope.REQUEST)

    async def once() -> Handler:
        async with container.scope() as request:
            return await request.aget(Handler)

    async with container:
        yield once


def s1000(classes: Sequence[type]) -> ResolveAll:
    container = Container()
    container.bind(Base)
    for cls in classes:
        container.bind(cls)
    get = container.get

    def resolve_all() -> list[object]:
        return [get(cls) for cls in classes]

    return resolve_all
