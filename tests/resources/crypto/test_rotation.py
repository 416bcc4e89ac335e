"""K5 in one process: key ids, rotate, re-encrypt, retire, and keys from the environment."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tether.exceptions import (
    CryptoError,
    DecryptionError,
    InvalidSignature,
    ResourceError,
    UnknownKey,
)
from tether.resources.crypto import Crypto, CryptoConfig

from .conftest import MakeCrypto, rsa_pem

pytestmark = pytest.mark.anyio

KID = slice(2, 10)


@pytest.mark.parametrize("algorithm", ["AES_256_GCM", "AES_256_CBC_HMAC", "RSA_2048"])
async def test_old_data_still_decrypts_after_rotate_and_new_data_uses_the_new_key(
    make_crypto: MakeCrypto, algorithm: str
) -> None:
    crypto = await make_crypto(algorithm=algorithm, key_source="generated")
    first = crypto.active_key_id
    old = crypto.encrypt(b"old", b"ctx")

    second = crypto.rotate()
    new = crypto.encrypt(b"new", b"ctx")

    assert second == crypto.active_key_id != first
    assert crypto.key_ids == (first, second)
    assert (old[KID].hex(), new[KID].hex()) == (first, second)
    assert crypto.decrypt(old, b"ctx") == b"old"
    assert crypto.decrypt(new, b"ctx") == b"new"
    assert crypto.statistics().rotations_total == 1


async def test_old_signatures_verify_after_rotate_and_fail_once_retired(
    make_crypto: MakeCrypto,
) -> None:
    crypto = await make_crypto(algorithm="RSA_2048", key_source="generated")
    first = crypto.active_key_id
    signature = crypto.sign(b"data")

    await crypto.arotate()
    crypto.verify(b"data", signature)
    assert crypto.sign(b"data")[KID].hex() == crypto.active_key_id != first
    crypto.retire(first)

    with pytest.raises(InvalidSignature):
        crypto.verify(b"data", signature)


async def test_reencrypt_moves_data_to_the_active_key_so_the_old_one_can_retire(
    make_crypto: MakeCrypto,
) -> None:
    crypto = await make_crypto()
    first = crypto.active_key_id
    stored = [crypto.encrypt(f"row {i}".encode(), b"table:users") for i in range(5)]
    crypto.rotate()

    moved = [crypto.reencrypt(e, b"table:users") for e in stored]
    crypto.retire(first)

    assert {e[KID].hex() for e in moved} == {crypto.active_key_id}
    assert [crypto.decrypt(e, b"table:users") for e in moved] == [
        f"row {i}".encode() for i in range(5)
    ]
    with pytest.raises(DecryptionError):
        crypto.decrypt(stored[0], b"table:users")


async def test_reencrypt_leaves_an_envelope_under_the_active_key_as_it_is(
    make_crypto: MakeCrypto,
) -> None:
    crypto = await make_crypto()
    sealed = crypto.encrypt(b"x", b"ctx")

    assert await crypto.areencrypt(sealed, b"ctx") == sealed


async def test_reencrypt_of_a_tampered_envelope_raises_decryption_error(
    make_crypto: MakeCrypto,
) -> None:
    crypto = await make_crypto()
    sealed = crypto.encrypt(b"x")
    crypto.rotate()

    with pytest.raises(DecryptionError):
        crypto.reencrypt(sealed[:-1])


async def test_retired_key_ids_fail_like_any_other_tampering(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()
    first = crypto.active_key_id
    sealed = crypto.encrypt(b"x")
    crypto.rotate()
    crypto.retire(first)

    with pytest.raises(DecryptionError) as caught:
        crypto.decrypt(sealed)

    assert str(caught.value) == str(DecryptionError(crypto.name))
    assert first not in crypto.key_ids


async def test_retiring_the_active_key_is_refused(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()

    with pytest.raises(CryptoError, match=r"is the active key: rotate\(\) first"):
        crypto.retire(crypto.active_key_id)


@pytest.mark.parametrize("key_id", ["00" * 8, "nothex", "abcd", ""])
async def test_retiring_an_unknown_key_raises_unknown_key(
    make_crypto: MakeCrypto, key_id: str
) -> None:
    crypto = await make_crypto()

    with pytest.raises(UnknownKey) as caught:
        await crypto.aretire(key_id)

    assert caught.value.key_id == key_id
    assert isinstance(caught.value, LookupError)


async def test_the_keeper_rotates_every_key_rotation_interval(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto(key_rotation_interval=0.2)
    first = crypto.active_key_id
    sealed = crypto.encrypt(b"x")

    await until(lambda: crypto.active_key_id != first)

    assert crypto.active_key_id != first
    assert crypto.decrypt(sealed) == b"x"
    assert crypto.statistics().active_key_age_seconds < 10


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition that a background task makes true (no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)


# -- keys from the environment ----------------------------------------------------------


async def test_a_base64_key_in_the_environment_gives_the_same_key_id_everywhere(
    make_crypto: MakeCrypto, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = base64.urlsafe_b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("APP_KEY", secret)

    one = await make_crypto(key_source="env", key_env="APP_KEY")
    two = await make_crypto(key_source="env", key_env="APP_KEY")

    assert one.active_key_id == two.active_key_id
    assert two.decrypt(one.encrypt(b"shared", b"ctx"), b"ctx") == b"shared"


async def test_a_pem_key_in_the_environment_is_used_for_rsa(
    make_crypto: MakeCrypto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNING_KEY", rsa_pem(2048))

    one = await make_crypto(algorithm="RSA_2048", key_source="env", key_env="SIGNING_KEY")
    two = await make_crypto(algorithm="RSA_2048", key_source="env", key_env="SIGNING_KEY")

    two.verify(b"data", one.sign(b"data"))


async def test_a_key_set_in_the_environment_keeps_old_keys_for_decryption(
    make_crypto: MakeCrypto, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The usual way to make one: a key file written by a file-backed backend.
    key_file = tmp_path / "keys.json"
    writer = await make_crypto(key_source="file", key_file=key_file)
    old = writer.encrypt(b"old")
    writer.rotate()
    monkeypatch.setenv("APP_KEYS", await asyncio.to_thread(key_file.read_text))

    reader = await make_crypto(key_source="env", key_env="APP_KEYS")

    assert reader.key_ids == writer.key_ids
    assert reader.active_key_id == writer.active_key_id
    assert reader.decrypt(old) == b"old"


async def test_keys_from_the_environment_cannot_be_rotated_or_retired_here(
    make_crypto: MakeCrypto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_KEY", "A" * 43 + "=")
    crypto = await make_crypto(key_source="env", key_env="APP_KEY")

    with pytest.raises(CryptoError, match=r"cannot rotate keys: the keys come from \$APP_KEY"):
        crypto.rotate()
    with pytest.raises(CryptoError, match=r"cannot retire keys"):
        crypto.retire(crypto.active_key_id)


async def test_a_missing_environment_variable_fails_initialize(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    crypto = Crypto(CryptoConfig(key_source="env", key_env="NOT_SET_ANYWHERE"))

    with pytest.raises(ResourceError, match="environment variable NOT_SET_ANYWHERE is not set"):
        await crypto.initialize()


@pytest.mark.parametrize(
    "value",
    ["c2hvcnQ=", "{not json", json.dumps({"format": "other"}), "x" * 60,
     json.dumps({"format": "tether-crypto-keys", "version": 1, "active": "00" * 8, "keys": []})],
)
async def test_a_malformed_key_in_the_environment_fails_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("BAD_KEY", value)
    crypto = Crypto(CryptoConfig(key_source="env", key_env="BAD_KEY"))

    with pytest.raises(ResourceError, match=r"default: \$BAD_KEY: ") as caught:
        await crypto.initialize()

    assert value not in str(caught.value)
    assert caught.value.__cause__ is None
