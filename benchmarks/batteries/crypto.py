"""Crypto: AES-256-GCM seal/open (1 KiB, 64 KiB) and RSA-2048 sign/verify.

tether's ``Crypto`` (resolved from a ``Container``) against ``cryptography`` called
directly for the same envelope: the direct rows write the same 10-byte header (format
version, scheme, key id), a random 96-bit nonce and the tag, authenticate the header
as associated data, and check the header on the way back, so both envelopes have the
same size and the same checks. RSA signs ``header + data`` with PSS (MGF1-SHA256,
32-byte salt) and SHA-256 on both sides.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from benchmarks.batteries._harness import Audit, Check, Env, Row, Scenario, Skip, counted, expect

if TYPE_CHECKING:
    from tether.resources.crypto import Crypto

TITLE = "Security kit: crypto"
DISTRIBUTIONS = ("cryptography",)
TARGET = 0.10

HEADER_BYTES = 10
NONCE_BYTES = 12
TAG_BYTES = 16
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH)


class DirectAES:
    """AES-256-GCM envelopes written with ``cryptography`` alone."""

    def __init__(self) -> None:
        self.head = bytes((1, 1)) + os.urandom(8)  # version, scheme, key id
        self.gcm = AESGCM(AESGCM.generate_key(bit_length=256))

    def seal(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        head = self.head
        return head + nonce + self.gcm.encrypt(nonce, plaintext, head)

    def open(self, envelope: bytes) -> bytes:
        head = envelope[:HEADER_BYTES]
        if head != self.head:
            raise ValueError("unknown key or format")
        body = envelope[HEADER_BYTES:]
        return self.gcm.decrypt(body[:NONCE_BYTES], body[NONCE_BYTES:], head)


class DirectRSA:
    """RSA-PSS-SHA256 signatures with the same header, written with ``cryptography``."""

    def __init__(self) -> None:
        self.head = bytes((1, 6)) + os.urandom(8)
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public = self.private.public_key()

    def sign(self, data: bytes) -> bytes:
        head = self.head
        return head + self.private.sign(head + data, _PSS, hashes.SHA256())

    def verify(self, data: bytes, signature: bytes) -> None:
        head = signature[:HEADER_BYTES]
        if head != self.head:
            raise InvalidSignature
        self.public.verify(signature[HEADER_BYTES:], head + data, _PSS, hashes.SHA256())

    def verify_fresh_key(self, data: bytes, signature: bytes) -> None:
        """``verify`` with the public key derived from the private one at each call, as
        tether does: explains its verify row."""
        head = signature[:HEADER_BYTES]
        if head != self.head:
            raise InvalidSignature
        self.private.public_key().verify(signature[HEADER_BYTES:], head + data, _PSS,
                                         hashes.SHA256())


def _flip(blob: bytes) -> bytes:
    return blob[:-1] + bytes((blob[-1] ^ 1,))


def _refused(call: Callable[[], object], what: str) -> None:
    """``call()`` must raise tether's or cryptography's refusal."""
    from tether.exceptions import DecryptionError
    from tether.exceptions import InvalidSignature as TetherInvalidSignature

    try:
        call()
    except (DecryptionError, TetherInvalidSignature, InvalidSignature, InvalidTag):
        return
    expect(False, f"{what} was accepted")


def _operations(crypto: Crypto) -> Audit:
    return counted(lambda: crypto.statistics().operations_total, "operations_total")


def _seal_check(size: int, opener: Callable[[bytes], bytes], plaintext: bytes) -> Check:
    def check(envelope: Any) -> None:
        expect(isinstance(envelope, bytes), f"seal returned {type(envelope).__name__}")
        expected = HEADER_BYTES + NONCE_BYTES + size + TAG_BYTES
        expect(len(envelope) == expected, f"envelope of {len(envelope)} bytes, expected "
                                          f"{expected}")
        expect(opener(envelope) == plaintext, "the envelope does not open to the plaintext")

    return check


def _open_check(plaintext: bytes) -> Check:
    def check(opened: Any) -> None:
        expect(opened == plaintext, "open did not return the plaintext")

    return check


def _aes(crypto: Crypto, direct: DirectAES, size: int, key: str, label: str) -> list[Scenario]:
    plaintext = os.urandom(size)
    theirs, ours = crypto.encrypt(plaintext), direct.seal(plaintext)
    expect(len(theirs) == len(ours), "tether's and the direct envelopes differ in size")
    # A tampered envelope must fail to open on both sides: open really authenticates.
    _refused(functools.partial(crypto.decrypt, _flip(theirs)), "a tampered envelope")
    _refused(functools.partial(direct.open, _flip(ours)), "a tampered envelope")
    seal = Scenario(
        f"aes-gcm-{key}-seal", f"AES-256-GCM seal {label}",
        (
            Row("tether", functools.partial(crypto.encrypt, plaintext),
                _seal_check(size, crypto.decrypt, plaintext), _operations(crypto)),
            Row("cryptography direct", functools.partial(direct.seal, plaintext),
                _seal_check(size, direct.open, plaintext)),
        ),
        baseline="cryptography direct", target=TARGET,
    )
    opened = Scenario(
        f"aes-gcm-{key}-open", f"AES-256-GCM open {label}",
        (
            Row("tether", functools.partial(crypto.decrypt, theirs), _open_check(plaintext),
                _operations(crypto)),
            Row("cryptography direct", functools.partial(direct.open, ours),
                _open_check(plaintext)),
        ),
        baseline="cryptography direct", target=TARGET,
    )
    return [seal, opened]


def _rsa(crypto: Crypto, direct: DirectRSA) -> list[Scenario]:
    data = os.urandom(1024)
    theirs, ours = crypto.sign(data), direct.sign(data)
    expect(len(theirs) == len(ours) == HEADER_BYTES + 256, "signatures differ in size")

    def signed_by(verify: Callable[[bytes, bytes], None]) -> Check:
        def check(signature: Any) -> None:
            expect(isinstance(signature, bytes) and len(signature) == HEADER_BYTES + 256,
                   "not a 2048-bit signature with its header")
            verify(data, signature)  # raises when it does not verify

        return check

    def verified(result: Any) -> None:
        expect(result is None, f"verify returned {result!r}")

    # A tampered signature must fail on both sides: verify really checks.
    _refused(functools.partial(crypto.verify, data, _flip(theirs)), "a tampered signature")
    _refused(functools.partial(direct.verify, data, _flip(ours)), "a tampered signature")
    return [
        Scenario(
            "rsa-2048-sign", "RSA-2048 sign 1 KiB (PSS, SHA-256)",
            (
                Row("tether", functools.partial(crypto.sign, data), signed_by(crypto.verify),
                    _operations(crypto)),
                Row("cryptography direct", functools.partial(direct.sign, data),
                    signed_by(direct.verify)),
            ),
            baseline="cryptography direct", target=TARGET,
        ),
        Scenario(
            "rsa-2048-verify", "RSA-2048 verify 1 KiB (PSS, SHA-256)",
            (
                Row("tether", functools.partial(crypto.verify, data, theirs), verified,
                    _operations(crypto)),
                Row("cryptography direct", functools.partial(direct.verify, data, ours),
                    verified),
                Row("cryptography, public key derived per call",
                    functools.partial(direct.verify_fresh_key, data, ours), verified,
                    note="explains tether's row: `private_key.public_key()` at each verify"),
            ),
            baseline="cryptography direct", target=TARGET,
        ),
    ]


async def scenarios(env: Env, stack: AsyncExitStack) -> list[Scenario | Skip]:
    from tether import Container
    from tether.resources.crypto import Crypto, CryptoConfig

    container = Container()
    container.bind(Crypto, Crypto(CryptoConfig(name="aes")), name="aes")
    container.bind(Crypto, Crypto(CryptoConfig(name="rsa", algorithm="RSA_2048")), name="rsa")
    await stack.enter_async_context(container)
    aes = await container.aget(Crypto, name="aes")
    signer = await container.aget(Crypto, name="rsa")

    found: list[Scenario | Skip] = []
    direct_aes = DirectAES()
    found += _aes(aes, direct_aes, 1024, "1k", "1 KiB")
    found += _aes(aes, direct_aes, 64 * 1024, "64k", "64 KiB")
    found += _rsa(signer, DirectRSA())
    return found
