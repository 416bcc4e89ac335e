"""The demo service: an encrypted notes API where every shared resource lives in one
tether container.

- notes are stored in SQL (SQLite in a temporary folder by default, PostgreSQL with
  ``DATABASE_URL``) through the database battery, one session per request;
- each note's text is sealed with AES-256-GCM by the crypto battery, bound to its owner
  (the owner is the associated data), under a key kept in a key file;
- reads are cached (in memory, or memory in front of Redis with ``REDIS_URL``);
- logins issue JWT access and refresh tokens; routes check scopes and permissions;
- logins and writes are rate limited (in memory, or on Redis with ``REDIS_URL``);
- word counts come from a text service over HTTP (by default this same service's
  ``/text/wordcount``, standing in for an outside one), through the HTTP battery;
- ``/health``, ``/metrics`` and ``/status`` come with ``install()``.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field
from sqlalchemy import DateTime, LargeBinary, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tether import Container, Scope
from tether.cache import Cache, HybridCache, HybridCacheConfig, MemoryCache, MemoryCacheConfig
from tether.exceptions import InvalidCredentials, InvalidToken, NotAllowed
from tether.fastapi import Inject, install
from tether.resources.crypto import Crypto, CryptoConfig
from tether.resources.database import Database, DatabaseConfig, session_provider
from tether.resources.http import HTTPClient, HTTPConfig
from tether.resources.redis import RedisClient, RedisConfig
from tether.security import (
    Authenticator,
    MemoryRateLimits,
    MemoryUsers,
    PasswordHasher,
    Permissions,
    Principal,
    RateLimiter,
    RateLimiterConfig,
    RedisRateLimits,
    TokenConfig,
    Tokens,
)
from tether.security.fastapi import rate_limit, require_scopes

DEMO_USER = "demo"
SCOPES = ("notes:read", "notes:write")


@dataclass(frozen=True)
class Settings:
    """Read from the environment; the defaults need nothing installed or running."""

    database_url: str
    key_file: Path
    text_service_url: str
    password: str
    redis_url: str | None = None
    max_note_length: int = 2000
    announce: Callable[[str], None] | None = field(default=None, compare=False)

    @classmethod
    def from_env(cls, *, port: int = 8000) -> Settings:
        folder = Path(tempfile.gettempdir())
        return cls(
            database_url=os.environ.get(
                "DATABASE_URL", f"sqlite+aiosqlite:///{folder / 'tether-demo.db'}"),
            redis_url=os.environ.get("REDIS_URL") or None,
            key_file=Path(os.environ.get("TETHER_DEMO_KEY_FILE",
                                         folder / "tether-demo-keys.json")),
            text_service_url=os.environ.get("TETHER_DEMO_TEXT_SERVICE",
                                            f"http://127.0.0.1:{port}"),
            password=os.environ.get("TETHER_DEMO_PASSWORD") or secrets.token_urlsafe(12),
        )


def _database_url(url: str) -> str:
    """Accept the usual spellings and pick the async drivers tether ships with."""
    for plain, driver in (("postgres://", "postgresql+asyncpg://"),
                          ("postgresql://", "postgresql+asyncpg://"),
                          ("sqlite://", "sqlite+aiosqlite://")):
        if url.startswith(plain):
            return driver + url[len(plain):]
    return url


# -- storage --------------------------------------------------------------------------


class Base(DeclarativeBase):
    pass


class NoteRow(Base):
    __tablename__ = "demo_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class Schema:
    """The tables exist: built once at start-up, before the first request."""


async def create_schema(db: Database) -> Schema:
    async with db.engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    return Schema()


class NoteIn(BaseModel):
    body: str = Field(min_length=1)


class Note(BaseModel):
    id: int
    body: str
    created_at: dt.datetime


class WordCount(BaseModel):
    id: int
    words: int


class Notes:
    """A user's notes: sealed on the way in, opened on the way out, reads cached."""

    def __init__(self, session: AsyncSession, crypto: Crypto, cache: Cache,
                 settings: Settings) -> None:
        self.session = session
        self.crypto = crypto
        self.cache = cache
        self.limit = settings.max_note_length

    async def add(self, owner: str, body: str) -> Note:
        if len(body) > self.limit:
            raise HTTPException(422, f"a note is at most {self.limit} characters")
        sealed = await self.crypto.aencrypt(body.encode(), aad=owner.encode())
        row = NoteRow(owner=owner, sealed=sealed, created_at=dt.datetime.now(dt.UTC))
        self.session.add(row)
        await self.session.commit()  # the client hears "created" only once it is stored
        return Note(id=row.id, body=body, created_at=row.created_at)

    async def get(self, owner: str, note_id: int) -> Note:
        async def load() -> dict[str, Any]:
            row = await self.session.get(NoteRow, note_id)
            if row is None or row.owner != owner:
                raise HTTPException(404, f"no note {note_id}")  # not cached: errors never are
            return {"sealed": base64.b64encode(row.sealed).decode(),
                    "created_at": row.created_at.isoformat()}

        # The cache holds sealed notes only: a cache (or Redis) dump reveals nothing.
        found = await self.cache.get_or_load(_cache_key(owner, note_id), load, ttl=300)
        return self._open(owner, note_id, base64.b64decode(found["sealed"]),
                          dt.datetime.fromisoformat(found["created_at"]))

    async def all(self, owner: str) -> list[Note]:
        rows = await self.session.scalars(
            select(NoteRow).where(NoteRow.owner == owner).order_by(NoteRow.id))
        return [self._open(owner, r.id, r.sealed, r.created_at) for r in rows]

    async def delete(self, owner: str, note_id: int) -> None:
        row = await self.session.get(NoteRow, note_id)
        if row is None or row.owner != owner:
            raise HTTPException(404, f"no note {note_id}")
        await self.session.delete(row)
        await self.session.commit()
        await self.cache.delete(_cache_key(owner, note_id))

    def _open(self, owner: str, note_id: int, sealed: bytes, created: dt.datetime) -> Note:
        body = self.crypto.decrypt(sealed, aad=owner.encode()).decode()
        if created.tzinfo is None:  # SQLite keeps no time zone; every time stored is UTC
            created = created.replace(tzinfo=dt.UTC)
        return Note(id=note_id, body=body, created_at=created)


def _cache_key(owner: str, note_id: int) -> str:
    return f"note:{owner}:{note_id}"


# -- the container ----------------------------------------------------------------------


def build_container(settings: Settings) -> Container:
    container = Container()
    container.bind(Settings, settings)
    container.bind(Database, Database(DatabaseConfig(
        name="notes-db", url=_database_url(settings.database_url))), eager=True)
    container.provide(eager=True)(create_schema)
    container.provide(scope=Scope.REQUEST)(session_provider())
    container.bind(Crypto, Crypto(CryptoConfig(name="notes-keys", key_source="file",
                                               key_file=settings.key_file)), eager=True)
    container.bind(HTTPClient, HTTPClient(HTTPConfig(
        name="text-service", base_url=settings.text_service_url, timeout=2.0, max_retries=1,
        circuit_breaker_threshold=5, circuit_breaker_reset=10.0,
        health_path="/health/live")), critical=False)
    if settings.redis_url:
        container.bind(RedisClient, RedisClient(RedisConfig(name="redis",
                                                            url=settings.redis_url)),
                       eager=True)

        @container.provide(provides=Cache)
        def hybrid(redis: RedisClient) -> HybridCache:
            return HybridCache(HybridCacheConfig(name="notes-cache"), redis)

        @container.provide
        def limiter(redis: RedisClient) -> RateLimiter:
            return RateLimiter(RateLimiterConfig(name="limits"), RedisRateLimits(redis))
    else:
        container.bind(Cache, MemoryCache(MemoryCacheConfig(name="notes-cache",
                                                            max_size=1000)))
        container.bind(RateLimiter, RateLimiter(RateLimiterConfig(name="limits"),
                                                MemoryRateLimits()))
    container.bind(Tokens, Tokens(TokenConfig(issuer="tether-demo", audience="tether-demo",
                                              access_ttl=3600)), eager=True)

    @container.provide
    async def authenticator(tokens: Tokens, settings: Settings) -> Authenticator:
        users = MemoryUsers(PasswordHasher())
        await users.add(DEMO_USER, settings.password, roles=["writer"], scopes=SCOPES)
        return Authenticator(tokens, users, Permissions({"writer": set(SCOPES)}),
                             roles_of=users.roles_of)

    container.bind(Notes, scope=Scope.REQUEST)
    return container


# -- the app ----------------------------------------------------------------------------

Reader = Annotated[Principal, Depends(require_scopes("notes:read"))]
Writer = Annotated[Principal, Depends(require_scopes("notes:write"))]


class Refresh(BaseModel):
    refresh_token: str


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    container = build_container(settings)

    @asynccontextmanager
    async def announce(app: FastAPI) -> AsyncIterator[None]:
        if settings.announce is not None:  # the container is up: a real token can be made
            auth = await container.aget(Authenticator)
            pair = await auth.login(DEMO_USER, settings.password, SCOPES)
            settings.announce(pair.access_token)
        yield

    app = FastAPI(title="tether demo: encrypted notes", lifespan=announce)
    install(app, container)

    @app.post("/token", dependencies=[Depends(rate_limit("10/minute", per="ip"))])
    async def login(form: Annotated[OAuth2PasswordRequestForm, Depends()],
                    auth: Inject[Authenticator]) -> dict[str, Any]:
        """OAuth2 password login: user ``demo``, the password the service printed."""
        try:
            pair = await auth.login(form.username, form.password, form.scopes or SCOPES)
        except InvalidCredentials as error:
            raise HTTPException(401, str(error), headers={"WWW-Authenticate": "Bearer"}) \
                from error
        except NotAllowed as error:
            raise HTTPException(403, str(error)) from error
        return pair.to_dict()

    @app.post("/token/refresh")
    async def refresh(body: Refresh, tokens: Inject[Tokens]) -> dict[str, Any]:
        try:
            return (await tokens.refresh(body.refresh_token)).to_dict()
        except InvalidToken as error:
            raise HTTPException(401, "invalid refresh token",
                                headers={"WWW-Authenticate": "Bearer"}) from error

    @app.post("/notes", status_code=201,
              dependencies=[Depends(rate_limit("30/minute", per="user"))])
    async def add_note(note: NoteIn, user: Writer, notes: Inject[Notes]) -> Note:
        return await notes.add(user.subject, note.body)

    @app.get("/notes")
    async def list_notes(user: Reader, notes: Inject[Notes]) -> list[Note]:
        return await notes.all(user.subject)

    @app.get("/notes/{note_id}")
    async def get_note(note_id: int, user: Reader, notes: Inject[Notes]) -> Note:
        return await notes.get(user.subject, note_id)

    @app.delete("/notes/{note_id}", status_code=204)
    async def delete_note(note_id: int, user: Writer, notes: Inject[Notes]) -> None:
        await notes.delete(user.subject, note_id)

    @app.get("/notes/{note_id}/words")
    async def count_words(note_id: int, user: Reader, notes: Inject[Notes],
                          text: Inject[HTTPClient]) -> WordCount:
        """Asks the text service, over HTTP, how many words the note has."""
        note = await notes.get(user.subject, note_id)
        reply = await text.post("/text/wordcount", json={"text": note.body})
        reply.raise_for_status()
        return WordCount(id=note_id, words=int(reply.json()["words"]))

    @app.post("/text/wordcount", include_in_schema=False)
    async def wordcount(body: dict[str, str]) -> dict[str, int]:
        """The stand-in text service (set TETHER_DEMO_TEXT_SERVICE to use another)."""
        return {"words": len(body.get("text", "").split())}

    return app
