"""``Container``: registrations plus the APP scope they are resolved in."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar, overload

from ._active import ActiveScope
from ._health import HealthReport
from ._providers import Kind, Provider, classify, make_key, provided_type, type_name
from ._registry import Clock, Registry, SystemClock, singleton_users
from ._scope import Scope
from ._stats import Instrumentation, RegistrationMetrics
from .exceptions import ClosedError, GraphError, RegistrationError, StartupError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("tether")

_OMITTED: Any = object()


class Container(ActiveScope):
    """Builds, injects, health-checks, measures and disposes what a service shares.

    The container is the APP scope: ``get``/``aget`` on it resolve APP (and SINGLETON)
    registrations; ``scope()`` opens REQUEST or SESSION scopes. ``async with container``
    validates the graph, starts the eager resources and disposes everything on exit.
    """

    __slots__ = ("_health_interval", "_last_health", "_monitor", "_started")

    def __init__(
        self,
        *,
        dispose_timeout: float = 10.0,
        startup_timeout: float = 60.0,
        health_timeout: float = 5.0,
        health_interval: float | None = None,
        session_idle_timeout: float = 1800.0,
        session_max_age: float = 86400.0,
        max_sessions: int = 100_000,
        instrumentation: Instrumentation | Sequence[Instrumentation] | None = None,
        clock: Clock | None = None,
    ) -> None:
        for label, value in (
            ("dispose_timeout", dispose_timeout), ("startup_timeout", startup_timeout),
            ("health_timeout", health_timeout), ("session_idle_timeout", session_idle_timeout),
            ("session_max_age", session_max_age),
        ):
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{label} must be a positive number of seconds, got {value!r}")
        if health_interval is not None and health_interval <= 0:
            raise ValueError(f"health_interval must be positive or None, got {health_interval!r}")
        if not isinstance(max_sessions, int) or max_sessions < 1:
            raise ValueError(f"max_sessions must be a positive whole number, got {max_sessions!r}")
        if instrumentation is None:
            hooks: tuple[Instrumentation, ...] = ()
        elif isinstance(instrumentation, Sequence):
            hooks = tuple(instrumentation)
        else:
            hooks = (instrumentation,)
        registry = Registry(
            dispose_timeout=dispose_timeout, startup_timeout=startup_timeout,
            health_timeout=health_timeout, session_idle_timeout=session_idle_timeout,
            session_max_age=session_max_age, max_sessions=max_sessions, hooks=hooks,
            clock=clock or SystemClock(), compile_after=_compile_after(),
        )
        self._open(registry, Scope.APP, None)
        registry.root = self
        self._health_interval = health_interval
        self._last_health: HealthReport | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._started = False

    # -- registration -------------------------------------------------------------

    def bind(
        self,
        dependency: Any,
        target: Any = _OMITTED,
        /,
        *,
        scope: Scope = Scope.APP,
        name: str | None = None,
        eager: bool = False,
        critical: bool = True,
        health_check: Callable[[Any], Any] | None = None,
    ) -> None:
        """Register ``target`` for ``dependency``.

        ``target`` is a value, a class (autowired from its ``__init__`` hints), or a
        factory or generator function; omitted, ``dependency`` itself is the class.
        """
        if target is _OMITTED:
            if not isinstance(dependency, type):
                raise RegistrationError(
                    f"bind({dependency!r}) needs a target: only a class can be bound to itself"
                )
            target = dependency
        kind = classify(target)
        if kind is Kind.CLASS and isinstance(dependency, type):
            _check_implements(dependency, target)
        self._add(dependency, target, kind, scope, name, eager, critical, health_check)

    @overload
    def provide(self, func: F, /) -> F: ...
    @overload
    def provide(
        self,
        func: None = None,
        /,
        *,
        scope: Scope = Scope.APP,
        name: str | None = None,
        eager: bool = False,
        critical: bool = True,
        health_check: Callable[[Any], Any] | None = None,
        provides: Any = None,
    ) -> Callable[[F], F]: ...
    def provide(
        self,
        func: F | None = None,
        /,
        *,
        scope: Scope = Scope.APP,
        name: str | None = None,
        eager: bool = False,
        critical: bool = True,
        health_check: Callable[[Any], Any] | None = None,
        provides: Any = None,
    ) -> F | Callable[[F], F]:
        """Register a factory (plain, async, generator or async generator) by decorating it.

        What it provides comes from its return hint, or ``provides=``.
        """

        def register(f: F) -> F:
            kind = classify(f)
            if kind in (Kind.VALUE, Kind.CLASS):
                raise RegistrationError(
                    f"@container.provide decorates functions; for {f!r} use container.bind()"
                )
            tp = provides if provides is not None else provided_type(f)
            self._add(tp, f, kind, scope, name, eager, critical, health_check)
            return f

        return register if func is None else register(func)

    def _add(
        self, dependency: Any, target: Any, kind: Kind, scope: Scope, name: str | None,
        eager: bool, critical: bool, health_check: Callable[[Any], Any] | None,
    ) -> None:
        if eager and scope not in (Scope.APP, Scope.SINGLETON):
            raise RegistrationError(
                f"eager=True starts a registration with the container, so it applies to APP "
                f"and SINGLETON scope only, not {scope.name} ({type_name(dependency)})."
            )
        self._registry.add(
            dependency, target, kind=kind, scope=scope, name=name, eager=eager,
            critical=critical, health_check=health_check,
        )

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any],
        *,
        env_prefix: str = "TETHER_",
        environ: Mapping[str, str] | None = None,
        **options: Any,
    ) -> Container:
        """A container (``options`` as for ``Container(...)``) with every resource that
        a YAML/TOML/JSON file (or a mapping) declares, overridable from the environment
        (``{env_prefix}RESOURCES__{NAME}__{KEY}``; ``environ`` replaces ``os.environ``
        for that). Needs the ``settings`` extra and the
        extra of each battery used; a bad file raises ``tether.settings.SettingsError``
        naming each bad key with its file and line. See docs/declarative.md."""
        try:
            from ._declarative import declare
        except ImportError:
            raise ImportError("Container.from_config needs the 'settings' extra: "
                              "pip install 'tether[settings]'") from None
        container = cls(**options)
        declare(container, source, env_prefix=env_prefix, environ=environ)
        return container

    # -- scopes and injection -----------------------------------------------------

    def inject(self, func: F) -> F:
        """Fill the ``Inject[T]`` parameters of ``func`` at each call, in a REQUEST scope
        of its own."""
        from ._inject import inject

        return inject(self, func)

    @contextmanager
    def override(
        self, dependency: Any, replacement: Any, *, name: str | None = None
    ) -> Iterator[None]:
        """Use ``replacement`` (a value, class or factory) for ``dependency`` inside the block.

        Cached instances of it and of everything that depends on it are dropped, so they
        are rebuilt with the replacement; they are rebuilt again after the block.
        Overrides nest.
        """
        reg = self._registry
        if self._closed:
            raise ClosedError(self.describe())
        key = make_key(dependency, name)
        before = reg.providers.get(key)
        kind = classify(replacement)
        scope = Scope.APP
        if kind is not Kind.VALUE and before is not None:
            scope = before.scope
        self._evict(key)
        reg.add(dependency, replacement, kind=kind, scope=scope, name=name, eager=False,
                critical=before.critical if before else True,
                health_check=before.health_check if before else None)
        try:
            yield
        finally:
            self._evict(key)
            if before is None:
                reg.providers.pop(key, None)
                reg.order.remove(key)
            else:
                reg.providers[key] = before
            reg.invalidate()

    def _evict(self, key: Any) -> None:
        """Drop cached instances of ``key`` and of everything that depends on it."""
        reg = self._registry
        doomed: set[Provider] = set()
        target = reg.providers.get(key)
        dependents: dict[Provider, list[Provider]] = {}
        for p in list(reg.providers.values()):
            try:
                for dep in reg.dependencies(p):
                    dependents.setdefault(dep, []).append(p)
            except RegistrationError:
                continue
        todo = [target] if target is not None else []
        while todo:
            p = todo.pop()
            if p in doomed:
                continue
            doomed.add(p)
            todo.extend(dependents.get(p, ()))
        scopes = [self, *reg.open_scopes()]
        for p in doomed:
            for s in scopes:
                if not s._closed:
                    s._cache.pop(p.cache_key, None)

    # -- lifecycle ----------------------------------------------------------------

    def validate(self) -> None:
        """Check the whole graph; raise ``GraphError`` listing every problem found."""
        from ._graph import problems

        found = problems(self._registry)
        if found:
            raise GraphError(found)

    def graph(self, format: str = "mermaid") -> str:
        """The dependency graph as Mermaid (``"mermaid"``) or Graphviz (``"dot"``) text."""
        from ._graph import export

        return export(self._registry, format)

    async def start(self) -> None:
        """Validate, then build every ``eager`` registration, in registration order.

        If one fails, those already built are disposed in reverse order and
        ``StartupError`` names the one that failed.
        """
        if self._closed:
            raise ClosedError(self.describe())
        reg = self._registry
        self.validate()
        reg.bind_loop()
        current: Provider | None = None
        try:
            async with asyncio.timeout(reg.startup_timeout):
                for p in self._eager():
                    current = p
                    await self.aget(p.provides, p.name)
        except BaseException as error:
            failed = current.display if current is not None else "start-up"
            cause: BaseException = error
            if isinstance(error, TimeoutError) and current is not None:
                cause = TimeoutError(f"not ready within startup_timeout={reg.startup_timeout:g}s")
            try:
                await self.aclose()
            except Exception as teardown:
                logger.error("disposing after a failed start-up raised %r", teardown,
                             exc_info=teardown)
            if not isinstance(error, Exception):
                raise
            raise StartupError(failed, error=cause) from error
        self._started = True
        if self._health_interval is not None:
            self._monitor = asyncio.get_running_loop().create_task(
                self._monitor_loop(self._health_interval), name="tether health monitor"
            )

    def start_sync(self) -> None:
        """``start()`` for code without an event loop; every eager registration must be sync."""
        if self._closed:
            raise ClosedError(self.describe())
        self.validate()
        current: Provider | None = None
        try:
            for p in self._eager():
                current = p
                self.get(p.provides, p.name)
        except BaseException as error:
            self.close()
            if not isinstance(error, Exception):
                raise
            raise StartupError(current.display if current else "start-up", error=error) from error
        self._started = True

    def _eager(self) -> list[Provider]:
        reg = self._registry
        return [reg.providers[k] for k in reg.order if reg.providers[k].eager]

    async def _monitor_loop(self, interval: float) -> None:
        while True:
            try:
                self._last_health = await self.health()
                await self.expire_sessions()
            except Exception as error:  # the monitor must outlive any one failure
                logger.error("health monitor: %r", error, exc_info=error)
            await asyncio.sleep(interval)

    async def expire_sessions(self) -> int:
        """Dispose the SESSION scopes whose idle or absolute time ran out; return how many."""
        expired = self._registry.take_expired()
        for scope in expired:
            await scope.aclose()
        return len(expired)

    async def end_session(self, session_id: str) -> bool:
        """Dispose the SESSION scope of ``session_id`` now (a logout, a rotated session
        id); return whether one was open. A later request with that id starts afresh."""
        scope = self._registry.sessions.get(session_id)
        if scope is None:
            return False
        self._registry.forget_session(scope)
        await scope.aclose()
        return True

    async def aclose(self, exc: BaseException | None = None) -> None:
        """Dispose everything: open scopes first, then APP, then SINGLETONs no other
        container uses. Every finalizer runs; errors come back together."""
        from ._teardown import raise_teardown, run_async

        if self._closed:
            return
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.wait((self._monitor,))
            self._monitor = None
        batches = self._close_batches()
        failures: list[Any] = []
        cancelled: asyncio.CancelledError | None = None
        for entries in batches:
            f, c = await run_async(entries, exc, self._registry.dispose_timeout)
            failures += f
            cancelled = cancelled or c
        raise_teardown(self.describe(), exc, failures, cancelled)

    def close(self, exc: BaseException | None = None) -> None:
        """``aclose()`` for code without an event loop."""
        from ._teardown import raise_teardown, run_sync

        if self._closed:
            return
        failures = []
        for entries in self._close_batches():
            failures += run_sync(entries, exc)
        raise_teardown(self.describe(), exc, failures, None)

    def _close_batches(self) -> list[list[Any]]:
        reg = self._registry
        batches = []
        # Newest first: a nested scope closes before the one around it.
        for scope in reversed(reg.open_scopes()):
            if scope.kind is Scope.REQUEST:
                logger.warning("closing a %s that was still open when the container closed",
                               scope.describe())
            batches.append(scope._begin_close())
        batches += [s._begin_close() for s in reg.take_expired()]
        batches.append(self._begin_close())
        batches.append(_release_singletons(reg))
        reg.closed = True
        for p in reg.providers.values():
            if p.scope is Scope.APP and not p.has_teardown:
                p.stats.active = 0  # released with the container; nothing to dispose
        return batches

    async def __aenter__(self) -> Container:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose(exc)

    def __enter__(self) -> Container:
        self.start_sync()
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close(exc)

    # -- health and metrics -------------------------------------------------------

    async def health(self) -> HealthReport:
        """Run every health check concurrently, each bounded by ``health_timeout``."""
        from ._health import run_checks

        report = await run_checks(self._registry)
        self._last_health = report
        return report

    @property
    def last_health(self) -> HealthReport | None:
        """The latest report (from ``health()`` or the ``health_interval`` monitor)."""
        return self._last_health

    def metrics(self) -> dict[str, RegistrationMetrics]:
        """A snapshot of every registration's counters."""
        reg = self._registry
        extra: dict[Provider, int] = {}
        for counter, composition in reg.plan_counters:
            runs = counter[0]
            if runs:
                for p, n in composition.items():
                    extra[p] = extra.get(p, 0) + runs * n
        return {
            reg.providers[k].display: reg.providers[k].stats.snapshot(
                extra.get(reg.providers[k], 0)
            )
            for k in reg.order
        }

    def statistics(self) -> dict[str, Any]:
        """What each built APP or SINGLETON resource reports about itself.

        For every such instance with a ``statistics()`` method (the batteries' pool and
        call counters), its return value, keyed by registration. A resource whose
        ``statistics()`` raises is left out and the error logged.
        """
        reg = self._registry
        out: dict[str, Any] = {}
        for key in reg.order:
            p = reg.providers[key]
            if p.scope is Scope.APP:
                cache: dict[Any, Any] = self._cache
            elif p.scope is Scope.SINGLETON:
                cache = reg.singletons._cache
            else:
                continue
            report = getattr(cache.get(p.cache_key), "statistics", None)
            if not callable(report):
                continue
            try:
                out[p.display] = report()
            except Exception:
                logger.exception("statistics() of %s raised", p.display)
        return out

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("started" if self._started else "not started")
        return f"<tether.Container {state}, {len(self._registry.providers)} registrations>"


def _check_implements(dependency: type, target: type) -> None:
    if dependency is target or getattr(dependency, "_is_protocol", False):
        return
    try:
        ok = issubclass(target, dependency)
    except TypeError:
        return
    if not ok:
        raise RegistrationError(
            f"cannot bind {type_name(dependency)} to {type_name(target)}: it is not a "
            f"subclass. Hint: bind a subclass, a factory returning {type_name(dependency)}, "
            f"or a value."
        )


def _release_singletons(reg: Registry) -> list[Any]:
    """Teardown entries of SINGLETON instances no other open container uses."""
    singletons = reg.singletons
    users = singleton_users(singletons)
    released = set()
    for key in reg.singleton_keys:
        holders = users.get(key)
        if holders is not None:
            holders.discard(id(reg))
            if not holders:
                del users[key]
                released.add(key)
    if not released:
        return []
    keep: list[Any] = []
    mine: list[Any] = []
    for entry in singletons._exits:
        (mine if entry[2].cache_key in released else keep).append(entry)
    singletons._exits = keep
    for key in released:
        singletons._cache.pop(key, None)
    return mine


def _compile_after() -> int:
    # Test hook: TETHER_COMPILE_AFTER=0 compiles every registration at once, a large
    # number keeps the plain builders; the default promotes on the second call.
    import os

    value = os.environ.get("TETHER_COMPILE_AFTER")
    return int(value) if value else 2

