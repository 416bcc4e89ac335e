"""GRPCConfig: safe defaults, validation that names the field; TLS channels."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from pydantic import ValidationError

from tether.exceptions import ResourceUnavailable
from tether.resources.grpc import DEFAULT_OPTIONS, GRPCChannel, GRPCConfig

from .conftest import FAST_OPTIONS, method
from .servers import GRPCServer


def _config(**options: Any) -> GRPCConfig:
    # model_validate: how a config arrives from a file or the environment.
    return GRPCConfig.model_validate(options)


# -- defaults and validation ---------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    config = _config(target="users.internal:443")

    assert config.name == "grpc"
    assert config.secure is True
    assert config.timeout == 10.0
    assert config.close_grace == 1.0
    assert config.health_mode == "auto"
    assert config.health_service == ""
    assert config.wait_for_ready is False


def test_the_channel_never_retries_on_its_own() -> None:
    options = dict(_config(target="h:1").channel_options())

    assert options["grpc.enable_retries"] == 0


def test_channel_options_are_merged_over_the_defaults() -> None:
    config = _config(target="h:1", options={"grpc.keepalive_time_ms": 60_000,
                                             "grpc.max_receive_message_length": 1024})

    options = dict(config.channel_options())

    assert options["grpc.keepalive_time_ms"] == 60_000
    assert options["grpc.max_receive_message_length"] == 1024
    assert options["grpc.keepalive_timeout_ms"] == DEFAULT_OPTIONS["grpc.keepalive_timeout_ms"]


def test_a_target_is_required() -> None:
    with pytest.raises(ValidationError, match="target"):
        _config()


def test_a_url_is_not_a_target() -> None:
    with pytest.raises(ValidationError, match="target is host:port"):
        _config(target="https://users.internal:443")


def test_a_grpc_name_is_a_target() -> None:
    assert _config(target="dns:///users.internal:443").target == "dns:///users.internal:443"


def test_certificates_without_secure_are_refused(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("unused")

    with pytest.raises(ValidationError, match="root_certificates need secure=True"):
        _config(target="h:1", secure=False, root_certificates=ca)


def test_a_client_key_without_its_chain_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("unused")

    with pytest.raises(ValidationError, match="certificate_chain and private_key go together"):
        _config(target="h:1", private_key=key)


@pytest.mark.parametrize(("field", "value"), [("close_grace", -1), ("timeout", 0),
                                              ("health_mode", "sometimes"),
                                              ("max_retries", -1)])
def test_out_of_range_values_are_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        _config(target="h:1", **{field: value})


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ValidationError, match="deadline"):
        _config(target="h:1", deadline=3)


def test_repr_names_the_target() -> None:
    assert "127.0.0.1:50051" in repr(GRPCChannel(_config(target="127.0.0.1:50051")))


# -- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_server(ca: trustme.CA) -> AsyncIterator[GRPCServer]:
    cert = ca.issue_cert("127.0.0.1")
    credentials = grpc.ssl_server_credentials([(
        cert.private_key_pem.bytes(), b"".join(blob.bytes() for blob in cert.cert_chain_pems),
    )])
    server = await GRPCServer(credentials=credentials).start()
    yield server
    await server.stop()


def _tls(target: str, **options: Any) -> GRPCChannel:
    return GRPCChannel(_config(target=target, timeout=3.0, options=FAST_OPTIONS, **options))


@pytest.mark.anyio
async def test_a_secure_channel_trusts_the_configured_roots(
    tls_server: GRPCServer, ca: trustme.CA, tmp_path: Path
) -> None:
    roots = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(roots))
    grpc_channel = _tls(tls_server.target, root_certificates=roots)
    await grpc_channel.initialize()
    try:
        assert await grpc_channel.call(method(grpc_channel, "Echo"), b"tls",
                                       idempotent=True) == b"tls"
        assert await grpc_channel.health_check() is True
    finally:
        await grpc_channel.dispose()


@pytest.mark.anyio
async def test_an_untrusted_server_certificate_fails_the_call(tls_server: GRPCServer) -> None:
    grpc_channel = _tls(tls_server.target)  # the system roots do not know this CA
    await grpc_channel.initialize()
    try:
        with pytest.raises(ResourceUnavailable) as info:
            await grpc_channel.call(method(grpc_channel, "Echo"), b"x", idempotent=True)
    finally:
        await grpc_channel.dispose()

    assert info.value.sent is False


# -- the extra -------------------------------------------------------------------------------


def test_without_grpcio_the_import_names_the_extra() -> None:
    code = "import sys; sys.modules['grpc'] = None\nimport tether.resources.grpc"

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=False)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ImportError: tether.resources.grpc needs the 'grpc' extra: pip install 'tether[grpc]'"
    )
