"""Tables for the ``tether`` command line: one row shape for a local check and for a
running service's ``/health/detailed``. Imported only by ``tether.cli``, after it has
checked that the ``cli`` extra is installed."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._health import HealthReport


@dataclass(frozen=True, slots=True)
class Row:
    """One registration. ``healthy`` is None when it was not started; ``checked`` is
    False when it has no health check, so ``healthy`` only means it was built."""

    name: str
    scope: str
    critical: bool
    healthy: bool | None
    checked: bool
    response_time: float | None = None
    last_error: str | None = None
    error_count: int | None = None
    uptime: float | None = None


class MalformedReport(ValueError):
    """A JSON body that is not a ``HealthReport.to_dict()``; the message says what is off."""


def rows_from_report(
    report: HealthReport,
    registrations: Iterable[tuple[str, str, bool, bool]],
    failed: Mapping[str, str],
) -> list[Row]:
    """Rows for ``registrations`` (name, scope, critical, built), in that order.

    Those with a health check take it from ``report``; ``failed`` holds the build
    failures seen while starting, which win over a report that never saw the instance.
    """
    rows = []
    for name, scope, critical, built in registrations:
        checked = report.resources.get(name)
        error = failed.get(name)
        if checked is not None:
            healthy = False if error is not None else checked.is_healthy
            rows.append(Row(
                name=name, scope=scope, critical=critical, healthy=healthy, checked=True,
                response_time=checked.response_time,
                last_error=error if error is not None else checked.last_error,
                error_count=checked.error_count, uptime=checked.uptime,
            ))
        elif error is not None:
            rows.append(Row(name, scope, critical, healthy=False, checked=False,
                            last_error=error))
        else:
            rows.append(Row(name, scope, critical, healthy=True if built else None,
                            checked=False))
    return rows


def rows_from_json(body: Any) -> tuple[str, list[Row]]:
    """The status and rows of a ``/health/detailed`` body."""
    if not isinstance(body, dict):
        raise MalformedReport(f"the body is a JSON {type(body).__name__}, not an object")
    if "status" not in body:
        raise MalformedReport("its JSON has no status")
    status = body["status"]
    if status not in ("healthy", "degraded", "unhealthy"):
        raise MalformedReport(f"its status is {status!r}, not healthy, degraded or unhealthy")
    resources = body.get("resources")
    if not isinstance(resources, dict):
        raise MalformedReport("it has no per-resource details")
    rows = []
    for name, entry in resources.items():
        if not isinstance(entry, dict):
            raise MalformedReport(f"the entry for {name!r} is not an object")
        healthy = entry.get("healthy")
        rows.append(Row(
            name=str(entry.get("name", name)),
            scope=str(entry.get("scope", "?")),
            critical=entry.get("critical") is not False,
            healthy=healthy if isinstance(healthy, bool) else None,
            checked=True,
            response_time=_number(entry.get("response_time")),
            last_error=None if entry.get("last_error") is None else str(entry["last_error"]),
            error_count=_int(entry.get("error_count")),
            uptime=_number(entry.get("uptime")),
        ))
    return status, rows


def verdict(rows: Iterable[Row]) -> str:
    """healthy, degraded (only non-critical rows fail) or unhealthy, as a report has it."""
    status = "healthy"
    for row in rows:
        if row.healthy is False:
            if row.critical:
                return "unhealthy"
            status = "degraded"
    return status


def table(rows: Iterable[Row], *, title: str, service: bool = False) -> Table:
    """The per-registration table; ``service`` adds the columns only a running service
    has (error count and uptime)."""
    grid = Table(title=title, title_justify="left", show_lines=False)
    rows = list(rows)
    longest = max((len(row.name) for row in rows), default=0)
    grid.add_column("registration", style="bold", overflow="fold",
                    min_width=min(max(longest, 12), 24))
    grid.add_column("scope", no_wrap=True)
    grid.add_column("critical", no_wrap=True)
    grid.add_column("healthy", no_wrap=True)
    grid.add_column("response time", justify="right")
    if service:
        grid.add_column("errors", justify="right", no_wrap=True)
        grid.add_column("uptime", justify="right", no_wrap=True)
    grid.add_column("last error", overflow="fold")
    for row in rows:
        cells = [
            Text(row.name), Text(row.scope), Text("yes" if row.critical else "no"),
            _health_cell(row), Text(_seconds(row.response_time)),
        ]
        if service:
            cells += [Text("-" if row.error_count is None else str(row.error_count)),
                      Text(_duration(row.uptime))]
        cells.append(Text(row.last_error or "", style="red" if row.healthy is False else ""))
        grid.add_row(*cells)
    return grid


def status_line(status: str) -> Text:
    style = {"healthy": "bold green", "degraded": "bold yellow"}.get(status, "bold red")
    return Text.assemble(("status: ", ""), (status, style))


def error_console() -> Console:
    # soft_wrap: an error stays one line however narrow the terminal is.
    return Console(stderr=True, soft_wrap=True, highlight=False, markup=False)


def _health_cell(row: Row) -> Text:
    if row.healthy is None:
        return Text("not started", style="dim")
    if row.healthy is False:
        return Text("FAILING", style="bold red" if row.critical else "bold yellow")
    if not row.checked:
        return Text("started", style="green")  # no health check: built is all we know
    return Text("healthy", style="green")


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.2f} ms"
    return f"{value:.2f} s"


def _duration(value: float | None) -> str:
    if value is None:
        return "-"
    seconds = int(value)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{seconds}s"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
