"""Resources declared in a YAML/TOML/JSON file (or the environment) and registered on a
container: ``Container.from_config(path)`` and ``declare(container, path)``.

    resources:
      api:     {type: http, base_url: "https://api.example.com", max_connections: 100}
      default: {type: database, url: "sqlite+aiosqlite:///./app.db", eager: true}
      cache:   {type: redis, url: "redis://127.0.0.1:6379/0", critical: false}
    crypto:
      default: {algorithm: AES_256_GCM}
      signing: {algorithm: RSA_2048, key_rotation_interval: 30d}

Each entry becomes one battery instance built from its config model; ``type``,
``eager`` and ``critical`` are about the registration, every other key goes to the
config. An entry named ``default`` is registered without a name (``Inject[Database]``);
the others under their names (``Inject[Database, "reports"]``). Environment variables
``{prefix}RESOURCES__{NAME}__{KEY}`` (and ``{prefix}CRYPTO__...``) override the file or
declare entries of their own; a value that starts with ``{`` or ``[`` is read as JSON.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ._settings_errors import SettingsError, SettingsProblem, problems_from_validation
from ._settings_files import ConfigFile, load_file

if TYPE_CHECKING:
    from ._container import Container

# type -> (module, config class, resource class, extra)
KINDS: dict[str, tuple[str, str, str, str]] = {
    "http": ("tether.resources.http", "HTTPConfig", "HTTPClient", "http"),
    "database": ("tether.resources.database", "DatabaseConfig", "Database", "database"),
    "redis": ("tether.resources.redis", "RedisConfig", "RedisClient", "redis"),
    "websocket": ("tether.resources.websocket", "WebSocketConfig", "WebSocketClient",
                  "websocket"),
    "grpc": ("tether.resources.grpc", "GRPCConfig", "GRPCChannel", "grpc"),
    "crypto": ("tether.resources.crypto", "CryptoConfig", "Crypto", "crypto"),
}
SECTIONS = ("resources", "crypto")  # "crypto" entries are crypto backends, no type key
REGISTRATION = ("type", "eager", "critical")


def declare(
    container: Container,
    source: str | os.PathLike[str] | Mapping[str, Any],
    *,
    env_prefix: str = "TETHER_",
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Register every resource ``source`` declares on ``container``; return what was
    registered (as ``Type[name]``). Nothing is registered when any entry is bad: the
    ``SettingsError`` lists every problem with its file, line and key."""
    file = _as_file(source)
    data, origins = _merge_environment(file, env_prefix, os.environ if environ is None
                                       else environ)

    def where(key: str) -> tuple[str, int | None]:
        origin = origins.get(key) or next(
            (o for k, o in origins.items() if key.startswith(k + ".")), None)
        if origin is not None:
            return origin, None
        return str(file.path), file.line_of(key)

    problems = [
        _problem(where, top, f"is not a section tether reads: use {' or '.join(SECTIONS)}")
        for top in data if top not in SECTIONS
    ]
    planned: list[tuple[type, Any, str | None, bool, bool]] = []
    for section in SECTIONS:
        entries = data.get(section, {})
        if not isinstance(entries, Mapping):
            problems.append(_problem(where, section, "should be a mapping of names to "
                                                     "resource entries"))
            continue
        for name, entry in entries.items():
            key = f"{section}.{name}"
            built = _entry(section, str(name), entry, key, where, problems)
            if built is not None:
                planned.append(built)
    if problems:
        raise SettingsError(problems)
    done = []
    for cls, instance, name, eager, critical in planned:
        container.bind(cls, instance, name=name, eager=eager, critical=critical)
        done.append(cls.__name__ if name is None else f"{cls.__name__}[{name}]")
    return done


def _entry(section: str, name: str, entry: Any, key: str, where: Any,
           problems: list[SettingsProblem]) -> tuple[type, Any, str | None, bool, bool] | None:
    if not isinstance(entry, Mapping):
        problems.append(_problem(where, key, "should be a mapping of options"))
        return None
    options = dict(entry)
    kind = "crypto" if section == "crypto" else options.get("type")
    if section == "crypto" and "type" in options:
        problems.append(_problem(where, f"{key}.type", "is not needed under crypto: "
                                                       "every entry there is a crypto backend"))
        return None
    if kind not in KINDS:
        expected = f"should be one of {', '.join(k for k in KINDS if k != 'crypto')}"
        problems.append(_problem(where, f"{key}.type", expected if kind is not None else
                                 f"is missing: every resource needs a type ({expected[10:]})"))
        return None
    eager, critical = options.pop("eager", False), options.pop("critical", True)
    options.pop("type", None)
    for flag, value in (("eager", eager), ("critical", critical)):
        if not isinstance(value, bool):
            problems.append(_problem(where, f"{key}.{flag}", "should be true or false"))
            return None
    module_name, config_name, resource_name, extra = KINDS[str(kind)]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        problems.append(_problem(where, key, f"needs the '{extra}' extra: pip install "
                                             f"'tether[{extra}]'"))
        return None
    config_cls: type[BaseModel] = getattr(module, config_name)
    resource_cls: type = getattr(module, resource_name)
    if "name" in config_cls.model_fields:
        options.setdefault("name", name)
    try:
        config = config_cls.model_validate(options)
    except ValidationError as error:
        problems.extend(problems_from_validation(
            error, options, lambda k: where(k), model=config_cls, prefix=key))
        return None
    return (resource_cls, resource_cls(config), None if name == "default" else name, eager,
            critical)


def _problem(where: Any, key: str, expected: str) -> SettingsProblem:
    source, line = where(key)
    return SettingsProblem(key, source, expected, line)


def _as_file(source: str | os.PathLike[str] | Mapping[str, Any]) -> ConfigFile:
    if isinstance(source, Mapping):
        return ConfigFile(Path("<mapping>"), dict(source), {})
    return load_file(source)


def _merge_environment(
    file: ConfigFile, prefix: str, environ: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """The file's data with ``{prefix}SECTION__NAME__KEY`` variables laid over it, and
    which dotted keys came from which variable."""
    data: dict[str, Any] = json.loads(json.dumps(file.data, default=str))  # a deep copy
    origins: dict[str, str] = {}
    upper = prefix.upper()
    for variable, raw in environ.items():
        if not variable.upper().startswith(upper):
            continue
        parts = variable[len(prefix):].split("__")
        if len(parts) < 3 or parts[0].lower() not in SECTIONS:
            continue
        section = parts[0].lower()
        entries = data.setdefault(section, {})
        if not isinstance(entries, dict):
            continue
        name = next((n for n in entries if n.lower() == parts[1].lower()), parts[1].lower())
        node = entries.setdefault(name, {})
        path = [section, name]
        for part in parts[2:-1]:
            if not isinstance(node, dict):
                break
            child = next((k for k in node if k.lower() == part.lower()), part.lower())
            node = node.setdefault(child, {})
            path.append(child)
        if not isinstance(node, dict):
            continue
        leaf = next((k for k in node if k.lower() == parts[-1].lower()), parts[-1].lower())
        node[leaf] = _env_value(raw)
        origins[".".join([*path, leaf])] = f"env {variable}"
    return data, origins


def _env_value(raw: str) -> Any:
    text = raw.strip()
    if text[:1] in "{[":
        try:
            return json.loads(text)
        except ValueError:
            return raw
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return raw
