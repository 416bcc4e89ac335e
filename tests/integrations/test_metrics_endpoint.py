"""``/metrics``: Prometheus text with tether's per-registration metrics and request
latency by route template, one registry per app, and multiprocess mode."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import APIRouter, BackgroundTasks, FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.multiprocess import mark_process_dead
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from tether import Container, Scope
from tether._prometheus import PrometheusMetrics, install_metrics
from tether.fastapi import Inject, install

ROOT = Path(__file__).resolve().parents[2]

Labels = dict[str, str]


class Pool:
    """An APP resource with a teardown, so it is counted while alive."""


class Session:
    """A REQUEST resource, one per request that asks for it."""


def make_container() -> Container:
    container = Container()

    @container.provide(eager=True)
    def pool() -> Iterator[Pool]:
        yield Pool()

    @container.provide(scope=Scope.REQUEST)
    def session(pool: Pool) -> Iterator[Session]:
        yield Session()

    return container


def make_app(container: Container | None = None) -> FastAPI:
    container = container or make_container()
    app = FastAPI()
    install(app, container)

    @app.get("/users/{user_id}")
    async def get_user(user_id: int, session: Inject[Session]) -> dict[str, int]:
        return {"id": user_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/later")
    async def later(tasks: BackgroundTasks) -> dict[str, bool]:
        tasks.add_task(time.sleep, 0.3)
        return {"queued": True}

    return app


def scrape(client: TestClient) -> list[tuple[str, Labels, float]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def parse(text: str) -> list[tuple[str, Labels, float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def value(samples: list[tuple[str, Labels, float]], name: str, **labels: str) -> float:
    found = [v for n, ls, v in samples if n == name and ls == labels]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def series(samples: list[tuple[str, Labels, float]], name: str) -> set[tuple[str, ...]]:
    """The label sets of ``name``, as sorted ``key=value`` tuples."""
    return {tuple(sorted(f"{k}={v}" for k, v in ls.items())) for n, ls, _ in samples if n == name}


# -- the text and tether's registrations ----------------------------------------------


def test_metrics_text_parses_and_lists_every_registration() -> None:
    with TestClient(make_app()) as client:
        for user_id in range(3):
            client.get(f"/users/{user_id}")
        samples = scrape(client)
    pool = {"registration": "Pool", "scope": "app"}
    session = {"registration": "Session", "scope": "request"}
    assert value(samples, "tether_registration_created_total", **pool) == 1
    assert value(samples, "tether_registration_active", **pool) == 1
    assert value(samples, "tether_registration_created_total", **session) == 3
    assert value(samples, "tether_registration_disposed_total", **session) == 3
    assert value(samples, "tether_registration_active", **session) == 0
    assert value(samples, "tether_registration_peak", **session) == 1
    assert value(samples, "tether_registration_failed_total", **session) == 0
    assert value(samples, "tether_registration_dispose_failed_total", **session) == 0
    assert value(samples, "tether_registration_init_seconds_total", **session) >= 0


def test_registration_metrics_are_read_at_scrape_time() -> None:
    with TestClient(make_app()) as client:
        client.get("/users/1")
        before = scrape(client)
        client.get("/users/2")
        after = scrape(client)
    session = {"registration": "Session", "scope": "request"}
    assert value(before, "tether_registration_created_total", **session) == 1
    assert value(after, "tether_registration_created_total", **session) == 2


@dataclasses.dataclass(frozen=True)
class ClientNumbers:
    requests_total: int
    in_use: int
    failures_by_kind: dict[str, int]
    state: str
    ratio: float


class Client:
    """An APP resource that reports statistics(), as the batteries do."""

    def statistics(self) -> ClientNumbers:
        return ClientNumbers(requests_total=5, in_use=2,
                             failures_by_kind={"PoolTimeout": 1, "ResourceTimeout": 3},
                             state="closed", ratio=0.5)


def test_resource_statistics_become_counters_gauges_and_kinds() -> None:
    container = make_container()
    container.bind(Client, name="api", eager=True)
    with TestClient(make_app(container)) as client:
        samples = scrape(client)
    resource = {"resource": "Client[api]"}
    assert value(samples, "tether_resource_requests_total", **resource) == 5
    assert value(samples, "tether_resource_in_use", **resource) == 2
    assert value(samples, "tether_resource_ratio", **resource) == 0.5
    assert value(samples, "tether_resource_failures_by_kind", kind="PoolTimeout",
                 **resource) == 1
    assert value(samples, "tether_resource_failures_by_kind", kind="ResourceTimeout",
                 **resource) == 3
    assert not [n for n, _, _ in samples if n == "tether_resource_state"]


# -- request metrics: bounded labels --------------------------------------------------


def test_request_latency_is_labelled_by_route_template() -> None:
    with TestClient(make_app()) as client:
        for user_id in range(10):
            assert client.get(f"/users/{user_id}").status_code == 200
        samples = scrape(client)
    assert series(samples, "http_request_duration_seconds_count") == {
        ("method=GET", "route=/users/{user_id}")
    }
    assert value(samples, "http_request_duration_seconds_count",
                 method="GET", route="/users/{user_id}") == 10
    assert value(samples, "http_requests_total",
                 method="GET", route="/users/{user_id}", status="200") == 10
    assert not [ls for _, ls, _ in samples if ls.get("route", "").startswith("/users/") and
                ls["route"] != "/users/{user_id}"]


def test_unmatched_paths_share_one_label() -> None:
    with TestClient(make_app()) as client:
        assert client.get("/nowhere/0").status_code == 404
        first = series(scrape(client), "http_requests_total")
        for n in range(1, 10):
            assert client.get(f"/nowhere/{n}").status_code == 404
        samples = scrape(client)
    assert first == {("method=GET", "route=<unmatched>", "status=404")}
    assert series(samples, "http_requests_total") == first | {
        ("method=GET", "route=/metrics", "status=200")  # the first scrape
    }
    assert value(samples, "http_requests_total",
                 method="GET", route="<unmatched>", status="404") == 10


def test_methods_outside_the_standard_ones_share_one_label() -> None:
    with TestClient(make_app()) as client:
        for method in ("BREW", "WHEN", "PROPFIND"):
            client.request(method, "/users/1")
        samples = scrape(client)
    assert value(samples, "http_requests_total",
                 method="OTHER", route="/users/{user_id}", status="405") == 3


def test_routes_under_a_prefix_or_a_mount_keep_their_whole_template() -> None:
    router = APIRouter(prefix="/api")

    @router.get("/items/{item_id}")
    async def item(item_id: str) -> str:
        return item_id

    async def thing(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.path_params["thing_id"])

    app = make_app()
    app.include_router(router)
    inner = [Mount("/{version:int}", routes=[Route("/t/{thing_id}", thing)])]
    app.mount("/sub", Starlette(routes=inner))
    with TestClient(app) as client:
        for n in range(3):
            assert client.get(f"/api/items/{n}").status_code == 200
            assert client.get(f"/sub/{n}/t/{n}").text == str(n)
        samples = scrape(client)
    assert value(samples, "http_requests_total",
                 method="GET", route="/api/items/{item_id}", status="200") == 3
    assert value(samples, "http_requests_total",
                 method="GET", route="/sub/{version}/t/{thing_id}", status="200") == 3


def test_an_endpoint_that_raises_counts_as_500() -> None:
    with TestClient(make_app(), raise_server_exceptions=False) as client:
        assert client.get("/boom").status_code == 500
        samples = scrape(client)
    assert value(samples, "http_requests_total", method="GET", route="/boom", status="500") == 1


def test_latency_stops_at_the_last_body_chunk_not_after_background_tasks() -> None:
    with TestClient(make_app()) as client:
        client.get("/later")
        samples = scrape(client)
    assert value(samples, "http_request_duration_seconds_count", method="GET", route="/later") == 1
    assert value(samples, "http_request_duration_seconds_sum", method="GET", route="/later") < 0.3


def test_latency_buckets_match_prometheus_client_histograms() -> None:
    from prometheus_client import CollectorRegistry, Histogram

    durations = [0.0, 0.005, 0.0051, 0.02, 0.1, 0.75, 3.0, 10.0, 42.0]
    buckets = Histogram.DEFAULT_BUCKETS
    reference = CollectorRegistry()
    histogram = Histogram("http_request_duration_seconds", "-", ("method", "route"),
                          registry=reference, buckets=buckets)
    ours = PrometheusMetrics(make_container(), buckets=buckets)
    for seconds in durations:
        histogram.labels("GET", "/x").observe(seconds)
        ours.observe("GET", "/x", 200, seconds)

    def buckets_of(text: str) -> list[tuple[str, Labels, float]]:
        return [s for s in parse(text) if s[0].startswith("http_request_duration_seconds_")
                and not s[0].endswith("_created")]

    assert buckets_of(ours.render().decode()) == buckets_of(
        generate_latest(reference).decode()
    )


def test_buckets_must_increase() -> None:
    with pytest.raises(ValueError, match="increasing"):
        PrometheusMetrics(make_container(), buckets=[1.0, 0.5])


# -- registries -------------------------------------------------------------------------


def test_each_app_has_a_registry_of_its_own() -> None:
    first, second = make_app(), make_app()
    with TestClient(first) as one, TestClient(second) as two:
        one.get("/users/1")
        one.get("/users/2")
        two.get("/users/3")
        from_first, from_second = scrape(one), scrape(two)
    route = {"method": "GET", "route": "/users/{user_id}", "status": "200"}
    assert value(from_first, "http_requests_total", **route) == 2
    assert value(from_second, "http_requests_total", **route) == 1
    assert REGISTRY.get_sample_value("http_requests_total", route) is None


def test_a_custom_registry_is_served() -> None:
    from prometheus_client import CollectorRegistry, Gauge

    registry = CollectorRegistry()
    Gauge("my_queue_depth", "Jobs waiting.", registry=registry).set(7)
    container = make_container()
    app = FastAPI()
    install_metrics(app, container, registry=registry)
    with TestClient(app) as client:
        assert value(scrape(client), "my_queue_depth") == 7


def test_installing_metrics_twice_is_refused() -> None:
    app = make_app()
    with pytest.raises(RuntimeError, match="already installed"):
        install_metrics(app, make_container())


def test_a_multiprocess_dir_set_after_import_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(RuntimeError, match="set it before the process starts"):
        PrometheusMetrics(make_container())


def test_importing_tether_does_not_import_prometheus_client() -> None:
    code = "import sys, tether, tether.fastapi; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_without_prometheus_client_the_error_names_the_extra() -> None:
    code = ("import sys; sys.modules['prometheus_client'] = None\n"
            "try:\n    import tether._prometheus\n"
            "except ImportError as error:\n    print(error)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == (
        "tether's /metrics needs prometheus-client, part of the 'fastapi' extra: "
        "pip install 'tether[fastapi]'"
    )


# -- several worker processes ---------------------------------------------------------


def worker(role: str, count: int) -> None:
    """Run in a subprocess with PROMETHEUS_MULTIPROC_DIR set (see ``run_worker``)."""
    with TestClient(make_app()) as client:
        if role == "scrape":
            sys.stdout.write(client.get("/metrics").text)
            return
        for user_id in range(count):
            assert client.get(f"/users/{user_id}").status_code == 200
        assert client.get("/missing").status_code == 404
        if role == "crash":  # no shutdown: the live gauges keep this process's last values
            sys.stdout.write(str(os.getpid()))
            sys.stdout.flush()
            os._exit(0)


def start_worker(folder: Path, role: str, count: int = 0) -> subprocess.Popen[str]:
    code = ("import sys; from tests.integrations.test_metrics_endpoint import worker; "
            "worker(sys.argv[1], int(sys.argv[2]))")
    return subprocess.Popen(
        [sys.executable, "-W", "error", "-c", code, role, str(count)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)},
    )


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return out


def run_worker(folder: Path, role: str, count: int = 0) -> str:
    return finish(start_worker(folder, role, count))


@pytest.mark.slow
def test_multiprocess_mode_adds_up_every_worker(tmp_path: Path) -> None:
    workers = [start_worker(tmp_path, "serve", 3), start_worker(tmp_path, "serve", 4)]
    for process in workers:
        finish(process)
    samples = parse(run_worker(tmp_path, "scrape"))
    users = {"method": "GET", "route": "/users/{user_id}"}
    assert value(samples, "http_requests_total", **users, status="200") == 7
    assert value(samples, "http_requests_total",
                 method="GET", route="<unmatched>", status="404") == 2
    assert value(samples, "http_request_duration_seconds_count", **users) == 7
    assert series(samples, "http_request_duration_seconds_count") == {
        ("method=GET", "route=/users/{user_id}"), ("method=GET", "route=<unmatched>")
    }
    # Counters: every worker that ran, the scraping one included.
    session = {"registration": "Session", "scope": "request"}
    pool = {"registration": "Pool", "scope": "app"}
    assert value(samples, "tether_registration_created_total", **session) == 7
    assert value(samples, "tether_registration_disposed_total", **session) == 7
    assert value(samples, "tether_registration_created_total", **pool) == 3
    assert value(samples, "tether_registration_disposed_total", **pool) == 2
    # Gauges: the two workers shut down cleanly, so only the scraper's pool is alive.
    assert value(samples, "tether_registration_active", **pool) == 1
    assert value(samples, "tether_registration_peak", **pool) == 1


@pytest.mark.slow
def test_multiprocess_a_dead_worker_leaves_its_gauges_until_marked_dead(
    tmp_path: Path,
) -> None:
    pid = int(run_worker(tmp_path, "crash", 2))
    pool = {"registration": "Pool", "scope": "app"}
    samples = parse(run_worker(tmp_path, "scrape"))
    assert value(samples, "tether_registration_active", **pool) == 2
    mark_process_dead(pid, str(tmp_path))  # type: ignore[no-untyped-call]
    samples = parse(run_worker(tmp_path, "scrape"))
    assert value(samples, "tether_registration_active", **pool) == 1
    # Counters keep what the dead worker wrote: its pool was built, never disposed.
    assert value(samples, "tether_registration_created_total", **pool) == 3
    assert value(samples, "tether_registration_disposed_total", **pool) == 1
