"""PBKDF2-HMAC password hashes in the PHC string format.

    $pbkdf2-sha256$i=600000$<salt>$<hash>

(salt and hash in base64 without padding). The string says how it was made, so a
hash made with older parameters still verifies, and verification reports when it
should be replaced. PBKDF2 runs in OpenSSL through ``hashlib``, which releases the
GIL, so a thread really takes it off the event loop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

SALT_BYTES = 16
MAX_PASSWORD_BYTES = 4096  # refuse absurd inputs rather than hash megabytes
MAX_ITERATIONS = 50_000_000  # a stored hash must not make one verify run for minutes

# OWASP Password Storage Cheat Sheet (2023): PBKDF2-HMAC-SHA256 >= 600,000 iterations,
# PBKDF2-HMAC-SHA512 >= 210,000.
SCHEMES = {"pbkdf2-sha256": ("sha256", 600_000, 32), "pbkdf2-sha512": ("sha512", 210_000, 64)}


@dataclass(frozen=True, slots=True)
class Parsed:
    scheme: str
    iterations: int
    salt: bytes
    digest: bytes


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _password_bytes(password: str | bytes) -> bytes:
    if isinstance(password, str):
        raw = password.encode("utf-8")
    elif isinstance(password, bytes):
        raw = password
    else:
        raise TypeError(f"password must be str or bytes, got {type(password).__name__}")
    if len(raw) > MAX_PASSWORD_BYTES:
        raise ValueError(f"password is longer than {MAX_PASSWORD_BYTES} bytes")
    return raw


def _derive(scheme: str, password: bytes, salt: bytes, iterations: int) -> bytes:
    digest, _, size = SCHEMES[scheme]
    return hashlib.pbkdf2_hmac(digest, password, salt, iterations, size)


def make(password: str | bytes, scheme: str, iterations: int) -> str:
    salt = os.urandom(SALT_BYTES)
    derived = _derive(scheme, _password_bytes(password), salt, iterations)
    return f"${scheme}$i={iterations}${_b64(salt)}${_b64(derived)}"


def parse(encoded: str) -> Parsed:
    hint = "expected $pbkdf2-sha256$i=<iterations>$<salt>$<hash> (or pbkdf2-sha512)"
    if not isinstance(encoded, str):
        raise TypeError(f"a password hash is a str, got {type(encoded).__name__}")
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] or parts[1] not in SCHEMES or not parts[2].startswith("i="):
        raise ValueError(f"not a PBKDF2 password hash: {hint}")
    try:
        iterations = int(parts[2][2:])
        salt, digest = _unb64(parts[3]), _unb64(parts[4])
    except (ValueError, binascii.Error):
        raise ValueError(f"not a PBKDF2 password hash: {hint}") from None
    if not 1 <= iterations <= MAX_ITERATIONS or not salt or not digest:
        raise ValueError(f"not a usable PBKDF2 password hash: {hint}")
    return Parsed(parts[1], iterations, salt, digest)


def check(password: str | bytes, encoded: str, scheme: str, iterations: int) -> tuple[bool, bool]:
    """``(matches, outdated)``: outdated when ``encoded`` is weaker than the settings."""
    stored = parse(encoded)
    raw = _password_bytes(password)
    derived = hashlib.pbkdf2_hmac(SCHEMES[stored.scheme][0], raw, stored.salt,
                                  stored.iterations, len(stored.digest))
    matches = hmac.compare_digest(derived, stored.digest)
    outdated = (
        stored.scheme != scheme
        or stored.iterations < iterations
        or len(stored.salt) < SALT_BYTES
        or len(stored.digest) < SCHEMES[scheme][2]
    )
    return matches, outdated
