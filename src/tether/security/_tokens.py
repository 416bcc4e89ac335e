"""JWT access and refresh tokens on PyJWT: fixed algorithms, required claims, typed
tokens, key ids with rotation, refresh rotation with reuse detection, revocation."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from .._providers import resource
from ..exceptions import ClosedError
from ..resources.crypto import Crypto
from ._errors import InvalidToken
from ._stores import MemoryTokenStore, TokenStore

Algorithm = Literal["HS256", "HS384", "HS512", "RS256", "PS256", "ES256", "EdDSA"]
Kind = Literal["access", "refresh"]

# RFC 7518 3.2: an HMAC key at least as long as the hash output.
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
# The JOSE "typ" header of each kind of token (RFC 8725 3.11, RFC 9068 for access).
_TYP: dict[str, str] = {"access": "at+jwt", "refresh": "rt+jwt"}
_REQUIRED = ["exp", "iat", "sub", "jti", "iss", "aud"]
_OPTIONS: Any = {"require": _REQUIRED, "verify_signature": True}
# The claims tether writes itself: extra claims may not set them.
_RESERVED = frozenset({"iss", "aud", "sub", "iat", "nbf", "exp", "jti", "fam", "token_use",
                       "scope", "roles"})


class TokenConfig(BaseModel):
    """How tokens are signed and checked. The algorithm comes from here, never from a
    token.

    HS* algorithms need ``secrets`` (the first signs, all verify; each at least as
    long as the hash, 32 bytes for HS256). The others take PEM private keys in
    ``private_keys`` (the first signs) or, with none given, generate one at start-up:
    fine for one process; several processes must share keys through the config.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "tokens"
    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    algorithm: Algorithm = "EdDSA"
    secrets: tuple[SecretStr, ...] = ()
    private_keys: tuple[SecretStr, ...] = ()
    access_ttl: float = Field(default=900.0, gt=0)
    refresh_ttl: float = Field(default=30 * 86400.0, gt=0)
    leeway: float = Field(default=10.0, ge=0, le=300)

    @model_validator(mode="after")
    def _keys_fit_the_algorithm(self) -> TokenConfig:
        if self.algorithm.startswith("HS"):
            if not self.secrets:
                raise ValueError(
                    f"algorithm {self.algorithm} needs `secrets` (one or more random strings "
                    f"of at least {_HMAC_MIN_BYTES[self.algorithm]} bytes, e.g. "
                    f"secrets.token_urlsafe(48)), or choose an asymmetric algorithm such as "
                    f"EdDSA and let tether generate a key"
                )
            if self.private_keys:
                raise ValueError(f"algorithm {self.algorithm} signs with `secrets`; "
                                 f"`private_keys` are for RS256, PS256, ES256 and EdDSA")
            short = [i for i, s in enumerate(self.secrets)
                     if len(s.get_secret_value().encode()) < _HMAC_MIN_BYTES[self.algorithm]]
            if short:
                raise ValueError(
                    f"secrets[{short[0]}] is shorter than the {_HMAC_MIN_BYTES[self.algorithm]} "
                    f"bytes {self.algorithm} needs (RFC 7518 3.2); use a longer random secret"
                )
        elif self.secrets:
            raise ValueError(f"algorithm {self.algorithm} signs with `private_keys` (PEM) or a "
                             f"generated key; `secrets` are for HS256, HS384 and HS512")
        if self.refresh_ttl <= self.access_ttl:
            raise ValueError("refresh_ttl must be longer than access_ttl")
        return self


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What a login or a refresh hands the client (the OAuth2 token response)."""

    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"

    def to_dict(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "refresh_token": self.refresh_token,
                "token_type": self.token_type, "expires_in": self.expires_in}


@dataclass(frozen=True, slots=True)
class Claims:
    """A verified token's claims."""

    subject: str
    kind: Kind
    token_id: str
    family: str
    issued_at: float
    expires_at: float
    scopes: tuple[str, ...] = ()
    roles: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str
    signing: Any  # what PyJWT signs with
    verifying: Any  # what PyJWT verifies with
    created_at: float


@resource
class Tokens:
    """Issues and verifies access and refresh tokens (a ``@resource``).

    ``store`` keeps revocations and the refresh-token families (memory by default;
    use a Redis store when several processes share the service). ``keys``, an RSA
    backend of ``tether.resources.crypto`` (``RSA_2048``/``RSA_4096``), supplies the
    signing keys instead of the config: its key ids become the tokens' ``kid``, its
    ``rotate()``/``retire()`` rotate them, and with a key file every process signs and
    verifies with the same ring (algorithm ``RS256`` or ``PS256``).
    """

    def __init__(
        self,
        config: TokenConfig,
        store: TokenStore | None = None,
        *,
        keys: Crypto | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if keys is not None:
            if config.algorithm not in ("RS256", "PS256"):
                raise ValueError(f"Tokens(keys=...) signs with the crypto backend's RSA keys: "
                                 f"use algorithm RS256 or PS256, not {config.algorithm}")
            if not keys.config.algorithm.startswith("RSA"):
                raise ValueError(f"Tokens(keys=...) needs an RSA crypto backend, and "
                                 f"{keys.config.name!r} is {keys.config.algorithm}")
            if config.private_keys:
                raise ValueError("give the signing keys either as keys= or as "
                                 "private_keys, not both")
        self._ring = keys
        self.config = config
        self.store: TokenStore = store if store is not None else MemoryTokenStore(clock=clock)
        self._clock = clock
        self._keys: dict[str, _Key] = {}
        self._active: _Key | None = None
        self._closed = False
        self.issued_total = 0
        self.rejected_total = 0
        self.reuse_detected_total = 0
        if keys is None:
            self._load_keys()

    # -- keys ------------------------------------------------------------------------

    def _load_keys(self) -> None:
        cfg = self.config
        if cfg.algorithm.startswith("HS"):
            for s in reversed(cfg.secrets):
                self._add(s.get_secret_value().encode())
        elif cfg.private_keys:
            for pem in reversed(cfg.private_keys):
                self._add(_load_private(pem.get_secret_value(), cfg.algorithm))
        else:
            self._add(_generate(cfg.algorithm))

    def _add(self, secret_or_key: Any) -> _Key:
        now = self._clock()
        if isinstance(secret_or_key, bytes):
            kid = hashlib.sha256(secret_or_key).hexdigest()[:16]
            key = _Key(kid, secret_or_key, secret_or_key, now)
        else:
            public = secret_or_key.public_key()
            der = public.public_bytes(serialization.Encoding.DER,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)
            kid = hashlib.sha256(der).hexdigest()[:16]
            key = _Key(kid, secret_or_key, public, now)
        self._keys[kid] = key
        self._active = key
        return key

    def _signing_key(self) -> _Key:
        if self._ring is not None:
            found = self._ring._rsa_key()
            if found is None:  # pragma: no cover - an RSA ring always has an active key
                raise RuntimeError("the crypto backend has no RSA signing key")
            return _ring_key(found)
        if self._active is None:  # pragma: no cover - a key is loaded in __init__
            raise RuntimeError("no signing key")
        return self._active

    def _key_for(self, kid: str) -> _Key | None:
        if self._ring is not None:
            found = self._ring._rsa_key(kid)
            return _ring_key(found) if found is not None else None
        return self._keys.get(kid)

    def rotate(self) -> str:
        """Sign with a new key from now on; tokens signed with older keys still verify
        until ``retire(kid)``. Returns the new key id."""
        if self._ring is not None:
            return self._ring.rotate()
        algorithm = self.config.algorithm
        if algorithm.startswith("HS"):
            return self._add(secrets.token_bytes(_HMAC_MIN_BYTES[algorithm])).kid
        return self._add(_generate(algorithm)).kid

    def retire(self, kid: str) -> None:
        """Stop accepting tokens signed with ``kid`` (not the active key)."""
        if self._ring is not None:
            if kid == self._ring.active_key_id:
                raise ValueError("the active signing key cannot be retired; rotate() first")
            self._ring.retire(kid)
            return
        if self._active is not None and kid == self._active.kid:
            raise ValueError("the active signing key cannot be retired; rotate() first")
        if self._keys.pop(kid, None) is None:
            raise KeyError(f"no signing key with id {kid!r}")

    @property
    def key_ids(self) -> tuple[str, ...]:
        return self._ring.key_ids if self._ring is not None else tuple(self._keys)

    def public_jwks(self) -> dict[str, Any]:
        """The verification keys as a JWK Set (asymmetric algorithms only), for
        ``/.well-known/jwks.json``."""
        if self.config.algorithm.startswith("HS"):
            raise ValueError("HS* keys are secrets: they have no public JWK Set")
        keys = []
        held = [self._key_for(kid) for kid in self.key_ids]
        for key in (k for k in held if k is not None):
            algo = jwt.get_algorithm_by_name(self.config.algorithm)
            entry: dict[str, Any] = algo.to_jwk(key.verifying, as_dict=True)
            entry.update(kid=key.kid, use="sig", alg=self.config.algorithm)
            keys.append(entry)
        return {"keys": keys}

    # -- issuing ---------------------------------------------------------------------

    async def issue(
        self,
        subject: str,
        *,
        scopes: Iterable[str] = (),
        roles: Iterable[str] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> TokenPair:
        """A new access + refresh pair starting a new refresh family (a login)."""
        self._check_open()
        if not subject:
            raise ValueError("a token needs a non-empty subject")
        family = uuid.uuid4().hex
        refresh_id = uuid.uuid4().hex
        await self.store.start_family(family, refresh_id, self.config.refresh_ttl)
        return self._pair(subject, tuple(scopes), tuple(roles), dict(extra or {}), family,
                          refresh_id)

    def _pair(self, subject: str, scopes: tuple[str, ...], roles: tuple[str, ...],
              extra: dict[str, Any], family: str, refresh_id: str) -> TokenPair:
        cfg = self.config
        access = self._encode("access", subject, scopes, roles, extra, family,
                              uuid.uuid4().hex, cfg.access_ttl)
        refresh = self._encode("refresh", subject, scopes, roles, extra, family, refresh_id,
                               cfg.refresh_ttl)
        self.issued_total += 1
        return TokenPair(access, refresh, int(cfg.access_ttl))

    def _encode(self, kind: Kind, subject: str, scopes: tuple[str, ...],
                roles: tuple[str, ...], extra: dict[str, Any], family: str, jti: str,
                ttl: float) -> str:
        cfg, key = self.config, self._signing_key()
        clash = _RESERVED & set(extra)
        if clash:
            raise ValueError(f"extra claims may not set {sorted(clash)}: tether sets them")
        now = int(self._clock())
        payload = {
            **extra,
            "iss": cfg.issuer, "aud": cfg.audience, "sub": subject,
            "iat": now, "nbf": now, "exp": now + int(ttl),
            "jti": jti, "fam": family, "token_use": kind,
            "scope": " ".join(scopes), "roles": list(roles),
        }
        return jwt.encode(payload, key.signing, algorithm=cfg.algorithm,
                          headers={"kid": key.kid, "typ": _TYP[kind]})

    # -- verifying -------------------------------------------------------------------

    def decode(self, token: str, kind: Kind) -> Claims:
        """Check signature, algorithm, key id, type and claims; no revocation look-up.
        Raises ``InvalidToken``."""
        self._check_open()
        only = self._only_key()
        if only is not None:
            # One key: verify first and read the header PyJWT parsed, instead of
            # parsing it a second time to choose the key.
            header, payload = self._decoded(token, only, kind)
            if header.get("kid") != only.kid:
                raise self._reject("unknown key id")
        else:
            found = _header(token)
            if found is None:
                raise self._reject("malformed token")
            kid = found.get("kid")
            key = self._key_for(kid) if isinstance(kid, str) and len(kid) <= 64 else None
            if key is None:
                raise self._reject("unknown key id")
            if found.get("typ") != _TYP[kind]:
                raise self._reject(f"not {_article(kind)} {kind} token")
            header, payload = self._decoded(token, key, kind)
        if header.get("typ") != _TYP[kind]:
            raise self._reject(f"not {_article(kind)} {kind} token")
        if payload.get("token_use") != kind:
            raise self._reject(f"not {_article(kind)} {kind} token")
        scope = payload.get("scope", "")
        roles = payload.get("roles", [])
        family = payload.get("fam")
        if not isinstance(scope, str) or not isinstance(roles, list) or \
                not isinstance(family, str) or not isinstance(payload["sub"], str):
            raise self._reject("malformed claims")
        return Claims(
            subject=payload["sub"], kind=kind, token_id=str(payload["jti"]), family=family,
            issued_at=float(payload["iat"]), expires_at=float(payload["exp"]),
            scopes=tuple(scope.split()), roles=tuple(str(r) for r in roles),
            extra={k: v for k, v in payload.items() if k not in _RESERVED},
        )

    def _only_key(self) -> _Key | None:
        if self._ring is None and len(self._keys) == 1:
            return self._active
        return None

    def _decoded(self, token: str, key: _Key, kind: Kind) -> tuple[dict[str, Any], dict[str, Any]]:
        """PyJWT's checks of signature, algorithm and claims; ``(header, payload)``."""
        cfg = self.config
        try:
            decoded = jwt.decode_complete(
                token, key.verifying, algorithms=[cfg.algorithm], audience=cfg.audience,
                issuer=(cfg.issuer,), leeway=cfg.leeway, options=_OPTIONS,
            )
        except jwt.ExpiredSignatureError as error:
            raise self._reject("token expired") from error
        except jwt.PyJWTError as error:
            # With one key tried blindly, a token signed under another key id is an
            # unknown key, not a forgery of this one.
            found = _header(token)
            if found is not None and isinstance(error, jwt.InvalidSignatureError) and \
                    found.get("kid") != key.kid:
                raise self._reject("unknown key id") from error
            raise self._reject(_reason(error)) from error
        header: dict[str, Any] = decoded["header"]
        payload: dict[str, Any] = decoded["payload"]
        return header, payload

    async def verify(self, token: str, kind: Kind = "access") -> Claims:
        """``decode`` plus the revocation store: a revoked token or family is refused."""
        claims = self.decode(token, kind)
        if await self.store.is_revoked(claims.token_id, claims.family):
            raise self._reject("token revoked")
        return claims

    async def refresh(self, refresh_token: str) -> TokenPair:
        """Trade a refresh token for a new pair. The old refresh token dies; presenting
        it again revokes its whole family (RFC 9700 4.14): a stolen token and the real
        one cannot both go on."""
        claims = await self.verify(refresh_token, "refresh")
        new_id = uuid.uuid4().hex
        rotated = await self.store.rotate(claims.family, claims.token_id, new_id,
                                          self.config.refresh_ttl)
        if not rotated:
            self.reuse_detected_total += 1
            await self.store.revoke_family(claims.family, self.config.refresh_ttl)
            raise self._reject("refresh token reused; its family is revoked")
        return self._pair(claims.subject, claims.scopes, claims.roles, dict(claims.extra),
                          claims.family, new_id)

    async def revoke(self, token: str) -> None:
        """Revoke one token (logout of an access token, or a refresh family)."""
        for kind in ("access", "refresh"):
            try:
                claims = self.decode(token, kind)
            except InvalidToken:
                continue
            if kind == "refresh":
                await self.store.revoke_family(claims.family, self.config.refresh_ttl)
            else:
                await self.store.revoke(claims.token_id,
                                        max(0.0, claims.expires_at - self._clock()) + 1)
            return
        raise InvalidToken("not a token this service issued")

    async def revoke_family(self, family: str) -> None:
        await self.store.revoke_family(family, self.config.refresh_ttl)

    # -- lifecycle ---------------------------------------------------------------------

    async def initialize(self) -> None:
        await self.store.initialize()

    async def dispose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.store.dispose()

    async def health_check(self) -> bool:
        """A round trip: issue and verify a token with the active key, and reach the
        store."""
        probe = self._encode("access", "health-check", (), (), {}, "health", "health",
                             60.0)
        self.decode(probe, "access")
        await self.store.is_revoked("health", "health")
        return True

    def statistics(self) -> TokenStats:
        active = self._signing_key()
        return TokenStats(
            issued_total=self.issued_total,
            rejected_total=self.rejected_total,
            reuse_detected_total=self.reuse_detected_total,
            keys=len(self.key_ids),
            active_key_age_seconds=max(0.0, self._clock() - active.created_at),
        )

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"Tokens {self.config.name!r}")

    def _reject(self, reason: str) -> InvalidToken:
        self.rejected_total += 1
        return InvalidToken(reason)

    def __repr__(self) -> str:
        return (f"Tokens({self.config.name!r}, algorithm={self.config.algorithm}, "
                f"keys={len(self._keys) if self._ring is None else 'from the crypto ring'})")


@dataclass(frozen=True, slots=True)
class TokenStats:
    issued_total: int
    rejected_total: int
    reuse_detected_total: int
    keys: int
    active_key_age_seconds: float


def _header(token: str) -> dict[str, Any] | None:
    """The JOSE header, read from the token's first segment only, to pick the key.
    PyJWT checks the whole token, this header included, right after."""
    head, dot, _ = token.partition(".")
    if not dot or len(head) > 2048:
        return None
    try:
        found = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, binascii.Error):
        return None
    return found if isinstance(found, dict) else None


def _ring_key(found: tuple[str, Any, float]) -> _Key:
    kid, private, created = found
    return _Key(kid, private, private.public_key(), created)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _reason(error: jwt.PyJWTError) -> str:
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"missing the {error.claim!r} claim"
    if isinstance(error, jwt.InvalidAudienceError):
        return "wrong audience"
    if isinstance(error, jwt.InvalidIssuerError):
        return "wrong issuer"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "token not valid yet"
    if isinstance(error, jwt.InvalidAlgorithmError):
        return "algorithm not allowed"
    if isinstance(error, jwt.InvalidSignatureError | jwt.InvalidKeyError):
        return "bad signature"
    return "malformed token"


def _generate(algorithm: str) -> Any:
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _load_private(pem: str, algorithm: str) -> Any:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    expected: dict[str, type] = {
        "EdDSA": ed25519.Ed25519PrivateKey, "ES256": ec.EllipticCurvePrivateKey,
        "RS256": rsa.RSAPrivateKey, "PS256": rsa.RSAPrivateKey,
    }
    if not isinstance(key, expected[algorithm]):
        raise ValueError(f"private_keys holds a {type(key).__name__}, which cannot sign "
                         f"{algorithm}")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < 2048:
        raise ValueError(f"RSA keys under 2048 bits are refused (got {key.key_size})")
    return key
