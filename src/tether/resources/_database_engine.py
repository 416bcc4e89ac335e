"""Building the SQLAlchemy engine a ``DatabaseConfig`` describes."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool

if TYPE_CHECKING:
    from .database import DatabaseConfig

POSTGRES = "postgresql+asyncpg"
SQLITE = "sqlite+aiosqlite"
DRIVERS = (POSTGRES, SQLITE)


def check_url(text: str) -> URL:
    """The parsed URL, or ValueError with a sentence that never repeats the URL (it
    may hold a password)."""
    try:
        url = make_url(text)
    except Exception:
        raise ValueError(
            "url is not a database URL; expected for example "
            "'postgresql+asyncpg://user:password@host:5432/name' or "
            "'sqlite+aiosqlite:///./app.db'"
        ) from None
    if url.drivername not in DRIVERS:
        hint = {
            "postgresql": POSTGRES, "postgres": POSTGRES, "postgresql+psycopg2": POSTGRES,
            "postgresql+psycopg": POSTGRES, "sqlite": SQLITE, "sqlite+pysqlite": SQLITE,
        }.get(url.drivername)
        tip = f" (write {hint}:// for an async driver)" if hint else ""
        raise ValueError(
            f"url uses the driver {url.drivername!r}{tip}; the database battery supports "
            f"{' and '.join(repr(d) for d in DRIVERS)}"
        )
    return url


def is_memory(url: URL) -> bool:
    return url.drivername == SQLITE and url.database in (None, "", ":memory:")


def milliseconds(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))


class OpenConnections:
    """The driver connections the pool holds open, so that a dispose cut short by a
    frozen server can abort the ones it did not get to (no connection is left to the
    garbage collector)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._open: dict[int, Any] = {}
        pool_events = engine.sync_engine
        event.listen(pool_events, "connect", self._opened)
        event.listen(pool_events, "close", self._closed)
        event.listen(pool_events, "close_detached", self._closed)

    def _opened(self, dbapi_connection: Any, record: Any) -> None:
        self._open[id(dbapi_connection)] = dbapi_connection

    def _closed(self, dbapi_connection: Any, record: Any = None) -> None:
        self._open.pop(id(dbapi_connection), None)

    def abort_all(self) -> int:
        """Close every connection still open without a word to the server (outside
        SQLAlchemy's greenlet, ``terminate()`` only drops the socket); how many."""
        connections, self._open = list(self._open.values()), {}
        for connection in connections:
            connection.terminate()
        return len(connections)


@dataclass(slots=True)
class Built:
    engine: AsyncEngine
    connections: OpenConnections
    anchor: sqlite3.Connection | None  # keeps an in-memory SQLite database alive


def build(config: DatabaseConfig) -> Built:
    url = check_url(config.url.get_secret_value())
    options: dict[str, Any] = {
        "echo": config.echo,
        # Bound parameters may hold user data: keep them out of errors and logs.
        "hide_parameters": True,
        "pool_timeout": config.pool_timeout,
        "pool_pre_ping": config.pool_pre_ping,
        "pool_recycle": -1 if config.pool_recycle is None else config.pool_recycle,
    }
    anchor = None
    if is_memory(url):
        url, anchor = _shared_memory()
        # One connection holds the whole database: sessions take turns on it rather
        # than interleave their transactions on one shared connection (StaticPool).
        options.update(poolclass=AsyncAdaptedQueuePool, pool_size=1, max_overflow=0,
                       pool_pre_ping=False)
    else:
        options.update(pool_size=config.pool_size, max_overflow=config.max_overflow)
    if url.drivername == POSTGRES:
        options["connect_args"] = _asyncpg_arguments(config)
    try:
        engine = create_async_engine(url, **options)
    except BaseException:
        if anchor is not None:
            anchor.close()
        raise
    return Built(engine, OpenConnections(engine), anchor)


def _asyncpg_arguments(config: DatabaseConfig) -> dict[str, Any]:
    settings = {"application_name": config.application_name or config.name}
    if config.statement_timeout is not None:
        settings["statement_timeout"] = milliseconds(config.statement_timeout)
    if config.client_connection_check_interval is not None:
        settings["client_connection_check_interval"] = milliseconds(
            config.client_connection_check_interval
        )
    return {
        "timeout": config.connect_timeout,  # asyncpg's connect timeout
        "command_timeout": config.timeout,  # each statement, on the client's side
        "server_settings": settings,
    }


def _shared_memory() -> tuple[URL, sqlite3.Connection]:
    # A named shared-cache database lives as long as one connection to it is open: the
    # anchor keeps it across the pool's reconnects (an invalidated connection would
    # otherwise take every table with it).
    database = f"file:tether-{uuid.uuid4().hex}"
    anchor = sqlite3.connect(f"{database}?mode=memory&cache=shared", uri=True,
                             check_same_thread=False)
    url = URL.create(SQLITE, database=database,
                     query={"mode": "memory", "cache": "shared", "uri": "true"})
    return url, anchor
