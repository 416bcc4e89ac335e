"""Generated builders: the steps of ``_resolve``, unrolled for one registration.

A registration resolved more than once gets a function written for it: its
dependencies' cache look-ups are inlined, plain TRANSIENT classes and factories are
constructed inline, and nothing is looked up by type at call time. The plain path
in ``_resolve`` is the reference; the tests run the suite on both.
"""

from __future__ import annotations

import itertools
import re
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ._providers import Kind, Provider, skipped_positional
from ._resolve import (
    EXIT_AGEN,
    EXIT_GEN,
    EXIT_RESOURCE,
    MISS,
    build_async,
    init_error,
    mismatch,
    not_found,
    prepend,
    settle,
    unwind_async,
    unwind_sync,
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
    "unwind_async": unwind_async, "settle": settle,
    "EXIT_GEN": EXIT_GEN, "EXIT_AGEN": EXIT_AGEN, "EXIT_RESOURCE": EXIT_RESOURCE,
    "build_async": build_async,
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
        # With instrumentation every instance is reported, so nothing is inlined.
        return (
            not self.reg.hooks
            and p.scope is Scope.TRANSIENT
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
            body = self.emit_create(p, i, is_async, "v", "")
            if any(_USES_HOLDER.search(line) for line in body):
                out.append("    h = scope if holder is None else holder")
            out += _indent(body, "    ")
            out.append("    return v")
            return
        level = int(p.scope)
        out.append(f"    owner = scope._chain[{level}]")
        if p.scope >= Scope.SESSION:
            out.append(f"    if owner is None: raise mismatch(P{i}, scope)")
        out += [
            "    cache = owner._cache",
            f"    v = cache.get(K{i}, MISS)",
            "    if v is not MISS: return v",
            "    h = owner",
        ]
        if not is_async:
            out += [
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
            out += _indent(self.emit_create(p, i, is_async, "v", ""), pad)
            out += [f"{pad}cache[K{i}] = v", "    return v"]
            return
        out += [
            f"    if owner._closed or K{i} in owner._pending:",
            f"        return await build_async(reg, P{i}, scope, h)",
        ]
        if p.scope <= Scope.SESSION:
            out.append("    reg.bind_loop()")
        out += _indent(self.guarded(p, i, is_async, "v", ""), "    ")
        out.append("    return v")

    def guarded(self, p: Provider, i: int, is_async: bool, res: str, sfx: str) -> list[str]:
        """Create ``p`` into ``res`` while its pending mark tells other tasks to wait."""
        return [
            f"owner._pending[K{i}] = None",
            f"o{sfx} = None",
            "try:",
            *_indent(self.emit_create(p, i, is_async, res, sfx), "    "),
            f"    cache[K{i}] = {res}",
            f"except BaseException as x{sfx}:",
            f"    o{sfx} = x{sfx}",
            "    raise",
            "finally:",
            f"    w{sfx} = owner._pending.pop(K{i}, None)",
            f"    if w{sfx} is not None: settle(w{sfx}, o{sfx})",
        ]

    def emit_create(self, p: Provider, i: int, is_async: bool, res: str, sfx: str) -> list[str]:
        if p.own_async and not is_async:
            return [f"raise async_required(P{i})"]
        body: list[str] = []
        paths: list[Path] = [(p,)]
        composition: dict[Provider, int] = {}
        unwinds = [False]
        step = f"step{sfx}"
        args = self.emit_args(p, (p,), body, paths, composition, unwinds, is_async, step)
        timed = self.timed(p)
        if timed:
            body.append(f"started{sfx} = perf_counter()")
        body += self.construct(p, i, args, is_async, res, sfx)
        out: list[str] = []
        if unwinds[0]:
            out.append(f"mark{sfx} = len(h._exits)")
        out += [f"{step} = 0", "try:", *_indent(body, "    ")]
        paths_name = self.const(tuple(paths))
        unwind = ""
        if unwinds[0]:
            call = "await unwind_async" if is_async else "unwind_sync"
            unwind = f"{call}(h, mark{sfx}); "
        out += [
            f"except ResolutionError as e{sfx}:",
            f"    {unwind}raise annotate(e{sfx}, {paths_name}[{step}])",
            f"except BaseException as e{sfx}:",
            f"    {unwind}raise fail(e{sfx}, {paths_name}[{step}], scope)",
        ]
        if timed:
            out += self.record(p, i, sfx)
        elif p.scope is Scope.TRANSIENT:
            composition[p] = composition.get(p, 0) + 1
        else:
            out += self.count(p, i, sfx)
        if composition:
            counter = [0]
            self.reg.plan_counters.append((counter, composition))
            out.append(f"{self.const(counter)}[0] += 1")
        return out

    def count(self, p: Provider, i: int, sfx: str) -> list[str]:
        # Only plain per-request classes are counted without a clock, and those are not
        # tracked as active (nothing disposes them).
        return [f"S{i}.created += 1"]

    def timed(self, p: Provider) -> bool:
        """Whether each build of ``p`` is timed. A plain class built per request or per
        resolution is only counted: its constructor is no I/O worth a clock read (an
        instrumented container times everything)."""
        if self.reg.hooks:
            return True
        plain = p.kind is Kind.CLASS and not p.resource
        return not (plain and p.scope >= Scope.REQUEST)

    def record(self, p: Provider, i: int, sfx: str) -> list[str]:
        """``Stats.made``, inline."""
        lines = [
            f"n{sfx} = perf_counter()",
            f"S{i}.init_last = d{sfx} = n{sfx} - started{sfx}",
            f"S{i}.init_total += d{sfx}",
            f"S{i}.created += 1",
        ]
        if p.scope <= Scope.APP:
            lines.append(f"S{i}.born = n{sfx}")  # for the health report's uptime
        if p.stats.tracked:
            lines += [
                f"S{i}.active = a{sfx} = S{i}.active + 1",
                f"if a{sfx} > S{i}.peak: S{i}.peak = a{sfx}",
            ]
        if p.stats.hooks:
            lines.append(f"S{i}.notify_created(d{sfx})")
        return lines

    def emit_args(
        self, p: Provider, path: Path, body: list[str], paths: list[Path],
        composition: dict[Provider, int], unwinds: list[bool], is_async: bool, step: str,
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
            var = self.emit_dep(dep, path, body, paths, composition, unwinds, is_async, step)
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

    def mark_step(self, body: list[str], paths: list[Path], path: Path, step: str) -> None:
        if paths[-1] != path:
            paths.append(path)
        body.append(f"{step} = {len(paths) - 1}")

    def emit_dep(
        self, dep: Provider, path: Path, body: list[str], paths: list[Path],
        composition: dict[Provider, int], unwinds: list[bool], is_async: bool, step: str,
    ) -> str:
        var = f"v{self.vars}"
        self.vars += 1
        await_ = is_async and self.reg.needs_async(dep)
        call_prefix = "await a" if await_ else "s"
        if self.inlinable(dep, path):
            args = self.emit_args(
                dep, (*path, dep), body, paths, composition, unwinds, is_async, step
            )
            self.mark_step(body, paths, (*path, dep), step)
            body.append(f"{var} = {self.const(dep.target)}({', '.join(args)})")
            composition[dep] = composition.get(dep, 0) + 1
            return var
        j = self.ref(dep)
        self.ns[f"P{j}"] = dep
        self.ns[f"K{j}"] = dep.cache_key
        self.ns[f"S{j}"] = dep.stats
        self.mark_step(body, paths, path, step)
        if dep.scope is Scope.TRANSIENT:
            if dep.has_teardown or self.reg.needs_async(dep):
                unwinds[0] = True
            body.append(f"{var} = {call_prefix}{j}(scope, h)")
            return var
        root = path[0]
        if root.scope is not Scope.TRANSIENT and dep.scope is root.scope:
            # Same scope as the registration being built: look up, and build it right
            # here on a miss (no call, no extra coroutine).
            body += [f"{var} = cache.get(K{j}, MISS)", f"if {var} is MISS:"]
            if dep in path or dep.scope <= Scope.SESSION:
                body.append(f"    {var} = {call_prefix}{j}(scope)")
                return var
            sfx = f"_{self.vars}"
            self.vars += 1
            if is_async:
                body += [
                    f"    if K{j} in owner._pending: {var} = await a{j}(scope)",
                    "    else:",
                    *_indent(self.guarded(dep, j, is_async, var, sfx), "        "),
                ]
            else:
                body += [
                    f"    if K{j} in owner._pending: raise busy(P{j})",
                    *_indent(self.emit_create(dep, j, is_async, var, sfx), "    "),
                    f"    cache[K{j}] = {var}",
                ]
            return var
        if dep.scope <= Scope.APP:
            cache = f"scope._chain[{int(dep.scope)}]._cache"
            body += [
                f"{var} = {cache}.get(K{j}, MISS)",
                f"if {var} is MISS: {var} = {call_prefix}{j}(scope)",
            ]
            return var
        body.append(f"{var} = {call_prefix}{j}(scope)")
        return var

    def construct(
        self, p: Provider, i: int, args: list[str], is_async: bool, res: str, sfx: str
    ) -> list[str]:
        call = f"{self.const(p.target)}({', '.join(args)})"
        kind = p.kind
        lines: list[str] = []
        if kind is Kind.VALUE:
            lines.append(f"{res} = {self.const(p.target)}")
        elif kind is Kind.ASYNC_FACTORY:
            lines.append(f"{res} = await {call}")
        elif kind is Kind.GENERATOR:
            lines += [
                f"g{sfx} = {call}",
                f"{res} = next(g{sfx})",
                f"h._exits.append((EXIT_GEN, g{sfx}, P{i}))",
            ]
        elif kind is Kind.ASYNC_GENERATOR:
            lines += [
                f"g{sfx} = {call}",
                f"{res} = await g{sfx}.__anext__()",
                f"h._exits.append((EXIT_AGEN, g{sfx}, P{i}))",
            ]
        else:
            lines.append(f"{res} = {call}")
        if p.has_initialize:
            lines.append(f"await {res}.initialize()" if p.own_async else f"{res}.initialize()")
        if p.resource:
            lines.append(f"h._exits.append((EXIT_RESOURCE, {res}, P{i}))")
        return lines


_USES_HOLDER = re.compile(r"\bh\b")  # the generated code's name for the holder scope


def _indent(lines: list[str], pad: str) -> list[str]:
    return [pad + line for line in lines]
