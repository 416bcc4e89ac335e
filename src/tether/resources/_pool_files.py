"""``FileHandles``: files below one directory, opened and closed off the event loop.

A path is checked twice: as text before anything touches the disk (``..`` and
absolute paths may not leave the base directory), then, in the worker thread, with
every symbolic link resolved; the file is opened by its resolved path with
``O_NOFOLLOW``, so a link swapped in after the check is refused rather than followed.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import IO, Any, AnyStr, Generic, Literal, TypeVar, overload

from pydantic import Field

from .._providers import resource
from ..exceptions import ClosedError, PoolTimeout, ResourceError
from ..resilience import Policy
from ._config import ResourceConfig
from ._meter import Meter
from ._pool_slots import Line, Marker

R = TypeVar("R")
logger = logging.getLogger("tether.resources.pool")

TextMode = Literal["r", "w", "a", "x", "r+", "w+", "a+", "x+",
                   "rt", "wt", "at", "xt", "r+t", "w+t", "a+t", "x+t"]
BinaryMode = Literal["rb", "wb", "ab", "xb", "r+b", "w+b", "a+b", "x+b",
                     "rb+", "wb+", "ab+", "xb+"]
StrPath = str | os.PathLike[str]

# The caller's mistakes: they say nothing about the disk, so the breaker ignores them.
CALLERS_FAULT = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                 PermissionError, ValueError, TypeError, ClosedError)


class FilesConfig(ResourceConfig):
    """Where the files live and how many may be open at once.

    ``base_dir`` is resolved at ``initialize()`` (a relative one against the current
    directory) and must exist unless ``create`` is set. ``timeout`` is the deadline of
    one open, read, write or close.
    """

    name: str = Field(default="files", min_length=1)
    base_dir: Path
    create: bool = False
    max_open: int = Field(default=64, ge=1)
    pool_timeout: float = Field(default=10.0, gt=0)
    close_timeout: float = Field(default=5.0, gt=0)


@dataclass(frozen=True, slots=True)
class FilesStats:
    """``FileHandles.statistics()``: open files now, and counters since start.

    ``calls_total`` counts opens and I/O calls; ``failures_by_kind`` names the errors
    they raised; ``refused_total`` counts paths refused for leaving the base directory.
    """

    open: int
    open_peak: int
    max_open: int
    waiting: int
    opened_total: int
    closed_total: int
    refused_total: int
    pool_timeouts_total: int
    calls_total: int
    latency_seconds_max: float
    failures_by_kind: Mapping[str, int]


class _Refused(PermissionError):
    """A path that leaves the base directory (counted apart from other refusals)."""


@resource
class FileHandles:
    """Opens files below ``base_dir``, at most ``max_open`` at a time, and closes every
    one still open at ``dispose()``.

    ``open(path, mode)`` is awaited for a handle (close it with ``await f.close()``) or
    used as ``async with``. A path outside the base directory (``..``, an absolute
    path elsewhere, a symbolic link leading out) raises ``PermissionError``; past
    ``max_open`` open files, ``open`` waits up to ``pool_timeout`` and then raises
    ``PoolTimeout``. Other ``OSError``\\ s (a missing file, a missing parent directory)
    come through as Python raises them.
    """

    def __init__(self, config: FilesConfig) -> None:
        self.config = config
        self._policy = Policy.from_options(
            config.name, timeout=config.timeout, max_retries=config.max_retries,
            circuit_breaker_threshold=config.circuit_breaker_threshold,
            circuit_breaker_reset=config.circuit_breaker_reset, exclude=CALLERS_FAULT,
        )
        self._meter = Meter()
        self._base: str | None = None
        self._open: set[FileHandle[Any]] = set()
        self._line: Line[Marker] = Line()
        self._free = config.max_open
        self._closing = False
        self._open_peak = self._opened = self._closed = 0
        self._refused = self._pool_timeouts = 0

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def base_dir(self) -> Path:
        """The resolved base directory (known after ``initialize()``)."""
        return Path(self._live())

    # -- lifecycle -------------------------------------------------------------------

    async def initialize(self) -> None:
        if self._closing:
            raise ClosedError(self._what)
        if self._base is not None:
            return
        try:
            self._base = await asyncio.to_thread(_prepare, self.config.base_dir,
                                                 self.config.create)
        except OSError as error:
            raise ResourceError(self.name, f"base_dir {str(self.config.base_dir)!r} is not "
                                f"usable: {error.strerror or error}") from error

    async def dispose(self) -> None:
        """Refuse new opens and close every open file, waiting up to ``close_timeout``
        for operations still running in worker threads. Safe to call twice; errors
        are logged."""
        if self._closing:
            return
        self._closing = True
        while self._line.hand(Marker.CLOSED):
            pass
        closing = [self._close_task(handle) for handle in list(self._open)]
        if not closing:
            return
        done, pending = await asyncio.wait(closing, timeout=self.config.close_timeout)
        failed = sum(1 for task in done if not task.cancelled() and task.exception())
        if failed:
            logger.warning("%s: %d file(s) failed to close cleanly", self.name, failed)
        if pending:
            logger.warning("%s: %d file(s) still busy after close_timeout=%gs; they close "
                           "when their operation ends", self.name, len(pending),
                           self.config.close_timeout)

    async def health_check(self) -> bool:
        """Stat the base directory in a worker thread (bounded by ``timeout``): True
        when it is still a directory this process can list and enter."""
        base = self._live()
        try:
            await self._policy.call(lambda: asyncio.to_thread(_check_dir, base),
                                    idempotent=True)
        except OSError as error:
            raise ResourceError(self.name, f"base directory not usable: "
                                f"{error.strerror or error}") from error
        return True

    def statistics(self) -> FilesStats:
        """A snapshot of the open files and counters."""
        meter = self._meter
        return FilesStats(
            open=len(self._open),
            open_peak=self._open_peak,
            max_open=self.config.max_open,
            waiting=len(self._line),
            opened_total=self._opened,
            closed_total=self._closed,
            refused_total=self._refused,
            pool_timeouts_total=self._pool_timeouts,
            calls_total=meter.calls,
            latency_seconds_max=meter.latency_max,
            failures_by_kind=MappingProxyType(dict(meter.failures)),
        )

    # -- opening ---------------------------------------------------------------------

    @overload
    def open(self, path: StrPath, mode: TextMode = "r", *, encoding: str | None = None,
             newline: str | None = None) -> _Opening[str]: ...
    @overload
    def open(self, path: StrPath, mode: BinaryMode, *, encoding: None = None,
             newline: None = None) -> _Opening[bytes]: ...
    @overload
    def open(self, path: StrPath, mode: str, *, encoding: str | None = None,
             newline: str | None = None) -> _Opening[Any]: ...
    def open(self, path: StrPath, mode: str = "r", *, encoding: str | None = None,
             newline: str | None = None) -> _Opening[Any]:
        """Open ``path`` (relative to the base directory) with a built-in ``open()``
        mode: ``f = await files.open(...)`` or ``async with files.open(...) as f``."""
        return _Opening(self, (path, mode, encoding, newline))

    async def _open_handle(self, path: StrPath, mode: str, encoding: str | None,
                           newline: str | None) -> FileHandle[Any]:
        base = self._live()
        try:
            joined, shown = _lexically_inside(base, path)
        except _Refused as refused:
            raise self._refusal(refused) from None
        await self._take_slot()
        started = self._meter.begin()
        opening = asyncio.ensure_future(
            asyncio.to_thread(_open_file, base, joined, mode, encoding, newline))
        try:
            raw = await self._policy.call(lambda: asyncio.shield(opening),
                                          idempotent=False)
        except BaseException as error:
            # Refused, failed, cut off by the deadline, the breaker or a cancellation:
            # close whatever the thread opened (now, or when it ends), then free the slot.
            if opening.done():
                self._abandoned(opening)
            else:
                opening.add_done_callback(self._abandoned)
            if isinstance(error, _Refused):
                refusal = self._refusal(error)
                self._meter.end(started, refusal)
                raise refusal from None
            self._meter.end(started, error if isinstance(error, Exception) else None)
            raise
        self._meter.end(started)
        handle: FileHandle[Any] = FileHandle(self, raw, shown, mode)
        self._open.add(handle)
        self._opened += 1
        self._open_peak = max(self._open_peak, len(self._open))
        if self._closing:  # closed while the file was being opened
            await asyncio.shield(self._close_task(handle))
            raise ClosedError(self._what)
        return handle

    def _refusal(self, refused: _Refused) -> PermissionError:
        self._refused += 1
        return PermissionError(f"{self.name}: {refused}")

    def _abandoned(self, opening: asyncio.Future[IO[Any]]) -> None:
        try:
            if not opening.cancelled() and opening.exception() is None:
                opening.result().close()  # nothing was written to it: closes at once
        except OSError:
            logger.warning("%s: closing an abandoned file failed", self.name, exc_info=True)
        finally:
            self._free_slot()

    # -- I/O -------------------------------------------------------------------------

    async def _io(self, handle: FileHandle[Any], call: Callable[[], R]) -> R:
        started = self._meter.begin()
        error: Exception | None = None
        try:
            return await self._policy.call(lambda: handle._in_thread(call), idempotent=False)
        except Exception as failure:
            error = failure
            raise
        finally:
            self._meter.end(started, error)

    def _close_task(self, handle: FileHandle[Any]) -> asyncio.Task[None]:
        # One closing task per handle, whoever asks first; it finishes even when the
        # caller that started it is cancelled.
        if handle._closing is None:
            handle._closing = asyncio.get_running_loop().create_task(self._shut(handle))
            handle._closing.add_done_callback(self._log_close_error)
        return handle._closing

    async def _shut(self, handle: FileHandle[Any]) -> None:
        try:
            async with handle._lock:  # let an operation in flight finish first
                await asyncio.to_thread(handle._raw.close)
        finally:
            self._open.discard(handle)
            self._closed += 1
            self._free_slot()

    def _log_close_error(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.warning("%s: closing a file failed", self.name, exc_info=task.exception())

    # -- slots -----------------------------------------------------------------------

    async def _take_slot(self) -> None:
        if not self._line.has_waiters() and self._free > 0:
            self._free -= 1
            return
        grant = await self._line.wait(self.config.pool_timeout, self._give_back)
        if grant is None:
            self._pool_timeouts += 1
            raise PoolTimeout(self.name, self.config.pool_timeout, self.config.max_open)
        if grant is Marker.CLOSED:
            raise ClosedError(self._what)

    def _give_back(self, grant: Marker) -> None:
        if grant is Marker.SLOT:
            self._free_slot()

    def _free_slot(self) -> None:
        if self._closing or not self._line.hand(Marker.SLOT):
            self._free += 1

    # -- helpers ---------------------------------------------------------------------

    @property
    def _what(self) -> str:
        return f"FileHandles '{self.name}'"

    def _live(self) -> str:
        if self._closing:
            raise ClosedError(self._what)
        if self._base is None:
            raise ResourceError(self.name, "not initialized: resolve it from the container "
                                "(which calls initialize()) or await initialize() first")
        return self._base

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open" if self._base else "not initialized"
        return (f"<FileHandles {self.name!r} {state}, {len(self._open)} open, "
                f"max_open={self.config.max_open}>")


class FileHandle(Generic[AnyStr]):
    """An open file whose reads and writes run in a worker thread.

    Calls on one handle run one at a time. After ``close()`` (or the owner's
    ``dispose()``) every call raises ``ClosedError``.
    """

    def __init__(self, owner: FileHandles, raw: IO[Any], path: str, mode: str) -> None:
        self._owner = owner
        self._raw = raw
        self._lock = asyncio.Lock()
        self._closing: asyncio.Task[None] | None = None
        self.path = path  # relative to the base directory
        self.mode = mode

    @property
    def closed(self) -> bool:
        return self._closing is not None

    async def read(self, size: int = -1) -> AnyStr:
        return await self._call(lambda: self._raw.read(size))

    async def readline(self, size: int = -1) -> AnyStr:
        return await self._call(lambda: self._raw.readline(size))

    async def write(self, data: AnyStr) -> int:
        return await self._call(lambda: self._raw.write(data))

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return await self._call(lambda: self._raw.seek(offset, whence))

    async def tell(self) -> int:
        return await self._call(self._raw.tell)

    async def truncate(self, size: int | None = None) -> int:
        return await self._call(lambda: self._raw.truncate(size))

    async def flush(self) -> None:
        await self._call(self._raw.flush)

    async def close(self) -> None:
        """Close the file (in a worker thread) and give its slot back; safe to call
        twice. Finishes even when the caller is cancelled."""
        await asyncio.shield(self._owner._close_task(self))

    async def __aenter__(self) -> FileHandle[AnyStr]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(self, call: Callable[[], R]) -> R:
        if self._closing is not None:
            raise ClosedError(f"FileHandle '{self.path}'")
        return await self._owner._io(self, call)

    async def _in_thread(self, call: Callable[[], R]) -> R:
        await self._lock.acquire()
        if self._closing is not None:
            self._lock.release()
            raise ClosedError(f"FileHandle '{self.path}'")
        work = asyncio.ensure_future(asyncio.to_thread(call))
        # The lock is held until the thread ends, even when the caller stops waiting,
        # so that the next call (or close) never runs beside it.
        work.add_done_callback(self._done)
        return await asyncio.shield(work)

    def _done(self, work: asyncio.Future[Any]) -> None:
        self._lock.release()
        if not work.cancelled():
            work.exception()  # retrieved: the caller may have stopped waiting

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<FileHandle {self.path!r} mode={self.mode!r} {state}>"


class _Opening(Generic[AnyStr]):
    """What ``FileHandles.open()`` returns: awaitable, or an async context manager."""

    __slots__ = ("_args", "_files", "_handle")

    def __init__(self, files: FileHandles,
                 args: tuple[StrPath, str, str | None, str | None]) -> None:
        self._files = files
        self._args = args
        self._handle: FileHandle[AnyStr] | None = None

    def __await__(self) -> Generator[Any, None, FileHandle[AnyStr]]:
        return self._files._open_handle(*self._args).__await__()

    async def __aenter__(self) -> FileHandle[AnyStr]:
        self._handle = await self._files._open_handle(*self._args)
        return self._handle

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            await handle.close()


# -- path checks (the thread-side ones run in worker threads) -----------------------


def _prepare(base_dir: Path, create: bool) -> str:
    if create:
        base_dir.mkdir(parents=True, exist_ok=True)
    resolved = base_dir.resolve(strict=True)
    if not resolved.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(base_dir))
    return str(resolved)


def _check_dir(base: str) -> None:
    if not stat.S_ISDIR(os.stat(base).st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", base)
    if not os.access(base, os.R_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "cannot list or enter it", base)


def _lexically_inside(base: str, path: StrPath) -> tuple[str, str]:
    """The absolute, normalised path and the same relative to ``base``, or ``_Refused``;
    touches no disk."""
    raw = os.fspath(path)
    if not isinstance(raw, str):
        raise TypeError(f"a path is str or os.PathLike[str], got {type(raw).__name__}")
    if not raw or "\x00" in raw:
        raise _Refused(f"{raw!r} is not a file path")
    joined = os.path.normpath(os.path.join(base, raw))  # an absolute raw replaces base
    if not joined.startswith(base + os.sep):
        raise _Refused(f"{raw!r} is outside the base directory")
    return joined, joined[len(base) + 1:]


def _no_follow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW, 0o666)


def _open_file(base: str, joined: str, mode: str, encoding: str | None,
               newline: str | None) -> IO[Any]:
    shown = os.path.relpath(joined, base)
    target = os.path.realpath(joined)
    if not target.startswith(base + os.sep):
        raise _Refused(f"{shown!r} leads outside the base directory through a symbolic link")
    try:
        return open(target, mode, encoding=encoding, newline=newline,
                    opener=_no_follow)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise _Refused(f"{shown!r} became a symbolic link while being opened") from None
        raise
