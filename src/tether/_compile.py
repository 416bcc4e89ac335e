"""Generated builders: the steps of ``_resolve``, unrolled for one registration.

A registration resolved more than once gets a function written for it: its
dependencies' cache look-ups are inlined, plain TRANSIENT classes and factories are
constructed inline, and nothing is looked up by type at call time. The plain path
in ``_resolve`` is the reference; the tests run the suite on both.
"""

from __future__ import annotations

import asyncio
import itertools
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ._providers import Kind, Provider, skipped_positional
from ._resolve import (
    EXIT_AGEN,
    EXIT_GEN,
    EXIT_RESOURCE,
    MISS,
    init_error,
    mismatch,
    not_found,
    prepend,
    settle,
    unwind_async,
    unwind_sync,
    wait_pending,
)
from ._scope import Scope
from .exceptions import AsyncRequired, ClosedError, ResolutionError

if TYPE_CHECKING:
    from ._registry import Registry

Path = tuple[Provider, ...]
_ids = itertools.count()


def _annotate(error: ResolutionError, path: Path) -> ResolutionError:
    for p in reversed(path):
        prepend(error, p)
    return error


def _fail(error: BaseException, path: Path, scope: Any) -> BaseException:
    failed = path[-1]
    if isinstance(error, (StopIteration, StopAsyncIteration)) and failed.kind in (
        Kind.GENERATOR, Kind.ASYNC_GENERATOR
    ):
        error = RuntimeError(f"generator {failed.target.__qualname__} did not yield")
    wrapped = init_error(failed, error, scope)
    if wrapped is not error:
        wrapped.__cause__ = error
    if isinstance(wrapped, ResolutionError):
        _annotate(wrapped, path[:-1])
    return wrapped


def _busy(p: Provider) -> AsyncRequired:
    return AsyncRequired(p.display, ((p.display, p.scope),),
                         because="it is being built asynchronously right now")


def _async_required(p: Provider) -> AsyncRequired:
    return AsyncRequired(p.display, ((p.display, p.scope),), because=p.async_reason)


_HELPERS: dict[str, Any] = {
    "async_required": _async_required,
    "MISS": MISS, "perf_counter": perf_counter, "ResolutionError": ResolutionError,
    "ClosedError": ClosedError, "mismatch": mismatch, "not_found": not_found,
    "annotate": _annotate, "fail": _fail, "busy": _busy, "unwind_sync": unwind_sync,
    "unwind_async": unwind_async, "wait_pending": wait_pending, "settle": settle,
    "EXIT_GEN": EXIT_GEN, "EXIT_AGEN": EXIT_AGEN, "EXIT_RESOURCE": EXIT_RESOURCE,
    "asyncio": asyncio,
}


def compile_provider(reg: Registry, p: Provider) -> None:
    _Compiler(reg).run(p)


class _Compiler:
    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.ns: dict[str, Any] = dict(_HELPERS, reg=reg)
        self.index: dict[Provider, int] = {}
        self.queue: list[Provider] = []
        self.fresh: list[Provider] = []
        self.lines: list[str] = []
        self.consts = 0
        self.vars = 0

    # -- bookkeeping --------------------------------------------------------------

    def ref(self, p: Provider) -> int:
        i = self.index.get(p)
        if i is not None:
            return i
        i = self.index[p] = len(self.index)
        current_s = self.reg.sync_builders.get(p.key)
        current_a = self.reg.async_builders.get(p.key)
        if (
            self.reg.providers.get(p.key) is p
            and getattr(current_s, "__tether_compiled__", False)
            and current_a is not None
        ):
            self.ns[f"s{i}"], self.ns[f"a{i}"] = current_s, current_a
        else:
            self.queue.append(p)
        return i

    def const(self, value: Any) -> str:
        name = f"c{self.consts}"
        self.consts += 1
        self.ns[name] = value
        return name

    def run(self, p: Provider) -> None:
        self.ref(p)
        while self.queue:
            q = self.queue.pop()
            self.fresh.append(q)
            self.emit(q)
        source = "\n".join(self.lines) + "\n"
        code = compile(source, f"<tether builders {next(_ids)}>", "exec")
        exec(code, self.ns)
        for q in self.fresh:
            i = self.index[q]
            sync_fn, async_fn = self.ns[f"s{i}"], self.ns[f"a{i}"]
            sync_fn.__tether_compiled__ = True
            if self.reg.providers.get(q.key) is q:
                self.reg.sync_builders[q.key] = sync_fn
                self.reg.async_builders[q.key] = async_fn

    # -- emitting -----------------------------------------------------------------

    def inlinable(self, p: Provider, path: Path) -> bool:
        return (
            p.scope is Scope.TRANSIENT
            and p.kind in (Kind.CLASS, Kind.FACTORY)
            and not p.resource
            and p not in path
            and not self.reg.needs_async(p)
        )

    def emit(self, p: Provider) -> None:
        i = self.index[p]
        self.ns[f"P{i}"] = p
        self.ns[f"K{i}"] = p.cache_key
        self.ns[f"S{i}"] = p.stats
        self.emit_builder(p, i, is_async=False)
        if self.reg.needs_async(p):
            self.emit_builder(p, i, is_async=True)
        else:
            self.lines += [
                f"async def a{i}(scope, holder=None):",
                f"    return s{i}(scope, holder)",
            ]

    def emit_builder(self, p: Provider, i: int, *, is_async: bool) -> None:
        out = self.lines
        fn = f"a{i}" if is_async else f"s{i}"
        out.append(f"{'async ' if is_async else ''}def {fn}(scope, holder=None):")
        if p.scope is Scope.TRANSIENT:
            out.append("    h = scope if holder is None else holder")
            self.emit_create(p, i, "    ", is_async)
            out.append("    return v")
            return
        level = int(p.scope)
        out.append(f"    owner = scope._chain[{level}]")
        if p.scope >= Scope.SESSION:
            out.append(f"    if owner is None: raise mismatch(P{i}, scope)")
        out.append("    cache = owner._cache")
        if not is_async:
            out += [
                f"    v = cache.get(K{i}, MISS)",
                "    if v is not MISS: return v",
                "    if owner._closed: raise ClosedError(owner.describe())",
                f"    if K{i} in owner._pending: raise busy(P{i})",
            ]
            pad = "    "
            if p.scope <= Scope.SESSION:
                out += [
                    "    with owner._lock:",
                    f"        v = cache.get(K{i}, MISS)",
                    "        if v is not MISS: return v",
                ]
                pad = "        "
            out.append(f"{pad}h = owner")
            self.emit_create(p, i, pad, is_async)
            out += [f"{pad}cache[K{i}] = v", "    return v"]
            return
        out += [
            "    while True:",
            f"        v = cache.get(K{i}, MISS)",
            "        if v is not MISS: return v",
            "        if owner._closed: raise ClosedError(owner.describe())",
            "        pending = owner._pending",
            f"        if K{i} not in pending: break",
            f"        await wait_pending(owner, K{i})",
        ]
        if p.scope <= Scope.SESSION:
            out.append("    reg.bind_loop()")
        out += [
            f"    pending[K{i}] = None",
            "    outcome = None",
            "    try:",
            "        h = owner",
        ]
        self.emit_create(p, i, "        ", is_async)
        out += [
            f"        cache[K{i}] = v",
            "        return v",
            "    except BaseException as e:",
            "        outcome = e",
            "        raise",
            "    finally:",
            f"        w = pending.pop(K{i}, None)",
            "        if w is not None: settle(w, outcome)",
        ]

    def emit_create(self, p: Provider, i: int, pad: str, is_async: bool) -> None:
        if p.own_async and not is_async:
            self.lines.append(f"{pad}raise async_required(P{i})")
            return
        body: list[str] = []
        paths: list[Path] = [(p,)]
        composition: dict[Provider, int] = {}
        unwinds = [False]
        args = self.emit_args(p, (p,), body, paths, composition, unwinds, is_async)
        timed = not self.inlinable(p, ())
        if timed:
            body.append("started = perf_counter()")
        body += self.construct(p, i, args, is_async)
        out = self.lines
        if unwinds[0]:
            out.append(f"{pad}mark = len(h._exits)")
        out.append(f"{pad}step = 0")
        out.append(f"{pad}try:")
        out += [f"{pad}    {line}" for line in body]
        paths_name = self.const(tuple(paths))
        unwind = ""
        if unwinds[0]:
            unwind = ("await unwind_async(h, mark); " if is_async else "unwind_sync(h, mark); ")
        out += [
            f"{pad}except ResolutionError as e:",
            f"{pad}    {unwind}raise annotate(e, {paths_name}[step])",
            f"{pad}except BaseException as e:",
            f"{pad}    {unwind}raise fail(e, {paths_name}[step], scope)",
        ]
        if timed:
            out.append(f"{pad}S{i}.made(started)")
        else:
            composition[p] = composition.get(p, 0) + 1
        if composition:
            counter = [0]
            self.reg.plan_counters.append((counter, composition))
            out.append(f"{pad}{self.const(counter)}[0] += 1")

    def emit_args(
        self, p: Provider, path: Path, body: list[str], paths: list[Path],
        composition: dict[Provider, int], unwinds: list[bool], is_async: bool,
    ) -> list[str]:
        args: list[str] = []
        by_keyword = False
        for param in p.params:
            dep = self.reg.providers.get(param.key) if param.key is not None else None
            if dep is None:
                if param.has_default:
                    by_keyword = True
                    continue
                body.append(f"raise not_found(reg, {self.const(param.key)}, {self.const(p)})")
                return args
            var = self.emit_dep(dep, path, body, paths, composition, unwinds, is_async)
            if param.positional and not by_keyword:
                args.append(var)
            elif param.keyword:
                args.append(f"{param.name}={var}")
                by_keyword = True
            else:
                body.append(f"raise {self.const(skipped_positional)}"
                            f"({p.display!r}, {self.const(param)})")
                return args
        return args

    def step(self, body: list[str], paths: list[Path], path: Path) -> None:
        if paths[-1] != path or (len(paths) == 1 and path != paths[0]):
            paths.append(path)
        body.append(f"step = {len(paths) - 1}")

    def emit_dep(
        self, dep: Provider, path: Path, body: list[str], paths: list[Path],
        composition: dict[Provider, int], unwinds: list[bool], is_async: bool,
    ) -> str:
        var = f"v{self.vars}"
        self.vars += 1
        await_ = is_async and self.reg.needs_async(dep)
        call_prefix = "await a" if await_ else "s"
        if self.inlinable(dep, path):
            args = self.emit_args(dep, (*path, dep), body, paths, composition, unwinds, is_async)
            self.step(body, paths, (*path, dep))
            body.append(f"{var} = {self.const(dep.target)}({', '.join(args)})")
            composition[dep] = composition.get(dep, 0) + 1
            return var
        j = self.ref(dep)
        self.ns[f"K{j}"] = dep.cache_key
        self.step(body, paths, path)
        if dep.scope is Scope.TRANSIENT:
            if dep.has_teardown or self.reg.needs_async(dep):
                unwinds[0] = True
            body.append(f"{var} = {call_prefix}{j}(scope, h)")
            return var
        root = path[0]
        if root.scope is not Scope.TRANSIENT and dep.scope is root.scope:
            cache = "cache"
        elif dep.scope <= Scope.APP:
            cache = f"scope._chain[{int(dep.scope)}]._cache"
        else:
            body.append(f"{var} = {call_prefix}{j}(scope)")
            return var
        body += [
            f"{var} = {cache}.get(K{j}, MISS)",
            f"if {var} is MISS: {var} = {call_prefix}{j}(scope)",
        ]
        return var

    def construct(self, p: Provider, i: int, args: list[str], is_async: bool) -> list[str]:
        call = f"{self.const(p.target)}({', '.join(args)})"
        kind = p.kind
        lines: list[str] = []
        if kind is Kind.VALUE:
            lines.append(f"v = {self.const(p.target)}")
        elif kind is Kind.ASYNC_FACTORY:
            lines.append(f"v = await {call}")
        elif kind is Kind.GENERATOR:
            lines += [
                f"g = {call}",
                "v = next(g)",
                f"h._exits.append((EXIT_GEN, g, P{i}))",
            ]
        elif kind is Kind.ASYNC_GENERATOR:
            lines += [
                f"g = {call}",
                "v = await g.__anext__()",
                f"h._exits.append((EXIT_AGEN, g, P{i}))",
            ]
        else:
            lines.append(f"v = {call}")
        if p.resource:
            lines.append("await v.initialize()" if p.own_async else "v.initialize()")
            lines.append(f"h._exits.append((EXIT_RESOURCE, v, P{i}))")
        return lines

