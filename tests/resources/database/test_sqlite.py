"""The embedded default: SQLite through aiosqlite, in memory or in a file; no server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy.exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tether import Container, HealthStatus
from tether.exceptions import CircuitOpen, ClosedError, PoolTimeout, ResourceError
from tether.resources.database import Database, DatabaseConfig

pytestmark = pytest.mark.anyio

MEMORY = "sqlite+aiosqlite://"


@pytest.fixture
async def db() -> AsyncIterator[Database]:
    database = Database(DatabaseConfig(url=MEMORY, pool_timeout=0.3))
    await database.initialize()
    async with database.session() as session:
        await session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT UNIQUE)"))
    yield database
    await database.dispose()


async def _count(db: Database) -> int:
    async def count(session: AsyncSession) -> int:
        return int(await session.scalar(text("SELECT count(*) FROM notes")) or 0)

    return await db.run(count, idempotent=True)


async def _add(session: AsyncSession, body: str) -> None:
    await session.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": body})


async def test_a_session_that_succeeds_is_committed(db: Database) -> None:
    async with db.session() as session:
        await _add(session, "kept")

    assert await _count(db) == 1


async def _add_then_fail(db: Database) -> None:
    async with db.session() as session:
        await _add(session, "dropped")
        raise ValueError("boom")


async def test_a_session_whose_block_raises_is_rolled_back(db: Database) -> None:
    with pytest.raises(ValueError, match="boom"):
        await _add_then_fail(db)

    assert await _count(db) == 0


async def test_a_cancelled_session_is_rolled_back_and_its_connection_returned(
    db: Database,
) -> None:
    inside = asyncio.Event()

    async def writer() -> None:
        async with db.session() as session:
            await _add(session, "dropped")
            inside.set()
            await asyncio.Event().wait()  # until cancelled

    task = asyncio.create_task(writer())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert await _count(db) == 0
    assert db.statistics().checked_out == 0


async def test_run_commits_and_returns_what_the_work_returns(db: Database) -> None:
    async def add_and_count(session: AsyncSession) -> int:
        await _add(session, "one")
        return int(await session.scalar(text("SELECT count(*) FROM notes")) or 0)

    assert await db.run(add_and_count) == 1
    assert await _count(db) == 1


async def test_a_constraint_violation_passes_through_as_sqlalchemy_raises_it(db: Database) -> None:
    async with db.session() as session:
        await _add(session, "same")

    with pytest.raises(sqlalchemy.exc.IntegrityError):
        async with db.session() as session:
            await _add(session, "same")

    assert db.statistics().failures_total == 0


async def test_bound_parameters_are_kept_out_of_error_messages(db: Database) -> None:
    async with db.session() as session:
        await _add(session, "card 4111-1111")

    with pytest.raises(sqlalchemy.exc.IntegrityError) as caught:
        async with db.session() as session:
            await _add(session, "card 4111-1111")

    assert "4111" not in str(caught.value)


async def test_a_syntax_error_passes_through_and_leaves_the_breaker_closed() -> None:
    db = Database(DatabaseConfig(url=MEMORY, circuit_breaker_threshold=1))
    await db.initialize()
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError, match="syntax error"):
            await db.run(lambda s: s.execute(text("SELEC 1")))

        assert await db.run(lambda s: s.scalar(text("SELECT 1"))) == 1
    finally:
        await db.dispose()


async def test_in_memory_database_has_one_connection_that_sessions_take_turns_on(
    db: Database,
) -> None:
    async with db.session() as first:
        await _add(first, "held")
        with pytest.raises(PoolTimeout) as caught:
            await _count(db)

    assert caught.value.size == 1
    assert await _count(db) == 1
    assert db.statistics().pool_timeouts_total == 1


async def _open_session(db: Database) -> None:
    async with db.session() as session:
        await session.execute(text("SELECT 1"))


async def test_database_failures_open_the_breaker_but_not_the_health_check() -> None:
    db = Database(DatabaseConfig(url=MEMORY, pool_timeout=0.2, circuit_breaker_threshold=1,
                                 circuit_breaker_reset=60))
    await db.initialize()
    try:
        async with db.session() as held:
            await held.execute(text("SELECT 1"))
            with pytest.raises(PoolTimeout):
                await _open_session(db)

        with pytest.raises(CircuitOpen):
            await _open_session(db)
        assert await db.health_check() is True  # it asks the database, not the breaker
        assert db.statistics().failures_by_kind == {"PoolTimeout": 1, "CircuitOpen": 1}
    finally:
        await db.dispose()


async def test_in_memory_data_survives_a_dropped_connection(db: Database) -> None:
    async with db.session() as session:
        await _add(session, "kept")
    async with db.engine.connect() as connection:
        await connection.invalidate()  # the pool opens a new connection next time

    assert await _count(db) == 1


async def test_two_in_memory_databases_are_separate(db: Database) -> None:
    other = Database(DatabaseConfig(url=MEMORY, name="other"))
    await other.initialize()
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError, match="no such table"):
            await other.run(lambda s: s.execute(text("SELECT * FROM notes")))
    finally:
        await other.dispose()


async def test_a_file_database_keeps_its_data_after_dispose(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    first = Database(DatabaseConfig(url=url))
    await first.initialize()
    async with first.session() as session:
        await session.execute(text("CREATE TABLE notes (body TEXT)"))
        await session.execute(text("INSERT INTO notes VALUES ('kept')"))
    await first.dispose()

    second = Database(DatabaseConfig(url=url))
    await second.initialize()
    try:
        assert await second.run(lambda s: s.scalar(text("SELECT body FROM notes"))) == "kept"
    finally:
        await second.dispose()


async def test_health_check_runs_a_query(db: Database) -> None:
    assert await db.health_check() is True


async def test_statistics_count_sessions_and_connections(db: Database) -> None:
    before = db.statistics()
    async with db.session() as session:
        await session.execute(text("SELECT 1"))
        during = db.statistics()
    after = db.statistics()

    assert during.checked_out == 1
    assert during.active == 1
    assert after.checked_out == 0
    assert after.checked_in == 1
    assert after.calls_total == before.calls_total + 1
    assert (after.pool_size, after.max_overflow) == (1, 0)


async def test_use_before_initialize_says_how_to_initialize() -> None:
    db = Database(DatabaseConfig(url=MEMORY, name="main"))

    with pytest.raises(ResourceError, match="main: not initialized"):
        async with db.session():
            pass


async def test_use_after_dispose_raises_closed_error_naming_the_database(db: Database) -> None:
    await db.dispose()

    with pytest.raises(ClosedError, match="Database 'database'"):
        await db.run(lambda s: s.scalar(text("SELECT 1")))
    with pytest.raises(ClosedError):
        await db.initialize()


async def test_dispose_twice_does_nothing_the_second_time(db: Database) -> None:
    await db.dispose()
    await db.dispose()

    assert db.statistics().checked_in == 0


async def test_container_builds_it_from_its_config_checks_it_and_disposes_it() -> None:
    container = Container()
    container.bind(DatabaseConfig, DatabaseConfig(url=MEMORY, name="main"))
    container.bind(Database, eager=True)

    async with container:
        db = await container.aget(Database)
        report = await container.health()
        assert report.status is HealthStatus.HEALTHY
        assert report.resources["Database"].is_healthy is True
        assert "Database" in container.statistics()

    with pytest.raises(ClosedError):
        _ = db.engine
