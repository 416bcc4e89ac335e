"""A pool of any kind of item, and a file-handle resource, as tether resources.

    pool = Pool(PoolConfig(name="conns", max_size=10, min_size=2), factory=connect,
                validate=lambda conn: conn.is_alive(), dispose=lambda conn: conn.close())
    container.bind(Pool[Conn], pool)

    async with pool.acquire() as conn:              # PoolTimeout after pool_timeout
        await conn.send(b"ping")

    files = FileHandles(FilesConfig(name="uploads", base_dir="/srv/uploads"))
    async with files.open("reports/today.csv", "w") as f:
        await f.write("id,total\\n")

``Pool[T]`` makes items with ``factory`` (sync or async) up to ``max_size``, hands
them out first come, first served, checks a reused item with ``validate`` before
handing it out, and disposes every item at ``dispose()``. ``FileHandles`` opens files
below one directory, refuses paths that leave it, caps how many are open and closes
them all at ``dispose()``; its file I/O runs in worker threads.
"""

from __future__ import annotations

try:
    import pydantic  # noqa: F401
except ImportError:
    raise ImportError(
        "tether.resources.pool needs the 'pool' extra: pip install 'tether[pool]'"
    ) from None

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any, Generic, TypeVar, cast, overload

from pydantic import Field, model_validator

from .._providers import resource
from ..exceptions import ClosedError, PoolTimeout, ResourceError
from ._config import ResourceConfig
from ._meter import Meter
from ._pool_files import FileHandle, FileHandles, FilesConfig, FilesStats
from ._pool_slots import Line
from ._pool_slots import Marker as _Marker

__all__ = [
    "FileHandle",
    "FileHandles",
    "FilesConfig",
    "FilesStats",
    "Pool",
    "PoolConfig",
    "PoolStats",
]

T = TypeVar("T")
logger = logging.getLogger("tether.resources.pool")

NOT_INITIALIZED = ("not initialized: resolve it from the container (which calls "
                   "initialize()) or await initialize() first")


class PoolConfig(ResourceConfig):
    """How many items a pool keeps, and how long anyone waits for one.

    ``timeout`` (from ``ResourceConfig``) is the deadline of one factory call, retries
    included, and also bounds one ``validate`` and one ``dispose`` of an item;
    ``max_retries`` and the circuit breaker apply to the factory.
    """

    name: str = Field(default="pool", min_length=1)
    max_size: int = Field(default=10, ge=1)
    min_size: int = Field(default=0, ge=0)
    pool_timeout: float = Field(default=10.0, gt=0)
    max_idle: float | None = Field(default=None, gt=0)
    recycle: float | None = Field(default=None, gt=0)
    close_timeout: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _min_size_fits(self) -> PoolConfig:
        if self.min_size > self.max_size:
            raise ValueError(f"min_size={self.min_size} is larger than "
                             f"max_size={self.max_size}")
        return self


@dataclass(frozen=True, slots=True)
class PoolStats:
    """``Pool.statistics()``: items now, and counters since the pool was built.

    ``size`` counts the items that exist (idle, in use, or being disposed);
    ``acquires_total`` counts finished ``acquire()`` calls, failed ones included,
    and ``failures_by_kind`` names why they failed (``PoolTimeout``, a factory error);
    ``expired_total`` counts items replaced for ``max_idle`` or ``recycle``.
    """

    size: int
    idle: int
    in_use: int
    waiting: int
    max_size: int
    in_use_peak: int
    acquires_total: int
    acquire_seconds_max: float
    created_total: int
    disposed_total: int
    pool_timeouts_total: int
    validation_failures_total: int
    expired_total: int
    dispose_failures_total: int
    failures_by_kind: Mapping[str, int]


class _Entry(Generic[T]):
    """One item and its ages; compared by identity (items themselves may be equal)."""

    __slots__ = ("created_at", "item", "last_used", "retired")

    def __init__(self, item: T, now: float) -> None:
        self.item = item
        self.created_at = now
        self.last_used = now
        self.retired = False  # disposed by close() while still held


_Grant = _Entry[T] | _Marker


@resource
class Pool(Generic[T]):
    """Items made by ``factory``, lent out one holder at a time, at most ``max_size``.

    ``validate(item)`` (sync or async) runs before a reused item is handed out; an
    item it rejects, or that raises, is disposed and replaced. ``dispose(item)`` (sync
    or async) closes an item; without it an item's ``aclose()`` or ``close()`` is
    called when it has one. An item goes back to the pool when the ``async with``
    block ends, also when it ends by an error or a cancellation, except when the error
    is one of ``discard_on`` (by default ``ConnectionError`` and ``TimeoutError``,
    which tether's ``ResourceUnavailable`` and ``ResourceTimeout`` are): then the item
    may be broken and is disposed.
    """

    @overload
    def __init__(
        self,
        config: PoolConfig,
        *,
        factory: Callable[[], Awaitable[T]],
        validate: Callable[[T], bool] | Callable[[T], Awaitable[bool]] | None = None,
        dispose: Callable[[T], object] | None = None,
        discard_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
    ) -> None: ...
    @overload
    def __init__(
        self,
        config: PoolConfig,
        *,
        factory: Callable[[], T],
        validate: Callable[[T], bool] | Callable[[T], Awaitable[bool]] | None = None,
        dispose: Callable[[T], object] | None = None,
        discard_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
    ) -> None: ...
    def __init__(
        self,
        config: PoolConfig,
        *,
        factory: Callable[[], Any],
        validate: Callable[[T], Any] | None = None,
        dispose: Callable[[T], object] | None = None,
        discard_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
    ) -> None:
        if not callable(factory):
            raise TypeError(f"Pool({config.name!r}): factory must be callable, got "
                            f"{factory!r}")
        self.config = config
        self._factory = factory
        self._validate = validate
        self._dispose = dispose
        self._discard_on = discard_on
        self._policy = config.policy()
        self._meter = Meter()
        self._clock: Callable[[], float] = time.monotonic
        self._idle: deque[_Entry[T]] = deque()  # most recently returned on the right
        self._held: set[_Entry[T]] = set()
        self._line: Line[_Grant[T]] = Line()
        self._free = config.max_size  # slots with no item in them
        self._tasks: set[asyncio.Task[None]] = set()  # disposals running on their own
        self._drained = asyncio.Event()  # set when closing and every slot is free again
        self._started = False
        self._closing = False
        self._in_use_peak = 0
        self._created = self._disposed = self._dispose_failures = 0
        self._pool_timeouts = self._validation_failures = self._expired = 0

    @property
    def name(self) -> str:
        return self.config.name

    # -- lifecycle -------------------------------------------------------------------

    async def initialize(self) -> None:
        """Make ``min_size`` items; if one fails, dispose those made and raise."""
        if self._closing:
            raise ClosedError(self._what)
        if self._started:
            return
        made: list[_Entry[T]] = []
        try:
            for _ in range(self.config.min_size):
                self._free -= 1
                try:
                    made.append(await self._create())
                except BaseException:
                    self._free += 1
                    raise
        except BaseException:
            if made:
                # Each disposal runs in its own task: a second cancellation here cannot
                # stop the others.
                await asyncio.wait([self._retire(entry) for entry in made])
            raise
        self._idle.extend(made)
        self._started = True

    async def dispose(self) -> None:
        """Refuse new acquires, dispose idle items at once, wait up to
        ``close_timeout`` for items in use to come back (they are disposed as they
        do), then dispose those still out. Safe to call twice; errors are logged."""
        if self._closing:
            return
        self._closing = True
        while self._line.hand(_Marker.CLOSED):
            pass
        while self._idle:
            self._retire(self._idle.popleft())
        if not self._all_free():
            try:
                async with asyncio.timeout(self.config.close_timeout):
                    await self._drained.wait()
            except TimeoutError:
                logger.warning("%s: %d item(s) still in use after close_timeout=%gs; "
                               "disposing them anyway", self.name, len(self._held),
                               self.config.close_timeout)
                for entry in list(self._held):
                    entry.retired = True
                    self._held.discard(entry)
                    self._retire(entry)
        if self._tasks:
            # Each disposal is bounded by the item timeout; this bound only guards
            # against a dispose() that ignores cancellation.
            _, pending = await asyncio.wait(set(self._tasks), timeout=self._item_timeout + 1)
            if pending:
                logger.warning("%s: %d item disposal(s) did not finish; abandoned",
                               self.name, len(pending))

    async def health_check(self) -> bool:
        """Check out an item without waiting: a reused one is validated, or a new one
        is made (the round trip to whatever the items talk to), then it goes back.
        When every item is in use the pool is busy, not down, and the check passes.
        A failure raises, and the container reports the error."""
        self._live()
        grant = self._grant_now()
        if grant is None:
            return True
        entry = await self._fill(grant)
        self._put_back(entry)
        return True

    def statistics(self) -> PoolStats:
        """A snapshot of the items and counters."""
        meter = self._meter
        return PoolStats(
            size=self._created - self._disposed,
            idle=len(self._idle),
            in_use=len(self._held),
            waiting=len(self._line),
            max_size=self.config.max_size,
            in_use_peak=self._in_use_peak,
            acquires_total=meter.calls,
            acquire_seconds_max=meter.latency_max,
            created_total=self._created,
            disposed_total=self._disposed,
            pool_timeouts_total=self._pool_timeouts,
            validation_failures_total=self._validation_failures,
            expired_total=self._expired,
            dispose_failures_total=self._dispose_failures,
            failures_by_kind=MappingProxyType(dict(meter.failures)),
        )

    # -- lending ---------------------------------------------------------------------

    def acquire(self) -> _Lease[T]:
        """``async with pool.acquire() as item``: an item for the block's duration.

        Waits up to ``pool_timeout`` for one when all ``max_size`` are in use, then
        raises ``PoolTimeout``; waiting tasks are served in arrival order.
        """
        return _Lease(self)

    async def _checkout(self) -> _Entry[T]:
        self._live()
        started = self._meter.begin()
        try:
            self._sweep()
            grant = self._grant_now()
            if grant is None:
                grant = await self._line.wait(self.config.pool_timeout, self._give_back)
            if grant is None:
                self._pool_timeouts += 1
                raise PoolTimeout(self.name, self.config.pool_timeout, self.config.max_size)
            if grant is _Marker.CLOSED:
                raise ClosedError(self._what)
            entry = await self._fill(grant)
            if self._closing:  # closed while the item was being made or checked
                self._retire(entry)
                raise ClosedError(self._what)
        except BaseException as error:
            self._meter.end(started, error if isinstance(error, Exception) else None)
            raise
        self._meter.end(started)
        self._held.add(entry)
        self._in_use_peak = max(self._in_use_peak, len(self._held))
        return entry

    def _checkin(self, entry: _Entry[T], error: BaseException | None) -> None:
        if entry.retired:  # close() gave up waiting and disposed it already
            return
        self._held.discard(entry)
        if error is not None and isinstance(error, self._discard_on):
            logger.info("%s: disposing an item whose holder failed with %s", self.name,
                        type(error).__name__)
            # Not awaited: an await here would be cut short in a cancelled anyio scope
            # and replace the holder's error. The slot comes free when it is done.
            self._retire(entry)
            return
        entry.last_used = self._clock()
        self._put_back(entry)

    def _grant_now(self) -> _Grant[T] | None:
        if self._line.has_waiters():
            return None  # first come, first served: queue behind them
        if self._idle:
            return self._idle.pop()  # the most recently used: the rest may expire
        if self._free > 0:
            self._free -= 1
            return _Marker.SLOT
        return None

    async def _fill(self, grant: _Grant[T]) -> _Entry[T]:
        """Turn a grant (an idle item, or a free slot) into an item fit to hand out.

        Whoever holds a grant owns its slot until this returns; on any error the slot
        is freed (after disposing what was in it), so nothing leaks.
        """
        if isinstance(grant, _Entry):
            try:
                usable = await self._usable(grant)
            except BaseException:
                self._retire(grant)  # cut off mid-check: its state is unknown
                raise
            if usable:
                return grant
            disposal = self._retire(grant, free_slot=False)
            try:
                await asyncio.shield(disposal)
            except BaseException:
                disposal.add_done_callback(lambda _: self._free_slot())
                raise
        try:
            return await self._create()
        except BaseException:
            self._free_slot()
            raise

    async def _usable(self, entry: _Entry[T]) -> bool:
        if self._expired_now(entry, self._clock()):
            self._expired += 1
            return False
        if self._validate is None:
            return True
        try:
            async with asyncio.timeout(self._item_timeout):
                verdict = self._validate(entry.item)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
        except Exception as error:
            self._validation_failures += 1
            logger.warning("%s: validate() raised %s: %s; replacing the item", self.name,
                           type(error).__name__, error)
            return False
        if not verdict:
            self._validation_failures += 1
            logger.info("%s: validate() rejected an item; replacing it", self.name)
            return False
        return True

    def _expired_now(self, entry: _Entry[T], now: float) -> bool:
        config = self.config
        return (config.recycle is not None and now - entry.created_at >= config.recycle) or \
            (config.max_idle is not None and now - entry.last_used >= config.max_idle)

    def _sweep(self) -> None:
        # The least recently used idle items sit on the left; dispose the expired ones
        # so idle items beyond what the load needs do not linger.
        if self.config.max_idle is None and self.config.recycle is None:
            return
        now = self._clock()
        while self._idle and self._expired_now(self._idle[0], now):
            self._expired += 1
            self._retire(self._idle.popleft())

    async def _create(self) -> _Entry[T]:
        item = await self._policy.call(self._make, idempotent=True)
        self._created += 1
        return _Entry(item, self._clock())

    async def _make(self) -> T:
        item = self._factory()
        if inspect.isawaitable(item):
            item = await item
        return cast(T, item)

    # -- giving back -----------------------------------------------------------------

    def _put_back(self, entry: _Entry[T]) -> None:
        if self._closing:
            self._retire(entry)
        elif not self._line.hand(entry):
            self._idle.append(entry)

    def _give_back(self, grant: _Grant[T]) -> None:
        # A waiter was cancelled in the instant it was handed something: pass it on.
        if isinstance(grant, _Entry):
            self._put_back(grant)
        elif grant is _Marker.SLOT:
            self._free_slot()

    def _free_slot(self) -> None:
        if not self._closing and self._line.hand(_Marker.SLOT):
            return
        self._free += 1
        if self._closing and self._all_free():
            self._drained.set()

    def _all_free(self) -> bool:
        return self._free == self.config.max_size

    def _retire(self, entry: _Entry[T], *, free_slot: bool = True) -> asyncio.Task[None]:
        """Dispose ``entry`` in a task of its own (a cancelled caller cannot cut it
        short); its slot is freed when the disposal ends, unless the caller keeps it."""
        task = asyncio.get_running_loop().create_task(self._dispose_item(entry.item))
        self._tasks.add(task)

        def done(_: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            if free_slot:
                self._free_slot()

        task.add_done_callback(done)
        return task

    async def _dispose_item(self, item: T) -> None:
        try:
            async with asyncio.timeout(self._item_timeout):
                await _close(item, self._dispose)
        except TimeoutError:
            self._dispose_failures += 1
            logger.warning("%s: disposing an item took longer than %gs; abandoned",
                           self.name, self._item_timeout)
        except Exception:
            self._dispose_failures += 1
            logger.warning("%s: disposing an item failed", self.name, exc_info=True)
        finally:
            self._disposed += 1

    # -- helpers ---------------------------------------------------------------------

    @property
    def _item_timeout(self) -> float:
        return self.config.timeout if self.config.timeout is not None else 10.0

    @property
    def _what(self) -> str:
        return f"Pool '{self.name}'"

    def _live(self) -> None:
        if self._closing:
            raise ClosedError(self._what)
        if not self._started:
            raise ResourceError(self.name, NOT_INITIALIZED)

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open" if self._started else "not initialized"
        return (f"<Pool {self.name!r} {state}, {len(self._held)} in use, "
                f"{len(self._idle)} idle, max_size={self.config.max_size}>")


class _Lease(Generic[T]):
    """What ``Pool.acquire()`` returns: ``async with`` gives the item, then returns it."""

    __slots__ = ("_entry", "_pool")

    def __init__(self, pool: Pool[T]) -> None:
        self._pool = pool
        self._entry: _Entry[T] | None = None

    async def __aenter__(self) -> T:
        if self._entry is not None:
            raise RuntimeError("this acquire() is already in use: call pool.acquire() "
                               "once per async with block")
        self._entry = await self._pool._checkout()
        return self._entry.item

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry, self._entry = self._entry, None
        if entry is not None:
            self._pool._checkin(entry, exc)


async def _close(item: Any, dispose: Callable[[Any], object] | None) -> None:
    if dispose is not None:
        result = dispose(item)
    elif callable(getattr(item, "aclose", None)):
        result = item.aclose()
    elif callable(getattr(item, "close", None)):
        result = item.close()
    else:
        return
    if inspect.isawaitable(result):
        await result
