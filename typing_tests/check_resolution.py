"""Checked by mypy (``python3 dev.py test``), never run: what the API promises to a type checker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, assert_type

from tether import ActiveScope, Container, Inject, Named, Scope


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
