"""A password in the base URL is used, and never shown: not in repr, dumps, errors,
health reports, statistics or logs (O1)."""

from __future__ import annotations

import base64
import logging
import socket

import pydantic
import pytest

from tether import Container
from tether.exceptions import ResourceError
from tether.resources.http import HTTPClient, HTTPConfig

from .conftest import Clients
from .servers import LoopbackHTTPServer

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-pa55"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _with_credentials(url: str) -> str:
    return url.replace("http://", f"http://user:{SECRET}@")


def test_the_base_url_credentials_move_to_username_and_a_secret_password() -> None:
    config = HTTPConfig(base_url=f"http://user:{SECRET}@127.0.0.1:8080/api")

    assert config.base_url == "http://127.0.0.1:8080/api"
    assert config.username == "user"
    assert config.password is not None
    assert config.password.get_secret_value() == SECRET


def test_the_password_is_in_no_repr_or_dump() -> None:
    config = HTTPConfig(base_url=f"http://user:{SECRET}@127.0.0.1:8080")

    for text in (repr(config), str(config), config.model_dump_json(),
                 repr(HTTPClient(config))):
        assert SECRET not in text


@pytest.mark.parametrize("options", [
    {"base_url": f"http://user:{SECRET}@127.0.0.1/?q=1"},
    {"base_url": f"ftp://user:{SECRET}@127.0.0.1/"},
    {"base_url": f"http://user:{SECRET}@127.0.0.1/", "username": "other"},
    {"base_url": f"http://user:{SECRET}@127.0.0.1/", "max_connections": 0},
])
def test_validation_errors_never_quote_the_password(options: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        HTTPConfig(**options)

    assert SECRET not in str(caught.value)


async def test_the_credentials_are_sent_as_basic_auth(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(base_url=_with_credentials(server.url))

    await client.get("/echo")

    assert server.seen[-1].headers["authorization"] == _basic("user", SECRET)


async def test_the_credentials_are_not_sent_to_another_origin(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    async with LoopbackHTTPServer() as other:
        client = await clients.open(base_url=_with_credentials(server.url))

        await client.get(f"{other.url}/echo")

        assert "authorization" not in other.seen[-1].headers


async def test_credentials_in_a_request_url_are_sent_and_not_shown(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open()

    await client.get(f"{_with_credentials(server.url)}/echo")
    with pytest.raises(ResourceError) as caught:
        await client.get(f"{_with_credentials(server.url)}/drop")

    assert server.seen[0].headers["authorization"] == _basic("user", SECRET)
    assert SECRET not in str(caught.value)


async def test_the_password_is_in_no_error_statistics_or_log(
    clients: Clients, server: LoopbackHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        live = await clients.open(base_url=_with_credentials(server.url), max_retries=1,
                                  insecure_skip_verify=True)
        dead = await clients.open(base_url=_with_credentials(f"http://127.0.0.1:{closed}"))
        await live.get("/echo")
        for client, path in ((live, "/drop"), (dead, "/echo")):
            with pytest.raises(ResourceError) as caught:
                await client.get(path)
            texts += [str(caught.value), repr(caught.value), repr(caught.value.__cause__)]
        texts += [repr(live.statistics()), repr(live), repr(dead)]

    texts += [record.getMessage() for record in caplog.records]
    assert caplog.records  # the libraries' debug logs were captured too
    assert not [text for text in texts if SECRET in text]


async def test_the_password_is_not_in_the_health_report(backend: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    container = Container()
    container.bind(HTTPConfig, HTTPConfig(name="api", backend=backend,
                                          base_url=f"http://user:{SECRET}@127.0.0.1:{closed}"))
    container.bind(HTTPClient)

    async with container:
        await container.aget(HTTPClient)
        report = await container.health()

    assert report.resources["HTTPClient"].is_healthy is False
    assert SECRET not in str(report.to_dict())
