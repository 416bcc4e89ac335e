"""that-depends: providers declared on a ``BaseContainer`` class, explicit arguments."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from that_depends import BaseContainer, ContextScopes, container_context, providers

from benchmarks.cases import Once, ResolveAll, SyncCase
from benchmarks.model import A, B, Base, C, Config, D, Handler, resource_gen

DIST = "that-depends"
HOW = {
    "s1": "`providers.Singleton(Config)`; `Container.config.resolve_sync()`",
    "s2": "`providers.Factory` with explicit provider arguments; `Container.a.resolve_sync()`",
    "s3": "`ContextResource(resource_gen).with_config(scope=REQUEST)`, `Factory(Handler, ...)`; "
    "`async with container_context(Container, scope=REQUEST): await Container.handler.resolve()`",
    "s1000": "a `BaseContainer` subclass made with `type()`, `Singleton(S{i}, base=base)` "
    "each; `provider.resolve_sync()`",
}


class _S1(BaseContainer):
    config = providers.Singleton(Config)


class _S2(BaseContainer):
    c = providers.Factory(C)
    b = providers.Factory(B, c=c.cast)
    d = providers.Factory(D, c=c.cast)
    a = providers.Factory(A, b=b.cast, d=d.cast)


class _S3(BaseContainer):
    config = providers.Singleton(Config)
    resource = providers.ContextResource(resource_gen).with_config(scope=ContextScopes.REQUEST)
    handler = providers.Factory(Handler, config=config.cast, resource=resource.cast)


@contextmanager
def s1() -> Iterator[SyncCase]:
    _S1.config.resolve_sync()
    try:
        yield SyncCase("Container.config.resolve_sync()", {"Container": _S1})
    finally:
        _S1.tear_down_sync()


@contextmanager
def s2() -> Iterator[SyncCase]:
    yield SyncCase("Container.a.resolve_sync()", {"Container": _S2})


@asynccontextmanager
async def s3() -> AsyncIterator[Once]:
    request = ContextScopes.REQUEST

    async def once() -> Handler:
        async with container_context(_S3, scope=request):
            return await _S3.handler.resolve()

    try:
        yield once
    finally:
        await _S3.tear_down()


def s1000(classes: Sequence[type]) -> ResolveAll:
    base = providers.Singleton(Base)
    namespace: dict[str, Any] = {"base": base}
    singletons = []
    for cls in classes:
        provider = providers.Singleton(cls, base=base)
        namespace[cls.__name__] = provider
        singletons.append(provider)
    type("Many", (BaseContainer,), namespace)

    def resolve_all() -> list[object]:
        return [provider.resolve_sync() for provider in singletons]

    return resolve_all
