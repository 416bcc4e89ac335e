"""What is retried (idempotent methods only, unless the request never left), keep-alive
connections the server closed (P10), and what the circuit breaker counts."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from tether.exceptions import CircuitOpen, ResourceTimeout, ResourceUnavailable

from .conftest import Clients
from .servers import LoopbackHTTPServer

pytestmark = pytest.mark.anyio

@pytest.mark.parametrize(("method", "hits"), [
    ("GET", 3), ("PUT", 3), ("DELETE", 3), ("OPTIONS", 3), ("POST", 1), ("PATCH", 1),
])
async def test_only_idempotent_methods_are_retried_after_a_lost_connection(
    clients: Clients, server: LoopbackHTTPServer, method: str, hits: int
) -> None:
    client = await clients.open(max_retries=2)

    with pytest.raises(ResourceUnavailable):
        await client.request(method, "/drop")

    assert server.hits(method, "/drop") == hits


async def test_a_post_marked_idempotent_is_retried(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(max_retries=2)

    with pytest.raises(ResourceUnavailable):
        await client.post("/drop", idempotent=True)

    assert server.hits("POST", "/drop") == 3


async def test_a_get_marked_not_idempotent_is_not_retried(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(max_retries=2)

    with pytest.raises(ResourceUnavailable):
        await client.get("/drop", idempotent=False)

    assert server.hits("GET", "/drop") == 1


async def test_a_post_that_never_left_is_retried(clients: Clients) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = await clients.open(base_url=f"http://127.0.0.1:{port}", max_retries=2)

    with pytest.raises(ResourceUnavailable) as caught:
        await client.post("/echo")

    assert caught.value.sent is False
    assert client.statistics().retries_total == 2


@pytest.mark.parametrize(("method", "hits"), [("GET", 2), ("POST", 1)])
async def test_a_read_timeout_is_retried_for_idempotent_methods_only(
    clients: Clients, server: LoopbackHTTPServer, method: str, hits: int
) -> None:
    client = await clients.open(max_retries=1, read_timeout=0.2, timeout=10)

    with pytest.raises(ResourceTimeout):
        await client.request(method, "/hang")

    assert server.hits(method, "/hang") == hits


async def test_no_retries_by_default(clients: Clients, server: LoopbackHTTPServer) -> None:
    client = await clients.open()

    with pytest.raises(ResourceUnavailable):
        await client.get("/drop")

    assert server.hits("GET", "/drop") == 1


# -- P10: the server closes a keep-alive connection ---------------------------------


@pytest.fixture
async def closing_server() -> AsyncIterator[LoopbackHTTPServer]:
    """Answers the first request of each connection and drops any later one unanswered:
    the server gave up on the keep-alive connection just as the client reused it."""
    async with LoopbackHTTPServer(drop_reused=True) as running:
        yield running


async def test_reused_connection_closed_by_the_server_fails_a_get_by_default(
    clients: Clients, closing_server: LoopbackHTTPServer
) -> None:
    client = await clients.open(base_url=closing_server.url)
    await client.get("/echo")

    with pytest.raises(ResourceUnavailable) as caught:
        await client.get("/echo")

    assert caught.value.sent is True
    # Neither backend resent it on its own (aiohttp would, unless told not to).
    assert closing_server.hits("GET", "/echo") == 2


async def test_reused_connection_closed_by_the_server_retries_a_get_once(
    clients: Clients, closing_server: LoopbackHTTPServer
) -> None:
    client = await clients.open(base_url=closing_server.url, max_retries=1)
    await client.get("/echo")

    reply = await client.get("/echo")

    assert reply.status_code == 200
    assert closing_server.hits("GET", "/echo") == 3
    assert client.statistics().retries_total == 1


async def test_reused_connection_closed_by_the_server_never_retries_a_post(
    clients: Clients, closing_server: LoopbackHTTPServer
) -> None:
    client = await clients.open(base_url=closing_server.url, max_retries=1)
    await client.post("/echo")

    with pytest.raises(ResourceUnavailable) as caught:
        await client.post("/echo")

    assert caught.value.sent is True
    assert closing_server.hits("POST", "/echo") == 2


async def test_the_next_request_after_a_closed_connection_opens_a_new_one(
    clients: Clients, closing_server: LoopbackHTTPServer
) -> None:
    client = await clients.open(base_url=closing_server.url)
    await client.get("/echo")
    with pytest.raises(ResourceUnavailable):
        await client.get("/echo")

    reply = await client.get("/echo")

    assert reply.status_code == 200
    assert closing_server.connections_total == 2


async def test_a_keep_alive_connection_the_server_closed_while_idle_is_replaced(
    clients: Clients,
) -> None:
    async with LoopbackHTTPServer(idle_close=0.05) as short_keep_alive:
        client = await clients.open(base_url=short_keep_alive.url)
        await client.get("/echo")
        await short_keep_alive.wait_until(lambda: short_keep_alive.open_connections == 0)
        await asyncio.sleep(0.1)  # the client's side of the close arrives

        get = await client.get("/echo")
        post = await client.post("/echo")

    assert (get.status_code, post.status_code) == (200, 200)
    assert short_keep_alive.connections_total == 2


# -- the circuit breaker ------------------------------------------------------------


async def test_lost_connections_open_the_breaker(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(circuit_breaker_threshold=2)
    for _ in range(2):
        with pytest.raises(ResourceUnavailable):
            await client.get("/drop")

    with pytest.raises(CircuitOpen):
        await client.get("/drop")

    assert server.hits("GET", "/drop") == 2


async def test_5xx_answers_do_not_count_toward_the_breaker_by_default(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(circuit_breaker_threshold=2)

    codes = [(await client.get("/status/503")).status_code for _ in range(4)]

    assert codes == [503] * 4
    assert client.statistics().failures_total == 0


async def test_5xx_answers_open_the_breaker_when_they_count_as_failures(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(circuit_breaker_threshold=2, server_errors_are_failures=True)

    first = await client.get("/status/503")
    second = await client.get("/status/500")
    with pytest.raises(CircuitOpen):
        await client.get("/status/503")

    assert (first.status_code, second.status_code) == (503, 500)
    assert server.hits("GET", "/status/503") == 1
    assert dict(client.statistics().failures_by_kind) == {"HTTP5xx": 2, "CircuitOpen": 1}


async def test_4xx_answers_never_count_as_failures(clients: Clients) -> None:
    client = await clients.open(circuit_breaker_threshold=1, server_errors_are_failures=True)

    for _ in range(3):
        assert (await client.get("/status/404")).status_code == 404

    assert client.statistics().failures_total == 0


@pytest.mark.parametrize(("method", "hits"), [("GET", 3), ("POST", 1)])
async def test_5xx_answers_counted_as_failures_are_retried_for_idempotent_methods(
    clients: Clients, server: LoopbackHTTPServer, method: str, hits: int
) -> None:
    client = await clients.open(max_retries=2, server_errors_are_failures=True)

    reply = await client.request(method, "/status/503")

    assert reply.status_code == 503  # the last answer, returned
    assert server.hits(method, "/status/503") == hits


async def test_a_streamed_5xx_counted_as_a_failure_is_still_readable(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(server_errors_are_failures=True)

    async with client.stream("GET", "/status/502") as stream:
        body = await stream.aread()

    assert (stream.status_code, body) == (502, b"status 502")
    assert client.statistics().failures_by_kind == {"HTTP5xx": 1}
    assert client.statistics().connections_in_use == 0
