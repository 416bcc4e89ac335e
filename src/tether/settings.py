"""Typed settings from init arguments, the environment, ``.env`` and config files.

Subclass ``Settings`` with pydantic fields (nested models, ``SecretStr`` for secrets)
and build it with ``MySettings.load("config.yaml")``. Precedence, highest first:
init arguments > environment variables > ``.env`` > the secrets directory > config
files (a later file over an earlier one, a profile file over its base) > defaults.
A failure raises one ``SettingsError`` listing every bad key with the source it came
from (file and line for files) and what was expected, never the value.

``load_file`` reads one YAML/TOML/JSON file into a ``ConfigFile`` that knows the line
of each key, for loaders of other config files.
"""

from __future__ import annotations

try:
    import pydantic_settings
    import yaml  # noqa: F401
except ImportError:
    raise ImportError(
        "tether.settings needs the 'settings' extra: pip install 'tether[settings]'"
    ) from None

import enum
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import ModelWrapValidatorHandler, PrivateAttr, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ._settings_errors import SettingsError, SettingsProblem
from ._settings_files import ConfigFile, load_file
from ._settings_lookup import flatten, lookup
from ._settings_rules import Rule, apply_rules
from ._settings_sources import PLAN, RECORDING, Origin, Plan, Recording, build_sources, locate

__all__ = ["ConfigFile", "Rule", "Settings", "SettingsError", "SettingsProblem", "load_file"]

logger = logging.getLogger("tether.settings")


class _Missing(enum.Enum):
    MISSING = enum.auto()


_MISSING = _Missing.MISSING
# pydantic-settings' message when a complex value (JSON in a variable) does not parse.
_SOURCE_ERROR = re.compile(r'field "([^"]+)" from source "(\w+)"')
_SOURCE_LABELS = {"EnvSettingsSource": "env", "DotEnvSettingsSource": ".env"}


class Settings(BaseSettings):
    """Base class of an application's settings: subclass it with typed fields.

    Class options (all optional):

    - ``model_config = SettingsConfigDict(env_prefix="MYAPP_")``: the prefix of the
      environment variables; nested keys are joined by ``__``
      (``MYAPP_DATABASE__URL``); ``.env`` in the working directory is read.
    - ``config_files``: files read when ``load()`` is given none.
    - ``profile_env``: the variable that picks the profile (default
      ``{env_prefix}PROFILE``, or ``TETHER_PROFILE`` without a prefix);
      ``default_profile`` is used when it is not set (``"development"``).
    - ``settings_rules``: ``{"dotted.key": Rule(...)}`` checked before validation.

    An instance is frozen: bind it as a value, ``container.bind(MySettings, settings)``.
    """

    model_config = SettingsConfigDict(
        env_nested_delimiter="__",
        env_file=".env",
        # Only variables that name a field are read from .env, like from the
        # environment: other lines of a shared .env are not errors.
        dotenv_filtering="only_existing",
        extra="forbid",
        frozen=True,
    )

    config_files: ClassVar[Sequence[str | os.PathLike[str]]] = ()
    profile_env: ClassVar[str | None] = None
    default_profile: ClassVar[str] = "development"
    settings_rules: ClassVar[Mapping[str, Rule]] = {}

    _tether_origins: tuple[Origin, ...] | None = PrivateAttr(default=None)
    _tether_profile: str | None = PrivateAttr(default=None)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for key, rule in cls.settings_rules.items():
            if not isinstance(key, str) or not key or not isinstance(rule, Rule):
                raise TypeError(
                    f"{cls.__name__}.settings_rules maps dotted keys to Rule(...), "
                    f"got {key!r}: {type(rule).__name__}"
                )

    def __init__(self, **values: Any) -> None:
        recording = Recording(type(self))
        token = RECORDING.set(recording)
        try:
            super().__init__(**values)
        except ValidationError as err:
            # pydantic's own message quotes each bad input, secrets included: not raised.
            raise SettingsError(recording.problems(err)) from None
        except pydantic_settings.SettingsError as err:
            raise SettingsError([_source_problem(err)]) from err
        finally:
            RECORDING.reset(token)
        self._tether_origins = recording.origins
        self._tether_profile = recording.profile
        logger.debug(
            "%s loaded (profile %s) from %s",
            type(self).__name__,
            recording.profile,
            ", ".join(str(path) for path in recording.files) or "no config file",
        )

    @classmethod
    def load(
        cls,
        *files: str | os.PathLike[str],
        profile: str | None = None,
        **values: Any,
    ) -> Self:
        """Build the settings from ``files`` (``config_files`` when none are given),
        each followed by its profile variant when that exists
        (``config.yaml``, then ``config.production.yaml``).

        ``profile`` overrides the profile variable; ``values`` are init arguments, the
        highest-precedence source (pydantic-settings' ``_env_file=`` and
        ``_env_prefix=`` are accepted too). A file named here must exist.
        """
        plan = Plan(cls, tuple(Path(file) for file in files) if files else None, profile)
        token = PLAN.set(plan)
        try:
            return cls(**values)
        finally:
            PLAN.reset(token)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """init > env > .env > secrets directory > config files, last file first."""
        return build_sources(
            settings_cls,
            config_files=cls.config_files,
            profile_env=cls.profile_env,
            default_profile=cls.default_profile,
            init=init_settings,
            env=env_settings,
            dotenv=dotenv_settings,
            secrets=file_secret_settings,
        )

    @model_validator(mode="wrap")
    @classmethod
    def _tether_check_rules(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        rule_errors: list[InitErrorDetails] = []
        if cls.settings_rules and isinstance(data, dict):
            data, rule_errors = apply_rules(data, cls.settings_rules)
        recording = RECORDING.get()
        if recording is not None and recording.cls is cls and recording.raw is None:
            recording.raw = data  # the merged input, to turn error locations into keys
        if not rule_errors:
            return handler(data)
        try:
            handler(data)
        except ValidationError as err:
            rule_errors += [_as_details(item) for item in err.errors(include_url=False)]
        raise ValidationError.from_exception_data(cls.__name__, rule_errors)

    @property
    def active_profile(self) -> str | None:
        """The profile this instance was loaded with (None when built by ``model_construct``)."""
        return self._tether_profile

    def get(self, key: str, default: Any = _MISSING) -> Any:
        """The value at a dotted key (``"database.url"``), through nested models,
        mappings and lists (``"hosts.0"``); secrets stay ``SecretStr``.

        A missing key returns ``default`` when given, else raises ``KeyError`` naming
        the keys that do exist there.
        """
        try:
            return lookup(self, key)
        except KeyError:
            if default is _MISSING:
                raise
            return default

    def by_prefix(self, prefix: str) -> dict[str, Any]:
        """Every leaf whose dotted key starts with ``prefix``, as ``{dotted key: value}``.

        End the prefix with a dot (``"database."``) to stay inside one section.
        """
        head = prefix.rpartition(".")[0]
        try:
            root = lookup(self, head) if head else self
        except KeyError:
            return {}
        return {key: value for key, value in flatten(root, head) if key.startswith(prefix)}

    def source_of(self, key: str) -> str:
        """Where the value at ``key`` came from: ``"config.yaml:12"``, ``".env:3"``,
        ``"env MYAPP_DATABASE__URL"``, ``"init"`` or ``"default"`` (``"unknown"`` for an
        instance built without its constructor, by ``model_construct``)."""
        lookup(self, key)
        if self._tether_origins is None:
            return "unknown"
        source, line = locate(self._tether_origins, key)
        return source if line is None else f"{source}:{line}"


def _as_details(item: Any) -> InitErrorDetails:
    # Re-raised next to the rule errors; the message is kept as pydantic wrote it.
    return InitErrorDetails(
        type=PydanticCustomError(item["type"], item["msg"]), loc=item["loc"], input=item["input"]
    )


def _source_problem(err: pydantic_settings.SettingsError) -> SettingsProblem:
    match = _SOURCE_ERROR.search(str(err))
    if match is None:
        return SettingsProblem("", "settings source", str(err))
    key, source = match.groups()
    return SettingsProblem(key, _SOURCE_LABELS.get(source, source), "a value that parses as JSON")
