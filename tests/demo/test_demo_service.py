"""The demo service: encrypted notes behind logins, on embedded defaults and on
PostgreSQL + Redis, and the command that serves it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.servers.postgres import PostgresServer, postgres_server  # noqa: F401
from tests.servers.redis import RedisServer, redis_server  # noqa: F401
from tether.demo.app import Settings, create_app

PASSWORD = "correct horse battery"


def settings_for(tmp_path: Path, **changes: str) -> Settings:
    return Settings(
        database_url=changes.get("database_url",
                                 f"sqlite+aiosqlite:///{tmp_path / 'notes.db'}"),
        redis_url=changes.get("redis_url"),
        key_file=tmp_path / "keys.json",
        text_service_url="http://127.0.0.1:9",  # nothing listens: the outbound call fails
        password=PASSWORD,
    )


def login(client: TestClient) -> dict[str, str]:
    response = client.post("/token", data={"username": "demo", "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(tmp_path))) as client:
        yield client


def test_notes_can_be_added_listed_read_and_deleted(client: TestClient) -> None:
    auth = login(client)
    first = client.post("/notes", json={"body": "buy milk"}, headers=auth)
    second = client.post("/notes", json={"body": "call the plumber"}, headers=auth)
    assert first.status_code == second.status_code == 201
    note_id = second.json()["id"]
    assert [n["body"] for n in client.get("/notes", headers=auth).json()] == [
        "buy milk", "call the plumber"]
    assert client.get(f"/notes/{note_id}", headers=auth).json()["body"] == "call the plumber"
    assert client.delete(f"/notes/{note_id}", headers=auth).status_code == 204
    assert client.get(f"/notes/{note_id}", headers=auth).status_code == 404


def test_notes_are_stored_sealed_not_in_clear(tmp_path: Path) -> None:
    import sqlite3

    with TestClient(create_app(settings_for(tmp_path))) as client:
        client.post("/notes", json={"body": "the safe code is 4711"}, headers=login(client))
    rows = sqlite3.connect(tmp_path / "notes.db").execute(
        "SELECT owner, sealed FROM demo_notes").fetchall()
    assert len(rows) == 1
    assert rows[0][0] == "demo"
    assert b"4711" not in rows[0][1]


def test_every_notes_route_needs_a_token(client: TestClient) -> None:
    assert client.get("/notes").status_code == 401
    assert client.post("/notes", json={"body": "x"}).status_code == 401
    bad = {"Authorization": "Bearer nonsense"}
    assert client.get("/notes/1", headers=bad).status_code == 401


def test_a_wrong_password_is_refused(client: TestClient) -> None:
    response = client.post("/token", data={"username": "demo", "password": "guess"})
    assert response.status_code == 401
    assert response.json()["message"] == "wrong username or password"


def test_logins_are_rate_limited(client: TestClient) -> None:
    codes = [client.post("/token", data={"username": "demo", "password": "guess"}).status_code
             for _ in range(11)]
    assert codes == [401] * 10 + [429]


def test_a_refresh_token_gives_a_new_pair_once(client: TestClient) -> None:
    pair = client.post("/token", data={"username": "demo", "password": PASSWORD}).json()
    again = client.post("/token/refresh", json={"refresh_token": pair["refresh_token"]})
    assert again.status_code == 200
    reused = client.post("/token/refresh", json={"refresh_token": pair["refresh_token"]})
    assert reused.status_code == 401


def test_a_note_over_the_length_limit_is_refused_and_nothing_is_stored(
    client: TestClient,
) -> None:
    auth = login(client)
    assert client.post("/notes", json={"body": "x" * 2001}, headers=auth).status_code == 422
    assert client.get("/notes", headers=auth).json() == []


def test_notes_survive_a_restart_of_the_service(tmp_path: Path) -> None:
    with TestClient(create_app(settings_for(tmp_path))) as client:
        client.post("/notes", json={"body": "kept"}, headers=login(client))
    with TestClient(create_app(settings_for(tmp_path))) as client:  # same key file
        assert [n["body"] for n in client.get("/notes", headers=login(client)).json()] == [
            "kept"]


def test_reads_are_served_from_the_cache_after_the_first(client: TestClient) -> None:
    auth = login(client)
    note_id = client.post("/notes", json={"body": "cached"}, headers=auth).json()["id"]
    for _ in range(3):
        assert client.get(f"/notes/{note_id}", headers=auth).status_code == 200
    stats = client.app.state.tether_container.statistics()["Cache"]  # type: ignore[attr-defined]
    assert stats.misses_total == 1
    assert stats.hits_total == 2


def test_a_text_service_that_is_down_gives_a_503_naming_it(client: TestClient) -> None:
    auth = login(client)
    note_id = client.post("/notes", json={"body": "two words"}, headers=auth).json()["id"]
    response = client.get(f"/notes/{note_id}/words", headers=auth)
    assert response.status_code == 503
    assert "text-service" in response.json()["message"]
    detailed = client.get("/health/detailed").json()
    assert detailed["status"] == "degraded"  # not critical: the notes still work
    assert detailed["resources"]["HTTPClient"]["healthy"] is False


def test_the_demo_reports_its_resources_healthy(client: TestClient) -> None:
    detailed = client.get("/health/detailed").json()
    for name in ("Database", "Crypto", "Tokens"):
        assert detailed["resources"][name]["healthy"] is True


@pytest.mark.slow
def test_the_same_code_runs_on_postgresql_and_redis(
    tmp_path: Path, postgres_server: PostgresServer,  # noqa: F811
    redis_server: RedisServer,  # noqa: F811
) -> None:
    import asyncio

    database = f"demo_{uuid.uuid4().hex[:8]}"
    asyncio.run(postgres_server.create_database(database))
    settings = settings_for(tmp_path, database_url=postgres_server.url(
        database=database, driver="postgresql"), redis_url=redis_server.url)
    with TestClient(create_app(settings)) as client:
        auth = login(client)
        note_id = client.post("/notes", json={"body": "on postgres"}, headers=auth).json()["id"]
        assert client.get(f"/notes/{note_id}", headers=auth).json()["body"] == "on postgres"
        assert client.get(f"/notes/{note_id}", headers=auth).status_code == 200
        detailed = client.get("/health/detailed").json()["resources"]
        assert detailed["RedisClient"]["healthy"] is True
    async def stored() -> list[Any]:
        import asyncpg

        connection = await asyncpg.connect(postgres_server.url(database=database,
                                                               driver="postgresql"))
        try:
            return list(await connection.fetch("SELECT owner, sealed FROM demo_notes"))
        finally:
            await connection.close()

    [row] = asyncio.run(stored())
    assert row["owner"] == "demo"
    assert b"on postgres" not in row["sealed"]
    assert redis_server.command("KEYS", "tether:ratelimit:*")  # limits counted on Redis


@contextlib.contextmanager
def served(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """``python -m tether.demo`` on a free loopback port; yields its base URL and what
    it printed up to "startup complete" (the rest is added when it stops)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'demo.db'}",
               TETHER_DEMO_KEY_FILE=str(tmp_path / "keys.json"))
    env.pop("REDIS_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "tether.demo", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    try:
        if process.stdout is None:  # pragma: no cover - stdout=PIPE gives one
            raise AssertionError("no output")
        deadline = time.monotonic() + 30
        while not any("Application startup complete" in line for line in lines):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("the demo did not start:\n" + "".join(lines))
            lines.append(process.stdout.readline())
        yield f"http://127.0.0.1:{port}", lines
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=20)
        lines.extend(rest.splitlines(keepends=True))


def test_the_demo_command_serves_on_loopback_and_prints_a_token_to_try(
    tmp_path: Path,
) -> None:
    with served(tmp_path) as (base, lines):
        assert httpx.get(f"{base}/health").json() == {"status": "healthy"}
    output = "".join(lines)
    assert f"tether demo: encrypted notes on {base}" in output
    token = next(line.strip().split("=", 1)[1] for line in lines
                 if line.strip().startswith("export TOKEN="))
    assert token.count(".") == 2
    curls = [line for line in lines if line.strip().startswith("curl")]
    assert len(curls) == 2
    assert all('Authorization: Bearer $TOKEN' in line for line in curls)
    assert "Application shutdown complete" in output


def test_the_printed_token_and_curl_lines_work_against_the_service(tmp_path: Path) -> None:
    with served(tmp_path) as (base, lines):
        token = next(line.strip().split("=", 1)[1] for line in lines
                     if line.strip().startswith("export TOKEN="))
        auth = {"Authorization": f"Bearer {token}"}
        created = httpx.post(f"{base}/notes", json={"body": "buy milk"}, headers=auth)
        assert created.status_code == 201
        assert [n["body"] for n in httpx.get(f"{base}/notes", headers=auth).json()] == [
            "buy milk"]
        words = httpx.get(f"{base}/notes/{created.json()['id']}/words", headers=auth)
        assert words.json()["words"] == 2  # the outbound HTTP call, to the service itself
