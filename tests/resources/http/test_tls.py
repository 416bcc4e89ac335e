"""TLS verification (P11): on by default, a CA bundle for private CAs, and turning it off
takes an explicit flag and logs a warning."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pydantic
import pytest
import trustme

from tether.exceptions import ResourceError, ResourceUnavailable
from tether.resources.http import HTTPClient, HTTPConfig

from .conftest import Clients
from .servers import LoopbackHTTPServer

pytestmark = pytest.mark.anyio


async def test_a_self_signed_server_fails_by_default_with_a_clear_tls_error(
    clients: Clients, tls_server: LoopbackHTTPServer
) -> None:
    client = await clients.open(name="api", base_url=tls_server.url)

    with pytest.raises(ResourceUnavailable) as caught:
        await client.get("/echo")

    message = str(caught.value)
    assert message.startswith(f"api: TLS verification failed for GET {tls_server.url}/echo")
    assert "set ca_bundle" in message
    assert caught.value.sent is False
    assert tls_server.seen == []


async def test_the_configured_ca_bundle_is_trusted(
    clients: Clients, tls_server: LoopbackHTTPServer, ca_file: Path
) -> None:
    client = await clients.open(base_url=tls_server.url, ca_bundle=ca_file)

    reply = await client.get("/echo")

    assert reply.status_code == 200


async def test_the_host_name_is_checked_too(
    clients: Clients, tls_ca: trustme.CA, ca_file: Path
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("other.example").configure_cert(context)
    async with LoopbackHTTPServer(tls=context) as wrong_name:
        client = await clients.open(base_url=wrong_name.url, ca_bundle=ca_file)

        with pytest.raises(ResourceUnavailable, match="TLS verification failed"):
            await client.get("/echo")


async def test_insecure_skip_verify_connects_and_logs_a_warning(
    clients: Clients, tls_server: LoopbackHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="tether.resources.http"):
        client = await clients.open(name="api", base_url=tls_server.url,
                                    insecure_skip_verify=True)

    reply = await client.get("/echo")

    assert reply.status_code == 200
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "api: TLS certificate verification is OFF" in warnings[0].getMessage()


def test_verify_false_alone_is_refused_naming_the_flag_to_set() -> None:
    with pytest.raises(pydantic.ValidationError, match="set insecure_skip_verify=True"):
        HTTPConfig(verify=False)


def test_verify_false_with_the_flag_is_accepted() -> None:
    config = HTTPConfig(verify=False, insecure_skip_verify=True)

    assert config.insecure_skip_verify


def test_a_ca_bundle_with_verification_off_is_refused(ca_file: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="ca_bundle is unused"):
        HTTPConfig(insecure_skip_verify=True, ca_bundle=ca_file)


async def test_a_missing_ca_bundle_fails_initialize_naming_it(
    backend: str, tmp_path: Path
) -> None:
    client = HTTPClient(HTTPConfig(name="api", backend=backend,
                                   ca_bundle=tmp_path / "missing.pem"))

    with pytest.raises(ResourceError, match=r"api: ca_bundle=.*missing\.pem cannot be loaded"):
        await client.initialize()
