"""Rules by dotted key, checked on the merged input before the model validates it."""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr, TypeAdapter, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from ._settings_errors import RULE_FAILED, RULE_MISSING


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET = _Unset.UNSET


@dataclass(frozen=True, slots=True)
class Rule:
    """What one dotted key must hold, for keys no model types (or on top of the model).

    - ``type``: the value is converted to it the way pydantic converts (``"5"`` -> 5 for
      ``int``), or the load fails with "should be of type int";
    - ``required``: the key must be set (``None`` counts as not set);
    - ``pattern``: a string value must contain a match (``re.search``; anchor it with
      ``^...$`` to match the whole value);
    - ``min_length``: the value (string, list, mapping) has at least that many items;
    - ``default``: the value used when the key is not set; it is checked like any other.
    """

    type: Any = None
    required: bool = False
    pattern: str | None = None
    min_length: int | None = None
    default: Any = UNSET
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _adapter: TypeAdapter[Any] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.min_length is not None and self.min_length < 0:
            raise ValueError(f"Rule(min_length=...) must be 0 or more, got {self.min_length}")
        try:
            regex = re.compile(self.pattern) if self.pattern is not None else None
        except re.error as err:
            message = f"Rule(pattern={self.pattern!r}) is not a valid regex: {err}"
            raise ValueError(message) from None
        object.__setattr__(self, "_regex", regex)
        adapter = TypeAdapter(self.type) if self.type is not None else None
        object.__setattr__(self, "_adapter", adapter)

    def check(self, value: Any) -> tuple[Any, str | None]:
        """``(value converted to the rule's type, None)`` or ``(value, what was expected)``."""
        if self._adapter is not None:
            try:
                value = self._adapter.validate_python(value)
            except ValidationError:
                return value, f"should be of type {_type_name(self.type)}"
        text = _text(value)
        if self._regex is not None and (text is None or self._regex.search(text) is None):
            return value, f"should be text matching the pattern {self.pattern!r}"
        if self.min_length is not None:
            size = _length(value, text)
            if size is None or size < self.min_length:
                return value, f"should have a length of at least {self.min_length}"
        return value, None


def _type_name(tp: Any) -> str:
    return tp.__name__ if isinstance(tp, type) else repr(tp)


def _text(value: Any) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value if isinstance(value, str) else None


def _length(value: Any, text: str | None) -> int | None:
    if text is not None:
        return len(text)
    if isinstance(value, SecretBytes):
        return len(value.get_secret_value())
    if isinstance(value, Mapping | list | tuple | set | bytes):
        return len(value)
    return None


def apply_rules(
    data: dict[str, Any], rules: Mapping[str, Rule]
) -> tuple[dict[str, Any], list[InitErrorDetails]]:
    """``data`` with defaults filled in and values converted, and one error per broken rule.

    ``data`` itself is never changed: a dict on the way to a written key is copied once
    (its values may be the caller's own objects), so the cost stays linear.
    """
    writer = _Writer(data)
    errors: list[InitErrorDetails] = []
    for key, rule in rules.items():
        parts = key.split(".")
        value = _get(writer.root, parts)
        if value is None:
            if rule.default is not UNSET:
                value = rule.default
            elif rule.required:
                errors.append(_error(parts, "a value is required", RULE_MISSING))
                continue
            else:
                continue
        converted, problem = rule.check(value)
        if problem is not None:
            errors.append(_error(parts, problem))
        elif converted is not _get(writer.root, parts):
            writer.put(parts, converted)
    return writer.root, errors


def _error(parts: Sequence[str], message: str, kind: str = RULE_FAILED) -> InitErrorDetails:
    # No context: the message is used as written, braces of a regex included.
    error = PydanticCustomError(kind, message)
    return InitErrorDetails(type=error, loc=tuple(parts), input=None)


def _get(root: Any, parts: Sequence[str]) -> Any:
    current = root
    for part in parts:
        if isinstance(current, Mapping):
            current = current.get(part)
        elif isinstance(current, list | tuple) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        elif isinstance(current, BaseModel) and part in type(current).model_fields:
            current = getattr(current, part)
        else:
            return None
    return current


class _Writer:
    """Copy-on-write over nested dicts: each dict is copied at most once."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = dict(root)
        self._copied = {id(self.root)}

    def put(self, parts: Sequence[str], value: Any) -> None:
        current = self.root
        for part in parts[:-1]:
            child = current.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                return  # a model instance or list given whole: nothing to write into
            if id(child) not in self._copied:
                child = dict(child)
                self._copied.add(id(child))
            current[part] = child
            current = child
        current[parts[-1]] = value
