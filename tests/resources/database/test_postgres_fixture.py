"""The PostgreSQL test server itself: what other tests rely on it to do."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.resources.database.conftest import eventually
from tests.servers.postgres import PostgresServer

pytestmark = pytest.mark.anyio


async def _connect(server: PostgresServer, app_name: str) -> asyncpg.Connection:
    return await asyncpg.connect(server.url(driver="postgresql"), timeout=10,
                                 server_settings={"application_name": app_name})


async def test_sessions_are_counted_and_terminated_by_application_name(
    postgres_server: PostgresServer, app_name: str
) -> None:
    connection = await _connect(postgres_server, app_name)
    try:
        assert await postgres_server.sessions(app_name) == 1

        assert await postgres_server.terminate(app_name) == 1
        await eventually(lambda: _none(postgres_server, app_name), what="backend gone")
    finally:
        await connection.close(timeout=5)


async def _none(server: PostgresServer, app_name: str) -> bool:
    return await server.sessions(app_name) == 0


async def test_a_frozen_backend_answers_again_once_thawed(
    postgres_server: PostgresServer, app_name: str
) -> None:
    connection = await _connect(postgres_server, app_name)
    try:
        (pid,) = await postgres_server.backend_pids(app_name)
        with postgres_server.frozen([pid]):
            pending = asyncio.ensure_future(connection.fetchval("SELECT 2"))
            done, _ = await asyncio.wait({pending}, timeout=0.3)
            assert not done
        assert await asyncio.wait_for(pending, 10) == 2
    finally:
        await connection.close(timeout=5)


def test_psql_runs_queries_without_an_event_loop(postgres_server: PostgresServer) -> None:
    assert postgres_server.psql("SELECT 40 + 2") == "42"
