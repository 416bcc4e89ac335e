"""The registrations of one container and the state shared by its scopes."""

from __future__ import annotations

import asyncio
import time
import warnings
import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Protocol

from ._active import ActiveScope, new_scope, request_scope
from ._graph import check_reachable
from ._providers import Kind, Provider, display, lifecycle_of
from ._resolve import build_async, build_sync, not_found
from ._scope import Scope
from ._stats import Instrumentation, Stats
from .exceptions import ClosedError, RegistrationError, WrongEventLoop


class Clock(Protocol):
    def monotonic(self) -> float: ...


class SystemClock:
    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()


class Registry:
    def __init__(
        self,
        *,
        dispose_timeout: float,
        startup_timeout: float,
        health_timeout: float,
        session_idle_timeout: float,
        session_max_age: float,
        max_sessions: int,
        hooks: tuple[Instrumentation, ...],
        clock: Clock,
        compile_after: int,
    ) -> None:
        self.providers: dict[Hashable, Provider] = {}
        self.order: list[Hashable] = []
        self.sync_builders: dict[Hashable, Callable[..., Any]] = {}
        self.async_builders: dict[Hashable, Callable[..., Any]] = {}
        self.dispose_timeout = dispose_timeout
        self.startup_timeout = startup_timeout
        self.health_timeout = health_timeout
        self.session_idle_timeout = session_idle_timeout
        self.session_max_age = session_max_age
        self.max_sessions = max_sessions
        self.hooks = hooks
        self.clock = clock
        self.compile_after = compile_after
        self.loop: asyncio.AbstractEventLoop | None = None
        self.open: dict[weakref.ref[ActiveScope] | None, list[Any]] = {}
        # Scopes inside a with-block, in the order entered: the block closes them, so
        # strong references will do.
        self.entered: dict[ActiveScope, None] = {}
        self.sessions: dict[str, ActiveScope] = {}
        self.expired: list[ActiveScope] = []
        self.leaked = 0
        self.closed = False
        self.singletons = singleton_scope()
        self.singleton_keys: set[Hashable] = set()
        self.root: ActiveScope | None = None
        self._async_memo: dict[Provider, bool] = {}
        self.plan_counters: list[tuple[Any, dict[Provider, int]]] = []
        self.health_states: dict[Hashable, Any] = {}
        self.resolved: dict[Hashable, int] = {}
        self.checked: set[Provider] = set()  # graph-checked before their first build
        self._lost = self.lost  # one bound method, not one per scope

    # -- registration -------------------------------------------------------------

    def add(
        self,
        provides: Any,
        target: Any,
        *,
        kind: Kind,
        scope: Scope,
        name: str | None,
        eager: bool,
        critical: bool,
        health_check: Callable[[Any], Any] | None,
    ) -> Provider:
        if self.closed:
            raise ClosedError("container")
        if not isinstance(scope, Scope):
            raise RegistrationError(f"scope must be a tether.Scope, got {scope!r}")
        if name is not None and (not isinstance(name, str) or not name):
            raise RegistrationError(f"name must be a non-empty string, got {name!r}")
        key = provides if name is None else (provides, name)
        try:
            hash(key)
        except TypeError:
            raise RegistrationError(
                f"{provides!r} cannot be a dependency key because it is not hashable"
            ) from None
        lifecycle = lifecycle_of(kind, target)
        resource = lifecycle is not None
        if kind is Kind.VALUE and scope not in (Scope.APP, Scope.SINGLETON):
            raise RegistrationError(
                f"a value bound for {display(key)} is one object, so it cannot be "
                f"{scope.name}-scoped. Hint: bind a class or factory for a new instance per "
                f"{scope.name.lower()}, or drop scope= for a value."
            )
        if health_check is not None and not callable(health_check):
            raise RegistrationError(f"health_check for {display(key)} must be callable")
        if kind is Kind.VALUE and target is None:
            raise RegistrationError(f"cannot bind None for {display(key)}")
        if scope is Scope.SINGLETON:
            cache_key: Hashable = ("tether.singleton", kind, id(target), key)
        else:
            cache_key = key
        # "active" counts what tether disposes or keeps for the container's life.
        tracked = scope <= Scope.APP or resource or kind in (Kind.GENERATOR, Kind.ASYNC_GENERATOR)
        provider = Provider(
            key=key, provides=provides, name=name, kind=kind, target=target, scope=scope,
            eager=eager, critical=critical, health_check=health_check, resource=resource,
            lifecycle=lifecycle, cache_key=cache_key,
            stats=Stats(display(key), scope, self.hooks, tracked),
        )
        if key not in self.providers:
            self.order.append(key)
        self.providers[key] = provider
        if scope is Scope.SINGLETON:
            self.singleton_keys.add(cache_key)
            singleton_users(self.singletons).setdefault(cache_key, set()).add(id(self))
        self.invalidate()
        return provider

    def invalidate(self) -> None:
        self.checked.clear()
        self.sync_builders.clear()
        self.async_builders.clear()
        self._async_memo.clear()

    def needs_async(self, p: Provider) -> bool:
        known = self._async_memo.get(p)
        if known is not None:
            return known
        self._async_memo[p] = False  # a cycle is reported by validation, not here
        result = p.own_async
        if not result:
            for param in p.params:
                dep = self.providers.get(param.key) if param.key is not None else None
                if dep is not None and self.needs_async(dep):
                    result = True
                    break
        self._async_memo[p] = result
        return result

    def dependencies(self, p: Provider) -> Iterable[Provider]:
        for param in p.params:
            dep = self.providers.get(param.key) if param.key is not None else None
            if dep is not None:
                yield dep

    # -- building -----------------------------------------------------------------

    def first_build(self, key: Hashable, scope: ActiveScope) -> Any:
        p = self._first(key, scope)
        if self._again(key):
            self.install(p)
            return self.sync_builders[key](scope)
        return build_sync(self, p, scope, scope)

    async def first_abuild(self, key: Hashable, scope: ActiveScope) -> Any:
        p = self._first(key, scope)
        if self._again(key):
            self.install(p)
            return await self.async_builders[key](scope)
        if self.needs_async(p):
            return await build_async(self, p, scope, scope)
        return build_sync(self, p, scope, scope)

    def _first(self, key: Hashable, scope: ActiveScope) -> Provider:
        p = self.providers.get(key)
        if p is None:
            if scope._closed:
                raise ClosedError(scope.describe())
            raise not_found(self, key, None)
        if p not in self.checked:
            check_reachable(self, p)
        return p

    def _again(self, key: Hashable) -> bool:
        """Whether ``key`` was resolved before: only then does it get builders of its own
        (a registration resolved once, like most APP ones, never costs any)."""
        seen = self.resolved.get(key, 0)
        self.resolved[key] = seen + 1
        return seen > 0 or self.compile_after <= 1

    def install(self, p: Provider) -> None:
        """Put the plain builders of ``p`` in the tables; at its ``compile_after``-th
        resolution they replace themselves with generated code."""
        key = p.key
        calls = 1  # the resolution that did not install them
        threshold = self.compile_after
        sync_table, async_table = self.sync_builders, self.async_builders

        def promote() -> None:
            from ._compile import compile_provider

            compile_provider(self, p)

        def plain_sync(scope: ActiveScope, holder: ActiveScope | None = None) -> Any:
            nonlocal calls
            calls += 1
            if calls == threshold and sync_table.get(key) is plain_sync:
                promote()
            return build_sync(self, p, scope, holder or scope)

        async def plain_async(scope: ActiveScope, holder: ActiveScope | None = None) -> Any:
            nonlocal calls
            calls += 1
            if calls == threshold and async_table.get(key) is plain_async:
                promote()
            if self.needs_async(p):
                return await build_async(self, p, scope, holder or scope)
            return build_sync(self, p, scope, holder or scope)

        sync_table[key] = plain_sync
        async_table[key] = plain_async
        if threshold <= 1:
            promote()

    # -- scopes -------------------------------------------------------------------

    def open_scope(
        self, kind: Scope, parent: ActiveScope, session_id: str | None
    ) -> ActiveScope:
        if parent._closed:
            raise ClosedError(parent.describe())
        if kind is Scope.SESSION:
            return self.session(parent, session_id)
        if session_id is not None:
            raise ValueError("session_id= is only for Scope.SESSION scopes")
        if kind is Scope.REQUEST and parent.kind is not Scope.REQUEST:
            return request_scope(self, parent)
        scope = new_scope(self, kind, parent)
        self.watch(scope)
        return scope

    def watch(self, scope: ActiveScope) -> None:
        """Track an open scope without keeping it alive; see ``lost``."""
        ref = scope._watch = weakref.ref(scope, self._lost)
        self.open[ref] = scope._exits

    def lost(self, ref: weakref.ref[ActiveScope]) -> None:
        """A scope was garbage-collected while still open."""
        exits = self.open.pop(ref, None)
        if exits:
            self.leaked += 1
            names = ", ".join(p.display for _, _, p in exits)
            warnings.warn(
                f"a scope was garbage-collected without being closed; the teardown of "
                f"{names} never ran. Hint: open scopes with `with` / `async with`.",
                ResourceWarning,
                stacklevel=1,
            )

    def session(self, parent: ActiveScope, session_id: str | None) -> ActiveScope:
        if parent.kind is not Scope.APP:
            raise ValueError(
                f"cannot open a SESSION scope inside a {parent.kind.name} scope: a session "
                f"outlives the blocks it is entered from. Hint: open sessions from the "
                f"container, container.scope(Scope.SESSION, session_id=...)."
            )
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(
                "a SESSION scope needs its id: container.scope(Scope.SESSION, session_id=...)"
            )
        now = self.clock.monotonic()
        scope = self.sessions.get(session_id)
        if scope is not None and self.session_expired(scope, now):
            del self.sessions[session_id]
            self.expired.append(scope)
            scope = None
        if scope is None:
            if len(self.sessions) >= self.max_sessions:
                # Full: the least recently used session goes, and is disposed when the
                # next scope is entered (so ids a client makes up cannot grow memory).
                oldest = next(iter(self.sessions))
                self.expired.append(self.sessions.pop(oldest))
            scope = new_scope(self, Scope.SESSION, parent)
            scope._session_id = session_id
            scope._born = now
            self.sessions[session_id] = scope
            self.watch(scope)
        else:
            # Most recently used last, so the oldest is first when the table is full.
            del self.sessions[session_id]
            self.sessions[session_id] = scope
        scope._touched = now
        return scope

    def session_expired(self, scope: ActiveScope, now: float) -> bool:
        return (now - scope._touched > self.session_idle_timeout
                or now - scope._born > self.session_max_age)

    def take_expired(self) -> list[ActiveScope]:
        now = self.clock.monotonic()
        for sid, scope in list(self.sessions.items()):
            if self.session_expired(scope, now):
                del self.sessions[sid]
                self.expired.append(scope)
        expired, self.expired = self.expired, []
        return expired

    def forget_session(self, scope: ActiveScope) -> None:
        if self.sessions.get(scope._session_id or "") is scope:
            del self.sessions[scope._session_id or ""]

    def open_scopes(self) -> list[ActiveScope]:
        """Open scopes: the watched ones oldest first, then those in blocks, oldest first."""
        found = []
        for ref in list(self.open):
            scope = ref() if ref is not None else None
            if scope is not None and not scope._closed:
                found.append(scope)
        found += [s for s in self.entered if not s._closed and s not in found]
        return found

    # -- event loops --------------------------------------------------------------

    def bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        elif self.loop is not loop:
            raise WrongEventLoop()


class _SingletonRegistry:
    """What the process-wide SINGLETON scope needs of a registry."""

    def __init__(self) -> None:
        self.sync_builders: dict[Hashable, Any] = {}
        self.users: dict[Hashable, set[int]] = {}
        self.dispose_timeout = 10.0
        self.leaked = 0
        self.open: dict[Any, Any] = {}
        self.entered: dict[Any, None] = {}

    def forget_session(self, scope: ActiveScope) -> None:
        return None


_SINGLETONS: list[ActiveScope] = []


def singleton_users(scope: ActiveScope) -> dict[Hashable, set[int]]:
    registry: _SingletonRegistry = scope._registry  # type: ignore[assignment]
    return registry.users


def singleton_scope() -> ActiveScope:
    if not _SINGLETONS:
        scope = ActiveScope.__new__(ActiveScope)
        scope._open(_SingletonRegistry(), Scope.SINGLETON, None)  # type: ignore[arg-type]
        _SINGLETONS.append(scope)
    return _SINGLETONS[0]
