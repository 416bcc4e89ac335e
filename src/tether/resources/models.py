"""Named ML models, loaded on first use, kept within a limit, disposed when evicted.

    models = ModelRegistry(ModelsConfig(max_loaded=2, max_retries=2))
    models.register("sentiment", load_sentiment, warm_up=lambda m: m.predict(["ok"]))
    container.bind(ModelRegistry, models)
    bind_model(container, SentimentModel, "sentiment")  # Inject[SentimentModel, "sentiment"]

    async with models.use("sentiment") as model:        # loaded once; pinned in the block
        labels = model.predict(texts)

A loader is any callable (sync or async) that returns a model; a sync one runs in a
worker thread. However many callers ask for a model at once, its loader runs once;
a failed load is not kept, so the next call tries again. With ``max_loaded``, the
least recently used model that nobody holds is unloaded to make room: its dispose
hook runs (its own ``aclose()``/``close()``/``unload()`` by default), the registry
drops every reference to it, and, when PyTorch has initialized CUDA in this process,
cached accelerator memory is handed back to the driver.
"""

from __future__ import annotations

try:
    import pydantic  # noqa: F401
except ImportError:
    raise ImportError(
        "tether.resources.models needs the 'models' extra: pip install 'tether[models]'"
    ) from None

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine
from time import perf_counter
from types import GenericAlias, MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Annotated, Any

from .._health import describe_error
from .._markers import Named
from .._providers import resource, type_name
from .._scope import Scope
from ..exceptions import CircuitOpen, ClosedError, ResourceError, ResourceTimeout
from ..resilience import Policy
from ._meter import Meter
from ._models_config import ModelRegistryStats, ModelsConfig, ModelStats
from ._models_hooks import (
    accelerator_in_use,
    call_hook,
    close_method,
    estimate_bytes,
    free_accelerator_memory,
)

if TYPE_CHECKING:
    from .._container import Container

__all__ = [
    "ModelRegistry",
    "ModelRegistryStats",
    "ModelStats",
    "ModelsConfig",
    "bind_model",
]

logger = logging.getLogger("tether.resources.models")

NOT_INITIALIZED = ("not initialized: resolve it from the container (which calls "
                   "initialize()) or await initialize() first")

Loader = Callable[[], Any]
Hook = Callable[[Any], Any]


class _Spec:
    """One registered model: how to load, warm, check and dispose it, and its counters."""

    __slots__ = (
        "check", "current", "dispose", "evictions", "failures", "healthy", "last_error",
        "last_used", "load_seconds_last", "loader", "loading", "loads", "name", "policy",
        "preload", "resource", "size", "unloads", "wanted", "warm_up",
    )

    def __init__(self, name: str, resource: str, loader: Loader, policy: Policy) -> None:
        self.name = name
        self.resource = resource
        self.loader = loader
        self.policy = policy
        self.warm_up: Hook | None = None
        self.dispose: Hook | None = None
        self.size: Callable[[Any], int] | None = None
        self.check: Hook | None = None
        self.preload = False
        self.current: _Instance | None = None
        self.loading: asyncio.Task[_Instance] | None = None
        self.wanted = 0  # callers waiting for this model: it must not be evicted under them
        self.loads = self.failures = self.evictions = self.unloads = 0
        self.load_seconds_last: float | None = None
        self.last_used: float | None = None
        self.healthy: bool | None = None
        self.last_error: str | None = None


class _Instance:
    """One loaded model; compared by identity."""

    __slots__ = ("disposal", "memory_bytes", "model", "pins", "retired", "spec")

    def __init__(self, spec: _Spec, model: Any, memory_bytes: int) -> None:
        self.spec = spec
        self.model = model
        self.memory_bytes = memory_bytes
        self.pins = 0  # use() blocks and health checks holding it
        self.retired = False  # unloaded: no longer handed out, disposed once unpinned
        self.disposal: asyncio.Task[None] | None = None


@resource
class ModelRegistry:
    """Named models, each loaded by its loader on first use, at most ``max_loaded``
    at once (least recently used first out), disposed at ``dispose()``.

    ``get(name)`` returns the model itself; ``use(name)`` also holds it for the
    ``async with`` block, so eviction and ``unload()`` wait for the block to end
    before disposing it. Use ``use()`` whenever a model can be evicted (``max_loaded``
    set) while a caller still works with it.
    """

    def __init__(self, config: ModelsConfig) -> None:
        self.config = config
        self._specs: dict[str, _Spec] = {}
        self._loaded: OrderedDict[str, _Instance] = OrderedDict()  # least recent first
        self._held: set[_Instance] = set()  # unloaded while in use: disposed at release
        self._tasks: set[asyncio.Task[Any]] = set()  # disposals running on their own
        self._drained = asyncio.Event()  # closing, and nothing is held any more
        self._meter = Meter()
        self._loading = 0
        self._dispose_failures = 0
        self._started = False
        self._closing = False

    @property
    def name(self) -> str:
        return self.config.name

    # -- registration ----------------------------------------------------------------

    def register(
        self,
        name: str,
        loader: Loader,
        *,
        warm_up: Hook | None = None,
        dispose: Hook | None = None,
        size: Callable[[Any], int] | None = None,
        check: Hook | None = None,
        preload: bool = False,
    ) -> None:
        """Register the model ``name``, made by ``loader()`` (sync or async).

        ``warm_up(model)`` runs after each load (one dummy prediction, say); if it
        raises, the load failed. ``dispose(model)`` replaces the model's own
        ``aclose()``/``close()``/``unload()`` when it is unloaded. ``size(model)``
        gives its memory in bytes instead of the estimate. ``check(model)`` is its
        health check: False or an error means unhealthy. ``preload=True`` loads it in
        ``initialize()`` instead of on first use. Each hook may be sync (run in a
        worker thread) or async.
        """
        if self._closing:
            raise ClosedError(self._what)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.name}: a model name must be a non-empty string, got "
                             f"{name!r}")
        if name in self._specs:
            raise ValueError(f"{self.name}: a model named {name!r} is already registered")
        for label, hook in (("loader", loader), ("warm_up", warm_up), ("dispose", dispose),
                            ("size", size), ("check", check)):
            if hook is not None and not callable(hook):
                raise TypeError(f"{self.name}: {label} of model {name!r} must be callable, "
                                f"got {hook!r}")
        limit = self.config.max_loaded
        preloads = sum(spec.preload for spec in self._specs.values()) + preload
        if limit is not None and preloads > limit:
            raise ValueError(f"{self.name}: {preloads} models with preload=True do not fit "
                             f"in max_loaded={limit}")
        resource = f"{self.name}[{name}]"
        spec = _Spec(name, resource, loader, self.config.load_policy(resource))
        spec.warm_up, spec.dispose, spec.size, spec.check = warm_up, dispose, size, check
        spec.preload = preload
        self._specs[name] = spec

    def registered(self) -> tuple[str, ...]:
        """The registered model names, in registration order."""
        return tuple(self._specs)

    def loaded(self) -> tuple[str, ...]:
        """The loaded model names, least recently used first (the next to be evicted)."""
        return tuple(self._loaded)

    # -- lifecycle -------------------------------------------------------------------

    async def initialize(self) -> None:
        """Start; load the models registered with ``preload=True``. If one fails, the
        others are unloaded and its error raised."""
        if self._closing:
            raise ClosedError(self._what)
        if self._started:
            return
        self._started = True
        preload = [spec.name for spec in self._specs.values() if spec.preload]
        if not preload:
            return
        results = await asyncio.gather(*(self.get(name) for name in preload),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for name in self.loaded():
                await self.unload(name)
            self._started = False
            raise errors[0]

    async def dispose(self) -> None:
        """Stop loading, unload every model and dispose it. Safe to call twice; errors
        are logged.

        Loads in flight are cancelled (their callers get ``ClosedError``); models in
        ``use()`` blocks get up to ``close_timeout`` seconds to be released, then are
        disposed anyway; each disposal is bounded by ``unload_timeout``.
        """
        if self._closing:
            return
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.close_timeout
        loads = [spec.loading for spec in self._specs.values() if spec.loading is not None]
        for task in loads:
            task.cancel()
        if loads:
            _, pending = await asyncio.wait(loads, timeout=self.config.close_timeout)
            if pending:
                logger.warning("%s: %d load(s) ignored cancellation; abandoned", self.name,
                               len(pending))
        for inst in list(self._loaded.values()):
            self._retire(inst, evicted=False)
        if self._held:
            self._drained.clear()
            try:
                async with asyncio.timeout_at(max(deadline, loop.time())):
                    await self._drained.wait()
            except TimeoutError:
                logger.warning("%s: %d model(s) still in use after close_timeout=%gs; "
                               "disposing them anyway", self.name, len(self._held),
                               self.config.close_timeout)
                for inst in list(self._held):
                    self._start_disposal(inst)
        if self._tasks:
            # Each disposal is bounded by unload_timeout; this bound only guards against
            # a dispose hook that ignores cancellation.
            _, pending_disposals = await asyncio.wait(
                set(self._tasks), timeout=self.config.unload_timeout + 1)
            if pending_disposals:
                logger.warning("%s: %d model disposal(s) did not finish; abandoned",
                               self.name, len(pending_disposals))

    async def health_check(self) -> bool:
        """Check every loaded model with its ``check`` (a model without one passes:
        it is loaded). Models not loaded are not loaded for this. A failed check
        raises ``ResourceError`` naming each failing model and why."""
        self._live()
        instances = list(self._loaded.values())
        verdicts = await asyncio.gather(*(self._check(inst) for inst in instances))
        failed = [f"{inst.spec.name!r} ({why})"
                  for inst, why in zip(instances, verdicts, strict=True) if why is not None]
        if failed:
            raise ResourceError(self.name, f"model check failed: {', '.join(failed)}")
        return True

    def statistics(self) -> ModelRegistryStats:
        """A snapshot of the models and counters."""
        specs = self._specs.values()
        loaded = self._loaded.values()
        return ModelRegistryStats(
            registered=len(self._specs),
            loaded=len(self._loaded),
            loading=self._loading,
            in_use=sum(1 for inst in loaded if inst.pins) + len(self._held),
            memory_bytes=sum(inst.memory_bytes for inst in (*loaded, *self._held)),
            loads_total=sum(spec.loads for spec in specs),
            load_failures_total=sum(spec.failures for spec in specs),
            load_retries_total=sum(spec.policy.retries_total for spec in specs),
            evictions_total=sum(spec.evictions for spec in specs),
            unloads_total=sum(spec.unloads for spec in specs),
            dispose_failures_total=self._dispose_failures,
            load_seconds_max=self._meter.latency_max,
            failures_by_kind=MappingProxyType(dict(self._meter.failures)),
            loaded_by_model=MappingProxyType(
                {spec.name: int(spec.current is not None) for spec in specs}),
            memory_bytes_by_model=MappingProxyType(
                {spec.name: spec.current.memory_bytes if spec.current else 0
                 for spec in specs}),
            load_seconds_last_by_model=MappingProxyType(
                {spec.name: spec.load_seconds_last for spec in specs
                 if spec.load_seconds_last is not None}),
            healthy_by_model=MappingProxyType(
                {spec.name: int(spec.healthy) for spec in specs if spec.healthy is not None}),
        )

    def model_stats(self, name: str) -> ModelStats:
        """One model's state and counters (in any state of the registry)."""
        spec = self._lookup(name)
        current = spec.current
        return ModelStats(
            name=spec.name,
            loaded=current is not None,
            loading=spec.loading is not None,
            in_use=current.pins if current else 0,
            loads_total=spec.loads,
            load_failures_total=spec.failures,
            load_retries_total=spec.policy.retries_total,
            evictions_total=spec.evictions,
            unloads_total=spec.unloads,
            load_seconds_last=spec.load_seconds_last,
            memory_bytes=current.memory_bytes if current else 0,
            last_used=spec.last_used,
            healthy=spec.healthy,
            last_error=spec.last_error,
        )

    # -- handing models out ----------------------------------------------------------

    async def get(self, name: str) -> Any:
        """The model ``name``, loaded first if needed (once, however many ask).

        The model is a plain reference: if it is evicted or unloaded later, it is
        disposed even while the caller still uses it. ``use()`` prevents that.
        """
        inst = await self._acquire(name)
        self._trim(keep=inst)
        return inst.model

    def use(self, name: str) -> _Lease:
        """``async with registry.use(name) as model``: the model, loaded if needed and
        held for the block, so it is neither evicted nor disposed until the block ends."""
        return _Lease(self, name)

    async def unload(self, name: str) -> bool:
        """Unload the model ``name`` and dispose it; return whether it was loaded.

        A model held by ``use()`` blocks stops being handed out at once and is disposed
        when the last block ends (this returns without waiting for that); the next
        ``get()`` loads a fresh one. A load in flight is not stopped.
        """
        spec = self._spec(name)
        if spec.current is None:
            return False
        disposal = self._retire(spec.current, evicted=False)
        if disposal is not None:
            # Shielded: a caller cancelled here must not cut the disposal short.
            await asyncio.shield(disposal)
        return True

    # -- loading ---------------------------------------------------------------------

    async def _acquire(self, name: str) -> _Instance:
        spec = self._spec(name)
        spec.wanted += 1
        try:
            while True:
                inst = spec.current
                if inst is None:
                    inst = await self._join_load(spec)
                # Unloaded between its load and this caller's turn: load it again.
                if not inst.retired:
                    self._touch(inst)
                    return inst
        finally:
            spec.wanted -= 1

    async def _join_load(self, spec: _Spec) -> _Instance:
        task = spec.loading
        if task is None:
            self._live()
            task = asyncio.get_running_loop().create_task(
                self._load(spec), name=f"tether load {spec.resource}")
            task.add_done_callback(_retrieve)
            spec.loading = task
        try:
            # Shielded: a waiter that is cancelled leaves; the load goes on for the rest.
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):
                raise ClosedError(self._what) from None  # dispose() stopped the load
            raise

    async def _load(self, spec: _Spec) -> _Instance:
        self._loading += 1
        started = self._meter.begin()
        error: BaseException | None = None
        try:
            await self._make_room()
            clock = perf_counter()
            model = await self._load_model(spec)
            seconds = perf_counter() - clock
        except BaseException as caught:
            error = caught
            raise
        finally:
            self._loading -= 1
            spec.loading = None
            self._meter.end(started, error if isinstance(error, Exception) else None)
            if isinstance(error, Exception):
                spec.failures += 1
                spec.last_error = describe_error(error)
                if not isinstance(error, CircuitOpen):  # the breaker logs when it opens
                    logger.warning("%s", error)
        inst = _Instance(spec, model, estimate_bytes(model, spec.size))
        del model
        spec.current = inst
        self._loaded[spec.name] = inst
        spec.loads += 1
        spec.load_seconds_last = seconds
        spec.last_error = None
        spec.healthy = None
        logger.info("%s: loaded in %.3fs (about %d bytes)", spec.resource, seconds,
                    inst.memory_bytes)
        self._trim(keep=inst)
        return inst

    async def _load_model(self, spec: _Spec) -> Any:
        attempts = 0

        async def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            return await self._attempt(spec)

        try:
            return await spec.policy.call(attempt, idempotent=True)
        except CircuitOpen:
            raise
        except ResourceTimeout as error:
            if error.resource == spec.resource and error.operation == "call":
                raise ResourceTimeout(spec.resource, error.timeout, "load") from error
            raise ResourceError(spec.resource, _failed(attempts, error)) from error
        except Exception as error:
            raise ResourceError(spec.resource, _failed(attempts, error)) from error

    async def _attempt(self, spec: _Spec) -> Any:
        model = await call_hook(spec.loader, on_late=self._late(spec))
        if model is None:
            raise TypeError(f"the loader {type_name(spec.loader)} returned None; it must "
                            f"return the model")
        if spec.warm_up is None or not self.config.warm_up:
            return model
        try:
            await call_hook(spec.warm_up, model)
        except Exception:
            # Free the memory before any retry loads another copy.
            await self._dispose_model(spec, model)
            del model
            raise
        except BaseException:
            self._spawn(self._dispose_model(spec, model))
            del model
            raise
        return model

    def _late(self, spec: _Spec) -> Callable[[Any], None]:
        """What a sync loader's thread does with a model that arrives after its load
        was given up (timed out, cancelled): dispose it on the event loop."""
        loop = asyncio.get_running_loop()

        def adopt(model: Any) -> None:
            logger.info("%s: a load given up earlier finished; disposing its model",
                        spec.resource)
            self._spawn(self._dispose_model(spec, model))

        def hand_over(model: Any) -> None:
            try:
                loop.call_soon_threadsafe(adopt, model)
            except RuntimeError:  # the loop is closed: nothing can run the dispose hook
                logger.warning("%s: a load given up earlier finished after its event loop "
                               "closed; its model is dropped without being disposed",
                               spec.resource)

        return hand_over

    # -- eviction and disposal -------------------------------------------------------

    async def _make_room(self) -> None:
        """Before a load: unload least recently used models so the incoming one fits,
        and wait for their disposal, so their memory is free before the loader runs."""
        disposals = [task for inst in self._victims(keep=None)
                     if (task := self._retire(inst, evicted=True)) is not None]
        if disposals:
            await asyncio.wait(disposals)

    def _trim(self, keep: _Instance | None) -> None:
        """Unload models over ``max_loaded`` (disposals run on their own)."""
        for inst in self._victims(keep):
            self._retire(inst, evicted=True)

    def _victims(self, keep: _Instance | None) -> list[_Instance]:
        limit = self.config.max_loaded
        if limit is None:
            return []
        excess = len(self._loaded) + self._loading - limit
        victims = []
        for inst in self._loaded.values():  # least recently used first
            if excess <= 0:
                break
            if inst is keep or inst.pins or inst.spec.wanted:
                continue
            victims.append(inst)
            excess -= 1
        if excess > 0:
            logger.debug("%s: %d model(s) over max_loaded=%d while every other model is in "
                        "use; unloading when one is released", self.name, excess, limit)
        return victims

    def _retire(self, inst: _Instance, *, evicted: bool) -> asyncio.Task[None] | None:
        """Stop handing ``inst`` out; dispose it now, or when its last holder is done.
        Returns the disposal when it started."""
        if inst.retired:
            return inst.disposal
        inst.retired = True
        spec = inst.spec
        if spec.current is inst:
            spec.current = None
            self._loaded.pop(spec.name, None)
        spec.unloads += 1
        spec.healthy = None
        if evicted:
            spec.evictions += 1
            logger.info("%s: evicted (least recently used, max_loaded=%s)", spec.resource,
                        self.config.max_loaded)
        if inst.pins:
            self._held.add(inst)
            return None
        return self._start_disposal(inst)

    def _start_disposal(self, inst: _Instance) -> asyncio.Task[None]:
        if inst.disposal is None:
            self._held.discard(inst)
            model, inst.model = inst.model, None
            inst.disposal = self._spawn(self._dispose_model(inst.spec, model))
            del model
            if self._closing and not self._held:
                self._drained.set()
        return inst.disposal

    def _unpin(self, inst: _Instance, *, used: bool = True) -> None:
        inst.pins -= 1
        if inst.pins:
            return
        if inst.retired:
            self._start_disposal(inst)
            return
        if used:
            self._touch(inst)
        self._trim(keep=None)

    async def _dispose_model(self, spec: _Spec, model: Any) -> None:
        """Run the dispose hook, drop the model, free accelerator memory; all of it
        within ``unload_timeout``. Errors are logged and counted, never raised."""
        deadline = asyncio.get_running_loop().time() + self.config.unload_timeout
        await self._run_dispose_hook(spec, model, deadline)
        del model  # the registry's last reference: the model can be freed now
        if not accelerator_in_use():
            return
        try:
            async with asyncio.timeout_at(deadline):
                await asyncio.to_thread(free_accelerator_memory)
        except TimeoutError:
            logger.warning("%s: freeing accelerator memory ran past unload_timeout=%gs",
                           spec.resource, self.config.unload_timeout)
        except Exception:
            logger.warning("%s: freeing accelerator memory failed", spec.resource,
                           exc_info=True)

    async def _run_dispose_hook(self, spec: _Spec, model: Any, deadline: float) -> None:
        hook: Callable[..., Any]
        args: tuple[Any, ...]
        if spec.dispose is not None:
            hook, args = spec.dispose, (model,)
        else:
            method = close_method(model)
            if method is None:
                return
            hook, args = method, ()
        try:
            async with asyncio.timeout_at(deadline):
                await call_hook(hook, *args)
        except TimeoutError:
            self._dispose_failures += 1
            logger.warning("%s: disposing the model took longer than unload_timeout=%gs; "
                           "abandoned", spec.resource, self.config.unload_timeout)
        except Exception:
            self._dispose_failures += 1
            logger.warning("%s: disposing the model failed", spec.resource, exc_info=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- health ----------------------------------------------------------------------

    async def _check(self, inst: _Instance) -> str | None:
        """Why ``inst`` is unhealthy, or None when it is healthy."""
        spec = inst.spec
        if spec.check is None:
            spec.healthy = True
            return None
        inst.pins += 1  # not evicted in the middle of its check
        why: str | None = None
        try:
            async with asyncio.timeout(self.config.check_timeout):
                verdict = await call_hook(spec.check, inst.model)
            if verdict is False:
                why = "check returned False"
        except TimeoutError:
            why = f"check timed out after check_timeout={self.config.check_timeout:g}s"
        except Exception as error:
            why = describe_error(error)
        finally:
            self._unpin(inst, used=False)  # a check is not a use: the LRU order stays
        if not inst.retired:
            spec.healthy = why is None
        if why is not None:
            spec.last_error = why
        return why

    # -- helpers ---------------------------------------------------------------------

    def _spec(self, name: str) -> _Spec:
        self._live()
        return self._lookup(name)

    def _lookup(self, name: str) -> _Spec:
        spec = self._specs.get(name)
        if spec is None:
            known = ", ".join(repr(n) for n in self._specs) or "none"
            raise LookupError(f"{self.name}: no model named {name!r} is registered "
                              f"(registered: {known})")
        return spec

    def _touch(self, inst: _Instance) -> None:
        inst.spec.last_used = time.time()
        if not inst.retired:
            self._loaded.move_to_end(inst.spec.name)

    @property
    def _what(self) -> str:
        return f"ModelRegistry '{self.name}'"

    def _live(self) -> None:
        if self._closing:
            raise ClosedError(self._what)
        if not self._started:
            raise ResourceError(self.name, NOT_INITIALIZED)

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open" if self._started else "not initialized"
        return (f"<ModelRegistry {self.name!r} {state}, {len(self._loaded)} of "
                f"{len(self._specs)} model(s) loaded, max_loaded={self.config.max_loaded}>")


class _Lease:
    """What ``ModelRegistry.use()`` returns: ``async with`` gives the model and holds
    it until the block ends."""

    __slots__ = ("_inst", "_name", "_registry")

    def __init__(self, registry: ModelRegistry, name: str) -> None:
        self._registry = registry
        self._name = name
        self._inst: _Instance | None = None

    async def __aenter__(self) -> Any:
        if self._inst is not None:
            raise RuntimeError("this use() is already in use: call registry.use() once "
                               "per async with block")
        inst = await self._registry._acquire(self._name)
        inst.pins += 1
        self._inst = inst
        return inst.model

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Never suspends, so a scope closed from sync code can release it too.
        inst, self._inst = self._inst, None
        if inst is not None:
            self._registry._unpin(inst)


def bind_model(
    container: Container, model_type: Any, name: str, *, registry: str | None = None
) -> None:
    """Register the model ``name`` of the container's ``ModelRegistry`` (the one bound
    under ``registry=``, when given) as ``model_type`` named ``name``, REQUEST-scoped:
    ``Inject[model_type, name]`` (or ``Annotated[model_type, Named(name)]``) gets the
    model, loaded on first use and held until the request's scope closes."""
    registry_hint: Any = (ModelRegistry if registry is None
                          else Annotated[ModelRegistry, Named(registry)])

    async def provide(models: ModelRegistry) -> AsyncIterator[Any]:
        async with models.use(name) as model:
            yield model

    # Real objects rather than the strings this module's annotations would be, so the
    # container reads the registry's (type, name) and the model's type from them.
    provide.__annotations__ = {"models": registry_hint,
                               "return": GenericAlias(AsyncIterator, (model_type,))}
    provide.__qualname__ = f"bind_model({type_name(model_type)}, {name!r})"
    container.bind(model_type, provide, scope=Scope.REQUEST, name=name)


def _failed(attempts: int, error: BaseException) -> str:
    tries = "attempt" if attempts == 1 else "attempts"
    return f"load failed after {attempts} {tries}: {describe_error(error)}"


def _retrieve(task: asyncio.Task[Any]) -> None:
    # Every waiter gets the error; this only keeps asyncio from logging it again when
    # all of them were cancelled before it came.
    if not task.cancelled():
        task.exception()
