"""K4: RSA is OAEP-SHA256 and PSS only, and keys under 2048 bits are refused."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tether.exceptions import DecryptionError, InvalidSignature, ResourceError
from tether.resources import _crypto_envelope as envelopes
from tether.resources.crypto import Crypto, CryptoConfig

from .conftest import MakeCrypto, rsa_pem

pytestmark = pytest.mark.anyio


def public_key(crypto: Crypto) -> rsa.RSAPublicKey:
    loaded = serialization.load_pem_public_key(crypto.public_keys()[crypto.active_key_id])
    assert isinstance(loaded, rsa.RSAPublicKey)
    return loaded


async def test_a_1024_bit_key_from_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = weak.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
    monkeypatch.setenv("WEAK_KEY", pem)
    crypto = Crypto(CryptoConfig(algorithm="RSA_2048", key_source="env", key_env="WEAK_KEY"))

    with pytest.raises(ResourceError, match=r"RSA-1024: keys under 2048 bits are refused") as e:
        await crypto.initialize()

    assert "PRIVATE KEY" not in str(e.value)


@pytest.mark.parametrize(
    ("algorithm", "bits"),
    [("RSA_2048", 2048), pytest.param("RSA_4096", 4096, marks=pytest.mark.slow)],
)
async def test_generated_keys_have_the_configured_size(
    make_crypto: MakeCrypto, algorithm: str, bits: int
) -> None:
    crypto = await make_crypto(algorithm=algorithm, key_source="generated")

    assert public_key(crypto).key_size == bits


async def test_short_plaintexts_are_oaep_sha256_with_the_header_as_label(
    make_crypto: MakeCrypto,
) -> None:
    crypto = await make_crypto(algorithm="RSA_2048")
    private = serialization.load_pem_private_key(rsa_pem(2048).encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)

    sealed = crypto.encrypt(b"p" * 190, b"aad")  # the most OAEP-SHA256 fits in 2048 bits

    assert sealed[1] == envelopes.RSA_OAEP
    head, body = sealed[:envelopes.HEADER_BYTES], sealed[envelopes.HEADER_BYTES:]
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(),
                        label=head + b"aad")
    assert private.decrypt(body, oaep) == b"p" * 190


@pytest.mark.parametrize(
    ("algorithm", "limit"),
    [("RSA_2048", 190), pytest.param("RSA_4096", 446, marks=pytest.mark.slow)],
)
async def test_longer_plaintexts_go_hybrid_with_aes_gcm(
    make_crypto: MakeCrypto, algorithm: str, limit: int
) -> None:
    crypto = await make_crypto(algorithm=algorithm)

    direct, hybrid = crypto.encrypt(b"a" * limit), crypto.encrypt(b"a" * (limit + 1))
    big = os.urandom(1 << 20)

    assert (direct[1], hybrid[1]) == (envelopes.RSA_OAEP, envelopes.RSA_OAEP_GCM)
    assert crypto.decrypt(hybrid) == b"a" * (limit + 1)
    assert crypto.decrypt(crypto.encrypt(big, b"ctx"), b"ctx") == big


async def test_a_pkcs1v15_ciphertext_under_the_right_key_is_refused(
    make_crypto: MakeCrypto,
) -> None:
    crypto = await make_crypto(algorithm="RSA_2048")
    head = crypto.encrypt(b"x")[:envelopes.HEADER_BYTES]
    legacy = public_key(crypto).encrypt(b"x", padding.PKCS1v15())

    with pytest.raises(DecryptionError):
        crypto.decrypt(head + legacy)


async def test_signatures_are_pss_sha256_over_header_and_data(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto(algorithm="RSA_2048")

    signature = crypto.sign(b"release 1.2.3")

    assert signature[1] == envelopes.RSA_PSS_SHA256
    head, body = signature[:envelopes.HEADER_BYTES], signature[envelopes.HEADER_BYTES:]
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    public_key(crypto).verify(body, head + b"release 1.2.3", pss, hashes.SHA256())


async def test_pss_signature_fails_on_a_changed_message(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto(algorithm="RSA_4096")
    signature = await crypto.asign(b"pay 10 EUR to alice")

    await crypto.averify(b"pay 10 EUR to alice", signature)
    with pytest.raises(InvalidSignature):
        await crypto.averify(b"pay 99 EUR to alice", signature)


async def test_a_pkcs1v15_signature_under_the_right_key_is_refused(
    make_crypto: MakeCrypto,
) -> None:
    crypto = await make_crypto(algorithm="RSA_2048")
    private = serialization.load_pem_private_key(rsa_pem(2048).encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    head = crypto.sign(b"data")[:envelopes.HEADER_BYTES]
    legacy = private.sign(head + b"data", padding.PKCS1v15(), hashes.SHA256())

    with pytest.raises(InvalidSignature):
        crypto.verify(b"data", head + legacy)


async def test_a_key_of_the_wrong_family_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AES_KEY", "A" * 43 + "=")
    crypto = Crypto(CryptoConfig(algorithm="RSA_2048", key_source="env", key_env="AES_KEY"))

    with pytest.raises(ResourceError, match=r"\$AES_KEY: the value is neither a key set nor a PEM"):
        await crypto.initialize()


async def test_aes_backends_have_no_public_keys(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()

    assert crypto.public_keys() == {}
