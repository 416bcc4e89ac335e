"""Rate limits (scenario A7): memory and Redis backends, headers, fail-open and
fail-closed, a lost reply, and one limit shared by two uvicorn workers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from tests.servers.proxy import FaultProxy
from tests.servers.redis import RedisServer, redis_server  # noqa: F401
from tether import Container
from tether.exceptions import ClosedError, ResourceError
from tether.fastapi import install
from tether.resources.redis import RedisClient, RedisConfig
from tether.security import (
    MemoryRateLimits,
    RateLimit,
    RateLimiter,
    RateLimiterConfig,
    RedisRateLimits,
)
from tether.security.fastapi import rate_limit

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- limits --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "limit", "period"), [
    ("100/minute", 100, 60), ("5/second", 5, 1), ("10/5 minutes", 10, 300),
    ("1000 / hour", 1000, 3600), ("3/days", 3, 259200 / 3),
])
def test_limits_are_read_from_text(text: str, limit: int, period: float) -> None:
    rule = RateLimit.parse(text)
    assert rule.limit == limit
    if text != "3/days":
        assert rule.period == period


@pytest.mark.parametrize("text", ["100", "100/fortnight", "-1/minute", "0/minute", ""])
def test_unreadable_limits_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="limit"):
        RateLimit.parse(text)


# -- the memory backend --------------------------------------------------------------


async def test_a_window_allows_exactly_the_limit_then_refuses() -> None:
    limiter = RateLimiter(RateLimiterConfig())
    results = [await limiter.hit("k", "5/minute") for _ in range(7)]
    assert [r.allowed for r in results] == [True] * 5 + [False] * 2
    assert [r.remaining for r in results] == [4, 3, 2, 1, 0, 0, 0]
    assert results[-1].headers()["Retry-After"] == "60"
    assert limiter.statistics().limited_total == 2


async def test_the_window_starts_over_after_its_period() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimiterConfig(), MemoryRateLimits(clock=clock))
    for _ in range(3):
        await limiter.hit("k", "3/minute")
    assert not (await limiter.hit("k", "3/minute")).allowed
    clock.now += 60
    assert (await limiter.hit("k", "3/minute")).allowed


async def test_keys_have_budgets_of_their_own() -> None:
    limiter = RateLimiter(RateLimiterConfig())
    assert (await limiter.hit("a", "1/minute")).allowed
    assert (await limiter.hit("b", "1/minute")).allowed
    assert not (await limiter.hit("a", "1/minute")).allowed


async def test_the_memory_backend_keeps_a_bounded_number_of_keys() -> None:
    backend = MemoryRateLimits(max_keys=10)
    for i in range(100):
        await backend.hit(f"k{i}", RateLimit(1, 60), 1)
    assert len(backend._windows) <= 10


async def test_a_disposed_limiter_refuses_use() -> None:
    limiter = RateLimiter(RateLimiterConfig())
    await limiter.dispose()
    with pytest.raises(ClosedError):
        await limiter.hit("k", "1/minute")


# -- FastAPI -------------------------------------------------------------------------


def make_app(**options: Any) -> FastAPI:
    container = Container()
    container.bind(RateLimiterConfig, RateLimiterConfig())
    container.bind(RateLimiter)
    app = FastAPI()
    install(app, container, metrics_path=None, status_prefix=None)

    @app.get("/items", dependencies=[Depends(rate_limit("3/minute", **options))])
    async def items() -> str:
        return "ok"

    @app.get("/other", dependencies=[Depends(rate_limit("3/minute", **options))])
    async def other() -> str:
        return "ok"

    return app


def test_allowed_requests_carry_ratelimit_headers_and_the_rest_get_429() -> None:
    with TestClient(make_app()) as client:
        responses = [client.get("/items") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0].headers["ratelimit-limit"] == "3"
    assert responses[0].headers["ratelimit-remaining"] == "2"
    assert int(responses[0].headers["ratelimit-reset"]) <= 60
    refused = responses[-1]
    assert refused.headers["retry-after"] == "60"
    assert refused.headers["ratelimit-remaining"] == "0"
    assert refused.json()["request_id"]


def test_each_route_has_its_own_budget() -> None:
    with TestClient(make_app()) as client:
        for _ in range(3):
            client.get("/items")
        assert client.get("/items").status_code == 429
        assert client.get("/other").status_code == 200


def test_a_custom_key_function_splits_budgets() -> None:
    app = make_app(per=lambda request: request.headers.get("x-tenant", "none"))
    with TestClient(app) as client:
        for _ in range(3):
            client.get("/items", headers={"x-tenant": "a"})
        assert client.get("/items", headers={"x-tenant": "a"}).status_code == 429
        assert client.get("/items", headers={"x-tenant": "b"}).status_code == 200


def test_per_user_without_a_token_is_401() -> None:
    from tether.security import Authenticator, MemoryUsers, TokenConfig, Tokens

    app = make_app(per="user")
    container: Container = app.state.tether_container
    container.bind(Authenticator, Authenticator(
        Tokens(TokenConfig(issuer="i", audience="a")), MemoryUsers()))
    with TestClient(app) as client:
        assert client.get("/items").status_code == 401


def test_an_unknown_per_is_refused() -> None:
    with pytest.raises(ValueError, match="per='users'"):
        rate_limit("1/minute", per="users")


# -- Redis ---------------------------------------------------------------------------


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[RedisClient]:  # noqa: F811
    client = RedisClient(RedisConfig(name="redis", url=redis_server.url, timeout=1.0))
    await client.initialize()
    yield client
    await client.dispose()


async def test_redis_windows_allow_exactly_the_limit_under_concurrency(
    redis: RedisClient, redis_server: RedisServer,  # noqa: F811
) -> None:
    limiter = RateLimiter(RateLimiterConfig(), RedisRateLimits(redis))
    results = await asyncio.gather(*(limiter.hit("k", "100/minute") for _ in range(300)))
    assert sum(r.allowed for r in results) == 100
    ttl = redis_server.command("PTTL", "tether:ratelimit:k")
    assert isinstance(ttl, int)
    assert 0 < ttl <= 60_000


async def test_every_redis_key_gets_a_ttl(
    redis: RedisClient, redis_server: RedisServer,  # noqa: F811
) -> None:
    limiter = RateLimiter(RateLimiterConfig(), RedisRateLimits(redis))
    for i in range(20):
        await limiter.hit(f"user{i}", "5/second")
    keys = redis_server.command("KEYS", "tether:ratelimit:*")
    assert isinstance(keys, list)
    assert len(keys) == 20
    assert all(isinstance(t, int) and t > 0 for t in
               (redis_server.command("PTTL", k) for k in keys))  # type: ignore[arg-type]


async def test_a_lost_reply_is_not_counted_twice_and_follows_fail_open(
    redis_server: RedisServer,  # noqa: F811
) -> None:
    async with FaultProxy(redis_server.address) as proxy:
        client = RedisClient(RedisConfig(name="redis", url=proxy.url(), timeout=1.0,
                                         max_retries=3))
        await client.initialize()
        try:
            limiter = RateLimiter(RateLimiterConfig(fail_open=True), RedisRateLimits(client))
            await limiter.hit("k", "10/minute")
            proxy.drop_next_reply()
            result = await limiter.hit("k", "10/minute")
            assert result.allowed
            assert result.backend_failed
            assert redis_server.command("GET", "tether:ratelimit:k") == b"2"
            assert limiter.statistics().backend_failures_total == 1
        finally:
            await client.dispose()


async def test_fail_closed_refuses_while_redis_is_down(
    redis: RedisClient, redis_server: RedisServer,  # noqa: F811
) -> None:
    closed = RateLimiter(RateLimiterConfig(fail_open=False), RedisRateLimits(redis))
    opened = RateLimiter(RateLimiterConfig(fail_open=True), RedisRateLimits(redis))
    redis_server.kill()
    started = time.monotonic()
    assert not (await closed.hit("k", "10/minute")).allowed
    assert (await opened.hit("k", "10/minute")).allowed
    assert time.monotonic() - started < 5  # bounded by the client's deadline
    with pytest.raises(ResourceError, match="redis"):  # health reports the outage
        await closed.health_check()
    redis_server.restart()
    assert (await closed.hit("k", "10/minute")).allowed


# -- two worker processes, one Redis -------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def _uvicorn(redis_url: str) -> Iterator[str]:
    """One uvicorn worker process serving the limited app on a free loopback port."""
    port = _free_port()
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.security.apps.limited:app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/health/live", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("uvicorn did not start: " +
                                         (process.stderr.read() if process.stderr else b"")
                                         .decode(errors="replace")) from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


@pytest.fixture
def two_workers(redis_server: RedisServer) -> Iterator[tuple[str, str]]:  # noqa: F811
    """Two worker processes sharing one Redis. Each has a port of its own, so the test
    decides which process each request goes to (a shared socket would let the kernel
    send a burst to one of them)."""
    with _uvicorn(redis_server.url) as one, _uvicorn(redis_server.url) as two:
        yield one, two


@pytest.mark.slow
async def test_two_workers_sharing_redis_let_exactly_the_limit_through(
    two_workers: tuple[str, str],
) -> None:
    limits = httpx.Limits(max_connections=25)
    async with httpx.AsyncClient(base_url=two_workers[0], limits=limits, timeout=20) as one, \
            httpx.AsyncClient(base_url=two_workers[1], limits=limits, timeout=20) as two:
        responses = await asyncio.gather(*(
            (one if i % 2 else two).get("/limited") for i in range(300)))
    codes = [r.status_code for r in responses]
    # Each process alone would let 100 through (200 in all) if they did not share the
    # budget on Redis; together they let exactly 100 through.
    assert (codes.count(200), codes.count(429)) == (100, 200), sorted(set(codes))
    assert len({r.headers["x-worker"] for r in responses}) == 2
