"""svcs: a ``Registry`` of factories, a ``Container`` per request.

svcs has no transient lifetime and no autowiring by default: S2 creates a container per
call and its hand-written factories share ``C`` within that container (not equivalent).

No ``from __future__ import annotations``: S4's endpoint is defined inside ``s4()``
with names imported there, and FastAPI reads its annotations as objects.
"""

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import svcs

from benchmarks.cases import S4_PATH, Once, ResolveAll, SyncCase
from benchmarks.model import A, B, Base, C, Config, D, Handler, Resource, resource_gen

DIST = "svcs"
HOW = {
    "s1": "`registry.register_value(Config, ...)`; `services.get(Config)` on one container",
    "s2": "hand-written factories taking `svcs_container`; `svcs.Container(registry).get(A)`",
    "s3": "`register_factory(Resource, resource_gen)`, async `Handler` factory; "
    "`async with svcs.Container(registry) as s: await s.aget(Handler)`",
    "s1000": "`register_factory(S{i}, factory)` calling `svcs_container.get(Base)`; "
    "one container, `services.get(S{i})`",
    "s4": "S3's registrations in a `@svcs.fastapi.lifespan`; endpoint takes "
    "`services: svcs.fastapi.DepContainer` and awaits `services.aget(Handler)`",
}
NOTES = {
    "s2": "no transient lifetime: a new container per call, which caches `C` (built once, "
    "not once per edge)",
}


@contextmanager
def s1() -> Iterator[SyncCase]:
    registry = svcs.Registry()
    registry.register_value(Config, Config())
    services = svcs.Container(registry)
    services.get(Config)
    try:
        yield SyncCase("services.get(Config)", {"services": services, "Config": Config})
    finally:
        services.close()
        registry.close()


def _make_b(svcs_container: svcs.Container) -> B:
    return B(svcs_container.get(C))


def _make_d(svcs_container: svcs.Container) -> D:
    return D(svcs_container.get(C))


def _make_a(svcs_container: svcs.Container) -> A:
    return A(*svcs_container.get(B, D))


@contextmanager
def s2() -> Iterator[SyncCase]:
    registry = svcs.Registry()
    registry.register_factory(C, C)
    registry.register_factory(B, _make_b)
    registry.register_factory(D, _make_d)
    registry.register_factory(A, _make_a)
    try:
        yield SyncCase(
            "Container(registry).get(A)",
            {"Container": svcs.Container, "registry": registry, "A": A},
        )
    finally:
        registry.close()


async def _make_handler(svcs_container: svcs.Container) -> Handler:
    return Handler(*await svcs_container.aget(Config, Resource))


def _register_s3(registry: svcs.Registry) -> None:
    registry.register_value(Config, Config())
    registry.register_factory(Resource, resource_gen)
    registry.register_factory(Handler, _make_handler)


@asynccontextmanager
async def s3() -> AsyncIterator[Once]:
    registry = svcs.Registry()
    _register_s3(registry)
    container_cls = svcs.Container

    async def once() -> Handler:
        async with container_cls(registry) as services:
            return await services.aget(Handler)

    try:
        yield once
    finally:
        await registry.aclose()


def _singleton_factory(cls: type) -> Callable[[svcs.Container], object]:
    def factory(svcs_container: svcs.Container) -> object:
        return cls(svcs_container.get(Base))

    return factory


def s1000(classes: Sequence[type]) -> ResolveAll:
    registry = svcs.Registry()
    registry.register_factory(Base, Base)
    for cls in classes:
        registry.register_factory(cls, _singleton_factory(cls))
    services = svcs.Container(registry)
    get = services.get

    def resolve_all() -> list[object]:
        return [get(cls) for cls in classes]

    return resolve_all


def s4() -> Any:
    import svcs.fastapi
    from fastapi import FastAPI

    @svcs.fastapi.lifespan
    async def lifespan(app: FastAPI, registry: svcs.Registry) -> AsyncIterator[None]:
        _register_s3(registry)
        yield

    app = FastAPI(lifespan=lifespan)

    @app.get(S4_PATH)
    async def endpoint(services: svcs.fastapi.DepContainer):
        handler = await services.aget(Handler)
        return {"v": handler.config.value}

    return app
