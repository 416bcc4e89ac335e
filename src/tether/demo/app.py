"""The demo service's app: ``create_app()`` wires a container into FastAPI."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from tether import Container, Scope, resource
from tether.fastapi import Inject, install


@dataclass(frozen=True)
class Settings:
    """Read from the environment; the defaults need nothing installed."""

    database_path: Path
    max_note_length: int = 2000

    @classmethod
    def from_env(cls) -> Settings:
        default = Path(tempfile.gettempdir()) / "tether-demo.db"
        return cls(database_path=Path(os.environ.get("TETHER_DEMO_DB", default)))


@resource
class Database:
    """One SQLite connection for the app; a lock keeps one transaction at a time."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.database_path
        self.lock = asyncio.Lock()
        self._connection: sqlite3.Connection | None = None

    @property
    def connection(self) -> sqlite3.Connection:
        if self._connection is None:
            raise RuntimeError("the database is not open")
        return self._connection

    def initialize(self) -> None:
        self._connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False
        )
        self._connection.execute(
            "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"
        )

    def dispose(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def health_check(self) -> bool:
        async with self.lock:
            row = self.connection.execute("SELECT 1").fetchone()
        return bool(row == (1,))


class Transaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection


async def transaction(db: Database) -> AsyncIterator[Transaction]:
    """One per request: committed when the request succeeds, rolled back otherwise."""
    async with db.lock:
        db.connection.execute("BEGIN")
        try:
            yield Transaction(db.connection)
        except BaseException:
            db.connection.execute("ROLLBACK")
            raise
        else:
            db.connection.execute("COMMIT")


class NoteIn(BaseModel):
    body: str = Field(min_length=1)


class Note(BaseModel):
    id: int
    body: str


class Notes:
    def __init__(self, tx: Transaction, settings: Settings) -> None:
        self.tx = tx
        self.limit = settings.max_note_length

    def add(self, body: str) -> Note:
        if len(body) > self.limit:
            raise HTTPException(422, f"a note is at most {self.limit} characters")
        cursor = self.tx.connection.execute("INSERT INTO notes (body) VALUES (?)", (body,))
        return Note(id=int(cursor.lastrowid or 0), body=body)

    def get(self, note_id: int) -> Note:
        row = self.tx.connection.execute(
            "SELECT id, body FROM notes WHERE id = ?", (note_id,)
        ).fetchone()
        if row is None:
            raise HTTPException(404, f"no note {note_id}")
        return Note(id=row[0], body=row[1])

    def all(self) -> list[Note]:
        rows = self.tx.connection.execute("SELECT id, body FROM notes ORDER BY id")
        return [Note(id=i, body=b) for i, b in rows]

    def delete(self, note_id: int) -> None:
        if self.tx.connection.execute("DELETE FROM notes WHERE id = ?", (note_id,)).rowcount == 0:
            raise HTTPException(404, f"no note {note_id}")


def build_container(settings: Settings | None = None) -> Container:
    container = Container()
    container.bind(Settings, settings or Settings.from_env())
    container.bind(Database, eager=True)
    container.provide(scope=Scope.REQUEST)(transaction)
    container.bind(Notes, scope=Scope.REQUEST)
    return container


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="tether demo: notes")
    install(app, build_container(settings))

    @app.post("/notes", status_code=201)
    def add_note(note: NoteIn, notes: Inject[Notes]) -> Note:
        return notes.add(note.body)

    @app.get("/notes")
    def list_notes(notes: Inject[Notes]) -> list[Note]:
        return notes.all()

    @app.get("/notes/{note_id}")
    def get_note(note_id: int, notes: Inject[Notes]) -> Note:
        return notes.get(note_id)

    @app.delete("/notes/{note_id}", status_code=204)
    def delete_note(note_id: int, notes: Inject[Notes]) -> None:
        notes.delete(note_id)

    return app
