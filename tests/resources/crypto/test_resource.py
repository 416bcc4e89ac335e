"""Crypto as a resource: lifecycle, health, statistics, named backends in a Container."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import pytest

from tether import Container, HealthStatus, Inject
from tether.exceptions import ClosedError, DecryptionError, ResourceError
from tether.resources.crypto import (
    Crypto,
    CryptoConfig,
    CryptoStats,
    compare,
    hmac_sha256,
    sha256,
    sha512,
)

from .conftest import MakeCrypto, rsa_pem

pytestmark = pytest.mark.anyio


async def test_use_before_initialize_says_how_to_start_it() -> None:
    crypto = Crypto(CryptoConfig(name="aes"))

    with pytest.raises(ResourceError, match=r"^aes: not initialized: resolve it from the "):
        crypto.encrypt(b"x")
    with pytest.raises(ResourceError, match="not initialized"):
        await crypto.ahash_password("pw")


async def test_use_after_dispose_raises_closed_error() -> None:
    crypto = Crypto(CryptoConfig(name="aes"))
    await crypto.initialize()
    sealed = crypto.encrypt(b"x")
    await crypto.dispose()

    with pytest.raises(ClosedError, match=r"Crypto 'aes'"):
        crypto.decrypt(sealed)
    with pytest.raises(ClosedError):
        await crypto.asign(b"x")
    with pytest.raises(ClosedError):
        crypto.rotate()
    with pytest.raises(ClosedError):
        await crypto.initialize()


async def test_dispose_twice_is_harmless_and_stops_the_keeper() -> None:
    crypto = Crypto(CryptoConfig(key_rotation_interval="1h"))
    await crypto.initialize()
    keepers = [t for t in asyncio.all_tasks() if t.get_name() == "tether crypto default"]
    assert len(keepers) == 1

    await crypto.dispose()
    await crypto.dispose()

    assert keepers[0].done()


async def test_initialize_twice_keeps_the_keys(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()
    key_id = crypto.active_key_id

    await crypto.initialize()

    assert crypto.active_key_id == key_id


@pytest.mark.parametrize("algorithm", ["AES_256_GCM", "AES_256_CBC_HMAC", "RSA_2048"])
async def test_health_check_is_a_round_trip(make_crypto: MakeCrypto, algorithm: str) -> None:
    crypto = await make_crypto(algorithm=algorithm)

    assert await crypto.health_check() is True
    assert crypto.statistics().operations_total == 0  # health is not counted as traffic


async def test_statistics_count_operations_failures_keys_and_uses(
    make_crypto: MakeCrypto,
) -> None:
    crypto = await make_crypto()
    sealed = crypto.encrypt(b"a")
    crypto.encrypt(b"b")
    crypto.decrypt(sealed)
    for _ in range(2):
        with pytest.raises(DecryptionError):
            crypto.decrypt(sealed[:-1])
    crypto.rotate()
    await crypto.aencrypt(b"c")

    stats = crypto.statistics()

    assert isinstance(stats, CryptoStats)
    assert stats.operations_total == 6
    assert stats.failures_total == 2
    assert stats.failures_by_kind == {"DecryptionError": 2}
    assert stats.latency_seconds_total >= stats.latency_seconds_max > 0
    assert stats.rotations_total == 1
    assert stats.keys == 2
    assert stats.active_key_uses == 1
    assert 0 <= stats.active_key_age_seconds < 60


async def test_statistics_are_a_frozen_snapshot(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()
    before = crypto.statistics()
    crypto.encrypt(b"x")

    assert before.operations_total == 0
    with pytest.raises(AttributeError):
        before.operations_total = 5  # type: ignore[misc]


async def test_active_key_age_grows(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()
    first = crypto.statistics().active_key_age_seconds

    await asyncio.sleep(0.05)

    assert crypto.statistics().active_key_age_seconds > first


def test_repr_names_the_backend_and_no_key() -> None:
    crypto = Crypto(CryptoConfig(name="signing", algorithm="RSA_2048"))

    assert repr(crypto) == "Crypto(name='signing', algorithm='RSA_2048', key_source='generated')"


# -- in a container ---------------------------------------------------------------------


async def test_named_backends_side_by_side_in_a_container(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RSA_SIGNING_KEY", rsa_pem(2048))
    container = Container()
    container.bind(Crypto, Crypto(CryptoConfig()), name="default")
    container.bind(Crypto, Crypto(CryptoConfig(name="aes", algorithm="AES_256_CBC_HMAC")),
                   name="aes")
    container.bind(Crypto, Crypto(CryptoConfig(
        name="rsa", algorithm="RSA_2048", key_source="env", key_env="RSA_SIGNING_KEY",
    )), name="rsa", eager=True)

    async with container:
        default = await container.aget(Crypto, name="default")
        aes = await container.aget(Crypto, name="aes")
        rsa = await container.aget(Crypto, name="rsa")

        assert {default.name, aes.name, rsa.name} == {"default", "aes", "rsa"}
        assert default.decrypt(default.encrypt(b"1")) == b"1"
        assert aes.decrypt(aes.encrypt(b"2")) == b"2"
        rsa.verify(b"3", rsa.sign(b"3"))
        with pytest.raises(DecryptionError, match=r"^aes: "):
            aes.decrypt(default.encrypt(b"1"))

        report = await container.health()
        assert report.status is HealthStatus.HEALTHY
        assert {r.name: r.is_healthy for r in report.resources.values()} == {
            "Crypto[default]": True, "Crypto[aes]": True, "Crypto[rsa]": True,
        }
        stats = container.statistics()
        assert {name: s.operations_total for name, s in stats.items()} == {
            "Crypto[default]": 3, "Crypto[aes]": 3, "Crypto[rsa]": 2,
        }
        assert stats["Crypto[aes]"].failures_by_kind == {"DecryptionError": 1}

    with pytest.raises(ClosedError):
        default.encrypt(b"x")


async def test_autowired_from_its_config_and_injected_by_name() -> None:
    container = Container()
    container.bind(CryptoConfig, CryptoConfig(name="tokens"))
    container.bind(Crypto)

    @container.inject
    async def handler(crypto: Inject[Crypto]) -> bytes:
        return crypto.decrypt(crypto.encrypt(b"payload", b"ctx"), b"ctx")

    async with container:
        assert await handler() == b"payload"  # type: ignore[call-arg]
        assert (await container.aget(Crypto)).name == "tokens"


async def test_a_backend_that_cannot_load_its_keys_fails_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tether.exceptions import StartupError

    monkeypatch.delenv("MISSING_KEYS", raising=False)
    container = Container()
    container.bind(Crypto, Crypto(CryptoConfig(key_source="env", key_env="MISSING_KEYS")),
                   eager=True)

    with pytest.raises(StartupError, match="environment variable MISSING_KEYS is not set"):
        await container.start()


# -- hashing helpers --------------------------------------------------------------------


def test_sha256_and_sha512_known_answers() -> None:
    assert sha256(b"abc").hex() == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert sha512(b"abc") == hashlib.sha512(b"abc").digest()
    assert sha512(b"abc").hex().startswith("ddaf35a193617aba")


def test_hmac_sha256_matches_rfc_4231_case_2() -> None:
    assert hmac_sha256(b"Jefe", b"what do ya want for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_compare_takes_bytes_or_text() -> None:
    tag = hmac.digest(b"k", b"m", "sha256")

    assert compare(tag, tag)
    assert not compare(tag, tag[:-1] + b"\x00")
    assert compare("t\u00f6ken", "t\u00f6ken")
    assert not compare("token", b"tokem")
