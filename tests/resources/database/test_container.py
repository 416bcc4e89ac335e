"""Databases in a Container: a session per REQUEST scope that commits or rolls back,
several named databases side by side, FastAPI endpoints, and start-up failures."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.servers.postgres import PostgresServer
from tether import Container, HealthStatus, Named, Scope
from tether.exceptions import ResourceInitError, ResourceUnavailable, StartupError
from tether.fastapi import Inject, install, resolve_inline
from tether.resources.database import Database, DatabaseConfig, session_provider

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same tests on the embedded default and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        yield server.url()


@pytest.fixture
def table() -> str:
    return f"notes_{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def container(url: str, table: str) -> AsyncIterator[Container]:
    container = Container()
    container.bind(DatabaseConfig, DatabaseConfig(url=url, name="main"))
    container.bind(Database, eager=True)
    container.bind(AsyncSession, session_provider(), scope=Scope.REQUEST)
    async with container:
        db = await container.aget(Database)
        async with db.session() as session:
            await session.execute(text(f"CREATE TABLE {table} (body TEXT)"))
        yield container
        async with db.session() as session:
            await session.execute(text(f"DROP TABLE {table}"))


async def _bodies(container: Container, table: str) -> list[str]:
    db = await container.aget(Database)
    rows = await db.run(lambda s: s.scalars(text(f"SELECT body FROM {table} ORDER BY body")))
    return list(rows)


async def _insert(session: AsyncSession, table: str, body: str) -> None:
    await session.execute(text(f"INSERT INTO {table} VALUES (:body)"), {"body": body})


async def test_request_session_commits_when_the_scope_succeeds(
    container: Container, table: str
) -> None:
    async with container.scope() as request:
        session = await request.aget(AsyncSession)
        await _insert(session, table, "kept")

    assert await _bodies(container, table) == ["kept"]


async def test_request_session_rolls_back_when_the_scope_raises(
    container: Container, table: str
) -> None:
    async def insert_then_fail() -> None:
        async with container.scope() as request:
            session = await request.aget(AsyncSession)
            await _insert(session, table, "dropped")
            raise LookupError("no such user")

    with pytest.raises(LookupError):
        await insert_then_fail()

    assert await _bodies(container, table) == []


async def test_each_request_scope_gets_its_own_session_and_returns_its_connection(
    container: Container,
) -> None:
    async with container.scope() as first:
        one = await first.aget(AsyncSession)
        assert await first.aget(AsyncSession) is one
    async with container.scope() as second:
        two = await second.aget(AsyncSession)

    assert two is not one
    assert (await container.aget(Database)).statistics().checked_out == 0


async def test_fastapi_endpoint_commits_on_success_and_rolls_back_on_its_error(
    container: Container, table: str
) -> None:
    app = FastAPI()
    install(app, container)

    @app.post("/notes/{body}")
    async def add(body: str, session: Inject[AsyncSession]) -> dict[str, str]:
        await _insert(session, table, body)
        if body == "bad":
            raise HTTPException(409, "refused")  # answered by a handler: still rolled back
        return {"added": body}

    resolve_inline(app)  # what the app's lifespan does; the fixture started the container
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ok = await client.post("/notes/good")
        refused = await client.post("/notes/bad")

    assert (ok.status_code, refused.status_code) == (200, 409)
    assert await _bodies(container, table) == ["good"]


# -- several databases side by side -------------------------------------------------


@pytest.fixture
async def reports_url(postgres_server: PostgresServer) -> str:
    name = f"reports_{uuid.uuid4().hex[:10]}"
    await postgres_server.create_database(name)
    return postgres_server.url(database=name)


async def test_named_databases_give_sessions_on_their_own_database(
    postgres_server: PostgresServer, reports_url: str
) -> None:
    container = Container()
    for name, url in (("main", postgres_server.url()), ("reports", reports_url)):
        container.bind(Database, Database(DatabaseConfig(url=url, name=name)), name=name)
        container.bind(AsyncSession, session_provider(name), scope=Scope.REQUEST, name=name)

    async with container:
        async with container.scope() as request:
            main = await request.aget(AsyncSession, "main")
            reports = await request.aget(AsyncSession, "reports")
            names = [await s.scalar(text("SELECT current_database()")) for s in (main, reports)]
        report = await container.health()

    assert names == ["postgres", reports_url.rsplit("/", 1)[1]]
    assert report.status is HealthStatus.HEALTHY
    assert set(report.resources) == {"Database[main]", "Database[reports]"}


async def test_named_sessions_inject_into_a_class(postgres_server: PostgresServer) -> None:
    class Repo:
        def __init__(self, session: Annotated[AsyncSession, Named("main")]) -> None:
            self.session = session

    container = Container()
    db = Database(DatabaseConfig(url=postgres_server.url(), name="main"))
    container.bind(Database, db, name="main")
    container.bind(AsyncSession, session_provider("main"), scope=Scope.REQUEST, name="main")
    container.bind(Repo, scope=Scope.REQUEST)

    async with container, container.scope() as request:
        repo = await request.aget(Repo)
        assert await repo.session.scalar(text("SELECT 1")) == 1


# -- start-up -----------------------------------------------------------------------


async def test_eager_database_that_cannot_connect_fails_start_up_naming_it() -> None:
    container = Container()
    url = "postgresql+asyncpg://app:pw-Secret-77@127.0.0.1:1/app"
    container.bind(Database, Database(DatabaseConfig(url=url, name="main", timeout=3)),
                   eager=True)

    with pytest.raises(StartupError) as caught:
        await container.start()

    assert "start-up failed at Database" in str(caught.value)
    assert "main: could not connect" in str(caught.value)
    assert "pw-Secret-77" not in str(caught.value)
    error = caught.value.error
    if isinstance(error, ResourceInitError):
        error = error.error
    assert isinstance(error, ResourceUnavailable)
    assert error.sent is False
