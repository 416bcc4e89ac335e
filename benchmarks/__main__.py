"""Run every library's benchmarks in fresh processes and write the report.

    python -m benchmarks                 # 5 rounds, ~0.1 s timed loops, S4 5000 requests
    python -m benchmarks --quick         # 2 rounds, short loops, S4 1000 requests, 1 S1000 run
    python -m benchmarks --rounds 9 --libs hand-written,tether,wireup

Each round starts one worker process per library (``benchmarks.worker``), in a shuffled
order, for S1-S3, then one per S4 row (a FastAPI app), in a shuffled order, for S4;
S1000 gets its own fresh process per run so that its peak-RSS reading is not inflated
by the other scenarios. A library takes part only in the scenarios its module defines.
Writes ``benchmarks/results/latest.md`` (tables) and ``benchmarks/results/latest.json``
(every per-round value).
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import functools
import importlib.metadata
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._process import run_json_worker
from benchmarks.libs import LIBRARIES

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
BASELINE = "hand-written"
S4_BASELINE = "no DI"  # the S4 row of the hand-written module
WORKER_TIMEOUT_S = 600

Result = dict[str, Any]

SCENARIOS = {
    "s1": "S1 singleton lookup: get an existing APP singleton `Config` (ns/op)",
    "s2": "S2 transient graph: resolve `A(B(C), D(C))`, everything transient (ns/op)",
    "s3": (
        "S3 request scope: enter, resolve `Handler(Config, Resource)`, exit "
        "(async finalizer runs) (ns/op)"
    ),
}
S4_TITLE = (
    "S4 FastAPI end to end: `GET` an endpoint that needs `Handler`, sequential in-process "
    "ASGI requests (µs/request)"
)


# running ----------------------------------------------------------------------------


def run_worker(library: str, args: Sequence[str]) -> Result:
    """One fresh process; a crash, a timeout or bad output becomes a skip reason."""
    return run_json_worker("benchmarks.worker", library, args, key="library",
                           timeout=WORKER_TIMEOUT_S)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _status(result: Result, keys: Sequence[str]) -> str:
    if "skipped" in result:
        return f"skipped ({result['skipped']})"
    parts = []
    for key in keys:
        value = result.get(key, {})
        if "ns" in value:
            parts.append(f"{key} {value['ns']:,.0f} ns")
        elif "us" in value:
            parts.append(f"{key} {value['us']:,.1f} µs/request")
        elif "build_ms" in value:
            parts.append(f"{key} {value['build_ms'] + value['resolve_ms']:,.1f} ms")
        else:
            parts.append(f"{key} skipped")
    return ", ".join(parts)


def run_all(
    libraries: Sequence[str],
    rounds: int,
    s1000_runs: int,
    worker_args: Sequence[str],
    s4_args: Sequence[str],
    s1000_args: Sequence[str],
) -> dict[str, Any]:
    """Results keyed by library (S1-S3, S1000) or by S4 row label (S4)."""
    data: dict[str, Any] = {"rounds": [], "s4_rounds": [], "s1000_runs": []}
    sync_libs = [lib for lib in libraries if has_any(lib, ("s1", "s2", "s3"))]
    jobs: dict[str, dict[str, tuple[str, list[str]]]] = {
        "rounds": {lib: (lib, list(worker_args)) for lib in sync_libs},
        "s4_rounds": {
            label: (lib, ["--s4", function, *s4_args])
            for label, (lib, function) in s4_rows(libraries).items()
        },
        "s1000_runs": {
            lib: (lib, ["--s1000", *s1000_args]) for lib in libraries if has(lib, "s1000")
        },
    }
    for kind, count, keys, label in (
        ("rounds", rounds, ("s1", "s2", "s3"), "round"),
        ("s4_rounds", rounds, ("s4",), "S4 round"),
        ("s1000_runs", s1000_runs, ("s1000",), "S1000 run"),
    ):
        for index in range(count):
            order = list(jobs[kind])
            random.shuffle(order)
            results: dict[str, Result] = {}
            for name in order:
                library, extra = jobs[kind][name]
                start = time.perf_counter()
                results[name] = run_worker(library, extra)
                took = time.perf_counter() - start
                _progress(
                    f"{label} {index + 1}/{count} {name}: "
                    f"{_status(results[name], keys)} [{took:.1f} s]"
                )
            data[kind].append({"order": order, "results": results})
    return data


# summarising ------------------------------------------------------------------------


def _values(runs: list[dict[str, Any]], library: str, key: str, field: str) -> list[float]:
    values = []
    for run in runs:
        value = run["results"].get(library, {}).get(key, {})
        if isinstance(value, dict) and field in value:
            values.append(float(value[field]))
    return values


def _skip_reasons(runs: list[dict[str, Any]], library: str, key: str) -> list[str]:
    reasons: list[str] = []
    for run in runs:
        result = run["results"].get(library, {})
        reason = result.get("skipped") or result.get(key, {}).get("skipped")
        if reason and reason not in reasons:
            reasons.append(reason)
    return reasons


@functools.cache
def lib_constants(library: str) -> dict[str, Any]:
    """``DIST``, ``HOW``, ``NOTES`` and ``S4`` of a library module, and under
    ``functions`` the names of its top-level functions, read without importing it."""
    path = Path(__file__).resolve().parent / "libs" / f"{LIBRARIES[library]}.py"
    constants: dict[str, Any] = {"functions": set()}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in ("DIST", "HOW", "NOTES", "S4"):
                constants[target.id] = ast.literal_eval(node.value)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            constants["functions"].add(node.name)
    return constants


def has(library: str, key: str) -> bool:
    """Whether the library's module defines scenario ``key``."""
    return key in lib_constants(library)["functions"]


def has_any(library: str, keys: Sequence[str]) -> bool:
    return any(has(library, key) for key in keys)


def s4_rows(libraries: Sequence[str]) -> dict[str, tuple[str, str]]:
    """S4 row label -> (library, the module's function that builds the row's app)."""
    rows: dict[str, tuple[str, str]] = {}
    for library in libraries:
        if not has(library, "s4"):
            continue
        for label, function in lib_constants(library).get("S4", {library: "s4"}).items():
            rows[label] = (library, function)
    return rows


def _first(data: dict[str, Any], library: str, field: str) -> Any:
    for kind in ("rounds", "s4_rounds", "s1000_runs"):
        for run in data[kind]:
            for result in run["results"].values():
                if result.get("library") == library and result.get(field):
                    return result[field]
    return None


def summarise(data: dict[str, Any], libraries: Sequence[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key in SCENARIOS:
        rows = {}
        for library in libraries:
            if not has(library, key):
                continue
            values = _values(data["rounds"], library, key, "ns")
            row: dict[str, Any] = {"skipped": _skip_reasons(data["rounds"], library, key)}
            if values:
                row |= {
                    "median": statistics.median(values),
                    "min": min(values),
                    "max": max(values),
                    "n": len(values),
                }
            if key == "s2":
                row["c_per_call"] = sorted(
                    {int(v) for v in _values(data["rounds"], library, key, "c_per_call")}
                )
            rows[library] = row
        summary[key] = rows
    rows = {}
    for label in s4_rows(libraries):
        values = _values(data["s4_rounds"], label, "s4", "us")
        row = {"skipped": _skip_reasons(data["s4_rounds"], label, "s4")}
        if values:
            row |= {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "n": len(values),
            }
        rows[label] = row
    summary["s4"] = rows
    rows = {}
    for library in libraries:
        if not has(library, "s1000"):
            continue
        row = {"skipped": _skip_reasons(data["s1000_runs"], library, "s1000")}
        for field in ("build_ms", "resolve_ms", "peak_rss_mib", "rss_growth_mib"):
            values = _values(data["s1000_runs"], library, "s1000", field)
            if values:
                row[field] = statistics.median(values)
                row["n"] = len(values)
        rows[library] = row
    summary["s1000"] = rows
    return summary


# reporting --------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
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


def library_versions(data: dict[str, Any], libraries: Sequence[str]) -> dict[str, str]:
    versions = {}
    for library in libraries:
        if library == BASELINE:
            continue
        version = _first(data, library, "version")
        if version is None:
            try:
                version = importlib.metadata.version(lib_constants(library).get("DIST", library))
            except importlib.metadata.PackageNotFoundError:
                version = "not installed"
        versions[library] = str(version)
    return versions


def fastapi_stack() -> str:
    """The web stack S4 runs on (the workers use this interpreter's packages)."""
    versions = []
    for dist in ("fastapi", "starlette", "pydantic"):
        try:
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{dist} not installed")
    return ", ".join(versions)


def _ns(value: float) -> str:
    return f"{value:,.0f}"


def _order(rows: dict[str, dict[str, Any]], field: str, baseline: str = BASELINE) -> list[str]:
    def key(library: str) -> tuple[int, float]:
        if library == baseline:
            return (0, 0.0)
        value = rows[library].get(field)
        return (1, value) if value is not None else (2, 0.0)

    return sorted(rows, key=key)


def _notes(library: str, key: str, row: dict[str, Any], runs: int) -> str:
    notes = []
    note = lib_constants(library).get("NOTES", {}).get(key)
    if note:
        notes.append(f"† {note}")
    if row.get("n") and row["n"] < runs:
        notes.append(f"{row['n']} of {runs} runs")
    notes += [f"skipped: {reason}" for reason in row["skipped"]]
    return "; ".join(notes).replace("|", "\\|")


def scenario_table(data: dict[str, Any], summary: dict[str, Any], key: str) -> list[str]:
    rows = summary[key]
    base = rows.get(BASELINE, {}).get("median")
    runs = len(data["rounds"])
    header = "| library | median | min-max | x hand-written |"
    rule = "|---|---:|---:|---:|"
    if key == "s2":
        header += " C per call |"
        rule += "---:|"
    lines = [header + " notes |", rule + "---|"]
    for library in _order(rows, "median"):
        row = rows[library]
        if "median" in row:
            ratio = f"{row['median'] / base:.1f}" if base else "n/a"
            cells = [_ns(row["median"]), f"{_ns(row['min'])}-{_ns(row['max'])}", ratio]
        else:
            cells = ["skipped", "", ""]
        if key == "s2":
            cells.append("/".join(str(c) for c in row["c_per_call"]))
        cells.append(_notes(library, key, row, runs))
        lines.append(f"| {library} | " + " | ".join(cells) + " |")
    return lines


def s4_table(data: dict[str, Any], summary: dict[str, Any], libraries: Sequence[str]) -> list[str]:
    rows = summary["s4"]
    base = rows.get(S4_BASELINE, {}).get("median")
    runs = len(data["s4_rounds"])
    owner = {label: library for label, (library, _) in s4_rows(libraries).items()}
    lines = [
        "| library | µs/request median | min-max | x no DI | DI overhead µs/request | notes |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label in _order(rows, "median", S4_BASELINE):
        row = rows[label]
        if "median" in row:
            median = row["median"]
            cells = [
                f"{median:,.1f}",
                f"{row['min']:,.1f}-{row['max']:,.1f}",
                f"{median / base:.2f}" if base else "n/a",
                f"{median - base:+,.1f}" if base else "n/a",
            ]
        else:
            cells = ["skipped", "", "", ""]
        cells.append(_notes(owner[label], "s4", row, runs))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def s1000_table(data: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    rows = summary["s1000"]
    runs = len(data["s1000_runs"])
    lines = [
        "| library | build ms | resolve-all ms | build + resolve ms | peak RSS MiB "
        "| RSS growth MiB | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    totals = {
        library: row["build_ms"] + row["resolve_ms"]
        for library, row in rows.items()
        if "build_ms" in row
    }
    for library in sorted(rows, key=lambda lib: (lib != BASELINE, totals.get(lib, 1e18))):
        row = rows[library]
        if "build_ms" in row:
            cells = [
                f"{row['build_ms']:,.1f}",
                f"{row['resolve_ms']:,.1f}",
                f"{totals[library]:,.1f}",
                f"{row['peak_rss_mib']:,.1f}",
                f"{row['rss_growth_mib']:,.2f}",
            ]
        else:
            cells = ["skipped", "", "", "", ""]
        cells.append(_notes(library, "s1000", row, runs))
        lines.append(f"| {library} | " + " | ".join(cells) + " |")
    return lines


def how_table(data: dict[str, Any], libraries: Sequence[str]) -> list[str]:
    keys = ("s1", "s2", "s3", "s1000", "s4")
    lines = ["| library | S1 | S2 | S3 | S1000 | S4 |", "|---|---|---|---|---|---|"]
    for library in libraries:
        how = lib_constants(library).get("HOW", {})
        cells = [
            str(how.get(k, "")).replace("|", "\\|") if has(library, k) else "n/a" for k in keys
        ]
        lines.append(f"| {library} | " + " | ".join(cells) + " |")
    return lines


DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def update_docs(text: str) -> bool:
    """Put the tables between the markers of docs/benchmarks.md, headings one level
    down; the prose around them is kept."""
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


def render(report: dict[str, Any]) -> str:
    data, summary, meta = report["data"], report["summary"], report["meta"]
    libraries = meta["libraries"]
    machine = meta["machine"]
    settings = meta["settings"]
    out = [
        "# tether benchmark results",
        "",
        f"Generated {meta['date']} by `{' '.join(['python -m benchmarks', *meta['argv']])}`.",
        "Regenerate with `python3 dev.py bench` (or `python -m benchmarks` in the project "
        "venv); raw per-round values go to `benchmarks/results/latest.json`.",
        "",
        "## Setup",
        "",
        f"- CPU: {machine['cpu']}, {machine['nproc']} CPUs available ({machine['os']})",
        f"- Python: {machine['python']}, standard asyncio event loop",
        f"- Rounds: {settings['rounds']} for S1-S3 (one fresh process per library per round, "
        f"library order shuffled each round), {settings['rounds']} for S4 (one fresh process "
        "per row per round, order shuffled); S1000 in "
        f"{settings['s1000_runs']} more fresh process(es) per library",
        f"- Timed loops: ~{settings['target']} s each (op count calibrated 1, 2, 5, 10, ...), "
        f"best of {settings['repeat']} loops is the round's value; GC enabled",
        "- S1/S2: `timeit` with the call written inline (no wrapper function). S3: "
        "`await once()` in a loop inside one event loop.",
        "- S4: a FastAPI app built with each library's own FastAPI integration, called "
        "in-process through ASGI (`await app(scope, receive, send)`) by a minimal "
        "uvicorn-like driver (`benchmarks/asgi.py`) that runs the lifespan (startup before, "
        "shutdown after) and copies the lifespan state into each request scope; "
        f"{settings['s4_warmup']} warm-up requests, then {settings['s4_requests']:,} timed "
        "sequential requests, one value (µs/request) per round; GC enabled. No sockets, no "
        "HTTP parsing, no concurrency: framework + DI cost only. Stack: "
        f"{meta.get('fastapi_stack', 'unknown')}.",
        "- Reported: median over rounds, min-max of the per-round values, ratio = median / "
        "hand-written median.",
        "- Verified around every timed loop: S1 returns the same `Config`; S2 returns a fresh "
        "`A`, `B`, `D`, `C` per call (C per call counted); S3 gives a new `Handler` and "
        "`Resource` per scope, the same `Config`, and the finalizer count equals the number "
        'of scopes in each loop; S4: every warm-up response is 200 with `{"v": 42}` and runs '
        "one finalizer, every timed response is 200 with the same body, the finalizer count "
        "equals the number of timed requests, and the app builds one `Config`; S1000 returns "
        "each class's one instance, all sharing one `Base`.",
        "",
        "| library | version |",
        "|---|---|",
    ]
    out += [f"| {lib} | {version} |" for lib, version in meta["versions"].items()]
    for key, title in SCENARIOS.items():
        out += ["", f"## {title}", "", *scenario_table(data, summary, key)]
    out += [
        "",
        f"## {S4_TITLE}",
        "",
        *s4_table(data, summary, libraries),
        "",
        'The endpoint returns `{"v": handler.config.value}`; `Config` is one per app, '
        "`Resource` comes from `resource_gen` and is finalized per request. No DI = the "
        "endpoint drives `resource_gen()` and builds `Handler` itself: the floor. DI "
        "overhead = median - no-DI median.",
    ]
    if "tether" in libraries:
        out += [
            "",
            "The `tether, install() defaults` row is `install(app, container)` with nothing "
            "switched off: on top of the `tether` row it adds `MetricsMiddleware` (request "
            "latency by route template, for `/metrics`), the `/health*`, `/metrics` and "
            "`/status` routes (registered after the endpoint's) and the status page's "
            "background health sampler.",
        ]
    absent = [lib for lib in libraries if not has(lib, "s4")]
    if absent:
        out += ["", f"No S4 app is written for: {', '.join(absent)}."]
    out += [
        "",
        f"## S1000: {settings['count']} registered singletons `S{{i}}(base: Base)`, "
        f"build the container, resolve each once (median of {settings['s1000_runs']})",
        "",
        *s1000_table(data, summary),
        "",
        "Build = registering everything and creating the container; resolve-all = the first "
        "resolution of every class. Peak RSS includes the interpreter and the library's "
        "imports; RSS growth is `ru_maxrss` after build + resolve minus `ru_maxrss` just "
        "before the build (a coarse high-water mark, page granularity).",
        "",
        "## How each library is called",
        "",
        *how_table(data, libraries),
        "",
    ]
    return "\n".join(out)


# main -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--rounds", type=int, help="rounds of S1-S3 and of S4 (default 5; --quick 2)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 rounds, short loops, 1000 S4 requests, 1 S1000 run"
    )
    parser.add_argument("--target", type=float, help="seconds per timed loop (default 0.1)")
    parser.add_argument("--repeat", type=int, default=3, help="timed loops per round, best counts")
    parser.add_argument("--s1000-runs", type=int, help="fresh S1000 processes (default 3)")
    parser.add_argument("--count", type=int, default=1000, help="singletons in S1000")
    parser.add_argument(
        "--s4-requests", type=int, help="timed S4 requests per round (default 5000; --quick 1000)"
    )
    parser.add_argument(
        "--s4-warmup", type=int, help="S4 warm-up requests per round (default 300; --quick 100)"
    )
    parser.add_argument(
        "--libs",
        help=f"comma-separated subset of: {', '.join(LIBRARIES)} (default: all)",
    )
    parser.add_argument("--no-write", action="store_true", help="print the report, write nothing")
    args = parser.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (2 if quick else 5)
    args.target = args.target or (0.03 if quick else 0.1)
    args.s1000_runs = args.s1000_runs if args.s1000_runs is not None else (1 if quick else 3)
    args.s4_requests = args.s4_requests or (1000 if quick else 5000)
    args.s4_warmup = args.s4_warmup or (100 if quick else 300)
    # Only a full, non-quick run of every library rewrites docs/benchmarks.md.
    args.libs_given = bool(args.libs) or quick
    if args.libs:
        chosen = [name.strip() for name in args.libs.split(",") if name.strip()]
        unknown = [name for name in chosen if name not in LIBRARIES]
        if unknown:
            parser.error(f"unknown libraries: {', '.join(unknown)}")
        args.libs = chosen
    else:
        args.libs = list(LIBRARIES)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    data = run_all(
        args.libs,
        args.rounds,
        args.s1000_runs,
        ["--target", str(args.target), "--repeat", str(args.repeat)],
        ["--requests", str(args.s4_requests), "--warmup", str(args.s4_warmup)],
        ["--count", str(args.count)],
    )
    meta = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "argv": list(sys.argv[1:] if argv is None else argv),
        "libraries": args.libs,
        "machine": machine_info(),
        "versions": library_versions(data, args.libs),
        "fastapi_stack": fastapi_stack(),
        "settings": {
            "rounds": args.rounds,
            "s1000_runs": args.s1000_runs,
            "target": args.target,
            "repeat": args.repeat,
            "count": args.count,
            "s4_requests": args.s4_requests,
            "s4_warmup": args.s4_warmup,
        },
        "wall_s": round(time.perf_counter() - started, 1),
    }
    report = {"meta": meta, "summary": summarise(data, args.libs), "data": data}
    text = render(report)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "latest.md").write_text(text, encoding="utf-8")
        (RESULTS / "latest.json").write_text(json.dumps(report, indent=1) + "\n", "utf-8")
        _progress(f"wrote {RESULTS.relative_to(ROOT)}/latest.md and latest.json")
        if not args.libs_given and update_docs(text):
            _progress(f"updated {DOCS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
