"""``ModelsConfig``: defaults, validation, the load policy it describes."""

from __future__ import annotations

import pydantic
import pytest

from tether.resources.models import ModelsConfig


def test_defaults_suit_production() -> None:
    config = ModelsConfig()

    assert config.name == "models"
    assert config.max_loaded is None
    assert config.timeout == 300.0
    assert config.max_retries == 0
    assert config.warm_up is True
    assert (config.check_timeout, config.unload_timeout, config.close_timeout) == \
        (5.0, 5.0, 3.0)
    # dispose() is bounded by close_timeout + unload_timeout, inside the container's
    # default dispose_timeout of 10 s.
    assert config.close_timeout + config.unload_timeout < 10.0


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_loaded", 0), ("timeout", 0), ("max_retries", -1), ("retry_backoff", -1),
     ("check_timeout", 0), ("unload_timeout", 0), ("close_timeout", 0), ("name", "")],
)
def test_config_refuses_values_out_of_range(field: str, value: object) -> None:
    with pytest.raises(pydantic.ValidationError, match=field):
        ModelsConfig(**{field: value})


def test_config_refuses_unknown_options() -> None:
    with pytest.raises(pydantic.ValidationError, match="load_retries"):
        ModelsConfig(load_retries=3)  # type: ignore[call-arg]


def test_config_is_frozen() -> None:
    config = ModelsConfig()

    with pytest.raises(pydantic.ValidationError, match="frozen"):
        config.max_loaded = 3  # type: ignore[misc]


def test_the_load_policy_retries_any_error_with_the_configured_backoff() -> None:
    config = ModelsConfig(max_retries=3, retry_backoff=0.5, retry_backoff_max=1.0)

    policy = config.load_policy("models[price]")

    assert policy.retry is not None
    assert policy.retry.attempts == 4
    assert policy.retry.retries(OSError("unreadable"), idempotent=True)
    assert policy.retry.retries(ValueError("bad weights"), idempotent=True)
    assert 1.0 <= policy.retry.backoff(5) <= 1.05
    assert policy.timeout == 300.0


def test_no_retries_and_no_breaker_by_default() -> None:
    policy = ModelsConfig().policy()

    assert policy.retry is None
    assert policy.breaker is None
