"""Live scopes: opening, nesting, sessions, and refusing use once closed."""

from collections.abc import AsyncIterator, Iterator

import pytest

from tether import ActiveScope, Container, Scope
from tether.exceptions import ClosedError
from tether.testing import FakeClock

pytestmark = pytest.mark.anyio


class Config:
    pass


class Session:
    pass


class Request:
    pass


class Handler:
    def __init__(self, config: Config, request: Request) -> None:
        self.config = config
        self.request = request


def _container(**options: float) -> Container:
    container = Container(**options)  # type: ignore[arg-type]
    container.bind(Config)
    container.bind(Session, scope=Scope.SESSION)
    container.bind(Request, scope=Scope.REQUEST)
    container.bind(Handler, scope=Scope.REQUEST)
    return container


# -- opening ------------------------------------------------------------------------


def test_scope_opens_a_request_scope_by_default() -> None:
    container = _container()

    with container.scope() as scope:
        assert scope.kind is Scope.REQUEST
        assert isinstance(scope.get(Request), Request)


async def test_scope_works_with_async_with() -> None:
    container = _container()

    async with container.scope() as scope:
        assert isinstance(await scope.aget(Handler), Handler)


def test_scope_works_with_with() -> None:
    container = _container()

    with container.scope() as scope:
        assert isinstance(scope.get(Handler), Handler)


def test_scope_enters_as_itself() -> None:
    container = _container()
    scope = container.scope()

    with scope as entered:
        assert entered is scope


def test_resource_scope_is_an_alias_of_scope() -> None:
    container = _container()

    with container.resource_scope() as scope:
        assert scope.kind is Scope.REQUEST
        assert scope.get(Request) is scope.get(Request)


async def test_resource_scope_works_with_async_with() -> None:
    container = _container()

    async with container.resource_scope(Scope.REQUEST) as scope:
        assert isinstance(await scope.aget(Request), Request)


def test_scope_sees_the_containers_app_instances() -> None:
    container = _container()

    with container.scope() as scope:
        assert scope.get(Handler).config is container.get(Config)


@pytest.mark.parametrize("kind", [Scope.APP, Scope.SINGLETON, Scope.TRANSIENT])
def test_scope_refuses_kinds_that_are_not_live_scopes(kind: Scope) -> None:
    container = _container()

    with pytest.raises(ValueError, match=r"opens SESSION or REQUEST scopes"):
        container.scope(kind)


def test_session_id_is_refused_for_a_request_scope() -> None:
    container = _container()

    with pytest.raises(ValueError, match=r"session_id= is only for Scope.SESSION"):
        container.scope(Scope.REQUEST, session_id="abc")


# -- nesting ------------------------------------------------------------------------


def test_inner_request_scope_sees_the_outer_ones_instances() -> None:
    container = _container()

    with container.scope() as outer:
        request = outer.get(Request)
        with outer.scope() as inner:
            assert inner.get(Request) is request


async def test_inner_async_request_scope_sees_the_outer_ones_instances() -> None:
    container = _container()

    async with container.scope() as outer:
        request = await outer.aget(Request)
        async with outer.scope() as inner:
            assert await inner.aget(Request) is request


def test_outer_instances_survive_the_inner_scopes_exit() -> None:
    container = Container()
    events: list[str] = []

    @container.provide(scope=Scope.REQUEST)
    def request() -> Iterator[Request]:
        yield Request()
        events.append("request closed")

    with container.scope() as outer:
        request_ = outer.get(Request)
        with outer.scope() as inner:
            inner.get(Request)
        assert events == []
        assert not outer.closed
        assert outer.get(Request) is request_
    assert events == ["request closed"]


def test_instances_built_in_the_inner_scope_are_disposed_at_its_exit() -> None:
    container = Container()
    events: list[str] = []

    @container.provide(scope=Scope.REQUEST)
    def request() -> Iterator[Request]:
        yield Request()
        events.append("closed")

    with container.scope() as outer:
        with outer.scope() as inner:
            inner.get(Request)
        assert events == ["closed"]
    assert events == ["closed"]


async def test_async_instances_built_in_the_inner_scope_are_disposed_at_its_exit() -> None:
    container = Container()
    events: list[str] = []

    @container.provide(scope=Scope.REQUEST)
    async def request() -> AsyncIterator[Request]:
        yield Request()
        events.append("closed")

    async with container.scope() as outer:
        async with outer.scope() as inner:
            await inner.aget(Request)
        assert events == ["closed"]
        assert not outer.closed


def test_request_scope_inside_a_session_sees_the_sessions_instances() -> None:
    container = _container()

    with container.scope(Scope.SESSION, session_id="s1") as session:
        user_session = session.get(Session)
        with session.scope() as request:
            assert request.get(Session) is user_session
            assert request.get(Config) is container.get(Config)


def test_session_scope_cannot_open_inside_a_request_scope() -> None:
    container = _container()

    with container.scope() as request, pytest.raises(ValueError, match=r"outlives the blocks"):
        request.scope(Scope.SESSION, session_id="s1")


def test_nested_scope_cannot_be_opened_from_a_closed_scope() -> None:
    container = _container()
    with container.scope() as request:
        pass

    with pytest.raises(ClosedError):
        request.scope()


# -- sessions -----------------------------------------------------------------------


def test_session_scope_is_keyed_by_its_id() -> None:
    container = _container()

    with container.scope(Scope.SESSION, session_id="alice") as first:
        alice = first.get(Session)
    with container.scope(Scope.SESSION, session_id="alice") as again:
        assert again.get(Session) is alice
    with container.scope(Scope.SESSION, session_id="bob") as other:
        assert other.get(Session) is not alice


async def test_async_session_scope_is_keyed_by_its_id() -> None:
    container = _container()

    async with container.scope(Scope.SESSION, session_id="alice") as first:
        alice = await first.aget(Session)
    async with container.scope(Scope.SESSION, session_id="alice") as again:
        assert await again.aget(Session) is alice


def test_session_scope_is_returned_again_for_the_same_id() -> None:
    container = _container()

    assert container.scope(Scope.SESSION, session_id="a") is container.scope(
        Scope.SESSION, session_id="a"
    )


def test_session_survives_the_end_of_its_block() -> None:
    container = Container()
    events: list[str] = []

    @container.provide(scope=Scope.SESSION)
    def session() -> Iterator[Session]:
        yield Session()
        events.append("closed")

    with container.scope(Scope.SESSION, session_id="a") as scope:
        scope.get(Session)
    assert events == []
    assert not scope.closed


@pytest.mark.parametrize("session_id", [None, ""])
def test_session_scope_needs_an_id(session_id: str | None) -> None:
    container = _container()

    with pytest.raises(ValueError, match=r"needs its id"):
        container.scope(Scope.SESSION, session_id=session_id)


async def test_session_is_disposed_after_its_idle_timeout() -> None:
    clock = FakeClock()
    container = Container(clock=clock, session_idle_timeout=60)
    events: list[str] = []

    @container.provide(scope=Scope.SESSION)
    async def session() -> AsyncIterator[Session]:
        yield Session()
        events.append("closed")

    async with container:
        async with container.scope(Scope.SESSION, session_id="a") as scope:
            old = await scope.aget(Session)
        clock.advance(30)
        assert await container.expire_sessions() == 0
        clock.advance(31)
        assert await container.expire_sessions() == 1
        assert events == ["closed"]
        assert scope.closed
        async with container.scope(Scope.SESSION, session_id="a") as fresh:
            assert await fresh.aget(Session) is not old


async def test_session_use_resets_its_idle_timeout() -> None:
    clock = FakeClock()
    container = Container(clock=clock, session_idle_timeout=60)
    container.bind(Session, scope=Scope.SESSION)

    async with container:
        for _ in range(3):
            async with container.scope(Scope.SESSION, session_id="a") as scope:
                await scope.aget(Session)
            clock.advance(50)
        assert await container.expire_sessions() == 0


async def test_session_is_disposed_after_its_max_age_even_when_used() -> None:
    clock = FakeClock()
    container = Container(clock=clock, session_idle_timeout=60, session_max_age=100)
    container.bind(Session, scope=Scope.SESSION)

    async with container:
        for _ in range(3):
            async with container.scope(Scope.SESSION, session_id="a") as scope:
                await scope.aget(Session)
            clock.advance(50)
        assert await container.expire_sessions() == 1
        assert scope.closed


async def test_open_sessions_are_disposed_when_the_container_closes() -> None:
    container = Container()
    events: list[str] = []

    @container.provide(scope=Scope.SESSION)
    async def session() -> AsyncIterator[Session]:
        yield Session()
        events.append("closed")

    async with container, container.scope(Scope.SESSION, session_id="a") as scope:
        await scope.aget(Session)
    assert events == ["closed"]


# -- closed scopes ------------------------------------------------------------------


def test_closed_scope_refuses_get_with_a_sentence() -> None:
    container = _container()
    with container.scope() as request:
        pass

    with pytest.raises(ClosedError, match=r"cannot use this REQUEST scope once it has been closed"):
        request.get(Request)


async def test_closed_scope_refuses_aget() -> None:
    container = _container()
    async with container.scope() as request:
        pass

    with pytest.raises(ClosedError):
        await request.aget(Request)


def test_closed_scope_refuses_even_what_it_had_built() -> None:
    container = _container()
    with container.scope() as request:
        request.get(Request)

    with pytest.raises(ClosedError):
        request.get(Request)


def test_closed_error_is_a_runtime_error() -> None:
    assert issubclass(ClosedError, RuntimeError)


def test_scope_reports_whether_it_is_closed() -> None:
    container = _container()
    scope: ActiveScope = container.scope()
    with scope:
        assert not scope.closed
    assert scope.closed


def test_scope_closed_twice_does_nothing_the_second_time() -> None:
    container = Container()
    events: list[str] = []

    @container.provide(scope=Scope.REQUEST)
    def request() -> Iterator[Request]:
        yield Request()
        events.append("closed")

    scope = container.scope()
    scope.get(Request)
    scope.close()
    scope.close()

    assert events == ["closed"]


async def test_scope_aclose_disposes_what_it_built() -> None:
    container = Container()
    events: list[str] = []

    @container.provide(scope=Scope.REQUEST)
    async def request() -> AsyncIterator[Request]:
        yield Request()
        events.append("closed")

    scope = container.scope()
    await scope.aget(Request)
    await scope.aclose()

    assert events == ["closed"]
    assert scope.closed


def test_closed_container_refuses_get() -> None:
    container = _container()
    with container:
        pass

    with pytest.raises(ClosedError, match=r"cannot use this container once it has been closed"):
        container.get(Config)


def test_closed_container_refuses_to_open_a_scope() -> None:
    container = _container()
    with container:
        pass

    with pytest.raises(ClosedError):
        container.scope()


def test_scope_still_open_when_the_container_closes_is_closed_with_it() -> None:
    container = Container()
    events: list[str] = []

    @container.provide(scope=Scope.REQUEST)
    def request() -> Iterator[Request]:
        yield Request()
        events.append("closed")

    with container:
        scope = container.scope()
        scope.get(Request)
    assert events == ["closed"]
    assert scope.closed
