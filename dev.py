#!/usr/bin/env python3
"""Project tasks that work on a fresh machine with only Python 3.11+ and git.

    python3 dev.py demo     start the demo service (http://127.0.0.1:8000)
    python3 dev.py test     lint, type-check and run the whole test suite
    python3 dev.py bench    run the benchmarks and rewrite docs/benchmarks.md
    python3 dev.py bench-batteries  run the batteries' benchmarks (needs redis-server
                            and PostgreSQL) and rewrite benchmarks/batteries/results.md
    python3 dev.py example  run the plain-asyncio example (examples/notes.py)

The first run installs uv into .tools/ and the project into .venv/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
TOOLS = ROOT / ".tools"
BIN = "Scripts" if os.name == "nt" else "bin"


def uv() -> str:
    exe = TOOLS / BIN / "uv"
    if not exe.exists():
        print("dev.py: installing uv into .tools/ (first run only)", flush=True)
        venv.create(TOOLS, with_pip=True)
        subprocess.run(
            [str(TOOLS / BIN / "python"), "-m", "pip", "install", "--quiet", "uv"], check=True
        )
    return str(exe)


def run(*args: str) -> None:
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never", UV_PYTHON=sys.executable)
    code = subprocess.run(list(args), cwd=ROOT, env=env).returncode
    if code:
        raise SystemExit(code)


def sync(*groups: str) -> None:
    extra = [f"--group={g}" for g in groups]
    run(uv(), "sync", "--quiet", "--all-extras", *extra)


def main(argv: list[str]) -> None:
    task, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if task == "demo":
        sync()
        run(uv(), "run", "--no-sync", "python", "-m", "tether.demo", *rest)
    elif task == "example":
        sync()
        run(uv(), "run", "--no-sync", "python", "-m", "examples.notes", *rest)
    elif task == "test":
        sync()
        run(uv(), "run", "--no-sync", "ruff", "check", "src", "tests", "typing_tests", "examples")
        run(uv(), "run", "--no-sync", "mypy")
        run(uv(), "run", "--no-sync", "pytest", *rest)
    elif task == "bench":
        sync("bench")
        run(uv(), "run", "--no-sync", "python", "-m", "benchmarks", *rest)
    elif task == "bench-batteries":
        sync("bench")
        run(uv(), "run", "--no-sync", "python", "-m", "benchmarks.batteries", *rest)
    else:
        print(__doc__)
        raise SystemExit(0 if task == "help" else 2)


if __name__ == "__main__":
    main(sys.argv[1:])
