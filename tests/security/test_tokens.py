"""Access and refresh tokens: scenarios A1-A4 (forged algorithms, claims, key ids,
refresh rotation and token-kind confusion)."""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr, ValidationError

from tether import Container
from tether.exceptions import ClosedError
from tether.security import InvalidToken, MemoryTokenStore, TokenConfig, Tokens

pytestmark = pytest.mark.anyio

ISSUER, AUDIENCE = "https://notes.example", "notes-api"


def make(**options: Any) -> Tokens:
    return Tokens(TokenConfig(issuer=ISSUER, audience=AUDIENCE, **options))


def hs_config(**options: Any) -> TokenConfig:
    return TokenConfig(issuer=ISSUER, audience=AUDIENCE, algorithm="HS256",
                       secrets=(SecretStr(secrets.token_urlsafe(48)),), **options)


def b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    sig = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return f"{b64(header)}.{b64(payload)}.{sig}"


def good_payload(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "nbf": now,
               "exp": now + 60, "jti": "j1", "fam": "f1", "token_use": "access",
               "scope": "", "roles": []}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def reason(tokens: Tokens, token: str, kind: str = "access") -> str:
    with pytest.raises(InvalidToken) as caught:
        tokens.decode(token, kind)  # type: ignore[arg-type]
    return caught.value.reason


# -- issuing and verifying -----------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256", "RS256", "PS256"])
async def test_an_issued_access_token_verifies_with_its_claims(algorithm: str) -> None:
    tokens = make(algorithm=algorithm)
    pair = await tokens.issue("alice", scopes=["notes:read"], roles=["editor"],
                              extra={"tenant": "t1"})
    claims = await tokens.verify(pair.access_token)
    assert (claims.subject, claims.kind, claims.scopes, claims.roles) == (
        "alice", "access", ("notes:read",), ("editor",))
    assert claims.extra == {"tenant": "t1"}
    assert claims.expires_at - claims.issued_at == 900
    assert pair.to_dict()["token_type"] == "Bearer"


async def test_hs256_tokens_verify_with_the_configured_secret() -> None:
    tokens = Tokens(hs_config())
    pair = await tokens.issue("bob")
    assert (await tokens.verify(pair.access_token)).subject == "bob"


async def test_a_token_from_another_service_with_another_key_is_refused() -> None:
    ours, theirs = make(), make()
    pair = await theirs.issue("alice")
    assert reason(ours, pair.access_token) == "unknown key id"


# -- A1: forged algorithms -----------------------------------------------------------


async def test_alg_none_is_refused() -> None:
    tokens = make()
    kid = tokens.key_ids[0]
    token = forge({"alg": "none", "typ": "at+jwt", "kid": kid}, good_payload())
    assert reason(tokens, token) == "algorithm not allowed"


async def test_an_algorithm_other_than_the_configured_one_is_refused() -> None:
    tokens = Tokens(hs_config())
    secret = tokens.config.secrets[0].get_secret_value().encode()
    token = jwt.encode(good_payload(), secret, algorithm="HS512",
                       headers={"kid": tokens.key_ids[0], "typ": "at+jwt"})
    assert reason(tokens, token) == "algorithm not allowed"


async def test_hs256_signed_with_the_public_key_is_refused() -> None:
    """Key confusion (CVE-2022-29217 shape): an HS256 MAC keyed with the RS256 public
    PEM must not pass as an RS256 signature."""
    tokens = make(algorithm="RS256")
    public = tokens.public_jwks()["keys"][0]
    pem = jwt.algorithms.RSAAlgorithm.from_jwk(public).public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": tokens.key_ids[0]}
    signing_input = f"{b64(header)}.{b64(good_payload())}".encode()
    import hashlib
    import hmac

    mac = hmac.new(pem, signing_input, hashlib.sha256).digest()
    token = forge(header, good_payload(), mac)
    assert reason(tokens, token) == "algorithm not allowed"


def test_short_hmac_secrets_are_refused_at_configuration() -> None:
    with pytest.raises(ValidationError, match="shorter than the 32 bytes HS256 needs"):
        TokenConfig(issuer=ISSUER, audience=AUDIENCE, algorithm="HS256",
                    secrets=(SecretStr("short"),))


def test_an_hs_algorithm_without_secrets_says_what_to_set() -> None:
    with pytest.raises(ValidationError, match="needs `secrets`"):
        TokenConfig(issuer=ISSUER, audience=AUDIENCE, algorithm="HS256")


def test_rsa_keys_under_2048_bits_are_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = weak.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()
    with pytest.raises(ValueError, match="under 2048 bits"):
        make(algorithm="RS256", private_keys=(SecretStr(pem),))


def test_secrets_never_appear_in_the_config_repr() -> None:
    config = hs_config()
    secret = config.secrets[0].get_secret_value()
    assert secret not in repr(config)
    assert secret not in str(config.model_dump())


# -- A2: missing or invalid claims ---------------------------------------------------


def signed(tokens: Tokens, payload: dict[str, Any], typ: str = "at+jwt") -> str:
    key = tokens._keys[tokens.key_ids[-1]]
    return jwt.encode(payload, key.signing, algorithm=tokens.config.algorithm,
                      headers={"kid": key.kid, "typ": typ})


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "jti", "iss", "aud"])
def test_a_token_missing_a_required_claim_is_refused(claim: str) -> None:
    tokens = make()
    token = signed(tokens, good_payload(**{claim: None}))
    assert reason(tokens, token) == f"missing the {claim!r} claim"


def test_an_expired_token_is_refused_beyond_the_leeway_only() -> None:
    tokens = make(leeway=10)
    now = int(time.time())
    assert tokens.decode(signed(tokens, good_payload(exp=now - 5)), "access").subject == "alice"
    assert reason(tokens, signed(tokens, good_payload(exp=now - 30))) == "token expired"


def test_a_token_not_valid_yet_is_refused() -> None:
    tokens = make(leeway=0)
    token = signed(tokens, good_payload(nbf=int(time.time()) + 600))
    assert reason(tokens, token) == "token not valid yet"


@pytest.mark.parametrize(("claim", "value", "why"), [
    ("aud", "another-api", "wrong audience"),
    ("iss", "https://evil.example", "wrong issuer"),
    ("iss", "https://notes.example.evil", "wrong issuer"),
    ("iss", "https://notes", "wrong issuer"),  # a prefix of the issuer (GHSA-75c5)
])
def test_a_wrong_audience_or_issuer_is_refused(claim: str, value: str, why: str) -> None:
    tokens = make()
    assert reason(tokens, signed(tokens, good_payload(**{claim: value}))) == why


def test_a_tampered_payload_fails_the_signature() -> None:
    tokens = make()
    token = signed(tokens, good_payload())
    head, _, sig = token.split(".")
    assert reason(tokens, f"{head}.{b64(good_payload(sub='mallory'))}.{sig}") == "bad signature"


# -- A3: key ids --------------------------------------------------------------------


@pytest.mark.parametrize("kid", ["nope", "../../etc/passwd", "' OR 1=1 --", 42, None])
def test_an_unknown_or_hostile_kid_is_refused_without_a_default_key(kid: Any) -> None:
    tokens = make()
    key = tokens._keys[tokens.key_ids[0]]
    header = {"alg": "EdDSA", "typ": "at+jwt"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{b64(header)}.{b64(good_payload())}".encode()
    token = forge(header, good_payload(), key.signing.sign(signing_input))
    assert reason(tokens, token) in {"unknown key id", "malformed token"}


async def test_rotation_signs_with_the_new_key_and_old_tokens_verify_until_retired() -> None:
    tokens = make()
    old_kid = tokens.key_ids[0]
    old = await tokens.issue("alice")
    new_kid = tokens.rotate()
    new = await tokens.issue("alice")
    assert jwt.get_unverified_header(new.access_token)["kid"] == new_kid
    assert (await tokens.verify(old.access_token)).subject == "alice"
    tokens.retire(old_kid)
    assert reason(tokens, old.access_token) == "unknown key id"
    assert (await tokens.verify(new.access_token)).subject == "alice"


def test_the_active_key_cannot_be_retired() -> None:
    tokens = make()
    with pytest.raises(ValueError, match="rotate"):
        tokens.retire(tokens.key_ids[0])


def test_the_jwks_lists_every_public_key_and_no_private_part() -> None:
    tokens = make(algorithm="RS256")
    tokens.rotate()
    jwks = tokens.public_jwks()
    assert [k["kid"] for k in jwks["keys"]] == list(tokens.key_ids)
    assert all("d" not in k and k["alg"] == "RS256" for k in jwks["keys"])


# -- A4: refresh rotation and token-kind confusion -----------------------------------


async def test_an_access_token_is_refused_where_a_refresh_token_is_expected() -> None:
    tokens = make()
    pair = await tokens.issue("alice")
    with pytest.raises(InvalidToken, match="not a refresh token"):
        await tokens.refresh(pair.access_token)
    with pytest.raises(InvalidToken, match="not an access token"):
        await tokens.verify(pair.refresh_token)


async def test_a_typ_header_and_token_use_claim_must_agree() -> None:
    tokens = make()
    payload = good_payload(token_use="refresh")
    assert reason(tokens, signed(tokens, payload, typ="at+jwt")) == "not an access token"


async def test_refresh_gives_a_new_pair_and_the_old_refresh_token_dies() -> None:
    tokens = make()
    first = await tokens.issue("alice", scopes=["notes:read"])
    second = await tokens.refresh(first.refresh_token)
    claims = await tokens.verify(second.access_token)
    assert claims.scopes == ("notes:read",)
    third = await tokens.refresh(second.refresh_token)
    assert (await tokens.verify(third.access_token)).subject == "alice"


async def test_reusing_a_rotated_refresh_token_revokes_the_whole_family() -> None:
    tokens = make()
    stolen = await tokens.issue("alice")
    legit = await tokens.refresh(stolen.refresh_token)
    with pytest.raises(InvalidToken, match="reused"):
        await tokens.refresh(stolen.refresh_token)
    # Every token of the family is dead now, the legitimate holder's included.
    with pytest.raises(InvalidToken, match="revoked"):
        await tokens.refresh(legit.refresh_token)
    with pytest.raises(InvalidToken, match="revoked"):
        await tokens.verify(legit.access_token)
    assert tokens.statistics().reuse_detected_total == 1
    # Another login is a new family and unaffected.
    other = await tokens.issue("alice")
    assert (await tokens.verify(other.access_token)).subject == "alice"


async def test_two_concurrent_refreshes_with_one_token_let_one_through() -> None:
    import asyncio

    tokens = make()
    pair = await tokens.issue("alice")
    results = await asyncio.gather(tokens.refresh(pair.refresh_token),
                                   tokens.refresh(pair.refresh_token),
                                   return_exceptions=True)
    assert sum(isinstance(r, InvalidToken) for r in results) == 1


async def test_revoking_an_access_token_refuses_it_from_then_on() -> None:
    tokens = make()
    pair = await tokens.issue("alice")
    await tokens.revoke(pair.access_token)
    with pytest.raises(InvalidToken, match="revoked"):
        await tokens.verify(pair.access_token)
    with pytest.raises(InvalidToken, match="not a token this service issued"):
        await tokens.revoke("garbage")


async def test_revocations_expire_from_the_memory_store() -> None:
    now = [1000.0]
    store = MemoryTokenStore(clock=lambda: now[0])
    await store.revoke("t", ttl=5)
    assert await store.is_revoked("t", "f")
    now[0] += 6
    assert not await store.is_revoked("t", "f")


def test_extra_claims_may_not_overwrite_reserved_ones() -> None:
    tokens = make()
    with pytest.raises(ValueError, match=r"\['sub'\]"):
        tokens._encode("access", "a", (), (), {"sub": "root"}, "f", "j", 60)


# -- as a resource -------------------------------------------------------------------


async def test_tokens_live_in_a_container_with_health_and_statistics() -> None:
    container = Container()
    container.bind(TokenConfig, TokenConfig(issuer=ISSUER, audience=AUDIENCE))
    container.bind(Tokens)
    async with container:
        tokens = await container.aget(Tokens)
        await tokens.issue("alice")
        report = await container.health()
        assert report.resources["Tokens"].is_healthy
        stats = container.statistics()["Tokens"]
        assert stats.issued_total == 1
        assert stats.keys == 1
    with pytest.raises(ClosedError):
        await tokens.issue("alice")


# -- signing keys from the crypto key ring -------------------------------------------


async def ring(path: Any, algorithm: str = "RSA_2048") -> Any:
    from tether.resources.crypto import Crypto, CryptoConfig

    crypto = Crypto(CryptoConfig(name="jwt-keys", algorithm=algorithm, key_source="file",
                                 key_file=path))
    await crypto.initialize()
    return crypto


async def test_instances_sharing_a_key_file_verify_each_others_tokens(tmp_path: Any) -> None:
    one_ring, two_ring = await ring(tmp_path / "keys.json"), await ring(tmp_path / "keys.json")
    try:
        config = TokenConfig(issuer=ISSUER, audience=AUDIENCE, algorithm="PS256")
        one, two = Tokens(config, keys=one_ring), Tokens(config, keys=two_ring)
        pair = await one.issue("alice")
        assert jwt.get_unverified_header(pair.access_token)["kid"] == one_ring.active_key_id
        assert (await two.verify(pair.access_token)).subject == "alice"
        # One instance rotates; the other picks the new key up from the file on first sight.
        new_kid = one.rotate()
        rotated = await one.issue("bob")
        assert jwt.get_unverified_header(rotated.access_token)["kid"] == new_kid
        assert (await two.verify(rotated.access_token)).subject == "bob"
        assert (await two.verify(pair.access_token)).subject == "alice"  # old key verifies
    finally:
        await one_ring.dispose()
        await two_ring.dispose()


async def test_a_retired_ring_key_stops_verifying(tmp_path: Any) -> None:
    crypto = await ring(tmp_path / "keys.json")
    try:
        tokens = Tokens(TokenConfig(issuer=ISSUER, audience=AUDIENCE, algorithm="RS256"),
                        keys=crypto)
        old_kid = tokens.key_ids[0]
        old = await tokens.issue("alice")
        tokens.rotate()
        with pytest.raises(ValueError, match="rotate"):
            tokens.retire(tokens.key_ids[-1])
        tokens.retire(old_kid)
        assert reason(tokens, old.access_token) == "unknown key id"
        assert [k["kid"] for k in tokens.public_jwks()["keys"]] == list(tokens.key_ids)
    finally:
        await crypto.dispose()


async def test_ring_keys_need_an_rsa_backend_and_an_rsa_algorithm(tmp_path: Any) -> None:
    aes = await ring(tmp_path / "aes.json", "AES_256_GCM")
    rsa_ring = await ring(tmp_path / "rsa.json")
    try:
        with pytest.raises(ValueError, match="RS256 or PS256"):
            Tokens(TokenConfig(issuer=ISSUER, audience=AUDIENCE), keys=rsa_ring)
        with pytest.raises(ValueError, match="needs an RSA crypto backend"):
            Tokens(TokenConfig(issuer=ISSUER, audience=AUDIENCE, algorithm="RS256"), keys=aes)
    finally:
        await aes.dispose()
        await rsa_ring.dispose()
