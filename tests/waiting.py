"""Waiting for something a test cannot await directly."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable

import pytest


async def eventually(
    predicate: Callable[[], bool] | Callable[[], Awaitable[bool]],
    timeout: float = 15.0,
    what: str = "condition",
) -> None:
    """Wait until ``predicate()`` (or ``await predicate()``) holds; fail the test after
    ``timeout`` seconds. Generous by default: other processes share the machine."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not met within {timeout}s")
        await asyncio.sleep(0.01)
