"""health_check(): the standard grpc.health.v1 service, or the channel's connectivity.

It returns True, or raises the reason, which ``container.health()`` reports."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tether import Container, HealthStatus
from tether.exceptions import ResourceError, ResourceTimeout, ResourceUnavailable
from tether.resources.grpc import GRPCChannel, GRPCConfig

from .conftest import fast_config, method
from .servers import GRPCProcess, GRPCServer

pytestmark = pytest.mark.anyio


async def _channel(target: str, **options: object) -> GRPCChannel:
    grpc_channel = GRPCChannel(fast_config(target, **options))
    await grpc_channel.initialize()
    return grpc_channel


async def test_a_serving_server_is_healthy(channel: GRPCChannel) -> None:
    assert await channel.health_check() is True


async def test_a_not_serving_server_is_unhealthy(
    server: GRPCServer, channel: GRPCChannel
) -> None:
    await server.set_serving(False)

    with pytest.raises(ResourceUnavailable, match="reports service '' NOT_SERVING"):
        await channel.health_check()


async def test_health_follows_the_serving_status(
    server: GRPCServer, channel: GRPCChannel
) -> None:
    await server.set_serving(False)
    with pytest.raises(ResourceUnavailable):
        await channel.health_check()

    await server.set_serving(True)

    assert await channel.health_check() is True


async def test_the_named_health_service_is_checked(server: GRPCServer) -> None:
    await server.set_serving(True, "users.v1.Users")
    await server.set_serving(False)  # the server as a whole: not what is asked
    grpc_channel = await _channel(server.target, health_service="users.v1.Users")
    try:
        assert await grpc_channel.health_check() is True
    finally:
        await grpc_channel.dispose()


async def test_an_unknown_health_service_is_unhealthy(server: GRPCServer) -> None:
    grpc_channel = await _channel(server.target, health_service="nobody.v1.Here")
    try:
        with pytest.raises(ResourceError, match=r"service 'nobody\.v1\.Here' .*: NOT_FOUND"):
            await grpc_channel.health_check()
    finally:
        await grpc_channel.dispose()


async def test_a_server_down_is_unhealthy(server: GRPCServer) -> None:
    grpc_channel = await _channel(server.target, timeout=0.5)
    await server.stop()
    try:
        with pytest.raises(ResourceUnavailable, match="is unavailable"):
            await grpc_channel.health_check()
    finally:
        await grpc_channel.dispose()


@pytest.mark.slow
async def test_a_frozen_server_fails_the_check_at_the_timeout(process: GRPCProcess) -> None:
    grpc_channel = await _channel(process.target, timeout=0.3)
    await grpc_channel.call(method(grpc_channel, "Echo"), b"up", idempotent=True)
    process.freeze()  # with the connection up: the check goes out and gets no answer
    try:
        with pytest.raises(ResourceTimeout):
            await grpc_channel.health_check()  # no health service, but no answer at all
    finally:
        process.thaw()
        await grpc_channel.dispose()


async def test_the_container_reports_why_the_channel_is_unhealthy(server: GRPCServer) -> None:
    container = Container()
    container.bind(GRPCConfig, fast_config(server.target))
    container.bind(GRPCChannel)

    async with container:
        await container.aget(GRPCChannel)
        await server.set_serving(False)
        report = await container.health()

    assert report.status is HealthStatus.UNHEALTHY
    line = report.resources["GRPCChannel"]
    assert line.last_error is not None
    assert "NOT_SERVING" in line.last_error


# -- a server without grpc.health.v1 ---------------------------------------------------------


@pytest.fixture
async def bare_server() -> AsyncIterator[GRPCServer]:
    server = await GRPCServer(with_health=False).start()
    yield server
    await server.stop()


async def test_auto_mode_counts_an_answer_without_the_health_service_as_healthy(
    bare_server: GRPCServer,
) -> None:
    grpc_channel = await _channel(bare_server.target)
    try:
        assert await grpc_channel.health_check() is True
    finally:
        await grpc_channel.dispose()


async def test_service_mode_requires_the_health_service(bare_server: GRPCServer) -> None:
    grpc_channel = await _channel(bare_server.target, health_mode="service")
    try:
        with pytest.raises(ResourceError, match="UNIMPLEMENTED"):
            await grpc_channel.health_check()
    finally:
        await grpc_channel.dispose()


async def test_connectivity_mode_is_healthy_once_the_channel_is_ready(
    bare_server: GRPCServer,
) -> None:
    grpc_channel = await _channel(bare_server.target, health_mode="connectivity")
    try:
        assert await grpc_channel.health_check() is True
        assert grpc_channel.statistics().connected == 1
    finally:
        await grpc_channel.dispose()


async def test_connectivity_mode_is_unhealthy_when_nothing_listens(
    bare_server: GRPCServer,
) -> None:
    await bare_server.stop()
    grpc_channel = await _channel(bare_server.target, health_mode="connectivity",
                                  timeout=0.3)
    try:
        with pytest.raises(ResourceUnavailable, match=r"no connection to .* within 0\.3s"):
            await grpc_channel.health_check()
    finally:
        await grpc_channel.dispose()
