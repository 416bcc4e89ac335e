"""Building instances: the plain path every registration starts on.

``_compile`` turns a registration that is resolved again and again into generated
code with the same steps; this module is the reference for what those steps are.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ._providers import Kind, Param, Provider, skipped_positional
from ._scope import Scope
from .exceptions import (
    AsyncRequired,
    ClosedError,
    DependencyNotFound,
    ResolutionError,
    ResourceInitError,
    ScopeMismatch,
    TetherError,
)

if TYPE_CHECKING:
    from ._active import ActiveScope
    from ._registry import Registry

MISS: Any = object()
TRANSIENT = Scope.TRANSIENT

# Exit entries: (what, object, provider).
EXIT_GEN, EXIT_AGEN, EXIT_RESOURCE = 0, 1, 2

_PASS_THROUGH = (TetherError, asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)


def init_error(p: Provider, error: BaseException, scope: ActiveScope | None) -> BaseException:
    """The error a caller sees when building ``p`` raised ``error``."""
    if not isinstance(error, asyncio.CancelledError):
        p.stats.failure(error)
    if isinstance(error, _PASS_THROUGH):
        if isinstance(error, ResolutionError):
            error.chain = ((p.display, p.scope), *error.chain)
        return error
    return ResourceInitError(p.display, ((p.display, p.scope),), error=error)


def prepend(error: ResolutionError, p: Provider) -> None:
    if not error.chain or error.chain[0][0] != p.display:
        error.chain = ((p.display, p.scope), *error.chain)


def not_found(reg: Registry, key: Hashable, needed_by: Provider | None) -> DependencyNotFound:
    from ._providers import display

    tp = key[0] if isinstance(key, tuple) else key
    available = [display(k) for k in reg.providers if (k[0] if isinstance(k, tuple) else k) == tp]
    chain = ((needed_by.display, needed_by.scope),) if needed_by else ()
    return DependencyNotFound(
        display(key), chain, needed_by=needed_by.display if needed_by else None, available=available
    )


def mismatch(p: Provider, scope: ActiveScope) -> ScopeMismatch:
    return ScopeMismatch(p.display, ((p.display, p.scope),), scope=p.scope, current=scope.kind)


# ---------------------------------------------------------------------------- sync


def build_sync(reg: Registry, p: Provider, scope: ActiveScope, holder: ActiveScope) -> Any:
    if p.scope is TRANSIENT:
        return create_sync(reg, p, scope, holder)
    owner = scope._chain[p.scope]
    if owner is None:
        raise mismatch(p, scope)
    cache = owner._cache
    value = cache.get(p.cache_key, MISS)
    if value is not MISS:
        return value
    if owner._closed:
        raise ClosedError(owner.describe())
    if p.cache_key in owner._pending:
        raise AsyncRequired(p.display, ((p.display, p.scope),),
                            because="it is being built asynchronously right now")
    with owner._lock:
        value = cache.get(p.cache_key, MISS)
        if value is MISS:
            value = create_sync(reg, p, scope, owner)
            cache[p.cache_key] = value
    return value


def arguments_sync(
    reg: Registry, p: Provider, scope: ActiveScope, holder: ActiveScope
) -> tuple[list[Any], dict[str, Any]]:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for param in p.params:
        dep = reg.providers.get(param.key) if param.key is not None else None
        if dep is None:
            if param.has_default:
                kwargs[_SKIPPED] = None
                continue
            raise not_found(reg, param.key, p)
        place(p, param, build_sync(reg, dep, scope, holder), args, kwargs)
    kwargs.pop(_SKIPPED, None)
    return args, kwargs


_SKIPPED = " skipped"  # a key no parameter can have: later parameters go by keyword


def place(p: Provider, param: Param, value: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    if param.positional and not kwargs:
        args.append(value)
    elif param.keyword:
        kwargs[param.name] = value
    else:
        raise skipped_positional(p.display, param)


def create_sync(reg: Registry, p: Provider, scope: ActiveScope, holder: ActiveScope) -> Any:
    mark = len(holder._exits)
    try:
        args, kwargs = arguments_sync(reg, p, scope, holder)
        if p.own_async:
            raise AsyncRequired(p.display, ((p.display, p.scope),), because=p.async_reason)
        started = perf_counter()
        kind = p.kind
        if kind is Kind.VALUE:
            value = p.target
            if p.has_initialize:
                value.initialize()
        elif kind is Kind.GENERATOR:
            gen = p.target(*args, **kwargs)
            try:
                value = next(gen)
            except StopIteration:
                raise RuntimeError(f"generator {p.target.__qualname__} did not yield") from None
            holder._exits.append((EXIT_GEN, gen, p))
        else:
            value = p.target(*args, **kwargs)
            if p.has_initialize:
                value.initialize()
    except ResolutionError as error:
        prepend(error, p)
        unwind_sync(holder, mark)
        raise
    except BaseException as error:
        unwind_sync(holder, mark)
        wrapped = init_error(p, error, scope)
        if wrapped is error:
            raise
        raise wrapped from error
    if p.resource:
        holder._exits.append((EXIT_RESOURCE, value, p))
    p.stats.made(started)
    return value


def unwind_sync(holder: ActiveScope, mark: int) -> None:
    """Dispose what was built for a registration whose own build then failed."""
    if len(holder._exits) > mark:
        from ._teardown import report_unwind, run_sync

        entries = _take_transients(holder, mark)
        report_unwind(run_sync(entries, None))


def _take_transients(holder: ActiveScope, mark: int) -> list[Any]:
    """Teardowns of TRANSIENT instances built since ``mark``: nothing else holds them.
    Cached instances built meanwhile stay in their scope."""
    later = holder._exits[mark:]
    del holder._exits[mark:]
    taken: list[Any] = []
    for entry in later:
        (taken if entry[2].scope is TRANSIENT else holder._exits).append(entry)
    return taken


# --------------------------------------------------------------------------- async


async def build_async(reg: Registry, p: Provider, scope: ActiveScope, holder: ActiveScope) -> Any:
    if p.scope is TRANSIENT:
        return await create_async(reg, p, scope, holder)
    owner = scope._chain[p.scope]
    if owner is None:
        raise mismatch(p, scope)
    cache = owner._cache
    key = p.cache_key
    while True:
        value = cache.get(key, MISS)
        if value is not MISS:
            return value
        if owner._closed:
            raise ClosedError(owner.describe())
        pending = owner._pending
        if key not in pending:
            break
        await wait_pending(owner, key)
    if p.scope <= Scope.SESSION:
        reg.bind_loop()
    pending[key] = None
    outcome: BaseException | None = None
    try:
        value = await create_async(reg, p, scope, owner)
        cache[key] = value
        return value
    except BaseException as error:
        outcome = error
        raise
    finally:
        waiter = pending.pop(key, None)
        if waiter is not None:
            settle(waiter, outcome)


def settle(waiter: asyncio.Future[BaseException | None], outcome: BaseException | None) -> None:
    # Waiters re-read the cache; on failure they raise the same error; when the builder
    # was cancelled the next waiter builds instead.
    if isinstance(outcome, asyncio.CancelledError):
        outcome = None
    waiter.set_result(outcome)


async def wait_pending(owner: ActiveScope, key: Hashable) -> None:
    waiter = owner._pending[key]
    if waiter is None:
        waiter = owner._pending[key] = asyncio.get_running_loop().create_future()
    # shield: a cancelled waiter must not cancel the future the others wait on.
    error = await asyncio.shield(waiter)
    if error is not None:
        raise error


async def arguments_async(
    reg: Registry, p: Provider, scope: ActiveScope, holder: ActiveScope
) -> tuple[list[Any], dict[str, Any]]:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for param in p.params:
        dep = reg.providers.get(param.key) if param.key is not None else None
        if dep is None:
            if param.has_default:
                kwargs[_SKIPPED] = None
                continue
            raise not_found(reg, param.key, p)
        if reg.needs_async(dep):
            value = await build_async(reg, dep, scope, holder)
        else:
            value = build_sync(reg, dep, scope, holder)
        place(p, param, value, args, kwargs)
    kwargs.pop(_SKIPPED, None)
    return args, kwargs


async def create_async(reg: Registry, p: Provider, scope: ActiveScope, holder: ActiveScope) -> Any:
    if not reg.needs_async(p):
        return create_sync(reg, p, scope, holder)
    mark = len(holder._exits)
    try:
        args, kwargs = await arguments_async(reg, p, scope, holder)
        started = perf_counter()
        kind = p.kind
        if kind is Kind.VALUE:
            value = p.target
            if p.has_initialize:
                result = value.initialize()
                if p.own_async:
                    await result
        elif kind is Kind.ASYNC_FACTORY:
            value = await p.target(*args, **kwargs)
            if p.has_initialize:
                result = value.initialize()
                if p.own_async:
                    await result
        elif kind is Kind.ASYNC_GENERATOR:
            agen = p.target(*args, **kwargs)
            try:
                value = await agen.__anext__()
            except StopAsyncIteration:
                raise RuntimeError(f"generator {p.target.__qualname__} did not yield") from None
            holder._exits.append((EXIT_AGEN, agen, p))
        elif kind is Kind.GENERATOR:
            gen = p.target(*args, **kwargs)
            try:
                value = next(gen)
            except StopIteration:
                raise RuntimeError(f"generator {p.target.__qualname__} did not yield") from None
            holder._exits.append((EXIT_GEN, gen, p))
        else:
            value = p.target(*args, **kwargs)
            if p.has_initialize:
                result = value.initialize()
                if p.own_async:
                    await result
    except ResolutionError as error:
        prepend(error, p)
        await unwind_async(holder, mark)
        raise
    except BaseException as error:
        await unwind_async(holder, mark)
        wrapped = init_error(p, error, scope)
        if wrapped is error:
            raise
        raise wrapped from error
    if p.resource:
        holder._exits.append((EXIT_RESOURCE, value, p))
    p.stats.made(started)
    return value


async def unwind_async(holder: ActiveScope, mark: int) -> None:
    if len(holder._exits) > mark:
        from ._teardown import report_unwind, run_async

        entries = _take_transients(holder, mark)
        errors, _ = await run_async(entries, None, holder._registry.dispose_timeout)
        report_unwind(errors)
