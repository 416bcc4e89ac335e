"""aioinject: providers registered on a container, resolution through a context."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

import aioinject

from benchmarks.cases import Once, ResolveAll, SyncCase
from benchmarks.model import A, B, Base, C, Config, D, Handler, Resource, resource_gen

DIST = "aioinject"
HOW = {
    "s1": "`Singleton(Config)` on a `SyncContainer`; `ctx.resolve(Config)` in one context "
    "entered outside the loop",
    "s2": "`Transient(cls)`; `ctx.resolve(A)` in one context entered outside the loop",
    "s3": "`Scoped(asynccontextmanager(resource_gen), Resource)`, `Scoped(Handler)`; "
    "`async with container.context() as ctx: await ctx.resolve(Handler)`",
    "s1000": "`Singleton(S{i})` on a `SyncContainer`; `ctx.resolve(S{i})` in one context",
}


@contextmanager
def s1() -> Iterator[SyncCase]:
    container = aioinject.SyncContainer()
    container.register(aioinject.Singleton(Config))
    with container, container.context() as ctx:
        ctx.resolve(Config)
        yield SyncCase("ctx.resolve(Config)", {"ctx": ctx, "Config": Config})


@contextmanager
def s2() -> Iterator[SyncCase]:
    container = aioinject.SyncContainer()
    container.register(*(aioinject.Transient(cls) for cls in (A, B, C, D)))
    with container, container.context() as ctx:
        yield SyncCase("ctx.resolve(A)", {"ctx": ctx, "A": A})


@asynccontextmanager
async def s3() -> AsyncIterator[Once]:
    container = aioinject.Container()
    container.register(
        aioinject.Singleton(Config),
        aioinject.Scoped(asynccontextmanager(resource_gen), Resource),
        aioinject.Scoped(Handler),
    )

    async def once() -> Handler:
        async with container.context() as ctx:
            return await ctx.resolve(Handler)

    async with container:
        yield once


def s1000(classes: Sequence[type]) -> ResolveAll:
    container = aioinject.SyncContainer()
    container.register(aioinject.Singleton(Base))
    container.register(*(aioinject.Singleton(cls) for cls in classes))
    resolve = container.context().resolve

    def resolve_all() -> list[object]:
        return [resolve(cls) for cls in classes]

    return resolve_all
