"""Cache keys for ``@cached``: the function's qualified name and its normalised arguments.

``f(1)``, ``f(x=1)`` and ``f(1, y=<default>)`` are one call, so one key: the arguments
arrive bound to the signature with defaults applied (the wrapper is generated with
the function's own signature). Each value is normalised to tagged JSON, so ``1``,
``1.0``, ``True`` and ``"1"`` give different keys while equal dicts, sets and tuples
written differently give one. A value of a type with no faithful normal form (an
arbitrary object, whose ``repr`` may carry its address) is refused with a hint to pass
``key=``, never keyed by ``repr``.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import hashlib
import inspect
import json
import math
import pathlib
import uuid
from collections.abc import Callable, Sequence
from typing import Any

_VERBATIM_LIMIT = 80  # longer argument lists are hashed
# Built once: json.dumps with options builds a new encoder at every call.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))

Values = tuple[Any, ...]

_TEXT_TYPES = (datetime.datetime, datetime.date, datetime.time, datetime.timedelta,
               decimal.Decimal, uuid.UUID, pathlib.PurePath)


def qualified_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


class KeyBuilder:
    """Builds the key of one call from the bound argument values."""

    __slots__ = ("_names", "_prefix", "_skip")

    def __init__(self, fn: Callable[..., Any], names: Sequence[str]) -> None:
        self._prefix = qualified_name(fn) + ":"
        self._names = tuple(names)
        # A method's self (or a classmethod's cls) does not take part in its keys.
        self._skip = 1 if names and names[0] in ("self", "cls") else 0

    def build(self, values: Values) -> str:
        parts = []
        for name, value in zip(self._names[self._skip:], values[self._skip:], strict=True):
            try:
                parts.append(normalise(value))
            except TypeError as error:
                raise TypeError(
                    f"@cached {self._prefix[:-1]}: cannot build a cache key from argument "
                    f"{name!r}: {error}. Hint: pass key=lambda ...: '...' naming what "
                    f"identifies the result."
                ) from None
        text = _JSON.encode(parts)
        if len(text) > _VERBATIM_LIMIT:
            text = "#" + hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
        return self._prefix + text

    def custom(self, text: object) -> str:
        if not isinstance(text, str):
            raise TypeError(f"@cached {self._prefix[:-1]}: key= must return a str, "
                            f"got {type(text).__name__}")
        return self._prefix + text


def normalise(value: Any) -> Any:
    """A JSON-ready form of ``value`` that two equal arguments share; TypeError when
    ``value``'s type has none."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int) and not isinstance(value, enum.Enum):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$f": repr(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$b": bytes(value).hex()}
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        pairs = [[normalise(k), normalise(v)] for k, v in value.items()]
        return {"$d": sorted(pairs, key=_sort_text)}
    if isinstance(value, set | frozenset):
        return {"$s": sorted((normalise(v) for v in value), key=_sort_text)}
    if isinstance(value, enum.Enum):
        return {"$e": _type_path(type(value)), "v": normalise(value.value)}
    if isinstance(value, _TEXT_TYPES):
        return {"$t": _type_path(type(value)), "v": str(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {"$c": _type_path(type(value)), "v": normalise(fields)}
    dump = getattr(value, "model_dump", None)
    if callable(dump) and hasattr(type(value), "model_fields"):  # a pydantic model
        return {"$m": _type_path(type(value)), "v": normalise(dump(mode="json"))}
    raise TypeError(f"a {_type_path(type(value))} has no stable normal form")


def _sort_text(value: Any) -> str:
    return _JSON.encode(value)


def _type_path(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def layout(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    return list(inspect.signature(fn).parameters.values())
