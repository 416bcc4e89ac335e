"""``settings_rules``: type, required, pattern, min_length and default by dotted key."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from tether.settings import Rule, SettingsError

from .models import AppSettings, Loose


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def problems(error: pytest.ExceptionInfo[SettingsError]) -> set[tuple[str, str, int | None]]:
    return {(p.key, p.source, p.line) for p in error.value.problems}


def test_a_rule_type_converts_an_untyped_value(workdir: Path) -> None:
    class Rules(Loose):
        settings_rules: ClassVar[dict[str, Rule]] = {"queue.workers": Rule(type=int)}

    write(workdir / "config.yaml", "queue:\n  workers: '8'\n")

    assert Rules.load("config.yaml").get("queue.workers") == 8


def test_a_rule_type_failure_names_key_source_and_type(workdir: Path) -> None:
    class Rules(Loose):
        settings_rules: ClassVar[dict[str, Rule]] = {"queue.workers": Rule(type=int)}

    write(workdir / "config.yaml", "queue:\n  workers: many\n")

    with pytest.raises(SettingsError) as caught:
        Rules.load("config.yaml")

    assert problems(caught) == {("queue.workers", "config.yaml", 2)}
    assert "queue.workers (config.yaml:2): should be of type int" in str(caught.value)


def test_a_required_key_that_nobody_sets_fails(workdir: Path) -> None:
    class Rules(Loose):
        settings_rules: ClassVar[dict[str, Rule]] = {"database.url": Rule(required=True)}

    with pytest.raises(SettingsError) as caught:
        Rules.load()

    (problem,) = caught.value.problems
    assert (problem.key, problem.source) == ("database.url", "not set")
    assert "TTEST_DATABASE__URL" in problem.expected


def test_a_null_value_counts_as_not_set(workdir: Path) -> None:
    class Rules(Loose):
        settings_rules: ClassVar[dict[str, Rule]] = {"database.url": Rule(required=True)}

    write(workdir / "config.yaml", "database:\n  url:\n")

    with pytest.raises(SettingsError, match="a value is required"):
        Rules.load("config.yaml")


def test_a_pattern_failure_names_the_pattern_and_the_source(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Rules(AppSettings):
        settings_rules: ClassVar[dict[str, Rule]] = {
            "database.url": Rule(required=True, pattern=r"^postgres(ql)?://")
        }

    monkeypatch.setenv("TTEST_DATABASE__URL", "mysql://db/app")

    with pytest.raises(SettingsError) as caught:
        Rules.load()

    assert problems(caught) == {("database.url", "env TTEST_DATABASE__URL", None)}
    assert "should be text matching the pattern '^postgres(ql)?://'" in str(caught.value)


def test_a_value_matching_the_pattern_passes(workdir: Path) -> None:
    class Rules(AppSettings):
        settings_rules: ClassVar[dict[str, Rule]] = {"database.url": Rule(pattern=r"^postgres://")}

    assert Rules.load(database={"url": "postgres://db/app"}).database.url == "postgres://db/app"


def test_a_min_length_failure_is_reported(workdir: Path) -> None:
    class Rules(AppSettings):
        settings_rules: ClassVar[dict[str, Rule]] = {"name": Rule(min_length=5)}

    write(workdir / "config.yaml", "debug: true\nname: api\n")

    with pytest.raises(SettingsError) as caught:
        Rules.load("config.yaml")

    assert problems(caught) == {("name", "config.yaml", 2)}
    assert "should have a length of at least 5" in str(caught.value)


def test_min_length_counts_list_items(workdir: Path) -> None:
    class Rules(AppSettings):
        settings_rules: ClassVar[dict[str, Rule]] = {"hosts": Rule(min_length=2)}

    with pytest.raises(SettingsError):
        Rules.load(hosts=["only-one"])


def test_a_default_fills_a_key_nobody_sets(workdir: Path) -> None:
    class Rules(Loose):
        settings_rules: ClassVar[dict[str, Rule]] = {"cache.ttl": Rule(type=int, default="60")}

    settings = Rules.load()

    assert settings.get("cache.ttl") == 60
    assert settings.source_of("cache.ttl") == "default"


def test_a_set_value_wins_over_the_rule_default(workdir: Path) -> None:
    class Rules(Loose):
        settings_rules: ClassVar[dict[str, Rule]] = {"cache.ttl": Rule(type=int, default=60)}

    write(workdir / "config.yaml", "cache:\n  ttl: 5\n")

    assert Rules.load("config.yaml").get("cache.ttl") == 5


def test_rule_and_model_problems_are_reported_together(workdir: Path) -> None:
    class Rules(AppSettings):
        settings_rules: ClassVar[dict[str, Rule]] = {"name": Rule(pattern=r"^[a-z]+$")}

    write(workdir / "config.yaml", "name: Not Valid\ndebug: maybe\n")

    with pytest.raises(SettingsError) as caught:
        Rules.load("config.yaml")

    assert problems(caught) == {("name", "config.yaml", 1), ("debug", "config.yaml", 2)}


def test_a_rule_does_not_change_the_callers_own_mapping(workdir: Path) -> None:
    class Rules(Loose):
        settings_rules: ClassVar[dict[str, Rule]] = {"queue.workers": Rule(type=int, default=4)}

    queue: dict[str, object] = {"name": "jobs"}

    settings = Rules.load(queue=queue)

    assert settings.get("queue.workers") == 4
    assert queue == {"name": "jobs"}


def test_an_invalid_pattern_is_refused_when_the_rule_is_made() -> None:
    with pytest.raises(ValueError, match="not a valid regex"):
        Rule(pattern="([")


def test_a_negative_min_length_is_refused() -> None:
    with pytest.raises(ValueError, match="min_length"):
        Rule(min_length=-1)


def test_settings_rules_must_map_keys_to_rules() -> None:
    with pytest.raises(TypeError, match="maps dotted keys to Rule"):

        class Wrong(Loose):
            settings_rules: ClassVar[dict[str, Rule]] = {"a.b": "required"}  # type: ignore[dict-item]
