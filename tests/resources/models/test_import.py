"""Importing the battery: one line naming the extra when pydantic is missing, and no
heavy import (NumPy, PyTorch, FastAPI) when it is there."""

from __future__ import annotations

import subprocess
import sys

MESSAGE = "tether.resources.models needs the 'models' extra: pip install 'tether[models]'"


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return out.stdout.strip()


def test_importing_without_pydantic_names_the_extra_in_one_line() -> None:
    code = (
        "import sys; sys.modules['pydantic'] = None\n"
        "try:\n    import tether.resources.models\nexcept ImportError as e:\n    print(e)\n"
    )

    assert _run(code) == MESSAGE


def test_importing_the_battery_imports_no_model_library() -> None:
    code = (
        "import sys, tether.resources.models\n"
        "print(sorted(m for m in ('numpy', 'torch', 'fastapi') if m in sys.modules))\n"
    )

    assert _run(code) == "[]"
