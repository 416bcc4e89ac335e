"""K2: every tampered envelope or signature gives one error type and one message.

hypothesis is not installed, so instead of sampling the inputs these tests walk all of
them: every byte flipped in turn, every truncation, wrong associated data, another key
id, another version or scheme byte.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from tether.exceptions import CryptoError, DecryptionError, InvalidSignature
from tether.resources import _crypto_envelope as envelopes
from tether.resources.crypto import Crypto

from .conftest import MakeCrypto

pytestmark = pytest.mark.anyio

AAD = b"order:42"

CASES = [
    pytest.param("AES_256_GCM", 24, (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80), id="gcm"),
    pytest.param("AES_256_CBC_HMAC", 40, (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80),
                 id="cbc-hmac"),
    pytest.param("RSA_2048", 24, (0x01, 0x80), id="rsa-2048-oaep"),
    pytest.param("RSA_2048", 300, (0x01,), id="rsa-2048-hybrid"),
    pytest.param("RSA_4096", 500, (0x01,), id="rsa-4096-hybrid", marks=pytest.mark.slow),
]


def flipped(blob: bytes, masks: tuple[int, ...]) -> Iterator[bytes]:
    for index in range(len(blob)):
        for mask in masks:
            changed = bytearray(blob)
            changed[index] ^= mask
            yield bytes(changed)


def truncated(blob: bytes) -> Iterator[bytes]:
    for size in range(len(blob)):
        yield blob[:size]


def other_headers(blob: bytes) -> Iterator[bytes]:
    yield bytes((2,)) + blob[1:]  # a format version this code never wrote
    for scheme in range(256):
        if scheme != blob[1]:
            yield blob[:1] + bytes((scheme,)) + blob[2:]
    yield blob[:2] + os.urandom(8) + blob[10:]  # a key id nobody holds
    yield blob + b"\x00"  # one byte too many


def errors_of(call: Callable[[], object], expected: type[CryptoError]) -> CryptoError:
    with pytest.raises(CryptoError) as caught:
        call()  # returning anything, even b"", fails here: "DID NOT RAISE"
    error = caught.value
    assert type(error) is expected
    # Nothing about the cause travels with the error: no chained cryptography error.
    assert error.__cause__ is None
    assert error.__suppress_context__
    return error


def assert_one_message(errors: list[CryptoError]) -> None:
    assert len({str(e) for e in errors}) == 1
    assert len({e.args for e in errors}) == 1


@pytest.mark.parametrize(("algorithm", "size", "masks"), CASES)
async def test_every_tampered_envelope_raises_the_same_decryption_error(
    make_crypto: MakeCrypto, algorithm: str, size: int, masks: tuple[int, ...]
) -> None:
    crypto = await make_crypto(algorithm=algorithm)
    plaintext = os.urandom(size)
    sealed = crypto.encrypt(plaintext, AAD)
    assert crypto.decrypt(sealed, AAD) == plaintext

    tampered = [*flipped(sealed, masks), *truncated(sealed), *other_headers(sealed)]
    errors = [errors_of(partial(crypto.decrypt, t, AAD), DecryptionError) for t in tampered]

    assert_one_message(errors)
    assert crypto.statistics().failures_by_kind == {"DecryptionError": len(tampered)}


@pytest.mark.parametrize(("algorithm", "size", "masks"), CASES)
async def test_wrong_associated_data_raises_the_same_decryption_error(
    make_crypto: MakeCrypto, algorithm: str, size: int, masks: tuple[int, ...]
) -> None:
    crypto = await make_crypto(algorithm=algorithm)
    sealed = crypto.encrypt(os.urandom(size), AAD)

    wrong = [b"", b"order:43", AAD + b"\x00", AAD[:-1], AAD.upper()]
    errors = [errors_of(partial(crypto.decrypt, sealed, a), DecryptionError) for a in wrong]
    errors.append(errors_of(lambda: crypto.decrypt(crypto.encrypt(b"x", AAD)[:-1], AAD),
                            DecryptionError))

    assert_one_message(errors)
    assert str(errors[0]) == str(DecryptionError(crypto.name))


async def test_an_envelope_under_another_key_of_the_ring_with_its_id_swapped_fails(
    make_crypto: MakeCrypto,
) -> None:
    crypto = await make_crypto()
    old_id = crypto.active_key_id
    sealed = crypto.encrypt(b"secret", AAD)
    crypto.rotate()

    swapped = sealed[:2] + bytes.fromhex(crypto.active_key_id) + sealed[10:]

    assert bytes.fromhex(old_id) != swapped[2:10]
    errors_of(lambda: crypto.decrypt(swapped, AAD), DecryptionError)


async def test_an_envelope_from_another_backend_fails_the_same_way(
    make_crypto: MakeCrypto,
) -> None:
    ours, theirs = await make_crypto(name="ours"), await make_crypto(name="theirs")

    error = errors_of(lambda: ours.decrypt(theirs.encrypt(b"x")), DecryptionError)

    assert str(error) == str(DecryptionError("ours"))


async def test_a_gcm_envelope_is_not_opened_by_a_cbc_backend_and_back(
    make_crypto: MakeCrypto,
) -> None:
    gcm, cbc = await make_crypto(algorithm="AES_256_GCM"), await make_crypto(
        algorithm="AES_256_CBC_HMAC"
    )

    errors_of(lambda: cbc.decrypt(gcm.encrypt(b"x")), DecryptionError)
    errors_of(lambda: gcm.decrypt(cbc.encrypt(b"x")), DecryptionError)


@pytest.mark.parametrize(("algorithm", "size", "masks"), CASES)
async def test_every_tampered_signature_or_message_raises_the_same_invalid_signature(
    make_crypto: MakeCrypto, algorithm: str, size: int, masks: tuple[int, ...]
) -> None:
    crypto = await make_crypto(algorithm=algorithm)
    data = os.urandom(size)
    signature = crypto.sign(data)
    crypto.verify(data, signature)

    bad_signatures = [*flipped(signature, masks[:1]), *truncated(signature),
                      *other_headers(signature)]
    errors = [errors_of(partial(crypto.verify, data, s), InvalidSignature)
              for s in bad_signatures]
    errors += [errors_of(partial(crypto.verify, d, signature), InvalidSignature)
               for d in [*flipped(data, (0x01,)), data + b"\x00", data[:-1], b""]]

    assert_one_message(errors)


async def test_a_signature_is_not_an_envelope(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()

    errors_of(lambda: crypto.decrypt(crypto.sign(b"data")), DecryptionError)
    errors_of(lambda: crypto.verify(b"data", crypto.encrypt(b"data")), InvalidSignature)


async def test_async_decrypt_raises_the_same_error(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()
    sealed = bytearray(crypto.encrypt(b"secret"))
    sealed[-1] ^= 1

    with pytest.raises(DecryptionError) as caught:
        await crypto.adecrypt(bytes(sealed))

    assert str(caught.value) == str(DecryptionError(crypto.name))


async def test_a_str_envelope_is_a_type_error_not_a_decryption_error(
    make_crypto: MakeCrypto,
) -> None:
    crypto = await make_crypto()

    with pytest.raises(TypeError, match="envelope must be bytes, got str"):
        crypto.decrypt("not bytes")  # type: ignore[arg-type]


def test_the_header_layout_is_what_the_parser_reads() -> None:
    # Keeps the slices in these tests honest.
    assert envelopes.HEADER_BYTES == 10
    assert envelopes.header(envelopes.AES_256_GCM, b"\xaa" * 8) == b"\x01\x01" + b"\xaa" * 8


async def test_decryption_error_is_a_tether_error_with_the_backend_name(
    make_crypto: MakeCrypto,
) -> None:
    crypto: Crypto = await make_crypto(name="payments")

    error = errors_of(lambda: crypto.decrypt(b"\x01\x01" + b"\x00" * 40), DecryptionError)

    assert error.resource == "payments"
    assert str(error).startswith("payments: decryption failed")
