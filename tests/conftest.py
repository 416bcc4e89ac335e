from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    # tether runs on asyncio; anyio's cancel scopes on asyncio are tested too.
    return "asyncio"
