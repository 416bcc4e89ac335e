"""``await container.health()``: one uniform report for every registration with a check."""

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from tether import Container, HealthReport, HealthStatus, ResourceHealth, Scope, resource

pytestmark = pytest.mark.anyio


class Database:
    pass


class Cache:
    pass


class Search:
    pass


def _ok(instance: object) -> bool:
    return True


def _down(instance: object) -> bool:
    return False


def _container(checks: dict[type, tuple[Callable[[Any], Any], bool]], **options: Any) -> Container:
    container = Container(**options)
    for tp, (check, critical) in checks.items():
        container.bind(tp, health_check=check, critical=critical)
    return container


async def _build(container: Container, *types: type) -> None:
    for tp in types:
        await container.aget(tp)


# -- overall status -----------------------------------------------------------------


async def test_report_is_healthy_when_every_check_passes() -> None:
    container = _container({Database: (_ok, True), Cache: (_ok, False)})
    await _build(container, Database, Cache)

    report = await container.health()

    assert isinstance(report, HealthReport)
    assert report.status is HealthStatus.HEALTHY
    assert report.is_healthy
    assert set(report.resources) == {"Database", "Cache"}
    assert all(r.is_healthy for r in report.resources.values())


async def test_report_is_degraded_when_only_non_critical_checks_fail() -> None:
    container = _container({Database: (_ok, True), Cache: (_down, False)})
    await _build(container, Database, Cache)

    report = await container.health()

    assert report.status is HealthStatus.DEGRADED
    assert not report.is_healthy
    assert report.resources["Cache"].is_healthy is False
    assert report.resources["Cache"].critical is False
    assert report.resources["Database"].is_healthy is True


async def test_report_is_unhealthy_when_a_critical_check_fails() -> None:
    container = _container({Database: (_down, True), Cache: (_ok, False)})
    await _build(container, Database, Cache)

    report = await container.health()

    assert report.status is HealthStatus.UNHEALTHY
    assert report.resources["Database"].critical is True


async def test_report_is_unhealthy_when_critical_and_non_critical_checks_fail() -> None:
    container = _container({Cache: (_down, False), Database: (_down, True)})
    await _build(container, Cache, Database)

    report = await container.health()

    assert report.status is HealthStatus.UNHEALTHY
    assert len(report.resources) == 2


async def test_report_with_no_checks_is_healthy() -> None:
    container = Container()
    container.bind(Database)
    await container.aget(Database)

    report = await container.health()

    assert report.status is HealthStatus.HEALTHY
    assert dict(report.resources) == {}


async def test_registrations_are_critical_by_default() -> None:
    container = Container()
    container.bind(Database, health_check=_down)
    await container.aget(Database)

    report = await container.health()

    assert report.resources["Database"].critical is True
    assert report.status is HealthStatus.UNHEALTHY


# -- what runs the check ------------------------------------------------------------


async def test_health_check_receives_the_instance() -> None:
    seen: list[object] = []

    def check(instance: object) -> bool:
        seen.append(instance)
        return True

    container = _container({Database: (check, True)})
    db = await container.aget(Database)

    await container.health()

    assert seen == [db]


async def test_async_health_check_is_awaited() -> None:
    async def check(instance: object) -> bool:
        await anyio.lowlevel.checkpoint()
        return False

    container = _container({Database: (check, True)})
    await _build(container, Database)

    report = await container.health()

    assert report.resources["Database"].is_healthy is False


async def test_check_returning_none_counts_as_healthy() -> None:
    def check(instance: object) -> None:
        return None

    container = _container({Database: (check, True)})
    await _build(container, Database)

    report = await container.health()

    assert report.resources["Database"].is_healthy is True


@resource
class SyncPool:
    def initialize(self) -> None:
        self.up = True

    def dispose(self) -> None:
        self.up = False

    def health_check(self) -> bool:
        return self.up


@resource
class AsyncPool:
    async def initialize(self) -> None:
        self.up = True

    async def dispose(self) -> None:
        self.up = False

    async def health_check(self) -> bool:
        await anyio.lowlevel.checkpoint()
        return self.up


@pytest.mark.parametrize("pool", [SyncPool, AsyncPool])
async def test_resource_health_check_method_is_used(pool: type[Any]) -> None:
    container = Container()
    container.bind(pool)
    instance = await container.aget(pool)

    assert (await container.health()).resources[pool.__qualname__].is_healthy is True
    instance.up = False
    assert (await container.health()).resources[pool.__qualname__].is_healthy is False


async def test_resource_instance_health_check_method_is_used() -> None:
    container = Container()
    pool = SyncPool()
    container.bind(SyncPool, pool)
    await container.aget(SyncPool)
    pool.up = False

    report = await container.health()

    assert report.resources["SyncPool"].is_healthy is False


async def test_resource_without_health_check_is_not_in_the_report() -> None:
    @resource
    class Plain:
        def initialize(self) -> None:
            pass

    container = Container()
    container.bind(Plain)
    await container.aget(Plain)

    assert "Plain" not in (await container.health()).resources


class SharedPool:
    pass


async def test_singleton_resource_is_in_the_report() -> None:
    container = Container()
    container.bind(SharedPool, scope=Scope.SINGLETON, health_check=_ok)
    async with container:
        await container.aget(SharedPool)
        report = await container.health()

    assert report.resources["SharedPool"].is_healthy is True
    assert report.resources["SharedPool"].scope is Scope.SINGLETON


async def test_request_scoped_registrations_are_not_checked() -> None:
    container = Container()
    container.bind(Database, scope=Scope.REQUEST, health_check=_down)

    report = await container.health()

    assert "Database" not in report.resources
    assert report.status is HealthStatus.HEALTHY


async def test_named_registration_is_reported_by_its_name() -> None:
    container = Container()
    container.bind(Database, name="replica", health_check=_ok)
    await container.aget(Database, name="replica")

    report = await container.health()

    assert report.resources["Database[replica]"].is_healthy is True


# -- lazy and failed ----------------------------------------------------------------


async def test_lazy_resource_not_built_yet_is_reported_unknown() -> None:
    called: list[object] = []

    def check(instance: object) -> bool:
        called.append(instance)
        return True

    container = _container({Database: (check, True)})

    report = await container.health()

    db = report.resources["Database"]
    assert db.is_healthy is None
    assert db.response_time is None
    assert db.uptime is None
    assert report.status is HealthStatus.HEALTHY
    assert called == []


async def test_health_does_not_build_a_lazy_resource() -> None:
    built: list[str] = []
    container = Container()

    @container.provide(health_check=_ok)
    def database() -> Database:
        built.append("db")
        return Database()

    await container.health()

    assert built == []


async def test_resource_whose_build_failed_is_unhealthy() -> None:
    container = Container()

    @container.provide(health_check=_ok)
    def database() -> Database:
        raise OSError("connection refused")

    with pytest.raises(Exception, match="connection refused"):
        await container.aget(Database)

    report = await container.health()

    assert report.resources["Database"].is_healthy is False
    assert report.resources["Database"].error_count >= 1
    assert report.status is HealthStatus.UNHEALTHY


async def test_resource_whose_build_failed_reports_the_error() -> None:
    container = Container()

    @container.provide(health_check=_ok)
    def database() -> Database:
        raise OSError("connection refused")

    with pytest.raises(Exception, match="connection refused"):
        await container.aget(Database)

    report = await container.health()

    assert report.resources["Database"].last_error is not None
    assert "OSError: connection refused" in report.resources["Database"].last_error


# -- per-resource fields ------------------------------------------------------------


async def test_resource_health_carries_timing_and_uptime() -> None:
    container = _container({Database: (_ok, True)})
    await _build(container, Database)
    before = time.time()

    report = await container.health()

    db = report.resources["Database"]
    assert isinstance(db, ResourceHealth)
    assert db.name == "Database"
    assert db.scope is Scope.APP
    assert db.response_time is not None
    assert db.response_time >= 0
    assert before - 1 <= db.checked_at <= time.time() + 1
    assert db.uptime is not None
    assert db.uptime >= 0
    assert db.error_count == 0
    assert db.last_error is None
    assert before - 1 <= report.checked_at <= time.time() + 1


async def test_uptime_grows_between_reports() -> None:
    container = _container({Database: (_ok, True)})
    await _build(container, Database)

    first = (await container.health()).resources["Database"].uptime
    await anyio.sleep(0.01)
    second = (await container.health()).resources["Database"].uptime

    assert first is not None
    assert second is not None
    assert second > first


async def test_failing_check_counts_errors_across_reports() -> None:
    container = _container({Database: (_down, True)})
    await _build(container, Database)

    first = await container.health()
    second = await container.health()

    assert first.resources["Database"].error_count == 1
    assert second.resources["Database"].error_count == 2


async def test_check_returning_false_is_explained_in_last_error() -> None:
    container = _container({Database: (_down, True)})
    await _build(container, Database)

    report = await container.health()

    assert report.resources["Database"].last_error == "check returned False"


async def test_check_raising_is_unhealthy_with_its_error() -> None:
    def check(instance: object) -> bool:
        raise ConnectionError("redis is gone")

    container = _container({Database: (check, True)})
    await _build(container, Database)

    report = await container.health()

    db = report.resources["Database"]
    assert db.is_healthy is False
    assert db.last_error == "ConnectionError: redis is gone"
    assert db.error_count == 1


async def test_last_error_holds_type_and_message_only() -> None:
    def check(instance: object) -> bool:
        password = "hunter2"
        try:
            raise KeyError(f"password={password}")
        except KeyError as inner:
            raise RuntimeError("authentication failed") from inner

    container = _container({Database: (check, True)})
    await _build(container, Database)

    report = await container.health()

    last_error = report.resources["Database"].last_error
    assert last_error == "RuntimeError: authentication failed"
    assert "hunter2" not in json.dumps(report.to_dict())


async def test_error_without_message_is_reported_by_type() -> None:
    def check(instance: object) -> bool:
        raise ConnectionResetError()

    container = _container({Database: (check, True)})
    await _build(container, Database)

    report = await container.health()

    assert report.resources["Database"].last_error == "ConnectionResetError"


async def test_recovered_check_is_healthy_again() -> None:
    state = {"up": False}
    container = _container({Database: (lambda _: state["up"], True)})
    await _build(container, Database)

    assert (await container.health()).status is HealthStatus.UNHEALTHY
    state["up"] = True
    report = await container.health()

    assert report.status is HealthStatus.HEALTHY
    assert report.resources["Database"].is_healthy is True


async def test_report_and_resource_health_are_frozen() -> None:
    container = _container({Database: (_ok, True)})
    await _build(container, Database)

    report = await container.health()

    with pytest.raises(dataclasses.FrozenInstanceError):
        report.status = HealthStatus.UNHEALTHY  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.resources["Database"].is_healthy = False  # type: ignore[misc]


async def test_report_to_dict_is_json_ready() -> None:
    container = _container({Database: (_ok, True), Cache: (_down, False)})
    await _build(container, Database, Cache)

    data = (await container.health()).to_dict()

    decoded = json.loads(json.dumps(data))
    assert decoded["status"] == "degraded"
    assert decoded["resources"]["Cache"]["healthy"] is False
    assert decoded["resources"]["Cache"]["critical"] is False
    assert decoded["resources"]["Database"]["scope"] == "APP"


# -- concurrency and timeouts -------------------------------------------------------


async def test_checks_run_concurrently() -> None:
    # The first check can only pass while the second one runs.
    second_ran = asyncio.Event()

    async def first(instance: object) -> bool:
        await second_ran.wait()
        return True

    async def second(instance: object) -> bool:
        second_ran.set()
        return True

    container = _container({Database: (first, True), Cache: (second, True)}, health_timeout=5)
    await _build(container, Database, Cache)

    with anyio.fail_after(4):
        report = await container.health()

    assert report.status is HealthStatus.HEALTHY


async def test_hanging_check_is_cut_off_by_health_timeout() -> None:
    async def hang(instance: object) -> bool:
        await asyncio.Event().wait()
        return True

    container = _container({Database: (hang, True)}, health_timeout=0.05)
    await _build(container, Database)

    with anyio.fail_after(5):
        report = await container.health()

    db = report.resources["Database"]
    assert db.is_healthy is False
    assert db.last_error is not None
    assert "timed out after 0.05s" in db.last_error
    assert report.status is HealthStatus.UNHEALTHY


async def test_hanging_check_does_not_hold_up_the_others() -> None:
    async def hang(instance: object) -> bool:
        await asyncio.Event().wait()
        return True

    container = _container(
        {Database: (_ok, True), Cache: (hang, False), Search: (_ok, True)}, health_timeout=0.05
    )
    await _build(container, Database, Cache, Search)

    with anyio.fail_after(5):
        report = await container.health()

    assert report.status is HealthStatus.DEGRADED
    assert report.resources["Database"].is_healthy is True
    assert report.resources["Search"].is_healthy is True


def test_health_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"health_timeout must be a positive number"):
        Container(health_timeout=0)


# -- the monitor --------------------------------------------------------------------


async def test_last_health_is_none_before_any_check() -> None:
    container = _container({Database: (_ok, True)})

    assert container.last_health is None


async def test_last_health_is_the_latest_report() -> None:
    container = _container({Database: (_ok, True)})

    report = await container.health()

    assert container.last_health is report


class _Counting:
    """A health check that lets a test wait for its n-th run."""

    def __init__(self) -> None:
        self.calls = 0
        self._waiting: list[tuple[int, anyio.Event]] = []

    def __call__(self, instance: object) -> bool:
        self.calls += 1
        for n, event in self._waiting:
            if self.calls >= n:
                event.set()
        return True

    async def reach(self, n: int) -> None:
        event = anyio.Event()
        self._waiting.append((n, event))
        if self.calls >= n:
            event.set()
        with anyio.fail_after(5):
            await event.wait()


async def test_health_interval_monitor_keeps_last_health_fresh() -> None:
    # When check n+1 runs, the monitor has stored report n.
    check = _Counting()
    container = Container(health_interval=0.01)
    container.bind(Database, health_check=check, eager=True)
    async with container:
        await check.reach(2)
        first = container.last_health
        await check.reach(4)
        latest = container.last_health

    assert first is not None
    assert latest is not None
    assert latest is not first
    assert latest.checked_at >= first.checked_at
    assert latest.resources["Database"].is_healthy is True


async def test_health_monitor_stops_when_the_container_closes() -> None:
    check = _Counting()
    container = Container(health_interval=0.01)
    container.bind(Database, health_check=check, eager=True)
    async with container:
        await check.reach(2)
    final, calls = container.last_health, check.calls

    await anyio.sleep(0.05)

    assert container.last_health is final
    assert check.calls == calls


async def test_no_monitor_runs_without_health_interval() -> None:
    container = _container({Database: (_ok, True)})
    async with container:
        await anyio.sleep(0.02)
        assert container.last_health is None


@pytest.mark.parametrize("interval", [0, -1.0])
def test_health_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(ValueError, match=r"health_interval must be positive"):
        Container(health_interval=interval)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://admin:secret@db:5432/prod", "postgresql://***@db:5432/prod"),
        ("redis://:pw@cache:6379/0", "redis://***@cache:6379/0"),
        ("redis://user:p@ss@cache/0 down", "redis://***@cache/0 down"),
        ("http://example.org/a@b", "http://example.org/a@b"),
        ("no url here", "no url here"),
    ],
)
def test_url_credentials_are_hidden_in_reported_errors(text: str, shown: str) -> None:
    from tether._health import redact

    assert redact(text) == shown
