"""Running finalizers: every one runs, none hangs, no error is lost.

A finalizer first runs inline. Most finish without suspending (a pool's close, a
generator's ``finally``), and cost no task and no timer. One that suspends is moved
into a task of its own, shielded from the closing task's cancellation and abandoned
after ``dispose_timeout``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import types
from collections.abc import Generator, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ._resolve import EXIT_AGEN, EXIT_GEN
from .exceptions import BaseTeardownError, DisposeTimeout, TeardownError

if TYPE_CHECKING:
    from ._providers import Provider

    Entry = tuple[int, Any, Provider]
    Failure = tuple[Provider, BaseException]

logger = logging.getLogger("tether")

_DONE: Any = object()


def _close_gen(gen: Generator[Any, None, None], exc: BaseException | None, p: Provider) -> None:
    try:
        if exc is None:
            next(gen)
        else:
            gen.throw(exc)
    except StopIteration:
        return
    except BaseException as error:
        if error is exc:
            return
        raise
    gen.close()
    raise _yielded_twice(p)


def _dispose_call(obj: Any) -> Any:
    dispose = getattr(obj, "dispose", None)
    return None if dispose is None else dispose()


def _sync_step(aw: Any, agen: bool, p: Provider) -> None:
    """Finish an async finalizer without a loop, or fail saying why it cannot."""
    try:
        aw.send(None)
    except (StopIteration, StopAsyncIteration):
        return
    aw.close()
    raise RuntimeError(
        f"the teardown of {p.display} needs await, but its scope was closed synchronously. "
        f"Hint: close it with `async with` / `await scope.aclose()`."
    )


def run_sync(entries: Sequence[Entry], exc: BaseException | None) -> list[Failure]:
    failures: list[Failure] = []
    for what, obj, p in reversed(entries):
        started = perf_counter()
        error: BaseException | None = None
        try:
            if what == EXIT_GEN:
                _close_gen(obj, exc, p)
            elif what == EXIT_AGEN:
                _sync_step(obj.athrow(exc) if exc is not None else obj.__anext__(), True, p)
            else:
                result = _dispose_call(obj)
                if inspect.isawaitable(result):
                    _sync_step(result, False, p)
        except BaseException as caught:
            if caught is not exc:
                error = caught
        _done(p, started, error, failures)
    return failures


Suspended = tuple[int, Any, Any, Any, float]  # (index, awaitable, what it yielded, entry, start)


def begin(
    entries: Sequence[Entry], exc: BaseException | None, upto: int, failures: list[Failure]
) -> Suspended | None:
    """Run finalizers ``entries[upto-1]`` down to ``entries[0]`` inline, adding failures
    to ``failures``; stop at the first one that suspends and say where."""
    for index in range(upto - 1, -1, -1):
        entry = entries[index]
        what, obj, p = entry
        started = perf_counter() if p.stats.hooks else 0.0
        error: BaseException | None = None
        try:
            if what == EXIT_AGEN:
                aw = obj.__anext__() if exc is None else obj.athrow(exc)
            elif what == EXIT_GEN:
                aw = None
                _close_gen(obj, exc, p)
            else:
                aw = _dispose_call(obj)
                if aw is not None and not hasattr(aw, "send"):
                    aw = _awaited(aw) if inspect.isawaitable(aw) else None
            if aw is not None:
                try:
                    yielded = aw.send(None)
                except StopAsyncIteration:
                    pass
                except StopIteration:
                    if what == EXIT_AGEN:
                        error = _yielded_twice(p)
                        _close_agen_later(obj)
                else:
                    return index, aw, yielded, entry, started or perf_counter()
        except BaseException as caught:
            if caught is not exc:
                error = caught
        stats = p.stats
        if error is None and not stats.hooks:  # _done's common case, inline
            stats.disposed += 1
            stats.active -= 1
        else:
            _done(p, started, error, failures)
    return None


def _done(
    p: Provider, started: float, error: BaseException | None, failures: list[Failure]
) -> None:
    stats = p.stats
    stats.disposed += 1
    stats.active -= 1
    if error is not None:
        stats.dispose_failed += 1
        failures.append((p, error))
    if stats.hooks:
        stats.notify_disposed(perf_counter() - started)


async def run_async(
    entries: Sequence[Entry], exc: BaseException | None, timeout: float
) -> tuple[list[Failure], asyncio.CancelledError | None]:
    """Run every finalizer, newest first; return the failures and any cancellation."""
    failures: list[Failure] = []
    suspended = begin(entries, exc, len(entries), failures)
    if suspended is not None:
        return await finish(entries, exc, timeout, suspended, failures)
    return failures, None


async def finish(
    entries: Sequence[Entry],
    exc: BaseException | None,
    timeout: float,
    suspended: Suspended | None,
    failures: list[Failure],
) -> tuple[list[Failure], asyncio.CancelledError | None]:
    """Go on from a finalizer that suspended: it gets a shielded task and a deadline."""
    cancelled: asyncio.CancelledError | None = None
    while suspended is not None:
        index, aw, yielded, (what, _, p), started = suspended
        error, late = await _finish_in_task(aw, yielded, what == EXIT_AGEN, p, timeout)
        cancelled = cancelled or late
        if error is exc and exc is not None:
            error = None
        _done(p, started, error, failures)
        suspended = begin(entries, exc, index, failures)
    return failures, cancelled


_BACKGROUND: set[asyncio.Task[Any]] = set()


def _close_agen_later(agen: Any) -> None:
    try:
        task = asyncio.get_running_loop().create_task(agen.aclose())
    except RuntimeError:
        return
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


async def _awaited(aw: Any) -> Any:
    return await aw


def _yielded_twice(p: Provider) -> RuntimeError:
    return RuntimeError(f"generator {p.target.__qualname__} yielded more than once")


@types.coroutine
def _resume(aw: Any, yielded: Any) -> Generator[Any, Any, Any]:
    """Drive an awaitable that already ran up to its first suspension."""
    while True:
        try:
            sent = yield yielded
        except BaseException as thrown:
            try:
                yielded = aw.throw(thrown)
            except (StopIteration, StopAsyncIteration) as stop:
                return stop
            continue
        try:
            yielded = aw.send(sent)
        except (StopIteration, StopAsyncIteration) as stop:
            return stop


class _Cancelled:
    """A finalizer raised CancelledError on its own: carried out as a value, so the task
    ends normally and the very error object reaches the report."""

    __slots__ = ("error",)

    def __init__(self, error: asyncio.CancelledError) -> None:
        self.error = error


async def _drive(aw: Any, yielded: Any) -> Any:
    try:
        return await _resume(aw, yielded)
    except asyncio.CancelledError as error:
        return _Cancelled(error)


def _consume(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("abandoned teardown ended with %r", task.exception())


async def _finish_in_task(
    aw: Any, yielded: Any, agen: bool, p: Provider, timeout: float
) -> tuple[BaseException | None, asyncio.CancelledError | None]:
    loop = asyncio.get_running_loop()
    task = loop.create_task(_drive(aw, yielded), name=f"tether dispose {p.display}")
    deadline = loop.time() + timeout
    cancelled: asyncio.CancelledError | None = None
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            task.cancel()
            task.add_done_callback(_consume)
            logger.error("disposing %s took longer than %gs; abandoned", p.display, timeout)
            return DisposeTimeout(p.display, timeout), cancelled
        try:
            await asyncio.wait((task,), timeout=remaining)
        except asyncio.CancelledError as error:
            cancelled = error  # shielded: keep waiting for the finalizer, re-raise later
    if task.cancelled():
        return asyncio.CancelledError(), cancelled
    failure = task.exception()
    if failure is not None:
        return failure, cancelled
    stop = task.result()
    if isinstance(stop, _Cancelled):
        return stop.error, cancelled
    if agen and isinstance(stop, StopIteration):
        return _yielded_twice(p), cancelled
    return None, cancelled


def tag(p: Provider, error: BaseException) -> BaseException:
    error.add_note(f"raised while disposing {p.display} ({p.scope.name})")
    return error


def report_unwind(failures: list[Failure]) -> None:
    for p, error in failures:
        logger.error(
            "disposing %s after a failed build raised %r", p.display, error, exc_info=error
        )


def raise_teardown(
    what: str,
    exc: BaseException | None,
    failures: list[Failure],
    cancelled: asyncio.CancelledError | None,
) -> None:
    """Raise what the closing of ``what`` should raise; return when the body's own
    error (or nothing) should propagate unchanged.

    A cancellation of the closing task (or a KeyboardInterrupt/SystemExit) wins: it is
    re-raised once every finalizer ran, and the finalizers' errors are logged. Otherwise
    every error comes back in one group, the body's own first.
    """
    for p, error in failures:
        tag(p, error)
    fatal = next(
        (e for _, e in failures if isinstance(e, KeyboardInterrupt | SystemExit)), None
    )
    body_fatal = exc is not None and not isinstance(exc, Exception)
    if cancelled is not None or body_fatal or fatal is not None:
        for p, error in failures:
            logger.error("disposing %s raised %r while %s closed", p.display, error, what,
                         exc_info=error)
        if exc is not None and not isinstance(exc, Exception):
            return  # the body's own cancellation or interrupt propagates
        if fatal is not None:
            raise fatal
        if cancelled is not None:
            if exc is not None:
                cancelled.__context__ = exc
            raise cancelled
        return
    if not failures:
        return
    errors: list[BaseException] = [e for _, e in failures]
    names: list[str | None] = [p.display for p, _ in failures]
    if exc is not None:
        errors.insert(0, exc)
        names.insert(0, None)
    count = len(failures)
    message = f"{count} finalizer{'s' if count > 1 else ''} failed while closing {what}"
    if all(isinstance(e, Exception) for e in errors):
        raise TeardownError(message, errors, names)
    raise BaseTeardownError(message, errors, names)
