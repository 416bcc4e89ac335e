"""Validation of the whole graph, and its export as Mermaid or Graphviz dot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._providers import Provider
from ._resolve import not_found
from ._scope import Scope
from .exceptions import (
    DependencyCycle,
    GraphError,
    RegistrationError,
    ScopeViolation,
    TetherError,
)

if TYPE_CHECKING:
    from ._registry import Registry


def problems(reg: Registry) -> list[TetherError]:
    found: list[TetherError] = []
    readable: list[Provider] = []
    for key in reg.order:
        p = reg.providers[key]
        try:
            params = p.params
        except RegistrationError as error:
            found.append(error)
            continue
        readable.append(p)
        found.extend(
            not_found(reg, param.key, p)
            for param in params
            if param.key is not None and param.key not in reg.providers and not param.has_default
        )
    found.extend(_cycles(reg, readable))
    found.extend(_scope_violations(reg, readable))
    return found


def check_reachable(reg: Registry, root: Provider) -> None:
    """Before the first build of ``root``: the cycles and scope violations among what it
    reaches, so an unvalidated container fails with the same sentence, never with a
    RecursionError or a silently stale instance. Missing bindings are left to the build,
    which names them with their chain."""
    deps = _deps(reg, root)
    checked = reg.checked
    if all(d in checked and d.scope is not Scope.TRANSIENT for d in deps) and (
        root.scope is Scope.TRANSIENT or all(d.scope <= root.scope for d in deps)
    ):
        # The usual case: what it needs was checked already, so no cycle can run through
        # it (it would have been reached, and checked, with them), and its own edges obey
        # the scope rule.
        checked.add(root)
        return
    seen: list[Provider] = []
    todo = [root]
    known: set[Provider] = set()
    while todo:
        p = todo.pop()
        if p in known or p in reg.checked:
            continue
        known.add(p)
        seen.append(p)
        todo.extend(_deps(reg, p))
    if not seen:
        return
    found: list[TetherError] = [*_cycles(reg, seen), *_scope_violations(reg, seen)]
    if len(found) == 1:
        raise found[0]
    if found:
        raise GraphError(found)
    reg.checked.update(seen)


def _cycles(reg: Registry, providers: list[Provider]) -> list[DependencyCycle]:
    WHITE, GREY, BLACK = 0, 1, 2
    color: dict[Provider, int] = {}
    cycles: list[DependencyCycle] = []
    for start in providers:
        if color.get(start, WHITE) != WHITE:
            continue
        # Iterative DFS: deep graphs must not hit the recursion limit.
        path: list[Provider] = [start]
        stack = [iter(list(_deps(reg, start)))]
        color[start] = GREY
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                color[path.pop()] = BLACK
                continue
            state = color.get(nxt, WHITE)
            if state == GREY:
                loop = [*path[path.index(nxt):], nxt]
                cycles.append(DependencyCycle([(p.display, p.scope) for p in loop]))
            elif state == WHITE:
                color[nxt] = GREY
                path.append(nxt)
                stack.append(iter(list(_deps(reg, nxt))))
    return cycles


def _deps(reg: Registry, p: Provider) -> list[Provider]:
    try:
        return list(reg.dependencies(p))
    except RegistrationError:
        return []


def _scope_violations(reg: Registry, providers: list[Provider]) -> list[ScopeViolation]:
    # A TRANSIENT lives as long as whatever holds it, so look through transients to the
    # shortest-lived registration each one reaches.
    reach: dict[Provider, list[Provider]] = {}

    def shortest(p: Provider) -> list[Provider]:
        """The path from ``p`` through transients to the shortest-lived dependency."""
        if p in reach:
            return reach[p]
        best: list[Provider] = [p]
        if p.scope is Scope.TRANSIENT:
            reach[p] = best
            worst = Scope.SINGLETON
            best = [p]
            for dep in _deps(reg, p):
                sub = shortest(dep)
                level = _level(sub[-1])
                if level > worst:
                    worst, best = level, [p, *sub]
        reach[p] = best
        return best

    found = []
    for p in providers:
        if p.scope is Scope.TRANSIENT:
            continue
        for dep in _deps(reg, p):
            path = shortest(dep)
            if _level(path[-1]) > p.scope:
                found.append(ScopeViolation([(x.display, x.scope) for x in [p, *path]]))
    return found


def _level(p: Provider) -> Scope:
    return Scope.SINGLETON if p.scope is Scope.TRANSIENT else p.scope


def export(reg: Registry, fmt: str) -> str:
    nodes: dict[Provider, str] = {}
    edges: list[tuple[Provider, Provider]] = []
    for key in reg.order:
        p = reg.providers[key]
        nodes[p] = f"n{len(nodes)}"
    for p in nodes:
        edges.extend((p, dep) for dep in _deps(reg, p))
    if fmt == "mermaid":
        lines = ["graph TD"]
        lines += [f'    {nid}["{_label(p)}"]' for p, nid in nodes.items()]
        lines += [f"    {nodes[a]} --> {nodes[b]}" for a, b in edges]
        return "\n".join(lines) + "\n"
    if fmt == "dot":
        lines = ["digraph tether {", "    rankdir=TB;", "    node [shape=box];"]
        lines += [f'    {nid} [label="{_label(p)}"];' for p, nid in nodes.items()]
        lines += [f"    {nodes[a]} -> {nodes[b]};" for a, b in edges]
        return "\n".join([*lines, "}"]) + "\n"
    raise ValueError(f"unknown graph format {fmt!r}: use 'mermaid' or 'dot'")


def _label(p: Provider) -> str:
    text = f"{p.display} ({p.scope.name})"
    return text.replace('"', "'")
