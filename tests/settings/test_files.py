"""``load_file``: one YAML/TOML/JSON file, the line of every key, and refusals that name
the file, the line and (where there is one) the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tether import _settings_files
from tether.settings import ConfigFile, SettingsError, load_file

from .models import ResourcesFile, SecretSettings


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def only_problem(error: pytest.ExceptionInfo[SettingsError]) -> tuple[str, str, int | None]:
    (problem,) = error.value.problems
    return problem.key, Path(problem.source).name, problem.line


@pytest.fixture(params=["libyaml", "pure-python"])
def yaml_loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The YAML tests run with libyaml's parser (used when PyYAML has it) and without."""
    if request.param == "pure-python":
        monkeypatch.setattr(_settings_files, "_Loader", yaml.SafeLoader)
    elif not yaml.__with_libyaml__:
        pytest.skip("PyYAML was built without libyaml")


YAML = """\
database:
  url: postgres://db/app
  pool_size: 5
hosts:
  - a.internal
  - b.internal
"""


def test_yaml_keys_and_list_items_get_their_lines(tmp_path: Path, yaml_loader: None) -> None:
    file = load_file(write(tmp_path / "config.yaml", YAML))

    assert file.data["database"]["pool_size"] == 5
    assert dict(file.lines) == {
        "database": 1,
        "database.url": 2,
        "database.pool_size": 3,
        "hosts": 4,
        "hosts.0": 5,
        "hosts.1": 6,
    }


def test_a_key_without_a_line_takes_its_nearest_parents(tmp_path: Path) -> None:
    file = load_file(write(tmp_path / "config.yaml", YAML))

    assert file.line_of("database.url.scheme") == 2
    assert file.where("database.nothing") == f"{tmp_path / 'config.yaml'}:1"
    assert file.line_of("elsewhere") is None


TOML = """\
# service
name = "api"
[database]
url = "postgres://db/app"
options.timeout = 3
description = \"\"\"
fake = 1
\"\"\"
[[servers]]
host = "a"
[[servers]]
host = "b"
"""


def test_toml_keys_tables_and_arrays_of_tables_get_their_lines(tmp_path: Path) -> None:
    file = load_file(write(tmp_path / "config.toml", TOML))

    assert file.data["servers"][1]["host"] == "b"
    assert file.lines["name"] == 2
    assert file.lines["database"] == 3
    assert file.lines["database.url"] == 4
    assert file.lines["database.options.timeout"] == 5
    assert "database.fake" not in file.lines  # inside a multi-line string
    assert file.lines["servers.0.host"] == 10
    assert file.lines["servers.1.host"] == 12


JSON = """\
{
  "database": {
    "url": "postgres://db/app",
    "pool_size": 5
  },
  "hosts": [
    "a.internal",
    {"name": "b.internal"}
  ]
}
"""


def test_json_keys_and_list_items_get_their_lines(tmp_path: Path) -> None:
    file = load_file(write(tmp_path / "config.json", JSON))

    assert file.data["hosts"][1] == {"name": "b.internal"}
    assert dict(file.lines) == {
        "database": 2,
        "database.url": 3,
        "database.pool_size": 4,
        "hosts": 6,
        "hosts.0": 7,
        "hosts.1": 8,
        "hosts.1.name": 8,
    }


def test_a_200_key_file_indexes_every_key(tmp_path: Path) -> None:
    text = "".join(f"section{i // 10}:\n" * (i % 10 == 0) + f"  key{i}: {i}\n" for i in range(200))

    file = load_file(write(tmp_path / "big.yaml", text))

    assert file.line_of("section19.key199") == 220
    assert len([key for key in file.lines if "." in key]) == 200


def test_an_empty_file_is_an_empty_mapping(tmp_path: Path) -> None:
    for name in ("empty.yaml", "empty.toml", "empty.json"):
        assert load_file(write(tmp_path / name, "")).data == {}


def test_an_unsafe_yaml_tag_is_refused_with_its_key_and_line(
    tmp_path: Path, yaml_loader: None
) -> None:
    marker = tmp_path / "ran"
    text = f"name: api\njobs:\n  cleanup: !!python/object/apply:os.system ['touch {marker}']\n"

    with pytest.raises(SettingsError) as caught:
        load_file(write(tmp_path / "resources.yaml", text))

    assert only_problem(caught) == ("jobs.cleanup", "resources.yaml", 3)
    assert "!!python/object/apply:os.system" in str(caught.value)
    assert "refused" in str(caught.value)
    assert not marker.exists()


def test_an_unsafe_yaml_tag_is_refused_when_loading_settings(workdir: Path) -> None:
    write(workdir / "config.yaml", "credentials: !!python/object/new:os.system [id]\n")

    with pytest.raises(SettingsError) as caught:
        SecretSettings.load("config.yaml")

    assert only_problem(caught) == ("credentials", "config.yaml", 1)


def test_a_local_yaml_tag_is_refused_too(tmp_path: Path, yaml_loader: None) -> None:
    with pytest.raises(SettingsError) as caught:
        load_file(write(tmp_path / "config.yaml", "a: 1\nb: !include secrets.yaml\n"))

    assert only_problem(caught) == ("b", "config.yaml", 2)


def test_a_key_given_twice_in_yaml_is_refused_with_both_lines(
    tmp_path: Path, yaml_loader: None
) -> None:
    text = "database:\n  url: a\n  pool_size: 1\n  url: b\n"

    with pytest.raises(SettingsError) as caught:
        load_file(write(tmp_path / "config.yaml", text))

    assert only_problem(caught) == ("database.url", "config.yaml", 4)
    assert "also on line 2" in str(caught.value)


def test_yaml_anchors_and_merge_keys_load(tmp_path: Path, yaml_loader: None) -> None:
    text = (
        "base: &base\n  timeout: 3\nextra: &extra\n  retries: 2\n"
        "api:\n  <<: *base\n  url: x\nworker:\n  <<: [*base, *extra]\nother: *base\n"
    )

    file = load_file(write(tmp_path / "config.yaml", text))

    assert file.data["api"] == {"timeout": 3, "url": "x"}
    assert file.data["worker"] == {"timeout": 3, "retries": 2}
    assert file.data["other"] == {"timeout": 3}
    assert file.line_of("api.timeout") == 5  # the merged key has the line of ``api``
    assert "worker.0" not in file.lines


def test_a_self_referencing_yaml_alias_does_not_hang(tmp_path: Path, yaml_loader: None) -> None:
    file = load_file(write(tmp_path / "config.yaml", "loop: &a [1, *a]\n"))

    assert file.data["loop"][1] is file.data["loop"]


def test_a_yaml_syntax_error_names_the_line_but_not_its_text(
    tmp_path: Path, yaml_loader: None
) -> None:
    text = "name: api\npassword: 'hunter2-secret\nother: 1\n"

    with pytest.raises(SettingsError) as caught:
        load_file(write(tmp_path / "config.yaml", text))

    key, source, line = only_problem(caught)
    assert (key, source) == ("", "config.yaml")
    assert line is not None
    assert line >= 2
    assert "hunter2-secret" not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


def test_a_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_file(write(tmp_path / "config.toml", 'name = "api"\nport = = 3\n'))

    assert only_problem(caught) == ("", "config.toml", 2)
    assert "valid TOML" in str(caught.value)


def test_a_json_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_file(write(tmp_path / "config.json", '{\n  "name": "api",\n  "port": ,\n}\n'))

    assert only_problem(caught) == ("", "config.json", 3)


def test_a_file_whose_top_level_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_file(write(tmp_path / "config.yaml", "- a\n- b\n"))

    assert "not a list" in str(caught.value)


def test_an_unknown_extension_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        load_file(write(tmp_path / "config.ini", "[a]\n"))

    assert ".yaml" in str(caught.value)


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"name: \xff\n")

    with pytest.raises(SettingsError, match="UTF-8"):
        load_file(path)


def test_validate_reports_file_key_path_and_line_through_tagged_unions(tmp_path: Path) -> None:
    text = (
        "resources:\n"
        "  api:\n"
        "    type: http\n"
        "    base_url: http://127.0.0.1:8080\n"
        "    timeout: soon\n"
        "  cache:\n"
        "    type: redis\n"
    )
    file = load_file(write(tmp_path / "resources.yaml", text))

    with pytest.raises(SettingsError) as caught:
        file.validate(ResourcesFile)

    found = {(p.key, Path(p.source).name, p.line) for p in caught.value.problems}
    assert found == {
        ("resources.api.timeout", "resources.yaml", 5),
        ("resources.cache.url", "resources.yaml", 6),
    }


def test_validate_can_start_at_a_key(tmp_path: Path) -> None:
    text = "app:\n  resources:\n    api: {type: http, base_url: 'http://x', timeout: -}\n"
    file = load_file(write(tmp_path / "resources.yaml", text))

    with pytest.raises(SettingsError) as caught:
        file.validate(ResourcesFile, "app")

    assert only_problem(caught) == ("app.resources.api.timeout", "resources.yaml", 3)


def test_validate_returns_the_model(tmp_path: Path) -> None:
    text = "resources:\n  api: {type: http, base_url: 'http://127.0.0.1:1'}\n"

    parsed = load_file(write(tmp_path / "r.yaml", text)).validate(ResourcesFile)

    assert parsed.resources["api"].type == "http"


def test_a_config_file_repr_shows_no_values(tmp_path: Path) -> None:
    file = load_file(write(tmp_path / "c.yaml", "password: hunter2-secret\n"))

    assert "hunter2-secret" not in repr(file)
    assert isinstance(file, ConfigFile)
