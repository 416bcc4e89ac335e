"""The floor: the same work written by hand, no container."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from benchmarks.cases import S4_PATH, Once, ResolveAll, SyncCase
from benchmarks.model import A, B, Base, C, Config, D, Handler, resource_gen

DIST = None
HOW = {
    "s1": "`registry[Config]` (a dict)",
    "s2": "`A(B(C()), D(C()))`",
    "s3": "drive `resource_gen()` by hand: `__anext__`, build `Handler`, `__anext__` again",
    "s1000": "a dict of instances filled by calling each class with the shared `Base`",
    "s4": "no DI: an endpoint without parameters drives `resource_gen()` by hand and builds "
    "`Handler` with a `Config` made with the app",
}
S4 = {"no DI": "s4"}


@contextmanager
def s1() -> Iterator[SyncCase]:
    registry: dict[type, object] = {Config: Config()}
    yield SyncCase("registry[Config]", {"registry": registry, "Config": Config})


@contextmanager
def s2() -> Iterator[SyncCase]:
    yield SyncCase("A(B(C()), D(C()))", {"A": A, "B": B, "C": C, "D": D})


@asynccontextmanager
async def s3() -> AsyncIterator[Once]:
    config = Config()

    async def once() -> Handler:
        gen = resource_gen()
        resource = await gen.__anext__()
        try:
            handler = Handler(config, resource)
        finally:
            try:  # noqa: SIM105  (a plain try is cheaper than suppress() for the floor)
                await gen.__anext__()
            except StopAsyncIteration:
                pass
        return handler

    yield once


def s1000(classes: Sequence[type]) -> ResolveAll:
    base = Base()
    instances: dict[type, object] = {}

    def resolve_all() -> list[object]:
        out = []
        for cls in classes:
            obj = instances.get(cls)
            if obj is None:
                obj = instances[cls] = cls(base)
            out.append(obj)
        return out

    return resolve_all


def s4() -> Any:
    from fastapi import FastAPI

    app = FastAPI()
    config = Config()

    @app.get(S4_PATH)
    async def endpoint():
        gen = resource_gen()
        resource = await gen.__anext__()
        try:
            handler = Handler(config, resource)
            return {"v": handler.config.value}
        finally:
            try:  # noqa: SIM105
                await gen.__anext__()
            except StopAsyncIteration:
                pass

    return app
