"""PostgreSQL through asyncpg: the pool, server settings, dropped connections (P1, P2)."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.resources.database.conftest import MakeDatabase, eventually
from tests.servers.postgres import PostgresServer
from tether.exceptions import PoolTimeout, ResourceTimeout, ResourceUnavailable

pytestmark = pytest.mark.anyio

SELECT_ONE = text("SELECT 1")


async def _one(session: AsyncSession) -> int:
    return int(await session.scalar(SELECT_ONE) or 0)


# -- P1: a busy pool ----------------------------------------------------------------


async def test_busy_pool_raises_pool_timeout_naming_resource_size_and_timeout(
    make_db: MakeDatabase,
) -> None:
    db = await make_db(name="main", pool_size=1, max_overflow=0, pool_timeout=0.5)

    async with db.session() as held:
        await held.execute(SELECT_ONE)
        with pytest.raises(PoolTimeout) as caught:
            async with db.session() as waiting:
                await waiting.execute(SELECT_ONE)  # the first statement takes a connection
        assert await held.scalar(text("SELECT 2")) == 2  # the first is unaffected

    error = caught.value
    assert (error.resource, error.size, error.timeout) == ("main", 1, 0.5)
    assert "main: no connection came free within pool_timeout=0.5s (pool size 1)" in str(error)
    stats = db.statistics()
    assert stats.pool_timeouts_total == 1
    assert stats.failures_by_kind == {"PoolTimeout": 1}


async def test_pool_timeout_is_not_retried_even_for_idempotent_work(
    make_db: MakeDatabase,
) -> None:
    db = await make_db(pool_size=1, max_overflow=0, pool_timeout=0.3, max_retries=3)

    async with db.session() as held:
        await held.execute(SELECT_ONE)  # the pool's only connection, held
        with pytest.raises(PoolTimeout):
            await db.run(_one, idempotent=True)

    assert db.statistics().retries_total == 0


async def test_overflow_connections_are_counted_and_limited(make_db: MakeDatabase) -> None:
    db = await make_db(pool_size=1, max_overflow=1, pool_timeout=0.3)

    async with db.session() as first, db.session() as second:
        await first.execute(SELECT_ONE)
        await second.execute(SELECT_ONE)
        stats = db.statistics()
        with pytest.raises(PoolTimeout) as caught:
            async with db.session() as third:
                await third.execute(SELECT_ONE)

    assert (stats.checked_out, stats.overflow) == (2, 1)
    assert caught.value.size == 2


# -- P2: connections killed on the server -------------------------------------------


async def test_pre_ping_replaces_connections_terminated_on_the_server(
    make_db: MakeDatabase, postgres_server: PostgresServer, app_name: str
) -> None:
    db = await make_db(pool_size=2)
    await asyncio.gather(db.run(_one), db.run(_one))  # two pooled connections

    assert await postgres_server.terminate(app_name) >= 1
    await eventually(lambda: _gone(postgres_server, app_name), what="backends terminated")

    assert await db.run(_one) == 1
    assert db.statistics().failures_total == 0


async def test_without_pre_ping_a_terminated_connection_fails_once_then_recovers(
    make_db: MakeDatabase, postgres_server: PostgresServer, app_name: str
) -> None:
    db = await make_db(pool_size=1, max_overflow=0, pool_pre_ping=False)
    await db.run(_one)
    await postgres_server.terminate(app_name)
    await eventually(lambda: _gone(postgres_server, app_name), what="backend terminated")

    with pytest.raises(ResourceUnavailable, match="connection lost") as caught:
        await db.run(_one)

    assert caught.value.sent is True
    assert type(caught.value.__cause__).__name__ == "InterfaceError"  # the driver's error
    assert await db.run(_one) == 1


async def _gone(server: PostgresServer, app_name: str) -> bool:
    return await server.sessions(app_name) == 0


# -- server settings ----------------------------------------------------------------


async def test_statement_timeout_is_set_on_the_server_by_default(make_db: MakeDatabase) -> None:
    db = await make_db()

    setting = await db.run(lambda s: s.scalar(text("SHOW statement_timeout")))

    assert setting == "30s"


async def test_connections_carry_the_application_name(
    make_db: MakeDatabase, postgres_server: PostgresServer, app_name: str
) -> None:
    db = await make_db()

    async with db.session() as session:
        await session.execute(SELECT_ONE)
        assert await postgres_server.sessions(app_name) == 1


async def test_application_name_defaults_to_the_resource_name(
    make_db: MakeDatabase,
) -> None:
    db = await make_db(name="orders", application_name=None)

    name = await db.run(lambda s: s.scalar(text("SHOW application_name")))

    assert name == "orders"


async def test_statement_past_statement_timeout_fails_with_resource_timeout(
    make_db: MakeDatabase,
) -> None:
    db = await make_db(statement_timeout=0.2, timeout=30)

    with pytest.raises(ResourceTimeout, match="stopped by the server") as caught:
        await db.run(lambda s: s.execute(text("SELECT pg_sleep(5)")))

    assert caught.value.timeout == 0.2
    assert caught.value.__cause__ is not None
    assert await db.run(_one) == 1  # the connection was fine: only the statement ended


async def test_statements_in_a_plain_engine_connection_are_translated_too(
    make_db: MakeDatabase,
) -> None:
    db = await make_db(statement_timeout=0.2)

    async with db.engine.connect() as connection:
        with pytest.raises(ResourceTimeout):
            await connection.execute(text("SELECT pg_sleep(5)"))


async def test_a_syntax_error_passes_through_unchanged(make_db: MakeDatabase) -> None:
    db = await make_db(circuit_breaker_threshold=1)

    with pytest.raises(sqlalchemy.exc.ProgrammingError, match="syntax error"):
        await db.run(lambda s: s.execute(text("SELEC 1")))

    assert await db.run(_one) == 1  # the breaker did not count it
    assert db.statistics().failures_total == 0


async def test_statistics_follow_connections_in_and_out(make_db: MakeDatabase) -> None:
    db = await make_db(pool_size=3)

    async with db.session() as session:
        before_statement = db.statistics()
        await session.execute(SELECT_ONE)
        during = db.statistics()
    after = db.statistics()

    assert before_statement.checked_out == 0  # the first statement takes the connection
    assert (during.checked_out, during.active, during.pool_size) == (1, 1, 3)
    assert (after.checked_out, after.checked_in, after.active) == (0, 1, 0)
    assert after.calls_total == 1
