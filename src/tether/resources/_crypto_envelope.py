"""Envelopes and signatures: the byte formats of ``tether.resources.crypto``.

Every envelope and signature starts with the same 10-byte header::

    version (1) | scheme (1) | key id (8)

and the header is always authenticated with the rest (GCM associated data, inside
the CBC MAC, the OAEP label, the signed bytes), so changing the version, the scheme
or the key id fails like any other change. After the header:

    AES_256_GCM        nonce (12) | ciphertext | tag (16)
                       associated data: header | aad
    AES_256_CBC_HMAC   iv (16) | ciphertext | mac (32)
                       mac = HMAC-SHA256(mac key, header | len(aad) (8) | aad | iv | ciphertext)
    RSA_OAEP           OAEP-SHA256(plaintext, label = header | aad)      (short plaintexts)
    RSA_OAEP_GCM       OAEP-SHA256(data key, label = header) | nonce (12) | ciphertext | tag
                       associated data: header | aad                     (longer ones)
    HMAC_SHA256        HMAC-SHA256(sign key, header | data)              (signature)
    RSA_PSS_SHA256     PSS(MGF1-SHA256, salt 32)(header | data)          (signature)

Every failure raises ``Tampered`` and nothing else, before any plaintext exists: GCM
and OAEP are one-shot, and the CBC MAC is checked (in constant time) before the
ciphertext is even decrypted, so a padding error is only reachable with a valid MAC.
"""

from __future__ import annotations

import hmac
import os

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ._crypto_keys import KID_BYTES, Key

VERSION = 1
AES_256_GCM = 1
AES_256_CBC_HMAC = 2
RSA_OAEP = 3
RSA_OAEP_GCM = 4
HMAC_SHA256 = 5
RSA_PSS_SHA256 = 6

HEADER_BYTES = 2 + KID_BYTES
NONCE_BYTES = 12
TAG_BYTES = 16
IV_BYTES = 16
MAC_BYTES = 32
BLOCK_BYTES = 16


class Tampered(Exception):
    """The input did not authenticate. Deliberately carries no detail."""


def header(scheme: int, kid: bytes) -> bytes:
    return bytes((VERSION, scheme)) + kid


def parse(what: str, value: object) -> tuple[int, bytes, bytes, bytes]:
    """``(scheme, key id, header, body)`` of an envelope or signature."""
    blob = _as_bytes(what, value)
    if len(blob) <= HEADER_BYTES or blob[0] != VERSION:
        raise Tampered
    return blob[1], blob[2:HEADER_BYTES], blob[:HEADER_BYTES], blob[HEADER_BYTES:]


def _as_bytes(name: str, value: object) -> bytes:
    if type(value) is bytes:  # the common case, without a union check or a copy
        return value
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
    return bytes(value)


# -- encryption -------------------------------------------------------------------------


def seal(key: Key, plaintext: bytes, aad: bytes) -> bytes:
    plaintext = _as_bytes("plaintext", plaintext)
    aad = _as_bytes("aad", aad)
    if key.gcm is not None:
        return _seal_gcm(key.gcm, header(AES_256_GCM, key.kid), plaintext, aad)
    if key.private_key is None:
        return _seal_cbc(key, plaintext, aad)
    return _seal_rsa(key, key.private_key, plaintext, aad)


def open_(key: Key, scheme: int, head: bytes, body: bytes, aad: bytes) -> bytes:
    aad = _as_bytes("aad", aad)
    if key.gcm is not None and scheme == AES_256_GCM:
        return _open_gcm(key.gcm, head, body, aad)
    if key.cbc_enc and scheme == AES_256_CBC_HMAC:
        return _open_cbc(key, head, body, aad)
    if key.private_key is not None and scheme in (RSA_OAEP, RSA_OAEP_GCM):
        return _open_rsa(key.private_key, scheme, head, body, aad)
    raise Tampered  # a scheme this key is never used with


def _seal_gcm(gcm: AESGCM, head: bytes, plaintext: bytes, aad: bytes) -> bytes:
    # A random 96-bit nonce per message (NIST SP 800-38D 8.2.2); the backend counts
    # messages per key and rotates far below the 2**32 limit for random nonces.
    nonce = os.urandom(NONCE_BYTES)
    return head + nonce + gcm.encrypt(nonce, plaintext, head + aad)


def _open_gcm(gcm: AESGCM, head: bytes, body: bytes, aad: bytes) -> bytes:
    if len(body) < NONCE_BYTES + TAG_BYTES:
        raise Tampered
    view = memoryview(body)  # no copy of the ciphertext before decrypting it
    try:
        return gcm.decrypt(view[:NONCE_BYTES], view[NONCE_BYTES:], head + aad)
    except InvalidTag:
        raise Tampered from None


def _mac(key: Key, head: bytes, aad: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    # The AAD is length-prefixed and the other fields have fixed sizes, so no two
    # different (aad, iv, ciphertext) triples give the same MAC input.
    message = b"".join((head, len(aad).to_bytes(8, "big"), aad, iv, ciphertext))
    return hmac.digest(key.cbc_mac, message, "sha256")


def _seal_cbc(key: Key, plaintext: bytes, aad: bytes) -> bytes:
    head = header(AES_256_CBC_HMAC, key.kid)
    iv = os.urandom(IV_BYTES)
    padder = padding.PKCS7(BLOCK_BYTES * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.cbc_enc), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return head + iv + ciphertext + _mac(key, head, aad, iv, ciphertext)


def _open_cbc(key: Key, head: bytes, body: bytes, aad: bytes) -> bytes:
    size = len(body) - IV_BYTES - MAC_BYTES
    if size < BLOCK_BYTES or size % BLOCK_BYTES:
        raise Tampered
    iv, ciphertext, mac = body[:IV_BYTES], body[IV_BYTES:-MAC_BYTES], body[-MAC_BYTES:]
    # Encrypt-then-MAC: authenticate first, in constant time, and decrypt nothing that
    # does not authenticate. Looked up on the module so tests can spy on it.
    if not hmac.compare_digest(_mac(key, head, aad, iv, ciphertext), mac):
        raise Tampered
    decryptor = Cipher(algorithms.AES(key.cbc_enc), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(BLOCK_BYTES * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise Tampered from None  # the same error as a bad MAC


def _oaep(label: bytes) -> asym.OAEP:
    return asym.OAEP(mgf=asym.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(),
                     label=label)


def max_direct_rsa(key_bits: int) -> int:
    """The longest plaintext OAEP-SHA256 takes with this key size (RFC 8017 7.1.1)."""
    return key_bits // 8 - 2 * hashes.SHA256.digest_size - 2


def _seal_rsa(key: Key, private: rsa.RSAPrivateKey, plaintext: bytes, aad: bytes) -> bytes:
    public = key.public_key or private.public_key()
    if len(plaintext) <= max_direct_rsa(private.key_size):
        head = header(RSA_OAEP, key.kid)
        return head + public.encrypt(bytes(plaintext), _oaep(head + aad))
    # Hybrid: a fresh AES-256-GCM data key per message, wrapped with OAEP. The key is
    # used once, so its nonce never repeats.
    head = header(RSA_OAEP_GCM, key.kid)
    data_key = AESGCM.generate_key(bit_length=256)
    wrapped = public.encrypt(data_key, _oaep(head))
    return head + wrapped + _seal_gcm(AESGCM(data_key), head, plaintext, aad)[HEADER_BYTES:]


def _open_rsa(
    private: rsa.RSAPrivateKey, scheme: int, head: bytes, body: bytes, aad: bytes
) -> bytes:
    size = private.key_size // 8
    try:
        if scheme == RSA_OAEP:
            if len(body) != size:
                raise Tampered
            return private.decrypt(body, _oaep(head + aad))
        if len(body) < size + NONCE_BYTES + TAG_BYTES:
            raise Tampered
        data_key = private.decrypt(body[:size], _oaep(head))
    except ValueError:
        raise Tampered from None
    if len(data_key) != 32:
        raise Tampered
    return _open_gcm(AESGCM(data_key), head, body[size:], aad)


# -- signatures -------------------------------------------------------------------------

_PSS = asym.PSS(mgf=asym.MGF1(hashes.SHA256()), salt_length=asym.PSS.DIGEST_LENGTH)


def sign(key: Key, data: bytes) -> bytes:
    data = _as_bytes("data", data)
    if key.private_key is None:
        head = header(HMAC_SHA256, key.kid)
        return head + hmac.digest(key.sign_key, head + data, "sha256")
    head = header(RSA_PSS_SHA256, key.kid)
    return head + key.private_key.sign(head + data, _PSS, hashes.SHA256())


def verify(key: Key, scheme: int, head: bytes, body: bytes, data: bytes) -> None:
    data = _as_bytes("data", data)
    if key.public_key is None:
        if scheme != HMAC_SHA256:
            raise Tampered
        expected = hmac.digest(key.sign_key, head + data, "sha256")
        if not hmac.compare_digest(expected, body):
            raise Tampered
        return
    if scheme != RSA_PSS_SHA256:
        raise Tampered
    try:
        key.public_key.verify(body, head + data, _PSS, hashes.SHA256())
    except InvalidSignature:
        raise Tampered from None
