"""The per-request path of ``install()``: one middleware opens the request's scope,
sets its id and times it for ``/metrics``; what that path hands over to the general
one (sessions, expired sessions) still behaves as before."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route

from tether import Container, Scope
from tether._prometheus import PrometheusMetrics, RequestTimer
from tether.fastapi import Inject, TetherMiddleware, install

Labels = dict[str, str]


class Session:
    """A REQUEST resource with a teardown."""


class Cart:
    """A SESSION resource with a teardown."""


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def make_container(log: list[str], clock: ManualClock | None = None) -> Container:
    container = Container(clock=clock, session_idle_timeout=60.0)

    @container.provide(scope=Scope.REQUEST)
    def session() -> Iterator[Session]:
        yield Session()
        log.append("session closed")

    @container.provide(scope=Scope.SESSION)
    def cart() -> Iterator[Cart]:
        yield Cart()
        log.append("cart disposed")

    return container


def make_app(log: list[str], **options: Any) -> FastAPI:
    app = FastAPI()
    install(app, make_container(log), **options)

    @app.get("/items/{item_id}")
    async def item(item_id: int, session: Inject[Session]) -> dict[str, int]:
        if item_id < 0:
            raise HTTPException(404, "no such item")
        return {"id": item_id}

    return app


def samples_of(text: str) -> list[tuple[str, Labels, float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(samples: list[tuple[str, Labels, float]], name: str, **labels: str) -> float:
    found = [v for n, ls, v in samples if n == name and ls == labels]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


ITEM = {"method": "GET", "route": "/items/{item_id}"}


def test_install_times_requests_in_its_one_middleware() -> None:
    log: list[str] = []
    app = make_app(log)
    with TestClient(app) as client:
        for n in range(3):
            response = client.get(f"/items/{n}")
            assert response.status_code == 200
            assert response.headers["x-request-id"]
        samples = samples_of(client.get("/metrics").text)
    middleware: list[object] = [m.cls for m in app.user_middleware]
    assert middleware == [TetherMiddleware]
    assert value(samples, "http_requests_total", **ITEM, status="200") == 3
    assert value(samples, "http_request_duration_seconds_count", **ITEM) == 3
    assert log == ["session closed"] * 3


def test_requests_that_may_carry_a_session_are_timed_too() -> None:
    log: list[str] = []
    with TestClient(make_app(log, session_header="X-Session")) as client:
        assert client.get("/items/1", headers={"X-Session": "s1"}).status_code == 200
        assert client.get("/items/2").status_code == 200
        samples = samples_of(client.get("/metrics").text)
    assert value(samples, "http_requests_total", **ITEM, status="200") == 2


def test_latency_of_a_route_adds_up_its_statuses() -> None:
    with TestClient(make_app([])) as client:
        for n in (1, 2, -1, 3, -2):
            client.get(f"/items/{n}")
        samples = samples_of(client.get("/metrics").text)
    assert value(samples, "http_requests_total", **ITEM, status="200") == 3
    assert value(samples, "http_requests_total", **ITEM, status="404") == 2
    assert value(samples, "http_request_duration_seconds_count", **ITEM) == 5
    assert value(samples, "http_request_duration_seconds_bucket", **ITEM, le="+Inf") == 5


def test_methods_outside_the_standard_ones_leave_no_trace_in_the_timer() -> None:
    async def endpoint() -> None:
        return None

    route = Route("/x", endpoint)
    metrics = PrometheusMetrics(make_container([]))
    timer = RequestTimer(metrics)
    for n in range(50):
        timer.record({"route": route, "method": f"VERB{n}"}, None, 405, 0.001)
    timer.record({"route": route, "method": "GET"}, None, 200, 0.001)
    samples = samples_of(metrics.render().decode())
    assert len(timer.known) == 1  # GET's; the 50 verbs share OTHER, never cached
    assert value(samples, "http_requests_total", method="OTHER", route="/x", status="405") == 50
    assert value(samples, "http_requests_total", method="GET", route="/x", status="200") == 1


@pytest.mark.anyio
async def test_a_request_refused_while_draining_is_counted_as_a_503() -> None:
    release = asyncio.Event()
    started = asyncio.Event()
    app = make_app([], drain_timeout=5)

    @app.get("/slow")
    async def slow() -> str:
        started.set()
        await release.wait()
        return "done"

    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        slow_request = asyncio.create_task(client.get("/slow"))
        await started.wait()
        shutdown = asyncio.create_task(lifespan.__aexit__(None, None, None))
        for _ in range(10):  # let the shutdown reach the drain
            await asyncio.sleep(0)
        refused = await client.get("/items/1")
        release.set()
        assert (await slow_request).status_code == 200
        await shutdown
    assert refused.status_code == 503
    assert refused.headers["x-request-id"] == refused.json()["request_id"]
    samples = samples_of(app.state.tether_metrics.render().decode())
    assert value(samples, "http_requests_total",
                 method="GET", route="<unmatched>", status="503") == 1
    assert value(samples, "http_requests_total", method="GET", route="/slow", status="200") == 1


@pytest.mark.anyio
async def test_a_plain_request_first_disposes_the_sessions_that_expired() -> None:
    log: list[str] = []
    clock = ManualClock()
    container = make_container(log, clock)
    app = FastAPI()
    install(app, container)

    @app.get("/ping")
    async def ping(session: Inject[Session]) -> str:
        log.append("ping")
        return "pong"

    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    try:
        async with container.scope(Scope.SESSION, session_id="s") as session:
            await session.aget(Cart)
        clock.now += 120  # past session_idle_timeout
        # The id comes back: its old session is expired, to be disposed on the next entry.
        container.scope(Scope.SESSION, session_id="s")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.get("/ping")).status_code == 200
        assert log == ["cart disposed", "ping", "session closed"]
    finally:
        await lifespan.__aexit__(None, None, None)


# -- request ids off -------------------------------------------------------------------


def test_request_ids_can_be_turned_off() -> None:
    from tether.fastapi import REQUEST_ID

    log: list[str] = []
    app = make_app(log, request_id_header=None, metrics_path=None)
    seen: list[str | None] = []

    @app.get("/seen")
    async def current(session: Inject[Session]) -> dict[str, bool]:
        seen.append(REQUEST_ID.get())
        return {"ok": True}

    with TestClient(app) as client:
        plain = client.get("/seen", headers={"X-Request-ID": "abc-123"})
        missing = client.get("/items/-1")
        timed = client.get("/items/1")

    assert plain.status_code == 200
    assert "x-request-id" not in plain.headers  # neither echoed nor made up
    assert seen == [None]
    assert missing.status_code == 404
    assert missing.json() == {"error": "http_error", "message": "no such item",
                              "request_id": None}
    assert "x-request-id" not in missing.headers
    assert timed.status_code == 200
    assert log == ["session closed"] * 2  # the scopes were there (the 404 closed with its error)


def test_request_ids_off_still_times_requests_for_metrics() -> None:
    with TestClient(make_app([], request_id_header=None)) as client:
        for n in (1, 2, -1):
            assert "x-request-id" not in client.get(f"/items/{n}").headers
        samples = samples_of(client.get("/metrics").text)
    assert value(samples, "http_requests_total", **ITEM, status="200") == 2
    assert value(samples, "http_requests_total", **ITEM, status="404") == 1


def test_request_ids_off_on_the_general_path_too() -> None:
    log: list[str] = []
    with TestClient(make_app(log, request_id_header=None, session_header="X-Session")) as client:
        response = client.get("/items/1", headers={"X-Session": "s1"})
    assert response.status_code == 200
    assert "x-request-id" not in response.headers
    assert log == ["session closed"]
