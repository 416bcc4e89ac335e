"""``get``, ``by_prefix`` and ``source_of``: dotted keys on a loaded instance."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from .models import AppSettings, Database, Loose, SecretSettings


@pytest.fixture
def settings(workdir: Path) -> AppSettings:
    (workdir / "config.yaml").write_text(
        "database:\n  url: postgres://db/app\n  password: pw-1\nhosts: [a, b]\n"
    )
    return AppSettings.load("config.yaml")


def test_get_follows_a_dotted_key_through_nested_models(settings: AppSettings) -> None:
    assert settings.get("database.url") == "postgres://db/app"
    assert settings.get("database") == settings.database


def test_get_indexes_lists(settings: AppSettings) -> None:
    assert settings.get("hosts.1") == "b"


def test_get_returns_secrets_as_secret_str(settings: AppSettings) -> None:
    password = settings.get("database.password")

    assert isinstance(password, SecretStr)
    assert password.get_secret_value() == "pw-1"


def test_get_returns_the_default_for_a_missing_key(settings: AppSettings) -> None:
    assert settings.get("database.replica", default=None) is None
    assert settings.get("cache.ttl", 30) == 30


def test_get_of_a_missing_key_names_it_and_the_close_keys(settings: AppSettings) -> None:
    with pytest.raises(KeyError) as caught:
        settings.get("database.ulr")

    message = str(caught.value)
    assert "no setting 'database.ulr'" in message
    assert "did you mean 'database.url'?" in message
    assert "keys under 'database': url, password, pool_size" in message


def test_get_of_a_missing_top_level_key_lists_the_top_level(settings: AppSettings) -> None:
    with pytest.raises(KeyError, match="keys at the top level: database, debug, name, hosts"):
        settings.get("cache.ttl")


def test_get_reads_keys_of_an_extra_allowed_model(workdir: Path) -> None:
    (workdir / "config.yaml").write_text("feature:\n  flags:\n    beta: true\n")

    assert Loose.load("config.yaml").get("feature.flags.beta") is True


def test_by_prefix_returns_flat_dotted_keys(settings: AppSettings) -> None:
    assert settings.by_prefix("database.") == {
        "database.url": "postgres://db/app",
        "database.password": SecretStr("pw-1"),
        "database.pool_size": 5,
    }


def test_by_prefix_keeps_lists_whole(settings: AppSettings) -> None:
    assert settings.by_prefix("hosts") == {"hosts": ["a", "b"]}


def test_by_prefix_without_a_dot_matches_the_start_of_a_key(settings: AppSettings) -> None:
    assert settings.by_prefix("database.p") == {
        "database.password": SecretStr("pw-1"),
        "database.pool_size": 5,
    }


def test_by_prefix_of_an_empty_prefix_is_every_leaf(settings: AppSettings) -> None:
    assert set(settings.by_prefix("")) == {
        "database.url",
        "database.password",
        "database.pool_size",
        "debug",
        "name",
        "hosts",
    }


def test_by_prefix_of_an_unknown_section_is_empty(settings: AppSettings) -> None:
    assert settings.by_prefix("cache.") == {}


def test_source_of_names_each_source(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / "config.yaml").write_text("name: file\ndatabase:\n  url: postgres://f/app\n")
    (workdir / ".env").write_text("TTEST_DATABASE__POOL_SIZE=8\n")
    monkeypatch.setenv("TTEST_HOSTS", '["a"]')

    settings = AppSettings.load("config.yaml", debug=True)

    assert settings.source_of("debug") == "init"
    assert settings.source_of("hosts") == "env TTEST_HOSTS"
    assert settings.source_of("database.pool_size") == ".env:1"
    assert settings.source_of("database.url") == "config.yaml:3"
    assert settings.source_of("name") == "config.yaml:1"
    assert settings.source_of("database.password") == "default"


def test_source_of_a_section_given_as_json_names_its_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTEST_DATABASE", '{"url": "postgres://env/app"}')

    assert AppSettings.load().source_of("database.url") == "env TTEST_DATABASE"


def test_source_of_a_missing_key_raises_key_error(settings: AppSettings) -> None:
    with pytest.raises(KeyError):
        settings.source_of("database.nothing")


def test_source_of_is_unknown_for_an_instance_built_without_its_constructor() -> None:
    settings = AppSettings.model_construct(database=Database())

    assert settings.source_of("database.url") == "unknown"
    assert settings.active_profile is None


def test_an_instance_keeps_key_names_but_not_values_of_its_sources(workdir: Path) -> None:
    (workdir / "config.yaml").write_text(
        "credentials:\n  dsn: d-secret-1\n  jwt_secret: " + "j" * 40 + "\n  redis_password: r\n"
    )

    settings = SecretSettings.load("config.yaml")

    # The record of where values came from holds keys and lines only.
    origins = settings._tether_origins
    assert origins is not None
    assert all("d-secret-1" not in repr(vars(o) if hasattr(o, "__dict__") else o) for o in origins)
    assert settings.source_of("credentials.dsn") == "config.yaml:2"
