"""Server-side sessions: random ids, rotation on login and privilege change, idle and
absolute timeouts, optional binding to the client, and cookies with safe defaults."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .._providers import resource
from ..exceptions import ClosedError

if TYPE_CHECKING:
    from ..resources.redis import RedisClient


class SessionConfig(BaseModel):
    """Session lifetimes, client binding and cookie attributes (OWASP's defaults)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "sessions"
    idle_timeout: float = Field(default=1800.0, gt=0)
    absolute_timeout: float = Field(default=8 * 3600.0, gt=0)
    bind_ip: bool = False
    bind_user_agent: bool = False
    max_sessions: int = Field(default=100_000, ge=1)  # memory store only
    cookie_name: str = Field(default="session", min_length=1)
    cookie_secure: bool = True
    cookie_samesite: Literal["lax", "strict", "none"] = "lax"
    cookie_path: str = "/"
    cookie_domain: str | None = None

    @model_validator(mode="after")
    def _coherent(self) -> SessionConfig:
        if self.absolute_timeout < self.idle_timeout:
            raise ValueError("absolute_timeout must be at least idle_timeout")
        if self.cookie_samesite == "none" and not self.cookie_secure:
            raise ValueError("cookie_samesite='none' needs cookie_secure=True (browsers "
                             "refuse such cookies otherwise)")
        return self


@dataclass(frozen=True, slots=True)
class Session:
    """One session. ``id`` is the secret the client holds; the store only keeps its
    hash, so a copy of the store does not hand out live sessions."""

    id: str
    subject: str | None
    created_at: float
    last_seen: float
    data: Mapping[str, Any] = field(default_factory=dict)
    ip: str | None = None
    user_agent: str | None = None

    def __repr__(self) -> str:
        return f"Session(subject={self.subject!r}, created_at={self.created_at})"


@runtime_checkable
class SessionStore(Protocol):
    """Where sessions live, keyed by the hash of their id."""

    async def load(self, key: str) -> dict[str, Any] | None: ...

    async def save(self, key: str, record: dict[str, Any], ttl: float) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def dispose(self) -> None: ...

    async def ping(self) -> None: ...


class MemorySessionStore:
    """Sessions in one process's memory, at most ``max_sessions`` (oldest dropped)."""

    def __init__(self, max_sessions: int = 100_000, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._max = max_sessions
        self._clock = clock
        self._records: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.evicted_total = 0

    async def load(self, key: str) -> dict[str, Any] | None:
        found = self._records.get(key)
        if found is None:
            return None
        if found[1] <= self._clock():
            del self._records[key]
            return None
        record: dict[str, Any] = json.loads(found[0])
        return record

    async def save(self, key: str, record: dict[str, Any], ttl: float) -> None:
        self._records[key] = (json.dumps(record), self._clock() + ttl)
        self._records.move_to_end(key)
        while len(self._records) > self._max:
            self._records.popitem(last=False)
            self.evicted_total += 1

    async def delete(self, key: str) -> None:
        self._records.pop(key, None)

    async def dispose(self) -> None:
        self._records.clear()

    async def ping(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._records)


class RedisSessionStore:
    """Sessions on Redis, shared by every process; each record expires with its
    session (the idle timeout, capped by what is left of the absolute one)."""

    def __init__(self, redis: RedisClient, *, prefix: str = "tether:session:") -> None:
        self.redis = redis
        self.prefix = prefix

    async def load(self, key: str) -> dict[str, Any] | None:
        raw = await self.redis.call(lambda r: r.get(self.prefix + key), idempotent=True)
        if raw is None:
            return None
        record: dict[str, Any] = json.loads(raw)
        return record

    async def save(self, key: str, record: dict[str, Any], ttl: float) -> None:
        data = json.dumps(record)
        await self.redis.call(
            lambda r: r.set(self.prefix + key, data, px=max(1, int(ttl * 1000))),
            idempotent=True)

    async def delete(self, key: str) -> None:
        await self.redis.call(lambda r: r.delete(self.prefix + key), idempotent=True)

    async def dispose(self) -> None:
        return None  # the RedisClient is the container's to close

    async def ping(self) -> None:
        await self.redis.ping()


def _key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


@resource
class Sessions:
    """Server-side sessions (a ``@resource``).

    ``create`` at login (or ``login`` to replace an anonymous session: a new id, so an
    id planted before login is worth nothing after it); ``get`` on each request checks
    the idle and absolute timeouts and the client binding; ``rotate`` after a privilege
    change; ``invalidate`` at logout. ``on_end`` callbacks hear every id that stops
    being valid (``tether.security.fastapi.session_validator`` uses it to dispose the
    container's SESSION scope for that id).
    """

    def __init__(self, config: SessionConfig, store: SessionStore | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store: SessionStore = store if store is not None else MemorySessionStore(
            config.max_sessions, clock=clock)
        self._clock = clock
        self._closed = False
        self._on_end: list[Callable[[str], Awaitable[Any]]] = []
        self.created_total = self.rejected_total = self.ended_total = 0

    def on_end(self, callback: Callable[[str], Awaitable[Any]]) -> None:
        self._on_end.append(callback)

    async def create(self, subject: str | None = None, data: Mapping[str, Any] | None = None,
                     *, ip: str | None = None, user_agent: str | None = None) -> Session:
        self._check_open()
        now = self._clock()
        session = Session(secrets.token_urlsafe(32), subject, now, now, dict(data or {}),
                          ip, user_agent)
        await self._save(session)
        self.created_total += 1
        return session

    async def get(self, session_id: str, *, ip: str | None = None,
                  user_agent: str | None = None) -> Session | None:
        """The live session for ``session_id``, its idle clock restarted; None when it
        is unknown, timed out, or (with binding on) presented by another client."""
        self._check_open()
        if not session_id or len(session_id) > 256:
            return None
        record = await self.store.load(_key(session_id))
        if record is None:
            self.rejected_total += 1
            return None
        session = _from_record(session_id, record)
        now, cfg = self._clock(), self.config
        if (now - session.last_seen > cfg.idle_timeout
                or now - session.created_at > cfg.absolute_timeout):
            await self._end(session_id)
            self.rejected_total += 1
            return None
        if (cfg.bind_ip and not _same(session.ip, ip)) or \
                (cfg.bind_user_agent and not _same(session.user_agent, user_agent)):
            self.rejected_total += 1
            return None
        session = replace(session, last_seen=now)
        await self._save(session)
        return session

    async def login(self, previous_id: str | None, subject: str,
                    data: Mapping[str, Any] | None = None, *, ip: str | None = None,
                    user_agent: str | None = None) -> Session:
        """A session for ``subject`` with a new id; the previous one (anonymous or not)
        ends, and its data is carried over unless ``data`` replaces it."""
        carried: Mapping[str, Any] = {}
        if previous_id:
            old = await self.get(previous_id, ip=ip, user_agent=user_agent)
            if old is not None:
                carried = old.data
            await self._end(previous_id)
        return await self.create(subject, data if data is not None else carried, ip=ip,
                                 user_agent=user_agent)

    async def rotate(self, session_id: str) -> Session | None:
        """The same session under a new id (after a privilege change); the old id ends."""
        self._check_open()
        record = await self.store.load(_key(session_id))
        if record is None:
            return None
        session = _from_record(session_id, record)
        renewed = replace(session, id=secrets.token_urlsafe(32), last_seen=self._clock())
        await self._save(renewed)
        await self._end(session_id)
        return renewed

    async def update(self, session: Session, data: Mapping[str, Any]) -> Session:
        updated = replace(session, data=dict(data), last_seen=self._clock())
        await self._save(updated)
        return updated

    async def invalidate(self, session_id: str) -> None:
        """End the session server-side (logout): its id is refused from now on."""
        await self._end(session_id)

    async def _save(self, session: Session) -> None:
        cfg = self.config
        remaining = min(cfg.idle_timeout,
                        session.created_at + cfg.absolute_timeout - self._clock())
        await self.store.save(_key(session.id), _to_record(session), max(remaining, 0.001))

    async def _end(self, session_id: str) -> None:
        await self.store.delete(_key(session_id))
        self.ended_total += 1
        for callback in self._on_end:
            await callback(session_id)

    # -- cookies ---------------------------------------------------------------------

    def set_cookie(self, response: Any, session: Session) -> None:
        """Set the session cookie on a Starlette/FastAPI response: HttpOnly, Secure and
        SameSite by default; it lives no longer than the session can."""
        cfg = self.config
        response.set_cookie(
            cfg.cookie_name, session.id, max_age=int(cfg.absolute_timeout),
            path=cfg.cookie_path, domain=cfg.cookie_domain, secure=cfg.cookie_secure,
            httponly=True, samesite=cfg.cookie_samesite,
        )

    def clear_cookie(self, response: Any) -> None:
        cfg = self.config
        response.delete_cookie(cfg.cookie_name, path=cfg.cookie_path, domain=cfg.cookie_domain,
                               secure=cfg.cookie_secure, httponly=True,
                               samesite=cfg.cookie_samesite)

    # -- lifecycle ---------------------------------------------------------------------

    async def initialize(self) -> None:
        await self.store.ping()

    async def dispose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.store.dispose()

    async def health_check(self) -> bool:
        await self.store.ping()
        return True

    def statistics(self) -> SessionStats:
        return SessionStats(created_total=self.created_total,
                            rejected_total=self.rejected_total,
                            ended_total=self.ended_total)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"Sessions {self.config.name!r}")


@dataclass(frozen=True, slots=True)
class SessionStats:
    created_total: int
    rejected_total: int
    ended_total: int


def _same(expected: str | None, got: str | None) -> bool:
    return hmac.compare_digest((expected or "").encode(), (got or "").encode())


def _to_record(session: Session) -> dict[str, Any]:
    return {"subject": session.subject, "created_at": session.created_at,
            "last_seen": session.last_seen, "data": dict(session.data), "ip": session.ip,
            "user_agent": session.user_agent}


def _from_record(session_id: str, record: Mapping[str, Any]) -> Session:
    return Session(session_id, record.get("subject"), float(record["created_at"]),
                   float(record["last_seen"]), dict(record.get("data") or {}),
                   record.get("ip"), record.get("user_agent"))
