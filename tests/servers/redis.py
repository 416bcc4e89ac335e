"""A real redis-server for tests, on a free loopback port in a temporary folder.

    def test_counts(redis_server: RedisServer) -> None:
        redis_server.command("SET", "k", "1")
        redis_server.kill()          # SIGKILL: a crash
        redis_server.restart()       # the same port, the data gone
        with redis_server.frozen():  # SIGSTOP ... SIGCONT: a hung server
            ...

Import the fixtures into a ``conftest.py`` to use them (``from tests.servers.redis
import redis_server  # noqa: F401``): ``redis_server`` is a fresh server per test
(about 20 ms to start), ``redis_cluster`` three cluster nodes per test module (about
2.5 s: Redis holds a new cluster unwritable for 2 s after start-up).

The server runs in the foreground under ``subprocess.Popen`` rather than with
``--daemonize yes``: the test then owns the process, reaps it after a SIGKILL and
never leaves one behind. ``command()`` speaks RESP over a socket of its own, so a
test can read the server's state without going through the client under test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pytest

from tests.conftest import require_or_skip

__all__ = [
    "RedisClusterNodes",
    "RedisServer",
    "ReplyError",
    "find_redis_server",
    "free_port",
    "redis_cluster",
    "redis_server",
]

HOST = "127.0.0.1"
START_TIMEOUT = 15.0  # generous: other test processes share the two cores

Reply = bytes | str | int | None | list["Reply"]
Arg = str | bytes | int | float


class ReplyError(Exception):
    """The server answered a ``command()`` with an error reply (``-ERR ...``)."""


def find_redis_server() -> str:
    """The redis-server binary, or skip the test (fail it when TETHER_REQUIRE_ALL is set)."""
    path = shutil.which("redis-server")
    if path is None:
        require_or_skip("redis-server not found")
    return path


def free_port() -> int:
    """A loopback port nobody listens on right now (it may be taken before it is used)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free port P with P + 10000 free too: a cluster node also listens on its bus
    port, 10000 higher, so P must be at most 55535."""
    for _ in range(200):
        port = free_port()
        if port <= 55535 and _bindable(port + 10000):
            return port
    raise RuntimeError("found no free port pair for a cluster node")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


class RedisServer:
    """One redis-server process that a test may stop, kill, freeze and restart.

    ``password`` starts it with ``--requirepass``; ``cluster`` with cluster mode on
    (see ``RedisClusterNodes``); ``unix_socket`` also listens on that path (keep it under
    about 100 characters: the kernel's limit). The data lives in memory only (``--save ""``,
    ``--appendonly no``), so a restart comes back empty. ``DEBUG`` is allowed from
    loopback (``DEBUG SLEEP n`` freezes the server from the inside).
    """

    def __init__(
        self,
        directory: Path,
        *,
        password: str | None = None,
        cluster: bool = False,
        port: int | None = None,
        unix_socket: Path | None = None,
    ) -> None:
        self.directory = directory
        self.password = password
        self.cluster = cluster
        self.unix_socket = unix_socket
        self.host = HOST
        self.port = port if port is not None else self._pick_port()
        self._fixed_port = port is not None
        self._process: subprocess.Popen[bytes] | None = None
        self._log = directory / "redis.log"

    # -- addresses ---------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the redis-server is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        for attempt in range(3):
            try:
                self._spawn()
                return
            except _PortTaken:
                # Another test process took the port between free_port() and the bind.
                if self._fixed_port or attempt == 2:
                    raise
                self.port = self._pick_port()

    def restart(self) -> None:
        """Start again on the same port (after ``stop()`` or ``kill()``)."""
        self._fixed_port = True
        self.start()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait for the process to exit (a clean shutdown)."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL and wait until the process is gone: a crash."""
        self._signal_and_wait(signal.SIGKILL, timeout)

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its sockets (the kernel still accepts connections)
        but answers nothing until ``thaw()``."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        self.freeze()
        try:
            yield
        finally:
            self.thaw()

    def close(self) -> None:
        """Kill the process if it still runs (the fixtures call this at teardown)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it may exit on its own meanwhile
                os.kill(self._process.pid, signal.SIGCONT)  # a frozen process cannot die
            self._process.kill()
        self._process.wait(timeout=10)
        self._process = None

    @contextlib.contextmanager
    def sleeping(self, seconds: float) -> Iterator[None]:
        """``DEBUG SLEEP seconds``: the server freezes from the inside.

        Enters once the server has stopped answering (a PING on another connection
        went unanswered), so a call made inside the block surely meets the frozen
        server; leaves once the sleep has ended.
        """
        with socket.create_connection(self.address, timeout=seconds + START_TIMEOUT) as sock:
            stream = sock.makefile("rb")
            try:
                if self.password:
                    sock.sendall(encode_command(("AUTH", self.password)))
                    read_reply(stream)
                sock.sendall(encode_command(("DEBUG", "SLEEP", seconds)))
                self._wait_unanswered(deadline=time.monotonic() + seconds)
                yield
                read_reply(stream)  # "+OK" comes when the sleep is over
            finally:
                stream.close()

    def _wait_unanswered(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                self.command("PING", timeout=0.1)
            except TimeoutError:
                return
            time.sleep(0.005)
        raise RuntimeError("the server kept answering PING during DEBUG SLEEP")

    # -- talking to it -------------------------------------------------------------

    def command(self, *args: Arg, timeout: float = 10.0) -> Reply:
        """Send one command on a fresh connection and return the reply.

        Authenticates first when the server has a password. An error reply raises
        ``ReplyError``; simple strings come back as ``str``, bulk strings as ``bytes``.
        """
        with socket.create_connection(self.address, timeout=timeout) as sock:
            stream = sock.makefile("rb")
            try:
                if self.password:
                    sock.sendall(encode_command(("AUTH", self.password)))
                    read_reply(stream)
                sock.sendall(encode_command(args))
                return read_reply(stream)
            finally:
                stream.close()

    def info(self, section: str) -> dict[str, str]:
        """``INFO <section>`` as a dict of its ``key:value`` lines."""
        reply = self.command("INFO", section)
        if not isinstance(reply, bytes):
            raise TypeError(f"INFO replied {reply!r}")
        out: dict[str, str] = {}
        for line in reply.decode().splitlines():
            key, sep, value = line.partition(":")
            if sep and not key.startswith("#"):
                out[key] = value
        return out

    # -- internals -------------------------------------------------------------------

    def _pick_port(self) -> int:
        return free_cluster_port() if self.cluster else free_port()

    def _arguments(self) -> list[str]:
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--dir", str(self.directory),
            "--logfile", str(self._log),
            "--enable-debug-command", "local",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        if self.unix_socket is not None:
            args += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        if self.cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000",
            ]
        return args

    def _spawn(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        log_size = self._log.stat().st_size if self._log.exists() else 0
        process = subprocess.Popen(
            self._arguments(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, cwd=self.directory,
        )
        self._process = process
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                self._process = None
                log = self._log_since(log_size)
                if "Address already in use" in log:
                    raise _PortTaken(log)
                raise RuntimeError(f"redis-server exited with {process.returncode}:\n{log}")
            try:
                if self.command("PING", timeout=1.0) == "PONG":
                    return
            except (OSError, ReplyError):
                pass  # not listening yet, or still loading
            if time.monotonic() > deadline:
                self.close()
                raise RuntimeError(
                    f"redis-server did not answer PING within {START_TIMEOUT}s:\n"
                    f"{self._log_since(log_size)}"
                )
            time.sleep(0.01)

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        process = self._process
        if process is None:
            raise RuntimeError("the redis-server is not running")
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)  # a frozen process ignores SIGTERM
            process.send_signal(sig)
        process.wait(timeout=timeout)
        self._process = None

    def _log_since(self, offset: int) -> str:
        try:
            with self._log.open("rb") as f:
                f.seek(offset)
                return f.read().decode(errors="replace")[-4000:]
        except FileNotFoundError:
            return "(no log written)"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.host}:{self.port} {state}>"


class _PortTaken(RuntimeError):
    pass


class RedisClusterNodes:
    """Three redis-server nodes in cluster mode, each a primary with a third of the
    slots and no replicas.

    Built with ``CLUSTER ADDSLOTSRANGE`` and ``CLUSTER MEET`` rather than
    ``redis-cli --cluster create``, which sleeps a second per step.
    """

    SLOTS = ((0, 5460), (5461, 10922), (10923, 16383))

    def __init__(self, directory: Path) -> None:
        self.nodes = [
            RedisServer(directory / f"node{i}", cluster=True) for i in range(len(self.SLOTS))
        ]

    @property
    def url(self) -> str:
        """A ``redis+cluster://`` URL naming the first node (the others are discovered)."""
        first = self.nodes[0]
        return f"redis+cluster://{first.host}:{first.port}"

    def start(self, timeout: float = 20.0) -> None:
        for node in self.nodes:
            node.start()
        for node, (low, high) in zip(self.nodes, self.SLOTS, strict=True):
            node.command("CLUSTER", "ADDSLOTSRANGE", low, high)
        for node in self.nodes[1:]:
            self.nodes[0].command("CLUSTER", "MEET", node.host, node.port)
        deadline = time.monotonic() + timeout
        while not all(self._ready(node) for node in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster was not ready within {timeout}s")
            time.sleep(0.05)

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def _ready(self, node: RedisServer) -> bool:
        info = node.command("CLUSTER", "INFO")
        if not isinstance(info, bytes) or b"cluster_state:ok" not in info:
            return False
        # Every node must know all three, or a client may be sent to a stranger.
        nodes = node.command("CLUSTER", "NODES")
        return isinstance(nodes, bytes) and nodes.count(b" connected") == len(self.nodes)


# -- RESP, the little that command() needs ----------------------------------------------


def encode_command(args: Sequence[Arg]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def read_reply(stream: _Readable) -> Reply:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("the server closed the connection mid-reply")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        raise ReplyError(body.decode())
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        if size < 0:
            return None
        data = stream.read(size + 2)
        return data[:-2]
    if kind == b"*":
        count = int(body)
        return None if count < 0 else [read_reply(stream) for _ in range(count)]
    raise ConnectionError(f"not a RESP2 reply: {line!r}")


class _Readable(Protocol):  # the part of a binary file that read_reply uses
    def readline(self) -> bytes: ...
    def read(self, size: int) -> bytes: ...


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test, killed at teardown whatever state it is in."""
    find_redis_server()
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    """A three-node Redis Cluster shared by one test module."""
    find_redis_server()
    cluster = RedisClusterNodes(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()
