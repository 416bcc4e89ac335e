"""K5 across processes: one key file, shared by several processes, through rotate and retire.

The other processes are real: ``python -c`` children running the worker below, each
with its own ``Crypto`` on the same key file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tether.exceptions import DecryptionError, ResourceError
from tether.resources.crypto import Crypto, CryptoConfig

from .conftest import MakeCrypto
from .test_rotation import until

pytestmark = pytest.mark.anyio

WORKER = r"""
import asyncio, json, os, sys, time
from tether.exceptions import DecryptionError
from tether.resources.crypto import Crypto, CryptoConfig

async def main(key_file, commands):
    out = []
    crypto = None
    try:
        for op, arg in commands:
            if op == "wait_for":  # a barrier: start together with the other process
                open(arg + ".ready." + str(os.getpid()), "w").close()
                deadline = time.monotonic() + 30
                while not os.path.exists(arg) and time.monotonic() < deadline:
                    time.sleep(0.002)
            elif op == "init":
                crypto = Crypto(CryptoConfig(key_source="file", key_file=key_file))
                await crypto.initialize()
            elif op == "encrypt":
                out.append(crypto.encrypt(arg.encode()).hex())
            elif op == "decrypt":
                try:
                    out.append(crypto.decrypt(bytes.fromhex(arg)).decode())
                except DecryptionError:
                    out.append("DecryptionError")
            elif op == "rotate":
                out.append([crypto.rotate() for _ in range(arg)])
            elif op == "keys":
                out.append([crypto.active_key_id, list(crypto.key_ids)])
    finally:
        if crypto is not None:
            await crypto.dispose()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
"""


async def run_worker(key_file: Path, *commands: tuple[str, Any]) -> list[Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, str(key_file), json.dumps(commands),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=45)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, err.decode()
    result: list[Any] = json.loads(out)
    return result


async def together(key_file: Path, go: Path, *commands: tuple[str, Any]) -> list[list[Any]]:
    """Two workers that pass the barrier at the same moment, then run ``commands``."""
    workers = [asyncio.ensure_future(run_worker(key_file, ("wait_for", str(go)), *commands))
               for _ in range(2)]
    deadline = time.monotonic() + 30
    while len(list(go.parent.glob(go.name + ".ready.*"))) < 2 and time.monotonic() < deadline:
        if any(w.done() for w in workers):
            break
        await asyncio.sleep(0.01)
    await asyncio.to_thread(go.touch)
    return list(await asyncio.gather(*workers))


async def health_error(crypto: Crypto) -> str | None:
    try:
        await crypto.health_check()
    except ResourceError as error:
        return str(error)
    return None


def stored_ids(key_file: Path) -> tuple[str, list[str]]:
    doc = json.loads(key_file.read_text())
    return doc["active"], [k["kid"] for k in doc["keys"]]


@pytest.mark.slow
async def test_two_processes_starting_together_create_one_key_set(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.json"

    first, second = await together(key_file, tmp_path / "go", ("init", None), ("keys", None))

    assert first == second
    active, ids = stored_ids(key_file)
    assert first[0] == [active, ids]
    assert len(ids) == 1


@pytest.mark.slow
async def test_rotations_in_two_processes_at_once_lose_no_key(
    make_crypto: MakeCrypto, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys.json"
    crypto = await make_crypto(key_source="file", key_file=key_file)

    results = await together(key_file, tmp_path / "go", ("init", None), ("rotate", 10))

    rotated = results[0][0] + results[1][0]
    assert len(set(rotated)) == 20
    assert crypto.reload()
    assert len(crypto.key_ids) == 21
    assert set(rotated) <= set(crypto.key_ids)
    assert crypto.active_key_id in rotated
    assert stored_ids(key_file)[1] == list(crypto.key_ids)


@pytest.mark.slow
async def test_a_rotation_and_a_retirement_in_one_process_are_seen_by_the_other(
    make_crypto: MakeCrypto, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys.json"
    here = await make_crypto(key_source="file", key_file=key_file)
    first = here.active_key_id
    old = here.encrypt(b"before")

    opened, (rotated,), new, keys_there = await run_worker(
        key_file, ("init", None), ("decrypt", old.hex()), ("rotate", 1), ("encrypt", "after"),
        ("keys", None),
    )
    assert opened == "before"
    # An envelope under a key this process has not seen yet makes it reload the file.
    assert here.decrypt(bytes.fromhex(new)) == b"after"
    assert here.active_key_id == rotated
    assert [here.active_key_id, list(here.key_ids)] == keys_there

    newer = here.encrypt(b"newest")
    here.retire(first)
    assert await run_worker(key_file, ("init", None), ("decrypt", old.hex()),
                            ("decrypt", newer.hex())) == ["DecryptionError", "newest"]


@pytest.mark.slow
async def test_the_keeper_reloads_a_rotation_made_elsewhere(
    make_crypto: MakeCrypto, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys.json"
    here = await make_crypto(key_source="file", key_file=key_file, key_reload_interval=0.05)

    [[rotated]] = await run_worker(key_file, ("init", None), ("rotate", 1))

    await until(lambda: here.active_key_id == rotated)
    assert here.active_key_id == rotated


async def test_two_backends_in_one_process_share_a_key_file(
    make_crypto: MakeCrypto, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys.json"
    one = await make_crypto(key_source="file", key_file=key_file)
    two = await make_crypto(key_source="file", key_file=key_file)

    one.rotate()
    sealed = one.encrypt(b"x")

    assert two.decrypt(sealed) == b"x"
    assert two.active_key_id == one.active_key_id
    assert two.key_ids == one.key_ids


async def test_the_key_file_is_created_private_and_names_no_secret_in_repr(
    make_crypto: MakeCrypto, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys.json"

    crypto = await make_crypto(key_source="file", key_file=key_file)

    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    doc = json.loads(key_file.read_text())
    assert doc["format"] == "tether-crypto-keys"
    assert doc["version"] == 1
    assert doc["active"] == crypto.active_key_id
    secret = doc["keys"][0]["secret"]
    assert secret not in repr(crypto)
    assert secret not in repr(crypto.config)
    assert secret not in str(crypto.statistics())
    assert sorted(os.listdir(tmp_path)) == ["keys.json", "keys.json.lock"]  # no temp file


async def test_a_key_file_readable_by_others_is_warned_about(
    make_crypto: MakeCrypto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / "keys.json"
    await make_crypto(key_source="file", key_file=key_file)
    os.chmod(key_file, 0o644)

    with caplog.at_level(logging.WARNING, logger="tether.resources.crypto"):
        await make_crypto(key_source="file", key_file=key_file)

    assert "is readable by other users; chmod 600 it" in caplog.text


async def test_a_corrupt_key_file_fails_initialize_without_quoting_it(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.json"
    key_file.write_text('{"format": "tether-crypto-keys", "version": 1, "keys": [{"kid": 1}]}')
    crypto = Crypto(CryptoConfig(key_source="file", key_file=key_file))

    with pytest.raises(ResourceError, match=r"key file .*keys.json: key #1: a key id is 16 hex"):
        await crypto.initialize()


async def test_a_key_file_of_another_family_is_refused(
    make_crypto: MakeCrypto, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys.json"
    await make_crypto(key_source="file", key_file=key_file)
    rsa = Crypto(CryptoConfig(algorithm="RSA_2048", key_source="file", key_file=key_file))

    with pytest.raises(ResourceError, match=r"is an AES_256_GCM key, but this backend is "
                                            r"configured for RSA_2048"):
        await rsa.initialize()


async def test_a_changed_algorithm_rotates_to_a_key_of_the_new_kind(
    make_crypto: MakeCrypto, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys.json"
    gcm = await make_crypto(key_source="file", key_file=key_file)
    old = gcm.encrypt(b"sealed with gcm")

    cbc = await make_crypto(algorithm="AES_256_CBC_HMAC", key_source="file", key_file=key_file)

    assert len(cbc.key_ids) == 2
    assert cbc.encrypt(b"x")[1] == 2  # the CBC scheme
    assert cbc.decrypt(old) == b"sealed with gcm"  # each key keeps its own algorithm


async def test_a_deleted_key_file_makes_health_fail(
    make_crypto: MakeCrypto, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys.json"
    crypto = await make_crypto(key_source="file", key_file=key_file, key_reload_interval=0.05)
    assert await crypto.health_check()

    key_file.unlink()
    with pytest.raises(ResourceError, match="is gone"):
        crypto.reload()
    deadline = time.monotonic() + 10
    while await health_error(crypto) is None and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)

    assert "key upkeep failed: " in (await health_error(crypto) or "")
    assert "is gone" in (await health_error(crypto) or "")
    # Keys already loaded keep working meanwhile.
    assert crypto.decrypt(crypto.encrypt(b"x")) == b"x"


async def test_decrypting_with_an_unknown_key_id_does_not_reread_an_unchanged_file(
    make_crypto: MakeCrypto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "keys.json"
    crypto = await make_crypto(key_source="file", key_file=key_file)
    sealed = bytearray(crypto.encrypt(b"x"))
    sealed[2:10] = os.urandom(8)
    reads: list[Path] = []
    real_open = open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(str(file)) == key_file:
            reads.append(key_file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    for _ in range(20):
        with pytest.raises(DecryptionError):
            crypto.decrypt(bytes(sealed))

    assert reads == []
