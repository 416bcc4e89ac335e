"""``@container.inject``: framework-neutral function injection.

``Container.inject`` is typed as returning the function unchanged, so mypy still
sees the injected parameters; calls that leave them out carry ``type: ignore[call-arg]``.
"""

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

import pytest

from tether import Container, Inject, Named, Scope
from tether.exceptions import DependencyNotFound, RegistrationError

pytestmark = pytest.mark.anyio


class Config:
    pass


class Session:
    pass


class Cipher:
    def __init__(self, algorithm: str = "plain") -> None:
        self.algorithm = algorithm


class Repo:
    def __init__(self, session: Session) -> None:
        self.session = session


def _container(events: list[str] | None = None) -> Container:
    log = events if events is not None else []
    container = Container()
    container.bind(Config)
    container.bind(Repo, scope=Scope.REQUEST)

    @container.provide(scope=Scope.REQUEST)
    def session() -> Iterator[Session]:
        log.append("session opened")
        try:
            yield Session()
        finally:  # the body's error is thrown in at the yield
            log.append("session closed")

    return container


def test_inject_fills_marked_parameters_of_a_sync_function() -> None:
    container = _container()

    @container.inject
    def handler(user_id: int, config: Inject[Config], repo: Inject[Repo]) -> tuple[int, Config]:
        assert isinstance(repo, Repo)
        return user_id, config

    user_id, config = handler(7)  # type: ignore[call-arg]

    assert user_id == 7
    assert config is container.get(Config)


async def test_inject_fills_marked_parameters_of_an_async_function() -> None:
    container = _container()

    @container.inject
    async def handler(user_id: int, config: Inject[Config], repo: Inject[Repo]) -> int:
        assert config is container.get(Config)
        assert isinstance(repo, Repo)
        return user_id

    assert await handler(7) == 7  # type: ignore[call-arg]


async def test_inject_awaits_async_dependencies() -> None:
    container = Container()

    @container.provide(scope=Scope.REQUEST)
    async def session() -> AsyncIterator[Session]:
        yield Session()

    @container.inject
    async def handler(session: Inject[Session]) -> Session:
        return session

    assert isinstance(await handler(), Session)  # type: ignore[call-arg]


def test_injected_function_keeps_its_name_and_doc() -> None:
    container = _container()

    @container.inject
    def handler(config: Inject[Config]) -> None:
        """Handle it."""

    assert handler.__name__ == "handler"
    assert handler.__doc__ == "Handle it."


def test_injected_function_signature_hides_the_injected_parameters() -> None:
    container = _container()

    @container.inject
    def handler(user_id: int, config: Inject[Config], *, verbose: bool = False) -> None:
        pass

    assert list(inspect.signature(handler).parameters) == ["user_id", "verbose"]


def test_each_call_runs_in_a_request_scope_of_its_own() -> None:
    container = _container()
    seen: list[Session] = []

    @container.inject
    def handler(session: Inject[Session], repo: Inject[Repo]) -> None:
        assert repo.session is session
        seen.append(session)

    handler()  # type: ignore[call-arg]
    handler()  # type: ignore[call-arg]

    assert seen[0] is not seen[1]


def test_the_calls_request_scope_is_closed_when_the_call_returns() -> None:
    events: list[str] = []
    container = _container(events)

    @container.inject
    def handler(session: Inject[Session]) -> None:
        events.append("handler")

    handler()  # type: ignore[call-arg]

    assert events == ["session opened", "handler", "session closed"]


async def test_the_async_calls_request_scope_is_closed_when_the_call_returns() -> None:
    events: list[str] = []
    container = Container()

    @container.provide(scope=Scope.REQUEST)
    async def session() -> AsyncIterator[Session]:
        events.append("session opened")
        yield Session()
        events.append("session closed")

    @container.inject
    async def handler(session: Inject[Session]) -> None:
        events.append("handler")

    await handler()  # type: ignore[call-arg]

    assert events == ["session opened", "handler", "session closed"]


def test_the_calls_request_scope_is_closed_when_the_call_raises() -> None:
    events: list[str] = []
    container = _container(events)

    @container.inject
    def handler(session: Inject[Session]) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        handler()  # type: ignore[call-arg]

    assert events == ["session opened", "session closed"]


async def test_the_async_calls_request_scope_is_closed_when_the_call_raises() -> None:
    events: list[str] = []
    container = _container(events)

    @container.inject
    async def handler(session: Inject[Session]) -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await handler()  # type: ignore[call-arg]

    assert events == ["session opened", "session closed"]


def test_named_inject_marker_injects_the_named_binding() -> None:
    container = Container()
    container.bind(Cipher, Cipher("aes"), name="aes")

    @container.inject
    def handler(cipher: Inject[Cipher, "aes"]) -> str:  # type: ignore[name-defined]  # noqa: F821
        return cipher.algorithm

    assert handler() == "aes"  # type: ignore[call-arg]


def test_annotated_inject_with_named_injects_the_named_binding() -> None:
    container = Container()
    container.bind(Cipher, Cipher("rsa"), name="rsa")

    @container.inject
    def handler(cipher: Annotated[Inject[Cipher], Named("rsa")]) -> str:
        return cipher.algorithm

    assert handler() == "rsa"  # type: ignore[call-arg]


def test_an_argument_passed_by_keyword_is_not_injected() -> None:
    container = _container()
    mine = Config()

    @container.inject
    def handler(config: Inject[Config]) -> Config:
        return config

    assert handler(config=mine) is mine


def test_unmarked_parameters_are_left_to_the_caller() -> None:
    container = _container()

    @container.inject
    def handler(other: Config, config: Inject[Config]) -> Config:
        return other

    mine = Config()
    assert handler(mine) is mine  # type: ignore[call-arg]


def test_a_function_without_inject_parameters_is_refused_with_a_hint() -> None:
    container = _container()

    def handler(config: Config) -> None:
        pass

    with pytest.raises(RegistrationError, match=r"has no Inject\[\.\.\.\] parameter") as caught:
        container.inject(handler)

    assert "Hint" in str(caught.value)


def test_a_missing_binding_fails_the_call_with_dependency_not_found() -> None:
    container = Container()

    @container.inject
    def handler(config: Inject[Config]) -> None:
        pass

    with pytest.raises(DependencyNotFound, match=r"nothing is bound for Config"):
        handler()  # type: ignore[call-arg]


def test_injected_function_can_be_called_many_times() -> None:
    events: list[str] = []
    container = _container(events)

    @container.inject
    def handler(session: Inject[Session]) -> None:
        pass

    for _ in range(5):
        handler()  # type: ignore[call-arg]

    assert events.count("session opened") == events.count("session closed") == 5
