"""The demo service on its embedded defaults."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tether.demo.app import Settings, create_app


def client_for(tmp_path: Path) -> TestClient:
    return TestClient(create_app(Settings(database_path=tmp_path / "notes.db")))


def test_notes_can_be_added_listed_read_and_deleted(tmp_path: Path) -> None:
    with client_for(tmp_path) as client:
        created = client.post("/notes", json={"body": "buy milk"})
        assert created.status_code == 201
        note_id = created.json()["id"]
        assert client.get("/notes").json() == [{"id": note_id, "body": "buy milk"}]
        assert client.get(f"/notes/{note_id}").json()["body"] == "buy milk"
        assert client.delete(f"/notes/{note_id}").status_code == 204
        assert client.get(f"/notes/{note_id}").status_code == 404


def test_a_note_over_the_length_limit_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    app = create_app(Settings(database_path=tmp_path / "notes.db", max_note_length=5))
    with TestClient(app) as client:
        assert client.post("/notes", json={"body": "far too long"}).status_code == 422
        assert client.get("/notes").json() == []


def test_notes_survive_a_restart_of_the_service(tmp_path: Path) -> None:
    with client_for(tmp_path) as client:
        client.post("/notes", json={"body": "kept"})
    with client_for(tmp_path) as client:
        assert [n["body"] for n in client.get("/notes").json()] == ["kept"]


def test_the_demo_reports_its_database_healthy(tmp_path: Path) -> None:
    with client_for(tmp_path) as client:
        detailed = client.get("/health/detailed").json()
    assert detailed["status"] == "healthy"
    assert detailed["resources"]["Database"]["healthy"] is True


def test_the_demo_command_serves_on_loopback_and_prints_what_to_try(tmp_path: Path) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, TETHER_DEMO_DB=str(tmp_path / "demo.db"))
    process = subprocess.Popen(
        [sys.executable, "-m", "tether.demo", "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the demo did not start") from None
                time.sleep(0.1)
        assert response.json() == {"status": "healthy"}
        created = httpx.post(f"http://127.0.0.1:{port}/notes", json={"body": "hi"})
        assert created.status_code == 201
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}" in output
    assert "curl" in output
