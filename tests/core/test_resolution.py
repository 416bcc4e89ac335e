"""Getting instances: ``get`` / ``aget``, lifetimes, and the errors that explain a miss."""

from collections.abc import AsyncIterator, Iterator

import pytest

from tether import Container, Scope, resource
from tether.exceptions import (
    AsyncRequired,
    DependencyNotFound,
    ResolutionError,
    ResourceInitError,
    ScopeMismatch,
)

pytestmark = pytest.mark.anyio


class Engine:
    pass


class Repo:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine


class UserService:
    def __init__(self, repo: Repo) -> None:
        self.repo = repo


class Cipher:
    def __init__(self, algorithm: str = "plain") -> None:
        self.algorithm = algorithm


class Session:
    pass


class Handler:
    def __init__(self, session: Session) -> None:
        self.session = session


# -- get / aget ---------------------------------------------------------------------


def test_get_builds_a_registration_with_its_dependencies() -> None:
    container = Container()
    container.bind(Engine)
    container.bind(Repo)
    container.bind(UserService)

    service = container.get(UserService)

    assert service.repo.engine is container.get(Engine)


async def test_aget_builds_sync_registrations_too() -> None:
    container = Container()
    container.bind(Engine)
    container.bind(Repo)

    repo = await container.aget(Repo)

    assert repo is container.get(Repo)


async def test_aget_awaits_an_async_dependency_of_a_sync_class() -> None:
    container = Container()

    @container.provide
    async def engine() -> Engine:
        return Engine()

    container.bind(Repo)

    repo = await container.aget(Repo)

    assert repo.engine is await container.aget(Engine)


async def test_aget_with_a_name_resolves_the_named_binding() -> None:
    container = Container()

    @container.provide(name="aes")
    async def aes() -> Cipher:
        return Cipher("aes")

    assert (await container.aget(Cipher, name="aes")).algorithm == "aes"


def test_sync_get_of_an_async_factory_says_to_use_aget() -> None:
    container = Container()

    @container.provide
    async def engine() -> Engine:
        return Engine()

    with pytest.raises(AsyncRequired) as caught:
        container.get(Engine)

    message = str(caught.value)
    assert "Engine needs await" in message
    assert "async factory" in message
    assert "aget" in message


def test_sync_get_of_an_async_generator_says_to_use_aget() -> None:
    container = Container()

    @container.provide
    async def engine() -> AsyncIterator[Engine]:
        yield Engine()

    with pytest.raises(AsyncRequired, match=r"async generator.*aget"):
        container.get(Engine)


def test_sync_get_of_something_with_an_async_dependency_says_to_use_aget() -> None:
    container = Container()

    @container.provide
    async def engine() -> Engine:
        return Engine()

    container.bind(Repo)
    container.bind(UserService)

    with pytest.raises(AsyncRequired) as caught:
        container.get(UserService)

    message = str(caught.value)
    assert "aget" in message
    assert "UserService (APP) -> Repo (APP) -> Engine (APP)" in message


async def test_sync_get_works_once_an_async_app_registration_is_built() -> None:
    container = Container()

    @container.provide(eager=True)
    async def engine() -> Engine:
        return Engine()

    async with container:
        assert container.get(Engine) is await container.aget(Engine)


def test_async_required_is_a_resolution_error() -> None:
    assert issubclass(AsyncRequired, ResolutionError)


# -- not found ----------------------------------------------------------------------


def test_get_of_an_unbound_type_raises_dependency_not_found() -> None:
    container = Container()

    with pytest.raises(DependencyNotFound, match=r"nothing is bound for Engine") as caught:
        container.get(Engine)

    assert "Hint: register it with container.bind(Engine, ...)" in str(caught.value)


async def test_aget_of_an_unbound_type_raises_dependency_not_found() -> None:
    container = Container()

    with pytest.raises(DependencyNotFound, match=r"nothing is bound for Engine"):
        await container.aget(Engine)


def test_dependency_not_found_is_a_lookup_error() -> None:
    container = Container()

    with pytest.raises(LookupError):
        container.get(Engine)


def test_dependency_not_found_names_who_needed_it_and_the_chain() -> None:
    container = Container()
    container.bind(Repo)
    container.bind(UserService)

    with pytest.raises(DependencyNotFound) as caught:
        container.get(UserService)

    error = caught.value
    message = str(error)
    assert "nothing is bound for Engine, needed by Repo" in message
    assert "UserService (APP) -> Repo (APP)" in message
    assert error.dependency == "Engine"
    assert error.needed_by == "Repo"
    assert [name for name, _ in error.chain] == ["UserService", "Repo"]


async def test_dependency_not_found_from_aget_names_the_chain() -> None:
    container = Container()

    @container.provide
    async def repo(engine: Engine) -> Repo:
        return Repo(engine)

    container.bind(UserService)

    with pytest.raises(DependencyNotFound) as caught:
        await container.aget(UserService)

    assert "UserService (APP) -> Repo (APP)" in str(caught.value)


def test_dependency_not_found_lists_the_names_it_is_bound_under() -> None:
    container = Container()
    container.bind(Cipher, Cipher("aes"), name="aes")
    container.bind(Cipher, Cipher("rsa"), name="rsa")

    with pytest.raises(DependencyNotFound) as caught:
        container.get(Cipher)

    message = str(caught.value)
    assert "Bound under other names: Cipher[aes], Cipher[rsa]" in message
    assert caught.value.available == ("Cipher[aes]", "Cipher[rsa]")


def test_dependency_not_found_for_a_missing_name_lists_the_unnamed_binding() -> None:
    container = Container()
    container.bind(Cipher, Cipher())

    with pytest.raises(DependencyNotFound, match=r"nothing is bound for Cipher\[aes\]") as caught:
        container.get(Cipher, name="aes")

    assert "Cipher" in caught.value.available


def test_a_failed_build_names_the_registration_and_keeps_the_cause() -> None:
    container = Container()

    @container.provide
    def engine() -> Engine:
        raise OSError("connection refused")

    container.bind(Repo)

    with pytest.raises(ResourceInitError) as caught:
        container.get(Repo)

    message = str(caught.value)
    assert "building Engine failed" in message
    assert "Repo (APP) -> Engine (APP)" in message
    assert "OSError: connection refused" in message
    assert isinstance(caught.value.__cause__, OSError)


# -- SINGLETON ----------------------------------------------------------------------


def test_singleton_is_shared_by_two_containers() -> None:
    class Pool:
        pass

    first, second = Container(), Container()
    first.bind(Pool, scope=Scope.SINGLETON)
    second.bind(Pool, scope=Scope.SINGLETON)
    with first, second:
        assert first.get(Pool) is second.get(Pool)


def test_singleton_is_disposed_when_the_last_container_closes() -> None:
    class Pool:
        pass

    events: list[str] = []

    def pool() -> Iterator[Pool]:
        yield Pool()
        events.append("disposed")

    first, second = Container(), Container()
    first.bind(Pool, pool, scope=Scope.SINGLETON)
    second.bind(Pool, pool, scope=Scope.SINGLETON)
    with first:
        with second:
            assert first.get(Pool) is second.get(Pool)
        assert events == []
        first.get(Pool)
    assert events == ["disposed"]


async def test_async_singleton_is_disposed_when_the_last_container_closes() -> None:
    class Pool:
        pass

    events: list[str] = []

    async def pool() -> AsyncIterator[Pool]:
        yield Pool()
        events.append("disposed")

    first, second = Container(), Container()
    first.bind(Pool, pool, scope=Scope.SINGLETON)
    second.bind(Pool, pool, scope=Scope.SINGLETON)
    async with first:
        async with second:
            assert await second.aget(Pool) is await first.aget(Pool)
        assert events == []
    assert events == ["disposed"]


def test_singleton_is_built_again_after_every_container_closed() -> None:
    class Pool:
        pass

    first = Container()
    first.bind(Pool, scope=Scope.SINGLETON)
    with first:
        old = first.get(Pool)

    second = Container()
    second.bind(Pool, scope=Scope.SINGLETON)
    with second:
        assert second.get(Pool) is not old


def test_singleton_is_shared_by_request_scopes_of_different_containers() -> None:
    class Pool:
        pass

    first, second = Container(), Container()
    first.bind(Pool, scope=Scope.SINGLETON)
    second.bind(Pool, scope=Scope.SINGLETON)
    with first, second, first.scope() as a, second.scope() as b:
        assert a.get(Pool) is b.get(Pool)


# -- APP ----------------------------------------------------------------------------


def test_app_instance_is_one_per_container() -> None:
    first, second = Container(), Container()
    first.bind(Engine)
    second.bind(Engine)

    assert first.get(Engine) is first.get(Engine)
    assert first.get(Engine) is not second.get(Engine)


def test_app_instance_is_shared_by_request_scopes() -> None:
    container = Container()
    container.bind(Engine)

    with container.scope() as first, container.scope() as second:
        assert first.get(Engine) is second.get(Engine) is container.get(Engine)


# -- TRANSIENT ----------------------------------------------------------------------


def test_transient_is_new_at_every_resolution() -> None:
    container = Container()
    container.bind(Engine, scope=Scope.TRANSIENT)

    built = [container.get(Engine) for _ in range(4)]

    assert len({id(e) for e in built}) == 4


async def test_transient_is_new_at_every_async_resolution() -> None:
    container = Container()
    container.bind(Engine, scope=Scope.TRANSIENT)

    first = await container.aget(Engine)

    assert first is not await container.aget(Engine)


def test_transient_dependency_is_new_for_each_dependent() -> None:
    class Pair:
        def __init__(self, a: Engine, b: Engine) -> None:
            self.a = a
            self.b = b

    container = Container()
    container.bind(Engine, scope=Scope.TRANSIENT)
    container.bind(Pair, scope=Scope.TRANSIENT)

    pair = container.get(Pair)

    assert pair.a is not pair.b


def test_transient_is_new_in_the_same_request_scope() -> None:
    container = Container()
    container.bind(Engine, scope=Scope.TRANSIENT)

    with container.scope() as request:
        assert request.get(Engine) is not request.get(Engine)


def test_transient_generator_is_torn_down_with_the_scope_that_resolved_it() -> None:
    container = Container()
    events: list[str] = []

    @container.provide(scope=Scope.TRANSIENT)
    def engine() -> Iterator[Engine]:
        yield Engine()
        events.append("closed")

    with container.scope() as request:
        request.get(Engine)
        request.get(Engine)
        assert events == []
    assert events == ["closed", "closed"]


# -- REQUEST ------------------------------------------------------------------------


def test_request_instance_is_one_per_scope() -> None:
    container = Container()
    container.bind(Session, scope=Scope.REQUEST)

    with container.scope() as first:
        a = first.get(Session)
        assert first.get(Session) is a
    with container.scope() as second:
        assert second.get(Session) is not a


async def test_request_instance_is_one_per_async_scope() -> None:
    container = Container()
    container.bind(Session, scope=Scope.REQUEST)

    async with container.scope() as first, container.scope() as second:
        assert await first.aget(Session) is await first.aget(Session)
        assert await first.aget(Session) is not await second.aget(Session)


def test_request_registration_resolved_from_the_container_is_a_scope_mismatch() -> None:
    container = Container()
    container.bind(Session, scope=Scope.REQUEST)

    with pytest.raises(ScopeMismatch) as caught:
        container.get(Session)

    message = str(caught.value)
    assert "Session lives in REQUEST scope but was resolved from APP scope" in message
    assert "container.scope(Scope.REQUEST)" in message
    assert caught.value.scope is Scope.REQUEST
    assert caught.value.current is Scope.APP


async def test_request_registration_awaited_from_the_container_is_a_scope_mismatch() -> None:
    container = Container()
    container.bind(Session, scope=Scope.REQUEST)

    with pytest.raises(ScopeMismatch):
        await container.aget(Session)


def test_dependency_on_a_request_registration_outside_a_scope_is_a_mismatch() -> None:
    container = Container()
    container.bind(Session, scope=Scope.REQUEST)
    container.bind(Handler, scope=Scope.TRANSIENT)

    with pytest.raises(ScopeMismatch) as caught:
        container.get(Handler)

    assert "Handler (TRANSIENT) -> Session (REQUEST)" in str(caught.value)


def test_session_registration_resolved_from_a_request_scope_is_a_scope_mismatch() -> None:
    container = Container()
    container.bind(Session, scope=Scope.SESSION)

    with container.scope() as request, pytest.raises(ScopeMismatch) as caught:
        request.get(Session)

    assert "session_id" in str(caught.value)


def test_request_registration_can_depend_on_app_and_transient() -> None:
    container = Container()
    container.bind(Engine)
    container.bind(Cipher, scope=Scope.TRANSIENT)

    class Unit:
        def __init__(self, engine: Engine, cipher: Cipher) -> None:
            self.engine = engine
            self.cipher = cipher

    container.bind(Unit, scope=Scope.REQUEST)

    with container.scope() as request:
        unit = request.get(Unit)

    assert unit.engine is container.get(Engine)


def test_request_generator_is_torn_down_when_its_scope_exits() -> None:
    container = Container()
    events: list[str] = []

    @container.provide(scope=Scope.REQUEST)
    def session() -> Iterator[Session]:
        events.append("open")
        yield Session()
        events.append("close")

    with container.scope() as request:
        request.get(Session)
        request.get(Session)
        assert events == ["open"]
    assert events == ["open", "close"]


def test_resource_resolved_in_a_request_scope_is_disposed_with_it() -> None:
    @resource
    class Connection:
        disposed = False

        def initialize(self) -> None:
            pass

        def dispose(self) -> None:
            self.disposed = True

    container = Container()
    container.bind(Connection, scope=Scope.REQUEST)

    with container.scope() as request:
        connection = request.get(Connection)
        assert not connection.disposed
    assert connection.disposed
