"""SQLAlchemy, asyncpg and aiosqlite errors, translated into tether's ``ResourceError``s.

Two places see driver errors:

- SQLAlchemy's ``handle_error`` event, for every statement, commit and rollback run
  through the engine (in ``db.session()``, ``db.run()``, a request's injected session
  or the user's own ``db.engine.connect()``), and for DBAPI errors raised while
  connecting;
- SQLAlchemy's ``do_connect`` event (``Translator.do_connect``), for the socket errors
  and timeouts asyncpg raises while connecting, which are no DBAPI errors;
- the battery itself, for a busy pool (SQLAlchemy's ``TimeoutError``), around its
  sessions (``Translator.connecting``) and its own checkouts (``Translator.checkout``).

Errors that are the caller's fault (SQL syntax, a violated constraint, bad data) are
left as SQLAlchemy raises them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy.exc as sa_exc
from sqlalchemy.engine import ExceptionContext

from ..exceptions import PoolTimeout, ResourceError, ResourceTimeout, ResourceUnavailable

# SQLSTATEs that say the server, not the statement, failed.
_QUERY_CANCELED = "57014"  # statement_timeout, or a cancel request
_UNAVAILABLE_CLASSES = ("08",)  # connection exceptions
_UNAVAILABLE_STATES = frozenset({
    "57P01",  # admin_shutdown: pg_terminate_backend, pg_ctl stop -m fast
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now: starting up or shutting down
    "57P05",  # idle_session_timeout
    "53300",  # too_many_connections
})


def sqlstate(error: BaseException | None) -> str:
    """The SQLSTATE of a DBAPI error (asyncpg's ``sqlstate``), or ''."""
    for candidate in (error, getattr(error, "orig", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return ""


def _message(error: BaseException) -> str:
    # The driver's own sentence, never SQLAlchemy's rendering: that one appends the
    # statement and its bound parameters, which may hold user data.
    orig = getattr(error, "orig", None)
    source = orig if orig is not None else error
    text = str(source).strip() or type(source).__name__
    return text.splitlines()[0]


class Translator:
    """Turns one database's driver errors into tether errors and counts pool timeouts."""

    def __init__(
        self,
        resource: str,
        *,
        timeout: float | None,
        statement_timeout: float | None,
        pool_timeout: float,
        pool_limit: int,
    ) -> None:
        self.resource = resource
        self.timeout = timeout
        self.statement_timeout = statement_timeout
        self.pool_timeout = pool_timeout
        self.pool_limit = pool_limit
        self.pool_timeouts_total = 0

    # -- at checkout ----------------------------------------------------------------

    def connecting(self, error: BaseException) -> BaseException:
        """What to raise for ``error`` raised while getting a connection."""
        if isinstance(error, ResourceError) or not isinstance(error, Exception):
            return error
        if isinstance(error, sa_exc.TimeoutError):  # QueuePool: no connection came free
            self.pool_timeouts_total += 1
            return PoolTimeout(self.resource, self.pool_timeout, self.pool_limit)
        if isinstance(error, TimeoutError):  # connect_timeout, or a pooled connection's ping
            return ResourceUnavailable(self.resource, "could not connect: timed out",
                                       sent=False)
        if isinstance(error, OSError | sa_exc.DBAPIError):
            return ResourceUnavailable(self.resource, f"could not connect: {_message(error)}",
                                       sent=False)
        return error

    def do_connect(self, dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
        """SQLAlchemy's ``do_connect`` listener: the driver's connect, with what it raises
        outside the DBAPI (refused, unreachable, timed out) translated."""
        try:
            return dialect.connect(*cargs, **cparams)
        except OSError as error:  # TimeoutError included
            raise self.connecting(error) from error

    @contextmanager
    def checkout(self) -> Iterator[None]:
        """Translate what getting a connection raises inside the block."""
        try:
            yield
        except Exception as error:
            translated = self.connecting(error)
            if translated is error:
                raise
            raise translated from error

    # -- during a statement ---------------------------------------------------------

    def during_call(self, error: BaseException, disconnect: bool) -> ResourceError | None:
        """The tether error for a statement's ``error``, or None to let it through."""
        if not isinstance(error, Exception) or isinstance(error, ResourceError):
            return None
        if isinstance(error, TimeoutError):  # asyncpg's command_timeout: the server is slow
            return ResourceTimeout(self.resource, self.timeout or 0.0, "statement")
        state = sqlstate(error)
        if state == _QUERY_CANCELED:
            timeout = self.statement_timeout or self.timeout or 0.0
            return ResourceTimeout(self.resource, timeout, "statement (stopped by the server)")
        if disconnect or state[:2] in _UNAVAILABLE_CLASSES or state in _UNAVAILABLE_STATES \
                or isinstance(error, OSError):
            return ResourceUnavailable(self.resource, f"connection lost: {_message(error)}",
                                       sent=True)
        return None

    def handle_error(self, context: ExceptionContext) -> Any:
        """SQLAlchemy's ``handle_error`` listener (``retval=True``): the replacement
        error, or None to keep SQLAlchemy's."""
        if context.is_pre_ping:
            return None  # the pool reconnects on its own; a failed ping is no error yet
        error = context.sqlalchemy_exception or context.original_exception
        if context.connection is None and context.execution_context is None:
            translated = self.connecting(error)  # a DBAPI error raised by connect()
            return translated if translated is not error else None
        return self.during_call(error, context.is_disconnect)
