from __future__ import annotations

import os
from collections.abc import Callable
from typing import NoReturn

import pytest

REQUIRE_ALL = "TETHER_REQUIRE_ALL"


def require_or_skip(reason: str) -> NoReturn:
    """Skip a test whose outside part (a browser, a server binary) is missing, or fail it
    when ``TETHER_REQUIRE_ALL`` is set: CI sets it, so nothing is skipped there silently."""
    if os.environ.get(REQUIRE_ALL):
        pytest.fail(f"{reason} ({REQUIRE_ALL} is set, so this cannot be skipped)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(name="require_or_skip")
def require_or_skip_fixture() -> Callable[[str], NoReturn]:
    return require_or_skip


@pytest.fixture
def anyio_backend() -> str:
    # tether runs on asyncio; anyio's cancel scopes on asyncio are tested too.
    return "asyncio"
