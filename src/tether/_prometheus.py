"""Prometheus metrics for a FastAPI app: ``/metrics``, request latency, tether's counters.

    metrics = install_metrics(app, container)     # middleware + GET /metrics

What ``/metrics`` serves, in Prometheus text format:

- ``http_request_duration_seconds`` (histogram; ``method``, ``route``) and
  ``http_requests_total`` (``method``, ``route``, ``status``). ``route`` is the
  template the request matched (``/users/{user_id}``, mount prefixes included), never
  the raw path; a request no route matched is ``<unmatched>`` (one that matched a
  mount but nothing inside it carries the mount's prefix) and a method outside the
  standard ones is ``OTHER``, so a client cannot mint new series. The clock stops
  when the last body chunk is sent, so background tasks do not count. A request that
  raised before responding counts as 500; WebSocket connections are not counted.
- ``tether_registration_*`` for every registration (``registration``, ``scope``):
  ``created_total``, ``disposed_total``, ``failed_total``, ``dispose_failed_total``,
  ``init_seconds_total``, ``active`` and ``peak``, read from ``container.metrics()``
  at scrape time.
- ``tether_resource_*`` for every built APP or SINGLETON resource whose
  ``statistics()`` returns a dataclass (the batteries: pool sizes, calls, failures,
  latency), labelled ``resource``: a field ending in ``_total`` is a counter, any
  other number a gauge, a mapping of numbers (``failures_by_kind``) one series per
  ``kind``; other fields are left out. Read from ``container.statistics()`` at
  scrape time; in multiprocess mode they are the answering worker's own, with a
  ``pid`` label.

Each app gets a ``CollectorRegistry`` of its own, so two apps in one process (or one
test after another) never share series.

Several worker processes: start every worker with ``PROMETHEUS_MULTIPROC_DIR``
pointing at an empty folder shared by them (prometheus-client reads it when it is
first imported, so set it before the process starts). Then request metrics go to
files there and ``/metrics`` on any worker serves all workers' sums. tether's
counters live in each worker's memory, so each worker copies its snapshot into
that folder: when the app starts and stops, at most once per ``sync_interval``
seconds after a request, and before it answers a scrape. Counters are summed over
every worker that ever ran (as prometheus-client does for its own counters);
``active`` is summed and ``peak`` is the largest, over live workers only. A worker
that dies without shutting down keeps its last ``active`` and ``peak`` until
``prometheus_client.multiprocess.mark_process_dead(pid)`` runs, e.g. from
gunicorn's ``child_exit`` hook. In multiprocess mode run one app per process: two
apps in one worker would write the same series.
"""

from __future__ import annotations

import dataclasses
import os
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from enum import Enum
from itertools import accumulate
from time import perf_counter
from typing import Any, Literal

try:
    from prometheus_client import (
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        Counter,
        Gauge,
        Histogram,
        generate_latest,
        values,
    )
    from prometheus_client.gc_collector import GCCollector
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.multiprocess import MultiProcessCollector
    from prometheus_client.platform_collector import PlatformCollector
    from prometheus_client.process_collector import ProcessCollector
    from prometheus_client.registry import Collector
    from prometheus_client.utils import floatToGoString
except ImportError:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "tether's /metrics needs prometheus-client, part of the 'fastapi' extra: "
        "pip install 'tether[fastapi]'"
    ) from None

from fastapi import APIRouter, FastAPI
from starlette.responses import Response
from starlette.routing import BaseRoute, Host, Mount
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from ._container import Container
from ._stats import RegistrationMetrics

__all__ = ["MetricsMiddleware", "PrometheusMetrics", "install_metrics", "metrics_router"]

UNMATCHED = "<unmatched>"
OTHER_METHOD = "OTHER"
_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
_LABELS = ("registration", "scope")

# (name, help, RegistrationMetrics field) of the per-registration counters ...
_COUNTERS = (
    ("tether_registration_created", "Instances built.", "created"),
    ("tether_registration_disposed", "Instances disposed.", "disposed"),
    ("tether_registration_failed", "Builds that raised.", "failed"),
    ("tether_registration_dispose_failed", "Disposals that raised.", "dispose_failed"),
    ("tether_registration_init_seconds", "Seconds spent building instances.",
     "init_seconds_total"),
)
# ... and gauges, with how multiprocess mode combines the workers' values.
_GAUGES: tuple[tuple[str, str, str, Literal["livesum", "livemax"]], ...] = (
    ("tether_registration_active", "Instances alive now.", "active", "livesum"),
    ("tether_registration_peak", "Most instances alive at once.", "peak", "livemax"),
)


def _labels(m: RegistrationMetrics) -> tuple[str, str]:
    return m.registration, m.scope.name.lower()


class RegistrationCollector(Collector):
    """Reads ``container.metrics()`` at each scrape (single-process mode)."""

    def __init__(self, container: Container) -> None:
        self.container = container

    def describe(self) -> Iterable[Metric]:
        return self._families([])

    def collect(self) -> Iterable[Metric]:
        return self._families(list(self.container.metrics().values()))

    @staticmethod
    def _families(snapshot: list[RegistrationMetrics]) -> list[Metric]:
        families: list[Metric] = []
        for name, text, field in _COUNTERS:
            counter = CounterMetricFamily(name, text, labels=_LABELS)
            for m in snapshot:
                counter.add_metric(_labels(m), getattr(m, field))
            families.append(counter)
        for name, text, field, _ in _GAUGES:
            gauge = GaugeMetricFamily(name, text, labels=_LABELS)
            for m in snapshot:
                gauge.add_metric(_labels(m), getattr(m, field))
            families.append(gauge)
        return families


class StatisticsCollector(Collector):
    """Reads ``container.statistics()`` at each scrape."""

    def __init__(self, container: Container, pid: bool = False) -> None:
        self.container = container
        self.pid = str(os.getpid()) if pid else None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        extra = () if self.pid is None else (self.pid,)
        names = ("resource",) if self.pid is None else ("resource", "pid")
        for resource, stats in self.container.statistics().items():
            if not dataclasses.is_dataclass(stats) or isinstance(stats, type):
                continue
            for f in dataclasses.fields(stats):
                value = getattr(stats, f.name)
                if isinstance(value, Mapping):
                    numbers = {str(k): v for k, v in value.items() if _number(v)}
                    family = _family(families, f.name, (*names, "kind"))
                    for kind, v in numbers.items():
                        family.add_metric((resource, *extra, kind), float(v))
                elif _number(value):
                    _family(families, f.name, names).add_metric((resource, *extra),
                                                                float(value))
        return list(families.values())


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, Enum)


def _family(
    families: dict[str, CounterMetricFamily | GaugeMetricFamily], field: str,
    labels: Sequence[str],
) -> CounterMetricFamily | GaugeMetricFamily:
    found = families.get(field)
    if found is not None:
        return found
    text = f"{field} from the resources' statistics()."
    family: CounterMetricFamily | GaugeMetricFamily
    if field.endswith("_total"):
        family = CounterMetricFamily(f"tether_resource_{field[:-6]}", text, labels=labels)
    else:
        family = GaugeMetricFamily(f"tether_resource_{field}", text, labels=labels)
    families[field] = family
    return family


class _SharedRegistrations:
    """Copies this process's ``container.metrics()`` into the multiprocess folder."""

    def __init__(self, container: Container, interval: float) -> None:
        self.container = container
        self.interval = interval
        self.last = float("-inf")
        # Not registered anywhere: MultiProcessCollector reads them back from the files.
        self.counters = [
            (Counter(name, text, _LABELS, registry=None), field) for name, text, field in _COUNTERS
        ]
        self.gauges = [
            (Gauge(name, text, _LABELS, registry=None, multiprocess_mode=mode), field)
            for name, text, field, mode in _GAUGES
        ]
        self.sent: dict[tuple[str, str, str], float] = {}  # counter values already written

    def sync(self) -> None:
        self.last = perf_counter()
        sent = self.sent
        for m in self.container.metrics().values():
            labels = _labels(m)
            for counter, field in self.counters:
                key = (field, *labels)
                value = float(getattr(m, field))
                delta = value - sent.get(key, 0.0)
                if delta > 0:
                    counter.labels(*labels).inc(delta)
                    sent[key] = value
            for gauge, field in self.gauges:
                gauge.labels(*labels).set(getattr(m, field))


_DURATION = ("http_request_duration_seconds",
             "Time from receiving a request to sending the last of its response.")
_REQUESTS = ("http_requests", "HTTP requests answered.")


class _LocalRequests(Collector):
    """Request series in plain Python (single-process mode), exposed at scrape time.

    Only the event loop's thread updates them, so an observation takes no lock
    (0.3 µs against 1.1 µs for a prometheus-client ``Histogram`` plus ``Counter``).
    One list per (method, route, status) holds both series' numbers, so a request
    updates one list found with one look-up; the scrape adds up the statuses.
    """

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = _bounds(buckets)
        self.les = [floatToGoString(b) for b in self.bounds]  # type: ignore[no-untyped-call]
        self.les.append("+Inf")
        # (method, route, status) -> [sum, count in each bucket..., count above the last bound]
        self.series: dict[tuple[str, str, int], list[float]] = {}

    def cell(self, method: str, route: str, status: int) -> list[float]:
        """The numbers of one (method, route, status), made on first use."""
        key = (method, route, status)
        found = self.series.get(key)
        if found is None:
            found = self.series[key] = [0.0] * (len(self.bounds) + 2)
        return found

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        series = self.cell(method, route, status)
        series[0] += seconds
        series[1 + bisect_left(self.bounds, seconds)] += 1  # le is inclusive

    def describe(self) -> Iterable[Metric]:
        return self._families({})

    def collect(self) -> Iterable[Metric]:
        return self._families(dict(self.series))

    def _families(self, series: dict[tuple[str, str, int], list[float]]) -> list[Metric]:
        latency: dict[tuple[str, str], list[float]] = {}
        answered = CounterMetricFamily(*_REQUESTS, labels=("method", "route", "status"))
        for (method, route, status), numbers in series.items():
            answered.add_metric([method, route, str(status)], int(sum(numbers[1:])))
            total = latency.get((method, route))
            if total is None:
                latency[method, route] = list(numbers)
            else:
                for i, value in enumerate(numbers):
                    total[i] += value
        duration = HistogramMetricFamily(*_DURATION, labels=("method", "route"))
        for (method, route), numbers in latency.items():
            buckets = list(zip(self.les, accumulate(numbers[1:]), strict=True))
            duration.add_metric([method, route], buckets, numbers[0])
        return [duration, answered]


def _bounds(buckets: Sequence[float]) -> tuple[float, ...]:
    bounds = tuple(float(b) for b in buckets if float(b) != float("inf"))
    if not bounds or list(bounds) != sorted(set(bounds)):
        raise ValueError(f"buckets must be increasing upper bounds, got {list(buckets)!r}")
    return bounds


class _SharedRequests:
    """Request series in the multiprocess folder, through prometheus-client."""

    def __init__(self, buckets: Sequence[float]) -> None:
        # Not registered: MultiProcessCollector reads them back from the files.
        self.duration = Histogram(*_DURATION, ("method", "route"), registry=None,
                                  buckets=(*_bounds(buckets), float("inf")))
        self.requests = Counter(*_REQUESTS, ("method", "route", "status"), registry=None)
        # (method, route, status) -> the two children; bounded like the labels.
        self.children: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self.children.get(key)
        if children is None:
            children = self.children[key] = (
                self.duration.labels(method, route),
                self.requests.labels(method, route, str(status)),
            )
        children[0].observe(seconds)
        children[1].inc()


class PrometheusMetrics:
    """The Prometheus side of one app: its own registry, the request metrics, and
    tether's per-registration metrics for ``container``.

    ``registry`` defaults to a new ``CollectorRegistry``; pass one to add your own
    metrics to ``/metrics``. In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set)
    the registry serves every worker's files instead, and your own metrics reach it
    through those files whatever registry they are registered in.
    """

    def __init__(
        self,
        container: Container,
        *,
        buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
        registry: CollectorRegistry | None = None,
        sync_interval: float = 1.0,
    ) -> None:
        if sync_interval <= 0:
            raise ValueError(
                f"sync_interval must be a positive number of seconds, got {sync_interval!r}"
            )
        self.container = container
        self.registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess = _multiprocess()
        self.shared: _SharedRegistrations | None = None
        self.local: _LocalRequests | None = None  # the request series, single-process mode
        # observe(method, route template, status, seconds): one request answered.
        self.observe: Callable[[str, str, int, float], None]
        if self.multiprocess:
            self.observe = _SharedRequests(buckets).observe
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
            self.registry.register(StatisticsCollector(container, pid=True))
            self.shared = _SharedRegistrations(container, sync_interval)
        else:
            local = self.local = _LocalRequests(buckets)
            self.observe = local.observe
            self.registry.register(local)
            self.registry.register(RegistrationCollector(container))
            self.registry.register(StatisticsCollector(container))
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)

    def sync(self) -> None:
        """Multiprocess mode: write this worker's tether counters to the shared folder.
        A no-op otherwise (they are read at scrape time)."""
        if self.shared is not None:
            self.shared.sync()

    def render(self) -> bytes:
        """The metrics in Prometheus text format."""
        self.sync()
        return generate_latest(self.registry)


def _multiprocess() -> bool:
    wanted = "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ
    if wanted and values.ValueClass is values.MutexValue:
        raise RuntimeError(
            "PROMETHEUS_MULTIPROC_DIR was set after prometheus_client was imported, so this "
            "process keeps its metrics in memory: set it before the process starts."
        )
    return wanted


class _Templates:
    """Route object -> full path template (mount prefixes included), found by walking
    the app's routes once; one dict lookup per request after that."""

    def __init__(self) -> None:
        self.known: dict[int, tuple[BaseRoute, str]] = {}  # id(route) -> (route, template)

    def template(self, route: Any, root: Any) -> str:
        found = self.known.get(id(route))
        if found is not None and found[0] is route:
            return found[1]
        _walk(getattr(root, "routes", ()), "", self.known)
        found = self.known.get(id(route))
        if found is None or found[0] is not route:  # not reachable from the app's routes
            text = getattr(route, "path_format", None)
            found = self.known[id(route)] = (route, text if isinstance(text, str) else UNMATCHED)
        return found[1]


def _walk(routes: Iterable[BaseRoute], prefix: str, out: dict[int, tuple[BaseRoute, str]]) -> None:
    for route in routes:
        if isinstance(route, Mount):
            template = prefix + route.path_format.removesuffix("/{path}")
            out[id(route)] = (route, template or "/")
            _walk(route.routes, template, out)
        elif isinstance(route, Host):
            out[id(route)] = (route, prefix or "/")
            _walk(route.routes, prefix, out)
        else:
            text = getattr(route, "path_format", None)
            if isinstance(text, str):
                out[id(route)] = (route, prefix + text)


class RequestTimer:
    """Records one answered HTTP request: its route template, method, status and time.
    Shared by ``MetricsMiddleware`` and ``TetherMiddleware``, which times requests
    itself when ``install()`` sets up the metrics."""

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self.observe = metrics.observe
        self.shared = metrics.shared
        self.local = metrics.local
        self.bounds = metrics.local.bounds if metrics.local is not None else ()
        self.templates = _Templates()
        # Single-process mode: (id(route), method, status) -> (route, its numbers), so a
        # request after the first of its kind costs one look-up. Only standard methods
        # get an entry (any other is OTHER), so clients cannot grow it.
        self.known: dict[tuple[int, str, int], tuple[Any, list[float]]] = {}

    def record(self, scope: ASGIScope, root: Any, status: int, seconds: float) -> None:
        route = scope.get("route")
        method = scope["method"]
        found = self.known.get((id(route), method, status))
        if found is not None and found[0] is route:
            numbers = found[1]
            numbers[0] += seconds
            numbers[1 + bisect_left(self.bounds, seconds)] += 1  # le is inclusive
            return
        template = UNMATCHED if route is None else self.templates.template(
            route, root if root is not None else scope.get("app")
        )
        standard = method in _METHODS
        local = self.local
        if local is not None and standard:
            self.known[id(route), method, status] = (route, local.cell(method, template, status))
        self.observe(method if standard else OTHER_METHOD, template, status, seconds)
        shared = self.shared
        if shared is not None and perf_counter() - shared.last >= shared.interval:
            shared.sync()


class MetricsMiddleware:
    """Pure ASGI middleware: times each HTTP request and labels it with the route
    template the app matched (Starlette leaves the route in ``scope["route"]``)."""

    def __init__(self, app: ASGIApp, metrics: PrometheusMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self.timer = RequestTimer(metrics)

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            shared = self.metrics.shared
            if kind == "lifespan" and shared is not None:
                send = _sync_on_lifespan(send, shared)
            await self.app(scope, receive, send)
            return
        root = scope.get("app")  # a mounted app replaces it; keep the outermost
        started = perf_counter()
        status = 0
        finished = 0.0

        def sender(message: Message) -> Awaitable[None]:
            # Not a coroutine: it hands back the awaitable of the `send` it wraps.
            nonlocal status, finished
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body" and not message.get("more_body", False):
                finished = perf_counter()
            return send(message)

        try:
            await self.app(scope, receive, sender)
        except Exception:
            # ServerErrorMiddleware, outside us, answers 500 unless a response started.
            self.timer.record(scope, root, status or 500, (finished or perf_counter()) - started)
            raise
        if status:
            self.timer.record(scope, root, status, (finished or perf_counter()) - started)


def _sync_on_lifespan(send: Send, shared: _SharedRegistrations) -> Send:
    # The container has started (or closed) by the time the app reports it.
    async def sender(message: Message) -> None:
        if message["type"] in ("lifespan.startup.complete", "lifespan.shutdown.complete"):
            shared.sync()
        await send(message)

    return sender


def metrics_router(metrics: PrometheusMetrics, *, path: str = "/metrics") -> APIRouter:
    """``GET /metrics`` in Prometheus text format (left out of the OpenAPI schema)."""
    router = APIRouter()

    @router.get(path, include_in_schema=False)
    async def scrape() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router


def install_metrics(
    app: FastAPI,
    container: Container,
    *,
    path: str = "/metrics",
    buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    registry: CollectorRegistry | None = None,
) -> PrometheusMetrics:
    """Add ``MetricsMiddleware`` and ``GET path`` to ``app``; keep the metrics in
    ``app.state.tether_metrics``. Call it after ``TetherMiddleware`` is added, so the
    timing includes opening and closing the request's scope."""
    metrics = serve_metrics(app, container, path=path, buckets=buckets, registry=registry)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return metrics


def serve_metrics(
    app: FastAPI,
    container: Container,
    *,
    path: str = "/metrics",
    buckets: Sequence[float] = Histogram.DEFAULT_BUCKETS,
    registry: CollectorRegistry | None = None,
) -> PrometheusMetrics:
    """``install_metrics()`` without the middleware, for ``install()``: its
    ``TetherMiddleware`` gets the metrics and times the requests itself."""
    if getattr(app.state, "tether_metrics", None) is not None:
        raise RuntimeError("metrics are already installed for this app")
    metrics = PrometheusMetrics(container, buckets=buckets, registry=registry)
    app.state.tether_metrics = metrics
    app.include_router(metrics_router(metrics, path=path))
    return metrics
