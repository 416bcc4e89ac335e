from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from tether.resources.http import HTTPClient, HTTPConfig

from .servers import LoopbackHTTPServer


@pytest.fixture(params=["httpx", "aiohttp"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def server() -> AsyncIterator[LoopbackHTTPServer]:
    async with LoopbackHTTPServer() as running:
        yield running


class Clients:
    """Opens clients on the test's backend, pointed at the test's server by default,
    and disposes them all when the test ends."""

    def __init__(self, backend: str, server: LoopbackHTTPServer) -> None:
        self.backend = backend
        self.server = server
        self._made: list[HTTPClient] = []

    async def open(self, **options: Any) -> HTTPClient:
        options.setdefault("backend", self.backend)
        options.setdefault("base_url", self.server.url)
        client = HTTPClient(HTTPConfig(**options))
        self._made.append(client)
        await client.initialize()
        return client

    async def close(self) -> None:
        for client in self._made:
            await client.dispose()


@pytest.fixture
async def clients(backend: str, server: LoopbackHTTPServer) -> AsyncIterator[Clients]:
    made = Clients(backend, server)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture(scope="session")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(tls_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def tls_server(tls_ca: trustme.CA) -> AsyncIterator[LoopbackHTTPServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    async with LoopbackHTTPServer(tls=context) as running:
        yield running
