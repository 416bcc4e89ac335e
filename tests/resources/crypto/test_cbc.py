"""K3: AES-256-CBC is encrypt-then-MAC, and every secret comparison is constant-time.

Spies, not timings: one records each call of ``hmac.compare_digest``, the other each
PKCS7 unpadder the CBC code asks for.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tether.exceptions import DecryptionError, InvalidSignature
from tether.resources import _crypto_envelope as envelopes
from tether.resources import _crypto_keys as keys
from tether.resources.crypto import Crypto, compare

from .conftest import MakeCrypto

pytestmark = pytest.mark.anyio

AAD = b"invoice:7"


class Spy:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []


@pytest.fixture
def compare_digest(monkeypatch: pytest.MonkeyPatch) -> Spy:
    spy = Spy()
    real = hmac.compare_digest

    def spying(a: Any, b: Any) -> bool:
        spy.calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spying)
    return spy


@pytest.fixture
def unpadder(monkeypatch: pytest.MonkeyPatch) -> Spy:
    spy = Spy()

    class SpyingPKCS7(padding.PKCS7):
        def unpadder(self) -> padding.PaddingContext:
            spy.calls.append(())
            return super().unpadder()

    monkeypatch.setattr(envelopes, "padding", SimpleNamespace(PKCS7=SpyingPKCS7))
    return spy


async def cbc_with_key(make_crypto: MakeCrypto, tmp_path: Path) -> tuple[Crypto, keys.Key]:
    """A CBC backend, and its active key as read back from its key file."""
    key_file = tmp_path / "keys.json"
    crypto = await make_crypto(algorithm="AES_256_CBC_HMAC", key_source="file", key_file=key_file)
    ring = keys.load(key_file.read_text(), "AES_256_CBC_HMAC")
    return crypto, ring.active


def valid_mac_bad_padding(key: keys.Key) -> bytes:
    """An envelope whose MAC is right but whose last block does not unpad."""
    head = envelopes.header(envelopes.AES_256_CBC_HMAC, key.kid)
    iv = os.urandom(16)
    block = os.urandom(15) + b"\x00"  # PKCS7 never ends in 0
    encryptor = Cipher(algorithms.AES(key.cbc_enc), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(block) + encryptor.finalize()
    return head + iv + ciphertext + envelopes._mac(key, head, AAD, iv, ciphertext)


async def test_round_trip_checks_the_mac_in_constant_time_then_unpads(
    make_crypto: MakeCrypto, compare_digest: Spy, unpadder: Spy
) -> None:
    crypto = await make_crypto(algorithm="AES_256_CBC_HMAC")
    sealed = crypto.encrypt(b"x" * 33, AAD)

    assert crypto.decrypt(sealed, AAD) == b"x" * 33

    assert len(compare_digest.calls) == 1
    computed, received = compare_digest.calls[0]
    assert received == sealed[-32:]
    assert len(computed) == 32
    assert len(unpadder.calls) == 1


async def test_a_bad_mac_is_refused_before_anything_is_unpadded(
    make_crypto: MakeCrypto, compare_digest: Spy, unpadder: Spy
) -> None:
    crypto = await make_crypto(algorithm="AES_256_CBC_HMAC")
    sealed = bytearray(crypto.encrypt(b"x" * 33, AAD))
    sealed[envelopes.HEADER_BYTES + 20] ^= 0x01  # a ciphertext byte

    with pytest.raises(DecryptionError):
        crypto.decrypt(bytes(sealed), AAD)

    assert len(compare_digest.calls) == 1
    assert unpadder.calls == []


async def test_bad_padding_behind_a_valid_mac_reads_exactly_like_a_bad_mac(
    make_crypto: MakeCrypto, tmp_path: Path, unpadder: Spy
) -> None:
    crypto, key = await cbc_with_key(make_crypto, tmp_path)
    bad_padding = valid_mac_bad_padding(key)
    bad_mac = bad_padding[:-1] + bytes((bad_padding[-1] ^ 1,))

    with pytest.raises(DecryptionError) as padding_error:
        crypto.decrypt(bad_padding, AAD)
    assert len(unpadder.calls) == 1  # this one got as far as unpadding...
    with pytest.raises(DecryptionError) as mac_error:
        crypto.decrypt(bad_mac, AAD)
    assert len(unpadder.calls) == 1  # ...this one did not

    assert type(padding_error.value) is type(mac_error.value)
    assert str(padding_error.value) == str(mac_error.value)
    assert padding_error.value.args == mac_error.value.args
    assert padding_error.value.__cause__ is None is mac_error.value.__cause__


async def test_the_mac_covers_the_associated_data(make_crypto: MakeCrypto, unpadder: Spy) -> None:
    crypto = await make_crypto(algorithm="AES_256_CBC_HMAC")
    sealed = crypto.encrypt(b"x", AAD)

    with pytest.raises(DecryptionError):
        crypto.decrypt(sealed, b"invoice:8")
    assert unpadder.calls == []


async def test_cbc_ivs_are_random(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto(algorithm="AES_256_CBC_HMAC")
    iv = slice(envelopes.HEADER_BYTES, envelopes.HEADER_BYTES + 16)

    ivs = {crypto.encrypt(b"same")[iv] for _ in range(1000)}

    assert len(ivs) == 1000


async def test_cbc_encryption_and_mac_keys_are_distinct(
    make_crypto: MakeCrypto, tmp_path: Path
) -> None:
    _, key = await cbc_with_key(make_crypto, tmp_path)

    assert key.secret is not None
    assert len({key.secret, key.cbc_enc, key.cbc_mac, key.sign_key}) == 4


async def test_hmac_signature_check_goes_through_compare_digest(
    make_crypto: MakeCrypto, compare_digest: Spy
) -> None:
    crypto = await make_crypto()
    signature = crypto.sign(b"webhook body")

    crypto.verify(b"webhook body", signature)
    with pytest.raises(InvalidSignature):
        crypto.verify(b"webhook body!", signature)

    assert len(compare_digest.calls) == 2
    assert all(received == signature[envelopes.HEADER_BYTES:]
               for _, received in compare_digest.calls)


@pytest.mark.parametrize(
    ("expected", "given"),
    [("api-key-123", "api-key-124"), (b"csrf-token", b"csrf-tokem"),
     ("s\u00e9same", "s\u00e9same")],
)
def test_compare_goes_through_compare_digest(
    compare_digest: Spy, expected: str | bytes, given: str | bytes
) -> None:
    assert compare(expected, given) is (expected == given)

    assert len(compare_digest.calls) == 1


async def test_password_check_goes_through_compare_digest(
    make_crypto: MakeCrypto, compare_digest: Spy
) -> None:
    crypto = await make_crypto()
    hashed = crypto.hash_password("correct horse")

    assert crypto.verify_password(hashed, "wrong horse") == (False, None)

    assert len(compare_digest.calls) == 1
