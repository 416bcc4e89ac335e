"""HTTPConfig: safe defaults, validation messages that name the field."""

from __future__ import annotations

import pydantic
import pytest
from pydantic import SecretStr

from tether.resources.http import HTTPConfig


def test_defaults_are_safe_for_production() -> None:
    config = HTTPConfig()

    assert (config.name, config.backend) == ("http", "httpx")
    assert (config.max_connections, config.max_keepalive, config.keepalive_expiry) == \
        (100, 20, 5.0)
    assert (config.timeout, config.connect_timeout, config.read_timeout,
            config.pool_timeout) == (10.0, 5.0, 10.0, 5.0)
    assert config.verify is True
    assert config.insecure_skip_verify is False
    assert config.max_retries == 0
    assert config.follow_redirects is False
    assert config.server_errors_are_failures is False


def test_config_is_frozen() -> None:
    config = HTTPConfig()

    with pytest.raises(pydantic.ValidationError, match="frozen"):
        config.max_connections = 5  # type: ignore[misc]


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="max_conections"):
        HTTPConfig(max_conections=5)  # type: ignore[call-arg]


@pytest.mark.parametrize(("field", "value"), [
    ("max_connections", 0), ("max_keepalive", -1), ("connect_timeout", 0),
    ("read_timeout", -1), ("pool_timeout", 0), ("health_timeout", 0),
])
def test_out_of_range_numbers_are_refused_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        HTTPConfig(**{field: value})


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1:8080", "http://"])
def test_a_base_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="base_url must be an http"):
        HTTPConfig(base_url=url)


def test_a_base_url_with_a_query_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="base_url must not have a query"):
        HTTPConfig(base_url="http://127.0.0.1/?key=1")


def test_a_header_with_a_line_break_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="contains a line break"):
        HTTPConfig(headers={"X-Bad": "a\r\nInjected: 1"})


def test_a_header_name_that_is_not_a_token_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="not a valid header name"):
        HTTPConfig(headers={"Bad Name": "x"})


@pytest.mark.parametrize("name", ["Authorization", "cookie", "X-API-Key"])
def test_secret_headers_are_kept_as_secrets(name: str) -> None:
    config = HTTPConfig(headers={name: "t0ken", "X-Team": "core"})

    assert isinstance(config.headers[name], SecretStr)
    assert config.headers["X-Team"] == "core"
    assert "t0ken" not in repr(config)


def test_health_status_codes_must_be_http_statuses() -> None:
    with pytest.raises(pydantic.ValidationError, match="health_status codes must be 100-599"):
        HTTPConfig(health_status=(200, 700))


def test_an_unknown_backend_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="backend"):
        HTTPConfig(backend="requests")


def test_credentials_without_base_url_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="set base_url"):
        HTTPConfig(username="u", password=SecretStr("p"))
