"""The live status page: ``GET /status`` (one HTML page) and ``GET /status.json``.

The page is a single self-contained document (inline CSS and JS, no external URL, no
build step) that polls ``status.json`` and draws each resource's state, its latency
over the last minutes, pool usage and errors. The JSON carries only what
``HealthReport`` and ``container.metrics()`` already expose: names, scopes, verdicts,
timings, counters and the last error's type and message.

Latency history lives in memory, bounded by age and by count whatever the request
rate: a report is recorded each time ``status.json`` looks at the container's health,
and by a background sampler while the app runs (see ``status_router``).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import html
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any

try:
    from fastapi import APIRouter
    from fastapi.responses import HTMLResponse, JSONResponse
except ImportError:  # pragma: no cover - tether.fastapi reports the missing extra first
    raise ImportError(
        "the tether status page needs the 'fastapi' extra: pip install 'tether[fastapi]'"
    ) from None

from ._container import Container
from ._health import HealthReport

logger = logging.getLogger("tether")


@dataclass(frozen=True, slots=True)
class Sample:
    """One point of a resource's latency history; a point may stand for several checks
    (the slowest time, and unhealthy if any of them was)."""

    at: float
    response_time: float | None
    healthy: bool | None

    def merge(self, other: Sample) -> Sample:
        times = [t for t in (self.response_time, other.response_time) if t is not None]
        if self.healthy is False or other.healthy is False:
            healthy: bool | None = False
        elif self.healthy is None and other.healthy is None:
            healthy = None
        else:
            healthy = True
        return Sample(self.at, max(times) if times else None, healthy)

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "response_time": self.response_time, "healthy": self.healthy}


class LatencyHistory:
    """Each resource's recent checks, at most ``points`` per resource and none older than
    ``seconds`` before the newest report.

    Checks closer together than ``seconds / points`` share one point, so ten open pages
    polling every second cost no more memory than one.
    """

    __slots__ = ("_last", "_series", "points", "seconds", "spacing")

    def __init__(self, seconds: float, points: int) -> None:
        self.seconds = seconds
        self.points = points
        self.spacing = seconds / points
        self._series: dict[str, deque[Sample]] = {}
        self._last = -math.inf  # checked_at of the newest report recorded

    def record(self, report: HealthReport) -> None:
        if report.checked_at <= self._last:
            return  # seen already (a reused report), or older than one we have
        self._last = report.checked_at
        for name, check in report.resources.items():
            series = self._series.get(name)
            if series is None:
                series = self._series[name] = deque(maxlen=self.points)
            sample = Sample(check.checked_at, check.response_time, check.is_healthy)
            if series and sample.at - series[-1].at < self.spacing:
                series[-1] = series[-1].merge(sample)
            else:
                series.append(sample)
        cutoff = report.checked_at - self.seconds
        for name in list(self._series):
            series = self._series[name]
            while series and series[0].at < cutoff:
                series.popleft()
            if not series:
                del self._series[name]

    def of(self, name: str) -> list[Sample]:
        return list(self._series.get(name, ()))

    def __len__(self) -> int:
        return sum(len(s) for s in self._series.values())


class StatusSource:
    """Health reports for the status page: one check at a time, shared by every request
    that asks while it runs, and a recent report reused rather than checked again."""

    __slots__ = ("_pending", "container", "history")

    def __init__(self, container: Container, history: LatencyHistory) -> None:
        self.container = container
        self.history = history
        self._pending: asyncio.Task[HealthReport] | None = None

    async def report(self, max_age: float) -> HealthReport:
        last = self.container.last_health
        if last is not None and time.time() - last.checked_at < max_age:
            report = last
        else:
            report = await self._check()
        self.history.record(report)
        return report

    async def _check(self) -> HealthReport:
        loop = asyncio.get_running_loop()
        task = self._pending
        if task is None or task.done() or task.get_loop() is not loop:
            task = self._pending = loop.create_task(
                self.container.health(), name="tether status check"
            )
        # A request that goes away must not cancel the check the others wait for.
        return await asyncio.shield(task)

    def snapshot(self, report: HealthReport) -> dict[str, Any]:
        counters = {
            name: {
                "scope": m.scope.name,
                "active": m.active,
                "peak": m.peak,
                "created": m.created,
                "failed": m.failed,
            }
            for name, m in self.container.metrics().items()
        }
        numbers = {
            name: _numbers(stats) for name, stats in self.container.statistics().items()
        }
        resources = {}
        for name, check in report.resources.items():
            entry = check.to_dict()
            entry["metrics"] = counters.get(name)
            entry["statistics"] = numbers.get(name)
            entry["history"] = [s.to_dict() for s in self.history.of(name)]
            resources[name] = entry
        return {
            "status": report.status.value,
            "checked_at": report.checked_at,
            "closed": self.container.closed,
            "history_seconds": self.history.seconds,
            "resources": resources,
            "registrations": counters,
        }

    async def sample(self, interval: float) -> None:
        while True:
            if not self.container.closed:
                try:
                    await self.report(interval)
                except Exception as error:  # the sampler must outlive any one failure
                    logger.error("status sampler: %r", error, exc_info=error)
            await asyncio.sleep(interval)


def status_router(
    container: Container,
    *,
    prefix: str = "/status",
    history_seconds: float = 600.0,
    history_points: int = 300,
    sample_interval: float | None = 10.0,
    min_check_interval: float = 1.0,
    poll_interval: float = 1.5,
) -> APIRouter:
    """``GET {prefix}``: a live status page; ``GET {prefix}.json``: what it shows.

    - ``history_seconds``, ``history_points``: each resource's latency history covers
      this long, in at most this many points;
    - ``sample_interval``: while the app runs (its lifespan), check health this often
      so the history has points before anyone opens the page (a report from the
      container's own ``health_interval`` monitor counts); ``None`` samples only when
      ``{prefix}.json`` is asked for;
    - ``min_check_interval``: ``{prefix}.json`` reuses a report younger than this rather
      than running the checks again, so many open pages cost one check;
    - ``poll_interval``: how often the page asks for ``{prefix}.json``.
    """
    if not prefix.startswith("/") or prefix.endswith("/"):
        raise ValueError(f"prefix must start with '/' and not end with '/', got {prefix!r}")
    for label, value in (("history_seconds", history_seconds), ("poll_interval", poll_interval)):
        if not isinstance(value, int | float) or value <= 0:
            raise ValueError(f"{label} must be a positive number of seconds, got {value!r}")
    if not isinstance(history_points, int) or history_points < 2:
        raise ValueError(f"history_points must be an int of at least 2, got {history_points!r}")
    if sample_interval is not None and sample_interval <= 0:
        raise ValueError(f"sample_interval must be positive or None, got {sample_interval!r}")
    if min_check_interval < 0:
        raise ValueError(f"min_check_interval must be 0 or more, got {min_check_interval!r}")

    source = StatusSource(container, LatencyHistory(history_seconds, history_points))

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if sample_interval is None:
            yield
            return
        sampler = asyncio.get_running_loop().create_task(
            source.sample(sample_interval), name="tether status sampler"
        )
        try:
            yield
        finally:
            sampler.cancel()
            await asyncio.wait((sampler,))

    router = APIRouter(tags=["status"], lifespan=lifespan)
    # A relative URL, so the page keeps working under a root path or behind a proxy.
    source_url = prefix.rsplit("/", 1)[1] + ".json"
    page = _PAGE.format(
        style=_STYLE, script=_SCRIPT,
        source=html.escape(source_url), poll=html.escape(f"{poll_interval:g}"),
        window=html.escape(_span(history_seconds)),
    )

    @router.get(prefix, include_in_schema=False)
    async def status_page() -> HTMLResponse:
        return HTMLResponse(page, headers=_PAGE_HEADERS)

    @router.get(prefix + ".json")
    async def status_json() -> JSONResponse:
        report = await source.report(min_check_interval)
        return JSONResponse(source.snapshot(report), headers={"Cache-Control": "no-store"})

    return router


_STYLE = """
:root { color-scheme: light dark; --ok: #1f9d55; --bad: #d64545; --unknown: #8a8f98;
  --fg: #1d2129; --muted: #6b7280; --bg: #f6f7f9; --card: #fff; --line: #e3e6ea; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e8eb; --muted: #9aa1ab;
  --bg: #14171c; --card: #1c2027; --line: #2c313a; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  background: var(--bg); color: var(--fg); }
header { display: flex; align-items: center; gap: 12px; flex-wrap: wrap;
  padding: 16px 24px; border-bottom: 1px solid var(--line); background: var(--card); }
h1 { font-size: 18px; margin: 0 8px 0 0; }
h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted);
  margin: 24px 0 8px; }
main { padding: 0 24px 24px; max-width: 1200px; }
.badge { padding: 2px 10px; border-radius: 999px; font-weight: 600; color: #fff;
  background: var(--unknown); }
.badge[data-status="healthy"] { background: var(--ok); }
.badge[data-status="degraded"] { background: #c98a12; }
.badge[data-status="unhealthy"] { background: var(--bad); }
.meta { color: var(--muted); }
#conn[data-live="false"] { color: var(--bad); font-weight: 600; }
table { width: 100%; border-collapse: collapse; background: var(--card);
  border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
th, td { text-align: left; padding: 8px 12px; border-bottom: 1px solid var(--line);
  vertical-align: middle; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
tr:last-child td { border-bottom: 0; }
td.num { font-variant-numeric: tabular-nums; }
.name { font-weight: 600; }
.sub { display: block; font-size: 12px; color: var(--muted); }
.state { display: inline-flex; align-items: center; gap: 6px; font-weight: 600; }
.dot { width: 10px; height: 10px; border-radius: 50%; background: var(--unknown); }
tr[data-healthy="true"] .dot { background: var(--ok); }
tr[data-healthy="false"] .dot { background: var(--bad); }
tr[data-healthy="true"] .state { color: var(--ok); }
tr[data-healthy="false"] .state { color: var(--bad); }
tr[data-healthy="false"] td:first-child { box-shadow: inset 3px 0 0 var(--bad); }
svg.spark { display: block; }
svg.spark .line { fill: none; stroke: #3b82f6; stroke-width: 1.5; }
svg.spark .base { stroke: var(--line); stroke-width: 1; }
svg.spark .point { fill: #3b82f6; }
svg.spark .fail { fill: var(--bad); }
.error { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: 12px;
  color: var(--bad); display: block; max-width: 360px; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.empty { color: var(--muted); }
"""

_SCRIPT = """
"use strict";
const cfg = document.body.dataset;
const pollMs = Math.max(250, Number(cfg.poll) * 1000);
const SVG = "http://www.w3.org/2000/svg";
const W = 160, H = 32, PAD = 3;
const rows = new Map(), regRows = new Map();

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function ms(seconds) {
  if (seconds === null || seconds === undefined) return "\\u2013";
  const v = seconds * 1000;
  if (v < 10) return v.toFixed(2) + " ms";
  if (v < 1000) return v.toFixed(0) + " ms";
  return (v / 1000).toFixed(2) + " s";
}

function first(obj, keys) {
  for (const k of keys) if (typeof obj[k] === "number") return obj[k];
  return undefined;
}
function verdict(h) { return h === true ? "true" : h === false ? "false" : "unknown"; }

function makeRow(name) {
  const tr = el("tr");
  tr.setAttribute("data-resource", name);
  const c = {};
  const who = el("td");
  who.append(el("span", "name", name), c.sub = el("span", "sub"));
  const st = el("td");
  const state = el("span", "state");
  state.append(el("span", "dot"), c.state = el("span"));
  st.append(state);
  const chart = el("td");
  c.svg = document.createElementNS(SVG, "svg");
  c.svg.setAttribute("class", "spark");
  c.svg.setAttribute("width", W);
  c.svg.setAttribute("height", H);
  c.svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  c.svg.setAttribute("role", "img");
  chart.append(c.svg);
  c.now = el("td", "num");
  c.pool = el("td", "num");
  c.errors = el("td");
  tr.append(who, st, chart, c.now, c.pool, c.errors);
  tr.cells_ = c;
  return tr;
}

function sparkline(svg, history, now, windowSeconds) {
  svg.replaceChildren();
  const base = document.createElementNS(SVG, "line");
  base.setAttribute("class", "base");
  base.setAttribute("x1", 0); base.setAttribute("x2", W);
  base.setAttribute("y1", H - PAD); base.setAttribute("y2", H - PAD);
  svg.append(base);
  let top = 0;
  for (const p of history) if (p.response_time !== null) top = Math.max(top, p.response_time);
  top = Math.max(top, 0.001);
  const x = (at) => PAD + Math.max(0, Math.min(1, 1 - (now - at) / windowSeconds)) * (W - 2 * PAD);
  const y = (t) => H - PAD - (t / top) * (H - 2 * PAD);
  const pts = history.filter((p) => p.response_time !== null);
  if (pts.length > 1) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("class", "line");
    path.setAttribute("d", pts.map((p, i) => (i ? "L" : "M") + x(p.at).toFixed(1) + " "
      + y(p.response_time).toFixed(1)).join(" "));
    svg.append(path);
  }
  const dot = (p, cls) => {
    const c = document.createElementNS(SVG, "circle");
    c.setAttribute("class", cls);
    c.setAttribute("cx", x(p.at).toFixed(1));
    c.setAttribute("cy", p.response_time === null ? H - PAD : y(p.response_time).toFixed(1));
    c.setAttribute("r", 2.5);
    svg.append(c);
  };
  if (pts.length === 1) dot(pts[0], "point");
  for (const p of history) if (p.healthy === false) dot(p, "fail");
  const title = document.createElementNS(SVG, "title");
  title.textContent = history.length + " checks, slowest " + ms(top);
  svg.append(title);
}

// Rows stay the same elements from poll to poll, in the server's order.
function place(tbody, tr, index) {
  const there = tbody.rows[index];
  if (there !== tr) tbody.insertBefore(tr, there || null);
}

function render(data) {
  const overall = document.getElementById("overall");
  overall.textContent = data.closed ? "closed" : data.status;
  overall.dataset.status = data.closed ? "closed" : data.status;
  document.getElementById("updated").textContent =
    "checked " + new Date(data.checked_at * 1000).toLocaleTimeString();
  const body = document.querySelector("#resources tbody");
  const seen = new Set();
  for (const [name, r] of Object.entries(data.resources)) {
    seen.add(name);
    let tr = rows.get(name);
    if (!tr) { tr = makeRow(name); rows.set(name, tr); }
    place(body, tr, seen.size - 1);
    const c = tr.cells_;
    const v = verdict(r.healthy);
    tr.setAttribute("data-healthy", v);
    c.state.textContent = v === "true" ? "healthy" : v === "false" ? "unhealthy" : "not started";
    c.sub.textContent = r.scope + (r.critical ? " \\u00b7 critical" : "");
    sparkline(c.svg, r.history, data.checked_at, data.history_seconds);
    c.now.textContent = ms(r.response_time);
    const m = r.metrics, st = r.statistics;
    const used = st ? first(st, ["in_use", "checked_out", "active"]) : undefined;
    const size = st ? first(st, ["max_size", "size", "max_connections"]) : undefined;
    if (used !== undefined && size !== undefined) {
      c.pool.textContent = used + " / " + size;
      c.pool.title = "in use / pool size; " + Object.entries(st).map(
        ([k, v]) => k + " " + v).join(", ");
    } else {
      c.pool.textContent = m ? m.active + " / " + m.peak : "\\u2013";
      c.pool.title = m ? "active / peak; created " + m.created + ", failed " + m.failed : "";
    }
    c.errors.replaceChildren(el("span", "num", String(r.error_count)));
    if (r.last_error) {
      const e = el("span", "error", r.last_error);
      e.title = r.last_error;
      c.errors.append(e);
    }
  }
  for (const [name, tr] of rows) if (!seen.has(name)) { tr.remove(); rows.delete(name); }
  document.getElementById("empty").hidden = rows.size > 0;
  const regs = document.querySelector("#registrations tbody");
  const listed = new Set();
  for (const [name, m] of Object.entries(data.registrations)) {
    listed.add(name);
    let tr = regRows.get(name);
    if (!tr) {
      tr = el("tr");
      tr.setAttribute("data-registration", name);
      tr.append(el("td", "name", name));
      for (let i = 0; i < 5; i++) tr.append(el("td", i ? "num" : ""));
      regRows.set(name, tr);
    }
    place(regs, tr, listed.size - 1);
    [m.scope, m.active, m.peak, m.created, m.failed].forEach((value, i) => {
      tr.cells[i + 1].textContent = String(value);
    });
  }
  for (const [name, tr] of regRows) if (!listed.has(name)) { tr.remove(); regRows.delete(name); }
}

function live(ok) {
  const conn = document.getElementById("conn");
  conn.dataset.live = ok ? "true" : "false";
  conn.textContent = ok ? "live" : "disconnected, retrying";
}

async function poll() {
  try {
    const response = await fetch(cfg.source, {cache: "no-store",
                                               headers: {Accept: "application/json"}});
    if (!response.ok) throw new Error("HTTP " + response.status);
    render(await response.json());
    live(true);
  } catch (error) {
    live(false);
  } finally {
    setTimeout(poll, pollMs);
  }
}

poll();
"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>Status \u00b7 tether</title>
<style>{style}</style>
</head>
<body data-source="{source}" data-poll="{poll}">
<header>
<h1>Status</h1>
<span id="overall" class="badge" data-status="unknown">loading</span>
<span id="updated" class="meta"></span>
<span id="conn" class="meta" data-live="true"></span>
</header>
<main>
<h2>Resources</h2>
<table id="resources">
<thead><tr><th>Resource</th><th>State</th><th>Latency, last {window}</th><th>Last check</th>
<th>In use</th><th>Errors</th></tr></thead>
<tbody></tbody>
</table>
<p id="empty" class="empty" hidden>No resource has a health check.</p>
<h2>Registrations</h2>
<table id="registrations">
<thead><tr><th>Registration</th><th>Scope</th><th>Active</th><th>Peak</th><th>Created</th>
<th>Failed</th></tr></thead>
<tbody></tbody>
</table>
</main>
<script>{script}</script>
</body>
</html>
"""


def _numbers(stats: Any) -> dict[str, float] | None:
    """The plain number fields of a resource's ``statistics()`` dataclass."""
    if not dataclasses.is_dataclass(stats) or isinstance(stats, type):
        return None
    out: dict[str, float] = {}
    for f in dataclasses.fields(stats):
        value = getattr(stats, f.name)
        if isinstance(value, int | float) and not isinstance(value, bool | Enum):
            out[f.name] = value
    return out


def _span(seconds: float) -> str:
    if seconds >= 120 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# The page runs only its own inline script and style, and talks only to its origin.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_digest(_SCRIPT)}; style-src {_digest(_STYLE)}; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
