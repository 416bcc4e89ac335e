"""An app whose one route allows 100 requests a minute, counted on the Redis at
``REDIS_URL``: served by two worker processes in the cross-process test."""

from __future__ import annotations

import os
from typing import Any

from fastapi import Depends, FastAPI, Request, Response

from tether import Container
from tether.fastapi import install
from tether.resources.redis import RedisClient, RedisConfig
from tether.security import RateLimiter, RateLimiterConfig, RedisRateLimits
from tether.security.fastapi import rate_limit

container = Container()
# A pool as large as the client's concurrency, and patient deadlines: on a loaded
# test machine a busy pool or a slow reply would otherwise fail closed (503).
container.bind(RedisConfig, RedisConfig(name="redis", url=os.environ["REDIS_URL"],
                                        timeout=15.0, max_connections=64, pool_timeout=10.0))
container.bind(RedisClient, eager=True)


@container.provide
def limiter(redis: RedisClient) -> RateLimiter:
    return RateLimiter(RateLimiterConfig(fail_open=False), RedisRateLimits(redis))


app = FastAPI()
install(app, container, metrics_path=None, status_prefix=None)


@app.middleware("http")
async def worker_header(request: Request, call_next: Any) -> Response:
    # Which worker answered, on every answer, 429s included.
    response: Response = await call_next(request)
    response.headers["x-worker"] = str(os.getpid())
    return response


@app.get("/limited", dependencies=[Depends(rate_limit("100/minute", per="route"))])
async def limited() -> dict[str, int]:
    return {"pid": os.getpid()}
