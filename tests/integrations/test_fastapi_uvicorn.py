"""tether.fastapi under a real uvicorn on loopback: client disconnects, streaming,
WebSockets, and a graceful drain on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int, events: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.events = events

    def log(self) -> list[str]:
        if not self.events.exists():
            return []
        return self.events.read_text(encoding="utf-8").splitlines()

    def wait_for(self, line: str, timeout: float = 10, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.log().count(line) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{line!r} not logged {count} time(s); log: {self.log()}")
            time.sleep(0.02)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    events = tmp_path / "events.log"
    env = dict(os.environ, TETHER_EVENTS=str(events), TETHER_DRAIN="5")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.integrations.apps.served:app",
         "--host", "127.0.0.1", "--port", str(port), "--lifespan", "on",
         "--timeout-graceful-shutdown", "10", "--log-level", "warning"],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    running = Server(process, port, events)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("uvicorn did not start") from None
                time.sleep(0.05)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_requests_over_real_http_get_and_return_their_resources(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):
            assert client.get("/ping").text == '"pong"'
    server.wait_for("connection returned (pool closed=False)", count=3)
    assert server.log().count("connection returned (pool closed=False)") == 3


def test_a_client_that_disconnects_mid_request_still_gets_its_scope_closed(
    server: Server,
) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(b"GET /slow?seconds=0.3 HTTP/1.1\r\nHost: test\r\n\r\n")
        server.wait_for("slow started")
    # The client is gone; the handler runs to its end and the scope is closed.
    server.wait_for("slow finished")
    server.wait_for("connection returned (pool closed=False)")


def test_a_streaming_response_over_http_keeps_its_scope_until_the_end(server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        body = client.get("/stream").text
    assert body.count("\n") == 50
    server.wait_for("connection returned (pool closed=False)")
    log = server.log()
    assert log.index("stream finished") < log.index("connection returned (pool closed=False)")


def test_a_websocket_over_a_real_server_has_one_scope(server: Server) -> None:
    from websockets.sync.client import connect

    with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        ws.send("hi")
        assert ws.recv() == "HI"
    server.wait_for("connection returned (pool closed=False)")


def test_sigterm_drains_in_flight_requests_before_disposing(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as client:
        import threading

        result: dict[str, int] = {}

        def call() -> None:
            result["status"] = client.get("/slow", params={"seconds": 1.0}).status_code

        worker = threading.Thread(target=call)
        worker.start()
        server.wait_for("slow started")
        server.process.send_signal(signal.SIGTERM)
        worker.join(timeout=20)
    assert result == {"status": 200}
    # uvicorn re-raises the signal once its shutdown is complete.
    assert server.process.wait(timeout=20) in (0, -signal.SIGTERM)
    log = server.log()
    assert log.index("slow finished") < log.index("pool disposed")
    assert log[-1] == "pool disposed"
