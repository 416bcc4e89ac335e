"""A password in the URL never shows: not in errors, reprs, health bodies or logs (O1)."""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from tests.servers.postgres import PostgresServer
from tether import Container, HealthStatus
from tether.exceptions import ResourceUnavailable
from tether.resources.database import Database, DatabaseConfig

pytestmark = pytest.mark.anyio

PASSWORD = "Pw-7f3c2a9e-secret"
WRONG = "Wrong-51b0d6-secret"


@pytest.fixture
async def role(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A login role that must give PASSWORD (scram-sha-256)."""
    name = f"app_{uuid.uuid4().hex[:10]}"
    await postgres_server.create_role(name, PASSWORD)
    yield name
    await postgres_server.drop_role(name)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def _everything_about(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error)


async def test_the_password_in_the_url_logs_in(
    postgres_server: PostgresServer, role: str
) -> None:
    db = Database(DatabaseConfig(url=postgres_server.url(user=role, password=PASSWORD)))
    await db.initialize()
    try:
        assert await db.run(lambda s: s.scalar(text("SELECT current_user"))) == role
        shown = [repr(db), repr(db.config), repr(db.statistics()), repr(db.engine)]
    finally:
        await db.dispose()

    assert not [text for text in shown if PASSWORD in text]


async def test_a_wrong_password_fails_without_showing_either_password(
    postgres_server: PostgresServer, role: str, logs: pytest.LogCaptureFixture
) -> None:
    db = Database(DatabaseConfig(url=postgres_server.url(user=role, password=WRONG)))

    with pytest.raises(ResourceUnavailable, match="password authentication failed") as caught:
        await db.initialize()

    seen = _everything_about(caught.value) + logs.text
    assert WRONG not in seen
    assert PASSWORD not in seen
    assert caught.value.sent is False


async def test_health_body_and_logs_of_a_database_that_went_away_hide_the_password(
    postgres_server: PostgresServer, role: str, logs: pytest.LogCaptureFixture
) -> None:
    url = postgres_server.url(user=role, password=PASSWORD)
    container = Container()
    container.bind(Database, Database(DatabaseConfig(url=url, name="main")), eager=True)

    async with container:
        await postgres_server.sql(f'ALTER ROLE "{role}" NOLOGIN')
        await postgres_server.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                  "WHERE usename = $1", role)
        report = await container.health()
        body = json.dumps(report.to_dict())
        await postgres_server.sql(f'ALTER ROLE "{role}" LOGIN')

    assert report.status is HealthStatus.UNHEALTHY
    assert "could not connect" in body
    assert PASSWORD not in body
    assert PASSWORD not in logs.text


async def test_an_unreachable_server_error_hides_the_password() -> None:
    url = f"postgresql+asyncpg://app:{PASSWORD}@127.0.0.1:1/app"
    db = Database(DatabaseConfig(url=url, connect_timeout=2))

    with pytest.raises(ResourceUnavailable) as caught:
        await db.initialize()

    assert PASSWORD not in _everything_about(caught.value)
    assert caught.value.sent is False
