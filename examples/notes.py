"""A small notes service on tether's core, with nothing to install.

    python3 dev.py demo

It wires settings, an SQLite database (a @resource with a health check), a
request-scoped transaction that commits or rolls back, and a service class; then
serves a few "requests", shows a failing one rolled back, and prints the health
report, the metrics and the dependency graph. Everything is disposed on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tether import Container, Scope, resource


@dataclass(frozen=True)
class Settings:
    database_path: Path
    max_note_length: int = 200


@resource
class Database:
    """One SQLite connection for the whole app, opened at start-up, closed at exit."""

    def __init__(self, settings: Settings) -> None:
        self.path = settings.database_path
        self.connection: sqlite3.Connection | None = None

    def initialize(self) -> None:
        self.connection = sqlite3.connect(self.path, isolation_level=None)
        self.connection.execute(
            "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"
        )

    def dispose(self) -> None:
        if self.connection is not None:
            self.connection.close()

    def health_check(self) -> bool:
        assert self.connection is not None
        row = self.connection.execute("SELECT 1").fetchone()
        return bool(row == (1,))


class Transaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection


def transaction(db: Database) -> Iterator[Transaction]:
    """One transaction per request: committed when the request succeeds, else rolled back."""
    assert db.connection is not None
    db.connection.execute("BEGIN")
    try:
        yield Transaction(db.connection)
    except BaseException:
        db.connection.execute("ROLLBACK")
        raise
    else:
        db.connection.execute("COMMIT")


class Notes:
    def __init__(self, tx: Transaction, settings: Settings) -> None:
        self.tx = tx
        self.settings = settings

    def add(self, body: str) -> int:
        if len(body) > self.settings.max_note_length:
            raise ValueError(f"a note is at most {self.settings.max_note_length} characters")
        cursor = self.tx.connection.execute("INSERT INTO notes (body) VALUES (?)", (body,))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def all(self) -> list[tuple[int, str]]:
        return list(self.tx.connection.execute("SELECT id, body FROM notes ORDER BY id"))


def build(database_path: Path) -> Container:
    container = Container()
    container.bind(Settings, Settings(database_path=database_path))
    container.bind(Database, eager=True)
    container.provide(scope=Scope.REQUEST)(transaction)
    container.bind(Notes, scope=Scope.REQUEST)
    return container


async def main(database_path: Path) -> None:
    container = build(database_path)
    async with container:
        print(f"tether example: notes in {database_path}\n")
        for body in ("buy milk", "call the bank", "water the plants"):
            async with container.scope() as request:
                notes = await request.aget(Notes)
                print(f"  added note {notes.add(body)}: {body}")
        try:
            async with container.scope() as request:
                notes = await request.aget(Notes)
                notes.add("this one is rolled back")
                notes.add("x" * 500)
        except ValueError as error:
            print(f"  rejected a request, its transaction rolled back: {error}")
        async with container.scope() as request:
            notes = await request.aget(Notes)
            print(f"\n  notes stored: {[body for _, body in notes.all()]}")

        report = await container.health()
        print(f"\nhealth: {report.status.value}")
        for name, check in report.resources.items():
            print(f"  {name}: healthy={check.is_healthy} in {check.response_time or 0:.4f}s")
        print("\nmetrics (created / disposed / active):")
        for name, m in container.metrics().items():
            print(f"  {name:12} {m.created:3} {m.disposed:3} {m.active:3}   {m.scope.name}")
        print("\ngraph (Mermaid):")
        print(container.graph("mermaid"))
    print("container closed: database disposed, every transaction finished.")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", type=Path, help="SQLite file (default: a temporary one)")
    args = parser.parse_args()
    if args.database is not None:
        asyncio.run(main(args.database))
        return
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(main(Path(folder) / "notes.db"))


if __name__ == "__main__":
    cli()
