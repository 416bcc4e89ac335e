"""The server goes away and comes back (scenario P12): errors within the deadline, the
channel reconnects, close(grace) stays bounded."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest

from tether.exceptions import ResourceTimeout, ResourceUnavailable
from tether.resources.grpc import GRPCChannel

from .conftest import eventually, fast_config, method
from .servers import GRPCProcess, GRPCServer

pytestmark = pytest.mark.anyio


# -- stopped, then started ---------------------------------------------------------------


async def test_a_stopped_server_fails_calls_as_never_sent(
    server: GRPCServer, channel: GRPCChannel
) -> None:
    await channel.call(method(channel, "Echo"), b"up", idempotent=True)
    await server.stop()

    with pytest.raises(ResourceUnavailable, match="failed to connect to all addresses") \
            as info:
        await channel.call(method(channel, "Echo"), b"down", idempotent=False)

    assert info.value.sent is False
    assert isinstance(info.value.__cause__, grpc.aio.AioRpcError)


async def test_a_call_that_never_left_is_retried_even_when_not_idempotent(
    server: GRPCServer,
) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target, max_retries=1))
    await grpc_channel.initialize()
    await server.stop()
    try:
        with pytest.raises(ResourceUnavailable):
            await grpc_channel.call(method(grpc_channel, "Echo"), b"x", idempotent=False)
        stats = grpc_channel.statistics()
    finally:
        await grpc_channel.dispose()

    assert stats.retries_total == 1


async def test_the_channel_reconnects_when_the_server_is_back(
    server: GRPCServer, channel: GRPCChannel
) -> None:
    await server.stop()
    with pytest.raises(ResourceUnavailable):
        await channel.call(method(channel, "Echo"), b"x", idempotent=True)

    await server.start()

    async def answers() -> bool:
        try:
            return await channel.call(method(channel, "Echo"), b"x", idempotent=True) == b"x"
        except ResourceUnavailable:
            return False

    await eventually(answers)
    assert channel.statistics().connected == 1


async def test_wait_for_ready_holds_the_call_until_the_server_is_back(
    server: GRPCServer,
) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target, wait_for_ready=True, timeout=30))
    await grpc_channel.initialize()
    await server.stop()
    try:
        call = asyncio.create_task(
            grpc_channel.call(method(grpc_channel, "Echo"), b"held", idempotent=False))
        await asyncio.sleep(0.3)
        assert not call.done()

        await server.start()

        async with asyncio.timeout(20):
            assert await call == b"held"
    finally:
        await grpc_channel.dispose()


async def test_wait_for_ready_still_ends_at_the_deadline(server: GRPCServer) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target, wait_for_ready=True, timeout=0.3))
    await grpc_channel.initialize()
    await server.stop()
    try:
        with pytest.raises(ResourceTimeout, match=r"within timeout=0\.3s"):
            await grpc_channel.call(method(grpc_channel, "Echo"), b"x", idempotent=True)
    finally:
        await grpc_channel.dispose()


# -- frozen or killed (a server in its own process) -----------------------------------------


@pytest.mark.slow
async def test_a_frozen_server_fails_the_call_at_its_deadline(process: GRPCProcess) -> None:
    grpc_channel = GRPCChannel(fast_config(process.target, timeout=0.5))
    await grpc_channel.initialize()
    try:
        await grpc_channel.call(method(grpc_channel, "Echo"), b"up", idempotent=True)
        process.freeze()

        with pytest.raises(ResourceTimeout, match=r"within timeout=0\.5s") as info:
            await grpc_channel.call(method(grpc_channel, "Echo"), b"x", idempotent=True)
    finally:
        process.thaw()
        await grpc_channel.dispose()

    assert isinstance(info.value.__cause__, grpc.aio.AioRpcError)
    assert info.value.__cause__.code() is grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.slow
async def test_a_server_killed_mid_call_may_have_processed_it(process: GRPCProcess) -> None:
    grpc_channel = GRPCChannel(fast_config(process.target, timeout=30))
    await grpc_channel.initialize()
    try:
        await grpc_channel.call(method(grpc_channel, "Echo"), b"up", idempotent=True)
        call = asyncio.create_task(
            grpc_channel.call(method(grpc_channel, "Sleep"), b"30", idempotent=False))
        await asyncio.sleep(0.3)  # the request is on the server now

        process.stop()

        with pytest.raises(ResourceUnavailable) as info:
            async with asyncio.timeout(20):
                await call
    finally:
        await grpc_channel.dispose()

    assert info.value.sent is True


# -- close(grace) at dispose -----------------------------------------------------------------


async def test_dispose_cancels_a_call_still_running_after_the_grace(
    server: GRPCServer,
) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target, close_grace=0.2, timeout=60))
    await grpc_channel.initialize()
    call = asyncio.create_task(
        grpc_channel.call(method(grpc_channel, "Sleep"), b"30", idempotent=True))
    await eventually(lambda: _true(server.calls == ["Sleep"]))

    async with asyncio.timeout(10):
        await grpc_channel.dispose()

    with pytest.raises(ResourceUnavailable, match="closed \\(dispose\\) while the call was "
                       "in flight"):
        await call


async def test_dispose_lets_a_call_finish_within_the_grace(server: GRPCServer) -> None:
    grpc_channel = GRPCChannel(fast_config(server.target, close_grace=10))
    await grpc_channel.initialize()
    call = asyncio.create_task(
        grpc_channel.call(method(grpc_channel, "Sleep"), b"0.3", idempotent=True))
    await eventually(lambda: _true(server.calls == ["Sleep"]))

    await grpc_channel.dispose()

    assert await call == b"0.3"


@pytest.mark.slow
async def test_dispose_is_bounded_when_the_server_is_frozen(process: GRPCProcess) -> None:
    grpc_channel = GRPCChannel(fast_config(process.target, close_grace=0.2, timeout=60))
    await grpc_channel.initialize()
    await grpc_channel.call(method(grpc_channel, "Echo"), b"up", idempotent=True)
    process.freeze()
    call = asyncio.create_task(
        grpc_channel.call(method(grpc_channel, "Echo"), b"x", idempotent=True))
    await asyncio.sleep(0.1)
    try:
        async with asyncio.timeout(10):
            await grpc_channel.dispose()
    finally:
        process.thaw()

    with pytest.raises(ResourceUnavailable):
        await call


async def _true(value: bool) -> bool:
    return value
