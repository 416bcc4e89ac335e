"""Run one group's scenarios in this (fresh) process and print one JSON object.

    python -m benchmarks.batteries.worker GROUP [--target S] [--repeat N]
        [--url redis=redis://...] [--missing 'postgres=why'] [--seed N]

The orchestrator (``python -m benchmarks.batteries``) starts one of these per group
per round. The JSON has ``group``, ``versions`` (of the distributions the group
compares) and ``scenarios``: for each scenario key its title, baseline, target, unit,
rows (label and note, in the order the module lists them) and either ``timings``
(best seconds per request and op count per row) or ``skipped``/``error``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.metadata
import json
import random
import traceback
from contextlib import AsyncExitStack
from typing import Any

from benchmarks.batteries import GROUPS
from benchmarks.batteries._harness import Env, Scenario, Skip, WorkError, measure


def _reason(error: BaseException) -> str:
    if isinstance(error, WorkError):
        return f"wrong work: {error}"[:400]
    lines = traceback.format_exception_only(type(error), error)
    return lines[-1].strip()[:400]


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _describe(scenario: Scenario) -> dict[str, Any]:
    return {
        "title": scenario.title,
        "baseline": scenario.baseline,
        "tether": scenario.tether,
        "target": scenario.target,
        "unit": scenario.unit,
        "rows": [{"label": row.label, "note": row.note, "per_op": row.per_op}
                 for row in scenario.rows],
    }


async def run_group(group: str, env: Env, target: float, repeat: int) -> dict[str, Any]:
    module = importlib.import_module(f"benchmarks.batteries.{GROUPS[group][0]}")
    out: dict[str, Any] = {
        "group": group,
        "title": module.TITLE,
        "versions": {d: _version(d) for d in ("tether", *module.DISTRIBUTIONS)},
        "scenarios": {},
    }
    async with AsyncExitStack() as stack:
        found: list[Scenario | Skip] = await module.scenarios(env, stack)
        order = list(found)
        random.shuffle(order)  # scenarios in a new order in each process
        for item in order:
            if isinstance(item, Skip):
                out["scenarios"][item.key] = {"title": item.title, "skipped": item.reason}
                continue
            entry = _describe(item)
            try:
                entry["timings"] = (await measure(item, target, repeat)).as_json()
            except Exception as error:
                entry["error"] = _reason(error)
            out["scenarios"][item.key] = entry
        out["order"] = [item.key for item in found]  # the module's order, for the report
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.batteries.worker")
    parser.add_argument("group", choices=list(GROUPS))
    parser.add_argument("--target", type=float, default=0.05, help="seconds per timed loop")
    parser.add_argument("--repeat", type=int, default=15,
                        help="timed loops per row, rows interleaved; the best counts")
    parser.add_argument("--url", action="append", default=[], metavar="SERVER=URL")
    parser.add_argument("--missing", action="append", default=[], metavar="SERVER=REASON")
    parser.add_argument("--seed", type=int, help="seed of the shuffles (default: random)")
    args = parser.parse_args(argv)
    if args.seed is not None:
        random.seed(args.seed)
    env = Env(
        urls=dict(item.split("=", 1) for item in args.url),
        missing=dict(item.split("=", 1) for item in args.missing),
    )
    try:
        out = asyncio.run(run_group(args.group, env, args.target, args.repeat))
    except Exception as error:  # set-up failed: the whole group is skipped, with why
        out = {"group": args.group, "skipped": _reason(error)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
