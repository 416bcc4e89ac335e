"""One config file (YAML, TOML or JSON) read into a mapping, with the line of each key.

YAML is composed into nodes by PyYAML's ``SafeLoader`` and checked before anything is
constructed: a tag the safe loader does not know (``!!python/object/apply:os.system``)
is refused with its key and line, and so is a key given twice. The node marks give
exact lines. TOML and JSON parsers keep no positions, so their lines come from one
linear scan of the text: exact for ordinary files, the nearest enclosing key otherwise.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from json.decoder import scanstring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ._settings_errors import SettingsError, SettingsProblem, join_key, problems_from_validation

M = TypeVar("M", bound=BaseModel)

_FORMATS = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}


@dataclass(frozen=True, slots=True, repr=False)
class ConfigFile:
    """A parsed config file: ``data`` (the top-level mapping) and ``lines`` (dotted key
    -> 1-based line of that key; list items are ``key.0``, ``key.1``...)."""

    path: Path
    data: dict[str, Any]
    lines: Mapping[str, int]

    def line_of(self, key: str) -> int | None:
        """The line of ``key``, or of its nearest parent the file has; None when neither."""
        while True:
            line = self.lines.get(key)
            if line is not None or "." not in key:
                return line
            key = key.rpartition(".")[0]

    def where(self, key: str) -> str:
        """``path:line`` for ``key`` (the path alone when no line is known)."""
        line = self.line_of(key)
        return str(self.path) if line is None else f"{self.path}:{line}"

    def validate(self, model: type[M], key: str = "") -> M:
        """The mapping at ``key`` (the whole file when empty) validated by ``model``.

        A failure raises ``SettingsError`` naming each bad key with this file and line.
        """
        found, raw = _find(self.data, key)
        if not found or not isinstance(raw, Mapping):
            expected = "should be a mapping of keys" + ("" if found else " (the key is missing)")
            raise SettingsError([_problem(self, key, expected)])
        try:
            return model.model_validate(raw)
        except ValidationError as err:
            problems = problems_from_validation(
                err, raw, lambda k: (str(self.path), self.line_of(k)), model=model, prefix=key
            )
            raise SettingsError(problems) from None

    def __repr__(self) -> str:
        # Never the data: it may hold secrets.
        return f"ConfigFile({str(self.path)!r}, keys={len(self.lines)})"


def _problem(file: ConfigFile, key: str, expected: str) -> SettingsProblem:
    return SettingsProblem(key, str(file.path), expected, file.line_of(key) if key else None)


def _find(data: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    current: Any = data
    for part in key.split(".") if key else ():
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current


def load_file(path: str | os.PathLike[str]) -> ConfigFile:
    """Read a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file into a ``ConfigFile``.

    Raises ``SettingsError`` naming the file (and the line, and the key where there is
    one) when the file is missing, unreadable, not valid for its format, not a mapping
    at the top, or, for YAML, uses a tag beyond plain data or repeats a key.
    """
    file = Path(path)
    kind = _FORMATS.get(file.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(_FORMATS))
        expected = f"should be a config file ending in {known}"
        raise SettingsError([SettingsProblem("", str(file), expected)])
    text = _read(file)
    data, lines = {"yaml": _parse_yaml, "toml": _parse_toml, "json": _parse_json}[kind](file, text)
    if not isinstance(data, dict):
        expected = f"should be a mapping of keys at the top level, not {_kind_of(data)}"
        raise SettingsError([SettingsProblem("", str(file), expected, 1)])
    return ConfigFile(file, data, lines)


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        expected = "should be an existing file (not found)"
    except UnicodeDecodeError as err:
        expected = f"should be UTF-8 text (byte {err.start} is not)"
    except OSError as err:
        expected = f"should be a readable file ({err.strerror or type(err).__name__})"
    raise SettingsError([SettingsProblem("", str(file), expected)])


def _kind_of(value: object) -> str:
    if isinstance(value, list):
        return "a list"
    return "a string" if isinstance(value, str) else type(value).__name__


# -- YAML ----------------------------------------------------------------------------

_MERGE_TAG = "tag:yaml.org,2002:merge"
# libyaml's parser when PyYAML was built with it (several times faster on big files);
# the constructors, and so what is refused, are the safe loader's either way.
_Loader: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = (
    yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
)


def _parse_yaml(file: Path, text: str) -> tuple[Any, dict[str, int]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}, {}
        lines = _index_yaml(file, node)
        return loader.construct_document(node), lines
    except yaml.MarkedYAMLError as err:
        # str(err) quotes the offending line, which may hold a secret: rebuilt here.
        mark = err.problem_mark or err.context_mark
        what = " ".join(part for part in (err.context, err.problem) if part) or "a syntax error"
        start = err.context_mark
        if start is not None and mark is not None and start.line != mark.line:
            what += f" (what it was scanning starts on line {start.line + 1})"
        line = mark.line + 1 if mark is not None else None
        problem = SettingsProblem("", str(file), f"should be valid YAML: {what}", line)
        raise SettingsError([problem]) from None
    except yaml.YAMLError as err:
        problem = SettingsProblem("", str(file), f"should be valid YAML: {err}")
        raise SettingsError([problem]) from None
    finally:
        loader.dispose()


def _index_yaml(file: Path, root: yaml.Node) -> dict[str, int]:
    """Lines of every key, walking the node tree once; refuses unsafe tags and repeats."""
    lines: dict[str, int] = {}
    problems: list[SettingsProblem] = []
    seen: set[int] = set()  # an alias is the same node again: walk it once
    stack: list[tuple[str, yaml.Node]] = [("", root)]
    while stack:
        key, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        line = node.start_mark.line + 1
        if node.tag not in yaml.SafeLoader.yaml_constructors:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            problems.append(
                SettingsProblem(
                    key,
                    str(file),
                    f"should be plain YAML data: the tag {tag!r} is refused "
                    f"(only the safe loader's types are allowed)",
                    line,
                )
            )
            continue
        if isinstance(node, yaml.MappingNode):
            stack.extend(_yaml_entries(file, key, node, lines, problems))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = join_key(key, index)
                lines.setdefault(child, item.start_mark.line + 1)
                stack.append((child, item))
    if problems:
        problems.sort(key=lambda p: p.line or 0)
        raise SettingsError(problems)
    return lines


def _yaml_entries(
    file: Path,
    key: str,
    node: yaml.MappingNode,
    lines: dict[str, int],
    problems: list[SettingsProblem],
) -> list[tuple[str, yaml.Node]]:
    children: list[tuple[str, yaml.Node]] = []
    first: dict[str, int] = {}
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:  # ``<<: *defaults``: keys found at the anchor
            merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            children.extend((key, item) for item in merged)
            continue
        name = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
        child = join_key(key, name)
        line = key_node.start_mark.line + 1
        if name in first:
            expected = f"a key should appear once; {name!r} is also on line {first[name]}"
            problems.append(SettingsProblem(child, str(file), expected, line))
            continue
        first[name] = line
        lines.setdefault(child, line)
        children.append((child, key_node))
        children.append((child, value_node))
    return children


# -- TOML ----------------------------------------------------------------------------

_TOML_AT = re.compile(r"\(at line (\d+), column \d+\)")
_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _parse_toml(file: Path, text: str) -> tuple[Any, dict[str, int]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        at = _TOML_AT.search(message)
        what = _TOML_AT.sub("", message).strip()
        line = int(at.group(1)) if at else None
        problem = SettingsProblem("", str(file), f"should be valid TOML: {what}", line)
        raise SettingsError([problem]) from None
    return data, _toml_lines(text)


def _toml_lines(text: str) -> dict[str, int]:
    lines: dict[str, int] = {}
    table = ""
    counts: dict[str, int] = {}  # items seen so far in each array of tables
    multiline: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if multiline is not None:
            if multiline in line:
                multiline = None
            continue
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            table = _toml_header(line, table, counts, lines, number)
            continue
        name, equals, value = line.partition("=")
        dotted = _toml_key(name) if equals else None
        if dotted is None:
            continue
        lines.setdefault(join_key(table, dotted), number)
        value = value.strip()
        for quote in ('"""', "'''"):
            if value.startswith(quote) and value.count(quote) == 1:
                multiline = quote
    return lines


def _toml_header(
    line: str, table: str, counts: dict[str, int], lines: dict[str, int], number: int
) -> str:
    array = line.startswith("[[")
    end = line.find("]]" if array else "]")
    name = _toml_key(line[2 if array else 1 : end]) if end > 0 else None
    if name is None:
        return table  # a line of a multi-line array, not a header
    lines.setdefault(name, number)
    if not array:
        return name
    index = counts.get(name, -1) + 1
    for nested in [k for k in counts if k.startswith(name + ".")]:
        del counts[nested]  # a new item starts its own nested arrays
    counts[name] = index
    item = f"{name}.{index}"
    lines.setdefault(item, number)
    return item


def _toml_key(text: str) -> str | None:
    """``a."b.c".d`` -> ``a.b.c.d``; None when ``text`` is not a TOML key."""
    parts = []
    rest = text.strip()
    while rest:
        if rest[0] in "\"'":
            end = rest.find(rest[0], 1)
            if end < 0:
                return None
            parts.append(rest[1:end])
            rest = rest[end + 1 :].strip()
        else:
            match = _BARE.match(rest)
            if match is None:
                return None
            parts.append(match.group())
            rest = rest[match.end() :].strip()
        if rest.startswith("."):
            rest = rest[1:].strip()
        elif rest:
            return None
    return ".".join(parts) if parts else None


# -- JSON ----------------------------------------------------------------------------


def _parse_json(file: Path, text: str) -> tuple[Any, dict[str, int]]:
    if not text.strip():
        return {}, {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        problem = SettingsProblem("", str(file), f"should be valid JSON: {err.msg}", err.lineno)
        raise SettingsError([problem]) from None
    return data, _json_lines(text)


class _Frame:
    __slots__ = ("expect_key", "index", "is_object", "key", "path")

    def __init__(self, path: str, is_object: bool) -> None:
        self.path = path
        self.is_object = is_object
        self.expect_key = is_object
        self.index = 0
        self.key = path


def _json_lines(text: str) -> dict[str, int]:
    """Lines of every key and list item of a valid JSON text, in one pass."""
    lines: dict[str, int] = {}
    stack: list[_Frame] = []
    line, counted = 1, 0

    def line_at(position: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, position)
        counted = position
        return line

    def value_at(position: int) -> str:
        # The key of a value starting at ``position``; list items get their index.
        if not stack:
            return ""
        frame = stack[-1]
        if frame.is_object:
            return frame.key
        key = join_key(frame.path, frame.index)
        lines.setdefault(key, line_at(position))
        return key

    position, end = 0, len(text)
    while position < end:
        char = text[position]
        if char == '"':
            value, after = scanstring(text, position + 1)
            frame = stack[-1] if stack else None
            if frame is not None and frame.is_object and frame.expect_key:
                frame.key = join_key(frame.path, value)
                frame.expect_key = False
                lines.setdefault(frame.key, line_at(position))
            else:
                value_at(position)
            position = after
        elif char in "{[":
            stack.append(_Frame(value_at(position), char == "{"))
            position += 1
        elif char in "}]":
            stack.pop()
            position += 1
        elif char == ",":
            frame = stack[-1]
            frame.expect_key = frame.is_object
            frame.index += 1
            position += 1
        elif char in ": \t\r\n":
            position += 1
        else:  # a number, true, false or null
            value_at(position)
            while position < end and text[position] not in ",]} \t\r\n":
                position += 1
    return lines
