"""A bad value fails the load with its dotted key, the source it came from (file and
line for files) and what was expected; every problem is listed at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.exceptions import TetherError
from tether.settings import SettingsError, SettingsProblem

from .models import AppSettings, SecretSettings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def problems(error: pytest.ExceptionInfo[SettingsError]) -> set[tuple[str, str, int | None]]:
    return {(p.key, p.source, p.line) for p in error.value.problems}


def test_a_bad_yaml_value_names_file_key_path_and_line(workdir: Path) -> None:
    write(workdir / "config.yaml", "name: api\ndatabase:\n  url: x\n  pool_size: lots\n")

    with pytest.raises(SettingsError) as caught:
        AppSettings.load("config.yaml")

    assert problems(caught) == {("database.pool_size", "config.yaml", 4)}
    assert str(caught.value) == (
        "invalid settings: database.pool_size (config.yaml:4): Input should be a valid "
        "integer, unable to parse string as an integer"
    )


def test_a_bad_list_item_names_its_own_line(workdir: Path) -> None:
    write(workdir / "config.yaml", "hosts:\n  - a.internal\n  - [nested]\n")

    with pytest.raises(SettingsError) as caught:
        AppSettings.load("config.yaml")

    assert problems(caught) == {("hosts.1", "config.yaml", 3)}


def test_a_bad_toml_value_names_its_line(workdir: Path) -> None:
    write(workdir / "config.toml", '[database]\nurl = "x"\npool_size = "lots"\n')

    with pytest.raises(SettingsError) as caught:
        AppSettings.load("config.toml")

    assert problems(caught) == {("database.pool_size", "config.toml", 3)}


def test_a_bad_json_value_names_its_line(workdir: Path) -> None:
    write(workdir / "config.json", '{\n  "database": {\n    "pool_size": "lots"\n  }\n}\n')

    with pytest.raises(SettingsError) as caught:
        AppSettings.load("config.json")

    assert problems(caught) == {("database.pool_size", "config.json", 3)}


def test_the_problem_names_the_file_the_winning_value_came_from(workdir: Path) -> None:
    write(workdir / "base.yaml", "database:\n  pool_size: 5\n")
    write(workdir / "local.yaml", "debug: true\ndatabase:\n  pool_size: lots\n")

    with pytest.raises(SettingsError) as caught:
        AppSettings.load("base.yaml", "local.yaml")

    assert problems(caught) == {("database.pool_size", "local.yaml", 3)}


def test_a_bad_environment_value_names_the_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTEST_DATABASE__POOL_SIZE", "lots")

    with pytest.raises(SettingsError) as caught:
        AppSettings.load()

    assert problems(caught) == {("database.pool_size", "env TTEST_DATABASE__POOL_SIZE", None)}


def test_a_bad_dotenv_value_names_the_file_and_line(workdir: Path) -> None:
    write(workdir / ".env", "# local\nTTEST_NAME=ok\nexport TTEST_DEBUG=maybe\n")

    with pytest.raises(SettingsError) as caught:
        AppSettings.load()

    assert problems(caught) == {("debug", ".env", 3)}


def test_a_bad_init_argument_is_named_as_init(workdir: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        AppSettings.load(debug="maybe")

    assert problems(caught) == {("debug", "init", None)}


def test_invalid_json_in_a_section_variable_names_the_key_and_source(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTEST_DATABASE", "{not json")

    with pytest.raises(SettingsError) as caught:
        AppSettings.load()

    (problem,) = caught.value.problems
    assert (problem.key, problem.source) == ("database", "env")
    assert "JSON" in problem.expected


def test_every_problem_is_listed_at_once(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(workdir / "config.yaml", "debug: maybe\ndatabase:\n  pool_size: lots\n")
    monkeypatch.setenv("TTEST_HOSTS", '"not-a-list"')

    with pytest.raises(SettingsError) as caught:
        AppSettings.load("config.yaml")

    assert problems(caught) == {
        ("debug", "config.yaml", 1),
        ("database.pool_size", "config.yaml", 3),
        ("hosts", "env TTEST_HOSTS", None),
    }
    assert str(caught.value).startswith("invalid settings, 3 problems:\n  - ")


def test_a_missing_required_key_says_where_it_can_be_set(workdir: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        SecretSettings.load()

    (problem,) = caught.value.problems
    assert (problem.key, problem.source) == ("credentials", "not set")
    assert "config file" in problem.expected
    assert "TTEST_CREDENTIALS" in problem.expected


def test_a_missing_nested_key_names_its_nested_variable(workdir: Path) -> None:
    write(
        workdir / "config.yaml",
        "credentials:\n  dsn: postgres://u:p@127.0.0.1/db\n  redis_password: r\n",
    )

    with pytest.raises(SettingsError) as caught:
        SecretSettings.load("config.yaml")

    (problem,) = caught.value.problems
    assert problem.key == "credentials.jwt_secret"
    assert "TTEST_CREDENTIALS__JWT_SECRET" in problem.expected


def test_an_unknown_key_in_a_file_suggests_the_close_one(workdir: Path) -> None:
    write(workdir / "config.yaml", "database:\n  url: x\n  pool_sise: 3\n")

    with pytest.raises(SettingsError) as caught:
        AppSettings.load("config.yaml")

    assert problems(caught) == {("database.pool_sise", "config.yaml", 3)}
    assert "unknown key; did you mean 'pool_size'?" in str(caught.value)


def test_an_unknown_top_level_key_lists_the_known_ones(workdir: Path) -> None:
    write(workdir / "config.yaml", "zzz: 1\n")

    with pytest.raises(SettingsError) as caught:
        AppSettings.load("config.yaml")

    assert "known keys here: database, debug, name, hosts" in str(caught.value)


def test_settings_error_is_a_tether_error_and_a_value_error() -> None:
    error = SettingsError([SettingsProblem("a.b", "config.yaml", "a number", 3)])

    assert isinstance(error, TetherError)
    assert isinstance(error, ValueError)
    assert str(error) == "invalid settings: a.b (config.yaml:3): a number"


def test_a_validation_failure_does_not_chain_pydantics_error(workdir: Path) -> None:
    # pydantic's ValidationError quotes every input; chained, it would print them.
    with pytest.raises(SettingsError) as caught:
        AppSettings.load(debug="maybe")

    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
