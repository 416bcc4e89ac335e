"""K1: AES-256-GCM nonces are unique, ciphertexts differ, and the usage cap rotates keys."""

from __future__ import annotations

import pytest

from tether.exceptions import ResourceError
from tether.resources import _crypto_envelope as envelopes

from .conftest import MakeCrypto

pytestmark = pytest.mark.anyio

NONCE = slice(envelopes.HEADER_BYTES, envelopes.HEADER_BYTES + envelopes.NONCE_BYTES)
KID = slice(2, envelopes.HEADER_BYTES)


async def test_100k_encryptions_under_one_key_never_repeat_a_nonce(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()

    nonces = {crypto.encrypt(b"same message")[NONCE] for _ in range(100_000)}

    assert len(nonces) == 100_000
    assert len(crypto.key_ids) == 1
    assert crypto.statistics().active_key_uses == 100_000


async def test_the_same_plaintext_encrypts_differently_each_time(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()

    first, second = crypto.encrypt(b"attack at dawn"), crypto.encrypt(b"attack at dawn")

    assert first != second
    assert first[NONCE] != second[NONCE]
    assert crypto.decrypt(first) == crypto.decrypt(second) == b"attack at dawn"


async def test_envelope_is_version_scheme_key_id_nonce_ciphertext_tag(
    make_crypto: MakeCrypto,
) -> None:
    crypto = await make_crypto()

    sealed = crypto.encrypt(b"12345")

    assert sealed[0] == envelopes.VERSION
    assert sealed[1] == envelopes.AES_256_GCM
    assert sealed[KID].hex() == crypto.active_key_id
    assert len(sealed) == envelopes.HEADER_BYTES + 12 + 5 + 16


async def test_usage_cap_rotates_the_key_before_it_is_exceeded(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto(max_uses_per_key=1000)

    sealed = [crypto.encrypt(i.to_bytes(4, "big")) for i in range(2500)]

    per_key: dict[bytes, int] = {}
    for envelope in sealed:
        per_key[envelope[KID]] = per_key.get(envelope[KID], 0) + 1
    assert sorted(per_key.values()) == [500, 1000, 1000]
    assert [k.hex() for k in per_key] == list(crypto.key_ids)  # oldest first
    assert crypto.statistics().rotations_total == 2
    assert crypto.statistics().active_key_uses == 500
    assert [crypto.decrypt(e) for e in sealed] == [i.to_bytes(4, "big") for i in range(2500)]


async def test_usage_cap_counts_encryptions_only(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto(max_uses_per_key=2)
    sealed = crypto.encrypt(b"x")

    for _ in range(10):
        crypto.decrypt(sealed)
        crypto.verify(b"x", crypto.sign(b"x"))

    assert len(crypto.key_ids) == 1
    assert crypto.statistics().active_key_uses == 1


async def test_usage_cap_with_keys_from_env_fails_instead_of_reusing_the_key(
    make_crypto: MakeCrypto, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_TEST_KEY", "A" * 43 + "=")
    crypto = await make_crypto(key_source="env", key_env="TETHER_TEST_KEY", max_uses_per_key=3)
    for _ in range(3):
        crypto.encrypt(b"x")

    with pytest.raises(ResourceError, match=r"has encrypted max_uses_per_key=3 messages"):
        crypto.encrypt(b"x")
    assert crypto.statistics().failures_by_kind == {"ResourceError": 1}
