"""Databases: a SQLAlchemy 2 async engine with sessions that commit or roll back.

    from tether.resources.database import Database, DatabaseConfig, session_provider

    container.bind(DatabaseConfig, DatabaseConfig(url="sqlite+aiosqlite:///./app.db"))
    container.bind(Database, eager=True)
    container.bind(AsyncSession, session_provider(), scope=Scope.REQUEST)

    async with db.session() as session:        # committed on success, rolled back on error
        session.add(User(name="ada"))
    count = await db.run(lambda s: s.scalar(select(func.count(User.id))), idempotent=True)

PostgreSQL runs through asyncpg, SQLite (the embedded default) through aiosqlite.
Driver errors come out as ``tether.exceptions`` errors: ``PoolTimeout`` when the pool
stays busy, ``ResourceUnavailable`` when the server cannot be reached or the connection
is lost, ``ResourceTimeout`` when a statement runs past its deadline. SQL errors that
are the caller's (syntax, constraints, bad data) come out as SQLAlchemy raises them.
"""

from __future__ import annotations

try:
    import greenlet  # type: ignore[import-untyped]  # noqa: F401  (SQLAlchemy asyncio needs it)
    import pydantic  # noqa: F401
    import sqlalchemy  # noqa: F401
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
except ImportError:
    raise ImportError(
        "tether.resources.database needs the 'database' extra: pip install 'tether[database]'"
    ) from None

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, TypeVar

import sqlalchemy.exc as sa_exc
from pydantic import ConfigDict, Field, SecretStr, field_validator
from sqlalchemy import event, text
from sqlalchemy.pool import QueuePool

from .._health import describe_error, redact
from .._markers import Named
from .._providers import resource
from ..exceptions import (
    CircuitOpen,
    ClosedError,
    ResourceError,
    ResourceTimeout,
    ResourceUnavailable,
)
from ..resilience import CircuitBreaker, Policy, Retry
from ._config import ResourceConfig
from ._database_engine import OpenConnections, build, check_url, is_memory
from ._database_errors import Translator
from ._meter import Meter

__all__ = ["Database", "DatabaseConfig", "DatabaseStats", "session_provider"]

T = TypeVar("T")
logger = logging.getLogger("tether.resources.database")

_SELECT_ONE = text("SELECT 1")
_DEFAULT_DEADLINE = 10.0  # for the health check and dispose when timeout=None


class DatabaseConfig(ResourceConfig):
    """How to reach one database, and how patient to be with it.

    ``timeout`` bounds each statement on the client (asyncpg's ``command_timeout``),
    each ``run()`` (retries included) and the health check; ``statement_timeout`` is
    the server's own limit, which holds even when the client is gone. The PostgreSQL
    settings (``statement_timeout``, ``client_connection_check_interval``,
    ``application_name``) are sent when the connection opens; SQLite ignores them.
    """

    # A rejected url may hold a password: pydantic must not echo it in its errors.
    model_config = ConfigDict(hide_input_in_errors=True)

    name: str = Field(default="database", min_length=1)
    url: SecretStr
    pool_size: int = Field(default=5, ge=1)
    max_overflow: int = Field(default=10, ge=0)
    pool_timeout: float = Field(default=5.0, gt=0)
    pool_recycle: float | None = Field(default=None, gt=0)
    pool_pre_ping: bool = True
    connect_timeout: float = Field(default=5.0, gt=0)
    statement_timeout: float | None = Field(default=30.0, gt=0)
    client_connection_check_interval: float | None = Field(default=1.0, gt=0)
    application_name: str | None = Field(default=None, min_length=1, max_length=63)
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: SecretStr) -> SecretStr:
        check_url(value.get_secret_value())
        return value

    def policy(self) -> Policy:
        # As ResourceConfig's, but the breaker counts only the database's own failures:
        # a syntax error or a violated constraint says nothing about the server.
        breaker = None
        if self.circuit_breaker_threshold is not None:
            breaker = CircuitBreaker(
                self.name, threshold=self.circuit_breaker_threshold,
                reset_timeout=self.circuit_breaker_reset, exclude=_callers_fault,
            )
        retry = Retry(attempts=self.max_retries + 1) if self.max_retries else None
        return Policy(self.name, timeout=self.timeout, retry=retry, breaker=breaker)


def _callers_fault(error: BaseException) -> bool:
    return not isinstance(error, ResourceError)


@dataclass(frozen=True, slots=True)
class DatabaseStats:
    """A snapshot of the pool and of the calls made (``db.statistics()``).

    ``checked_out`` connections are in use, ``checked_in`` ones idle in the pool,
    ``overflow`` ones opened beyond ``pool_size``. A call is one ``session()`` block or
    one ``run()``; only the database's own failures (the ``ResourceError``s) count, by
    the name of the error. ``retries_total`` counts the re-runs of ``run()``.
    """

    pool_size: int
    max_overflow: int
    checked_out: int
    checked_in: int
    overflow: int
    pool_timeouts_total: int
    calls_total: int
    failures_total: int
    failures_by_kind: Mapping[str, int]
    retries_total: int
    active: int
    peak: int
    latency_seconds_total: float
    latency_seconds_max: float


@resource
class Database:
    """One database: an ``AsyncEngine`` and its pool, sessions, health and statistics.

    ``initialize()`` builds the engine and checks that the database answers;
    ``dispose()`` closes the pool. ``session()`` is a unit of work that commits when its
    block succeeds and rolls back when it fails; ``run()`` is the same under the
    resource's policy (deadline, retries, circuit breaker).
    """

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self.name = config.name
        memory = is_memory(check_url(config.url.get_secret_value()))
        # An in-memory SQLite database lives in one connection (see _database_engine).
        self._limits = (1, 0) if memory else (config.pool_size, config.max_overflow)
        self._policy = config.policy()
        self._meter = Meter()
        self._errors = Translator(
            config.name, timeout=config.timeout, statement_timeout=config.statement_timeout,
            pool_timeout=config.pool_timeout, pool_limit=sum(self._limits),
        )
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._connections: OpenConnections | None = None
        self._anchor: Any = None
        self._closed = False
        self._cleanups: set[asyncio.Task[Any]] = set()

    # -- lifecycle ----------------------------------------------------------------

    async def initialize(self) -> None:
        """Build the engine, then run ``SELECT 1``: a wrong URL or a server that is down
        fails here, naming the resource, rather than at the first request."""
        if self._closed:
            raise ClosedError(self._what())
        if self._engine is not None:
            return
        built = build(self.config)
        event.listen(built.engine.sync_engine, "handle_error", self._errors.handle_error,
                     retval=True)
        event.listen(built.engine.sync_engine, "do_connect", self._errors.do_connect)
        self._engine, self._anchor = built.engine, built.anchor
        self._connections = built.connections
        self._sessions = async_sessionmaker(built.engine, expire_on_commit=False)
        try:
            await self.health_check()
        except BaseException:
            try:
                await self._close()
            except Exception as error:  # the first error is the one to raise
                logger.error("%s: closing the engine after a failed start raised %s",
                             self.name, describe_error(error))
            raise

    async def dispose(self) -> None:
        """Close the pool's connections within ``timeout``: those a frozen server keeps
        from closing are then aborted and ``ResourceTimeout`` raised (after logging).
        A second call does nothing. Connections still checked out are closed when they
        come back."""
        if self._closed:
            return
        self._closed = True
        await self._close()

    async def health_check(self) -> bool:
        """``SELECT 1`` on a pooled connection, within ``timeout``. Raises the
        translated error (which the health report shows) when it fails."""
        await self._bounded(self._ping(), "health check")
        return True

    # -- use ----------------------------------------------------------------------

    @property
    def engine(self) -> AsyncEngine:
        """The SQLAlchemy engine, for what sessions do not cover (DDL, raw connections).
        Statements through it get the same error translation."""
        return self._live()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction of its own: committed when the block ends, rolled
        back when it raises (or is cancelled), always closed.

        The connection is checked out by the first statement, as SQLAlchemy does: a
        busy pool raises ``PoolTimeout`` there and a server that is down
        ``ResourceUnavailable(sent=False)``. Not retried: a block cannot be run twice.
        """
        breaker = self._policy.breaker
        started = self._meter.begin()
        try:
            probe = breaker.acquire() if breaker is not None else False
        except CircuitOpen as error:
            self._meter.end(started, error)
            raise
        try:
            async with self._unit() as session:
                yield session
        except Exception as error:
            if breaker is not None:
                breaker.failure(error, probe)
            self._meter.end(started, error if isinstance(error, ResourceError) else None)
            raise
        except BaseException:
            if breaker is not None:
                breaker.release(probe)
            self._meter.end(started)
            raise
        if breaker is not None:
            breaker.success(probe)
        self._meter.end(started)

    async def run(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, idempotent: bool = False
    ) -> T:
        """``await work(session)`` in a transaction of its own, committed when it
        returns, under the resource's policy.

        ``timeout`` is the deadline of the whole call, retries included; the call fails
        at it even when the server is frozen. ``max_retries`` re-runs ``work`` from the
        start in a new transaction: only for ``idempotent`` work, unless the error
        proves nothing reached the server (``ResourceUnavailable(sent=False)``).
        """
        self._live()
        started = self._meter.begin()
        failure: BaseException | None = None
        try:
            return await self._policy.call(
                lambda: self._detached(self._attempt(work)), idempotent=idempotent
            )
        except BaseException as error:
            failure = error
            raise
        finally:
            counted = failure if isinstance(failure, ResourceError) else None
            self._meter.end(started, counted)

    def statistics(self) -> DatabaseStats:
        """The pool's counts now, and the call counters since the start."""
        pool = self._engine.sync_engine.pool if self._engine is not None else None
        queue = pool if isinstance(pool, QueuePool) else None
        meter = self._meter
        return DatabaseStats(
            pool_size=self._limits[0],
            max_overflow=self._limits[1],
            checked_out=queue.checkedout() if queue is not None else 0,
            checked_in=queue.checkedin() if queue is not None else 0,
            overflow=max(0, queue.overflow()) if queue is not None else 0,
            pool_timeouts_total=self._errors.pool_timeouts_total,
            calls_total=meter.calls,
            failures_total=meter.failures_total,
            failures_by_kind=MappingProxyType(dict(meter.failures)),
            retries_total=self._policy.retries_total,
            active=meter.active,
            peak=meter.peak,
            latency_seconds_total=meter.latency_total,
            latency_seconds_max=meter.latency_max,
        )

    def __repr__(self) -> str:
        url = check_url(self.config.url.get_secret_value())
        state = "closed" if self._closed else ("open" if self._engine else "not initialized")
        return (f"<Database {self.name!r} {redact(url.render_as_string(hide_password=True))} "
                f"({state})>")

    # -- internals ----------------------------------------------------------------

    def _what(self) -> str:
        return f"Database {self.name!r}"

    def _live(self) -> AsyncEngine:
        if self._engine is None:
            if self._closed:
                raise ClosedError(self._what())
            raise ResourceError(
                self.name,
                "not initialized: resolve it from the container (which calls initialize()) "
                "or await initialize() first",
            )
        return self._engine

    async def _close(self) -> None:
        engine, connections, anchor = self._engine, self._connections, self._anchor
        self._engine = self._sessions = self._connections = self._anchor = None
        limit = self._deadline()
        try:
            if engine is None:
                return
            try:
                async with asyncio.timeout(limit):
                    if self._cleanups:  # sessions cut off by a deadline, still releasing
                        await asyncio.wait(set(self._cleanups))
                    await engine.dispose()
            except TimeoutError as error:
                aborted = connections.abort_all() if connections is not None else 0
                logger.error("%s: closing the pool took longer than %gs; %d connection(s) "
                             "aborted", self.name, limit, aborted)
                raise ResourceTimeout(self.name, limit, "dispose") from error
        finally:
            if anchor is not None:
                anchor.close()

    def _deadline(self) -> float:
        return self.config.timeout if self.config.timeout is not None else _DEFAULT_DEADLINE

    async def _ping(self) -> None:
        engine = self._live()
        with self._errors.checkout():
            connection = await engine.connect().start()
        try:
            await connection.execute(_SELECT_ONE)
        finally:
            await connection.close()

    async def _attempt(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        # _unit() spelled out: run() is the hot path, and a generator-based context
        # manager costs two more coroutine steps.
        session = self._new_session()
        try:
            result = await work(session)
            await session.commit()
        except BaseException as error:
            translated = await self._failed(session, error)
            if translated is error:
                raise
            raise translated from error
        await self._end(session, None)
        return result

    @asynccontextmanager
    async def _unit(self) -> AsyncIterator[AsyncSession]:
        session = self._new_session()
        try:
            yield session
            await session.commit()
        except BaseException as error:
            translated = await self._failed(session, error)
            if translated is error:
                raise
            raise translated from error
        await self._end(session, None)

    def _new_session(self) -> AsyncSession:
        # No checkout ahead of the work: the first statement takes the connection (one
        # trip through SQLAlchemy's greenlet bridge less per unit). What getting it
        # raises is translated all the same: connect errors where they happen
        # (Translator.do_connect, handle_error), a busy pool in _failed.
        self._live()
        assert self._sessions is not None  # set together with the engine
        return self._sessions()

    async def _failed(self, session: AsyncSession, error: BaseException) -> BaseException:
        """End a unit that raised ``error``; what to raise instead of it."""
        await self._end(session, error)
        if isinstance(error, sa_exc.TimeoutError):  # QueuePool: no connection came free
            return self._errors.connecting(error)
        return error

    async def _end(self, session: AsyncSession, error: BaseException | None) -> None:
        """Give the session's connection back: rolled back, or dropped when its state is
        unknown (lost, timed out, cancelled mid-statement)."""
        if error is None or isinstance(error, Exception):
            broken = isinstance(error, ResourceUnavailable | ResourceTimeout)
            await self._release(session, broken)
            return
        # Cancelled: under an anyio cancel scope every later await in this task is
        # cancelled too, so the release runs in a task of its own, awaited here when
        # it may be and finished in the background otherwise (dispose waits for it).
        task = asyncio.get_running_loop().create_task(self._release(session, True))
        self._track(task)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            logger.debug("%s: cancelled again while releasing a session; it finishes in "
                         "the background", self.name)

    async def _release(self, session: AsyncSession, broken: bool) -> None:
        if not broken:
            try:
                await session.close()  # ends an open transaction with a rollback
                return
            except Exception as error:
                logger.warning("%s: rolling back failed (%s); dropping the connection",
                               self.name, describe_error(error))
        try:
            await session.invalidate()
        except Exception as error:
            logger.warning("%s: closing a broken connection failed: %s", self.name,
                           describe_error(error))

    async def _bounded(self, coro: Coroutine[Any, Any, T], operation: str) -> T:
        limit = self._deadline()
        try:
            async with asyncio.timeout(limit):
                return await self._detached(coro)
        except TimeoutError as error:
            if isinstance(error, ResourceError):
                raise
            raise ResourceTimeout(self.name, limit, operation) from error

    async def _detached(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` in a task of its own. When the caller is cancelled (its
        deadline passed), the task is cancelled and left to release its connection in
        the background: the caller fails at its deadline, not when a frozen server
        lets go of the connection."""
        loop = asyncio.get_running_loop()
        # The task hands its outcome over itself, as its last step: the caller wakes one
        # loop iteration after the work ends (asyncio.shield would take two), and a
        # cancellation of the caller cancels this future, never the task.
        handoff: asyncio.Future[T] = loop.create_future()
        task = loop.create_task(_hand_over(coro, handoff))
        try:
            return await handoff
        except asyncio.CancelledError:
            if not handoff.cancelled():
                raise  # the work itself raised CancelledError
            task.cancel()
            self._track(task)
            raise

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._cleanups.add(task)
        task.add_done_callback(self._reap)

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._cleanups.discard(task)
        error = None if task.cancelled() else task.exception()  # retrieved: no warning
        if error is not None:
            logger.debug("%s: abandoned call ended with %s", self.name, describe_error(error))


async def _hand_over(coro: Coroutine[Any, Any, T], handoff: asyncio.Future[T]) -> None:
    try:
        result = await coro
    except BaseException as error:
        if handoff.done():
            raise  # the caller is gone: _reap sees how the abandoned call ended
        handoff.set_exception(error)
        if not isinstance(error, Exception | asyncio.CancelledError):
            raise  # KeyboardInterrupt, SystemExit: the loop must see them
        return
    if not handoff.done():
        handoff.set_result(result)


def session_provider(
    name: str | None = None,
) -> Callable[[Database], AsyncIterator[AsyncSession]]:
    """An async generator function that gives each scope a session of the ``Database``
    registered under ``name`` (the unnamed one by default)::

        container.bind(AsyncSession, session_provider(), scope=Scope.REQUEST)
        container.bind(AsyncSession, session_provider("reports"), scope=Scope.REQUEST,
                       name="reports")

    The session commits when the scope closes without an error and rolls back when
    it closes with one; under ``tether.fastapi`` the scope closes after the response
    has been sent, so commit inside the endpoint when the client must know it worked.
    """

    async def scoped_session(db: Database) -> AsyncIterator[AsyncSession]:
        async with db.session() as session:
            yield session

    scoped_session.__annotations__ = {
        "db": Database if name is None else Annotated[Database, Named(name)],
        "return": AsyncIterator[AsyncSession],
    }
    scoped_session.__qualname__ = f"session_provider({name!r})" if name else "session_provider()"
    return scoped_session
