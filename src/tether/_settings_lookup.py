"""Dotted-key access through nested models, mappings and lists."""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from ._settings_errors import join_key


class SettingNotFound(KeyError):
    """No setting at a dotted key; the message names the keys that do exist there."""

    def __init__(self, key: str, parent: str = "", known: Sequence[str] = ()) -> None:
        super().__init__(key)  # args stay (key,), as for any KeyError
        self.key = key
        self.parent = parent
        self.known = list(known)

    def __str__(self) -> str:
        name = self.key.rpartition(".")[2] if self.parent else self.key.split(".")[0]
        close = difflib.get_close_matches(name, self.known, n=3)
        where = f"under {self.parent!r}" if self.parent else "at the top level"
        message = f"no setting {self.key!r}"
        if close:
            message += f"; did you mean {', '.join(repr(join_key(self.parent, c)) for c in close)}?"
        shown = ", ".join(self.known[:20]) + (", ..." if len(self.known) > 20 else "")
        return message + f" (keys {where}: {shown or 'none'})"


def child(container: Any, name: str) -> tuple[bool, Any]:
    if isinstance(container, BaseModel):
        if name in type(container).model_fields:
            return True, getattr(container, name)
        extra = container.__pydantic_extra__ or {}
        return (True, extra[name]) if name in extra else (False, None)
    if isinstance(container, Mapping):
        if name in container:
            return True, container[name]
        if name.isdigit() and int(name) in container:  # YAML's ``1: x`` has an int key
            return True, container[int(name)]
        return False, None
    if isinstance(container, list | tuple) and name.isdigit() and int(name) < len(container):
        return True, container[int(name)]
    return False, None


def items(container: BaseModel | Mapping[Any, Any]) -> list[tuple[str, Any]]:
    if isinstance(container, BaseModel):
        fields = [(name, getattr(container, name)) for name in type(container).model_fields]
        return fields + list((container.__pydantic_extra__ or {}).items())
    return [(str(key), value) for key, value in container.items()]


def names(container: Any) -> list[str]:
    if isinstance(container, BaseModel):
        return [*type(container).model_fields, *(container.__pydantic_extra__ or {})]
    if isinstance(container, Mapping):
        return [str(key) for key in container]
    if isinstance(container, list | tuple):
        return [str(index) for index in range(len(container))]
    return []


def lookup(root: Any, key: str) -> Any:
    """The value at ``key``; ``SettingNotFound`` (a KeyError) when there is none."""
    current = root
    path = ""
    for part in key.split("."):
        found, value = child(current, part)
        if not found:
            raise SettingNotFound(key, path, names(current))
        current = value
        path = join_key(path, part)
    return current


def flatten(root: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` for every leaf under ``root``: models and mappings are
    walked, anything else (lists and secrets included) is a leaf."""
    stack: list[tuple[str, Any]] = [(prefix, root)]
    while stack:
        key, value = stack.pop()
        children = items(value) if isinstance(value, BaseModel | Mapping) else []
        if children or (key == prefix and isinstance(value, BaseModel | Mapping)):
            stack.extend((join_key(key, name), item) for name, item in reversed(children))
        elif key:
            yield key, value
