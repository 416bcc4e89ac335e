"""A second OS process for tests/cache/test_processes.py.

    python -m tests.cache.worker watch URL        # prints "ready", then "seen <monotonic>"
    python -m tests.cache.worker stampede URL 0|1 # prints "ready", waits for "go", prints JSON

``watch`` reads key "k" into its HybridCache's memory tier, then polls it until the
value is "v2" and prints when it saw it (``time.monotonic()`` is system-wide on
Linux, so the parent can subtract its own reading). ``stampede`` runs 100 concurrent
``get_or_load`` of one cold key (the lock on or off) and reports what it got.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from tether.cache import HybridCache, HybridCacheConfig
from tether.resources.redis import RedisClient, RedisConfig

DEADLINE = 30.0


def say(line: str) -> None:
    print(line, flush=True)


async def watch(cache: HybridCache) -> None:
    await cache.get("k")
    if await cache.get("k") != "v1" or cache.statistics().memory_hits_total != 1:
        raise SystemExit(f"k is not in the memory tier: {cache.statistics()}")
    say("ready")
    deadline = time.monotonic() + DEADLINE
    while await cache.get("k") != "v2":
        if time.monotonic() > deadline:
            raise SystemExit("never saw v2")
        await asyncio.sleep(0.0005)
    say(f"seen {time.monotonic()!r}")


async def stampede(cache: HybridCache, rc: RedisClient, locked: bool) -> None:
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        await rc.incr("loads")
        # Hold the load until both processes have asked for the key, so that the two
        # misses surely overlap (with the lock, the other one is then waiting on it).
        deadline = time.monotonic() + DEADLINE
        while int(await rc.get("arrived") or 0) < 2:
            if time.monotonic() > deadline:
                raise SystemExit("the other process never arrived")
            await asyncio.sleep(0.01)
        if not locked:
            while int(await rc.get("loads") or 0) < 2:
                if time.monotonic() > deadline:
                    raise SystemExit("the other process never loaded")
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)  # time for the other one to reach the lock and wait
        return "value"

    say("ready")
    if (await asyncio.to_thread(sys.stdin.readline)).strip() != "go":
        raise SystemExit("expected go")
    calls = [cache.get_or_load("cold", load) for _ in range(100)]
    await rc.incr("arrived")
    results = await asyncio.gather(*calls)
    stats = cache.statistics()
    say(json.dumps({
        "pid": os.getpid(), "values": sorted(set(results)), "count": len(results),
        "loads": loads, "lock_waits": stats.lock_waits_total,
    }))


async def main(mode: str, url: str, locked: bool) -> None:
    rc = RedisClient(RedisConfig(url=url))
    await rc.initialize()
    cache = HybridCache(HybridCacheConfig(name="shared", lock=locked), rc)
    await cache.initialize()
    try:
        if mode == "watch":
            await watch(cache)
        else:
            await stampede(cache, rc, locked)
    finally:
        await cache.dispose()
        await rc.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], len(sys.argv) > 3 and sys.argv[3] == "1"))
