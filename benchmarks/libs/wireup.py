"""wireup: ``@injectable`` registrations, containers compiled at creation.

The root container refuses transients, so S2 resolves from one scope entered outside
the timed loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import wireup

from benchmarks.cases import Once, ResolveAll, SyncCase
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


@asynccontextmanager
async def s3() -> AsyncIterator[Once]:
    container = wireup.create_async_container(
        injectables=[
            wireup.injectable(Config),
            wireup.injectable(resource_gen, lifetime="scoped"),
            wireup.injectable(Handler, lifetime="scoped"),
        ]
    )

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
