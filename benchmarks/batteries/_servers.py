"""The real servers the network benchmarks talk to, all on loopback.

Redis and PostgreSQL are started with the test suite's own fixtures' classes
(``tests/servers/``), so the benchmark must run from the repository root; the HTTP
server is ``_http_server`` in a process of its own. The orchestrator starts each
server once for the whole run and hands its URL to every worker.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SERVERS = ("redis", "postgres", "http")
_START_TIMEOUT = 30.0


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    from tests.servers.redis import RedisServer

    folder = Path(tempfile.mkdtemp(prefix="tether-bench-redis-"))
    server = RedisServer(folder / "redis")
    try:
        server.start()
        yield server.url
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    from tests.servers.postgres import start_postgres

    with start_postgres() as server:
        yield server.url()


@contextlib.contextmanager
def http_server() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.batteries._http_server"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
    )
    try:
        if process.stdout is None:
            raise RuntimeError("the HTTP server's stdout is not a pipe")
        line = process.stdout.readline().strip()  # "port N", printed once it listens
        if not line.startswith("port "):
            raise RuntimeError(f"the HTTP server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


_STARTERS = {"redis": redis_server, "postgres": postgres_server, "http": http_server}


def start(stack: contextlib.ExitStack, name: str) -> tuple[str | None, str | None]:
    """(URL, None) once the server runs, or (None, why it could not start)."""
    try:
        return stack.enter_context(_STARTERS[name]()), None
    except (Exception, pytest.skip.Exception, pytest.fail.Exception) as error:
        # tests.servers skips (pytest.skip) when a server binary is missing.
        reason = (str(error) or type(error).__name__).splitlines()[0][:200]
        return None, f"{name} server did not start: {reason}"


def http_stats(base_url: str) -> dict[str, Any]:
    """The HTTP server's counters (this request opens one connection of its own)."""
    with urllib.request.urlopen(f"{base_url}/stats", timeout=_START_TIMEOUT) as reply:
        stats: dict[str, Any] = json.loads(reply.read())
    return stats
