"""A real PostgreSQL server for tests: its own cluster in a temporary folder, on a free
loopback port, started from the server binaries, so a test may restart, crash and
freeze it.

    from tests.servers.postgres import postgres_server   # in a conftest: the fixture

    async def test_x(postgres_server: PostgresServer) -> None:
        url = postgres_server.url()
        await postgres_server.terminate("my-test")

``postgres_server`` is session-scoped (one cluster for the whole run, about a second
to start); ``start_postgres()`` gives a private one for a test that breaks it.

initdb and pg_ctl refuse to run as root, so as root they run as ``nobody`` (through
runuser) in a folder that user owns. Every role logs in without a password
(``trust``) except the ones ``create_role()`` makes: those are members of
``password_login`` and must give their password (scram-sha-256), as in production.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_or_skip

__all__ = ["PostgresServer", "find_bindir", "postgres_server", "start_postgres"]

ADMIN_APP = "tests-admin"  # the application_name of the fixture's own sessions
PASSWORD_GROUP = "password_login"
RUN_AS = "nobody"
_PG_CTL_TIMEOUT = 30  # seconds; pg_ctl -w waits for the server this long


def find_bindir() -> Path | None:
    """The folder of initdb/pg_ctl/postgres: ``pg_config --bindir``, else Debian's
    versioned folders (newest first), else PATH."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout.strip()
            candidates.append(Path(out))
    found = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted((Path(p) for p in found), key=_major, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _major(folder: Path) -> int:
    name = folder.parent.name
    return int(name) if name.isdigit() else 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PostgresServer:
    """One PostgreSQL cluster in ``folder``; ``start()`` it, then ``stop()`` or ``crash()``.

    The admin queries (``sql()``, ``sessions()``, ``terminate()``...) connect as
    ``postgres`` over the Unix socket with application_name ``tests-admin``, and never
    count themselves.
    """

    def __init__(self, folder: Path, bindir: Path) -> None:
        self.folder = folder
        self.bindir = bindir
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.port = _free_port()
        self.host = "127.0.0.1"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", RUN_AS, "--"]
            entry = pwd.getpwnam(RUN_AS)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        folder.chmod(0o700)
        self._initdb()

    # -- process control ----------------------------------------------------------

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self._as_user, *args], capture_output=True, text=True, check=check,
            timeout=_PG_CTL_TIMEOUT + 10, cwd=self.folder,
        )

    def _initdb(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust",
                  "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C")
        # Members of PASSWORD_GROUP must log in with their password over TCP.
        hba = (
            "local all all trust\n"
            f"host all +{PASSWORD_GROUP} 127.0.0.1/32 scram-sha-256\n"
            "host all all 127.0.0.1/32 trust\n"
        )
        (self.data / "pg_hba.conf").write_text(hba)

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses={self.host} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c shared_buffers=16MB"
        )
        result = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                           str(self.log), "-w", "-t", str(_PG_CTL_TIMEOUT), "-o", options,
                           "start", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {result.stderr}\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast|immediate|smart``; a no-op when it is not running."""
        if not self.running():
            return
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w",
                  "-t", str(_PG_CTL_TIMEOUT), "-m", mode, "stop")

    def crash(self) -> None:
        """``pg_ctl stop -m immediate``: every backend is killed, as in a crash."""
        self.stop("immediate")

    def restart(self, mode: str = "fast") -> None:
        """Stop (``mode``) and start again on the same port."""
        self.stop(mode)
        self.start()

    def running(self) -> bool:
        result = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "status",
                           check=False)
        return result.returncode == 0

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    # -- addresses ----------------------------------------------------------------

    def url(
        self,
        *,
        user: str = "postgres",
        password: str | None = None,
        database: str = "postgres",
        driver: str = "postgresql+asyncpg",
    ) -> str:
        """A SQLAlchemy URL over TCP (``driver="postgresql"`` for asyncpg itself).
        asyncpg takes application_name in ``server_settings``, not in the URL."""
        auth = user if password is None else f"{user}:{password}"
        return f"{driver}://{auth}@{self.host}:{self.port}/{database}"

    # -- admin queries (async, over the Unix socket) ------------------------------

    async def sql(self, query: str, *args: Any) -> list[Any]:
        """Run one query as ``postgres`` in a fresh connection; the rows it returns."""
        import asyncpg

        conn = await asyncpg.connect(
            host=str(self.folder), port=self.port, user="postgres", database="postgres",
            server_settings={"application_name": ADMIN_APP}, timeout=10,
        )
        try:
            rows: list[Any] = await conn.fetch(query, *args, timeout=10)
            return rows
        finally:
            await conn.close(timeout=5)

    async def sessions(self, application_name: str, state: str | None = None) -> int:
        """How many backends carry ``application_name`` (in ``state``, when given)."""
        rows = await self.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
            "AND ($2::text IS NULL OR state = $2)", application_name, state,
        )
        return int(rows[0][0])

    async def backend_pids(self, application_name: str) -> list[int]:
        rows = await self.sql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid",
            application_name,
        )
        return [int(r[0]) for r in rows]

    async def terminate(self, application_name: str) -> int:
        """``pg_terminate_backend`` every backend carrying ``application_name``; how many."""
        rows = await self.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1", application_name,
        )
        return int(rows[0][0])

    async def create_role(self, name: str, password: str) -> None:
        """A login role that must give ``password`` (scram-sha-256) to connect."""
        await self.sql(f"CREATE ROLE {_ident(name)} LOGIN SUPERUSER PASSWORD "
                       f"{_literal(password)} IN ROLE {PASSWORD_GROUP}")

    async def drop_role(self, name: str) -> None:
        await self.sql(f"DROP ROLE IF EXISTS {_ident(name)}")

    async def create_database(self, name: str) -> None:
        await self.sql(f"CREATE DATABASE {_ident(name)}")

    def psql(self, query: str) -> str:
        """Run ``query`` with the psql binary (no event loop needed); its output."""
        result = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
             "-h", str(self.folder), "-p", str(self.port), "-U", "postgres",
             "-d", "postgres", "-c", query],
            capture_output=True, text=True, timeout=30,
            env={**os.environ, "PGAPPNAME": ADMIN_APP},
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()}")
        return result.stdout.strip()

    # -- freezing a backend -------------------------------------------------------

    @staticmethod
    def freeze(pid: int) -> None:
        """SIGSTOP a backend: it stops answering, its socket stays open."""
        os.kill(pid, signal.SIGSTOP)

    @staticmethod
    def thaw(pid: int) -> None:
        os.kill(pid, signal.SIGCONT)

    @contextlib.contextmanager
    def frozen(self, pids: Sequence[int]) -> Iterator[None]:
        """Freeze ``pids`` inside the block; they are thawed on the way out, always."""
        stopped: list[int] = []
        try:
            for pid in pids:
                self.freeze(pid)
                stopped.append(pid)
            yield
        finally:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):  # it may have exited
                    self.thaw(pid)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextlib.contextmanager
def start_postgres() -> Iterator[PostgresServer]:
    """A private, started cluster, crashed and removed on the way out.

    Skips (or fails under TETHER_REQUIRE_ALL) when the server binaries are missing.
    """
    bindir = find_bindir()
    if bindir is None:
        require_or_skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    # Not under pytest's tmp_path: its root folder is private to the current user,
    # and the server runs as another one.
    folder = Path(tempfile.mkdtemp(prefix="tether-pg-"))
    try:
        server = PostgresServer(folder, bindir)
        server.start()
        try:
            server.psql(f"CREATE ROLE {PASSWORD_GROUP} NOLOGIN")
            yield server
        finally:
            server.crash()  # nothing to keep: the fastest way down
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the whole test session."""
    with start_postgres() as server:
        yield server
