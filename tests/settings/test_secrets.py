"""Scenario O1: a DSN with a password, a JWT secret and a Redis password never show in a
repr, a dump, an error message or a log line."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import ClassVar

import pytest

from tether.settings import Rule, SettingsError

from .models import SecretSettings

DSN_PASSWORD = "dsn-pw-9f3a"
JWT_SECRET = "jwt-secret-0123456789abcdef0123456789"
REDIS_PASSWORD = "redis-pw-77c1"
SECRETS = (DSN_PASSWORD, JWT_SECRET, REDIS_PASSWORD)

CONFIG = f"""\
credentials:
  dsn: postgres://app:{DSN_PASSWORD}@127.0.0.1:5432/app
  jwt_secret: {JWT_SECRET}
  redis_password: {REDIS_PASSWORD}
"""


def assert_no_secret(text: str) -> None:
    leaked = [secret for secret in SECRETS if secret in text]
    assert leaked == [], text


def full_report(error: BaseException) -> str:
    return "".join(traceback.format_exception(error)) + repr(error) + repr(error.args)


@pytest.fixture
def config(workdir: Path) -> Path:
    path = workdir / "config.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_secrets_are_masked_in_repr_and_str(config: Path) -> None:
    settings = SecretSettings.load("config.yaml")

    assert_no_secret(repr(settings))
    assert_no_secret(str(settings))
    assert_no_secret(repr(settings.credentials))
    assert settings.credentials.jwt_secret.get_secret_value() == JWT_SECRET


def test_secrets_are_masked_in_json_and_python_dumps(config: Path) -> None:
    settings = SecretSettings.load("config.yaml")

    assert_no_secret(settings.model_dump_json())
    assert_no_secret(repr(settings.model_dump()))
    assert '"dsn":"**********"' in settings.model_dump_json()


def test_secrets_stay_masked_through_get_and_by_prefix(config: Path) -> None:
    settings = SecretSettings.load("config.yaml")

    assert_no_secret(repr(settings.get("credentials.dsn")))
    assert_no_secret(repr(settings.by_prefix("credentials.")))


def test_another_keys_error_does_not_show_the_secrets(config: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        SecretSettings.load("config.yaml", workers="many")

    assert [p.key for p in caught.value.problems] == ["workers"]
    assert_no_secret(full_report(caught.value))


def test_a_secret_that_fails_validation_is_not_shown(workdir: Path) -> None:
    # pydantic's own ValidationError would print input_value='short-jwt-secret'.
    (workdir / "config.yaml").write_text(
        CONFIG.replace(JWT_SECRET, "short-jwt-secret"), encoding="utf-8"
    )

    with pytest.raises(SettingsError) as caught:
        SecretSettings.load("config.yaml")

    (problem,) = caught.value.problems
    assert (problem.key, problem.line) == ("credentials.jwt_secret", 3)
    assert "short-jwt-secret" not in full_report(caught.value)


def test_a_secret_that_fails_a_rule_is_not_shown(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Strict(SecretSettings):
        settings_rules: ClassVar[dict[str, Rule]] = {
            "credentials.redis_password": Rule(min_length=32)
        }

    with pytest.raises(SettingsError) as caught:
        Strict.load("config.yaml")

    assert [p.key for p in caught.value.problems] == ["credentials.redis_password"]
    assert_no_secret(full_report(caught.value))


def test_a_secret_from_the_environment_is_not_shown_in_errors(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTEST_CREDENTIALS__JWT_SECRET", "env-jwt-too-short")
    monkeypatch.setenv("TTEST_WORKERS", "many")

    with pytest.raises(SettingsError) as caught:
        SecretSettings.load("config.yaml")

    assert {p.source for p in caught.value.problems} == {
        "env TTEST_CREDENTIALS__JWT_SECRET",
        "env TTEST_WORKERS",
    }
    assert "env-jwt-too-short" not in full_report(caught.value)
    assert_no_secret(full_report(caught.value))


def test_a_yaml_syntax_error_on_a_secrets_line_does_not_quote_it(workdir: Path) -> None:
    (workdir / "config.yaml").write_text(
        f"credentials:\n  dsn: '{DSN_PASSWORD}\n  jwt_secret: {JWT_SECRET}: x\n",
        encoding="utf-8",
    )

    with pytest.raises(SettingsError) as caught:
        SecretSettings.load("config.yaml")

    assert_no_secret(full_report(caught.value))


def test_nothing_logged_while_loading_or_failing_shows_a_secret(
    config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = SecretSettings.load("config.yaml")
    logging.getLogger("app").info("settings: %s / %r", settings, settings)
    try:
        SecretSettings.load("config.yaml", workers="many")
    except SettingsError:
        logging.getLogger("app").exception("could not load settings")

    assert "SecretSettings loaded (profile development) from config.yaml" in caplog.text
    assert "could not load settings" in caplog.text
    assert_no_secret(caplog.text)
