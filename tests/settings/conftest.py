from __future__ import annotations

import os
from pathlib import Path

import pytest

PREFIX = "TTEST_"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory (so no stray .env is read) and an environment with
    none of the test prefix's variables."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith(PREFIX) or name.upper() == "TETHER_PROFILE":
            monkeypatch.delenv(name)
    return tmp_path
