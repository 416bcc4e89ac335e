from __future__ import annotations

import pytest

# Every core test runs on the plain builders, on generated code from the first call,
# and on the default promotion after the second call.
MODES = {"plain": "1000000000", "compiled": "0", "tiered": "2"}


@pytest.fixture(autouse=True, params=list(MODES))
def compile_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TETHER_COMPILE_AFTER", MODES[request.param])
    mode: str = request.param
    return mode
