"""Driver errors arrive as tether's, the same type on both backends, with the driver's
error kept as ``__cause__``."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tether.exceptions import ResourceError, ResourceTimeout, ResourceUnavailable

from .conftest import Clients
from .servers import LoopbackHTTPServer

pytestmark = pytest.mark.anyio


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose listen queue is full, so a new connect is never answered."""
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))  # takes the only place in the queue
        yield port


async def test_connection_refused_is_unavailable_and_not_sent(clients: Clients) -> None:
    port = _closed_port()
    client = await clients.open(name="api", base_url=f"http://127.0.0.1:{port}")

    with pytest.raises(ResourceUnavailable, match=r"api: cannot connect for GET") as caught:
        await client.get("/echo")

    assert caught.value.sent is False
    assert caught.value.__cause__ is not None


async def test_connect_timeout_is_unavailable_and_not_sent(
    clients: Clients, unanswered_port: int
) -> None:
    client = await clients.open(base_url=f"http://127.0.0.1:{unanswered_port}",
                                connect_timeout=0.2, timeout=10)

    with pytest.raises(ResourceUnavailable, match=r"connect_timeout=0\.2s") as caught:
        await client.get("/echo")

    assert caught.value.sent is False


async def test_a_server_that_never_answers_fails_at_the_deadline(clients: Clients) -> None:
    client = await clients.open(name="api", timeout=0.5, read_timeout=30)
    started = time.monotonic()

    with pytest.raises(ResourceTimeout, match=r"api: call did not finish within timeout=0.5s"):
        await client.get("/hang")

    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 5  # at the deadline, not after a 30 s read timeout


async def test_a_call_cut_off_by_the_deadline_closes_its_connection(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(timeout=0.3)
    with pytest.raises(ResourceTimeout):
        await client.get("/hang")

    await server.wait_until(lambda: server.open_connections == 0)
    reply = await client.get("/echo")

    assert reply.status_code == 200
    assert server.connections_total == 2
    assert client.statistics().connections_in_use == 0


async def test_the_deadline_covers_retries_too(clients: Clients) -> None:
    client = await clients.open(timeout=0.5, read_timeout=0.3, max_retries=5)
    started = time.monotonic()

    with pytest.raises(ResourceTimeout):
        await client.get("/hang")

    assert time.monotonic() - started < 5  # not 6 attempts x 0.3 s plus backoff


async def test_read_timeout_is_a_resource_timeout_naming_it(clients: Clients) -> None:
    client = await clients.open(timeout=30, read_timeout=0.2)

    with pytest.raises(ResourceTimeout, match=r"read_timeout=0\.2s during GET") as caught:
        await client.get("/hang")

    assert caught.value.__cause__ is not None


async def test_a_body_that_stalls_hits_the_read_timeout(clients: Clients) -> None:
    client = await clients.open(timeout=30, read_timeout=0.2)

    with pytest.raises(ResourceTimeout, match=r"read_timeout=0\.2s"):
        await client.get("/stall-body")


async def test_a_connection_dropped_before_the_answer_is_unavailable_and_sent(
    clients: Clients,
) -> None:
    client = await clients.open(name="api")

    with pytest.raises(ResourceUnavailable, match="api: connection lost during POST") \
            as caught:
        await client.post("/drop")

    assert caught.value.sent is True
    assert caught.value.__cause__ is not None


async def test_a_reply_that_is_not_http_is_a_lost_connection(clients: Clients) -> None:
    client = await clients.open(name="api")

    with pytest.raises(ResourceUnavailable, match="api: connection lost during GET") \
            as caught:
        await client.get("/garbage")

    assert caught.value.sent is True


async def test_a_body_that_cannot_be_decompressed_is_a_resource_error(
    clients: Clients,
) -> None:
    client = await clients.open(name="api")

    with pytest.raises(ResourceError, match=r"api: GET .*/bad-gzip failed: the response "
                                            r"body cannot be decoded: Error -3") as caught:
        await client.get("/bad-gzip")

    assert type(caught.value) is ResourceError


async def test_errors_name_the_url_without_its_query(clients: Clients) -> None:
    client = await clients.open()

    with pytest.raises(ResourceUnavailable) as caught:
        await client.get("/drop", params={"token": "t0ps3cret"})

    assert "/drop" in str(caught.value)
    assert "t0ps3cret" not in str(caught.value)


async def test_every_error_is_a_resource_error(clients: Clients) -> None:
    client = await clients.open(timeout=0.3)

    for path in ("/drop", "/hang"):
        with pytest.raises(ResourceError):
            await client.get(path)


async def test_failures_are_counted_by_kind(clients: Clients) -> None:
    client = await clients.open(timeout=30, read_timeout=0.2)

    for path in ("/drop", "/drop", "/hang"):
        with pytest.raises(ResourceError):
            await client.get(path)
    await client.get("/echo")

    stats = client.statistics()
    assert dict(stats.failures_by_kind) == {"ResourceUnavailable": 2, "ResourceTimeout": 1}
    assert stats.failures_total == 3
    assert stats.requests_total == 4
