"""Database: ``SELECT 1`` round trips on PostgreSQL, in a transaction of their own.

- tether ``run``: ``await db.run(lambda s: s.scalar(SELECT 1), idempotent=True)``:
  a session from the pool, the statement, COMMIT, the connection back, under the
  policy (deadline, retries, breaker) with error translation and counters;
- tether ``session``: ``async with db.session() as s: await s.scalar(SELECT 1)``;
- SQLAlchemy pooled: an ``AsyncEngine`` built with the options tether gives its engine
  (pool of 5 + 10, 5 s pool timeout, ``pool_pre_ping``, hidden parameters, the same
  asyncpg connect arguments) and ``async with sessionmaker() as s: await
  s.scalar(...); await s.commit()``: the baseline, what tether wraps;
- SQLAlchemy pooled, no pre-ping: the same with ``pool_pre_ping=False`` (tether's
  default pings each connection as it leaves the pool: one more round trip);
- SQLAlchemy ``NullPool``: the same statement on a new asyncpg connection per
  transaction: what the pool saves;
- rows that explain tether's: ``run()`` with ``timeout=None`` (no per-call deadline;
  this also turns off asyncpg's ``command_timeout``, so the baseline without it is
  shown too), and the pooled baseline with ``await session.connection()`` first
  (what tether's sessions did before they took the connection at their first
  statement: one more trip through SQLAlchemy's greenlet bridge).

The pool's ``connect`` events are counted around every timed loop: the pooled rows
must open no connection, the NullPool row one per query.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from benchmarks.batteries._harness import Env, Row, Scenario, Skip, both, counted, equals

TITLE = "Network: database (PostgreSQL)"
DISTRIBUTIONS = ("sqlalchemy", "asyncpg")
TARGET = 0.05
SELECT_ONE = text("SELECT 1")


def _connects(engine: AsyncEngine) -> Callable[[], int]:
    """How many connections the engine's pool has opened so far."""
    opened = [0]

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        opened[0] += 1

    event.listen(engine.sync_engine, "connect", on_connect)
    return lambda: opened[0]


def _unit(sessions: async_sessionmaker[AsyncSession],
          checkout_first: bool = False) -> Callable[[], Any]:
    async def select_one() -> Any:
        async with sessions() as session:
            if checkout_first:
                await session.connection()
            value = await session.scalar(SELECT_ONE)
            await session.commit()
            return value

    return select_one


async def _select(session: AsyncSession) -> Any:
    return await session.scalar(SELECT_ONE)


async def scenarios(env: Env, stack: AsyncExitStack) -> list[Scenario | Skip]:
    url = env.url("postgres")
    if url is None:
        return [Skip("select-1", "SELECT 1 in a transaction", env.why_not("postgres"))]
    from tether import Container
    from tether.resources._database_engine import _asyncpg_arguments
    from tether.resources.database import Database, DatabaseConfig

    config = DatabaseConfig(name="bench", url=url)
    container = Container()
    container.bind(DatabaseConfig, config)
    container.bind(Database)
    container.bind(Database, Database(DatabaseConfig(name="bench-no-deadline", url=url,
                                                     timeout=None)), name="no-deadline")
    await stack.enter_async_context(container)
    db = await container.aget(Database)
    no_deadline = await container.aget(Database, name="no-deadline")

    async def in_session() -> Any:
        async with db.session() as session:
            return await session.scalar(SELECT_ONE)

    # The options tether's engine gets (tether.resources._database_engine.build).
    options: dict[str, Any] = {
        "hide_parameters": True, "pool_timeout": config.pool_timeout, "pool_recycle": -1,
        "pool_size": config.pool_size, "max_overflow": config.max_overflow,
        "connect_args": _asyncpg_arguments(config),
    }
    # tether's timeout=None also drops asyncpg's command_timeout (a timer per statement)
    no_timer = {**options, "connect_args": {**options["connect_args"], "command_timeout": None}}
    engines = {
        "pooled": create_async_engine(url, pool_pre_ping=True, **options),
        "no-timer": create_async_engine(url, pool_pre_ping=True, **no_timer),
        "no-ping": create_async_engine(url, pool_pre_ping=False, **options),
        "nullpool": create_async_engine(url, poolclass=NullPool,
                                        connect_args=_asyncpg_arguments(config)),
    }
    for engine in engines.values():
        stack.push_async_callback(engine.dispose)
    makers = {name: async_sessionmaker(engine, expire_on_commit=False)
              for name, engine in engines.items()}
    units = {name: _unit(maker) for name, maker in makers.items()}
    checkout_first = _unit(makers["pooled"], checkout_first=True)
    opened = {name: _connects(engine) for name, engine in engines.items()}
    calls = counted(lambda: db.statistics().calls_total, "calls_total")
    none_opened = counted(_connects(db.engine), "connections opened", per_op=0)
    bare_none_opened = counted(_connects(no_deadline.engine), "connections opened", per_op=0)

    def pooled(name: str) -> Any:
        return counted(opened[name], "connections opened", per_op=0)

    one = equals(1)
    return [
        Scenario(
            "select-1", "SELECT 1 in a transaction (session, COMMIT)",
            (
                Row("tether run()", functools.partial(db.run, _select, idempotent=True), one,
                    both(calls, none_opened)),
                Row("tether session()", in_session, one, both(calls, none_opened)),
                Row("SQLAlchemy pooled", units["pooled"], one, pooled("pooled")),
                Row("tether run(), timeout=None",
                    functools.partial(no_deadline.run, _select, idempotent=True), one,
                    bare_none_opened,
                    note="explains tether's rows: no per-call deadline, and no asyncpg "
                         "`command_timeout` either"),
                Row("SQLAlchemy pooled, no command_timeout", units["no-timer"], one,
                    pooled("no-timer"),
                    note="the baseline without asyncpg's timer per statement: compare "
                         "with the row above"),
                Row("SQLAlchemy pooled, connection() first", checkout_first, one,
                    pooled("pooled"),
                    note="the connection checked out before the statement (what tether "
                         "did before its sessions took it at the first statement)"),
                Row("SQLAlchemy pooled, no pre-ping", units["no-ping"], one,
                    pooled("no-ping"), note="one round trip less per checkout"),
                Row("SQLAlchemy NullPool", units["nullpool"], one,
                    counted(opened["nullpool"], "connections opened"),
                    note="a new connection per transaction"),
            ),
            baseline="SQLAlchemy pooled", tether=("tether run()", "tether session()"),
            target=TARGET,
        ),
    ]
