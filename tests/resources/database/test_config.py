"""DatabaseConfig: defaults, validation, and a URL's password kept out of sight."""

from __future__ import annotations

import dataclasses

import pydantic
import pytest
import sqlalchemy.exc

from tether.exceptions import ResourceUnavailable
from tether.resources.database import Database, DatabaseConfig, DatabaseStats

PASSWORD = "hunter2-Zq9"
PG_URL = f"postgresql+asyncpg://app:{PASSWORD}@127.0.0.1:5432/app"


def test_defaults_are_the_documented_ones() -> None:
    config = DatabaseConfig(url="sqlite+aiosqlite://")

    assert (config.name, config.pool_size, config.max_overflow) == ("database", 5, 10)
    assert (config.pool_timeout, config.timeout, config.connect_timeout) == (5.0, 10.0, 5.0)
    assert (config.statement_timeout, config.client_connection_check_interval) == (30.0, 1.0)
    assert config.pool_pre_ping is True
    assert config.pool_recycle is None
    assert config.echo is False


def test_url_is_required() -> None:
    with pytest.raises(pydantic.ValidationError, match="url"):
        DatabaseConfig()  # type: ignore[call-arg]


def test_a_sync_driver_is_refused_with_the_async_one_to_use() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"url.*postgresql\+asyncpg://"):
        DatabaseConfig(url="postgresql://app@127.0.0.1/app")


def test_an_unreadable_url_is_refused_naming_the_field() -> None:
    with pytest.raises(pydantic.ValidationError, match="url is not a database URL"):
        DatabaseConfig(url="not a url")


def test_a_refused_url_is_not_repeated_in_the_error() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        DatabaseConfig(url=f"postgresql://app:{PASSWORD}@127.0.0.1/app")

    assert PASSWORD not in str(caught.value)
    assert PASSWORD not in repr(caught.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("pool_size", 0), ("max_overflow", -1), ("pool_timeout", 0), ("statement_timeout", -1),
     ("connect_timeout", 0), ("client_connection_check_interval", 0), ("pool_recycle", 0)],
)
def test_out_of_range_options_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        DatabaseConfig(url="sqlite+aiosqlite://", **{field: value})


def test_unknown_options_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="max_connections"):
        DatabaseConfig(url="sqlite+aiosqlite://", max_connections=3)  # type: ignore[call-arg]


def test_config_is_frozen() -> None:
    config = DatabaseConfig(url="sqlite+aiosqlite://")

    with pytest.raises(pydantic.ValidationError):
        config.pool_size = 50  # type: ignore[misc]


def test_password_is_hidden_in_the_config_its_dump_and_the_database_repr() -> None:
    config = DatabaseConfig(url=PG_URL)

    shown = [repr(config), str(config), config.model_dump_json(), repr(config.model_dump()),
             repr(Database(config))]

    assert all(PASSWORD not in text for text in shown)
    assert "127.0.0.1:5432/app" in repr(Database(config))


def test_the_breaker_counts_database_failures_but_not_the_callers_sql_errors() -> None:
    policy = DatabaseConfig(url="sqlite+aiosqlite://", circuit_breaker_threshold=1).policy()
    breaker = policy.breaker
    assert breaker is not None

    caller_error = sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
    breaker.failure(caller_error, probe=False)
    assert breaker.state == "closed"

    breaker.failure(ResourceUnavailable("database", "connection lost"), probe=False)
    assert breaker.state == "open"


def test_statistics_are_a_frozen_slotted_value() -> None:
    stats = Database(DatabaseConfig(url="sqlite+aiosqlite://")).statistics()

    assert isinstance(stats, DatabaseStats)
    assert not hasattr(stats, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.checked_out = 3  # type: ignore[misc]
