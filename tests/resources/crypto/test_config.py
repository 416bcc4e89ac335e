"""CryptoConfig: safe defaults, durations, and refusals that name the field."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pydantic
import pytest

from tether.resources.crypto import CryptoConfig


def test_defaults_are_aes_gcm_with_generated_keys_and_owasp_iterations() -> None:
    config = CryptoConfig()

    assert config.name == "default"
    assert config.algorithm == "AES_256_GCM"
    assert config.key_source == "generated"
    assert config.key_rotation_interval is None
    assert config.max_uses_per_key == 2**28  # far below the 2**32 random-nonce limit
    assert config.password_hash == "pbkdf2-sha256"
    assert config.password_iterations == 600_000


@pytest.mark.parametrize(
    ("given", "seconds"),
    [("30d", 30 * 86400), ("12h", 12 * 3600), ("90m", 5400), ("45s", 45), ("2w", 14 * 86400),
     ("1.5h", 5400), (3600, 3600), (0.5, 0.5), (timedelta(days=1), 86400)],
)
def test_rotation_interval_takes_seconds_or_a_duration(given: object, seconds: float) -> None:
    config = CryptoConfig(key_rotation_interval=given)

    assert config.key_rotation_interval == seconds


@pytest.mark.parametrize("given", ["soon", "30 days", "-1d", "0", 0, -5])
def test_rotation_interval_that_is_not_a_positive_duration_is_refused(given: object) -> None:
    with pytest.raises(pydantic.ValidationError, match="key_rotation_interval"):
        CryptoConfig(key_rotation_interval=given)


def test_key_size_must_match_the_algorithm() -> None:
    assert CryptoConfig(algorithm="RSA_4096", key_size=4096).key_size == 4096

    with pytest.raises(pydantic.ValidationError, match=r"key_size=2048 does not match"):
        CryptoConfig(algorithm="AES_256_GCM", key_size=2048)


def test_rsa_keys_under_2048_bits_are_refused_in_the_config() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"key_size=1024: RSA keys under 2048"):
        CryptoConfig(algorithm="RSA_2048", key_size=1024)


@pytest.mark.parametrize("algorithm", ["RSA_1024", "RSA_PKCS1V15", "AES_128_GCM", "DES"])
def test_algorithms_outside_the_list_are_refused(algorithm: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="algorithm"):
        CryptoConfig(algorithm=algorithm)


def test_there_is_no_option_for_pkcs1v15_padding() -> None:
    with pytest.raises(pydantic.ValidationError, match="padding"):
        CryptoConfig(algorithm="RSA_2048", padding="PKCS1v15")  # type: ignore[call-arg]


def test_usage_cap_above_the_gcm_nonce_limit_is_refused() -> None:
    assert CryptoConfig(max_uses_per_key=2**32).max_uses_per_key == 2**32

    with pytest.raises(pydantic.ValidationError, match=r"max_uses_per_key=4294967297 is over"):
        CryptoConfig(max_uses_per_key=2**32 + 1)


def test_env_source_needs_the_variable_name() -> None:
    with pytest.raises(pydantic.ValidationError, match="key_source='env' needs key_env"):
        CryptoConfig(key_source="env")


def test_file_source_needs_the_path() -> None:
    with pytest.raises(pydantic.ValidationError, match="key_source='file' needs key_file"):
        CryptoConfig(key_source="file")


def test_a_key_file_without_the_file_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(pydantic.ValidationError, match="key_file is set but key_source"):
        CryptoConfig(key_file=tmp_path / "keys.json")


def test_keys_from_the_environment_cannot_rotate_on_a_timer() -> None:
    with pytest.raises(pydantic.ValidationError, match="key_rotation_interval cannot rotate"):
        CryptoConfig(key_source="env", key_env="KEYS", key_rotation_interval="30d")


@pytest.mark.parametrize(
    ("scheme", "iterations"), [("pbkdf2-sha256", 599_999), ("pbkdf2-sha512", 209_999)]
)
def test_password_iterations_under_owasp_minimum_are_refused(scheme: str, iterations: int) -> None:
    with pytest.raises(pydantic.ValidationError, match=r"password_iterations=.* under OWASP"):
        CryptoConfig(password_hash=scheme, password_iterations=iterations)


def test_sha512_passwords_accept_owasp_210k() -> None:
    config = CryptoConfig(password_hash="pbkdf2-sha512", password_iterations=210_000)

    assert config.password_iterations == 210_000


def test_config_is_frozen_and_refuses_unknown_keys() -> None:
    config = CryptoConfig()

    with pytest.raises(pydantic.ValidationError):
        config.algorithm = "RSA_2048"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="rotation"):
        CryptoConfig(rotation="30d")  # type: ignore[call-arg]


def test_import_without_the_extra_names_it() -> None:
    code = (
        "import sys; sys.modules['cryptography'] = None\n"
        "try:\n    import tether.resources.crypto\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30, check=True)

    assert out.stdout.strip() == (
        "tether.resources.crypto needs the 'crypto' extra: pip install 'tether[crypto]'"
    )
