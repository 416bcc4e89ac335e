"""Benchmark tether's batteries in fresh processes and write the report.

    python -m benchmarks.batteries                       # 5 rounds (several minutes)
    python -m benchmarks.batteries --quick               # 2 rounds, short loops
    python -m benchmarks.batteries --only crypto,tokens  # some groups only
    python -m benchmarks.batteries --rounds 9 --target 0.3 --json batteries.json

Starts the loopback servers the chosen groups need (Redis and PostgreSQL through the
test suite's server classes, an asyncio HTTP server), then, each round, one worker
process per group (``benchmarks.batteries.worker``) in a shuffled order. Writes
``benchmarks/batteries/results.md``; a full run of every group (no ``--quick``, no
``--only``) also rewrites the tables of ``docs/benchmarks-batteries.md`` between its
markers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._process import run_json_worker
from benchmarks.batteries import GROUPS
from benchmarks.batteries._servers import SERVERS, start

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.md"
DOCS = ROOT / "docs" / "benchmarks-batteries.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
WORKER_TIMEOUT_S = 900
_SCALE = {"ns": 1e9, "µs": 1e6, "ms": 1e3}

Result = dict[str, Any]


# running ----------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_worker(group: str, args: Sequence[str]) -> Result:
    """One fresh process; a crash, a timeout or bad output becomes a skip reason."""
    return run_json_worker("benchmarks.batteries.worker", group, args, key="group",
                           timeout=WORKER_TIMEOUT_S)


def _status(result: Result) -> str:
    if "skipped" in result:
        return f"skipped ({result['skipped']})"
    parts = []
    for key, entry in result["scenarios"].items():
        timings = entry.get("timings")
        if timings is None:
            parts.append(f"{key} {'skipped' if 'skipped' in entry else 'FAILED'}")
            continue
        base = timings.get(entry["baseline"], {}).get("s")
        mine = [timings[label]["s"] for label in entry["tether"] if label in timings]
        ratios = "/".join(f"{m / base:.2f}" for m in mine) if base else ""
        parts.append(f"{key} x{ratios}" if ratios else key)
    return ", ".join(parts)


def run_rounds(groups: Sequence[str], rounds: int, worker_args: Sequence[str]) -> list[Result]:
    data: list[Result] = []
    for index in range(rounds):
        order = list(groups)
        random.shuffle(order)
        results: dict[str, Result] = {}
        for group in order:
            started = time.perf_counter()
            results[group] = run_worker(group, worker_args)
            took = time.perf_counter() - started
            _progress(f"round {index + 1}/{rounds} {group}: {_status(results[group])} "
                      f"[{took:.1f} s]")
        data.append({"order": order, "results": results, "loadavg": os.getloadavg()})
    return data


# summarising ------------------------------------------------------------------------


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(data: list[Result], groups: Sequence[str]) -> dict[str, Any]:
    """Per group, per scenario: the scenario's description, and per row the median,
    min and max over rounds of the seconds per request and of the ratio to the
    baseline measured in the same process (paired)."""
    summary: dict[str, Any] = {}
    for group in groups:
        runs = [run["results"].get(group, {}) for run in data]
        scenarios: dict[str, Any] = {}
        order: list[str] = next((r["order"] for r in runs if "order" in r), [])
        for run in runs:
            for key, entry in run.get("scenarios", {}).items():
                scenario = scenarios.setdefault(key, {"problems": [], "values": {},
                                                      "ratios": {}})
                for field in ("title", "baseline", "tether", "target", "unit", "rows"):
                    if field in entry:
                        scenario[field] = entry[field]
                problem = entry.get("skipped") or entry.get("error")
                if problem and problem not in scenario["problems"]:
                    scenario["problems"].append(problem)
                timings = entry.get("timings")
                if timings is None:
                    continue
                base = timings.get(entry["baseline"], {}).get("s")
                for label, timing in timings.items():
                    scenario["values"].setdefault(label, []).append(timing["s"])
                    if base:
                        scenario["ratios"].setdefault(label, []).append(timing["s"] / base)
        for scenario in scenarios.values():
            scenario["stats"] = {label: _spread(v) for label, v in scenario["values"].items()}
            scenario["ratio_stats"] = {label: _spread(v)
                                       for label, v in scenario["ratios"].items()}
        skipped = sorted({r["skipped"] for r in runs if "skipped" in r})
        title = next((r["title"] for r in runs if "title" in r), group)
        keys = [k for k in order if k in scenarios] + [k for k in scenarios if k not in order]
        summary[group] = {"title": title, "skipped": skipped,
                          "scenarios": {k: scenarios[k] for k in keys}}
    return summary


# reporting --------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "nproc": nproc,
        "os": f"{platform.system()} {platform.machine()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def server_versions(urls: dict[str, str]) -> dict[str, str]:
    versions: dict[str, str] = {}
    commands = {"redis": ["redis-server", "--version"]}
    if "postgres" in urls:
        from tests.servers.postgres import find_bindir

        bindir = find_bindir()
        if bindir is not None:
            commands["postgres"] = [str(bindir / "postgres"), "--version"]
    for name, command in commands.items():
        if name not in urls:
            continue
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=10).stdout
        except OSError:
            continue
        versions[name] = out.strip()
    if "http" in urls:
        versions["http"] = "benchmarks/batteries/_http_server.py (asyncio protocol, keep-alive)"
    return versions


def _time(seconds: float, unit: str) -> str:
    value = seconds * _SCALE[unit]
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}" if value < 10 else \
        f"{value:,.1f}"


def _ops(seconds: float) -> str:
    per_second = 1 / seconds
    if per_second >= 1e6:
        return f"{per_second / 1e6:,.2f} M"
    if per_second >= 1e3:
        return f"{per_second / 1e3:,.1f} k"
    return f"{per_second:,.0f}"


def _ratio(stats: dict[str, float]) -> str:
    median = stats["median"]
    text = f"{median:.2f}" if median < 10 else f"{median:.1f}"
    return f"{text} ({stats['min']:.2f}-{stats['max']:.2f})"


def _verdicts(scenario: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(row, overhead, target, met) for each tether row of a scenario with a target."""
    target = scenario.get("target")
    if target is None:
        return []
    found = []
    for label in scenario.get("tether", ["tether"]):
        ratio = scenario.get("ratio_stats", {}).get(label)
        if ratio is None:
            continue
        overhead = ratio["median"] - 1
        found.append((
            label,
            f"{overhead:+.1%} ({ratio['min'] - 1:+.1%} to {ratio['max'] - 1:+.1%})",
            f"≤ {target:.0%}",
            "yes" if overhead <= target else "no",
        ))
    return found


def targets_table(summary: dict[str, Any]) -> list[str]:
    lines = ["| group | scenario | row | over the baseline: median (min to max) "
             "| target | met |", "|---|---|---|---:|---:|---|"]
    for group in summary.values():
        for scenario in group["scenarios"].values():
            for verdict in _verdicts(scenario):
                lines.append(f"| {group['title']} | {scenario['title']} (baseline: "
                             f"{scenario['baseline']}) | " + " | ".join(verdict) + " |")
    return lines


def group_table(group: dict[str, Any], rounds: int) -> list[str]:
    lines = ["| scenario | implementation | time/op median | min-max | ops/s "
             "| x baseline, median (min-max) | notes |",
             "|---|---|---:|---:|---:|---:|---|"]
    for scenario in group["scenarios"].values():
        unit = scenario.get("unit", "µs")
        title = scenario.get("title", "?")
        rows = scenario.get("rows") or [{"label": label, "note": ""}
                                        for label in scenario.get("stats", {})]
        if not scenario.get("stats"):
            why = "; ".join(scenario["problems"]) or "no result"
            lines.append(f"| {title} | | skipped | | | | {why} |")
            continue
        first = True
        for row in rows:
            label = row["label"]
            stats = scenario["stats"].get(label)
            notes = [row.get("note", "")] if row.get("note") else []
            if label == scenario.get("baseline"):
                notes.append("baseline")
            if row.get("per_op", 1) > 1:
                notes.append(f"{row['per_op']} requests in flight; time per request")
            if stats is None:
                cells = ["skipped", "", "", ""]
            else:
                count = len(scenario["values"][label])
                if count < rounds:
                    notes.append(f"{count} of {rounds} rounds")
                ratio = scenario["ratio_stats"].get(label)
                cells = [
                    f"{_time(stats['median'], unit)} {unit}",
                    f"{_time(stats['min'], unit)}-{_time(stats['max'], unit)}",
                    _ops(stats["median"]),
                    _ratio(ratio) if ratio else "",
                ]
            lines.append(f"| {title if first else ''} | {label} | " + " | ".join(cells)
                         + " | " + "; ".join(notes).replace("|", "\\|") + " |")
            first = False
        for problem in scenario["problems"]:
            lines.append(f"| | | | | | | problem: {problem.replace('|', '/')} |")
    return lines


def noise(summary: dict[str, Any], only: str | None = None) -> dict[str, float]:
    """How far the per-round values of a row spread, (max - min) / median, over every
    row (of group ``only``, when given); and the same for the paired ratios of the rows
    that are not baselines."""
    spreads, ratio_spreads = [], []
    for name, group in summary.items():
        if only is not None and name != only:
            continue
        for scenario in group["scenarios"].values():
            for label, stats in scenario.get("stats", {}).items():
                if len(scenario["values"][label]) > 1:
                    spreads.append((stats["max"] - stats["min"]) / stats["median"])
            for label, stats in scenario.get("ratio_stats", {}).items():
                if label != scenario.get("baseline") and len(scenario["ratios"][label]) > 1:
                    ratio_spreads.append((stats["max"] - stats["min"]) / stats["median"])
    if not spreads:
        return {}
    return {
        "time_median": statistics.median(spreads), "time_max": max(spreads),
        "ratio_median": statistics.median(ratio_spreads) if ratio_spreads else 0.0,
        "ratio_max": max(ratio_spreads) if ratio_spreads else 0.0,
    }


def render(report: dict[str, Any]) -> str:
    meta, summary = report["meta"], report["summary"]
    machine, settings = meta["machine"], meta["settings"]
    versions = ", ".join(f"{name} {version}" for name, version in meta["versions"].items())
    overall = meta["noise"]
    out = [
        "# tether batteries: benchmark results",
        "",
        f"Generated {meta['date']} by "
        f"`{' '.join(['python -m benchmarks.batteries', *meta['argv']])}` "
        f"({meta['wall_s']:.0f} s).",
        "Regenerate with `python -m benchmarks.batteries` in the project venv, from the "
        "repository root; `docs/benchmarks-batteries.md` explains each scenario.",
        "",
        "## Setup",
        "",
        f"- CPU: {machine['cpu']}, {machine['nproc']} CPUs available ({machine['os']}); "
        f"load average {meta['load_before']:.2f} before the run, "
        f"{meta['load_after']:.2f} after (other work shared the machine).",
        f"- Python: {machine['python']}, standard asyncio event loop.",
        f"- Packages: {versions}.",
    ]
    out += [f"- Server: {text}" for text in meta["servers"].values()]
    out += [f"- Not run: {reason}" for reason in meta["missing"].values()]
    out += [
        f"- Rounds: {settings['rounds']}; each round starts one fresh process per group, "
        "groups in a shuffled order, scenarios shuffled inside the process.",
        f"- Timed loops: sequential `await`ed calls in one event loop (a batch of requests "
        f"at once where a row says so), op count calibrated 1, 2, 5, 10, ... to at least "
        f"{settings['target']} s per loop (warm-up included); {settings['repeat']} timed "
        "loops per row, the rows of a scenario interleaved in a shuffled order, best loop "
        "is the process's value; GC on.",
        "- Reported: median over rounds and min-max of the per-process values; "
        "x baseline is the ratio to the baseline row measured in the same process "
        "(paired), median and min-max over rounds.",
        "- Checked: every row's result before timing, after the last timed loop and at the "
        "end of every timed loop; counters around every timed loop (tether's statistics, "
        "the servers' own counts, connections opened).",
    ]
    if overall:
        out += [
            f"- Noise: a row's per-round values spread by {overall['time_median']:.0%} "
            f"(median over rows; worst {overall['time_max']:.0%}) of its median; its ratio "
            f"to the baseline by {overall['ratio_median']:.0%} (worst "
            f"{overall['ratio_max']:.0%}).",
        ]
    out += ["", "## Targets", "", *targets_table(summary)]
    for name, group in summary.items():
        out += ["", f"## {group['title']}", ""]
        if group["skipped"] and not group["scenarios"]:
            out += [f"Skipped: {'; '.join(group['skipped'])}"]
            continue
        out += group_table(group, settings["rounds"])
        spread = noise(summary, name)
        if spread:
            out += ["", f"Spread over rounds: times {spread['time_median']:.0%} (median over "
                        f"rows; worst {spread['time_max']:.0%}), ratios to the baseline "
                        f"{spread['ratio_median']:.0%} (worst {spread['ratio_max']:.0%})."]
        if group["skipped"]:
            out += ["", f"Some rounds failed: {'; '.join(group['skipped'])}"]
    return "\n".join(out) + "\n"


def update_docs(text: str) -> bool:
    """Put the tables between the markers of the docs page, headings one level down."""
    if not DOCS.exists():
        return False
    page = DOCS.read_text(encoding="utf-8")
    if START not in page or END not in page:
        return False
    body = [("#" + line if line.startswith("#") else line) for line in text.splitlines()[1:]]
    head, rest = page.split(START, 1)
    tail = rest.split(END, 1)[1]
    DOCS.write_text(head + START + "\n" + "\n".join(body).strip() + "\n" + END + tail, "utf-8")
    return True


# main -------------------------------------------------------------------------------


def _shown(argv: Sequence[str]) -> list[str]:
    """The command line as the report shows it: without ``--json PATH``, which says
    where to write, not what was measured (and would print a local path)."""
    shown: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--json":
            skip = True
        elif not arg.startswith("--json="):
            shown.append(arg)
    return shown


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.batteries",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--rounds", type=int, help="fresh processes per group (default 5; "
                                                    "--quick 2)")
    parser.add_argument("--quick", action="store_true",
                        help="2 rounds, 0.02 s loops, 5 loops per row")
    parser.add_argument("--target", type=float, help="seconds per timed loop (default 0.05)")
    parser.add_argument("--repeat", type=int, help="timed loops per row (default 15)")
    parser.add_argument("--only", help=f"comma-separated groups: {', '.join(GROUPS)}")
    parser.add_argument("--json", type=Path, help="also write every per-round value here")
    parser.add_argument("--no-write", action="store_true", help="print the report only")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else 5)
    args.target = args.target or (0.02 if args.quick else 0.05)
    args.repeat = args.repeat or (5 if args.quick else 15)
    args.partial = bool(args.only) or args.quick
    if args.only:
        chosen = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in GROUPS]
        if unknown:
            parser.error(f"unknown groups: {', '.join(unknown)}")
        args.groups = chosen
    else:
        args.groups = list(GROUPS)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    needed = [s for s in SERVERS if any(s in GROUPS[g][1] for g in args.groups)]
    urls: dict[str, str] = {}
    missing: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for server in needed:
            url, why = start(stack, server)
            if url is None:
                missing[server] = why or f"{server} did not start"
                _progress(f"{missing[server]}: its scenarios are skipped")
            else:
                urls[server] = url
        worker_args = ["--target", str(args.target), "--repeat", str(args.repeat)]
        worker_args += [f"--url={name}={url}" for name, url in urls.items()]
        worker_args += [f"--missing={name}={why}" for name, why in missing.items()]
        data = run_rounds(args.groups, args.rounds, worker_args)
        servers = server_versions(urls)
    versions: dict[str, str] = {}
    for run in data:
        for result in run["results"].values():
            versions.update(result.get("versions", {}))
    summary = summarise(data, args.groups)
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "argv": _shown(sys.argv[1:] if argv is None else argv),
        "machine": machine_info(),
        "versions": versions,
        "servers": servers,
        "missing": missing,
        "settings": {"rounds": args.rounds, "target": args.target, "repeat": args.repeat},
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "noise": noise(summary),
        "wall_s": time.perf_counter() - started,
    }
    report = {"meta": meta, "summary": summary, "data": data}
    text = render(report)
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n", "utf-8")
        _progress(f"wrote {args.json}")
    if args.no_write:
        return
    RESULTS.write_text(text, encoding="utf-8")
    _progress(f"wrote {RESULTS.relative_to(ROOT)}")
    if not args.partial and update_docs(text):
        _progress(f"updated {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
