"""Profile one row of one scenario with cProfile: where tether's time goes.

    python -m benchmarks.batteries.profiling GROUP SCENARIO [ROW] [--ops N] [--top N]
    python -m benchmarks.batteries.profiling crypto aes-gcm-1k-seal
    python -m benchmarks.batteries.profiling redis get "redis-py direct" --ops 20000

Starts the servers the group needs (as the benchmark does), builds the group's
scenarios, runs the row ``--ops`` times (after as many warm-up ops) under cProfile and
prints the functions with the most time of their own, then the same for the
scenario's baseline row when ROW is not the baseline: the difference between the two
lists is what the wrapper costs. cProfile's own cost per Python call inflates the
numbers; compare the lists, not the totals with the benchmark's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib
import io
import pstats
from contextlib import AsyncExitStack

from benchmarks.batteries import GROUPS
from benchmarks.batteries._harness import Env, Row, Scenario, verify
from benchmarks.batteries._servers import start


async def _run(row: Row, ops: int) -> None:
    op = row.op
    if row.is_async:
        for _ in range(ops):
            await op()
    else:
        for _ in range(ops):
            op()


async def profile_row(row: Row, ops: int, top: int) -> str:
    await verify(row, "before profiling")
    await _run(row, ops)  # warm-up
    profiler = cProfile.Profile()
    profiler.enable()
    await _run(row, ops)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return out.getvalue()


async def main_async(args: argparse.Namespace, env: Env) -> None:
    module = importlib.import_module(f"benchmarks.batteries.{GROUPS[args.group][0]}")
    async with AsyncExitStack() as stack:
        found = await module.scenarios(env, stack)
        scenario = next((s for s in found if isinstance(s, Scenario) and s.key == args.scenario),
                        None)
        if scenario is None:
            keys = ", ".join(s.key for s in found)
            raise SystemExit(f"no scenario {args.scenario!r} in {args.group} (has: {keys})")
        labels = [args.row or scenario.tether[0]]
        if labels[0] != scenario.baseline:
            labels.append(scenario.baseline)
        for label in labels:
            print(f"== {args.group} / {scenario.key} / {label}: {args.ops} ops ==")
            print(await profile_row(scenario.row(label), args.ops, args.top))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batteries.profiling")
    parser.add_argument("group", choices=list(GROUPS))
    parser.add_argument("scenario")
    parser.add_argument("row", nargs="?", help="row label (default: the tether row)")
    parser.add_argument("--ops", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    urls: dict[str, str] = {}
    missing: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for server in GROUPS[args.group][1]:
            url, why = start(stack, server)
            if url is None:
                missing[server] = why or server
            else:
                urls[server] = url
        asyncio.run(main_async(args, Env(urls, missing)))


if __name__ == "__main__":
    main()
