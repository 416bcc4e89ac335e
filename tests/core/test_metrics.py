"""``container.metrics()`` snapshots and the ``Instrumentation`` hook."""

import dataclasses
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from tether import Container, Instrumentation, RegistrationMetrics, Scope, resource
from tether.exceptions import ResourceInitError, TeardownError

pytestmark = pytest.mark.anyio


class C:
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


class Session:
    pass


class Engine:
    pass


class Recorder:
    def __init__(self) -> None:
        self.created: list[tuple[str, Scope, float]] = []
        self.disposed: list[tuple[str, Scope, float]] = []
        self.failed: list[tuple[str, Scope, BaseException]] = []

    def on_created(self, registration: str, scope: Scope, seconds: float) -> None:
        self.created.append((registration, scope, seconds))

    def on_disposed(self, registration: str, scope: Scope, seconds: float) -> None:
        self.disposed.append((registration, scope, seconds))

    def on_failed(self, registration: str, scope: Scope, error: BaseException) -> None:
        self.failed.append((registration, scope, error))


def _diamond(scope: Scope = Scope.TRANSIENT, **options: object) -> Container:
    container = Container(**options)  # type: ignore[arg-type]
    for tp in (C, B, D, A):
        container.bind(tp, scope=scope)
    return container


# -- the snapshot -------------------------------------------------------------------


def test_metrics_has_one_frozen_entry_per_registration() -> None:
    container = _diamond()

    metrics = container.metrics()

    assert set(metrics) == {"A", "B", "C", "D"}
    assert all(isinstance(m, RegistrationMetrics) for m in metrics.values())
    with pytest.raises(dataclasses.FrozenInstanceError):
        metrics["A"].created = 5  # type: ignore[misc]


def test_unbuilt_registration_has_zero_counts() -> None:
    container = Container()
    container.bind(Engine)

    m = container.metrics()["Engine"]

    assert m.registration == "Engine"
    assert m.scope is Scope.APP
    assert (m.created, m.disposed, m.failed, m.active, m.peak, m.dispose_failed) == (
        0, 0, 0, 0, 0, 0,
    )
    assert m.init_seconds_total == 0
    assert m.init_seconds_last is None


def test_snapshot_does_not_change_afterwards() -> None:
    container = Container()
    container.bind(Engine, scope=Scope.TRANSIENT)
    before = container.metrics()["Engine"]

    container.get(Engine)

    assert before.created == 0
    assert container.metrics()["Engine"].created == 1


def test_named_registration_is_listed_by_its_name() -> None:
    container = Container()
    container.bind(Engine, name="primary")
    container.get(Engine, name="primary")

    assert container.metrics()["Engine[primary]"].created == 1


# -- created ------------------------------------------------------------------------


def test_app_registration_is_created_once() -> None:
    container = Container()
    container.bind(Engine)

    for _ in range(5):
        container.get(Engine)

    m = container.metrics()["Engine"]
    assert m.created == 1
    assert m.active == 1
    assert m.peak == 1


def test_transient_graph_counts_every_instance() -> None:
    container = _diamond()

    for _ in range(3):
        container.get(A)

    metrics = container.metrics()
    assert {name: m.created for name, m in metrics.items()} == {"A": 3, "B": 3, "D": 3, "C": 6}


async def test_transient_graph_counts_every_instance_built_with_aget() -> None:
    container = _diamond()

    for _ in range(3):
        await container.aget(A)

    metrics = container.metrics()
    assert {name: m.created for name, m in metrics.items()} == {"A": 3, "B": 3, "D": 3, "C": 6}


def test_transient_graph_counts_stay_right_over_many_resolutions() -> None:
    container = _diamond()

    for _ in range(50):
        container.get(A)

    assert container.metrics()["C"].created == 100


def test_transient_graph_in_a_request_scope_counts_every_instance() -> None:
    container = _diamond()

    with container.scope() as request:
        for _ in range(3):
            request.get(A)

    assert container.metrics()["C"].created == 6


def test_app_root_over_transients_counts_each_instance_once() -> None:
    container = Container()
    for tp in (C, B, D):
        container.bind(tp, scope=Scope.TRANSIENT)
    container.bind(A)

    for _ in range(3):
        container.get(A)

    metrics = container.metrics()
    assert {name: m.created for name, m in metrics.items()} == {"A": 1, "B": 1, "D": 1, "C": 2}


def test_plain_transients_are_never_active() -> None:
    container = _diamond()

    for _ in range(3):
        container.get(A)

    assert all(m.active == 0 and m.peak == 0 for m in container.metrics().values())


# -- active, peak, disposed ---------------------------------------------------------


def test_request_generator_counts_active_peak_and_disposed() -> None:
    container = Container()

    @container.provide(scope=Scope.REQUEST)
    def session() -> Iterator[Session]:
        yield Session()

    with container.scope() as first, container.scope() as second:
        first.get(Session)
        second.get(Session)
        during = container.metrics()["Session"]
    after = container.metrics()["Session"]

    assert (during.created, during.active, during.peak, during.disposed) == (2, 2, 2, 0)
    assert (after.created, after.active, after.peak, after.disposed) == (2, 0, 2, 2)


async def test_async_generator_counts_disposed() -> None:
    container = Container()

    @container.provide(scope=Scope.REQUEST)
    async def session() -> AsyncIterator[Session]:
        yield Session()

    for _ in range(3):
        async with container.scope() as request:
            await request.aget(Session)

    m = container.metrics()["Session"]
    assert (m.created, m.disposed, m.active, m.peak) == (3, 3, 0, 1)


async def test_resource_class_counts_disposed_when_the_container_closes() -> None:
    @resource
    class Pool:
        async def initialize(self) -> None:
            pass

        async def dispose(self) -> None:
            pass

    container = Container()
    container.bind(Pool)
    async with container:
        await container.aget(Pool)
        assert container.metrics()[Pool.__qualname__].active == 1

    m = container.metrics()[Pool.__qualname__]
    assert (m.created, m.disposed, m.active, m.peak) == (1, 1, 0, 1)


def test_nothing_is_active_after_the_container_closes() -> None:
    container = Container()
    container.bind(Engine)

    @container.provide
    def session() -> Iterator[Session]:
        yield Session()

    with container:
        container.get(Engine)
        container.get(Session)

    assert {name: m.active for name, m in container.metrics().items()} == {
        "Engine": 0,
        "Session": 0,
    }


def test_failing_teardown_counts_dispose_failed() -> None:
    container = Container()

    @container.provide(scope=Scope.REQUEST)
    def session() -> Iterator[Session]:
        yield Session()
        raise OSError("socket already closed")

    with pytest.raises(TeardownError), container.scope() as request:
        request.get(Session)

    m = container.metrics()["Session"]
    assert (m.disposed, m.dispose_failed, m.active) == (1, 1, 0)


# -- failed and latency -------------------------------------------------------------


def test_failed_build_counts_failed_not_created() -> None:
    container = Container()

    @container.provide
    def engine() -> Engine:
        raise OSError("refused")

    for _ in range(2):
        with pytest.raises(ResourceInitError):
            container.get(Engine)

    m = container.metrics()["Engine"]
    assert (m.created, m.failed, m.active) == (0, 2, 0)


async def test_failed_async_build_counts_failed() -> None:
    container = Container()

    @container.provide
    async def engine() -> Engine:
        raise OSError("refused")

    with pytest.raises(ResourceInitError):
        await container.aget(Engine)

    assert container.metrics()["Engine"].failed == 1


def test_init_latency_is_measured() -> None:
    container = Container()

    @container.provide
    def engine() -> Engine:
        time.sleep(0.02)
        return Engine()

    container.get(Engine)

    m = container.metrics()["Engine"]
    assert m.init_seconds_last is not None
    assert m.init_seconds_last >= 0.02
    assert m.init_seconds_total >= m.init_seconds_last


def test_init_latency_total_adds_up_over_instances() -> None:
    container = Container()

    @container.provide(scope=Scope.REQUEST)
    def engine() -> Engine:
        time.sleep(0.01)
        return Engine()

    for _ in range(3):
        with container.scope() as request:
            request.get(Engine)

    m = container.metrics()["Engine"]
    assert m.init_seconds_last is not None
    assert m.init_seconds_total >= 0.03
    assert m.init_seconds_total >= m.init_seconds_last


def test_plain_transients_are_counted_and_timed_once_instrumented() -> None:
    # Without instrumentation, generated code builds plain TRANSIENT classes inline and
    # counts them without timing each one; an instrumented container times every one.
    container = _diamond(instrumentation=Recorder())

    for _ in range(3):
        container.get(A)

    metrics = container.metrics()
    assert all(m.init_seconds_last is not None for m in metrics.values())
    assert metrics["C"].created == 6


# -- instrumentation ----------------------------------------------------------------


def test_recorder_satisfies_the_instrumentation_protocol() -> None:
    assert isinstance(Recorder(), Instrumentation)


def test_instrumentation_receives_created_and_disposed() -> None:
    recorder = Recorder()
    container = Container(instrumentation=recorder)

    @container.provide(scope=Scope.REQUEST)
    def session() -> Iterator[Session]:
        yield Session()

    with container.scope() as request:
        request.get(Session)
        assert [(n, s) for n, s, _ in recorder.created] == [("Session", Scope.REQUEST)]
        assert recorder.disposed == []

    assert [(n, s) for n, s, _ in recorder.disposed] == [("Session", Scope.REQUEST)]
    assert all(seconds >= 0 for _, _, seconds in recorder.created + recorder.disposed)


def test_instrumentation_receives_failed_with_the_error() -> None:
    recorder = Recorder()
    container = Container(instrumentation=recorder)
    error = OSError("refused")

    @container.provide
    def engine() -> Engine:
        raise error

    with pytest.raises(ResourceInitError):
        container.get(Engine)

    assert recorder.failed == [("Engine", Scope.APP, error)]
    assert recorder.created == []


async def test_instrumentation_receives_async_events() -> None:
    recorder = Recorder()
    container = Container(instrumentation=recorder)

    @container.provide
    async def engine() -> AsyncIterator[Engine]:
        yield Engine()

    async with container:
        await container.aget(Engine)

    assert [n for n, _, _ in recorder.created] == ["Engine"]
    assert [n for n, _, _ in recorder.disposed] == ["Engine"]


def test_instrumentation_sees_every_instance_of_a_transient_graph() -> None:
    recorder = Recorder()
    container = _diamond(instrumentation=recorder)

    for _ in range(3):
        container.get(A)

    names = [n for n, _, _ in recorder.created]
    assert {n: names.count(n) for n in set(names)} == {"A": 3, "B": 3, "D": 3, "C": 6}


def test_several_instrumentations_each_receive_every_event() -> None:
    first, second = Recorder(), Recorder()
    container = Container(instrumentation=[first, second])
    container.bind(Engine)

    container.get(Engine)

    assert [n for n, _, _ in first.created] == ["Engine"]
    assert [n for n, _, _ in second.created] == ["Engine"]


# -- statistics(): what built resources report about themselves ----------------------


@dataclasses.dataclass(frozen=True)
class PoolNumbers:
    in_use: int
    calls_total: int


class Reporting:
    def __init__(self) -> None:
        self.calls = 0

    def statistics(self) -> PoolNumbers:
        return PoolNumbers(in_use=1, calls_total=self.calls)


class Broken:
    def statistics(self) -> PoolNumbers:
        raise RuntimeError("no numbers today")


async def test_statistics_lists_built_app_resources_that_report() -> None:
    container = Container()
    container.bind(Reporting, name="a")
    container.bind(Reporting, name="b")
    async with container:
        assert container.statistics() == {}
        a = await container.aget(Reporting, name="a")
        a.calls = 7
        assert container.statistics() == {"Reporting[a]": PoolNumbers(in_use=1, calls_total=7)}


async def test_statistics_skips_request_scoped_and_non_reporting_instances() -> None:
    container = Container()
    container.bind(Reporting, scope=Scope.REQUEST)
    container.bind(C)
    async with container:
        await container.aget(C)
        async with container.scope() as request:
            await request.aget(Reporting)
            assert container.statistics() == {}


async def test_a_statistics_method_that_raises_is_left_out_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    container = Container()
    container.bind(Broken)
    container.bind(Reporting)
    async with container:
        await container.aget(Broken)
        await container.aget(Reporting)
        assert list(container.statistics()) == ["Reporting"]
    assert "statistics() of Broken raised" in caplog.text


async def test_statistics_is_empty_after_close() -> None:
    container = Container()
    container.bind(Reporting)
    async with container:
        await container.aget(Reporting)
    assert container.statistics() == {}
