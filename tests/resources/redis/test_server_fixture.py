"""The redis-server fixture itself: what the fault tests rely on it to do."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_ALL
from tests.servers.redis import RedisServer, ReplyError, find_redis_server


def _refused(server: RedisServer) -> bool:
    try:
        socket.create_connection(server.address, timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_server_answers_commands(redis_server: RedisServer) -> None:
    assert redis_server.command("SET", "k", "v") == "OK"
    assert redis_server.command("GET", "k") == b"v"
    assert redis_server.command("INCR", "n") == 1
    assert redis_server.info("server")["tcp_port"] == str(redis_server.port)


def test_error_reply_raises_reply_error(redis_server: RedisServer) -> None:
    redis_server.command("SET", "k", "v")

    with pytest.raises(ReplyError, match="WRONGTYPE"):
        redis_server.command("LPUSH", "k", "x")


def test_kill_closes_the_port(redis_server: RedisServer) -> None:
    redis_server.kill()

    assert not redis_server.running
    assert _refused(redis_server)


def test_restart_after_kill_serves_on_the_same_port_with_no_data(
    redis_server: RedisServer,
) -> None:
    port = redis_server.port
    redis_server.command("SET", "k", "v")
    redis_server.kill()

    redis_server.restart()

    assert redis_server.port == port
    assert redis_server.command("GET", "k") is None


def test_stop_then_restart_serves_again(redis_server: RedisServer) -> None:
    redis_server.stop()
    assert _refused(redis_server)

    redis_server.restart()

    assert redis_server.command("PING") == "PONG"


def test_frozen_server_accepts_connections_but_answers_nothing(
    redis_server: RedisServer,
) -> None:
    with redis_server.frozen(), pytest.raises(TimeoutError):
        redis_server.command("PING", timeout=0.2)

    assert redis_server.command("PING") == "PONG"


@pytest.mark.slow
def test_sleeping_server_answers_once_the_sleep_ends(redis_server: RedisServer) -> None:
    with redis_server.sleeping(1), pytest.raises(TimeoutError):
        redis_server.command("PING", timeout=0.1)
    started = time.monotonic()

    assert redis_server.command("PING", timeout=0.5) == "PONG"
    assert time.monotonic() - started < 0.5  # the block left after the sleep, not before


def test_password_server_refuses_clients_without_it(tmp_path: Path) -> None:
    find_redis_server()
    server = RedisServer(tmp_path / "r", password="s3cret-pw")
    server.start()
    try:
        with socket.create_connection(server.address, timeout=5) as sock:
            sock.sendall(b"PING\r\n")
            assert sock.recv(100).startswith(b"-NOAUTH")
        assert server.command("PING") == "PONG"  # command() authenticates
        assert server.url == f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
    finally:
        server.close()


def test_close_kills_a_frozen_server(redis_server: RedisServer) -> None:
    redis_server.freeze()

    redis_server.close()

    assert _refused(redis_server)


def test_missing_binary_skips_the_test(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(REQUIRE_ALL, raising=False)

    with pytest.raises(pytest.skip.Exception, match="redis-server not found"):
        find_redis_server()


def test_missing_binary_fails_the_test_when_everything_is_required(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv(REQUIRE_ALL, "1")

    with pytest.raises(pytest.fail.Exception, match="redis-server not found"):
        find_redis_server()
