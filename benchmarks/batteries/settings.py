"""Settings: load a 200-key config file (YAML, and TOML) into a typed class.

20 sections of 10 typed keys (ints, strings, booleans, a float, a list), each section a
pydantic model with ``extra="forbid"``. Rows:

- tether: ``Settings.load(path)`` (init arguments, the environment, the file and its
  profile file looked up, every key's line recorded for error messages);
- pydantic-settings: a ``BaseSettings`` with the same model, prefix and nesting,
  reading the same file through its own ``YamlConfigSettingsSource`` /
  ``TomlConfigSettingsSource`` after init arguments and the environment;
- parse + validate: the file read and parsed (PyYAML's C safe loader, ``tomllib``)
  and ``model_validate``'d by a plain model: the floor, with no sources at all.

Every row's result must equal the file's data.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import tomllib
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, create_model
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)

from benchmarks.batteries._harness import Env, Row, Scenario, Skip, expect

TITLE = "Data kit: settings"
DISTRIBUTIONS = ("pydantic", "pydantic-settings", "pyyaml")
SECTIONS, KEYS = 20, 10
PREFIX = "BENCH_"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    port: int
    workers: int
    retries: int
    limit: int
    host: str
    label: str
    enabled: bool
    debug: bool
    ratio: float
    tags: list[str]


def data() -> dict[str, dict[str, Any]]:
    """The file's content: SECTIONS sections of KEYS keys."""
    return {
        f"section_{i:02d}": {
            "port": 8000 + i, "workers": 4 + i, "retries": 3, "limit": 1000 * (i + 1),
            "host": f"host-{i}.internal", "label": f"section number {i}",
            "enabled": i % 2 == 0, "debug": i % 3 == 0, "ratio": 0.25 + i / 100,
            "tags": [f"t{i}", "bench"],
        }
        for i in range(SECTIONS)
    }


def _toml(content: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for section, values in content.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)


def _fields() -> dict[str, Any]:
    return {f"section_{i:02d}": (Section, ...) for i in range(SECTIONS)}


def tether_class() -> type[Any]:
    from tether.settings import Settings

    class Base(Settings):
        model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=None)

    return create_model("TetherBench", __base__=Base, **_fields())


def pydantic_settings_class(kind: str, path: Path) -> type[BaseSettings]:
    class Base(BaseSettings):
        model_config = SettingsConfigDict(
            env_prefix=PREFIX, env_nested_delimiter="__", env_file=None, extra="forbid",
            frozen=True, yaml_file=path if kind == "yaml" else None,
            toml_file=path if kind == "toml" else None,
        )

        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            source = (YamlConfigSettingsSource(settings_cls) if kind == "yaml"
                      else TomlConfigSettingsSource(settings_cls))
            return init_settings, env_settings, source

    return create_model("PlainBench", __base__=Base, **_fields())


def _floor(kind: str, model: type[BaseModel], path: Path) -> BaseModel:
    text = path.read_text(encoding="utf-8")
    if kind == "yaml":
        parsed = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    else:
        parsed = tomllib.loads(text)
    return model.model_validate(parsed)


async def scenarios(env: Env, stack: AsyncExitStack) -> list[Scenario | Skip]:
    folder = Path(tempfile.mkdtemp(prefix="tether-bench-settings-"))
    stack.callback(shutil.rmtree, folder, True)
    content = data()
    expect(sum(len(v) for v in content.values()) == 200, "the file should have 200 keys")
    files = {"yaml": folder / "config.yaml", "toml": folder / "config.toml"}
    files["yaml"].write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    files["toml"].write_text(_toml(content), encoding="utf-8")
    floor_model = create_model("FloorBench", __config__=ConfigDict(extra="forbid"),
                               **_fields())
    tether = tether_class()

    def loaded(result: Any) -> None:
        expect(result.model_dump() == content, "the settings loaded differ from the file")

    found: list[Scenario | Skip] = []
    for kind, path in files.items():
        expect(tomllib.loads(path.read_text()) == content if kind == "toml"
               else yaml.safe_load(path.read_text()) == content, f"{kind} file is wrong")
        found.append(Scenario(
            f"load-{kind}", f"load a 200-key {kind.upper()} file",
            (
                Row("tether", functools.partial(tether.load, path), loaded),
                Row("pydantic-settings", pydantic_settings_class(kind, path), loaded),
                Row("parse + validate", functools.partial(_floor, kind, floor_model, path),
                    loaded, note="no sources: the floor"),
            ),
            baseline="pydantic-settings", unit="ms",
        ))
    return found
