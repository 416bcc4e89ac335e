"""A frozen backend (P4) and a query cancelled half-way (P5), on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.resources.database.conftest import MakeDatabase, eventually
from tests.servers.postgres import PostgresServer
from tether.exceptions import ResourceError, ResourceTimeout
from tether.resources.database import Database, DatabaseConfig

pytestmark = pytest.mark.anyio

SELECT_ONE = text("SELECT 1")
BACKEND_PID = text("SELECT pg_backend_pid()")


async def _one(session: AsyncSession) -> int:
    return int(await session.scalar(SELECT_ONE) or 0)


@pytest.fixture
def frozen(postgres_server: PostgresServer) -> Iterator[list[int]]:
    """Backend pids a test freezes; each is thawed at teardown whatever happened."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # the backend exited since
            postgres_server.thaw(pid)


async def _settled(db: Database) -> bool:
    return db.statistics().checked_out == 0


# -- P4: a frozen backend -----------------------------------------------------------


@pytest.mark.slow
async def test_frozen_backend_fails_run_at_its_deadline_then_the_pool_recovers(
    make_db: MakeDatabase, postgres_server: PostgresServer, frozen: list[int]
) -> None:
    db = await make_db(timeout=0.5, statement_timeout=30)

    async def freeze_then_query(session: AsyncSession) -> int:
        pid = int(await session.scalar(BACKEND_PID) or 0)
        postgres_server.freeze(pid)
        frozen.append(pid)
        return await _one(session)

    started = time.monotonic()
    with pytest.raises(ResourceTimeout) as caught:
        await db.run(freeze_then_query)
    elapsed = time.monotonic() - started

    assert caught.value.timeout == 0.5
    assert elapsed < 10  # the client's deadline, not the server's statement_timeout (30 s)
    postgres_server.thaw(frozen.pop())
    await eventually(lambda: _settled(db), what="the connection released")
    assert await db.run(_one) == 1


@pytest.mark.slow
async def test_run_lets_its_caller_go_at_the_deadline_while_a_statement_hangs(
    make_db: MakeDatabase, postgres_server: PostgresServer, frozen: list[int]
) -> None:
    # The deadline (0.5 s from the start of the call) passes while the statement is
    # still within its own command timeout (0.5 s from when it was sent): it is the
    # call's deadline, not the driver's, that has to cut the frozen statement off.
    db = await make_db(timeout=0.5, statement_timeout=30)

    async def slow_then_frozen(session: AsyncSession) -> int:
        pid = int(await session.scalar(BACKEND_PID) or 0)
        await asyncio.sleep(0.3)
        postgres_server.freeze(pid)
        frozen.append(pid)
        return await _one(session)

    started = time.monotonic()
    with pytest.raises(ResourceTimeout) as caught:
        await db.run(slow_then_frozen)
    elapsed = time.monotonic() - started

    assert "statement" not in str(caught.value)  # the call's deadline, not the driver's
    assert elapsed < 0.5 + 2.0  # not when the frozen server lets go of the connection
    assert db.statistics().active == 0
    postgres_server.thaw(frozen.pop())
    await eventually(lambda: _settled(db), what="the connection released")
    assert await db.run(_one) == 1


@pytest.mark.slow
async def test_frozen_backend_fails_a_session_statement_within_timeout(
    make_db: MakeDatabase, postgres_server: PostgresServer, frozen: list[int]
) -> None:
    db = await make_db(timeout=0.5, statement_timeout=30)

    async def freeze_then_query() -> None:
        async with db.session() as session:
            pid = int(await session.scalar(BACKEND_PID) or 0)
            postgres_server.freeze(pid)
            frozen.append(pid)
            await session.execute(SELECT_ONE)

    started = time.monotonic()
    with pytest.raises(ResourceTimeout, match="statement did not finish"):
        await freeze_then_query()
    elapsed = time.monotonic() - started

    assert elapsed < 10
    assert db.statistics().checked_out == 0  # the connection was dropped, not kept
    postgres_server.thaw(frozen.pop())
    assert await db.run(_one) == 1


@pytest.mark.slow
async def test_health_check_fails_within_its_deadline_on_a_frozen_backend(
    make_db: MakeDatabase, postgres_server: PostgresServer, frozen: list[int], app_name: str
) -> None:
    db = await make_db(timeout=0.5, pool_size=1, max_overflow=0)
    (pid,) = await postgres_server.backend_pids(app_name)  # the pooled connection
    postgres_server.freeze(pid)
    frozen.append(pid)

    with pytest.raises(ResourceError):
        await db.health_check()

    postgres_server.thaw(frozen.pop())
    await eventually(lambda: _settled(db), what="the connection released")
    assert await db.health_check() is True


# -- P5: cancelled mid-query --------------------------------------------------------


async def _run_long_query(db: Database) -> None:
    async with db.session() as session:
        await session.execute(text("SELECT pg_sleep(30)"))


async def _query_running(server: PostgresServer, app_name: str) -> bool:
    return await server.sessions(app_name, state="active") == 1


async def _query_gone(server: PostgresServer, app_name: str) -> bool:
    return await server.sessions(app_name, state="active") == 0


async def _cancel_with_asyncio(db: Database, server: PostgresServer, app_name: str) -> None:
    task = asyncio.create_task(_run_long_query(db))
    await eventually(lambda: _query_running(server, app_name), what="query running")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _cancel_with_anyio(db: Database, server: PostgresServer, app_name: str) -> None:
    async with anyio.create_task_group() as group:
        group.start_soon(_run_long_query, db)
        await eventually(lambda: _query_running(server, app_name), what="query running")
        group.cancel_scope.cancel()


@pytest.mark.slow
@pytest.mark.parametrize("cancel", [_cancel_with_asyncio, _cancel_with_anyio],
                         ids=["asyncio-task-cancel", "anyio-cancel-scope"])
async def test_cancelled_query_returns_its_connection_and_stops_on_the_server(
    cancel: object, make_db: MakeDatabase, postgres_server: PostgresServer, app_name: str
) -> None:
    db = await make_db(statement_timeout=60)

    await cancel(db, postgres_server, app_name)  # type: ignore[operator]

    await eventually(lambda: _settled(db), timeout=5, what="checked-out count back to 0")
    # The query would sleep 30 s: gone well before that means the server stopped it.
    await eventually(lambda: _query_gone(postgres_server, app_name), timeout=10,
                     what="query stopped on the server")
    assert await db.run(_one) == 1


# -- dispose against a frozen server ------------------------------------------------


@pytest.mark.slow
async def test_dispose_is_bounded_on_a_frozen_server_and_leaves_no_backend(
    postgres_server: PostgresServer, frozen: list[int], app_name: str
) -> None:
    config = DatabaseConfig(url=postgres_server.url(), application_name=app_name, timeout=0.5,
                            pool_size=2)
    db = Database(config)
    await db.initialize()
    both_open = asyncio.Barrier(2)

    async def hold() -> None:
        async with db.session() as session:
            await session.execute(SELECT_ONE)
            await both_open.wait()

    await asyncio.gather(hold(), hold())  # two pooled connections
    for pid in await postgres_server.backend_pids(app_name):
        postgres_server.freeze(pid)
        frozen.append(pid)

    started = time.monotonic()
    with pytest.raises(ResourceTimeout, match="dispose did not finish"):
        await db.dispose()

    assert time.monotonic() - started < 10
    for pid in frozen:
        postgres_server.thaw(pid)
    await eventually(lambda: _no_backend(postgres_server, app_name), what="no backend left")


async def _no_backend(server: PostgresServer, app_name: str) -> bool:
    return await server.sessions(app_name) == 0
