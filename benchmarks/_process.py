"""Running one benchmark worker in a fresh process and reading its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def run_json_worker(
    module: str, name: str, args: Sequence[str], *, key: str, timeout: float
) -> dict[str, Any]:
    """``python -m module name *args``; its last stdout line is the result. A crash, a
    timeout or bad output becomes ``{key: name, "skipped": reason}``."""
    command = [sys.executable, "-m", module, name, *args]
    try:
        proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {key: name, "skipped": f"worker timed out after {timeout:g} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == 0 and lines:
        try:
            result: dict[str, Any] = json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
        else:
            return result
    err = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {key: name, "skipped": f"worker exited {proc.returncode}: {err[:300]}"}
