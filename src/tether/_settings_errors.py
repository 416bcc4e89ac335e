"""``SettingsError``: every problem of one load, each with its key, its source and what
was expected, and never the value (which may be a secret)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from .exceptions import TetherError

# The error types of tether's rules (see _settings_rules): their location is exact.
RULE_FAILED = "settings_rule"
RULE_MISSING = "settings_rule_missing"

# (source, line) for a dotted key: where its value came from.
Locate = Callable[[str], tuple[str, int | None]]


@dataclass(frozen=True, slots=True)
class SettingsProblem:
    """One problem of a load.

    ``key`` is the dotted key (``"database.url"``; empty when the problem is a whole
    file), ``source`` where the value came from (a file path, ``"env MYAPP_DATABASE__URL"``,
    ``.env``, ``"init"``, ``"default"``, or ``"not set"``), ``line`` the line in that file
    when known, and ``expected`` what a good value looks like. The bad value itself is
    never kept: it may be a secret.
    """

    key: str
    source: str
    expected: str
    line: int | None = None

    @property
    def where(self) -> str:
        """``source:line``, or the source alone when the line is not known."""
        return self.source if self.line is None else f"{self.source}:{self.line}"

    def __str__(self) -> str:
        if not self.key:
            return f"{self.where}: {self.expected}"
        return f"{self.key} ({self.where}): {self.expected}"


class SettingsError(TetherError, ValueError):
    """Settings could not be loaded; ``problems`` lists every problem found.

    Raised for a file that cannot be read or parsed, an unsafe YAML tag, a value that
    fails its model or its rule, and a required key nobody set. Each problem names the
    key, the source (with the line for files) and what was expected; no value is
    ever included, so a secret cannot leak through the message.
    """

    problems: tuple[SettingsProblem, ...]

    def __init__(self, problems: Iterable[SettingsProblem]) -> None:
        problems = tuple(problems)
        super().__init__(problems)
        self.problems = problems

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return f"invalid settings: {self.problems[0]}"
        lines = [f"invalid settings, {len(self.problems)} problems:"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


def join_key(prefix: str, part: object) -> str:
    return f"{prefix}.{part}" if prefix else str(part)


def data_key(loc: Sequence[int | str], raw: Any) -> str:
    """The dotted key of a pydantic error location, following the raw input.

    Locations name union members and discriminator tags between the keys
    (``("resources", "api", "http", "timeout")``); a step the input does not have is
    one of those and is dropped, except a last step under a mapping, which is the
    missing or unknown key itself.
    """
    key = ""
    current: Any = raw
    for position, step in enumerate(loc):
        found, child = _step(current, step)
        if found:
            key = join_key(key, step)
            current = child
        elif position == len(loc) - 1 and isinstance(current, Mapping | BaseModel):
            key = join_key(key, step)
    return key


def _step(current: Any, step: int | str) -> tuple[bool, Any]:
    if isinstance(current, Mapping):
        return (True, current[step]) if step in current else (False, None)
    if isinstance(current, list | tuple) and isinstance(step, int):
        return (True, current[step]) if 0 <= step < len(current) else (False, None)
    if isinstance(current, BaseModel) and step in type(current).model_fields:
        return True, getattr(current, str(step))
    return False, None


def field_names_at(model: type[BaseModel] | None, parts: Sequence[str]) -> list[str]:
    """Field names of the nested model at ``parts`` of ``model``, when it is one."""
    current: Any = model
    for part in parts:
        field = current.model_fields.get(part) if _is_model(current) else None
        if field is None:
            return []
        current = _model_in(field.annotation)
    return list(current.model_fields) if _is_model(current) else []


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _model_in(annotation: Any) -> Any:
    # Optional[Model] and Model | None count as the model.
    if _is_model(annotation):
        return annotation
    models = [arg for arg in get_args(annotation) if _is_model(arg)]
    return models[0] if len(models) == 1 else None


def expectation(error: Mapping[str, Any], key: str, model: type[BaseModel] | None) -> str:
    """What was expected, in words, for one pydantic error (without its input)."""
    kind = error["type"]
    if kind == "missing":
        return "a value is required"
    if kind == "extra_forbidden":
        parent, _, name = key.rpartition(".")
        known = field_names_at(model, parent.split(".") if parent else [])
        return "unknown key" + _suggest(name, known)
    return str(error["msg"])


def _suggest(name: str, known: Sequence[str]) -> str:
    if not known:
        return ""
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
    return f"; known keys here: {shown}"


def problems_from_validation(
    error: ValidationError,
    raw: Any,
    locate: Locate,
    *,
    model: type[BaseModel] | None,
    prefix: str = "",
    missing_hint: Callable[[str], str] | None = None,
) -> list[SettingsProblem]:
    """One problem per pydantic error: its dotted key, where the value came from, and
    pydantic's message (which, unlike ``str(error)``, never carries the input)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False):
        by_rule = item["type"] in (RULE_FAILED, RULE_MISSING)
        local = ".".join(map(str, item["loc"])) if by_rule else data_key(item["loc"], raw)
        key = join_key(prefix, local) if local else prefix
        expected = expectation(item, local, model)
        if item["type"] in ("missing", RULE_MISSING) and missing_hint is not None:
            expected += missing_hint(key)
            problems.append(SettingsProblem(key, "not set", expected))
            continue
        source, line = locate(key)
        problems.append(SettingsProblem(key, source, expected, line))
    return problems
