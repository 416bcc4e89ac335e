"""Initialize, dispose, health, and the client inside a real tether Container."""

from __future__ import annotations

import importlib
import socket
import subprocess
import sys

import pytest

from tether import Container, HealthStatus
from tether.exceptions import ClosedError, ResourceError
from tether.resources.http import HTTPClient, HTTPConfig, HTTPStats

from .conftest import Clients
from .servers import LoopbackHTTPServer

pytestmark = pytest.mark.anyio


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# -- the client on its own ----------------------------------------------------------


async def test_a_client_used_before_initialize_says_how_to_start_it(
    backend: str, server: LoopbackHTTPServer
) -> None:
    client = HTTPClient(HTTPConfig(name="api", backend=backend, base_url=server.url))

    with pytest.raises(ResourceError, match="api: not initialized: resolve it from the "
                                            "container"):
        await client.get("/echo")

    assert server.seen == []


async def test_a_client_used_after_dispose_raises_closed_error(
    backend: str, server: LoopbackHTTPServer
) -> None:
    client = HTTPClient(HTTPConfig(name="api", backend=backend, base_url=server.url))
    await client.initialize()
    await client.dispose()

    with pytest.raises(ClosedError, match="HTTPClient 'api' once it has been closed"):
        await client.get("/echo")
    with pytest.raises(ClosedError):
        await client.health_check()
    with pytest.raises(ClosedError):
        await client.initialize()


async def test_dispose_twice_and_dispose_before_initialize_do_nothing(backend: str) -> None:
    never_started = HTTPClient(HTTPConfig(backend=backend))
    started = HTTPClient(HTTPConfig(backend=backend))
    await started.initialize()

    await never_started.dispose()
    await started.dispose()
    await started.dispose()

    assert "closed" in repr(started)


async def test_dispose_closes_the_pooled_connections(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open()
    await client.get("/echo")
    assert server.open_connections == 1

    await client.dispose()

    await server.wait_until(lambda: server.open_connections == 0)
    assert client.statistics().connections_open == 0


async def test_async_with_initializes_and_disposes(
    backend: str, server: LoopbackHTTPServer
) -> None:
    async with HTTPClient(HTTPConfig(backend=backend, base_url=server.url)) as client:
        assert (await client.get("/echo")).status_code == 200

    with pytest.raises(ClosedError):
        await client.get("/echo")
    await server.wait_until(lambda: server.open_connections == 0)


async def test_health_check_sends_the_configured_request(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(health_method="OPTIONS", health_path="/ping")

    assert await client.health_check() is True

    assert (server.seen[-1].method, server.seen[-1].path) == ("OPTIONS", "/ping")
    assert client.statistics().requests_total == 0  # not counted as the app's traffic


async def test_health_check_fails_on_an_unexpected_status(clients: Clients) -> None:
    client = await clients.open(name="api", health_path="/status/503")

    with pytest.raises(ResourceError, match=r"api: health check GET .*/status/503 answered "
                                            r"503 Service Unavailable, expected 2xx"):
        await client.health_check()


async def test_health_check_accepts_the_configured_statuses(clients: Clients) -> None:
    client = await clients.open(health_path="/status/404", health_status=(404,))

    assert await client.health_check() is True


async def test_health_check_is_bounded_by_health_timeout(clients: Clients) -> None:
    client = await clients.open(name="api", health_path="/hang", health_timeout=0.3)

    with pytest.raises(ResourceError, match=r"api: health check GET .*/hang did not finish "
                                            r"within health_timeout=0\.3s"):
        await client.health_check()


async def test_a_client_without_base_url_is_healthy_while_open(backend: str) -> None:
    async with HTTPClient(HTTPConfig(backend=backend)) as client:
        assert await client.health_check() is True


@pytest.mark.parametrize(("extra", "backend_module", "backend_name"), [
    ("http", "httpx", "httpx"), ("aiohttp", "aiohttp", "aiohttp"),
])
def test_a_missing_backend_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, extra: str, backend_module: str, backend_name: str
) -> None:
    monkeypatch.setitem(sys.modules, backend_module, None)
    monkeypatch.delitem(sys.modules, f"tether.resources._http_{backend_name}", raising=False)

    with pytest.raises(ImportError, match=rf"needs the '{extra}' extra: pip install "
                                          rf"'tether\[{extra}\]'"):
        HTTPClient(HTTPConfig(backend=backend_name))


def test_importing_without_pydantic_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydantic", None)
    monkeypatch.delitem(sys.modules, "tether.resources.http")

    with pytest.raises(ImportError, match=r"needs the 'http' extra"):
        importlib.import_module("tether.resources.http")


# -- inside a Container -------------------------------------------------------------


async def test_container_builds_the_client_from_its_bound_config(
    backend: str, server: LoopbackHTTPServer
) -> None:
    container = Container()
    container.bind(HTTPConfig, HTTPConfig(name="api", backend=backend, base_url=server.url))
    container.bind(HTTPClient)

    async with container:
        client = await container.aget(HTTPClient)
        reply = await client.get("/echo")

    assert reply.status_code == 200
    with pytest.raises(ClosedError):
        await client.get("/echo")
    await server.wait_until(lambda: server.open_connections == 0)


async def test_named_clients_live_side_by_side(backend: str) -> None:
    async with LoopbackHTTPServer() as one, LoopbackHTTPServer() as two:
        container = Container()
        container.bind(HTTPClient, HTTPClient(HTTPConfig(name="one", backend=backend,
                                                         base_url=one.url)), name="one")
        container.bind(HTTPClient, HTTPClient(HTTPConfig(name="two", backend=backend,
                                                         base_url=two.url)), name="two")
        async with container:
            await (await container.aget(HTTPClient, name="one")).get("/echo")
            await (await container.aget(HTTPClient, name="two")).post("/echo")
            report = await container.health()

        assert [s.method for s in one.seen] == ["GET", "GET"]  # the call, then health
        assert [s.method for s in two.seen] == ["POST", "GET"]
        assert report.status is HealthStatus.HEALTHY
        assert {"HTTPClient[one]", "HTTPClient[two]"} <= set(report.resources)


async def test_container_health_reports_a_failing_server(backend: str) -> None:
    container = Container()
    port = _closed_port()
    container.bind(HTTPClient, HTTPClient(HTTPConfig(name="api", backend=backend,
                                                     base_url=f"http://127.0.0.1:{port}")))

    async with container:
        await container.aget(HTTPClient)
        report = await container.health()

    api = report.resources["HTTPClient"]
    assert report.status is HealthStatus.UNHEALTHY
    assert api.is_healthy is False
    assert api.last_error is not None
    assert api.last_error.startswith("ResourceUnavailable: api: cannot connect for GET")


async def test_container_statistics_include_the_client(
    backend: str, server: LoopbackHTTPServer
) -> None:
    container = Container()
    container.bind(HTTPConfig, HTTPConfig(backend=backend, base_url=server.url))
    container.bind(HTTPClient)

    async with container:
        await (await container.aget(HTTPClient)).get("/echo")
        stats = container.statistics()["HTTPClient"]

    assert isinstance(stats, HTTPStats)
    assert stats.requests_total == 1


def test_importing_the_module_imports_neither_library() -> None:
    code = ("import sys, tether.resources.http; "
            "print(sorted({'httpx', 'aiohttp', 'httpcore'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)

    assert result.stdout.strip() == "[]"
