"""RedisConfig: safe defaults, checks that name the field, the URL kept secret."""

from __future__ import annotations

import pydantic
import pytest

from tether.resources.redis import RedisClient, RedisConfig

SECRET = "pa55-w0rd-xyz"


def test_defaults_are_bounded() -> None:
    config = RedisConfig()

    assert config.name == "redis"
    assert config.url == "redis://127.0.0.1:6379/0"
    assert config.password is None
    assert (config.max_connections, config.pool_timeout) == (20, 5.0)
    assert (config.socket_timeout, config.socket_connect_timeout) == (5.0, 5.0)
    assert (config.timeout, config.max_retries) == (10.0, 0)
    assert not config.is_cluster
    assert not config.decode_responses


def test_config_is_frozen() -> None:
    config = RedisConfig()

    with pytest.raises(pydantic.ValidationError):
        config.max_connections = 5  # type: ignore[misc]


def test_unknown_option_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="max_conections"):
        RedisConfig(max_conections=5)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_connections", 0), ("pool_timeout", 0), ("socket_timeout", -1),
     ("socket_connect_timeout", 0), ("health_check_interval", -1), ("timeout", 0)],
)
def test_out_of_range_values_name_the_field(field: str, value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        RedisConfig.model_validate({field: value})


def test_wrong_scheme_is_refused_with_the_field_named() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"url: the scheme must be one of"):
        RedisConfig(url="http://127.0.0.1:6379")


def test_bad_query_option_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"url: Invalid value for 'socket_timeout'"):
        RedisConfig(url="redis://127.0.0.1:6379/0?socket_timeout=soon")


def test_cluster_url_with_a_database_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="only database 0"):
        RedisConfig(url="redis+cluster://127.0.0.1:7000/3")


def test_cluster_over_a_unix_socket_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="unix"):
        RedisConfig(url="unix:///tmp/redis.sock", cluster=True)


@pytest.mark.parametrize("url", ["redis+cluster://127.0.0.1:7000", "rediss+cluster://h:7000"])
def test_cluster_url_means_cluster(url: str) -> None:
    assert RedisConfig(url=url).is_cluster


def test_cluster_flag_means_cluster() -> None:
    assert RedisConfig(url="redis://127.0.0.1:7000", cluster=True).is_cluster


def test_credentials_in_the_url_move_to_their_fields() -> None:
    config = RedisConfig(url=f"redis://ann:{SECRET}@127.0.0.1:6379/2?socket_keepalive=yes")

    assert config.url == "redis://127.0.0.1:6379/2?socket_keepalive=yes"
    assert config.username == "ann"
    assert config.password is not None
    assert config.password.get_secret_value() == SECRET


def test_password_query_option_moves_to_the_password_field() -> None:
    config = RedisConfig(url=f"redis://127.0.0.1:6379/0?password={SECRET}")

    assert config.url == "redis://127.0.0.1:6379/0"
    assert config.password is not None
    assert config.password.get_secret_value() == SECRET


def test_password_leaves_a_unix_socket_url_intact() -> None:
    config = RedisConfig(url=f"unix:///run/redis.sock?db=2&password={SECRET}")

    assert config.url == "unix:///run/redis.sock?db=2"
    assert config.password is not None
    assert config.password.get_secret_value() == SECRET


def test_percent_encoded_password_is_decoded() -> None:
    config = RedisConfig(url="redis://:p%40ss@127.0.0.1:6379/0")

    assert config.password is not None
    assert config.password.get_secret_value() == "p@ss"


def test_credentials_given_twice_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="give them one way") as caught:
        RedisConfig(url=f"redis://:{SECRET}@127.0.0.1:6379/0", password="other")

    assert SECRET not in str(caught.value)


def test_password_is_not_in_repr_or_dump() -> None:
    config = RedisConfig(url=f"redis://:{SECRET}@127.0.0.1:6379/0")

    assert SECRET not in repr(config)
    assert SECRET not in str(config.model_dump())
    assert SECRET not in config.model_dump_json()
    assert SECRET not in repr(RedisClient(config))


def test_password_is_not_in_a_validation_error() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        RedisConfig(url=f"http://:{SECRET}@127.0.0.1:6379/0")

    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value.errors())
