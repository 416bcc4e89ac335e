"""WebSocketConfig: safe defaults, validation that names the field, secrets kept out."""

from __future__ import annotations

import logging
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from pydantic import ValidationError

from tether.exceptions import ResourceError
from tether.resources.websocket import WebSocketClient, WebSocketConfig

from .conftest import fast_config
from .servers import EchoServer


def _config(**options: Any) -> WebSocketConfig:
    # model_validate: how a config arrives from a file or the environment, plain strings.
    return WebSocketConfig.model_validate(options)

# -- defaults and validation ---------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    config = _config(url="wss://feed.example.com/ws")

    assert config.name == "websocket"
    assert (config.ping_interval, config.ping_timeout, config.close_timeout) == (20, 20, 10)
    assert config.open_timeout == 10
    assert config.reconnect is True
    assert config.verify is True
    assert config.max_size == 2**20


@pytest.mark.parametrize("url", ["http://example.com/", "example.com", "ws://", ""])
def test_a_url_that_is_not_ws_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="url must be a ws:// or wss:// URL"):
        _config(url=url)


def test_a_refused_url_is_not_echoed_in_the_error() -> None:
    with pytest.raises(ValidationError) as info:
        _config(url="http://ann:hunter2@example.com/?token=s3cret")

    assert "hunter2" not in str(info.value)
    assert "s3cret" not in str(info.value)


def test_tls_options_on_a_plain_ws_url_are_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("unused")

    with pytest.raises(ValidationError, match="ca_file, verify only apply to wss:// URLs"):
        _config(url="ws://127.0.0.1:1/", ca_file=ca, verify=False)


def test_a_key_without_a_certificate_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("unused")

    with pytest.raises(ValidationError, match="key_file needs cert_file"):
        _config(url="wss://127.0.0.1:1/", key_file=key)


def test_backoff_max_below_backoff_initial_is_refused() -> None:
    with pytest.raises(ValidationError, match="backoff_max=1 must be >= backoff_initial=2"):
        _config(url="ws://127.0.0.1:1/", backoff_initial=2.0, backoff_max=1.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("ping_interval", 0), ("ping_timeout", -1), ("close_timeout", 0), ("open_timeout", 0),
     ("backoff_jitter", 1.0), ("max_reconnect_attempts", 0), ("max_queue", 0)],
)
def test_out_of_range_values_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValidationError, match=field):
        _config(url="ws://127.0.0.1:1/", **{field: value})


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ValidationError, match="ping_intervall"):
        _config(url="ws://127.0.0.1:1/", ping_intervall=1)


def test_pings_can_be_turned_off() -> None:
    config = _config(url="ws://127.0.0.1:1/", ping_interval=None, ping_timeout=None)

    assert config.ping_interval is None


# -- secrets -------------------------------------------------------------------------------


def test_repr_and_dump_hide_the_url_and_headers() -> None:
    config = _config(url="wss://ann:hunter2@feed.example.com/ws?token=s3cret",
                             headers={"Authorization": "Bearer t0k3n"})
    client = WebSocketClient(config)

    text = f"{config!r} {config} {config.model_dump_json()} {client!r}"

    for secret in ("hunter2", "s3cret", "t0k3n"):
        assert secret not in text
    assert "wss://feed.example.com:443/ws" in repr(client)


def test_display_url_keeps_scheme_host_port_and_path_only() -> None:
    config = _config(url="ws://ann:pw@127.0.0.1:8080/feed/v1?token=x")

    assert config.display_url == "ws://127.0.0.1:8080/feed/v1"


# -- TLS (wss://) ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def tls_server(ca: trustme.CA) -> AsyncIterator[EchoServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = await EchoServer(ssl_context=context).start()
    yield server
    await server.stop()


@pytest.fixture
async def mtls_server(ca: trustme.CA) -> AsyncIterator[EchoServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(context)
    server = await EchoServer(ssl_context=context).start()
    yield server
    await server.stop()


@pytest.mark.anyio
async def test_an_untrusted_certificate_fails_by_default(tls_server: EchoServer) -> None:
    ws = WebSocketClient(fast_config(tls_server.url))

    with pytest.raises(ResourceError, match=r"TLS handshake with wss://127\.0\.0\.1.* failed"):
        await ws.initialize()


@pytest.mark.anyio
async def test_the_configured_ca_file_is_trusted(tls_server: EchoServer, ca_file: Path) -> None:
    ws = WebSocketClient(fast_config(tls_server.url, ca_file=ca_file))
    await ws.initialize()
    try:
        await ws.send("secure")
        assert await ws.recv(timeout=10) == "secure"
    finally:
        await ws.dispose()


@pytest.mark.anyio
async def test_verify_false_connects_and_logs_a_warning(
    tls_server: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    ws = WebSocketClient(fast_config(tls_server.url, verify=False))
    with caplog.at_level(logging.WARNING, logger="tether.resources.websocket"):
        await ws.initialize()
    try:
        assert await ws.health_check() is True
    finally:
        await ws.dispose()

    assert "TLS certificate verification is off" in caplog.text


@pytest.mark.anyio
async def test_a_client_certificate_is_presented(
    mtls_server: EchoServer, ca: trustme.CA, ca_file: Path, tmp_path: Path
) -> None:
    chain = tmp_path / "client.pem"
    ca.issue_cert("client.example.org").private_key_and_cert_chain_pem.write_to_path(
        str(chain))
    ws = WebSocketClient(fast_config(mtls_server.url, ca_file=ca_file, cert_file=chain))
    await ws.initialize()
    try:
        assert await ws.health_check() is True
    finally:
        await ws.dispose()


@pytest.mark.anyio
async def test_a_ca_file_that_is_not_pem_fails_initialize_clearly(
    tls_server: EchoServer, tmp_path: Path
) -> None:
    broken = tmp_path / "ca.pem"
    broken.write_text("not a certificate")
    ws = WebSocketClient(fast_config(tls_server.url, ca_file=broken))

    with pytest.raises(ResourceError, match="cannot load the TLS files"):
        await ws.initialize()


# -- the extra -------------------------------------------------------------------------------


def test_without_websockets_the_import_names_the_extra() -> None:
    code = ("import sys; sys.modules['websockets'] = None\n"
            "import tether.resources.websocket")

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ImportError: tether.resources.websocket needs the 'websocket' extra: "
        "pip install 'tether[websocket]'"
    )
