"""The key ring behind ``tether.resources.crypto``: keys, their ids, and where they live.

A key ring is an immutable snapshot (every key by id, and which one is active);
rotation builds a new snapshot and swaps it in, so readers never see half a change.
Keys are generated here, read from an environment variable's value, or kept in a
JSON key file that several processes share: writers hold an exclusive lock on a
sibling ``.lock`` file for the whole read-modify-write, and replace the key file
atomically, so a reader without the lock sees the old set or the new one, never a mix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KID_BYTES = 8
AES_KEY_BYTES = 32
RSA_MIN_BITS = 2048  # NIST SP 800-131A: RSA keys under 2048 bits are disallowed
AES_ALGORITHMS = ("AES_256_GCM", "AES_256_CBC_HMAC")
RSA_BITS = {"RSA_2048": 2048, "RSA_4096": 4096}
FILE_FORMAT = "tether-crypto-keys"
FILE_VERSION = 1


class KeyFormatError(Exception):
    """A key set that cannot be used. The message never quotes key material."""


def family(algorithm: str) -> str:
    return "aes" if algorithm in AES_ALGORITHMS else "rsa"


def _derive(secret: bytes, purpose: bytes) -> bytes:
    # One master secret per key, and a separate subkey for each use of it (HKDF, as the
    # research notes recommend for CBC encrypt-then-MAC), so no key serves two primitives.
    return HKDF(hashes.SHA256(), AES_KEY_BYTES, salt=None, info=b"tether/v1/" + purpose).derive(
        secret
    )


class Key:
    """One key: its id, algorithm, creation time (Unix seconds) and material.

    AES keys hold a 32-byte master secret and the subkeys derived from it; RSA keys hold
    the private key (the public key is derived from it).
    """

    __slots__ = (
        "algorithm",
        "cbc_enc",
        "cbc_mac",
        "created",
        "gcm",
        "kid",
        "private_key",
        "public_key",
        "secret",
        "sign_key",
    )

    def __init__(
        self,
        kid: bytes,
        algorithm: str,
        created: float,
        *,
        secret: bytes | None = None,
        private_key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        self.kid = kid
        self.algorithm = algorithm
        self.created = created
        self.secret = secret
        self.private_key = private_key
        # Derived once: a fresh public key object per verify sets OpenSSL's context up
        # again each time (a third of a verification's cost).
        self.public_key = private_key.public_key() if private_key is not None else None
        self.gcm: AESGCM | None = None
        self.cbc_enc = self.cbc_mac = self.sign_key = b""
        if secret is not None:
            self.sign_key = _derive(secret, b"hmac-sha256")
            if algorithm == "AES_256_GCM":
                self.gcm = AESGCM(_derive(secret, b"aes-256-gcm"))
            else:
                self.cbc_enc = _derive(secret, b"aes-256-cbc/enc")
                self.cbc_mac = _derive(secret, b"aes-256-cbc/mac")

    @property
    def hex(self) -> str:
        return self.kid.hex()

    @property
    def bits(self) -> int:
        return self.private_key.key_size if self.private_key is not None else AES_KEY_BYTES * 8

    def __repr__(self) -> str:
        return f"Key(kid={self.hex!r}, algorithm={self.algorithm!r})"  # never the material


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Every key by id, and the active one (new encryptions and signatures use it)."""

    keys: Mapping[bytes, Key]
    active: Key

    @classmethod
    def of(cls, key: Key) -> KeyRing:
        return cls({key.kid: key}, key)

    def rotated(self, key: Key) -> KeyRing:
        return KeyRing({**self.keys, key.kid: key}, key)

    def without(self, kid: bytes) -> KeyRing:
        return KeyRing({k: v for k, v in self.keys.items() if k != kid}, self.active)


def generate(algorithm: str) -> Key:
    """A fresh key; RSA-4096 takes up to a second of CPU, so callers run it in a thread."""
    kid = os.urandom(KID_BYTES)
    if family(algorithm) == "aes":
        return Key(kid, algorithm, time.time(), secret=os.urandom(AES_KEY_BYTES))
    private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS[algorithm])
    return Key(kid, algorithm, time.time(), private_key=private)


# -- serialisation ----------------------------------------------------------------------


def dump(ring: KeyRing) -> str:
    """The key file / environment document for ``ring`` (it holds secrets: keep it so)."""
    entries = []
    for key in ring.keys.values():
        entry: dict[str, Any] = {
            "kid": key.hex, "algorithm": key.algorithm, "created": key.created,
        }
        if key.secret is not None:
            entry["secret"] = base64.b64encode(key.secret).decode("ascii")
        if key.private_key is not None:
            entry["private_key"] = key.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode("ascii")
        entries.append(entry)
    doc = {"format": FILE_FORMAT, "version": FILE_VERSION, "active": ring.active.hex,
           "keys": entries}
    return json.dumps(doc, indent=2) + "\n"


def load(text: str, algorithm: str) -> KeyRing:
    """Parse a key set document for a backend configured with ``algorithm``."""
    try:
        doc = json.loads(text)
    except ValueError:
        # JSONDecodeError keeps the whole document (.doc): never chain it.
        raise KeyFormatError("the key set is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FILE_FORMAT:
        raise KeyFormatError(f"the key set is not a {FILE_FORMAT!r} document")
    if doc.get("version") != FILE_VERSION:
        raise KeyFormatError(
            f"key set version {doc.get('version')!r} is not supported (this tether reads "
            f"version {FILE_VERSION})"
        )
    entries = doc.get("keys")
    if not isinstance(entries, list) or not entries:
        raise KeyFormatError("the key set holds no keys")
    keys: dict[bytes, Key] = {}
    for index, entry in enumerate(entries):
        key = _entry(entry, index, algorithm)
        if key.kid in keys:
            raise KeyFormatError(f"key id {key.hex} appears twice in the key set")
        keys[key.kid] = key
    active = keys.get(_kid(doc.get("active"), "active"))
    if active is None:
        raise KeyFormatError("the key set's 'active' id names no key in it")
    return KeyRing(keys, active)


def _kid(value: object, where: str) -> bytes:
    try:
        kid = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        kid = b""
    if len(kid) != KID_BYTES:
        raise KeyFormatError(f"{where}: a key id is {KID_BYTES * 2} hex digits")
    return kid


def _entry(entry: object, index: int, algorithm: str) -> Key:
    where = f"key #{index + 1}"
    if not isinstance(entry, dict):
        raise KeyFormatError(f"{where} is not an object")
    kid = _kid(entry.get("kid"), where)
    where = f"key {kid.hex()}"
    key_algorithm = entry.get("algorithm")
    if not isinstance(key_algorithm, str) or key_algorithm not in (*AES_ALGORITHMS, *RSA_BITS):
        raise KeyFormatError(f"{where}: unknown algorithm {key_algorithm!r}")
    if family(key_algorithm) != family(algorithm):
        raise KeyFormatError(
            f"{where} is an {key_algorithm} key, but this backend is configured for "
            f"{algorithm}: point it at its own key set"
        )
    created = entry.get("created")
    if not isinstance(created, int | float) or isinstance(created, bool):
        raise KeyFormatError(f"{where}: 'created' must be Unix seconds")
    if family(key_algorithm) == "aes":
        return Key(kid, key_algorithm, float(created), secret=_secret(entry.get("secret"), where))
    return Key(kid, key_algorithm, float(created),
               private_key=_private_key(entry.get("private_key"), where))


def _secret(value: object, where: str) -> bytes:
    try:
        secret = base64.b64decode(value, validate=True) if isinstance(value, str) else b""
    except (binascii.Error, ValueError):
        secret = b""
    if len(secret) != AES_KEY_BYTES:
        raise KeyFormatError(f"{where}: 'secret' must be {AES_KEY_BYTES} bytes in base64")
    return secret


def _private_key(value: object, where: str) -> rsa.RSAPrivateKey:
    if not isinstance(value, str):
        raise KeyFormatError(f"{where}: 'private_key' must be a PEM string")
    return rsa_private_key(value.encode("ascii", "replace"), where)


def rsa_private_key(pem: bytes, where: str) -> rsa.RSAPrivateKey:
    """An RSA private key from unencrypted PEM; keys under 2048 bits are refused."""
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        # The parser's message may quote the input: never chain it.
        raise KeyFormatError(f"{where}: not an unencrypted PEM private key") from None
    if not isinstance(private, rsa.RSAPrivateKey):
        raise KeyFormatError(f"{where}: not an RSA private key")
    if private.key_size < RSA_MIN_BITS:
        raise KeyFormatError(
            f"{where} is RSA-{private.key_size}: keys under {RSA_MIN_BITS} bits are refused "
            f"(NIST SP 800-131A)"
        )
    return private


def from_env_value(value: str, algorithm: str) -> KeyRing:
    """The key ring in an environment variable's value.

    The value is a key set document (as in a key file), or one key: 32 bytes in
    base64 for AES, a PEM private key for RSA. A single key's id is derived from its
    material, so every process reading the same variable agrees on it.
    """
    text = value.strip()
    if text.startswith("{"):
        return load(text, algorithm)
    if family(algorithm) == "rsa":
        if "-----BEGIN" not in text:
            raise KeyFormatError("the value is neither a key set nor a PEM private key")
        private = rsa_private_key(text.encode("ascii", "replace"), "the key")
        material = private.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        label = f"RSA_{private.key_size}" if private.key_size in (2048, 4096) else algorithm
        return KeyRing.of(Key(_derived_kid(material), label, time.time(), private_key=private))
    try:
        secret = base64.b64decode(text + "=" * (-len(text) % 4), altchars=_altchars(text),
                                  validate=True)
    except (binascii.Error, ValueError):
        secret = b""
    if len(secret) != AES_KEY_BYTES:
        raise KeyFormatError(
            f"the value is neither a key set nor a {AES_KEY_BYTES}-byte key in base64"
        )
    return KeyRing.of(Key(_derived_kid(secret), algorithm, time.time(), secret=secret))


def _altchars(text: str) -> bytes | None:
    return b"-_" if "-" in text or "_" in text else None


def _derived_kid(material: bytes) -> bytes:
    return hashlib.sha256(b"tether/v1/kid\x00" + material).digest()[:KID_BYTES]


# -- the shared key file ----------------------------------------------------------------

FileSignature = tuple[int, int, int]


class KeyFile:
    """A key set file several processes share.

    ``locked()`` serialises writers (and their reads) across processes; ``write()``
    replaces the file atomically, so plain readers need no lock.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    def signature(self) -> FileSignature | None:
        """What changes whenever the file is replaced (None when it does not exist)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> tuple[str, FileSignature] | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                st = os.fstat(f.fileno())
                return f.read(), (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            return None

    def group_or_world_readable(self) -> bool:
        if sys.platform == "win32":
            return False
        try:
            return bool(os.stat(self.path).st_mode & 0o077)
        except FileNotFoundError:
            return False

    def write(self, text: str) -> FileSignature:
        """Replace the file with ``text`` (mode 0600), atomically and durably."""
        folder = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
                st = os.fstat(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
        _fsync_folder(folder)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the key file's lock (blocking) for a read-modify-write."""
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _lock(fd)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock


if sys.platform == "win32":
    import msvcrt

    def _lock(fd: int) -> None:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # gives up after ~10 s: try again
                return
            except OSError:
                continue

    def _fsync_folder(folder: Path) -> None:
        return None  # Windows cannot open a folder for fsync; os.replace is durable there

else:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _fsync_folder(folder: Path) -> None:
        # The rename is durable only once the folder entry is on disk.
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
