"""The object graph every library resolves; one definition shared by all of them.

Annotations here are real types (no ``from __future__ import annotations``) so that
every library's autowiring sees the same thing, whatever way it reads type hints.

- ``Config``: an app-lifetime singleton (S1, S3, S4).
- ``A(b: B, d: D)``, ``B(c: C)``, ``D(c: C)``, ``C()``: the transient graph (S2); every
  library builds ``C`` once per edge, i.e. twice per ``A``, as the hand-written floor does.
- ``Resource`` from the async generator ``resource_gen`` whose ``finally`` awaits
  ``aclose()``; ``Handler(config: Config, resource: Resource)`` request-scoped (S3, S4).
- ``make_singletons(n)``: ``n`` classes ``S{i}(base: Base)`` made at run time (S1000).
- S4 serves ``Handler`` from a FastAPI endpoint that returns ``{"v": handler.config.value}``.
"""

from collections.abc import AsyncIterator


class Config:
    """Counts its instances so that S4 can check that an app built exactly one."""

    created = 0

    def __init__(self) -> None:
        self.value = 42
        Config.created += 1


class C:
    def __init__(self) -> None:
        pass


class B:
    def __init__(self, c: C) -> None:
        self.c = c


class D:
    def __init__(self, c: C) -> None:
        self.c = c


class A:
    def __init__(self, b: B, d: D) -> None:
        self.b = b
        self.d = d


class Resource:
    """Counts its finalizations so a timed loop can check that each one ran."""

    finalized = 0

    def __init__(self) -> None:
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True
        Resource.finalized += 1


async def resource_gen() -> AsyncIterator[Resource]:
    resource = Resource()
    try:
        yield resource
    finally:
        await resource.aclose()


class Handler:
    def __init__(self, config: Config, resource: Resource) -> None:
        self.config = config
        self.resource = resource


class Base:
    def __init__(self) -> None:
        pass


def _make_init() -> object:
    # A fresh function per class, as if each class had been written out by hand.
    # ``self`` stays unannotated: some libraries read every annotated parameter.
    def __init__(self, base: Base) -> None:  # type: ignore[no-untyped-def]
        self.base = base

    return __init__


def make_singletons(n: int) -> list[type]:
    """``n`` distinct classes ``S0 .. S{n-1}``, each ``__init__(self, base: Base)``."""
    classes: list[type] = []
    for i in range(n):
        init = _make_init()
        init.__qualname__ = f"S{i}.__init__"  # type: ignore[attr-defined]
        classes.append(type(f"S{i}", (), {"__init__": init, "__module__": __name__}))
    return classes
