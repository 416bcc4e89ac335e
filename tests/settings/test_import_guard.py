"""Without the 'settings' extra, importing tether.settings fails with one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

MESSAGE = "tether.settings needs the 'settings' extra: pip install 'tether[settings]'"


@pytest.mark.parametrize("missing", ["pydantic_settings", "yaml"])
def test_importing_without_the_extra_names_it_in_one_line(missing: str) -> None:
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"
        "try:\n    import tether.settings\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert out.stdout.strip() == MESSAGE
