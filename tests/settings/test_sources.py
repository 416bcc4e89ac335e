"""Every source, and the precedence between them, one rung per test:
init > env > .env > config files (later over earlier) > defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsConfigDict

from tether.settings import Settings, SettingsError

from .models import AppSettings, Database


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_apply_when_no_source_sets_a_key(workdir: Path) -> None:
    settings = AppSettings.load()

    assert settings.database.url == "sqlite:///app.db"
    assert settings.debug is False


def test_a_config_file_overrides_the_defaults(workdir: Path) -> None:
    write(workdir / "config.yaml", "database:\n  url: postgres://file/app\n")

    settings = AppSettings.load("config.yaml")

    assert settings.database.url == "postgres://file/app"


def test_a_later_file_overrides_an_earlier_one(workdir: Path) -> None:
    write(workdir / "base.yaml", "name: base\n")
    write(workdir / "local.yaml", "name: local\n")

    settings = AppSettings.load("base.yaml", "local.yaml")

    assert settings.name == "local"


def test_layered_files_merge_their_sections_key_by_key(workdir: Path) -> None:
    write(workdir / "base.yaml", "database:\n  url: postgres://base/app\n  pool_size: 7\n")
    write(workdir / "local.yaml", "database:\n  pool_size: 20\n")

    settings = AppSettings.load("base.yaml", "local.yaml")

    assert settings.database == Database(url="postgres://base/app", pool_size=20)


def test_dotenv_overrides_config_files(workdir: Path) -> None:
    write(workdir / "config.yaml", "name: from-file\n")
    write(workdir / ".env", "TTEST_NAME=from-dotenv\n")

    settings = AppSettings.load("config.yaml")

    assert settings.name == "from-dotenv"


def test_the_environment_overrides_dotenv(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(workdir / ".env", "TTEST_NAME=from-dotenv\n")
    monkeypatch.setenv("TTEST_NAME", "from-env")

    settings = AppSettings.load()

    assert settings.name == "from-env"


def test_init_arguments_override_the_environment(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTEST_NAME", "from-env")

    settings = AppSettings.load(name="from-init")

    assert settings.name == "from-init"


def test_nested_keys_come_from_double_underscore_variables(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(workdir / "config.yaml", "database:\n  url: postgres://file/app\n")
    monkeypatch.setenv("TTEST_DATABASE__POOL_SIZE", "42")

    settings = AppSettings.load("config.yaml")

    assert settings.database == Database(url="postgres://file/app", pool_size=42)


def test_a_whole_section_can_be_one_json_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTEST_DATABASE", '{"url": "postgres://json/app", "pool_size": 3}')

    settings = AppSettings.load()

    assert settings.database == Database(url="postgres://json/app", pool_size=3)


def test_a_list_comes_from_one_json_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTEST_HOSTS", '["a.internal", "b.internal"]')

    assert AppSettings.load().hosts == ["a.internal", "b.internal"]


def test_dotenv_nested_keys_use_the_same_delimiter(workdir: Path) -> None:
    write(workdir / ".env", "TTEST_DATABASE__POOL_SIZE=9\n")

    assert AppSettings.load().database.pool_size == 9


def test_dotenv_lines_for_other_programs_are_ignored(workdir: Path) -> None:
    write(workdir / ".env", "OTHER_APP_TOKEN=x\nTTEST_UNKNOWN=1\nDEBUG=true\nTTEST_NAME=ok\n")

    settings = AppSettings.load()

    assert (settings.name, settings.debug) == ("ok", False)


def test_another_dotenv_file_can_be_named_at_load(workdir: Path) -> None:
    write(workdir / "prod.env", "TTEST_NAME=from-prod-env\n")

    assert AppSettings.load(_env_file="prod.env").name == "from-prod-env"


def test_the_env_prefix_can_be_given_at_load(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTEST_OTHER_NAME", "other")

    assert AppSettings.load(_env_prefix="TTEST_OTHER_").name == "other"


def test_the_secrets_directory_is_below_dotenv_and_above_files(workdir: Path) -> None:
    class WithSecrets(AppSettings):
        model_config = SettingsConfigDict(secrets_dir="secrets")

    (workdir / "secrets").mkdir()
    write(workdir / "secrets" / "TTEST_NAME", "from-secrets")
    write(workdir / "secrets" / "TTEST_DEBUG", "true")
    write(workdir / "config.yaml", "name: from-file\ndebug: false\n")
    write(workdir / ".env", "TTEST_NAME=from-dotenv\n")

    settings = WithSecrets.load("config.yaml")

    assert (settings.name, settings.debug) == ("from-dotenv", True)
    assert settings.source_of("debug") == "secrets directory"


def test_a_toml_file_is_a_source(workdir: Path) -> None:
    write(workdir / "config.toml", '[database]\nurl = "postgres://toml/app"\n')

    assert AppSettings.load("config.toml").database.url == "postgres://toml/app"


def test_a_json_file_is_a_source(workdir: Path) -> None:
    write(workdir / "config.json", '{"database": {"url": "postgres://json/app"}}')

    assert AppSettings.load("config.json").database.url == "postgres://json/app"


def test_files_of_different_formats_layer_in_the_order_given(workdir: Path) -> None:
    write(workdir / "a.yaml", "name: yaml\ndebug: true\n")
    write(workdir / "b.toml", 'name = "toml"\n')
    write(workdir / "c.json", '{"name": "json"}')

    settings = AppSettings.load("c.json", "b.toml", "a.yaml")

    assert (settings.name, settings.debug) == ("yaml", True)


def test_config_files_option_is_read_when_load_names_no_file(workdir: Path) -> None:
    class WithFiles(AppSettings):
        config_files = ("config.yaml",)

    write(workdir / "config.yaml", "name: from-class-option\n")

    assert WithFiles.load().name == "from-class-option"


def test_the_constructor_reads_the_same_sources_as_load(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class WithFiles(AppSettings):
        config_files = ("config.yaml",)

    write(workdir / "config.yaml", "name: file\ndebug: true\n")
    monkeypatch.setenv("TTEST_NAME", "env")

    settings = WithFiles()

    assert (settings.name, settings.debug) == ("env", True)


def test_a_file_named_at_load_must_exist(workdir: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        AppSettings.load("missing.yaml")

    (problem,) = caught.value.problems
    assert problem.source == "missing.yaml"
    assert "not found" in problem.expected


def test_an_instance_is_frozen(workdir: Path) -> None:
    settings = AppSettings.load()

    with pytest.raises(ValidationError):
        settings.name = "changed"  # type: ignore[misc]


def test_a_settings_class_without_prefix_reads_bare_variable_names(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Bare(Settings):
        ttest_bare_flag: bool = False

    monkeypatch.setenv("TTEST_BARE_FLAG", "true")

    assert Bare.load().ttest_bare_flag is True
