"""Profiles: one variable picks ``config.<profile>.yaml`` layered on ``config.yaml``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether.settings import Settings, SettingsError

from .models import AppSettings


@pytest.fixture
def configs(workdir: Path) -> Path:
    (workdir / "config.yaml").write_text("name: base\ndebug: true\n")
    (workdir / "config.development.yaml").write_text("name: dev\n")
    (workdir / "config.production.yaml").write_text("name: prod\ndebug: false\n")
    return workdir


def test_the_default_profile_is_development_and_layers_its_file(configs: Path) -> None:
    settings = AppSettings.load("config.yaml")

    assert settings.active_profile == "development"
    assert (settings.name, settings.debug) == ("dev", True)


def test_the_prefixed_profile_variable_picks_the_production_file(
    configs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTEST_PROFILE", "production")

    settings = AppSettings.load("config.yaml")

    assert settings.active_profile == "production"
    assert (settings.name, settings.debug) == ("prod", False)
    assert settings.source_of("name") == "config.production.yaml:1"


def test_the_profile_can_be_set_in_dotenv(configs: Path) -> None:
    (configs / ".env").write_text("TTEST_PROFILE=production\n")

    assert AppSettings.load("config.yaml").name == "prod"


def test_the_profile_argument_wins_over_the_variable(
    configs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTEST_PROFILE", "production")

    assert AppSettings.load("config.yaml", profile="development").name == "dev"


def test_without_a_prefix_tether_profile_picks_the_profile(
    configs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Bare(Settings):
        name: str = "default"
        debug: bool = False

    monkeypatch.setenv("TETHER_PROFILE", "production")

    assert Bare.load("config.yaml").name == "prod"


def test_profile_env_names_another_variable(configs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Custom(AppSettings):
        profile_env = "TTEST_DEPLOYMENT"

    monkeypatch.setenv("TTEST_DEPLOYMENT", "production")

    assert Custom.load("config.yaml").name == "prod"


def test_default_profile_changes_the_fallback(configs: Path) -> None:
    class ProdFirst(AppSettings):
        default_profile = "production"

    assert ProdFirst.load("config.yaml").name == "prod"


def test_a_profile_without_its_own_file_uses_the_base_file(
    configs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTEST_PROFILE", "staging")

    settings = AppSettings.load("config.yaml")

    assert (settings.active_profile, settings.name) == ("staging", "base")


def test_each_file_is_followed_by_its_own_profile_file(
    configs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (configs / "local.yaml").write_text("name: local\n")
    (configs / "local.production.yaml").write_text("debug: true\n")
    monkeypatch.setenv("TTEST_PROFILE", "production")

    settings = AppSettings.load("config.yaml", "local.yaml")

    # config.yaml < config.production.yaml < local.yaml < local.production.yaml
    assert (settings.name, settings.debug) == ("local", True)


@pytest.mark.parametrize("bad", ["../etc/passwd", "prod/eu", ".hidden", "a b"])
def test_a_profile_that_is_not_a_plain_name_is_refused(
    configs: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("TTEST_PROFILE", bad)

    with pytest.raises(SettingsError) as caught:
        AppSettings.load("config.yaml")

    (problem,) = caught.value.problems
    assert (problem.key, problem.source) == ("TTEST_PROFILE", "env TTEST_PROFILE")
    assert "profile name" in problem.expected
