"""HTTP: GET a small JSON body from a loopback server, one at a time and 10 at once.

- tether: ``HTTPClient.get("/ping")`` (httpx backend, resolved from a ``Container``):
  the body read, the connection back in the pool;
- httpx pooled: one ``httpx.AsyncClient`` with the same limits and timeouts,
  ``await client.get("/ping")``: the baseline, what tether wraps;
- httpx, new client per request: ``async with httpx.AsyncClient() as c: await
  c.get(url)``: a new connection (and client) for every request, what pooling saves;
- httpx pooled, ``Connection: close``: the client kept, a new connection per request:
  what the connection alone costs;
- rows that explain tether's: ``timeout=None`` (no per-call deadline); httpx pooled
  with each request in a task of its own under an anyio cancel scope, as tether's
  httpx backend runs it (so that a cancellation never lands inside httpcore's
  shielded cleanup); and httpx pooled given the absolute URL (no ``base_url`` to join
  and parse: tether parses each distinct URL once and reuses it).

The server counts the connections it accepts and the requests it answers: every
timed loop must add one request per request sent, and the pooled rows (tether and
httpx pooled) at most as many connections as requests in flight, whatever the loop's
length; the new-client row one connection per request.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx

from benchmarks.batteries._harness import (
    Audit,
    Env,
    Finish,
    Row,
    Scenario,
    Skip,
    both,
    counted,
    expect,
)
from benchmarks.batteries._http_server import PING_BODY
from benchmarks.batteries._servers import http_stats

TITLE = "Network: HTTP"
DISTRIBUTIONS = ("httpx", "httpcore")
TARGET = 0.05
CONCURRENCY = 10
# tether's HTTPConfig defaults, given to the raw client too.
MAX_CONNECTIONS, MAX_KEEPALIVE, KEEPALIVE_EXPIRY = 100, 20, 5.0
TIMEOUT = httpx.Timeout(connect=5.0, read=10.0, write=10.0, pool=5.0)
EXPECTED = json.loads(PING_BODY)


def _ok(response: Any) -> None:
    status = response.status_code
    expect(status == 200, f"status {status}")
    expect(response.json() == EXPECTED, f"body {response.content[:80]!r}")


def _all_ok(responses: Any) -> None:
    expect(len(responses) == CONCURRENCY, f"{len(responses)} responses")
    for response in responses:
        _ok(response)


def _batch(op: Callable[[], Awaitable[Any]]) -> Callable[[], Awaitable[list[Any]]]:
    async def batch() -> list[Any]:
        return await asyncio.gather(*(op() for _ in range(CONCURRENCY)))

    return batch


def _server_audits(base_url: str, per_op: int, pooled: bool) -> Audit:
    """The server answered one request per request sent; a pooled client opened at
    most as many connections as it had requests in flight, an unpooled one one per
    request."""

    async def start() -> Finish:
        before = http_stats(base_url)

        async def finish(number: int) -> None:
            after = http_stats(base_url)
            sent = number * per_op
            served = after["requests"] - before["requests"]
            opened = after["connections"] - before["connections"] - 1  # - the stats read
            expect(served == sent, f"the server answered {served} requests of {sent}")
            if pooled:
                expect(opened <= per_op, f"{opened} connections opened for {sent} requests "
                                         f"with {per_op} in flight")
            else:
                expect(opened == sent, f"{opened} connections opened for {sent} requests")

        return finish

    return start


async def scenarios(env: Env, stack: AsyncExitStack) -> list[Scenario | Skip]:
    base_url = env.url("http")
    if base_url is None:
        reason = env.why_not("http")
        return [Skip("get", "GET, one at a time", reason),
                Skip("get-10", f"GET, {CONCURRENCY} at once", reason)]
    from tether import Container
    from tether.resources.http import HTTPClient, HTTPConfig

    container = Container()
    container.bind(HTTPConfig, HTTPConfig(name="bench", base_url=base_url))
    container.bind(HTTPClient)
    container.bind(HTTPClient, HTTPClient(HTTPConfig(name="bench-no-deadline",
                                                     base_url=base_url, timeout=None)),
                   name="no-deadline")
    await stack.enter_async_context(container)
    client = await container.aget(HTTPClient)
    no_deadline = await container.aget(HTTPClient, name="no-deadline")
    limits = httpx.Limits(max_connections=MAX_CONNECTIONS,
                          max_keepalive_connections=MAX_KEEPALIVE,
                          keepalive_expiry=KEEPALIVE_EXPIRY)
    pooled = httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT, limits=limits)
    stack.push_async_callback(pooled.aclose)
    # Its own client: a request that closes its connection must not take (and close)
    # one the pooled row keeps alive.
    closing = httpx.AsyncClient(base_url=base_url, timeout=TIMEOUT, limits=limits,
                                headers={"Connection": "close"})
    stack.push_async_callback(closing.aclose)
    url = f"{base_url}/ping"
    # The same client without base_url, given the whole URL: httpx then skips joining
    # it to the base (tether's row joins and parses once per distinct URL, then reuses).
    absolute = httpx.AsyncClient(timeout=TIMEOUT, limits=limits)
    stack.push_async_callback(absolute.aclose)

    async def in_task() -> Any:
        # What tether's httpx backend does around each request (_http_httpx._guarded):
        # a task of its own, under an anyio cancel scope, awaited through a shield.
        scope = anyio.CancelScope()

        async def run() -> Any:
            with scope:
                return await pooled.get("/ping")

        return await asyncio.shield(asyncio.get_running_loop().create_task(run()))

    async def new_client() -> Any:
        async with httpx.AsyncClient(timeout=TIMEOUT) as fresh:
            return await fresh.get(url)

    tether_get = functools.partial(client.get, "/ping")
    bare_get = functools.partial(no_deadline.get, "/ping")
    bare_note = "explains tether's row: the policy without its deadline"
    raw_get = functools.partial(pooled.get, "/ping")
    # The client kept, the connection not: what the TCP connection alone costs.
    raw_close = functools.partial(closing.get, "/ping")
    requests = counted(lambda: client.statistics().requests_total, "requests_total")
    one = (
        Row("tether", tether_get, _ok, both(requests, _server_audits(base_url, 1, True))),
        Row("httpx pooled", raw_get, _ok, _server_audits(base_url, 1, True)),
        Row("tether, timeout=None", bare_get, _ok, _server_audits(base_url, 1, True),
            note=bare_note),
        Row("httpx pooled, absolute URL", functools.partial(absolute.get, url), _ok,
            _server_audits(base_url, 1, True),
            note="the baseline given the whole URL rather than a path on base_url"),
        Row("httpx pooled, in a task + anyio scope", in_task, _ok,
            _server_audits(base_url, 1, True),
            note="explains tether's row: each request in a task of its own"),
        Row("httpx pooled, Connection: close", raw_close, _ok,
            _server_audits(base_url, 1, False), note="a new connection per request"),
        Row("httpx, new client per request", new_client, _ok,
            _server_audits(base_url, 1, False)),
    )
    many_requests = counted(lambda: client.statistics().requests_total, "requests_total",
                            per_op=CONCURRENCY)
    many = (
        Row("tether", _batch(tether_get), _all_ok,
            both(many_requests, _server_audits(base_url, CONCURRENCY, True)),
            per_op=CONCURRENCY),
        Row("httpx pooled", _batch(raw_get), _all_ok,
            _server_audits(base_url, CONCURRENCY, True), per_op=CONCURRENCY),
        Row("tether, timeout=None", _batch(bare_get), _all_ok,
            _server_audits(base_url, CONCURRENCY, True), per_op=CONCURRENCY, note=bare_note),
        Row("httpx pooled, Connection: close", _batch(raw_close), _all_ok,
            _server_audits(base_url, CONCURRENCY, False), per_op=CONCURRENCY,
            note="a new connection per request"),
        Row("httpx, new client per request", _batch(new_client), _all_ok,
            _server_audits(base_url, CONCURRENCY, False), per_op=CONCURRENCY),
    )
    return [
        Scenario("get", "GET, one at a time", one, baseline="httpx pooled", target=TARGET),
        Scenario("get-10", f"GET, {CONCURRENCY} at once", many, baseline="httpx pooled",
                 target=TARGET),
    ]
