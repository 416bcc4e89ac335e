"""K6: PBKDF2 defaults, re-hashing outdated hashes, and CPU-heavy work off the event loop."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tether.resources.crypto import Crypto, CryptoConfig

from .conftest import MakeCrypto

pytestmark = pytest.mark.anyio


def unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def legacy_hash(password: str, iterations: int, scheme: str = "sha256") -> str:
    """A hash as an older configuration stored it."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac(scheme, password.encode(), salt, iterations)
    b64 = base64.b64encode
    return (f"$pbkdf2-{scheme}$i={iterations}$"
            f"{b64(salt).decode().rstrip('=')}${b64(digest).decode().rstrip('=')}")


async def test_default_hash_is_pbkdf2_sha256_600k_with_a_16_byte_salt(
    make_crypto: MakeCrypto,
) -> None:
    crypto = await make_crypto()

    hashed = await crypto.ahash_password("correct horse battery staple")

    empty, scheme, iterations, salt, digest = hashed.split("$")
    assert (empty, scheme, iterations) == ("", "pbkdf2-sha256", "i=600000")
    assert len(unb64(salt)) == 16
    assert unb64(digest) == hashlib.pbkdf2_hmac(
        "sha256", b"correct horse battery staple", unb64(salt), 600_000
    )


@pytest.mark.slow
async def test_every_hash_gets_its_own_salt(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()

    hashes = [await crypto.ahash_password("same password") for _ in range(4)]

    assert len({h.split("$")[3] for h in hashes}) == 4


async def test_verify_accepts_the_password_and_refuses_others(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()
    hashed = await crypto.ahash_password("s3cret")

    assert await crypto.averify_password(hashed, "s3cret") == (True, None)
    assert await crypto.averify_password(hashed, "s3cret ") == (False, None)
    assert crypto.verify_password(hashed, b"s3cret") == (True, None)


@pytest.mark.slow
async def test_an_old_100k_hash_is_rehashed_on_verify(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()
    old = legacy_hash("hunter2", 100_000)

    ok, new = await crypto.averify_password(old, "hunter2")

    assert ok
    assert new is not None
    assert new.startswith("$pbkdf2-sha256$i=600000$")
    assert await crypto.averify_password(new, "hunter2") == (True, None)


async def test_an_old_hash_with_a_wrong_password_is_not_rehashed(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()

    assert crypto.verify_password(legacy_hash("hunter2", 100_000), "wrong") == (False, None)


@pytest.mark.slow
async def test_a_hash_of_another_scheme_is_moved_to_the_configured_one(
    make_crypto: MakeCrypto,
) -> None:
    crypto = await make_crypto(password_hash="pbkdf2-sha512", password_iterations=210_000)

    ok, new = await crypto.averify_password(legacy_hash("pw", 600_000), "pw")

    assert ok
    assert new is not None
    assert new.startswith("$pbkdf2-sha512$i=210000$")
    assert len(unb64(new.split("$")[4])) == 64


@pytest.mark.slow
async def test_a_hash_stronger_than_the_settings_is_kept(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()

    assert await crypto.averify_password(legacy_hash("pw", 700_000), "pw") == (True, None)


@pytest.mark.parametrize(
    "hashed",
    ["", "plaintext", "$pbkdf2-sha256$600000$c2FsdA$aGFzaA", "$pbkdf2-md5$i=1$c2FsdA$aGFzaA",
     "$pbkdf2-sha256$i=0$c2FsdA$aGFzaA", "$pbkdf2-sha256$i=10$!!!$aGFzaA",
     "$pbkdf2-sha256$i=999999999999$c2FsdA$aGFzaA", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"],
)
async def test_a_string_that_is_not_a_pbkdf2_hash_is_a_value_error(
    make_crypto: MakeCrypto, hashed: str
) -> None:
    crypto = await make_crypto()

    with pytest.raises(ValueError, match="PBKDF2 password hash: expected") as caught:
        crypto.verify_password(hashed, "pw")

    assert hashed not in str(caught.value) or not hashed


async def test_absurdly_long_passwords_are_refused(make_crypto: MakeCrypto) -> None:
    crypto = await make_crypto()

    with pytest.raises(ValueError, match="longer than 4096 bytes"):
        await crypto.ahash_password("x" * 4097)


# -- off the event loop -----------------------------------------------------------------


class Ticker:
    """Wakes every 10 ms and records how late each wake-up was."""

    def __init__(self) -> None:
        self.lags: list[float] = []

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            self.lags.append(time.perf_counter() - started - 0.01)


@pytest.fixture
async def ticker() -> AsyncIterator[Ticker]:
    ticker = Ticker()
    task = asyncio.create_task(ticker.run())
    await asyncio.sleep(0.05)
    ticker.lags.clear()
    yield ticker
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def assert_loop_kept_ticking(ticker: Ticker, work: Callable[[], Awaitable[object]]) -> None:
    loop_cpu = time.thread_time()  # CPU time of this thread: the event loop's
    await work()
    await asyncio.sleep(0.03)  # let a tick that was held up record its lag
    loop_cpu = time.thread_time() - loop_cpu
    # Work done on the loop would hold ticks up for the whole derivation (about 0.1 s
    # each) or key generation (up to a second), and burn that CPU on this thread;
    # 50 ms leaves room for a busy machine.
    assert ticker.lags, "the ticker never ran"
    assert max(ticker.lags) < 0.05, f"event loop lag {max(ticker.lags) * 1000:.0f} ms"
    assert loop_cpu < 0.05, f"the event loop thread itself spent {loop_cpu * 1000:.0f} ms"


@pytest.mark.slow
async def test_password_hashing_runs_off_the_event_loop(
    make_crypto: MakeCrypto, ticker: Ticker
) -> None:
    crypto = await make_crypto()
    old = legacy_hash("pw", 100_000)

    async def work() -> None:
        hashed = await crypto.ahash_password("pw")
        await crypto.averify_password(hashed, "pw")
        await crypto.averify_password(old, "pw")  # verified, then re-hashed

    await assert_loop_kept_ticking(ticker, work)


@pytest.mark.slow
async def test_rsa_4096_key_generation_runs_off_the_event_loop(ticker: Ticker) -> None:
    crypto = Crypto(CryptoConfig(algorithm="RSA_4096"))

    async def work() -> None:
        await crypto.initialize()  # generates the first key
        await crypto.arotate()  # and a second one
        await crypto.averify(b"x", await crypto.asign(b"x"))

    try:
        await assert_loop_kept_ticking(ticker, work)
    finally:
        await crypto.dispose()
    assert len(crypto.statistics().failures_by_kind) == 0
