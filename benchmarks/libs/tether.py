"""tether, written the way its API contract shows.

No ``from __future__ import annotations``: S4's endpoints are defined inside ``s4()``
with names imported there, and FastAPI reads their annotations as objects.
"""

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from benchmarks.cases import S4_PATH, Once, ResolveAll, SyncCase
from benchmarks.model import A, B, Base, C, Config, D, Handler, resource_gen
from tether import Container, Scope

DIST = "tether"
HOW = {
    "s1": "`container.bind(Config, Config())`; `container.get(Config)`",
    "s2": "`bind(cls, scope=Scope.TRANSIENT)` for A, B, C, D; `container.get(A)`",
    "s3": "`provide(scope=Scope.REQUEST)(resource_gen)`, `bind(Handler, scope=Scope.REQUEST)`; "
    "`async with container.scope() as r: await r.aget(Handler)` inside `async with container`",
    "s1000": "`bind(Base)`, `bind(S{i})` (default APP scope); `container.get(S{i})`",
    "s4": "S3's container; `install(app, container, health_prefix=None, metrics_path=None, "
    "status_prefix=None)`; endpoint takes `handler: Inject[Handler]`. The `request ids off` "
    "row: the same with `request_id_header=None` (no request id: what the other libraries' "
    "integrations do). The `install() defaults` row: plain `install(app, container)` (adds "
    "`/health*`, `/metrics` with per-route request latency, `/status`)",
}
S4 = {"tether": "s4", "tether, request ids off": "s4_no_request_ids",
      "tether, install() defaults": "s4_defaults"}


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


def _s3_container() -> Container:
    container = Container()
    container.bind(Config, Config())
    container.provide(scope=Scope.REQUEST)(resource_gen)
    container.bind(Handler, scope=Scope.REQUEST)
    return container


@asynccontextmanager
async def s3() -> AsyncIterator[Once]:
    container = _s3_container()

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


def _app(**options: Any) -> Any:
    from fastapi import FastAPI

    from tether.fastapi import Inject, install

    app = FastAPI()

    @app.get(S4_PATH)
    async def endpoint(handler: Inject[Handler]):
        return {"v": handler.config.value}

    install(app, _s3_container(), **options)
    return app


def s4() -> Any:
    """Only what S4 needs: the lifespan, the REQUEST scope per request (and its request
    id) and the JSON error handlers."""
    return _app(health_prefix=None, metrics_path=None, status_prefix=None)


def s4_no_request_ids() -> Any:
    """Only the DI: the REQUEST scope per request and the JSON error handlers, no request
    id (no id made or read, no context variable, no response header)."""
    return _app(health_prefix=None, metrics_path=None, status_prefix=None,
                request_id_header=None)


def s4_defaults() -> Any:
    """``install(app, container)`` as a reader would write it first."""
    return _app()
