"""Live scopes: the objects ``container.scope()`` returns, and the container's root."""

from __future__ import annotations

import asyncio
import threading
from asyncio import get_running_loop
from collections.abc import Awaitable, Generator, Hashable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from ._resolve import MISS
from ._scope import Scope
from ._teardown import begin, finish, raise_teardown, run_sync
from .exceptions import ClosedError, WrongEventLoop

if TYPE_CHECKING:
    from ._providers import Provider
    from ._registry import Registry
    from ._teardown import Failure, Suspended

T = TypeVar("T")


class _Cache(dict[Hashable, Any]):
    """A scope's instances. A miss runs the registration's builder."""

    __slots__ = ("builders", "scope")
    builders: dict[Hashable, Any]
    scope: ActiveScope

    def __missing__(self, key: Hashable) -> Any:
        try:
            builder = self.builders[key]
        except KeyError:
            return self.scope._registry.first_build(key, self.scope)
        return builder(self.scope)


class _RequestCache(_Cache):
    """A request scope's instances: the first miss outside a with-block starts the
    scope's watch (see ``request_scope``)."""

    __slots__ = ()

    def __missing__(self, key: Hashable) -> Any:
        scope = self.scope
        if scope._watch is None:
            scope._registry.watch(scope)
        return _Cache.__missing__(self, key)


class _Closed(dict[Hashable, Any]):
    __slots__ = ("what",)
    what: str

    def __missing__(self, key: Hashable) -> Any:
        raise ClosedError(self.what)


UNWATCHED: Any = object()  # a scope no weak reference watches: the root, or one in a block


def _closed(what: str) -> Any:
    closed = _Closed()
    closed.what = what
    return closed


_CLOSED: dict[Scope | None, Any] = {
    None: _closed("container"),
    Scope.APP: _closed("container"),
    Scope.SINGLETON: _closed("SINGLETON scope"),
    Scope.SESSION: _closed("SESSION scope"),
    Scope.REQUEST: _closed("REQUEST scope"),
}


class ActiveScope:
    """A scope that is open: resolve with ``get``/``aget``, close by leaving its block.

    Works as ``with`` and ``async with``; ``scope()`` opens a nested one.
    """

    __slots__ = (
        "__weakref__",
        "_born",
        "_cache",
        "_chain",
        "_closed",
        "_exits",
        "_lock",
        "_parent",
        "_pending",
        "_registry",
        "_session_id",
        "_touched",
        "_watch",
        "kind",
    )

    kind: Scope
    _cache: _Cache
    _chain: tuple[ActiveScope | None, ...]
    _exits: list[tuple[int, Any, Provider]]
    _pending: dict[Hashable, asyncio.Future[BaseException | None] | None]
    _session_id: str | None
    _touched: float
    _born: float
    _watch: Any  # weakref.ref to itself while watched, None until then, or UNWATCHED

    def _open(self, registry: Registry, kind: Scope, parent: ActiveScope | None) -> None:
        self.kind = kind
        self._registry = registry
        self._parent = parent
        self._closed = False
        self._exits = []
        self._pending = {}
        self._watch = UNWATCHED
        cache = _Cache()
        cache.builders = registry.sync_builders
        cache.scope = self
        if parent is not None and parent.kind is kind:
            cache.update(parent._cache)  # a nested scope of the same kind sees the outer one's
        self._cache = cache
        if parent is None:
            chain: list[ActiveScope | None] = [None, None, None, None]
            if kind is not Scope.SINGLETON:
                chain[Scope.SINGLETON] = registry.singletons
        else:
            chain = list(parent._chain)
        chain[kind] = self
        self._chain = tuple(chain)
        self._lock = threading.RLock() if kind <= Scope.SESSION else _NO_LOCK

    # -- resolution ---------------------------------------------------------------

    @overload
    def get(self, dependency: type[T], name: str | None = None) -> T: ...
    @overload
    def get(self, dependency: Any, name: str | None = None) -> Any: ...
    def get(self, dependency: Any, name: str | None = None) -> Any:
        """The instance bound to ``dependency`` (and ``name``), built if needed."""
        return self._cache[dependency if name is None else (dependency, name)]

    @overload
    def aget(self, dependency: type[T], name: str | None = None) -> Awaitable[T]: ...
    @overload
    def aget(self, dependency: Any, name: str | None = None) -> Awaitable[Any]: ...
    def aget(self, dependency: Any, name: str | None = None) -> Awaitable[Any]:
        """Like ``get``, for registrations that need ``await`` to build: ``await`` it."""
        # A plain function returning the builder's coroutine: no extra coroutine frame.
        key = dependency if name is None else (dependency, name)
        value = self._cache.get(key, MISS)
        if value is not MISS:
            if self._parent is None:  # the container: check its loop (scopes do on entry)
                return _ready_on_loop(value, self._registry)
            return _ready(value)
        if self._closed:
            return _fail(ClosedError(self.describe()))
        if self._watch is None:
            self._registry.watch(self)  # used outside a with-block: watch it
        builder = self._registry.async_builders.get(key)
        if builder is None:
            return self._registry.first_abuild(key, self)
        return builder(self)  # type: ignore[no-any-return]

    # -- nesting ------------------------------------------------------------------

    def scope(self, kind: Scope = Scope.REQUEST, *, session_id: str | None = None) -> ActiveScope:
        """Open a scope inside this one; it sees this scope's instances."""
        if (
            kind is _REQUEST
            and self.kind is not _REQUEST
            and session_id is None
            and not self._closed
        ):
            return request_scope(self._registry, self)  # the common case, kept short
        return self._registry.open_scope(kind, self, session_id)

    resource_scope = scope

    # -- closing ------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def describe(self) -> str:
        if self.kind is Scope.SESSION:
            return f"SESSION scope {self._session_id!r}"
        return "container" if self._parent is None and self.kind is Scope.APP else (
            f"{self.kind.name} scope"
        )

    def _begin_close(self) -> list[tuple[int, Any, Provider]]:
        if self._closed:
            return []
        self._closed = True
        self._cache = _CLOSED[self.kind if self._parent is not None else None]
        self._chain = ()  # no reference cycle left: a closed scope is freed at once
        exits, self._exits = self._exits, []
        registry = self._registry
        registry.open.pop(self._watch, None)
        registry.entered.pop(self, None)
        if self.kind is _SESSION:
            registry.forget_session(self)
        return exits

    async def aclose(self, exc: BaseException | None = None) -> None:
        """Dispose what this scope built, newest first. Closing twice does nothing."""
        exits = self._begin_close()
        if exits:
            failures: list[Failure] = []
            suspended = begin(exits, exc, len(exits), failures)
            if suspended is not None or failures:
                await self._finish_close(exits, exc, suspended, failures)

    def close(self, exc: BaseException | None = None) -> None:
        exits = self._begin_close()
        if exits:
            failures = run_sync(exits, exc)
            if failures:
                raise_teardown(self.describe(), exc, failures, None)

    async def __aenter__(self) -> ActiveScope:
        registry = self._registry
        if self._watch is None:
            self._watch = UNWATCHED  # the block closes it; until then it is in `entered`
            registry.entered[self] = None
        loop = registry.loop
        if loop is not None and loop is not get_running_loop():
            if self.kind is Scope.REQUEST and not self._exits:
                self._begin_close()  # never entered, so never left: close it here
            raise WrongEventLoop()
        if registry.expired:  # sessions found expired when re-entered: dispose them now
            expired, registry.expired = registry.expired, []
            for session in expired:
                await session.aclose()
        return self

    def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Awaitable[None]:
        # A plain function: when every finalizer finishes inline (the usual case) there is
        # nothing to await and no coroutine is made.
        if self.kind is _SESSION:
            self._touched = self._registry.clock.monotonic()
            return _DONE
        exits = self._begin_close()
        if exits:
            failures: list[Failure] = []
            suspended = begin(exits, exc, len(exits), failures)
            if suspended is not None or failures:
                return self._finish_close(exits, exc, suspended, failures)
        return _DONE

    async def _finish_close(
        self,
        exits: list[tuple[int, Any, Provider]],
        exc: BaseException | None,
        suspended: Suspended | None,
        failures: list[Failure],
    ) -> None:
        cancelled = None
        if suspended is not None:
            failures, cancelled = await finish(
                exits, exc, self._registry.dispose_timeout, suspended, failures
            )
        if failures or cancelled is not None:
            raise_teardown(self.describe(), exc, failures, cancelled)

    def __enter__(self) -> ActiveScope:
        if self._watch is None:
            self._watch = UNWATCHED  # the block closes it; until then it is in `entered`
            self._registry.entered[self] = None
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.kind is _SESSION:
            self._touched = self._registry.clock.monotonic()
            return
        self.close(exc)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<tether {self.describe()} ({state}, {len(self._exits)} pending teardowns)>"


class _Done:
    """An awaitable that is already finished: ``await _DONE`` is None, at no cost."""

    __slots__ = ()

    def __await__(self) -> Generator[None, None, None]:
        return iter(())  # type: ignore[return-value]  # an exhausted iterator: done, None


_DONE: Awaitable[None] = _Done()


async def _ready(value: Any) -> Any:
    return value


async def _ready_on_loop(value: Any, registry: Registry) -> Any:
    loop = registry.loop
    if loop is not None and loop is not get_running_loop():
        raise WrongEventLoop()
    return value


async def _fail(error: BaseException) -> Any:
    raise error


class _NoLock:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK: Any = _NoLock()

# Enum members looked up once: ``Scope.REQUEST`` costs a class attribute look-up
# through the enum machinery on every use, and these are on every request's path.
_REQUEST = Scope.REQUEST
_SESSION = Scope.SESSION


def request_scope(registry: Registry, parent: ActiveScope) -> ActiveScope:
    """The common case of ``_open``: a REQUEST scope under the container or a session."""
    scope = ActiveScope.__new__(ActiveScope)
    scope.kind = _REQUEST
    scope._registry = registry
    scope._parent = parent
    scope._closed = False
    scope._exits = []
    scope._pending = {}
    scope._lock = _NO_LOCK
    cache = _RequestCache()
    cache.builders = registry.sync_builders
    cache.scope = scope
    scope._cache = cache
    chain = parent._chain
    scope._chain = (chain[0], chain[1], chain[2], scope)
    # Watched (for the ResourceWarning, leak checks and the container's close) only once
    # it is used outside a with-block: a block closes it for sure, and a weak reference
    # per request would cost more than the rest of the bookkeeping together.
    scope._watch = None
    return scope


_CLOSED_REQUEST = _CLOSED[Scope.REQUEST]


def enter_request(parent: ActiveScope) -> ActiveScope | None:
    """``parent.scope()`` entered as ``async with`` enters it, without the coroutine:
    the per-request path of the ASGI middleware, closed with ``exit_request``. None
    when entering needs more than that (``parent`` is closed or is a REQUEST scope,
    expired sessions wait to be disposed, or this is not the container's event loop):
    then use ``async with parent.scope()``, which does it or raises."""
    registry = parent._registry
    if parent._closed or parent.kind is _REQUEST or registry.expired:
        return None
    loop = registry.loop
    if loop is not None and loop is not get_running_loop():
        return None
    # request_scope(), written out: this runs for every request.
    scope = ActiveScope.__new__(ActiveScope)
    scope.kind = _REQUEST
    scope._registry = registry
    scope._parent = parent
    scope._closed = False
    scope._exits = []
    scope._pending = {}
    scope._lock = _NO_LOCK
    cache = _RequestCache()
    cache.builders = registry.sync_builders
    cache.scope = scope
    scope._cache = cache
    chain = parent._chain
    scope._chain = (chain[0], chain[1], chain[2], scope)
    scope._watch = UNWATCHED  # as __aenter__: the block closes it, `entered` lists it
    registry.entered[scope] = None
    return scope


def exit_request(scope: ActiveScope, exc: BaseException | None) -> Awaitable[None] | None:
    """``__aexit__`` of a REQUEST scope from ``enter_request``: None when every
    finalizer finished inline (nothing to await, not even ``_DONE``), else what to
    await."""
    if scope._closed:
        return None
    # _begin_close() for a REQUEST scope in a block, written out.
    scope._closed = True
    scope._cache = _CLOSED_REQUEST
    scope._chain = ()
    exits = scope._exits
    scope._exits = []
    scope._registry.entered.pop(scope, None)
    if exits:
        failures: list[Failure] = []
        suspended = begin(exits, exc, len(exits), failures)
        if suspended is not None or failures:
            return scope._finish_close(exits, exc, suspended, failures)
    return None


def new_scope(registry: Registry, kind: Scope, parent: ActiveScope | None) -> ActiveScope:
    if kind not in (Scope.SESSION, Scope.REQUEST) and parent is not None:
        raise ValueError(
            f"container.scope() opens SESSION or REQUEST scopes, not {kind.name}. "
            f"Hint: APP is the container itself; TRANSIENT registrations need no scope."
        )
    scope = ActiveScope.__new__(ActiveScope)
    scope._open(registry, kind, parent)
    return scope

