"""GRPCChannel against a real grpc.aio server on 127.0.0.1: calls, errors, statistics."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest

from tether import Container, HealthStatus
from tether.exceptions import (
    CircuitOpen,
    ClosedError,
    ResourceError,
    ResourceTimeout,
    ResourceUnavailable,
)
from tether.resources.grpc import GRPCChannel, GRPCConfig, GRPCStats

from .conftest import eventually, fast_config, method
from .servers import GRPCServer

pytestmark = pytest.mark.anyio


# -- calls ------------------------------------------------------------------------------


async def test_a_unary_call_round_trips(channel: GRPCChannel) -> None:
    reply = await channel.call(method(channel, "Echo"), b"hello", idempotent=True)

    assert reply == b"hello"


async def test_metadata_is_sent_with_the_call(channel: GRPCChannel) -> None:
    reply = await channel.call(method(channel, "Echo"), b"x", idempotent=True,
                               metadata=(("x-request-id", "r-1"),))

    assert reply == b"x"


async def test_the_config_timeout_is_the_deadline_of_a_call(server: GRPCServer) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target, timeout=0.2))
    await grpc_channel.initialize()
    try:
        with pytest.raises(ResourceTimeout, match=r"within timeout=0\.2s") as info:
            await grpc_channel.call(method(grpc_channel, "Sleep"), b"5", idempotent=True)
    finally:
        await grpc_channel.dispose()

    assert isinstance(info.value.__cause__, grpc.aio.AioRpcError)
    assert info.value.__cause__.code() is grpc.StatusCode.DEADLINE_EXCEEDED


async def test_a_per_call_deadline_replaces_the_config_timeout(channel: GRPCChannel) -> None:
    with pytest.raises(ResourceTimeout, match=r"within timeout=0\.1s"):
        await channel.call(method(channel, "Sleep"), b"5", idempotent=True, deadline=0.1)

    assert await channel.call(method(channel, "Sleep"), b"0.2", idempotent=True,
                              deadline=10) == b"0.2"


async def test_a_deadline_that_is_not_positive_is_refused(channel: GRPCChannel) -> None:
    with pytest.raises(ValueError, match="deadline must be > 0"):
        await channel.call(method(channel, "Echo"), b"x", idempotent=True, deadline=0)


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["NOT_FOUND", "INVALID_ARGUMENT", "PERMISSION_DENIED",
                                  "FAILED_PRECONDITION", "UNIMPLEMENTED"])
async def test_errors_of_the_caller_pass_through_unchanged(
    channel: GRPCChannel, code: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.call(method(channel, "Fail"), code.encode(), idempotent=True)

    assert info.value.code() is grpc.StatusCode[code]
    assert channel.statistics().failures_by_kind == {code: 1}


@pytest.mark.parametrize("code", ["RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN", "DATA_LOSS"])
async def test_server_faults_are_resource_errors(channel: GRPCChannel, code: str) -> None:
    with pytest.raises(ResourceError, match=f"failed the call: {code}: boom") as info:
        await channel.call(method(channel, "Fail"), code.encode(), idempotent=True)

    assert not isinstance(info.value, ResourceUnavailable | ResourceTimeout)
    assert isinstance(info.value.__cause__, grpc.aio.AioRpcError)


async def test_unavailable_from_the_server_may_have_been_processed(
    server: GRPCServer, channel: GRPCChannel
) -> None:
    server.fail_next = [grpc.StatusCode.UNAVAILABLE]

    with pytest.raises(ResourceUnavailable, match="is unavailable: flaky") as info:
        await channel.call(method(channel, "Flaky"), b"x", idempotent=False)

    assert info.value.sent is True


async def test_an_unknown_method_passes_through_as_unimplemented(
    channel: GRPCChannel,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await channel.call(method(channel, "Nope"), b"x", idempotent=True)

    assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED


# -- policy: retries and the breaker ----------------------------------------------------


async def test_an_idempotent_call_is_retried(server: GRPCServer) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target, max_retries=2))
    await grpc_channel.initialize()
    server.fail_next = [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE]
    try:
        reply = await grpc_channel.call(method(grpc_channel, "Flaky"), b"ok", idempotent=True)
        stats = grpc_channel.statistics()
    finally:
        await grpc_channel.dispose()

    assert reply == b"ok"
    assert server.calls == ["Flaky"] * 3
    assert stats.retries_total == 2
    assert stats.failures_total == 0


async def test_a_call_that_may_have_run_is_not_retried_unless_idempotent(
    server: GRPCServer,
) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target, max_retries=2))
    await grpc_channel.initialize()
    server.fail_next = [grpc.StatusCode.UNAVAILABLE]
    try:
        with pytest.raises(ResourceUnavailable):
            await grpc_channel.call(method(grpc_channel, "Flaky"), b"x", idempotent=False)
    finally:
        await grpc_channel.dispose()

    assert server.calls == ["Flaky"]


async def test_errors_of_the_caller_are_not_retried(server: GRPCServer) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target, max_retries=2))
    await grpc_channel.initialize()
    try:
        with pytest.raises(grpc.aio.AioRpcError):
            await grpc_channel.call(method(grpc_channel, "Fail"), b"NOT_FOUND",
                                    idempotent=True)
    finally:
        await grpc_channel.dispose()

    assert server.calls == ["Fail"]


async def test_the_breaker_opens_on_server_faults(server: GRPCServer) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target, circuit_breaker_threshold=2))
    await grpc_channel.initialize()
    server.fail_next = [grpc.StatusCode.UNAVAILABLE] * 2
    try:
        for _ in range(2):
            with pytest.raises(ResourceUnavailable):
                await grpc_channel.call(method(grpc_channel, "Flaky"), b"x", idempotent=True)
        with pytest.raises(CircuitOpen):
            await grpc_channel.call(method(grpc_channel, "Flaky"), b"x", idempotent=True)
        stats = grpc_channel.statistics()
    finally:
        await grpc_channel.dispose()

    assert server.calls == ["Flaky"] * 2  # the third never reached the server
    assert stats.rejected_total == 1
    assert stats.failures_by_kind["CircuitOpen"] == 1


async def test_errors_of_the_caller_do_not_open_the_breaker(server: GRPCServer) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target, circuit_breaker_threshold=1))
    await grpc_channel.initialize()
    try:
        for _ in range(3):
            with pytest.raises(grpc.aio.AioRpcError):
                await grpc_channel.call(method(grpc_channel, "Fail"), b"NOT_FOUND",
                                        idempotent=True)
        reply = await grpc_channel.call(method(grpc_channel, "Echo"), b"ok", idempotent=True)
    finally:
        await grpc_channel.dispose()

    assert reply == b"ok"


# -- statistics -------------------------------------------------------------------------


async def test_statistics_count_calls_and_failures(channel: GRPCChannel) -> None:
    for _ in range(3):
        await channel.call(method(channel, "Echo"), b"x", idempotent=True)
    with pytest.raises(ResourceTimeout):
        await channel.call(method(channel, "Sleep"), b"5", idempotent=True, deadline=0.1)

    stats = channel.statistics()

    assert isinstance(stats, GRPCStats)
    assert stats.connected == 1
    assert stats.calls_total == 4
    assert stats.failures_total == 1
    assert dict(stats.failures_by_kind) == {"ResourceTimeout": 1}
    assert stats.active == 0
    assert stats.peak == 1
    assert stats.latency_seconds_total > 0


async def test_statistics_see_concurrent_calls(channel: GRPCChannel) -> None:
    await asyncio.gather(*(
        channel.call(method(channel, "Sleep"), b"0.2", idempotent=True) for _ in range(5)))

    assert channel.statistics().peak == 5


# -- lifecycle --------------------------------------------------------------------------


async def test_use_before_initialize_says_how_to_start_it(server: GRPCServer) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target))

    with pytest.raises(ResourceError, match="not initialized"):
        _ = grpc_channel.channel
    with pytest.raises(ResourceError, match="not initialized"):
        await grpc_channel.health_check()


async def test_use_after_dispose_raises_closed_error(server: GRPCServer) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target))
    await grpc_channel.initialize()
    echo = method(grpc_channel, "Echo")
    await grpc_channel.dispose()

    with pytest.raises(ClosedError, match="GRPCChannel 'grpc'"):
        await grpc_channel.call(echo, b"x", idempotent=True)
    with pytest.raises(ClosedError):
        _ = grpc_channel.channel
    with pytest.raises(ClosedError):
        await grpc_channel.health_check()
    with pytest.raises(ClosedError):
        await grpc_channel.initialize()


async def test_dispose_twice_is_harmless(server: GRPCServer) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target))
    await grpc_channel.initialize()

    await grpc_channel.dispose()
    await grpc_channel.dispose()

    assert grpc_channel.statistics().connected == 0


async def test_dispose_of_a_channel_never_initialized_is_harmless(server: GRPCServer) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target))

    await grpc_channel.dispose()

    with pytest.raises(ClosedError):
        await grpc_channel.initialize()


async def test_connect_on_start_fails_when_nothing_listens() -> None:
    probe = await GRPCServer(with_health=False).start()
    await probe.stop()
    grpc_channel = GRPCChannel(fast_config(probe.target, connect_on_start=True, timeout=0.5))

    with pytest.raises(ResourceUnavailable, match=r"no connection to 127\.0\.0\.1") as info:
        await grpc_channel.initialize()

    assert info.value.sent is False


async def test_connect_on_start_connects(server: GRPCServer) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target, connect_on_start=True))
    await grpc_channel.initialize()
    try:
        assert grpc_channel.statistics().connected == 1
    finally:
        await grpc_channel.dispose()


# -- through a container ----------------------------------------------------------------


async def test_container_builds_checks_and_disposes_the_channel(server: GRPCServer) -> None:
    container = Container()
    container.bind(GRPCConfig, fast_config(server.target))
    container.bind(GRPCChannel)

    async with container:
        grpc_channel = await container.aget(GRPCChannel)
        assert await grpc_channel.call(method(grpc_channel, "Echo"), b"c",
                                       idempotent=True) == b"c"
        report = await container.health()
        assert report.status is HealthStatus.HEALTHY

    with pytest.raises(ClosedError):
        _ = grpc_channel.channel


async def test_container_runs_named_channels_side_by_side() -> None:
    users, billing = await GRPCServer().start(), await GRPCServer().start()
    container = Container()
    container.bind(GRPCChannel, GRPCChannel(fast_config(users.target, name="users")),
                   name="users")
    container.bind(GRPCChannel, GRPCChannel(fast_config(billing.target, name="billing")),
                   name="billing")
    try:
        async with container:
            a = await container.aget(GRPCChannel, name="users")
            b = await container.aget(GRPCChannel, name="billing")
            await a.call(method(a, "Echo"), b"u", idempotent=True)
            await b.call(method(b, "Echo"), b"b", idempotent=True)
            await b.call(method(b, "Echo"), b"b", idempotent=True)
            report = await container.health()
            assert report.status is HealthStatus.HEALTHY
            assert len(report.resources) == 2
    finally:
        await users.stop()
        await billing.stop()

    assert users.calls == ["Echo"]
    assert billing.calls == ["Echo", "Echo"]


async def test_container_health_follows_the_server(server: GRPCServer) -> None:
    container = Container()
    container.bind(GRPCConfig, fast_config(server.target, timeout=1.0))
    container.bind(GRPCChannel)

    async with container:
        await container.aget(GRPCChannel)
        assert (await container.health()).status is HealthStatus.HEALTHY
        await server.stop()
        assert (await container.health()).status is HealthStatus.UNHEALTHY
        await server.start()

        async def healthy_again() -> bool:
            return (await container.health()).status is HealthStatus.HEALTHY

        await eventually(healthy_again)
