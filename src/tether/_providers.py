"""What a registration can be, and what it needs: read once, never per call."""

from __future__ import annotations

import collections.abc as cabc
import functools
import inspect
import sys
import typing
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar, get_args, get_origin

from ._markers import split_annotation
from ._scope import Scope
from ._stats import Stats
from .exceptions import RegistrationError

T = TypeVar("T")

RESOURCE_FLAG = "__tether_resource__"


class Kind(IntEnum):
    VALUE = 0  # an object given at registration
    CLASS = 1  # a class, autowired from its __init__ hints
    FACTORY = 2  # def f(...) -> T
    ASYNC_FACTORY = 3  # async def f(...) -> T
    GENERATOR = 4  # def f(...) -> Iterator[T]: yield, then teardown
    ASYNC_GENERATOR = 5  # async def f(...) -> AsyncIterator[T]


@dataclass(slots=True, frozen=True)
class Param:
    """One parameter to fill, in signature order.

    Filled positionally while every earlier one was (a call with keywords costs a dict),
    by keyword after a parameter left to its default.
    """

    name: str
    key: Hashable | None  # None: no hint (only allowed with a default)
    has_default: bool
    positional: bool  # may be passed positionally
    keyword: bool = True  # may be passed by keyword


def resource(cls: type[T]) -> type[T]:
    """Mark a class whose instances have a lifecycle.

    tether calls ``initialize()`` after building it, ``dispose()`` when its scope
    ends and ``health_check()`` (when defined) for health reports; each may be sync
    or async.
    """
    if not isinstance(cls, type):
        raise RegistrationError(f"@resource decorates a class, not {cls!r}")
    if not any(callable(getattr(cls, m, None)) for m in ("initialize", "dispose")):
        raise RegistrationError(
            f"@resource class {cls.__qualname__} defines neither initialize() nor dispose(); "
            f"define at least one, or register it as a plain class."
        )
    setattr(cls, RESOURCE_FLAG, True)
    return cls


def is_resource(obj: object) -> bool:
    return bool(getattr(type(obj) if not isinstance(obj, type) else obj, RESOURCE_FLAG, False))


def display(key: Hashable) -> str:
    if isinstance(key, tuple):
        return f"{type_name(key[0])}[{key[1]}]"
    return type_name(key)


def type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


def make_key(tp: Any, name: str | None) -> Hashable:
    return tp if name is None else (tp, name)


@dataclass(slots=True, eq=False)
class Provider:
    """One registration."""

    key: Hashable
    provides: Any
    name: str | None
    kind: Kind
    target: Any
    scope: Scope
    eager: bool = False
    critical: bool = True
    health_check: Callable[[Any], Any] | None = None
    resource: bool = False  # instance has initialize()/dispose()
    lifecycle: type | None = None  # the @resource class whose methods those are
    cache_key: Hashable = None
    stats: Stats = field(default=None, repr=False)  # type: ignore[assignment]
    _params: tuple[Param, ...] | None = field(default=None, repr=False)

    @property
    def display(self) -> str:
        return display(self.key)

    @property
    def params(self) -> tuple[Param, ...]:
        if self._params is None:
            self._params = () if self.kind is Kind.VALUE else read_params(self.target)
        return self._params

    @property
    def has_teardown(self) -> bool:
        return self.resource or self.kind in (Kind.GENERATOR, Kind.ASYNC_GENERATOR)

    @property
    def has_initialize(self) -> bool:
        return self.resource and callable(getattr(self.lifecycle, "initialize", None))

    @property
    def own_async(self) -> bool:
        """Building it needs ``await`` whatever its dependencies are."""
        if self.kind in (Kind.ASYNC_FACTORY, Kind.ASYNC_GENERATOR):
            return True
        if self.resource:
            init = getattr(self.lifecycle, "initialize", None)
            return init is not None and inspect.iscoroutinefunction(init)
        return False

    @property
    def async_reason(self) -> str:
        if self.kind is Kind.ASYNC_FACTORY:
            return "it is built by an async factory"
        if self.kind is Kind.ASYNC_GENERATOR:
            return "it is built by an async generator"
        return "its initialize() is async"


def classify(target: Any) -> Kind:
    if isinstance(target, type):
        return Kind.CLASS
    if inspect.isasyncgenfunction(target):
        return Kind.ASYNC_GENERATOR
    if inspect.isgeneratorfunction(target):
        return Kind.GENERATOR
    if inspect.iscoroutinefunction(target):
        return Kind.ASYNC_FACTORY
    if isinstance(target, functools.partial):
        return Kind.ASYNC_FACTORY if inspect.iscoroutinefunction(target.func) else Kind.FACTORY
    if inspect.isfunction(target) or inspect.ismethod(target) or inspect.isbuiltin(target):
        return Kind.FACTORY
    return Kind.VALUE


_ITERATORS = {
    cabc.Iterator, cabc.Iterable, cabc.Generator,
    cabc.AsyncIterator, cabc.AsyncIterable, cabc.AsyncGenerator,
    cabc.Awaitable, cabc.Coroutine,
}


def provided_type(func: Callable[..., Any]) -> Any:
    """The type a factory provides, read from its return hint."""
    try:
        hints = _hints(func)
    except RegistrationError:
        raise
    ret = hints.get("return", inspect.Parameter.empty)
    where = getattr(func, "__qualname__", repr(func))
    if ret is inspect.Parameter.empty or ret is None or ret is type(None):
        raise RegistrationError(
            f"factory {where} has no return type hint, so tether cannot tell what it "
            f"provides. Hint: annotate it (-> MyType, or -> AsyncIterator[MyType] for a "
            f"generator) or pass provides=MyType."
        )
    kind = classify(func)
    if kind in (Kind.GENERATOR, Kind.ASYNC_GENERATOR) or get_origin(ret) in _ITERATORS:
        if get_origin(ret) not in _ITERATORS or not get_args(ret):
            raise RegistrationError(
                f"generator factory {where} must be annotated -> Iterator[T] or "
                f"-> AsyncIterator[T] (got {type_name(ret)})."
            )
        return get_args(ret)[0] if get_origin(ret) not in (cabc.Coroutine,) else get_args(ret)[-1]
    return ret


def lifecycle_of(kind: Kind, target: Any) -> type | None:
    """The ``@resource`` class whose ``initialize``/``dispose``/``health_check`` apply to
    what a registration builds: the class itself, a bound instance's class, or the class
    a plain factory's return hint names. None when there is none."""
    if kind is Kind.CLASS:
        owner = target
    elif kind is Kind.VALUE:
        owner = type(target)
    elif kind in (Kind.FACTORY, Kind.ASYNC_FACTORY):
        try:
            owner = provided_type(target)
        except RegistrationError:
            return None
    else:
        return None
    return owner if isinstance(owner, type) and is_resource(owner) else None


def _callable_for(target: Any) -> tuple[Any, Any] | None:
    """``(function, owner class)`` whose parameters describe ``target``, or None for none."""
    if isinstance(target, type):
        init = getattr(target, "__init__")  # noqa: B009
        if init is object.__init__:
            return None
        return init, target
    return target, None


def _hints(func: Any, owner: type | None = None) -> dict[str, Any]:
    raw = getattr(func, "__annotations__", None)
    if raw is None:
        return {}
    if not any(isinstance(v, str) for v in raw.values()):
        return dict(raw)
    module = sys.modules.get(getattr(owner or func, "__module__", ""), None)
    globalns = dict(getattr(func, "__globals__", {}))
    if module is not None:
        globalns.update(vars(module))
    localns = dict(vars(owner)) if owner is not None else {}
    if owner is not None:
        localns[owner.__name__] = owner
    try:
        return typing.get_type_hints(func, globalns, localns, include_extras=True)
    except Exception as exc:
        where = getattr(owner or func, "__qualname__", repr(func))
        raise RegistrationError(
            f"cannot read the type hints of {where}: {type(exc).__name__}: {exc}. "
            f"Hint: make every name used in its annotations importable from its module."
        ) from exc


def read_params(target: Any) -> tuple[Param, ...]:
    found = _callable_for(target)
    if found is None:
        return ()
    func, owner = found
    code = getattr(func, "__code__", None)
    if code is None:
        return _params_from_signature(target)
    hints = _hints(func, owner)
    names = code.co_varnames
    n_pos, n_posonly, n_kwonly = code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount
    defaults = func.__defaults__ or ()
    kwdefaults = func.__kwdefaults__ or {}
    first_default = n_pos - len(defaults)
    skip = 1 if owner is not None or inspect.ismethod(target) else 0
    params = []
    for i, pname in enumerate(names[: n_pos + n_kwonly]):
        if i < skip:
            continue
        has_default = (i >= first_default) if i < n_pos else pname in kwdefaults
        params.append(
            _param(pname, hints.get(pname), has_default, i < n_pos, i >= n_posonly, target)
        )
    return tuple(params)


def _params_from_signature(target: Any) -> tuple[Param, ...]:
    try:
        sig = inspect.signature(target, eval_str=True)
    except (TypeError, ValueError, NameError) as exc:
        raise RegistrationError(f"cannot read the parameters of {target!r}: {exc}") from exc
    params = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = None if p.annotation is p.empty else p.annotation
        params.append(_param(
            p.name, hint, p.default is not p.empty,
            p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD), p.kind is not p.POSITIONAL_ONLY,
            target,
        ))
    return tuple(params)


def _param(
    name: str, hint: Any, has_default: bool, positional: bool, keyword: bool, target: Any
) -> Param:
    if hint is None:
        if has_default:
            return Param(name, None, True, positional, keyword)
        where = getattr(target, "__qualname__", repr(target))
        raise RegistrationError(
            f"parameter {name!r} of {where} has no type hint, so tether cannot tell what to "
            f"inject. Hint: annotate it, or give it a default value."
        )
    tp, dep_name, _ = split_annotation(hint)
    return Param(name, make_key(tp, dep_name), has_default, positional, keyword)


def skipped_positional(display: str, param: Param) -> RegistrationError:
    return RegistrationError(
        f"parameter {param.name!r} of {display} is positional-only and comes after a "
        f"parameter left to its default, so tether cannot pass it. Hint: bind the earlier "
        f"parameter's type, or make {param.name!r} a regular parameter."
    )
