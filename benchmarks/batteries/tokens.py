"""Tokens: issue a token pair, decode an access token, verify it against the store.

tether's ``Tokens`` against PyJWT called directly with the same key, claims, headers
and checks, for HS256 (where PyJWT's own work is smallest, so tether's share shows
most) and EdDSA (tether's default). The two sides share the key and the key id, so
each side's tokens decode on the other: that is checked before timing.

- issue: two ``jwt.encode`` (access and refresh: ``iss``, ``aud``, ``sub``, ``iat``,
  ``nbf``, ``exp``, ``jti``, ``fam``, ``token_use``, ``scope``, ``roles``; headers
  ``kid`` and ``typ``), three random ids, and the refresh family remembered in a dict
  (what tether's memory store does);
- decode: ``jwt.decode_complete`` with the algorithm pinned, audience, issuer, leeway
  and the six required claims, then the key id, ``typ`` and ``token_use`` checked;
- verify: decode, then the two revocation look-ups (the token id, its family).
"""

from __future__ import annotations

import functools
import hashlib
import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from benchmarks.batteries._harness import Env, Row, Scenario, Skip, counted, expect

if TYPE_CHECKING:
    from tether.security import TokenConfig, Tokens

TITLE = "Security kit: tokens"
DISTRIBUTIONS = ("pyjwt", "cryptography")
TARGET = 0.10

ISSUER, AUDIENCE, SUBJECT = "bench", "bench-api", "user-42"
SCOPES, ROLES = ("notes:read", "notes:write"), ("editor",)
ACCESS_TTL, REFRESH_TTL, LEEWAY = 900, 30 * 86400, 10.0
REQUIRED = ["exp", "iat", "sub", "jti", "iss", "aud"]
TYP = {"access": "at+jwt", "refresh": "rt+jwt"}
HS256_SECRET = "b" * 48


class DirectJWT:
    """The same tokens, written with PyJWT alone."""

    def __init__(self, algorithm: str, signing: Any, verifying: Any, kid: str) -> None:
        self.algorithm = algorithm
        self.signing = signing
        self.verifying = verifying
        self.kid = kid
        self.families: dict[str, tuple[str, float]] = {}
        self.revoked: dict[str, float] = {}

    def _encode(self, kind: str, jti: str, family: str, ttl: int) -> str:
        now = int(time.time())
        payload = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": SUBJECT,
            "iat": now, "nbf": now, "exp": now + ttl,
            "jti": jti, "fam": family, "token_use": kind,
            "scope": " ".join(SCOPES), "roles": list(ROLES),
        }
        return jwt.encode(payload, self.signing, algorithm=self.algorithm,
                          headers={"kid": self.kid, "typ": TYP[kind]})

    async def issue(self) -> tuple[str, str]:
        family, refresh_id = uuid.uuid4().hex, uuid.uuid4().hex
        self.families[family] = (refresh_id, time.time() + REFRESH_TTL)
        access = self._encode("access", uuid.uuid4().hex, family, ACCESS_TTL)
        return access, self._encode("refresh", refresh_id, family, REFRESH_TTL)

    def decode(self, token: str) -> dict[str, Any]:
        decoded = jwt.decode_complete(
            token, self.verifying, algorithms=[self.algorithm], audience=AUDIENCE,
            issuer=ISSUER, leeway=LEEWAY, options={"require": REQUIRED},
        )
        header, payload = decoded["header"], decoded["payload"]
        if header.get("kid") != self.kid or header.get("typ") != TYP["access"] \
                or payload.get("token_use") != "access":
            raise jwt.InvalidTokenError("not an access token of this service")
        claims: dict[str, Any] = payload
        return claims

    def decode_parsing_twice(self, token: str) -> dict[str, Any]:
        """``decode`` after ``jwt.get_unverified_header``, as tether reads the key id
        first: explains its decode row."""
        jwt.get_unverified_header(token)
        return self.decode(token)

    async def verify(self, token: str) -> dict[str, Any]:
        payload = self.decode(token)
        now = time.time()
        expiry = self.revoked.get(payload["jti"])
        if expiry is not None and expiry > now:
            raise jwt.InvalidTokenError("revoked")
        family = self.families.get(payload["fam"])
        if family is not None and family[0] == "revoked" and family[1] > now:
            raise jwt.InvalidTokenError("revoked")
        return payload


def _kid(material: bytes) -> str:
    return hashlib.sha256(material).hexdigest()[:16]  # as tether names its keys


def _pair(algorithm: str) -> tuple[TokenConfig, DirectJWT]:
    """The tether config and the direct signer for one algorithm, sharing the key."""
    from tether.security import TokenConfig

    common: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "algorithm": algorithm,
                              "access_ttl": ACCESS_TTL, "refresh_ttl": REFRESH_TTL,
                              "leeway": LEEWAY}
    if algorithm == "HS256":
        secret = HS256_SECRET.encode()
        config = TokenConfig(name="hs256", secrets=(HS256_SECRET,), **common)
        return config, DirectJWT(algorithm, secret, secret, _kid(secret))
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    public = key.public_key()
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    config = TokenConfig(name="eddsa", private_keys=(pem,), **common)
    return config, DirectJWT(algorithm, key, public, _kid(der))


def _check_claims(subject: Any, scopes: Any, roles: Any) -> None:
    expect(subject == SUBJECT, f"subject {subject!r}")
    expect(tuple(scopes) == SCOPES and tuple(roles) == ROLES, "scopes or roles differ")


def _interchangeable(tokens: Tokens, direct: DirectJWT, theirs: str, ours: str) -> None:
    claims = tokens.decode(ours, "access")
    _check_claims(claims.subject, claims.scopes, claims.roles)
    payload = direct.decode(theirs)
    _check_claims(payload["sub"], payload["scope"].split(), payload["roles"])
    expect(len(theirs) == len(ours), f"tether's token has {len(theirs)} characters, the "
                                     f"direct one {len(ours)}")
    expect(set(jwt.decode(theirs, options={"verify_signature": False}))
           == set(jwt.decode(ours, options={"verify_signature": False})),
           "the two tokens carry different claims")


def _scenarios(algorithm: str, tokens: Tokens, direct: DirectJWT,
               access: str, direct_access: str) -> list[Scenario | Skip]:
    low = algorithm.lower()
    issue_tether = functools.partial(tokens.issue, SUBJECT, scopes=SCOPES, roles=ROLES)

    def pair_check(decode: Callable[[str], Any]) -> Callable[[Any], None]:
        def check(pair: Any) -> None:
            access_token = pair.access_token if hasattr(pair, "access_token") else pair[0]
            decode(access_token)  # raises when it is not a valid access token

        return check

    def claims_check(result: Any) -> None:
        if isinstance(result, dict):
            _check_claims(result["sub"], result["scope"].split(), result["roles"])
        else:
            _check_claims(result.subject, result.scopes, result.roles)

    issued = counted(lambda: tokens.issued_total, "issued_total")
    return [
        Scenario(
            f"{low}-issue", f"{algorithm}: issue an access + refresh pair",
            (
                Row("tether", issue_tether,
                    pair_check(functools.partial(tokens.decode, kind="access")), issued),
                Row("PyJWT direct", direct.issue, pair_check(direct.decode)),
            ),
            baseline="PyJWT direct", target=TARGET,
        ),
        Scenario(
            f"{low}-decode", f"{algorithm}: decode an access token (no store look-up)",
            (
                Row("tether", functools.partial(tokens.decode, access, "access"), claims_check),
                Row("PyJWT direct", functools.partial(direct.decode, direct_access),
                    claims_check),
                Row("PyJWT direct + get_unverified_header",
                    functools.partial(direct.decode_parsing_twice, direct_access),
                    claims_check, note="explains tether's row: the token parsed twice"),
            ),
            baseline="PyJWT direct", target=TARGET,
        ),
        Scenario(
            f"{low}-verify", f"{algorithm}: verify an access token (decode + memory store)",
            (
                Row("tether", functools.partial(tokens.verify, access), claims_check),
                Row("PyJWT direct", functools.partial(direct.verify, direct_access),
                    claims_check),
            ),
            baseline="PyJWT direct", target=TARGET,
        ),
    ]


async def scenarios(env: Env, stack: AsyncExitStack) -> list[Scenario | Skip]:
    from tether import Container
    from tether.security import Tokens

    found: list[Scenario | Skip] = []
    for algorithm in ("HS256", "EdDSA"):
        config, direct = _pair(algorithm)
        container = Container()
        container.bind(Tokens, Tokens(config))
        await stack.enter_async_context(container)
        tokens = await container.aget(Tokens)
        access = (await tokens.issue(SUBJECT, scopes=SCOPES, roles=ROLES)).access_token
        direct_access = (await direct.issue())[0]
        _interchangeable(tokens, direct, access, direct_access)
        found += _scenarios(algorithm, tokens, direct, access, direct_access)
    return found
