from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tether import Container, Scope

pytestmark = pytest.mark.anyio


class Config:
    pass


class Resource:
    closed = False

    async def aclose(self) -> None:
        self.closed = True


class Handler:
    def __init__(self, config: Config, resource: Resource) -> None:
        self.config = config
        self.resource = resource


async def test_request_scope_builds_once_and_disposes_on_exit() -> None:
    container = Container()
    container.bind(Config, Config())

    @container.provide(scope=Scope.REQUEST)
    async def resource() -> AsyncIterator[Resource]:
        r = Resource()
        yield r
        await r.aclose()

    container.bind(Handler, scope=Scope.REQUEST)
    async with container:
        seen = []
        for _ in range(3):
            async with container.scope() as request:
                handler = await request.aget(Handler)
                assert handler is await request.aget(Handler)
                assert handler.config is container.get(Config)
                seen.append(handler.resource)
        assert all(r.closed for r in seen)
        assert len({id(r) for r in seen}) == 3
