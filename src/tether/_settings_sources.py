"""The sources of one load, in precedence order, and a record of which gave each key.

pydantic-settings calls every source and deep-merges the results; each source here is
wrapped so its output is recorded as it goes by. Only the keys are kept (never the
values), so an instance can say where a value came from without holding a second
copy of its secrets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    DotEnvSettingsSource,
    EnvSettingsSource,
    InitSettingsSource,
    PydanticBaseSettingsSource,
)

from ._settings_errors import (
    SettingsError,
    SettingsProblem,
    join_key,
    problems_from_validation,
)
from ._settings_files import ConfigFile, load_file

if TYPE_CHECKING:
    from pydantic_settings import BaseSettings

_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


# -- where a key came from -------------------------------------------------------------


class Origin:
    """One source of one load: the keys it gave, and how to name it in a message."""

    __slots__ = ("_leaves", "_nodes")

    def __init__(self) -> None:
        self._nodes: set[str] = set()
        self._leaves: set[str] = set()

    def record(self, data: Mapping[str, Any]) -> None:
        stack: list[tuple[str, Any]] = [("", data)]
        while stack:
            prefix, mapping = stack.pop()
            for name, value in mapping.items():
                key = join_key(prefix, name)
                self._nodes.add(key)
                if isinstance(value, Mapping):
                    stack.append((key, value))
                else:  # a list, a model instance or a scalar: it replaces what is below
                    self._leaves.add(key)

    def reaches(self, key: str) -> bool:
        if key in self._nodes:
            return True
        while "." in key:
            key = key.rpartition(".")[0]
            if key in self._leaves:
                return True
        return False

    def locate(self, key: str) -> tuple[str, int | None]:
        raise NotImplementedError


class _Named(Origin):
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        super().__init__()
        self._name = name

    def locate(self, key: str) -> tuple[str, int | None]:
        return self._name, None


class _FileOrigin(Origin):
    __slots__ = ("_lines",)

    def __init__(self, file: ConfigFile) -> None:
        super().__init__()
        self._lines = ConfigFile(file.path, {}, file.lines)  # the lines, not the values

    def locate(self, key: str) -> tuple[str, int | None]:
        return str(self._lines.path), self._lines.line_of(key)


class _EnvOrigin(Origin):
    """Environment variables, or a ``.env`` file (``env_files`` set)."""

    __slots__ = ("_case_sensitive", "_delimiter", "_env_files", "_names", "_prefix")

    def __init__(self, source: EnvSettingsSource, env_files: Sequence[Path] | None) -> None:
        super().__init__()
        self._prefix = source.env_prefix or ""
        self._delimiter = source.env_nested_delimiter or ""
        self._case_sensitive = bool(source.case_sensitive)
        self._names = frozenset(source.env_vars)  # names only: the values may be secrets
        self._env_files = env_files

    def variable(self, key: str) -> str:
        """The variable that sets ``key`` (or would set it), as a user writes it."""
        parts = key.split(".")
        # MYAPP_DATABASE__URL, or the whole section as JSON in MYAPP_DATABASE; without a
        # delimiter only the latter.
        candidates = [parts[:i] for i in range(len(parts), 0, -1)] if self._delimiter else []
        candidates.append(parts[:1])
        for candidate in candidates:
            name = self._prefix + self._delimiter.join(candidate)
            if (name if self._case_sensitive else name.lower()) in self._names:
                break
        else:
            name = self._prefix + self._delimiter.join(candidates[0])
        return name if self._case_sensitive else name.upper()

    def locate(self, key: str) -> tuple[str, int | None]:
        name = self.variable(key)
        if self._env_files is None:
            return f"env {name}", None
        for file in reversed(self._env_files):  # a later .env file wins
            line = _line_of_variable(file, name, self._case_sensitive)
            if line is not None:
                return str(file), line
        return f".env {name}", None


def _line_of_variable(file: Path, name: str, case_sensitive: bool) -> int | None:
    pattern = re.compile(
        rf"\s*(?:export\s+)?{re.escape(name)}\s*=", 0 if case_sensitive else re.IGNORECASE
    )
    try:
        with file.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if pattern.match(line):
                    return number
    except (OSError, UnicodeDecodeError):
        return None  # only a position for a message: the load itself already read it
    return None


def locate(origins: Sequence[Origin], key: str) -> tuple[str, int | None]:
    """The source that gave ``key``: the first of ``origins`` (highest precedence first)
    that reaches it, else the default."""
    for origin in origins:
        if origin.reaches(key):
            return origin.locate(key)
    return "default", None


# -- one load ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Plan:
    """What ``Settings.load(...)`` asked for, for the class being built."""

    cls: type[BaseSettings]
    files: tuple[Path, ...] | None
    profile: str | None


PLAN: ContextVar[Plan | None] = ContextVar("tether_settings_plan", default=None)


class Recording:
    """What one construction of a settings class saw: its sources, profile and input."""

    def __init__(self, cls: type[BaseSettings]) -> None:
        self.cls = cls
        self.origins: tuple[Origin, ...] = ()
        self.env: _EnvOrigin | None = None
        self.profile: str | None = None
        self.files: tuple[Path, ...] = ()
        self.raw: Any = None

    def locate(self, key: str) -> tuple[str, int | None]:
        return locate(self.origins, key)

    def missing_hint(self, key: str) -> str:
        where = f"set {key!r} in a config file"
        if self.env is not None:
            where += f" or the environment variable {self.env.variable(key)}"
        return f"; {where}"

    def problems(self, error: ValidationError) -> list[SettingsProblem]:
        return problems_from_validation(
            error, self.raw or {}, self.locate, model=self.cls, missing_hint=self.missing_hint
        )


RECORDING: ContextVar[Recording | None] = ContextVar("tether_settings_recording", default=None)


class _FileSource(InitSettingsSource):
    """One parsed config file, fed to pydantic-settings like init arguments are (the
    way its own YAML/TOML/JSON sources do, which keep no line numbers)."""

    def __init__(self, settings_cls: type[BaseSettings], file: ConfigFile) -> None:
        super().__init__(settings_cls, file.data)
        self.path = file.path

    def __repr__(self) -> str:
        return f"_FileSource({str(self.path)!r})"


class _Recorded(PydanticBaseSettingsSource):
    """A source whose output is recorded (keys only) as pydantic-settings reads it."""

    def __init__(self, inner: PydanticBaseSettingsSource, origin: Origin) -> None:
        super().__init__(inner.settings_cls)
        self._inner = inner
        self._origin = origin
        self.__name__ = type(inner).__name__  # how pydantic-settings names a source

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        data = self._inner()
        self._origin.record(data)
        return data

    def __repr__(self) -> str:
        return repr(self._inner)


def build_sources(
    settings_cls: type[BaseSettings],
    *,
    config_files: Sequence[str | os.PathLike[str]],
    profile_env: str | None,
    default_profile: str,
    init: PydanticBaseSettingsSource,
    env: PydanticBaseSettingsSource,
    dotenv: PydanticBaseSettingsSource,
    secrets: PydanticBaseSettingsSource,
) -> tuple[PydanticBaseSettingsSource, ...]:
    """init > env > .env > secrets directory > config files (the last one first)."""
    recording = RECORDING.get()
    if recording is None or recording.cls is not settings_cls:
        recording = Recording(settings_cls)  # built some other way: nobody reads it
    plan = PLAN.get()
    if plan is not None and plan.cls is not settings_cls:
        plan = None
    files = plan.files if plan is not None and plan.files is not None else config_files
    profile = _profile(plan, profile_env, default_profile, env, dotenv)
    parsed = [load_file(path) for path in _layered(files, profile)]

    env_origin = _env_origin(env, None)
    pairs: list[tuple[PydanticBaseSettingsSource, Origin]] = [
        (init, _Named("init")),
        (env, env_origin or _Named("env")),
        (dotenv, _env_origin(dotenv, _env_files(dotenv)) or _Named(".env")),
        (secrets, _Named("secrets directory")),
    ]
    pairs += [(_FileSource(settings_cls, file), _FileOrigin(file)) for file in reversed(parsed)]

    recording.origins = tuple(origin for _, origin in pairs)
    recording.env = env_origin
    recording.profile = profile
    recording.files = tuple(file.path for file in parsed)
    return tuple(_Recorded(source, origin) for source, origin in pairs)


def _env_origin(
    source: PydanticBaseSettingsSource, env_files: Sequence[Path] | None
) -> _EnvOrigin | None:
    return _EnvOrigin(source, env_files) if isinstance(source, EnvSettingsSource) else None


def _env_files(source: PydanticBaseSettingsSource) -> list[Path]:
    files = source.env_file if isinstance(source, DotEnvSettingsSource) else None
    if files is None:
        return []
    if isinstance(files, str | os.PathLike):
        return [Path(files)]
    return [Path(file) for file in files]


def _profile(
    plan: Plan | None,
    profile_env: str | None,
    default_profile: str,
    env: PydanticBaseSettingsSource,
    dotenv: PydanticBaseSettingsSource,
) -> str:
    prefix = env.env_prefix if isinstance(env, EnvSettingsSource) else ""
    variable = profile_env or (f"{prefix}PROFILE" if prefix else "TETHER_PROFILE")
    value, source = default_profile, "default"
    if plan is not None and plan.profile is not None:
        value, source = plan.profile, "load(profile=...)"
    else:
        found = _variable(env, variable) or _variable(dotenv, variable)
        if found is not None:
            value, source = found
    if not _PROFILE_NAME.fullmatch(value):
        expected = "should be a profile name of letters, digits, '-' and '_' (it names a file)"
        raise SettingsError([SettingsProblem(variable, source, expected)])
    return value


def _variable(source: PydanticBaseSettingsSource, name: str) -> tuple[str, str] | None:
    if not isinstance(source, EnvSettingsSource):
        return None
    value = source.env_vars.get(name if source.case_sensitive else name.lower())
    if not value:
        return None
    label = ".env" if isinstance(source, DotEnvSettingsSource) else "env"
    return value, f"{label} {name}"


def _layered(files: Sequence[str | os.PathLike[str]], profile: str) -> list[Path]:
    """Each file, then its profile variant (``config.yaml`` -> ``config.production.yaml``)
    when that exists; a later file overrides an earlier one."""
    layered = []
    for name in files:
        path = Path(name)
        layered.append(path)
        variant = path.with_name(f"{path.stem}.{profile}{path.suffix}")
        if variant.is_file():
            layered.append(variant)
    return layered
