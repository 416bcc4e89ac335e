"""``@cached``, ``invalidate``, ``cached_dependency`` and ``singleton_dependency``.

Each decorator returns a function generated with the decorated function's own
signature (names, kinds, defaults, annotations), not ``(*args, **kwargs)``: FastAPI,
``inspect.signature`` and the container's autowiring (which reads the code object)
see the real parameters, and the wrapper receives its arguments already bound, with
defaults applied, which is what the cache key is built from.
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from ._cache_base import Cache
from ._cache_codec import CachedError, SerializationError
from ._cache_config import MemoryCacheConfig
from ._cache_keys import KeyBuilder, Values, qualified_name
from ._cache_memory import MemoryCache, resolve_ttl

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
logger = logging.getLogger("tether.cache")

CacheLookup = Callable[[], "Cache | Awaitable[Cache]"]

_ATTRIBUTE = "__tether_cached__"


def cached(
    ttl: float | None = None,
    *,
    cache: Cache | CacheLookup | None = None,
    key: Callable[..., str] | None = None,
    cache_errors: tuple[type[Exception], ...] = (),
    max_size: int = 1024,
) -> Callable[[F], F]:
    """Cache what an async or sync function (or method) returns, per arguments.

    ``ttl``: seconds an entry lives (None: the cache's ``default_ttl``). ``cache``: a
    cache instance, a lookup called at each call (``lambda: container.aget(HybridCache)``),
    or None for a private ``MemoryCache(max_size=max_size)`` with no expiry besides
    ``ttl``. ``key``: a function of the same arguments returning the part of the key
    after the function's qualified name. ``cache_errors``: exception types whose
    raising is cached too (re-raised as a new instance built from the same args);
    other errors are never cached. A sync function needs a ``MemoryCache``.
    """
    ttl = resolve_ttl(ttl, None)
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, got {max_size}")
    for kind in cache_errors:
        if not (isinstance(kind, type) and issubclass(kind, Exception)):
            raise TypeError(f"cache_errors takes Exception subclasses, got {kind!r}")
    if cache is not None and not isinstance(cache, Cache) and \
            (isinstance(cache, type) or not callable(cache)):
        raise TypeError(
            f"@cached(cache=...) takes a cache instance or a lookup such as "
            f"lambda: container.aget(HybridCache), not {cache!r}"
        )

    def decorate(fn: F) -> F:
        if not callable(fn) or inspect.isgeneratorfunction(fn) or \
                inspect.isasyncgenfunction(fn):
            raise TypeError(f"@cached decorates functions that return a value, not {fn!r}")
        call = _Call(fn, cache, key, ttl, cache_errors, max_size)
        impl = call.run_async if call.is_async else call.run_sync
        wrapper = _forwarder(fn, impl, call.is_async)
        setattr(wrapper, _ATTRIBUTE, call)
        return cast(F, wrapper)

    return decorate


async def invalidate(fn: Callable[P, Any], /, *args: P.args, **kwargs: P.kwargs) -> bool:
    """Delete the entry ``@cached`` function ``fn`` stored for these arguments (for a
    method, call it on the bound method: ``await invalidate(repo.get_user, 42)``).
    True when the cache held one."""
    target: Any = fn
    if inspect.ismethod(fn):
        target, args = fn.__func__, (fn.__self__, *args)  # type: ignore[assignment]
    call = getattr(target, _ATTRIBUTE, None)
    if not isinstance(call, _Call):
        raise TypeError(f"invalidate() takes a function decorated with @cached, not {fn!r}")
    return await call.invalidate(args, kwargs)


def cached_dependency(ttl: float | None) -> Callable[[F], F]:
    """Serve a provider's value from memory for ``ttl`` seconds (None: for the life of
    the process), then compute it again.

    For DI providers (container factories, FastAPI dependencies). The value is keyed
    by the identity of the provider's arguments (the injected dependencies), so two
    containers with different dependencies get their own values. Concurrent first
    calls compute it once. Register it as ``Scope.TRANSIENT`` or ``Scope.REQUEST``: an
    APP registration would keep the first value for the container's whole life.
    Generators are refused: a cached value cannot run a teardown.
    """
    if ttl is not None:
        ttl = resolve_ttl(ttl, None)

    def decorate(fn: F) -> F:
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(
                f"cached_dependency cannot cache generator {qualified_name(fn)}: the values "
                f"it yields need their teardown. Hint: register it with Scope.APP or "
                f"Scope.SINGLETON instead."
            )
        provider = _Provider(fn, ttl)
        impl = provider.run_async if provider.is_async else provider.run_sync
        return cast(F, _forwarder(fn, impl, provider.is_async))

    return decorate


def singleton_dependency(fn: F) -> F:
    """A provider computed once per process: ``cached_dependency(ttl=None)``.

    Unlike ``Scope.SINGLETON`` (one instance shared by every container, torn down
    when the last container using it closes, replaceable by ``container.override``),
    this is a plain memo of the provider's return value: no teardown, and it
    outlives containers. Use it for values (settings, lookup tables), also behind
    FastAPI's ``Depends``; use ``Scope.SINGLETON`` for resources.
    """
    return cached_dependency(None)(fn)


# -- @cached -----------------------------------------------------------------------------


class _Call:
    """What one ``@cached`` function needs at each call."""

    def __init__(
        self, fn: Callable[..., Any], cache: Cache | CacheLookup | None,
        key: Callable[..., str] | None, ttl: float | None,
        cache_errors: tuple[type[Exception], ...], max_size: int,
    ) -> None:
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        self.params = list(inspect.signature(fn).parameters.values())
        self.invoke = _invoker(fn, self.params)
        self.keys = KeyBuilder(fn, [p.name for p in self.params])
        self.key_fn = key
        self.ttl = ttl
        self.cache_errors = cache_errors
        self.returns = _Returns(fn)
        self.cache: Cache | None = None  # a fixed cache, or None: ask lookup at each call
        self.lookup: CacheLookup = _no_lookup
        if cache is None:
            self.cache = MemoryCache(MemoryCacheConfig(
                name=f"cached:{qualified_name(fn)}", max_size=max_size, default_ttl=None,
            ))
        elif isinstance(cache, Cache):
            self.cache = cache
        else:
            self.lookup = cache
        if not self.is_async and self.cache is not None and \
                not isinstance(self.cache, MemoryCache):
            raise TypeError(self._sync_needs_memory(self.cache))

    # -- the calls -----------------------------------------------------------------------

    async def run_async(self, values: Values) -> Any:
        cache = await self._cache_async()
        key = self._key(values)
        serializes = cache.serializes
        raised: list[BaseException] = []

        async def load() -> Any:
            try:
                value = await self.invoke(values)
            except self.cache_errors as error:
                return self._record(error, raised)
            return self.returns.dump(value, cache) if serializes else value

        result = await cache.get_or_load(key, load, self.ttl)
        if isinstance(result, CachedError):
            if raised:
                raise raised[0]
            error = result.rebuild(self.cache_errors)
            if error is None:
                return await self.invoke(values)
            raise error
        if not serializes:
            return result
        try:
            return self.returns.load(result)
        except ValueError:  # the stored data no longer fits the return type: reload
            logger.info("%s: the cached value does not match the return type; reloading",
                        key)
            value = await self.invoke(values)
            await cache.set(key, self.returns.dump(value, cache), self.ttl)
            return value

    def run_sync(self, values: Values) -> Any:
        cache = self._cache_sync()
        key = self._key(values)
        raised: list[BaseException] = []

        def load() -> Any:
            try:
                return self.invoke(values)
            except self.cache_errors as error:
                return self._record(error, raised)

        result = cache.get_or_load_sync(key, load, self.ttl)
        if isinstance(result, CachedError):
            if raised:
                raise raised[0]
            error = result.rebuild(self.cache_errors)
            if error is None:
                return self.invoke(values)
            raise error
        return result

    async def invalidate(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        bound = inspect.signature(self.fn).bind(*args, **kwargs)
        bound.apply_defaults()
        values = tuple(bound.arguments[p.name] for p in self.params)
        cache = await self._cache_async() if self.is_async else self._cache_sync()
        return await cache.delete(self._key(values))

    # -- internals -----------------------------------------------------------------------

    def _key(self, values: Values) -> str:
        if self.key_fn is None:
            return self.keys.build(values)
        args, kwargs = _split(self.params, values)
        return self.keys.custom(self.key_fn(*args, **kwargs))

    def _record(self, error: Exception, raised: list[BaseException]) -> CachedError:
        record = CachedError.of(error)
        if record is None:
            raise error  # args that cannot be stored faithfully: not cached
        raised.append(error)
        return record

    async def _cache_async(self) -> Cache:
        if self.cache is not None:
            return self.cache
        found = self.lookup()
        if inspect.isawaitable(found):
            found = await found
        if not isinstance(found, Cache):
            raise TypeError(f"@cached {qualified_name(self.fn)}: the cache lookup returned "
                            f"{found!r}, not a cache")
        return found

    def _cache_sync(self) -> MemoryCache:
        found: Any = self.cache
        if found is None:
            found = self.lookup()
            if inspect.isawaitable(found):
                if inspect.iscoroutine(found):
                    found.close()
                raise TypeError(
                    f"@cached {qualified_name(self.fn)} is a sync function, so its cache "
                    f"lookup must be sync too (lambda: container.get(MemoryCache))"
                )
        if not isinstance(found, MemoryCache):
            raise TypeError(self._sync_needs_memory(found))
        return found

    def _sync_needs_memory(self, found: object) -> str:
        return (f"@cached {qualified_name(self.fn)} is a sync function, which can only use "
                f"a MemoryCache (Redis is reached with await), not {found!r}")


def _no_lookup() -> Cache:
    raise RuntimeError("this @cached function has a fixed cache")


class _Returns:
    """Converts a function's return values to plain data and back with pydantic, from
    its return annotation, so typed values (models, dataclasses, datetimes, tuples)
    survive a trip through JSON or msgpack. Without an annotation values pass as they
    are."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn
        self._adapter: Any = None
        self._ready = False

    def _get(self) -> Any:
        if not self._ready:
            self._adapter = _adapter_for(self._fn)
            self._ready = True
        return self._adapter

    def dump(self, value: Any, cache: Cache) -> Any:
        adapter = self._get()
        if adapter is None:
            return value
        try:
            return adapter.dump_python(value, mode="json", warnings="error")
        except Exception as error:
            raise SerializationError(
                cache.name, type(value).__name__,
                f"it does not match the return annotation of {qualified_name(self._fn)} "
                f"({type(error).__name__})",
            ) from error

    def load(self, data: Any) -> Any:
        adapter = self._get()
        return data if adapter is None else adapter.validate_python(data)


def _adapter_for(fn: Callable[..., Any]) -> Any:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        return None  # unresolvable annotations: values pass as they are
    returns = hints.get("return", Any)
    if returns is Any or returns is object:
        return None
    from pydantic import TypeAdapter

    try:
        return TypeAdapter(returns)
    except Exception:
        return None  # a type pydantic cannot describe: its values must be plain data


# -- cached_dependency -------------------------------------------------------------------


class _Provider:
    def __init__(self, fn: Callable[..., Any], ttl: float | None) -> None:
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        self.invoke = _invoker(fn, list(inspect.signature(fn).parameters.values()))
        self.ttl = ttl
        # Few keys: one per distinct set of injected dependencies (usually one).
        self.memo = MemoryCache(MemoryCacheConfig(
            name=f"dependency:{qualified_name(fn)}", max_size=64, default_ttl=ttl,
        ))

    async def run_async(self, values: Values) -> Any:
        async def load() -> tuple[Values, Any]:
            # The arguments ride along so their ids cannot be reused while cached.
            return values, await self.invoke(values)

        entry = await self.memo.get_or_load(_identity(values), load)
        return entry[1]

    def run_sync(self, values: Values) -> Any:
        entry = self.memo.get_or_load_sync(_identity(values),
                                           lambda: (values, self.invoke(values)))
        return entry[1]


def _identity(values: Values) -> str:
    return ",".join(str(id(v)) for v in values)


# -- the generated wrappers --------------------------------------------------------------


class _Name:
    """A default value shown by name in the generated source (``x=_d0``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def _forwarder(fn: Callable[..., Any], impl: Callable[[Values], Any], is_async: bool) -> Any:
    """A function with ``fn``'s signature whose body is ``return impl((a, b, ...))``:
    every parameter, bound and with its default applied, in signature order."""
    signature = inspect.signature(fn)
    namespace: dict[str, Any] = {"_tether_impl": impl}
    params = []
    for i, p in enumerate(signature.parameters.values()):
        if p.name.startswith("_tether_"):
            raise TypeError(f"cannot wrap {qualified_name(fn)}: parameter names starting "
                            f"with _tether_ are reserved")
        default: Any = p.empty
        if p.default is not p.empty:
            slot = f"_tether_default_{i}"
            namespace[slot] = p.default
            default = _Name(slot)
        params.append(p.replace(annotation=p.empty, default=default))
    names = [p.name for p in params]
    bare = signature.replace(parameters=params, return_annotation=signature.empty)
    values = "(" + "".join(f"{n}, " for n in names) + ")"
    body = f"return await _tether_impl({values})" if is_async else \
        f"return _tether_impl({values})"
    source = f"{'async ' if is_async else ''}def _tether_wrapper{bare}:\n    {body}\n"
    exec(compile(source, f"<tether.cache wrapper of {qualified_name(fn)}>", "exec"), namespace)
    wrapper = namespace["_tether_wrapper"]
    functools.update_wrapper(wrapper, fn)
    return wrapper


def _invoker(fn: Callable[..., Any], params: list[inspect.Parameter]) -> Callable[[Values], Any]:
    """Calls ``fn`` with the values the generated wrapper bound."""
    if all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        return lambda values: fn(*values)

    def invoke(values: Values) -> Any:
        args, kwargs = _split(params, values)
        return fn(*args, **kwargs)

    return invoke


def _split(params: list[inspect.Parameter], values: Values) -> tuple[list[Any], dict[str, Any]]:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for p, value in zip(params, values, strict=True):
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            args.append(value)
        elif p.kind is p.VAR_POSITIONAL:
            args.extend(value)
        elif p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            kwargs.update(value)
    return args, kwargs
