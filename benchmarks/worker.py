"""Run one library's scenarios in this (fresh) process and print one JSON object.

    python -m benchmarks.worker LIBRARY [--target SECONDS] [--repeat N]
    python -m benchmarks.worker LIBRARY --s1000 [--count N]
    python -m benchmarks.worker LIBRARY --s4 [APP] [--requests N] [--warmup N]

The orchestrator (``python -m benchmarks``) starts one of these per library per round.
The JSON always has ``library``; then either ``skipped`` (the library could not be
imported) or one entry per scenario the library defines, each ``{"ns": ...}`` (S1-S3),
``{"build_ms": ...}`` (S1000), ``{"us": ...}`` (S4) or ``{"skipped": reason}``. ``APP``
names the module's function that builds the S4 app (default ``s4``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import importlib.metadata
import json
import resource
import sys
import time
import timeit
import traceback
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from benchmarks import model
from benchmarks.asgi import Driver
from benchmarks.cases import S4_PATH, Once, SyncCase, Unsupported
from benchmarks.libs import LIBRARIES

Result = dict[str, Any]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, Unsupported):
        return str(exc)
    lines = traceback.format_exception_only(type(exc), exc)
    return lines[-1].strip()[:300]


def _numbers() -> Iterator[int]:
    """1, 2, 5, 10, 20, 50, ... as ``timeit.Timer.autorange`` tries them."""
    scale = 1
    while True:
        for step in (1, 2, 5):
            yield scale * step
        scale *= 10


def calibrate(run: Callable[[int], float], target: float) -> int:
    """The first ``number`` of ops whose loop takes at least ``target`` seconds."""
    return next(number for number in _numbers() if run(number) >= target)


def best_of(run: Callable[[int], float], target: float, repeat: int) -> tuple[float, int]:
    """(best seconds per op over ``repeat`` loops, ops per loop)."""
    number = calibrate(run, target)
    best = min(run(number) for _ in range(repeat))
    return best / number, number


# S1 / S2 -----------------------------------------------------------------------------


def _timer(case: SyncCase) -> Callable[[int], float]:
    namespace = {**case.namespace, "gc": gc}
    # The statement is compiled into timeit's loop as written: no wrapper call per op.
    # timeit switches the GC off by default; the setup switches it back on.
    timer = timeit.Timer(case.stmt, setup="gc.enable()", globals=namespace)
    return timer.timeit


def _evaluate(case: SyncCase) -> Any:
    return eval(case.stmt, dict(case.namespace))


def check_s1(case: SyncCase) -> Result:
    first = _evaluate(case)
    if not isinstance(first, model.Config) or _evaluate(case) is not first:
        raise AssertionError(f"S1: expected the same Config twice, got {first!r}")
    return {}


def _check_a(a: object) -> int:
    if not isinstance(a, model.A):
        raise AssertionError(f"S2: expected an A, got {a!r}")
    b, d = a.b, a.d
    if not (isinstance(b, model.B) and isinstance(d, model.D)):
        raise AssertionError("S2: A was not given a B and a D")
    if not (isinstance(b.c, model.C) and isinstance(d.c, model.C)):
        raise AssertionError("S2: B or D was not given a C")
    return 1 if b.c is d.c else 2


def check_s2(case: SyncCase) -> Result:
    first, second = _evaluate(case), _evaluate(case)
    c_per_call = _check_a(first)
    _check_a(second)
    shared = {id(x) for x in (first, first.b, first.d, first.b.c, first.d.c)} & {
        id(x) for x in (second, second.b, second.d, second.b.c, second.d.c)
    }
    if shared:
        raise AssertionError("S2: two resolutions shared objects; expected all transient")
    return {"c_per_call": c_per_call}


def run_sync(
    make: Callable[[], Any], check: Callable[[SyncCase], Result], target: float, repeat: int
) -> Result:
    with make() as case:
        extra = check(case)
        per_op, number = best_of(_timer(case), target, repeat)
        check(case)  # still correct after the timed loops
    return {"ns": per_op * 1e9, "number": number, **extra}


# S3 ----------------------------------------------------------------------------------


async def _check_s3(once: Once) -> None:
    handlers = [await once() for _ in range(3)]  # kept alive so ids cannot be reused
    configs = {id(h.config) for h in handlers}
    if not all(isinstance(h, model.Handler) for h in handlers):
        raise AssertionError("S3: once() did not return Handlers")
    if len({id(h) for h in handlers}) != 3 or len({id(h.resource) for h in handlers}) != 3:
        raise AssertionError("S3: expected a new Handler and Resource per scope")
    if len(configs) != 1 or not isinstance(handlers[0].config, model.Config):
        raise AssertionError("S3: expected the same Config in every scope")
    if not all(isinstance(h.resource, model.Resource) and h.resource.closed for h in handlers):
        raise AssertionError("S3: a Resource was not finalized when its scope exited")


async def _s3(make: Callable[[], Any], target: float, repeat: int) -> Result:
    async with make() as once:
        await _check_s3(once)

        async def timed(number: int) -> float:
            # ``await once()`` in a loop inside one event loop: no per-op loop start-up.
            before = model.Resource.finalized
            start = time.perf_counter()
            for _ in range(number):
                await once()
            elapsed = time.perf_counter() - start
            finalized = model.Resource.finalized - before
            if finalized != number:
                raise AssertionError(f"S3: {finalized} finalizers ran for {number} scopes")
            return elapsed

        number = 0
        for number in _numbers():
            if await timed(number) >= target:
                break
        best = min([await timed(number) for _ in range(repeat)])
        await _check_s3(once)  # still correct after the timed loops
    return {"ns": best / number * 1e9, "number": number}


# S1000 -------------------------------------------------------------------------------


def _maxrss_mib() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def run_s1000(lib: ModuleType, count: int) -> Result:
    classes = model.make_singletons(count)
    gc.collect()
    rss_before = _maxrss_mib()
    start = time.perf_counter()
    resolve_all = lib.s1000(classes)
    built = time.perf_counter()
    instances = resolve_all()
    resolved = time.perf_counter()
    rss_after = _maxrss_mib()

    if len(instances) != count:
        raise AssertionError(f"S1000: {len(instances)} instances for {count} classes")
    base = getattr(instances[0], "base", None)
    if not isinstance(base, model.Base):
        raise AssertionError("S1000: S0 was not given a Base")
    for cls, obj in zip(classes, instances, strict=True):
        if type(obj) is not cls or getattr(obj, "base", None) is not base:
            raise AssertionError(f"S1000: wrong instance for {cls.__name__}: {obj!r}")
    again = resolve_all()
    if any(a is not b for a, b in zip(instances, again, strict=True)):
        raise AssertionError("S1000: a second resolution built new instances")
    return {
        "build_ms": (built - start) * 1e3,
        "resolve_ms": (resolved - built) * 1e3,
        "peak_rss_mib": rss_after,
        "rss_growth_mib": rss_after - rss_before,
    }


# S4 ----------------------------------------------------------------------------------


async def _s4(make_app: Callable[[], Any], requests: int, warmup: int) -> Result:
    if warmup < 1:
        raise ValueError("S4 needs at least one warm-up request (its body is the reference)")
    expected = {"v": model.Config().value}
    configs_before = model.Config.created
    app = make_app()
    async with Driver(app) as driver:
        get = driver.get
        body = b""
        for index in range(warmup):  # every response and every finalizer checked
            finalized = model.Resource.finalized
            status, body = await get(S4_PATH)
            if status != 200 or json.loads(body) != expected:
                raise AssertionError(f"S4: warm-up request {index}: {status} {body[:200]!r}")
            if model.Resource.finalized != finalized + 1:
                raise AssertionError(
                    f"S4: warm-up request {index} ran "
                    f"{model.Resource.finalized - finalized} finalizers, expected 1"
                )
        gc.collect()
        wrong = 0
        finalized = model.Resource.finalized
        start = time.perf_counter()
        for _ in range(requests):
            status, got = await get(S4_PATH)
            if status != 200 or got != body:
                wrong += 1
        elapsed = time.perf_counter() - start
        finalized = model.Resource.finalized - finalized
    if wrong:
        raise AssertionError(f"S4: {wrong} of {requests} timed responses were wrong")
    if finalized != requests:
        raise AssertionError(f"S4: {finalized} finalizers ran for {requests} requests")
    configs = model.Config.created - configs_before
    if configs != 1:
        raise AssertionError(f"S4: the app built {configs} Config instances, expected 1")
    return {"us": elapsed / requests * 1e6, "requests": requests, "warmup": warmup}


# main --------------------------------------------------------------------------------


def _version(lib: ModuleType) -> str | None:
    dist = getattr(lib, "DIST", None)
    if dist is None:
        return None
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        module = sys.modules.get(dist.replace("-", "_"))
        return str(getattr(module, "__version__", "unknown (not installed as a distribution)"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("library", choices=list(LIBRARIES))
    parser.add_argument("--target", type=float, default=0.1, help="seconds per timed loop")
    parser.add_argument("--repeat", type=int, default=3, help="timed loops; the best counts")
    parser.add_argument("--scenarios", default="s1,s2,s3")
    parser.add_argument("--s1000", action="store_true", help="run only S1000 (fresh process)")
    parser.add_argument("--count", type=int, default=1000, help="classes for --s1000")
    parser.add_argument(
        "--s4",
        nargs="?",
        const="s4",
        metavar="APP",
        help="run only S4 with the app the module's function APP builds (default s4)",
    )
    parser.add_argument("--requests", type=int, default=5000, help="timed requests for --s4")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up requests for --s4")
    args = parser.parse_args(argv)

    out: Result = {"library": args.library}
    try:
        lib = importlib.import_module(f"benchmarks.libs.{LIBRARIES[args.library]}")
    except Exception as exc:
        out["skipped"] = f"import failed: {_reason(exc)}"
        print(json.dumps(out))
        return
    out["version"] = _version(lib)

    if args.s4:
        if not args.s4.startswith("s4") or not hasattr(lib, args.s4):
            parser.error(f"{args.library} has no S4 app {args.s4!r}")
        make_app = getattr(lib, args.s4)
        scenarios: dict[str, Callable[[], Result]] = {
            "s4": lambda: asyncio.run(_s4(make_app, args.requests, args.warmup))
        }
    elif args.s1000:
        scenarios = {"s1000": lambda: run_s1000(lib, args.count)}
    else:
        runners: dict[str, Callable[[], Result]] = {
            "s1": lambda: run_sync(lib.s1, check_s1, args.target, args.repeat),
            "s2": lambda: run_sync(lib.s2, check_s2, args.target, args.repeat),
            "s3": lambda: asyncio.run(_s3(lib.s3, args.target, args.repeat)),
        }
        scenarios = {k: runners[k] for k in args.scenarios.split(",") if k and hasattr(lib, k)}
    for key, run in scenarios.items():
        try:
            out[key] = run()
        except Exception as exc:
            out[key] = {"skipped": _reason(exc)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
