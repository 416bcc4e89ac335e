from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.servers.postgres import PostgresServer, postgres_server
from tests.waiting import eventually
from tether.resources.database import Database, DatabaseConfig

__all__ = ["eventually", "postgres_server"]

MakeDatabase = Callable[..., Awaitable[Database]]


@pytest.fixture
def app_name() -> str:
    """An application_name of the test's own, to count its sessions on the server."""
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def make_db(postgres_server: PostgresServer, app_name: str) -> AsyncIterator[MakeDatabase]:
    """``await make_db(**config)``: an initialized Database on the session's PostgreSQL
    (tagged with the test's application_name), disposed at teardown."""
    made: list[Database] = []

    async def make(**options: Any) -> Database:
        options.setdefault("url", postgres_server.url())
        options.setdefault("application_name", app_name)
        db = Database(DatabaseConfig(**options))
        await db.initialize()
        made.append(db)
        return db

    yield make
    for db in reversed(made):
        await db.dispose()
