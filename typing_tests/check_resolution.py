"""Checked by mypy (``python3 dev.py test``), never run: what the API promises to a type checker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any, assert_type

from tether import (
    ActiveScope,
    Container,
    HealthReport,
    HealthStatus,
    Inject,
    Named,
    RegistrationMetrics,
    ResourceHealth,
    Scope,
    resource,
)
from tether.testing import FakeClock, overrides


class UserRepo:
    pass


class Cipher:
    pass


async def resolution(container: Container, scope: ActiveScope) -> None:
    assert_type(container.get(UserRepo), UserRepo)
    assert_type(await container.aget(UserRepo), UserRepo)
    assert_type(scope.get(UserRepo), UserRepo)
    assert_type(await scope.aget(UserRepo), UserRepo)
    assert_type(scope.get(Cipher, name="aes"), Cipher)
    assert_type(await scope.aget(Cipher, "aes"), Cipher)
    async with container.scope() as request:
        assert_type(request, ActiveScope)
        assert_type(await request.aget(UserRepo), UserRepo)
    with container.scope(Scope.REQUEST) as job:
        assert_type(job.get(UserRepo), UserRepo)
    async with container as started:
        assert_type(started, Container)


def registration(container: Container) -> None:
    @container.provide(scope=Scope.REQUEST)
    async def repo() -> AsyncIterator[UserRepo]:
        yield UserRepo()

    assert_type(repo, Callable[[], AsyncIterator[UserRepo]])
    container.bind(UserRepo, scope=Scope.REQUEST)


def injection(container: Container) -> None:
    @container.inject
    def handler(repo: Inject[UserRepo], aes: Annotated[Cipher, Named("aes")]) -> str:
        assert_type(repo, UserRepo)
        assert_type(aes, Cipher)
        return "ok"

    assert_type(handler(UserRepo(), Cipher()), str)


class Pool:
    def dispose(self) -> None: ...


def named_and_async_factories(container: Container) -> None:
    @container.provide(name="aes")
    def aes() -> Cipher:
        return Cipher()

    @container.provide
    async def cipher() -> Cipher:
        return Cipher()

    assert_type(aes, Callable[[], Cipher])
    assert_type(cipher, Callable[[], Coroutine[Any, Any, Cipher]])
    assert_type(container.bind(Cipher, Cipher(), name="rsa"), None)


def resource_classes() -> None:
    assert_type(resource(Pool), type[Pool])


async def container_surface(container: Container, scope: ActiveScope) -> None:
    assert_type(container.scope(Scope.SESSION, session_id="s"), ActiveScope)
    assert_type(scope.resource_scope(), ActiveScope)
    assert_type(container.graph("dot"), str)
    assert_type(container.validate(), None)
    assert_type(container.metrics(), dict[str, RegistrationMetrics])
    assert_type(container.metrics()["UserRepo"].created, int)
    report = await container.health()
    assert_type(report, HealthReport)
    assert_type(report.status, HealthStatus)
    assert_type(report.resources["UserRepo"], ResourceHealth)
    assert_type(report.resources["UserRepo"].is_healthy, bool | None)
    assert_type(container.last_health, HealthReport | None)
    with container.override(UserRepo, UserRepo()):
        assert_type(container.get(UserRepo), UserRepo)
    with overrides(container, {UserRepo: UserRepo(), (Cipher, "aes"): Cipher()}):
        assert_type(await container.aget(Cipher, "aes"), Cipher)


async def async_injection(container: Container) -> None:
    @container.inject
    async def handler(repo: Inject[UserRepo]) -> int:
        assert_type(repo, UserRepo)
        return 1

    assert_type(await handler(UserRepo()), int)


def instrumentation() -> None:
    class Recorder:
        def on_created(self, registration: str, scope: Scope, seconds: float) -> None: ...
        def on_disposed(self, registration: str, scope: Scope, seconds: float) -> None: ...
        def on_failed(self, registration: str, scope: Scope, error: BaseException) -> None: ...

    Container(instrumentation=Recorder())
    Container(instrumentation=[Recorder(), Recorder()])
    Container(clock=FakeClock())
