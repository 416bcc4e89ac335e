"""The live status page: ``/status.json`` through a TestClient, the history's bounds, and
the page itself in headless Chromium against a real uvicorn on loopback."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.color import Color
from selenium.webdriver.support.wait import WebDriverWait

from tether import Container, HealthReport, HealthStatus, ResourceHealth, Scope, resource
from tether._status import LatencyHistory, status_router
from tether.fastapi import Inject, install

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
GREEN = Color.from_string("#1f9d55")  # --ok and --bad in the page's style
RED = Color.from_string("#d64545")


class Switch:
    """Flipped by a test to break the database's health check."""

    def __init__(self) -> None:
        self.broken = False
        self.checks = 0


@dataclasses.dataclass(frozen=True)
class PoolNumbers:
    in_use: int
    size: int
    checkouts_total: int


@resource
class Database:
    def __init__(self, switch: Switch) -> None:
        self.switch = switch
        self.open = False
        self.in_use = self.checkouts = 0

    def statistics(self) -> PoolNumbers:
        return PoolNumbers(in_use=self.in_use, size=5, checkouts_total=self.checkouts)

    async def initialize(self) -> None:
        self.open = True

    async def dispose(self) -> None:
        self.open = False

    async def health_check(self) -> bool:
        self.switch.checks += 1
        await asyncio.sleep(0.001 * (1 + self.switch.checks % 4))
        if self.switch.broken:
            raise ConnectionError("connection refused")
        return True


class Connection:
    def __init__(self, database: Database) -> None:
        self.database = database


def make_app(**options: Any) -> tuple[FastAPI, Switch]:
    switch = Switch()
    container = Container(health_timeout=2.0)
    container.bind(Switch, switch)
    container.bind(Database, eager=True)

    @container.provide(scope=Scope.REQUEST)
    async def connection(database: Database) -> AsyncIterator[Connection]:
        database.in_use += 1
        database.checkouts += 1
        try:
            yield Connection(database)  # checked out for the request, returned after it
        finally:
            database.in_use -= 1

    app = FastAPI()
    install(app, container, status_prefix=None)  # the router below, with test options
    app.include_router(status_router(container, **options))

    @app.get("/work")
    async def work(connection: Inject[Connection]) -> str:
        return "done"

    return app, switch


# -- /status.json -------------------------------------------------------------------------


def test_status_json_reports_health_metrics_and_history_per_resource() -> None:
    app, switch = make_app(sample_interval=None, min_check_interval=0.0)
    with TestClient(app) as client:
        assert client.get("/work").status_code == 200

        response = client.get("/status.json")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {
        "status", "checked_at", "closed", "history_seconds", "resources", "registrations",
    }
    assert body["status"] == "healthy"
    assert body["closed"] is False
    assert body["history_seconds"] == 600
    assert list(body["resources"]) == ["Database"]
    db = body["resources"]["Database"]
    assert set(db) == {
        "name", "scope", "critical", "healthy", "response_time", "error_count", "last_error",
        "checked_at", "uptime", "metrics", "statistics", "history",
    }
    assert db["healthy"] is True
    assert db["scope"] == "APP"
    assert db["critical"] is True
    assert 0 < db["response_time"] < 2
    assert db["error_count"] == 0
    assert db["last_error"] is None
    assert db["metrics"] == {"scope": "APP", "active": 1, "peak": 1, "created": 1, "failed": 0}
    assert db["statistics"] == {"in_use": 0, "size": 5, "checkouts_total": 1}
    assert db["history"] == [
        {"at": db["checked_at"], "response_time": db["response_time"], "healthy": True}
    ]
    assert body["registrations"]["Connection"] == {
        "scope": "REQUEST", "active": 0, "peak": 1, "created": 1, "failed": 0,
    }
    assert switch.checks == 1


def test_status_json_shows_a_broken_resource_with_its_error() -> None:
    app, switch = make_app(sample_interval=None, min_check_interval=0.0,
                           history_seconds=10, history_points=100_000)
    with TestClient(app) as client:
        client.get("/status.json")
        switch.broken = True

        response = client.get("/status.json")

    assert response.status_code == 200  # a feed for the page, not a probe: always 200
    body = response.json()
    assert body["status"] == "unhealthy"
    db = body["resources"]["Database"]
    assert db["healthy"] is False
    assert db["error_count"] == 1
    assert db["last_error"] == "ConnectionError: connection refused"
    assert [p["healthy"] for p in db["history"]] == [True, False]


def test_status_json_history_stays_bounded_however_often_it_is_asked() -> None:
    app, _ = make_app(sample_interval=None, min_check_interval=0.0,
                      history_seconds=0.2, history_points=4)
    with TestClient(app) as client:
        lengths = []
        for _ in range(20):
            body = client.get("/status.json").json()
            history = body["resources"]["Database"]["history"]
            lengths.append(len(history))
            assert all(body["checked_at"] - p["at"] <= 0.2 for p in history)
            time.sleep(0.02)

    assert 2 <= max(lengths) <= 4


def test_a_recent_report_is_reused_instead_of_checking_again() -> None:
    app, switch = make_app(sample_interval=None, min_check_interval=60.0)
    with TestClient(app) as client:
        first = client.get("/status.json").json()
        second = client.get("/status.json").json()

    assert switch.checks == 1
    assert second["checked_at"] == first["checked_at"]
    assert len(second["resources"]["Database"]["history"]) == 1


def test_the_sampler_fills_the_history_while_nobody_is_looking() -> None:
    app, switch = make_app(sample_interval=0.02, min_check_interval=60.0,
                           history_seconds=10, history_points=1000)
    with TestClient(app) as client:
        deadline = time.monotonic() + 5
        while switch.checks < 4 and time.monotonic() < deadline:
            time.sleep(0.01)

        history = client.get("/status.json").json()["resources"]["Database"]["history"]

    assert len(history) >= 3
    assert [p["at"] for p in history] == sorted(p["at"] for p in history)
    checks = switch.checks
    time.sleep(0.1)
    assert switch.checks == checks  # the sampler stopped with the app


# -- LatencyHistory -----------------------------------------------------------------------


def _report(at: float, response_time: float | None, healthy: bool | None) -> HealthReport:
    check = ResourceHealth(
        name="Database", scope=Scope.APP, critical=True, is_healthy=healthy,
        response_time=response_time, error_count=0, last_error=None, checked_at=at,
        uptime=None,
    )
    status = HealthStatus.UNHEALTHY if healthy is False else HealthStatus.HEALTHY
    return HealthReport(status=status, resources={"Database": check}, checked_at=at)


def test_history_keeps_at_most_its_points_and_nothing_older_than_its_window() -> None:
    history = LatencyHistory(seconds=60, points=30)

    for second in range(1000):
        history.record(_report(1000.0 + second, 0.001, True))

    samples = history.of("Database")
    assert len(samples) <= 30
    assert 1999.0 - 2 < samples[-1].at <= 1999.0  # a point stands for up to 2 s of checks
    assert samples[0].at >= 1999.0 - 60


def test_checks_closer_than_the_spacing_share_a_point_and_a_failure_wins() -> None:
    history = LatencyHistory(seconds=10, points=10)  # one point per second

    history.record(_report(100.0, 0.002, True))
    history.record(_report(100.3, 0.009, False))
    history.record(_report(100.6, 0.001, True))
    history.record(_report(101.2, 0.003, True))

    assert [(s.at, s.response_time, s.healthy) for s in history.of("Database")] == [
        (100.0, 0.009, False),
        (101.2, 0.003, True),
    ]


def test_a_report_seen_twice_is_recorded_once() -> None:
    history = LatencyHistory(seconds=10, points=1000)
    report = _report(100.0, 0.002, True)

    history.record(report)
    history.record(report)
    history.record(_report(99.0, 0.002, True))

    assert len(history) == 1


# -- the page -----------------------------------------------------------------------------


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def test_the_page_is_one_self_contained_document() -> None:
    app, _ = make_app(sample_interval=None)
    with TestClient(app) as client:
        response = client.get("/status")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    # Nothing to fetch from anywhere: no src/href to a URL; the one URL is the SVG namespace.
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"]
    assert not re.search(r"\b(src|href)=\"(?!data:)", page)
    assert 'data-source="status.json"' in page
    # The CSP lets exactly the inline script and style run.
    csp = response.headers["content-security-policy"]
    script = re.search(r"<script>(.*)</script>", page, re.S)
    style = re.search(r"<style>(.*)</style>", page, re.S)
    assert script is not None
    assert style is not None
    assert f"script-src '{_csp_hash(script.group(1))}'" in csp
    assert f"style-src '{_csp_hash(style.group(1))}'" in csp
    assert "connect-src 'self'" in csp


def test_a_custom_prefix_serves_both_and_the_page_finds_its_json() -> None:
    app, _ = make_app(prefix="/ops/state", sample_interval=None)
    with TestClient(app) as client:
        page = client.get("/ops/state")
        data = client.get("/ops/state.json")

    assert 'data-source="state.json"' in page.text
    assert data.json()["status"] == "healthy"


@pytest.mark.parametrize(
    "options",
    [
        {"prefix": "status"},
        {"prefix": "/status/"},
        {"history_seconds": 0},
        {"history_points": 1},
        {"sample_interval": 0},
        {"min_check_interval": -1},
        {"poll_interval": 0},
    ],
    ids=lambda o: next(iter(o)),
)
def test_bad_options_are_refused_with_their_name(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        status_router(Container(), **options)


# -- in a real browser --------------------------------------------------------------------


class LiveServer:
    """The app under a real uvicorn on 127.0.0.1 (a free port), in a background thread."""

    def __init__(self, app: FastAPI) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on",
                                ws="none", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)
        self.url = ""

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        assert host == "127.0.0.1"
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        assert not self.thread.is_alive(), "uvicorn did not stop"


CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-quic", "--no-first-run",
    "--disable-component-update", "--disable-sync", "--window-size=1280,720",
]


@pytest.fixture
def browser(
    tmp_path: Path, require_or_skip: Callable[[str], NoReturn]
) -> Iterator[webdriver.Chrome]:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        require_or_skip(
            f"headless Chromium is not installed (no {', '.join(missing)}): "
            "apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in CHROMIUM_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # With the driver's path given, Selenium Manager is never asked to download anything.
    service = Service(executable_path=str(CHROMEDRIVER))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _row(browser: WebDriver, name: str) -> Any:
    rows = browser.find_elements(By.CSS_SELECTOR, f'tr[data-resource="{name}"]')
    return rows[0] if rows else None


def _dot_color(row: Any) -> Color:
    return Color.from_string(
        row.find_element(By.CSS_SELECTOR, ".dot").value_of_css_property("background-color")
    )


def _until(browser: WebDriver, what: str, condition: Callable[[WebDriver], Any]) -> Any:
    try:
        return WebDriverWait(browser, timeout=10, poll_frequency=0.1).until(condition)
    except Exception:
        raise AssertionError(f"the page never showed {what}") from None


@pytest.mark.slow
def test_the_page_shows_a_resource_turn_red_when_it_breaks(
    browser: webdriver.Chrome, tmp_path: Path
) -> None:
    app, switch = make_app(sample_interval=None, min_check_interval=0.0, poll_interval=0.25,
                           history_seconds=5)
    with LiveServer(app) as server:
        with httpx.Client(base_url=server.url) as client:
            for _ in range(3):
                assert client.get("/work").status_code == 200

        browser.get(server.url + "/status")

        def healthy_with_history(b: WebDriver) -> bool:
            row = _row(b, "Database")
            return (row is not None and row.get_attribute("data-healthy") == "true"
                    and len(row.find_elements(By.CSS_SELECTOR, "svg.spark path.line")) == 1
                    and switch.checks >= 6)

        _until(browser, "Database green with a latency line", healthy_with_history)
        row = _row(browser, "Database")
        assert _dot_color(row) == GREEN
        assert browser.find_element(By.ID, "overall").text == "healthy"
        assert "0 / 5" in row.text  # in use / pool size, from statistics()
        assert browser.find_element(
            By.CSS_SELECTOR, 'tr[data-registration="Connection"]').text.split()[1:] == [
            "REQUEST", "0", "1", "3", "0"]

        switch.broken = True
        _until(browser, "Database red",
               lambda b: _row(b, "Database").get_attribute("data-healthy") == "false")

        row = _row(browser, "Database")
        assert _dot_color(row) == RED
        assert "unhealthy" in row.text
        assert "ConnectionError: connection refused" in row.text
        _until(browser, "the overall badge unhealthy",
               lambda b: b.find_element(By.ID, "overall").text == "unhealthy")
        assert row.find_elements(By.CSS_SELECTOR, "svg.spark circle.fail")

        shot = tmp_path / "status.png"
        assert browser.save_screenshot(str(shot))
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert len(data) > 5000

        # The page ran without a script error or a blocked (CSP) load.
        log = browser.get_log("browser")  # type: ignore[no-untyped-call]  # untyped upstream
        errors = [e for e in log if e["level"] == "SEVERE"]
        assert errors == []


def test_require_or_skip_skips_unless_everything_is_required(
    monkeypatch: pytest.MonkeyPatch, require_or_skip: Callable[[str], NoReturn]
) -> None:
    monkeypatch.delenv("TETHER_REQUIRE_ALL", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no browser"):
        require_or_skip("no browser")

    monkeypatch.setenv("TETHER_REQUIRE_ALL", "1")
    with pytest.raises(pytest.fail.Exception, match="no browser"):
        require_or_skip("no browser")
