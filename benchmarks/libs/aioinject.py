"""aioinject: providers registered on a container, resolution through a context.

No ``from __future__ import annotations``: S4's endpoint is defined inside ``s4()``
with names imported there, and FastAPI and aioinject read its annotations as objects.
"""

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aioinject

from benchmarks.cases import S4_PATH, Once, ResolveAll, SyncCase
from benchmarks.model import A, B, Base, C, Config, D, Handler, Resource, resource_gen

DIST = "aioinject"
HOW = {
    "s1": "`Singleton(Config)` on a `SyncContainer`; `ctx.resolve(Config)` in one context "
    "entered outside the loop",
    "s2": "`Transient(cls)`; `ctx.resolve(A)` in one context entered outside the loop",
    "s3": "`Scoped(asynccontextmanager(resource_gen), Resource)`, `Scoped(Handler)`; "
    "`async with container.context() as ctx: await ctx.resolve(Handler)`",
    "s1000": "`Singleton(S{i})` on a `SyncContainer`; `ctx.resolve(S{i})` in one context",
    "s4": "S3's container; `AioInjectMiddleware`; `@inject` endpoint taking "
    "`handler: Injected[Handler]`; the lifespan enters and exits the container",
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


def _s3_container() -> aioinject.Container:
    container = aioinject.Container()
    container.register(
        aioinject.Singleton(Config),
        aioinject.Scoped(asynccontextmanager(resource_gen), Resource),
        aioinject.Scoped(Handler),
    )
    return container


@asynccontextmanager
async def s3() -> AsyncIterator[Once]:
    container = _s3_container()

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


def s4() -> Any:
    from aioinject import Injected
    from aioinject.ext.fastapi import AioInjectMiddleware, inject
    from fastapi import FastAPI

    container = _s3_container()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with container:
            yield

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(AioInjectMiddleware, container=container)

    @app.get(S4_PATH)
    @inject
    async def endpoint(handler: Injected[Handler]):
        return {"v": handler.config.value}

    return app
