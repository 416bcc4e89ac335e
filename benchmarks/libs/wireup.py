"""wireup: ``@injectable`` registrations, containers compiled at creation.

The root container refuses transients, so S2 resolves from one scope entered outside
the timed loop.

No ``from __future__ import annotations``: S4's endpoint is defined inside ``s4()``
with names imported there, and FastAPI and wireup read its annotations as objects.
"""

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import wireup

from benchmarks.cases import S4_PATH, Once, ResolveAll, SyncCase
from benchmarks.model import A, B, Base, C, Config, D, Handler, resource_gen

DIST = "wireup"
HOW = {
    "s1": "`injectable(Config)`; `container.get(Config)` (sync container)",
    "s2": "`injectable(cls, lifetime='transient')`; `scope.get(A)` in one scope entered "
    "outside the loop",
    "s3": "`injectable(resource_gen, lifetime='scoped')`, `injectable(Handler, "
    "lifetime='scoped')`; `async with container.enter_scope() as s: await s.get(Handler)`",
    "s1000": "`injectable(S{i})`; `create_sync_container(injectables=[...])`; "
    "`container.get(S{i})`",
    "s4": "S3's async container; `wireup.integration.fastapi.setup(container, app)` after "
    "the routes; `WireupRoute` as the router's route class; endpoint takes "
    "`handler: Injected[Handler]`",
}


@contextmanager
def s1() -> Iterator[SyncCase]:
    container = wireup.create_sync_container(injectables=[wireup.injectable(Config)])
    container.get(Config)
    try:
        yield SyncCase("container.get(Config)", {"container": container, "Config": Config})
    finally:
        container.close()


@contextmanager
def s2() -> Iterator[SyncCase]:
    injectables = [wireup.injectable(cls, lifetime="transient") for cls in (A, B, C, D)]
    container = wireup.create_sync_container(injectables=injectables)
    try:
        with container.enter_scope() as scope:
            yield SyncCase("scope.get(A)", {"scope": scope, "A": A})
    finally:
        container.close()


def _s3_container() -> Any:
    return wireup.create_async_container(
        injectables=[
            wireup.injectable(Config),
            wireup.injectable(resource_gen, lifetime="scoped"),
            wireup.injectable(Handler, lifetime="scoped"),
        ]
    )


@asynccontextmanager
async def s3() -> AsyncIterator[Once]:
    container = _s3_container()

    async def once() -> Handler:
        async with container.enter_scope() as scope:
            return await scope.get(Handler)

    try:
        yield once
    finally:
        await container.close()


def s1000(classes: Sequence[type]) -> ResolveAll:
    injectables: list[Any] = [wireup.injectable(Base)]
    injectables += [wireup.injectable(cls) for cls in classes]
    container = wireup.create_sync_container(injectables=injectables)
    get = container.get

    def resolve_all() -> list[object]:
        return [get(cls) for cls in classes]

    return resolve_all


def s4() -> Any:
    import wireup.integration.fastapi
    from fastapi import FastAPI
    from wireup import Injected
    from wireup.integration.fastapi import WireupRoute

    app = FastAPI()
    app.router.route_class = WireupRoute

    @app.get(S4_PATH)
    async def endpoint(handler: Injected[Handler]):
        return {"v": handler.config.value}

    wireup.integration.fastapi.setup(_s3_container(), app)  # closes it at shutdown
    return app
