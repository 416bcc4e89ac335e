from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from tests.waiting import eventually as eventually
from tether.resources.grpc import GRPCChannel, GRPCConfig

from .servers import GRPCProcess, GRPCServer

# Reconnect within a few hundred milliseconds instead of gRPC's default second or more.
FAST_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.min_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": 300,
}


def fast_config(target: str, **options: Any) -> GRPCConfig:
    channel_options = {**FAST_OPTIONS, **options.pop("options", {})}
    return GRPCConfig(target=target, options=channel_options,
                      **{"secure": False, "timeout": 5.0, **options})


def method(channel: GRPCChannel, name: str) -> Callable[..., Awaitable[bytes]]:
    """A bytes-in, bytes-out callable for ``/test.Echo/<name>``."""
    return channel.channel.unary_unary(f"/test.Echo/{name}")  # type: ignore[no-any-return]


@pytest.fixture(scope="package")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="package", autouse=True)
async def one_event_loop(anyio_backend: str) -> None:
    """Run this package's tests on one event loop.

    grpc.aio ties each channel and server to the loop it was made on, and its poller
    hands late completions (a closed channel's last events) to that loop; with a fresh
    loop per test they reach a closed loop and fail the next test. An application runs
    one loop, so this is a property of the test harness, not of the battery. (anyio
    keeps its runner, and so the loop, while a package-scoped async fixture is alive;
    naming ``anyio_backend`` lets anyio run it for the plain tests too.)
    """


@pytest.fixture
async def server() -> AsyncIterator[GRPCServer]:
    echo = await GRPCServer().start()
    yield echo
    await echo.stop()


@pytest.fixture
def process() -> Iterator[GRPCProcess]:
    child = GRPCProcess().start()
    yield child
    child.stop()


@pytest.fixture
async def channel(server: GRPCServer) -> AsyncIterator[GRPCChannel]:
    grpc_channel = GRPCChannel(fast_config(server.target))
    await grpc_channel.initialize()
    yield grpc_channel
    await grpc_channel.dispose()
