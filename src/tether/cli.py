"""The ``tether`` command line (extra: cli).

    tether check  myapp.main:container          start it, run its health checks, print a table
    tether graph  myapp.main:container --format mermaid|dot
    tether health http://127.0.0.1:8000         a running service's /health/detailed
    tether demo   [--host 127.0.0.1] [--port 8000]

``module:attr`` names a ``Container`` or a function that builds one with no arguments.
Exit status: 0 healthy or degraded, 1 a critical resource (or the service) failed,
2 the command was used wrong (a bad spec, a missing attribute, a malformed URL).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

try:
    import typer
    from rich.console import Console
except ImportError:  # pragma: no cover - exercised in a subprocess test
    raise ImportError("tether.cli needs the 'cli' extra: pip install 'tether[cli]'") from None

from ._cli_render import (
    MalformedReport,
    Row,
    error_console,
    rows_from_json,
    rows_from_report,
    status_line,
    table,
    verdict,
)
from ._container import Container
from ._health import describe_error, redact
from ._scope import Scope
from .exceptions import GraphError, ResourceInitError, TeardownError, TetherError

if TYPE_CHECKING:
    import httpx

__all__ = ["app", "main"]

USAGE = 2  # the command was used wrong
FAILED = 1  # what it looked at is unhealthy, or could not be started

app = typer.Typer(
    name="tether",
    help="Check, draw and watch a tether container.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)


def main() -> None:
    """Entry point of the ``tether`` console script."""
    app(prog_name="tether")


class _Exit(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _fail(error: _Exit) -> NoReturn:
    error_console().print(f"error: {error.message}")
    raise typer.Exit(error.code)


# -- finding the container ------------------------------------------------------------

_SPEC_HINT = "write it as package.module:attribute, e.g. myapp.main:container"


def _load_container(spec: str) -> Container:
    """The container ``spec`` ("module:attr") names, built if attr is a function."""
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr or module_name.startswith("."):
        raise _Exit(f"{spec!r} is not a module:attribute spec. Hint: {_SPEC_HINT}.", USAGE)
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)  # as `python -m` does, so a module beside you is found
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise _Exit(
                f"cannot import {module_name!r} from {spec!r}: there is no module named "
                f"{missing!r}. Hint: run tether from the folder that holds it, or install "
                f"the package that provides it.", USAGE,
            ) from None
        raise _import_failed(module_name, error) from None
    except Exception as error:
        raise _import_failed(module_name, error) from None
    found: Any = module
    for part in attr.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise _Exit(_no_attribute(module_name, module, attr), USAGE) from None
    if isinstance(found, Container):
        return found
    if not callable(found):
        raise _Exit(
            f"{spec} is a {type(found).__name__}, not a tether.Container or a function "
            f"that returns one.", USAGE,
        )
    if isinstance(found, type) and not issubclass(found, Container):
        raise _Exit(
            f"{spec} is the class {found.__name__}, not a tether.Container or a function "
            f"that returns one.", USAGE,
        )
    if inspect.iscoroutinefunction(found):
        raise _Exit(
            f"{spec} is an async function; point tether at a Container or at a plain "
            f"function that returns one.", USAGE,
        )
    required = _required_parameters(found)
    if required:
        raise _Exit(
            f"{spec} takes arguments ({', '.join(required)}); point tether at a Container "
            f"or at a function that builds one with no arguments.", USAGE,
        )
    try:
        built = found()
    except Exception as error:
        raise _Exit(f"calling {spec}() raised {describe_error(error)}", FAILED) from None
    if isinstance(built, Container):
        return built
    if inspect.iscoroutine(built):
        built.close()  # never awaited on purpose: no "never awaited" warning
    raise _Exit(
        f"{spec}() returned {type(built).__name__}, not a tether.Container.", USAGE
    )


def _import_failed(module_name: str, error: BaseException) -> _Exit:
    return _Exit(
        f"importing {module_name!r} raised {describe_error(error)}. Hint: run "
        f"`python -c 'import {module_name}'` to see the traceback.", FAILED,
    )


def _no_attribute(module_name: str, module: Any, attr: str) -> str:
    message = f"module {module_name!r} has no attribute {attr!r}."
    containers = sorted(n for n, v in vars(module).items() if isinstance(v, Container))
    if containers:
        message += f" Containers it defines: {', '.join(containers)}."
    return message + f" Hint: {_SPEC_HINT}."


def _required_parameters(func: Any) -> list[str]:
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # a builtin without a signature: just call it
        return []
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [
        p.name for p in signature.parameters.values()
        if p.default is inspect.Parameter.empty and p.kind not in variadic
    ]


def _container(spec: str) -> Container:
    try:
        return _load_container(spec)
    except _Exit as error:
        _fail(error)


# -- tether check ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Checked:
    rows: list[Row]
    per_use: int  # registrations built per session, request or use: not started
    teardown: list[str]


async def _check(container: Container, *, eager_only: bool) -> _Checked:
    reg = container._registry
    providers = [reg.providers[key] for key in reg.order]
    started = [p for p in providers if p.scope <= Scope.APP]
    failed: dict[str, str] = {}
    rows: list[Row] | None = None
    teardown: list[str] = []
    try:
        async with container:
            if not eager_only:
                for p in started:
                    if p.eager:
                        continue
                    try:
                        await container.aget(p.provides, p.name)
                    except Exception as error:
                        failed[p.display] = _build_failure(error, p.display)
            report = await container.health()
            registrations = [
                (p.display, p.scope.name, p.critical, p.stats.created > 0) for p in started
            ]
            rows = rows_from_report(report, registrations, failed)
    except TeardownError as error:
        if rows is None:
            raise
        for resource, exc in zip(error.resources, error.exceptions, strict=False):
            if resource is not None:
                teardown.append(f"disposing {resource} failed: {describe_error(exc)}")
    return _Checked(rows, len(providers) - len(started), teardown)


def _build_failure(error: Exception, name: str) -> str:
    if isinstance(error, ResourceInitError):
        cause = describe_error(error.error)
        if error.dependency != name:
            return f"needs {error.dependency}, which failed: {cause}"
        return cause
    return describe_error(error)


Spec = Annotated[str, typer.Argument(
    metavar="MODULE:ATTR",
    help="A Container, or a function returning one, e.g. myapp.main:container.",
)]


@app.command()
def check(
    spec: Spec,
    eager_only: Annotated[bool, typer.Option(
        "--eager-only",
        help="Start only eager=True registrations; by default every APP and SINGLETON "
        "registration is built.",
    )] = False,
) -> None:
    """Validate the graph, start every resource, run the health checks and print a table.

    Exits 1 when a critical resource fails to start or is unhealthy.
    """
    container = _container(spec)
    err = error_console()
    try:
        result = asyncio.run(_check(container, eager_only=eager_only))
    except TeardownError as error:  # the check itself failed, then so did disposing
        err.print(f"error: {error.message}")
        for exc in error.exceptions:
            err.print(f"  - {describe_error(exc)}")
        raise typer.Exit(FAILED) from None
    except TetherError as error:  # StartupError, GraphError, ClosedError: one sentence each
        err.print(f"error: {redact(str(error))}")
        raise typer.Exit(FAILED) from None
    out = Console(highlight=False)
    out.print(table(result.rows, title=f"tether check {spec}"))
    status = verdict(result.rows)
    out.print(status_line(status))
    if result.per_use:
        out.print(
            f"{result.per_use} registration(s) scoped to a session, request or use were not "
            f"started.", style="dim", markup=False,
        )
    for line in result.teardown:
        err.print(f"error: {line}")
    failing = [r.name for r in result.rows if r.healthy is False and r.critical]
    if failing:
        err.print(f"error: critical registration(s) failing: {', '.join(failing)}")
    if failing or result.teardown:
        raise typer.Exit(FAILED)


# -- tether graph ---------------------------------------------------------------------


class GraphFormat(StrEnum):
    """What ``tether graph --format`` writes."""

    mermaid = "mermaid"
    dot = "dot"


@app.command()
def graph(
    spec: Spec,
    format: Annotated[GraphFormat, typer.Option(
        "--format", "-f", help="Mermaid or Graphviz dot.",
    )] = GraphFormat.mermaid,
) -> None:
    """Print the dependency graph as Mermaid or Graphviz (dot) text.

    Problems the graph has (a missing or cyclic dependency) are listed on stderr.
    """
    container = _container(spec)
    sys.stdout.write(container.graph(format.value))
    try:
        container.validate()
    except GraphError as error:
        error_console().print(f"note: {error}")


# -- tether health --------------------------------------------------------------------


def _health_url(url: str) -> str:
    """``url`` with a scheme, and with ``/health/detailed`` when it has no path."""
    import httpx

    if "://" not in url:
        url = f"http://{url}"
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise _Exit(f"{url!r} is not a URL: {error}.", USAGE) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise _Exit(
            f"{url!r} is not an http(s) URL. Hint: give the service's address, "
            f"e.g. http://127.0.0.1:8000.", USAGE,
        )
    if parsed.path in ("", "/"):
        parsed = parsed.copy_with(path="/health/detailed")
    return str(parsed)


def _fetch(url: str, timeout: float) -> httpx.Response:
    import httpx

    try:
        with httpx.Client(timeout=timeout) as client:
            return client.get(url, headers={"Accept": "application/json"})
    except httpx.ConnectError:
        raise _Exit(f"cannot reach {url}: nothing answered. Is the service running?",
                    FAILED) from None
    except httpx.TimeoutException:
        raise _Exit(f"{url} did not answer within {timeout:g}s.", FAILED) from None
    except httpx.HTTPError as error:
        raise _Exit(f"the request to {url} failed: {describe_error(error)}", FAILED) from None


@app.command()
def health(
    url: Annotated[str, typer.Argument(
        help="The service's address (/health/detailed is added when it has no path), "
        "or the full URL of its detailed health endpoint.",
    )],
    timeout: Annotated[float, typer.Option(
        min=0.001, help="Seconds to wait for the answer.",
    )] = 10.0,
) -> None:
    """Print a running service's per-resource health (its /health/detailed).

    Exits 1 when the service says it is unhealthy or cannot be reached.
    """
    try:
        import httpx  # noqa: F401
    except ImportError:
        _fail(_Exit("tether health needs httpx: pip install 'tether[cli]'", USAGE))
    try:
        target = _health_url(url)
        response = _fetch(target, timeout)
        try:
            status, rows = rows_from_json(response.json())
        except (ValueError, MalformedReport) as error:
            reason = error if isinstance(error, MalformedReport) else "its body is not JSON"
            raise _Exit(
                f"{target} answered HTTP {response.status_code} without a tether health "
                f"report: {reason}. Hint: point at the service's /health/detailed.", FAILED,
            ) from None
    except _Exit as error:
        _fail(error)
    out = Console(highlight=False)
    out.print(table(rows, title=target, service=True))
    out.print(status_line(status))
    if status == "unhealthy" or response.status_code >= 500:
        failing = [r.name for r in rows if r.healthy is False and r.critical]
        what = f": {', '.join(failing)} failing" if failing else ""
        error_console().print(
            f"error: {target} is unhealthy (HTTP {response.status_code}){what}"
        )
        raise typer.Exit(FAILED)


# -- tether demo ----------------------------------------------------------------------


@app.command()
def demo(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
) -> None:
    """Serve the demo service (a notes API on embedded defaults)."""
    err = error_console()
    try:
        serve = importlib.import_module("tether.demo.__main__").main
    except ModuleNotFoundError as error:
        if error.name in ("tether.demo", "tether.demo.__main__"):
            err.print("error: the demo service is not available in this build of tether.")
        else:
            err.print(f"error: the demo needs the 'demo' extra (no module named "
                      f"{error.name!r}): pip install 'tether[demo]'")
        raise typer.Exit(USAGE) from None
    except ImportError as error:
        err.print(f"error: the demo needs the 'demo' extra ({error}): "
                  f"pip install 'tether[demo]'")
        raise typer.Exit(USAGE) from None
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        err.print("error: the demo needs the 'demo' extra: pip install 'tether[demo]'")
        raise typer.Exit(USAGE) from None
    serve(["--host", host, "--port", str(port)])


if __name__ == "__main__":
    main()
