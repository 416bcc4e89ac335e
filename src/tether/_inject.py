"""``@container.inject``: fill ``Inject[T]`` parameters of any function."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._markers import split_annotation
from ._providers import _hints
from .exceptions import RegistrationError

if TYPE_CHECKING:
    from ._container import Container

F = TypeVar("F", bound=Callable[..., Any])


def injected_params(func: Callable[..., Any]) -> list[tuple[str, Any, str | None]]:
    """``(parameter, type, name)`` for each parameter marked ``Inject``."""
    hints = _hints(func)
    found = []
    for pname, hint in hints.items():
        if pname == "return":
            continue
        tp, name, marked = split_annotation(hint)
        if marked:
            found.append((pname, tp, name))
    return found


def inject(container: Container, func: F) -> F:
    """Each call runs in a REQUEST scope of its own, closed when the call returns."""
    wanted = injected_params(func)
    if not wanted:
        raise RegistrationError(
            f"{getattr(func, '__qualname__', func)} has no Inject[...] parameter, so "
            f"@container.inject has nothing to do. Hint: annotate parameters as Inject[T]."
        )
    sig = inspect.signature(func)
    # What the caller sees: the function without the injected parameters.
    public = sig.replace(
        parameters=[p for p in sig.parameters.values() if p.name not in {w[0] for w in wanted}]
    )

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            async with container.scope() as scope:
                for pname, tp, name in wanted:
                    if pname not in kwargs:
                        kwargs[pname] = await scope.aget(tp, name)
                return await func(*args, **kwargs)

        async_wrapper.__signature__ = public  # type: ignore[attr-defined]
        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with container.scope() as scope:
            for pname, tp, name in wanted:
                if pname not in kwargs:
                    kwargs[pname] = scope.get(tp, name)
            return func(*args, **kwargs)

    wrapper.__signature__ = public  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
