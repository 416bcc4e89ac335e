"""``container.override`` and ``tether.testing.overrides``: swapping a registration for a test."""

from collections.abc import Iterator

import pytest

from tether import Container, Inject, Scope
from tether.exceptions import DependencyNotFound
from tether.testing import overrides

pytestmark = pytest.mark.anyio


class Clock:
    def now(self) -> float:
        return 1.0


class SystemClock(Clock):
    pass


class FrozenClock(Clock):
    def now(self) -> float:
        return 0.0


class Mailer:
    pass


class FakeMailer(Mailer):
    pass


class Scheduler:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock


class Service:
    def __init__(self, scheduler: Scheduler, mailer: Mailer) -> None:
        self.scheduler = scheduler
        self.mailer = mailer


def _container() -> Container:
    container = Container()
    container.bind(Clock, SystemClock)
    container.bind(Mailer)
    container.bind(Scheduler)
    container.bind(Service)
    return container


# -- replacing ----------------------------------------------------------------------


def test_override_with_a_value_is_used_inside_the_block() -> None:
    container = _container()
    frozen = FrozenClock()

    with container.override(Clock, frozen):
        assert container.get(Clock) is frozen


def test_override_is_undone_after_the_block() -> None:
    container = _container()
    frozen = FrozenClock()

    with container.override(Clock, frozen):
        pass

    assert type(container.get(Clock)) is SystemClock


def test_override_with_a_class_builds_the_class() -> None:
    container = _container()

    with container.override(Clock, FrozenClock):
        assert type(container.get(Clock)) is FrozenClock


def test_override_with_a_factory_calls_the_factory() -> None:
    container = _container()
    frozen = FrozenClock()

    def make_clock() -> Clock:
        return frozen

    with container.override(Clock, make_clock):
        assert container.get(Clock) is frozen


async def test_override_with_an_async_factory_is_awaited() -> None:
    container = _container()
    frozen = FrozenClock()

    async def make_clock() -> Clock:
        return frozen

    with container.override(Clock, make_clock):
        assert await container.aget(Clock) is frozen


async def test_override_is_seen_by_aget() -> None:
    container = _container()
    frozen = FrozenClock()

    with container.override(Clock, frozen):
        assert await container.aget(Clock) is frozen


def test_override_is_seen_in_request_scopes() -> None:
    container = _container()
    frozen = FrozenClock()

    with container.override(Clock, frozen), container.scope() as request:
        assert request.get(Scheduler).clock is frozen


def test_override_replaces_an_already_built_instance() -> None:
    container = _container()
    container.get(Clock)
    frozen = FrozenClock()

    with container.override(Clock, frozen):
        assert container.get(Clock) is frozen


def test_override_of_a_class_keeps_the_original_scope() -> None:
    class Session:
        pass

    class FakeSession(Session):
        pass

    container = Container()
    container.bind(Session, scope=Scope.REQUEST)

    with (
        container.override(Session, FakeSession),
        container.scope() as first,
        container.scope() as second,
    ):
        assert type(first.get(Session)) is FakeSession
        assert first.get(Session) is first.get(Session)
        assert first.get(Session) is not second.get(Session)


def test_override_of_an_unregistered_type_is_removed_after_the_block() -> None:
    container = Container()
    mailer = FakeMailer()

    with container.override(Mailer, mailer):
        assert container.get(Mailer) is mailer

    with pytest.raises(DependencyNotFound):
        container.get(Mailer)


def test_override_of_a_named_binding_leaves_the_others_alone() -> None:
    container = Container()
    container.bind(Clock, SystemClock)
    container.bind(Clock, SystemClock, name="backup")
    frozen = FrozenClock()

    with container.override(Clock, frozen, name="backup"):
        assert container.get(Clock, name="backup") is frozen
        assert type(container.get(Clock)) is SystemClock


def test_override_applies_to_injected_functions() -> None:
    container = _container()
    frozen = FrozenClock()

    @container.inject
    def now(clock: Inject[Clock]) -> float:
        return clock.now()

    assert now() == 1.0  # type: ignore[call-arg]
    with container.override(Clock, frozen):
        assert now() == 0.0  # type: ignore[call-arg]
    assert now() == 1.0  # type: ignore[call-arg]


# -- nesting ------------------------------------------------------------------------


def test_overrides_nest_and_the_inner_one_wins() -> None:
    container = _container()
    outer, inner = FrozenClock(), FrozenClock()

    with container.override(Clock, outer):
        with container.override(Clock, inner):
            assert container.get(Clock) is inner
        assert container.get(Clock) is outer
    assert type(container.get(Clock)) is SystemClock


def test_overrides_of_different_types_nest() -> None:
    container = _container()
    frozen, mailer = FrozenClock(), FakeMailer()

    with container.override(Clock, frozen), container.override(Mailer, mailer):
        service = container.get(Service)
        assert service.scheduler.clock is frozen
        assert service.mailer is mailer


def test_dependents_in_the_inner_block_are_rebuilt_when_it_ends() -> None:
    container = _container()
    outer, inner = FrozenClock(), FrozenClock()

    with container.override(Clock, outer):
        with container.override(Clock, inner):
            assert container.get(Scheduler).clock is inner
        assert container.get(Scheduler).clock is outer


# -- dependents ---------------------------------------------------------------------


def test_dependents_built_before_the_override_are_rebuilt_inside_it() -> None:
    container = _container()
    before = container.get(Service)
    frozen = FrozenClock()

    with container.override(Clock, frozen):
        inside = container.get(Service)
        assert inside is not before
        assert inside.scheduler.clock is frozen


def test_dependents_built_inside_the_override_are_rebuilt_after_it() -> None:
    container = _container()
    frozen = FrozenClock()

    with container.override(Clock, frozen):
        inside = container.get(Service)

    after = container.get(Service)
    assert after is not inside
    assert after.scheduler.clock is not frozen
    assert type(after.scheduler.clock) is SystemClock


def test_dependents_cached_in_an_open_request_scope_are_rebuilt() -> None:
    container = Container()
    container.bind(Clock, SystemClock)
    container.bind(Scheduler, scope=Scope.REQUEST)
    frozen = FrozenClock()

    with container.scope() as request:
        before = request.get(Scheduler)
        with container.override(Clock, frozen):
            inside = request.get(Scheduler)
        after = request.get(Scheduler)

    assert inside is not before
    assert inside.clock is frozen
    assert type(after.clock) is SystemClock


def test_registrations_that_do_not_depend_on_the_override_are_kept() -> None:
    container = _container()
    mailer = container.get(Mailer)

    with container.override(Clock, FrozenClock()):
        assert container.get(Mailer) is mailer
    assert container.get(Mailer) is mailer


def test_dependents_resolved_many_times_see_the_override() -> None:
    # Resolved repeatedly, a registration runs on generated code; that code must
    # not keep the replaced builder.
    container = _container()
    for _ in range(5):
        container.get(Scheduler)
    frozen = FrozenClock()

    with container.override(Clock, frozen):
        for _ in range(5):
            assert container.get(Scheduler).clock is frozen
    for _ in range(5):
        assert type(container.get(Scheduler).clock) is SystemClock


def test_transient_dependents_see_the_override() -> None:
    class Job:
        def __init__(self, clock: Clock) -> None:
            self.clock = clock

    container = Container()
    container.bind(Clock, SystemClock, scope=Scope.TRANSIENT)
    container.bind(Job, scope=Scope.TRANSIENT)
    for _ in range(3):
        container.get(Job)

    with container.override(Clock, FrozenClock):
        for _ in range(3):
            assert type(container.get(Job).clock) is FrozenClock
    assert type(container.get(Job).clock) is SystemClock


def test_overridden_generator_instance_is_still_torn_down_on_close() -> None:
    events: list[str] = []
    container = Container()

    @container.provide
    def clock() -> Iterator[Clock]:
        yield SystemClock()
        events.append("closed")

    with container:
        container.get(Clock)
        with container.override(Clock, FrozenClock()):
            container.get(Clock)
    assert events == ["closed"]


# -- tether.testing.overrides -------------------------------------------------------


def test_testing_overrides_replaces_several_registrations_at_once() -> None:
    container = _container()
    frozen, mailer = FrozenClock(), FakeMailer()

    with overrides(container, {Clock: frozen, Mailer: mailer}):
        service = container.get(Service)
        assert service.scheduler.clock is frozen
        assert service.mailer is mailer

    service = container.get(Service)
    assert type(service.scheduler.clock) is SystemClock
    assert type(service.mailer) is Mailer


def test_testing_overrides_takes_type_and_name_pairs_for_named_bindings() -> None:
    container = Container()
    container.bind(Clock, SystemClock, name="wall")
    frozen = FrozenClock()

    with overrides(container, {(Clock, "wall"): frozen}):
        assert container.get(Clock, name="wall") is frozen
    assert type(container.get(Clock, name="wall")) is SystemClock


def test_testing_overrides_accepts_classes() -> None:
    container = _container()

    with overrides(container, {Mailer: FakeMailer}):
        assert type(container.get(Mailer)) is FakeMailer
