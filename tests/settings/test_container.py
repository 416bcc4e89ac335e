"""A settings instance is a plain value: bound to a real container, injected and autowired."""

from __future__ import annotations

from pathlib import Path

import pytest

from tether import Container, Inject, Scope

from .models import AppSettings, Database

pytestmark = pytest.mark.anyio


class Repository:
    def __init__(self, settings: AppSettings) -> None:
        self.url = settings.database.url


@pytest.fixture
def container(workdir: Path) -> Container:
    (workdir / "config.yaml").write_text("database:\n  url: postgres://db/app\n")
    container = Container()
    container.bind(AppSettings, AppSettings.load("config.yaml"))
    container.bind(Repository, scope=Scope.REQUEST)
    return container


def test_an_injected_function_receives_the_bound_settings(container: Container) -> None:
    @container.inject
    def handler(settings: Inject[AppSettings]) -> str:
        return settings.get("database.url")  # type: ignore[no-any-return]

    assert handler() == "postgres://db/app"  # type: ignore[call-arg]


async def test_a_class_is_autowired_from_the_settings(container: Container) -> None:
    async with container, container.scope() as request:
        repository = await request.aget(Repository)

    assert repository.url == "postgres://db/app"


async def test_every_scope_gets_the_one_bound_instance(container: Container) -> None:
    bound = container.get(AppSettings)

    async with container:
        async with container.scope() as first:
            one = await first.aget(AppSettings)
        async with container.scope() as second:
            two = await second.aget(AppSettings)

    assert one is bound
    assert two is bound


def test_an_override_swaps_the_settings_for_a_test(container: Container, workdir: Path) -> None:
    replacement = AppSettings.load(database=Database(url="sqlite:///test.db"))

    with container.override(AppSettings, replacement), container.scope() as request:
        assert request.get(Repository).url == "sqlite:///test.db"
