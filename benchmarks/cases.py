"""What a library module in ``benchmarks.libs`` hands to the worker.

Each module in ``benchmarks.libs`` defines:

- ``DIST``: the distribution name for the version column (``None`` for hand-written).
- ``HOW``: scenario key -> one line saying how the library is called there.
- ``NOTES``: scenario key -> why a result is not strictly equivalent (optional).
- ``s1()`` / ``s2()``: context managers yielding a :class:`SyncCase`; the statement is
  timed inline by ``timeit`` while the context is open.
- ``s3()``: an async context manager yielding ``once``, an ``async`` callable that enters
  a request scope, resolves a ``Handler``, exits the scope and returns the handler.
- ``s1000(classes)``: registers ``Base`` and every class (all singletons), builds the
  container and returns a callable that resolves each class once, in order.
- ``s4()``: builds a FastAPI app through the library's own FastAPI integration, with
  one endpoint, ``GET`` :data:`S4_PATH`, that gets ``Handler`` (``Config`` one per app,
  ``Resource`` from ``resource_gen``, finalized per request) and returns
  ``{"v": handler.config.value}``. Everything FastAPI-related is imported inside the
  function, so that S1-S3 and S1000 never import FastAPI.
- ``S4``: S4 row label -> name of the function that builds that row's app (optional;
  ``{library: "s4"}`` when the module has an ``s4``), for a library with two variants.

A module defines only the scenarios it takes part in (the FastAPI-only module has just
``s4``). A scenario a library cannot express raises :class:`Unsupported` with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.model import Handler

Once = Callable[[], Awaitable[Handler]]
ResolveAll = Callable[[], list[object]]

S4_PATH = "/handler"


@dataclass(frozen=True)
class SyncCase:
    """``stmt`` is evaluated in ``namespace``; it must return the resolved object."""

    stmt: str
    namespace: dict[str, Any] = field(default_factory=dict)


class Unsupported(Exception):
    """The library has no way to express this scenario."""
