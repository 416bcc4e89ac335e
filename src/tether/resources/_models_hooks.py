"""How the model registry calls user code, sizes a model and frees accelerator memory.

Kept apart from ``models.py`` because none of it knows about the registry's state:
calling a sync hook in a worker thread (and handing back a result that arrives after
its caller gave up), estimating a model's memory, and asking PyTorch, only when the
process already imported it, to return cached CUDA memory to the driver.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import itertools
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, cast

logger = logging.getLogger("tether.resources.models")

# Where a model's own cleanup method is looked for, in this order.
CLOSE_METHODS = ("aclose", "close", "unload")

# How many items of a list, tuple or dict attribute the memory estimate looks at.
_CONTAINER_ITEMS = 1024


def is_async(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns a coroutine (``async def``, a partial of one, or
    an object whose ``__call__`` is ``async def``)."""
    if inspect.iscoroutinefunction(fn):
        return True
    # A class is called to build an instance, whatever its instances' __call__ is.
    return not isinstance(fn, type) and inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - the method itself is inspected
    )


async def call_hook(
    fn: Callable[..., Any], *args: Any, on_late: Callable[[Any], None] | None = None
) -> Any:
    """Await ``fn(*args)``: an async callable on the loop, a sync one in a worker thread
    so a slow load or prediction never blocks the event loop.

    A thread cannot be stopped. When the caller stops waiting (a timeout, a
    cancellation) and the sync call still returns later, ``on_late`` receives that
    result in the worker thread, so a model loaded after its caller gave up can still
    be disposed. A sync callable that returns an awaitable has it awaited here.
    """
    if is_async(fn):
        return await fn(*args)
    result = await _in_thread(fn, args, on_late)
    if inspect.isawaitable(result):
        result = await result
    return result


class _Handoff:
    """Who owns a worker thread's result: the waiting coroutine, or ``on_late``."""

    __slots__ = ("abandoned", "delivered", "lock", "result")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.abandoned = False
        self.delivered = False
        self.result: Any = None


async def _in_thread(
    fn: Callable[..., Any], args: tuple[Any, ...], on_late: Callable[[Any], None] | None
) -> Any:
    handoff = _Handoff()
    context = contextvars.copy_context()

    def work() -> Any:
        result = context.run(fn, *args)
        with handoff.lock:
            late = handoff.abandoned
            if not late:
                handoff.delivered = True
                handoff.result = result
        if late and on_late is not None:
            on_late(result)
        return result

    try:
        return await asyncio.get_running_loop().run_in_executor(None, work)
    except asyncio.CancelledError:
        with handoff.lock:
            handoff.abandoned = True
            delivered, result = handoff.delivered, handoff.result
        # The thread finished in the same instant the caller gave up: its result went
        # to a cancelled future, so pass it on here instead.
        if delivered and on_late is not None:
            on_late(result)
        raise
    finally:
        handoff.result = None


def close_method(model: Any) -> Callable[[], Any] | None:
    """The model's own cleanup method (``aclose``, ``close`` or ``unload``), if any."""
    for name in CLOSE_METHODS:
        method = getattr(model, name, None)
        if callable(method):
            return cast("Callable[[], Any]", method)
    return None


def estimate_bytes(model: Any, size: Callable[[Any], int] | None) -> int:
    """An estimate of the memory ``model`` holds, in bytes.

    ``size(model)`` when given. Otherwise the arrays the model holds, looked for
    shallowly: the model itself, its attributes, and the first 1024 values of
    attributes that are lists, tuples or dicts (NumPy ``nbytes``; a PyTorch module's parameters and
    buffers, or a tensor's storage). With none found, ``sys.getsizeof(model)``, which
    counts the object alone. It is an estimate: shared arrays count once per model,
    and memory that native code holds outside such arrays is not seen.
    """
    if size is not None:
        try:
            return max(0, int(size(model)))
        except Exception:
            logger.warning("size() of a model raised; estimating its memory instead",
                           exc_info=True)
    found = _array_bytes(model)
    if found is None:
        found = sum(_array_bytes(value) or 0 for value in _shallow_values(model))
    return found or sys.getsizeof(model)


def _shallow_values(model: Any) -> list[Any]:
    values: list[Any] = []
    attributes = dict(getattr(model, "__dict__", {}))
    for slot in getattr(type(model), "__slots__", ()):
        if isinstance(slot, str) and hasattr(model, slot):
            attributes[slot] = getattr(model, slot)
    if isinstance(model, Mapping):
        attributes.update({str(k): v for k, v in model.items()})
    for value in attributes.values():
        values.append(value)
        # One level into containers, and only so far: the estimate runs on the event loop.
        if isinstance(value, list | tuple):
            values.extend(value[:_CONTAINER_ITEMS])
        elif isinstance(value, Mapping):
            values.extend(itertools.islice(value.values(), _CONTAINER_ITEMS))
    return values


def _array_bytes(value: Any) -> int | None:
    """Bytes of an array-like ``value``, or None when it is not one. Only looks at
    libraries the process already imported, so it never imports one."""
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.ndarray):
        return int(value.nbytes)
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(value, torch.Tensor):
            return int(value.element_size() * value.nelement())
        if isinstance(value, torch.nn.Module):
            tensors = [*value.parameters(), *value.buffers()]
            return sum(int(t.element_size() * t.nelement()) for t in tensors)
    return None


def accelerator_in_use() -> bool:
    """Whether this process has CUDA memory that PyTorch may be caching.

    Reads ``sys.modules`` rather than importing: a model that holds CUDA tensors
    means torch is already imported, and importing torch only to find out would cost
    seconds and hundreds of megabytes in a process that never used it.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    is_initialized = getattr(getattr(torch, "cuda", None), "is_initialized", None)
    return callable(is_initialized) and bool(is_initialized())


def free_accelerator_memory() -> None:
    """Collect reference cycles (a model's tensors may sit in one), then return the
    CUDA memory PyTorch's caching allocator keeps to the driver, on every device.

    Runs in a worker thread after the model's last reference was dropped.
    """
    gc.collect()
    torch = sys.modules["torch"]
    for device in range(torch.cuda.device_count()):
        with torch.cuda.device(device):
            torch.cuda.empty_cache()
