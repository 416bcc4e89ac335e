"""dishka: sync container for S1/S2/S1000, async container for S3 and S4, default settings.

No ``from __future__ import annotations``: S4's endpoint is defined inside ``s4()``
with names imported there, and FastAPI and dishka read its annotations as objects.
"""

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from dishka import Provider, Scope, make_async_container, make_container

from benchmarks.cases import S4_PATH, Once, ResolveAll, SyncCase
from benchmarks.model import A, B, Base, C, Config, D, Handler, resource_gen

DIST = "dishka"
HOW = {
    "s1": "`provide(Config, scope=APP)`; `container.get(Config)` (sync container, default lock)",
    "s2": "`provide(cls, scope=APP, cache=False)`; `container.get(A)`",
    "s3": "`provide(resource_gen, scope=REQUEST)`, `provide(Handler, scope=REQUEST)`; "
    "`async with container() as r: await r.get(Handler)`",
    "s1000": "`provide(S{i}, scope=APP)` on one `Provider`; `make_container`; "
    "`container.get(S{i})`",
    "s4": "S3's provider and `FastapiProvider()` in `make_async_container`; `setup_dishka`; "
    "`@inject` endpoint taking `handler: FromDishka[Handler]`; the lifespan closes the "
    "container",
}


@contextmanager
def s1() -> Iterator[SyncCase]:
    provider = Provider()
    provider.provide(Config, scope=Scope.APP)
    container = make_container(provider)
    container.get(Config)
    try:
        yield SyncCase("container.get(Config)", {"container": container, "Config": Config})
    finally:
        container.close()


@contextmanager
def s2() -> Iterator[SyncCase]:
    provider = Provider()
    for cls in (A, B, C, D):
        provider.provide(cls, scope=Scope.APP, cache=False)
    container = make_container(provider)
    try:
        yield SyncCase("container.get(A)", {"container": container, "A": A})
    finally:
        container.close()


def _s3_provider() -> Provider:
    provider = Provider()
    provider.provide(Config, scope=Scope.APP)
    provider.provide(resource_gen, scope=Scope.REQUEST)
    provider.provide(Handler, scope=Scope.REQUEST)
    return provider


@asynccontextmanager
async def s3() -> AsyncIterator[Once]:
    container = make_async_container(_s3_provider())

    async def once() -> Handler:
        async with container() as request:
            return await request.get(Handler)

    try:
        yield once
    finally:
        await container.close()


def s1000(classes: Sequence[type]) -> ResolveAll:
    provider = Provider()
    provider.provide(Base, scope=Scope.APP)
    for cls in classes:
        provider.provide(cls, scope=Scope.APP)
    container = make_container(provider)
    get = container.get

    def resolve_all() -> list[object]:
        return [get(cls) for cls in classes]

    return resolve_all


def s4() -> Any:
    from dishka.integrations.fastapi import FastapiProvider, FromDishka, inject, setup_dishka
    from fastapi import FastAPI

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await app.state.dishka_container.close()

    app = FastAPI(lifespan=lifespan)

    @app.get(S4_PATH)
    @inject
    async def endpoint(handler: FromDishka[Handler]):
        return {"v": handler.config.value}

    setup_dishka(make_async_container(_s3_provider(), FastapiProvider()), app)
    return app
