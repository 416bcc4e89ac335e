from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tether.resources.crypto import Crypto, CryptoConfig

MakeCrypto = Callable[..., Awaitable[Crypto]]


@functools.cache
def rsa_pem(bits: int) -> str:
    """One RSA key per size for the whole run: generating RSA-4096 takes up to a second."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


@pytest.fixture
async def make_crypto(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MakeCrypto]:
    """Build and initialize backends; every one is disposed when the test ends.

    RSA backends get the run's shared key through the environment unless the test
    says where keys come from.
    """
    made: list[Crypto] = []

    async def make(**options: Any) -> Crypto:
        algorithm = options.get("algorithm", "AES_256_GCM")
        if algorithm.startswith("RSA") and "key_source" not in options:
            variable = f"TETHER_TEST_{algorithm}"
            monkeypatch.setenv(variable, rsa_pem(int(algorithm[4:])))
            options = {**options, "key_source": "env", "key_env": variable}
        crypto = Crypto(CryptoConfig(**options))
        await crypto.initialize()
        made.append(crypto)
        return crypto

    yield make
    for crypto in made:
        await crypto.dispose()
