from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from tests.waiting import eventually as eventually
from tether.resources.websocket import WebSocketClient, WebSocketConfig

from .servers import EchoProcess, EchoServer

# Short intervals, so that a lost peer is noticed and a reconnect lands in well under
# a second; the waits in the tests are generous (a 2-core machine shared with others).
FAST: dict[str, Any] = {
    "ping_interval": 0.2,
    "ping_timeout": 0.2,
    "open_timeout": 0.5,
    "close_timeout": 0.5,
    "backoff_initial": 0.05,
    "backoff_max": 0.2,
    "trust_env": False,
}


def fast_config(url: str, **options: Any) -> WebSocketConfig:
    return WebSocketConfig(url=SecretStr(url), **{**FAST, **options})


@pytest.fixture
async def server() -> AsyncIterator[EchoServer]:
    echo = await EchoServer().start()
    yield echo
    await echo.stop()


@pytest.fixture
def process() -> Iterator[EchoProcess]:
    child = EchoProcess().start()
    yield child
    child.stop()


@pytest.fixture
async def client(server: EchoServer) -> AsyncIterator[WebSocketClient]:
    ws = WebSocketClient(fast_config(server.url))
    await ws.initialize()
    yield ws
    await ws.dispose()
