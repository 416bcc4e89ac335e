"""dependency-injector (Cython providers); no autowiring, so every argument is explicit.

It has no request scope: S3 uses a ``ContextLocalResource`` closed by an ``@inject``
function whose parameter is ``Closing[Provide[...]]``, the documented per-call pattern.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

from dependency_injector import containers, providers
from dependency_injector.wiring import Closing, Provide, inject

from benchmarks.cases import Once, ResolveAll, SyncCase
from benchmarks.model import A, B, Base, C, Config, D, Handler, resource_gen

DIST = "dependency-injector"
HOW = {
    "s1": "`providers.Singleton(Config)`; `container.config()`",
    "s2": "`providers.Factory` with explicit provider arguments; `container.a()`",
    "s3": "`ContextLocalResource(resource_gen)`, `Factory(Handler, ...)`; an `@inject` "
    "function taking `Closing[Provide[Container.handler]]` (no scopes exist); `wire()`",
    "s1000": "`DynamicContainer` with `Singleton(S{i}, base=base)` each; `provider()`",
}


class _S1(containers.DeclarativeContainer):
    config = providers.Singleton(Config)


class _S2(containers.DeclarativeContainer):
    c = providers.Factory(C)
    b = providers.Factory(B, c=c)
    d = providers.Factory(D, c=c)
    a = providers.Factory(A, b=b, d=d)


class _S3(containers.DeclarativeContainer):
    config = providers.Singleton(Config)
    resource = providers.ContextLocalResource(resource_gen)
    handler = providers.Factory(Handler, config=config, resource=resource)


@inject
async def _handle(handler: Handler = Closing[Provide[_S3.handler]]) -> Handler:
    return handler


@contextmanager
def s1() -> Iterator[SyncCase]:
    container = _S1()
    container.config()
    yield SyncCase("container.config()", {"container": container})


@contextmanager
def s2() -> Iterator[SyncCase]:
    yield SyncCase("container.a()", {"container": _S2()})


@asynccontextmanager
async def s3() -> AsyncIterator[Once]:
    container = _S3()
    container.wire(modules=[sys.modules[__name__]])
    try:
        yield _handle
    finally:
        container.unwire()


def s1000(classes: Sequence[type]) -> ResolveAll:
    container = containers.DynamicContainer()
    base = providers.Singleton(Base)
    container.base = base
    singletons = []
    for cls in classes:
        provider = providers.Singleton(cls, base=base)
        setattr(container, cls.__name__, provider)
        singletons.append(provider)

    def resolve_all() -> list[object]:
        return [provider() for provider in singletons]

    return resolve_all
