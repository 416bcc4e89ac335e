"""Encryption, signatures and password hashes over a rotating key ring.

``Crypto`` is a ``@resource``: the container loads (or generates) its keys at
initialize, checks it with an encrypt/decrypt round trip, and stops its key keeper
at dispose. Several backends live side by side under names::

    container.bind(Crypto, Crypto(CryptoConfig(name="aes")), name="aes")
    container.bind(Crypto, Crypto(CryptoConfig(name="rsa", algorithm="RSA_2048")), name="rsa")

Every envelope and signature carries a format version and the id of the key that
made it; ``rotate()`` makes a new key active while the old ones keep decrypting and
verifying until ``retire()``. Every tampered input raises ``DecryptionError`` (or
``InvalidSignature``) with one message, and never returns partial plaintext.
"""

from __future__ import annotations

try:
    import cryptography  # noqa: F401
    import pydantic  # noqa: F401
except ImportError:
    raise ImportError(
        "tether.resources.crypto needs the 'crypto' extra: pip install 'tether[crypto]'"
    ) from None

import asyncio
import hashlib
import hmac
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, ParamSpec, Self, TypeVar

from cryptography.hazmat.primitives import serialization
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .._providers import resource
from ..exceptions import (
    ClosedError,
    CryptoError,
    DecryptionError,
    InvalidSignature,
    ResourceError,
    UnknownKey,
)
from . import _crypto_envelope as envelopes
from . import _crypto_keys as keys
from . import _crypto_password as passwords
from ._meter import Meter

__all__ = [
    "Crypto",
    "CryptoConfig",
    "CryptoStats",
    "compare",
    "hmac_sha256",
    "sha256",
    "sha512",
]

logger = logging.getLogger("tether.resources.crypto")

P = ParamSpec("P")
T = TypeVar("T")

Algorithm = Literal["AES_256_GCM", "AES_256_CBC_HMAC", "RSA_2048", "RSA_4096"]
KeySource = Literal["generated", "env", "file"]
PasswordHash = Literal["pbkdf2-sha256", "pbkdf2-sha512"]

# Up to this size a symmetric message is sealed or opened on the event loop by the a*
# methods: AES-GCM does 64 KiB in a few microseconds, less than a thread hop costs.
_INLINE_BYTES = 64 * 1024
_KEY_SIZES = {"AES_256_GCM": 256, "AES_256_CBC_HMAC": 256, "RSA_2048": 2048, "RSA_4096": 4096}
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
GCM_NONCE_LIMIT = 2**32  # NIST SP 800-38D 8.3: random 96-bit nonces, at most 2**32 messages


# -- hashing helpers --------------------------------------------------------------------


def sha256(data: bytes) -> bytes:
    """The 32-byte digest (fingerprints, cache keys; not for passwords)."""
    return hashlib.sha256(data).digest()


def sha512(data: bytes) -> bytes:
    """The 64-byte digest (not for passwords: see ``Crypto.hash_password``)."""
    return hashlib.sha512(data).digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """The 32-byte MAC, as webhook senders compute it; check one with ``compare``."""
    return hmac.digest(key, data, "sha256")


def compare(a: bytes | str, b: bytes | str) -> bool:
    """Compare two secrets (API keys, tokens, MACs) in time independent of where they
    differ; ``str`` is compared as UTF-8."""
    left = a.encode("utf-8") if isinstance(a, str) else a
    right = b.encode("utf-8") if isinstance(b, str) else b
    return hmac.compare_digest(left, right)


# -- configuration ----------------------------------------------------------------------


class CryptoConfig(BaseModel):
    """One crypto backend: its algorithm, where its keys come from, when they rotate.

    Not a ``ResourceConfig``: the work is local CPU, so there is no server to time out,
    retry or break a circuit on.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="default", min_length=1)
    algorithm: Algorithm = "AES_256_GCM"
    key_size: int | None = None
    key_rotation_interval: float | None = None
    max_uses_per_key: int = Field(default=2**28, ge=1)
    key_source: KeySource = "generated"
    key_env: str | None = None
    key_file: Path | None = None
    key_reload_interval: float = Field(default=5.0, gt=0)
    password_hash: PasswordHash = "pbkdf2-sha256"
    password_iterations: int = Field(default=600_000, le=passwords.MAX_ITERATIONS)

    @field_validator("key_rotation_interval", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        if isinstance(value, timedelta):
            value = value.total_seconds()
        if isinstance(value, str):
            match = _DURATION.fullmatch(value.strip().lower())
            if match is None:
                raise ValueError(
                    f"key_rotation_interval={value!r}: give seconds, or a number with a "
                    f"unit s, m, h, d or w (for example '30d' or '12h')"
                )
            value = float(match[1]) * _UNITS[match[2]]
        if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
            raise ValueError(f"key_rotation_interval={value!r} must be more than 0 seconds")
        return value

    @field_validator("max_uses_per_key")
    @classmethod
    def _under_nonce_limit(cls, value: int) -> int:
        if value > GCM_NONCE_LIMIT:
            raise ValueError(
                f"max_uses_per_key={value} is over 2**32, the most messages one AES-GCM key "
                f"may encrypt with random nonces (NIST SP 800-38D)"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        expected = _KEY_SIZES[self.algorithm]
        if self.key_size is not None and self.key_size != expected:
            if self.algorithm.startswith("RSA") and self.key_size < keys.RSA_MIN_BITS:
                raise ValueError(
                    f"key_size={self.key_size}: RSA keys under {keys.RSA_MIN_BITS} bits are "
                    f"refused (NIST SP 800-131A)"
                )
            raise ValueError(
                f"key_size={self.key_size} does not match algorithm={self.algorithm!r}, "
                f"whose keys are {expected} bits; leave key_size out or set {expected}"
            )
        if self.key_source == "env" and not self.key_env:
            raise ValueError("key_source='env' needs key_env, the environment variable's name")
        if self.key_source == "file" and self.key_file is None:
            raise ValueError("key_source='file' needs key_file, the key file's path")
        if self.key_env is not None and self.key_source != "env":
            raise ValueError(f"key_env is set but key_source={self.key_source!r}: "
                             f"set key_source='env' to read keys from it")
        if self.key_file is not None and self.key_source != "file":
            raise ValueError(f"key_file is set but key_source={self.key_source!r}: "
                             f"set key_source='file' to keep keys in it")
        if self.key_source == "env" and self.key_rotation_interval is not None:
            raise ValueError(
                "key_rotation_interval cannot rotate keys that come from an environment "
                "variable: change the variable to rotate them, or use key_source='file'"
            )
        minimum = passwords.SCHEMES[self.password_hash][1]
        if self.password_iterations < minimum:
            raise ValueError(
                f"password_iterations={self.password_iterations} is under OWASP's minimum "
                f"of {minimum:,} for {self.password_hash}"
            )
        return self


# -- statistics -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CryptoStats:
    """A snapshot of one backend's counters (``crypto.statistics()``)."""

    operations_total: int
    failures_total: int
    failures_by_kind: Mapping[str, int]
    latency_seconds_total: float
    latency_seconds_max: float
    rotations_total: int
    keys: int
    active_key_age_seconds: float
    active_key_uses: int


# -- the resource -----------------------------------------------------------------------


@resource
class Crypto:
    """Encrypts, decrypts, signs, verifies and hashes passwords with one key ring.

    The ``a``-prefixed methods run the same work in a thread: use them for RSA,
    password hashes, key rotation and large payloads, so the event loop keeps serving.
    """

    def __init__(self, config: CryptoConfig) -> None:
        self.config = config
        self.name = config.name
        self._ring: keys.KeyRing | None = None
        self._closed = False
        self._meter = Meter()
        self._rsa = config.algorithm.startswith("RSA")
        self._uses: dict[bytes, int] = {}
        self._uses_lock = threading.Lock()
        self._ring_lock = threading.RLock()  # rotate / retire / reload, in this process
        self._file = keys.KeyFile(config.key_file) if config.key_file is not None else None
        self._seen: keys.FileSignature | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._keeper_error: str | None = None
        self._rotations = 0

    def __repr__(self) -> str:
        return (f"Crypto(name={self.name!r}, algorithm={self.config.algorithm!r}, "
                f"key_source={self.config.key_source!r})")

    # -- lifecycle ----------------------------------------------------------------------

    async def initialize(self) -> None:
        if self._closed:
            raise ClosedError(f"Crypto '{self.name}'")
        if self._ring is not None:
            return
        # RSA-4096 generation and key file I/O take real time: off the event loop.
        ring = await asyncio.to_thread(self._load)
        self._install(ring)
        if self._file is not None or self.config.key_rotation_interval is not None:
            self._keeper = asyncio.create_task(self._keep(), name=f"tether crypto {self.name}")

    async def dispose(self) -> None:
        if self._closed:
            return
        self._closed = True
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            # The keeper's own errors are logged where they happen; a thread it started
            # finishes on its own (to_thread cannot be interrupted) and is not awaited.
            await asyncio.wait({keeper}, timeout=5.0)
            if keeper.done() and not keeper.cancelled() and keeper.exception() is not None:
                logger.error("crypto %s: the key keeper had stopped", self.name,
                             exc_info=keeper.exception())
        self._ring = None
        self._uses.clear()

    async def health_check(self) -> bool:
        """A full round trip with the active key: encrypt and decrypt, sign and verify."""
        self._ready()
        if self._keeper_error is not None:
            raise ResourceError(self.name, self._keeper_error)
        return await asyncio.to_thread(self._self_test)

    def _self_test(self) -> bool:
        probe = os.urandom(32)
        sealed = self._encrypt(probe, b"tether health check")
        signature = self._sign(probe)
        self._verify(probe, signature)
        return self._decrypt(sealed, b"tether health check") == probe

    def statistics(self) -> CryptoStats:
        meter, ring = self._meter, self._ring
        active = ring.active if ring is not None else None
        return CryptoStats(
            operations_total=meter.calls,
            failures_total=meter.failures_total,
            failures_by_kind=dict(meter.failures),
            latency_seconds_total=meter.latency_total,
            latency_seconds_max=meter.latency_max,
            rotations_total=self._rotations,
            keys=len(ring.keys) if ring is not None else 0,
            active_key_age_seconds=max(0.0, time.time() - active.created) if active else 0.0,
            active_key_uses=self._uses.get(active.kid, 0) if active else 0,
        )

    # -- keys ---------------------------------------------------------------------------

    @property
    def active_key_id(self) -> str:
        """The id (16 hex digits) of the key new envelopes and signatures use."""
        return self._ready().active.hex

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id in the ring, in the order they were added (the active key is
        normally the last one)."""
        return tuple(k.hex for k in self._ready().keys.values())

    def rotate(self) -> str:
        """Make a new key active and return its id; older keys keep decrypting and
        verifying until retired. With a key file, every process sees it on reload."""
        return self._rotate(_always).hex

    async def arotate(self) -> str:
        return await asyncio.to_thread(self.rotate)

    def retire(self, key_id: str) -> None:
        """Remove a key for good: what it encrypted or signed no longer opens or verifies.

        Re-encrypt what you keep first (``reencrypt``). The active key cannot be retired.
        """
        self._ready()
        self._refuse_env("retire keys")
        kid = self._kid(key_id)
        with self._ring_lock:
            if self._file is None:
                self._install(self._without(self._ready(), kid, key_id))
            else:
                with self._file.locked():
                    # Decide on the file's set: this process may not have seen the latest.
                    current = self._read_file(self._file) or self._ready()
                    ring = self._without(current, kid, key_id)
                    self._seen = self._file.write(keys.dump(ring))
                    self._install(ring)
        logger.info("crypto %s: retired key %s", self.name, key_id)

    async def aretire(self, key_id: str) -> None:
        await asyncio.to_thread(self.retire, key_id)

    def reload(self) -> bool:
        """Read the key file again if another process changed it; True if it changed."""
        self._ready()
        if self._file is None:
            return False
        with self._ring_lock:
            if self._file.signature() == self._seen:
                return False
            current = self._read_file(self._file)
            if current is None:
                raise ResourceError(self.name, f"key file {self._file.path} is gone")
            self._install(current)
            return True

    def public_keys(self) -> dict[str, bytes]:
        """Each RSA key's public half (PEM, SubjectPublicKeyInfo) by key id, for others
        to verify signatures or encrypt to this backend. Empty for AES backends."""
        out = {}
        for key in self._ready().keys.values():
            if key.private_key is not None:
                out[key.hex] = key.private_key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
        return out

    def _rsa_key(self, key_id: str | None = None) -> tuple[str, Any, float] | None:
        """``(id, RSA private key, created)`` of the active key (or of ``key_id``), for
        tether's JWT signer; None when there is no such RSA key. Reloads the key file
        once for an id this process has not seen yet."""
        ring = self._ready()
        key = ring.active if key_id is None else self._by_hex(ring, key_id)
        if key is None and key_id is not None and self.reload():
            key = self._by_hex(self._ready(), key_id)
        if key is None or key.private_key is None:
            return None
        return key.hex, key.private_key, key.created

    @staticmethod
    def _by_hex(ring: keys.KeyRing, key_id: str) -> keys.Key | None:
        try:
            kid = bytes.fromhex(key_id)
        except ValueError:
            return None
        return ring.keys.get(kid)

    # -- encryption ---------------------------------------------------------------------

    def encrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Seal ``plaintext`` under the active key; ``aad`` is authenticated, not stored:
        pass the same bytes to ``decrypt``."""
        # Metered inline rather than through _metered: this is the hot path.
        meter = self._meter
        started = meter.begin()
        try:
            sealed = envelopes.seal(self._take_key(), plaintext, aad)
        except Exception as error:
            meter.end(started, error)
            raise
        except BaseException:
            meter.end(started)
            raise
        meter.end(started)
        return sealed

    async def aencrypt(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """``encrypt`` in a worker thread when the work is heavy (RSA, or more than
        ``_INLINE_BYTES``); small symmetric messages are sealed inline, where a thread
        hop would cost more than the encryption."""
        if self._inline(plaintext):
            return self.encrypt(plaintext, aad)
        return await self._offloaded(self._encrypt, plaintext, aad)

    def decrypt(self, envelope: bytes, aad: bytes = b"") -> bytes:
        """Open an envelope made by ``encrypt`` (with any key still in the ring).

        Raises ``DecryptionError``, always with the same message, for every input that
        does not authenticate.
        """
        meter = self._meter
        started = meter.begin()
        try:
            opened = self._decrypt(envelope, aad)
        except Exception as error:
            meter.end(started, error)
            raise
        except BaseException:
            meter.end(started)
            raise
        meter.end(started)
        return opened

    async def adecrypt(self, envelope: bytes, aad: bytes = b"") -> bytes:
        """``decrypt``, in a worker thread when the work is heavy (see ``aencrypt``)."""
        if self._inline(envelope):
            return self.decrypt(envelope, aad)
        return await self._offloaded(self._decrypt, envelope, aad)

    def _inline(self, data: object) -> bool:
        return (not self._rsa and isinstance(data, bytes | bytearray | memoryview)
                and len(data) <= _INLINE_BYTES)

    def reencrypt(self, envelope: bytes, aad: bytes = b"") -> bytes:
        """The same plaintext sealed under the active key (the envelope itself when it
        already is), so an old key can then be retired."""
        return self._metered(self._reencrypt, envelope, aad)

    async def areencrypt(self, envelope: bytes, aad: bytes = b"") -> bytes:
        return await self._offloaded(self._reencrypt, envelope, aad)

    def _encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        return envelopes.seal(self._take_key(), plaintext, aad)

    def _decrypt(self, envelope: bytes, aad: bytes) -> bytes:
        try:
            scheme, kid, head, body = envelopes.parse("envelope", envelope)
            return envelopes.open_(self._key(kid), scheme, head, body, aad)
        except envelopes.Tampered:
            raise DecryptionError(self.name) from None

    def _reencrypt(self, envelope: bytes, aad: bytes) -> bytes:
        plaintext = self._decrypt(envelope, aad)
        if bytes(envelope[2:envelopes.HEADER_BYTES]) == self._ready().active.kid:
            return bytes(envelope)
        return self._encrypt(plaintext, aad)

    # -- signatures ---------------------------------------------------------------------

    def sign(self, data: bytes) -> bytes:
        """A signature of ``data`` with the active key: RSA-PSS-SHA256 for RSA backends,
        HMAC-SHA256 (with a key derived for signing only) for AES ones."""
        return self._metered(self._sign, data)

    async def asign(self, data: bytes) -> bytes:
        return await self._offloaded(self._sign, data)

    def verify(self, data: bytes, signature: bytes) -> None:
        """Raise ``InvalidSignature`` unless ``signature`` was made by ``sign(data)`` with
        a key still in the ring."""
        self._metered(self._verify, data, signature)

    async def averify(self, data: bytes, signature: bytes) -> None:
        await self._offloaded(self._verify, data, signature)

    def _sign(self, data: bytes) -> bytes:
        return envelopes.sign(self._ready().active, data)

    def _verify(self, data: bytes, signature: bytes) -> None:
        try:
            scheme, kid, head, body = envelopes.parse("signature", signature)
            envelopes.verify(self._key(kid), scheme, head, body, data)
        except envelopes.Tampered:
            raise InvalidSignature(self.name) from None

    # -- passwords ----------------------------------------------------------------------

    def hash_password(self, password: str | bytes) -> str:
        """A PBKDF2 hash with a fresh 16-byte salt, ``$pbkdf2-sha256$i=600000$salt$hash``.

        Takes about 0.1 s of CPU: in async code, ``await ahash_password(...)``.
        """
        return self._metered(self._hash_password, password)

    async def ahash_password(self, password: str | bytes) -> str:
        return await self._offloaded(self._hash_password, password)

    def verify_password(self, hashed: str, password: str | bytes) -> tuple[bool, str | None]:
        """``(matches, new_hash)``: ``new_hash`` is a fresh hash with the current
        settings when the password matches a hash made with weaker ones (store it),
        else None. Raises ``ValueError`` for a string that is not such a hash.

        The stored hash comes first, as in ``tether.security.PasswordHasher.verify``.
        """
        return self._metered(self._verify_password, hashed, password)

    async def averify_password(
        self, hashed: str, password: str | bytes
    ) -> tuple[bool, str | None]:
        return await self._offloaded(self._verify_password, hashed, password)

    def _hash_password(self, password: str | bytes) -> str:
        self._ready()
        return passwords.make(password, self.config.password_hash,
                              self.config.password_iterations)

    def _verify_password(self, hashed: str, password: str | bytes) -> tuple[bool, str | None]:
        self._ready()
        scheme, iterations = self.config.password_hash, self.config.password_iterations
        matches, outdated = passwords.check(password, hashed, scheme, iterations)
        if matches and outdated:
            return True, passwords.make(password, scheme, iterations)
        return matches, None

    # -- internals ----------------------------------------------------------------------

    def _ready(self) -> keys.KeyRing:
        if self._closed:
            raise ClosedError(f"Crypto '{self.name}'")
        ring = self._ring
        if ring is None:
            raise ResourceError(
                self.name,
                "not initialized: resolve it from the container (which calls initialize()) "
                "or await initialize() first",
            )
        return ring

    def _metered(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        started = self._meter.begin()
        try:
            result = fn(*args, **kwargs)
        except Exception as error:
            self._meter.end(started, error)
            raise
        except BaseException:
            self._meter.end(started)
            raise
        self._meter.end(started)
        return result

    async def _offloaded(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        self._ready()  # fail here, not in a thread, when it cannot work
        started = self._meter.begin()  # the meter is touched on the event loop only
        try:
            result = await asyncio.to_thread(fn, *args, **kwargs)
        except Exception as error:
            self._meter.end(started, error)
            raise
        except BaseException:
            self._meter.end(started)
            raise
        self._meter.end(started)
        return result

    def _take_key(self) -> keys.Key:
        """The active key, counted as one more message; rotates it first at the cap."""
        while True:
            key = self._ready().active
            with self._uses_lock:
                used = self._uses.get(key.kid, 0)
                if used < self.config.max_uses_per_key:
                    self._uses[key.kid] = used + 1
                    return key
            if self.config.key_source == "env":
                raise ResourceError(
                    self.name,
                    f"key {key.hex} has encrypted max_uses_per_key="
                    f"{self.config.max_uses_per_key} messages and keys from "
                    f"${self.config.key_env} cannot rotate here: add a new active key to "
                    f"the variable and restart",
                )
            self._rotate(_still_active(key.kid), reason="usage cap")

    def _key(self, kid: bytes) -> keys.Key:
        key = self._ready().keys.get(kid)
        if key is None and self._file is not None:
            # Another process may have rotated: look at the file (a stat when unchanged).
            try:
                self.reload()
            except ResourceError as error:
                logger.warning("crypto %s: %s", self.name, error.detail)
            key = self._ready().keys.get(kid)
        if key is None:
            logger.debug("crypto %s: key id %s is unknown or retired", self.name, kid.hex())
            raise envelopes.Tampered
        return key

    def _load(self) -> keys.KeyRing:
        config = self.config
        try:
            if config.key_source == "env":
                value = os.environ.get(config.key_env or "")
                if not value:
                    raise ResourceError(self.name,
                                        f"environment variable {config.key_env} is not set")
                return keys.from_env_value(value, config.algorithm)
            if self._file is None:
                return keys.KeyRing.of(keys.generate(config.algorithm))
            return self._load_file(self._file)
        except keys.KeyFormatError as error:
            where = (f"${config.key_env}" if config.key_source == "env"
                     else f"key file {config.key_file}")
            raise ResourceError(self.name, f"{where}: {error}") from None
        except OSError as error:
            raise ResourceError(self.name, f"key file {config.key_file}: "
                                           f"{error.strerror or error}") from error

    def _load_file(self, file: keys.KeyFile) -> keys.KeyRing:
        algorithm = self.config.algorithm
        with file.locked():
            found = file.read()
            if found is None:
                ring = keys.KeyRing.of(keys.generate(algorithm))
                self._seen = file.write(keys.dump(ring))
                logger.info("crypto %s: created key file %s", self.name, file.path)
                return ring
            text, self._seen = found
            ring = keys.load(text, algorithm)
            if ring.active.algorithm != algorithm:
                # The config moved on (say RSA_2048 to RSA_4096): new work uses a key
                # of the configured kind; the old keys still open what they made.
                ring = ring.rotated(keys.generate(algorithm))
                self._seen = file.write(keys.dump(ring))
                self._rotations += 1
        if file.group_or_world_readable():
            logger.warning("crypto %s: key file %s is readable by other users; "
                           "chmod 600 it", self.name, file.path)
        return ring

    def _read_file(self, file: keys.KeyFile) -> keys.KeyRing | None:
        found = file.read()
        if found is None:
            return None
        text, signature = found
        try:
            ring = keys.load(text, self.config.algorithm)
        except keys.KeyFormatError as error:
            raise ResourceError(self.name, f"key file {file.path}: {error}") from None
        self._seen = signature
        return ring

    def _install(self, ring: keys.KeyRing) -> None:
        if self._closed:
            return  # a rotation finishing in a thread after dispose() installs nothing
        self._ring = ring
        with self._uses_lock:
            for kid in [k for k in self._uses if k not in ring.keys]:
                del self._uses[kid]

    def _rotate(self, wanted: Callable[[keys.KeyRing], bool], reason: str = "manual") -> keys.Key:
        self._ready()
        self._refuse_env("rotate keys")
        fresh = keys.generate(self.config.algorithm)  # before any lock: RSA takes a while
        with self._ring_lock:
            if self._file is None:
                current = self._ready()
                if not wanted(current):
                    return current.active
                fresh.created = time.time()  # its age counts from when it becomes active
                self._install(current.rotated(fresh))
            else:
                with self._file.locked():
                    # Another process may have rotated already: decide on the file's set.
                    current = self._read_file(self._file) or self._ready()
                    if not wanted(current):
                        self._install(current)
                        return current.active
                    fresh.created = time.time()
                    ring = current.rotated(fresh)
                    self._seen = self._file.write(keys.dump(ring))
                    self._install(ring)
            self._rotations += 1
        logger.info("crypto %s: rotated to key %s (%s)", self.name, fresh.hex, reason)
        return fresh

    def _refuse_env(self, what: str) -> None:
        if self.config.key_source == "env":
            raise CryptoError(
                self.name,
                f"cannot {what}: the keys come from ${self.config.key_env}; change the "
                f"variable (a key set document) and restart, or use key_source='file'",
            )

    def _kid(self, key_id: str) -> bytes:
        try:
            kid = bytes.fromhex(key_id)
        except (TypeError, ValueError):
            kid = b""
        if len(kid) != keys.KID_BYTES:
            raise UnknownKey(self.name, str(key_id))
        return kid

    def _without(self, ring: keys.KeyRing, kid: bytes, key_id: str) -> keys.KeyRing:
        if kid not in ring.keys:
            raise UnknownKey(self.name, key_id)
        if kid == ring.active.kid:
            raise CryptoError(
                self.name, f"key {key_id} is the active key: rotate() first, then retire it"
            )
        return ring.without(kid)

    def _rotation_due_in(self) -> float | None:
        interval = self.config.key_rotation_interval
        if interval is None:
            return None
        return self._ready().active.created + interval - time.time()

    async def _keep(self) -> None:
        """Reload the key file now and then, and rotate when the active key is due."""
        failed = False
        while True:
            due_in = self._rotation_due_in()
            waits = [w for w in (due_in, self.config.key_reload_interval if self._file else None)
                     if w is not None]
            await asyncio.sleep(max(min(waits), 1.0 if failed else 0.01))
            try:
                if self._file is not None:
                    await asyncio.to_thread(self.reload)
                due_in = self._rotation_due_in()
                if due_in is not None and due_in <= 0:
                    interval = self.config.key_rotation_interval or 0.0
                    await asyncio.to_thread(self._rotate, _older_than(interval), "interval")
            except Exception as error:  # logged, and shown by health_check until it recovers
                failed = True
                self._keeper_error = f"key upkeep failed: {error}"
                logger.warning("crypto %s: key upkeep failed: %s", self.name, error)
            else:
                failed = False
                self._keeper_error = None


# Rotation conditions, checked again under the key file's lock: another process may
# have rotated in the meantime, and then this one does not.


def _always(ring: keys.KeyRing) -> bool:
    return True


def _still_active(kid: bytes) -> Callable[[keys.KeyRing], bool]:
    return lambda ring: ring.active.kid == kid


def _older_than(interval: float) -> Callable[[keys.KeyRing], bool]:
    return lambda ring: ring.active.created + interval <= time.time()
