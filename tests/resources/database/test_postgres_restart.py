"""PostgreSQL stopped, crashed and restarted under a running app (P3), on a server of
this module's own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.resources.database.conftest import eventually
from tests.servers.postgres import PostgresServer, start_postgres
from tether import Container, HealthStatus
from tether.exceptions import ResourceError, ResourceUnavailable
from tether.resources.database import Database, DatabaseConfig

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WORKERS = 20


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with start_postgres() as own:
        yield own


def _config(server: PostgresServer, app_name: str, **options: float) -> DatabaseConfig:
    return DatabaseConfig(url=server.url(), name="main", application_name=app_name,
                          connect_timeout=2, **options)


async def _one(session: AsyncSession) -> int:
    return int(await session.scalar(text("SELECT 1")) or 0)


@dataclass
class Load:
    """Calls made by the workers: when each started, and how it ended."""

    ok_after: list[float] = field(default_factory=list)  # start times of successes
    failed: list[tuple[float, BaseException]] = field(default_factory=list)

    def successes_since(self, moment: float) -> int:
        return sum(1 for started in self.ok_after if started >= moment)


async def _worker(db: Database, load: Load, stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            await db.run(_one, idempotent=True)
        except Exception as error:
            load.failed.append((started, error))
            await asyncio.sleep(0.05)
        else:
            load.ok_after.append(started)
        await asyncio.sleep(0.005)


async def test_restart_under_load_fails_calls_only_in_the_window_and_leaks_no_backends(
    server: PostgresServer, app_name: str
) -> None:
    config = _config(server, app_name, pool_size=5, max_overflow=5, timeout=5, pool_timeout=5)
    db = Database(config)
    await db.initialize()
    load, stop = Load(), asyncio.Event()
    workers = [asyncio.create_task(_worker(db, load, stop)) for _ in range(WORKERS)]
    try:
        await eventually(lambda: _at_least(load, 0.0, 50), what="calls before the restart")
        await asyncio.to_thread(server.restart, "fast")
        restarted = time.monotonic()
        await eventually(lambda: _at_least(load, restarted, 100), what="calls after it")
        assert await server.sessions(app_name) <= 10  # pool_size + max_overflow
    finally:
        stop.set()
        await asyncio.gather(*workers)
        await db.dispose()

    late = [error for started, error in load.failed if started >= restarted]
    assert late == []  # every call made once the server was back succeeded
    assert all(isinstance(error, ResourceError) for _, error in load.failed), load.failed
    await eventually(lambda: _no_sessions(server, app_name), what="no backend left")


async def _at_least(load: Load, since: float, count: int) -> bool:
    return load.successes_since(since) >= count


async def _no_sessions(server: PostgresServer, app_name: str) -> bool:
    return await server.sessions(app_name) == 0


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_health_goes_unhealthy_while_stopped_and_healthy_once_started(
    server: PostgresServer, app_name: str, mode: str
) -> None:
    container = Container()
    container.bind(Database, Database(_config(server, app_name, timeout=3)), eager=True)

    async with container:
        assert (await container.health()).status is HealthStatus.HEALTHY
        await asyncio.to_thread(server.stop, mode)
        try:
            down = await container.health()
        finally:
            await asyncio.to_thread(server.start)
        up = await container.health()

    assert down.status is HealthStatus.UNHEALTHY
    assert "could not connect" in (down.resources["Database"].last_error or "")
    assert up.status is HealthStatus.HEALTHY


async def test_calls_while_stopped_fail_as_not_sent_and_work_again_after_start(
    server: PostgresServer, app_name: str
) -> None:
    db = Database(_config(server, app_name, timeout=3))
    await db.initialize()
    try:
        await asyncio.to_thread(server.stop, "fast")
        try:
            with pytest.raises(ResourceUnavailable, match="main: could not connect") as caught:
                await db.run(_one)
        finally:
            await asyncio.to_thread(server.start)

        assert caught.value.sent is False
        assert await db.run(_one) == 1
    finally:
        await db.dispose()
