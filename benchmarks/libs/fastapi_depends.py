"""FastAPI's own ``Depends``, no DI library: S4 only (it resolves only inside a request).

``Config`` is made in the lifespan and kept on ``app.state``; ``Resource`` is the yield
dependency ``Depends(resource_gen)``; ``Handler`` is a dependency built from both. All
dependencies are ``async def``, so none of them takes a threadpool hop.
"""

from typing import Annotated, Any

from benchmarks.cases import S4_PATH
from benchmarks.model import Config, Handler, Resource, resource_gen

DIST = "fastapi"
HOW = {
    "s4": "`Config` on `app.state` (set in the lifespan) through an `async def` dependency, "
    "`Depends(resource_gen)` (yield dependency), an `async def` `Handler` dependency; "
    "`handler: Annotated[Handler, Depends(get_handler)]`",
}
S4 = {"FastAPI Depends": "s4"}


def s4() -> Any:
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from fastapi import Depends, FastAPI, Request

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.config = Config()
        yield

    async def get_config(request: Request) -> Config:
        return request.app.state.config

    async def get_handler(
        config: Annotated[Config, Depends(get_config)],
        resource: Annotated[Resource, Depends(resource_gen)],
    ) -> Handler:
        return Handler(config, resource)

    app = FastAPI(lifespan=lifespan)

    @app.get(S4_PATH)
    async def endpoint(handler: Annotated[Handler, Depends(get_handler)]):
        return {"v": handler.config.value}

    return app
