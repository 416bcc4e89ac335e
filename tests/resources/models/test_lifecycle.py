"""The registry's life in a Container: start, preload, dispose, and use outside it."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from tests.resources.models.linear import AsyncLoader, LinearModel, Loader, eventually
from tether import Container
from tether.exceptions import ClosedError, ResourceError, StartupError
from tether.resources.models import ModelRegistry, ModelsConfig
from tether.testing import assert_no_leaks

pytestmark = pytest.mark.anyio


async def test_the_container_starts_the_registry_and_disposes_every_model_at_close() -> None:
    registry = ModelRegistry(ModelsConfig())
    loaders = {name: Loader() for name in "ab"}
    for name, loader in loaders.items():
        registry.register(name, loader)
    container = Container()
    container.bind(ModelRegistry, registry)

    async with container:
        models = await container.aget(ModelRegistry)
        a = await models.get("a")
        b = await models.get("b")
        assert container.statistics()["ModelRegistry"].loaded == 2

    assert a.closed
    assert b.closed
    assert models.loaded() == ()
    assert_no_leaks(container)


async def test_the_registry_is_autowired_from_its_config() -> None:
    container = Container()
    container.bind(ModelsConfig, ModelsConfig(name="ml", max_loaded=1))
    container.bind(ModelRegistry)

    async with container:
        models = await container.aget(ModelRegistry)
        models.register("a", Loader())
        assert isinstance(await models.get("a"), LinearModel)

    assert models.name == "ml"
    assert models.config.max_loaded == 1


async def test_preloaded_models_are_loaded_at_start_up() -> None:
    registry = ModelRegistry(ModelsConfig())
    preloaded, lazy = Loader(), Loader()
    registry.register("hot", preloaded, preload=True)
    registry.register("cold", lazy)
    container = Container()
    container.bind(ModelRegistry, registry, eager=True)

    async with container:
        assert registry.loaded() == ("hot",)
        assert (preloaded.calls, lazy.calls) == (1, 0)


async def test_a_failing_preload_fails_start_up_and_unloads_the_others() -> None:
    registry = ModelRegistry(ModelsConfig())
    good = Loader()
    registry.register("good", good, preload=True)
    registry.register("bad", Loader(fail_first=1), preload=True)
    container = Container()
    container.bind(ModelRegistry, registry, eager=True)

    with pytest.raises(StartupError, match=r"start-up failed at ModelRegistry.*models\[bad\]"):
        await container.start()

    assert [m.closed for m in good.made] == [True]
    assert registry.loaded() == ()


async def test_more_preloads_than_max_loaded_are_refused() -> None:
    registry = ModelRegistry(ModelsConfig(max_loaded=1))
    registry.register("a", Loader(), preload=True)

    with pytest.raises(ValueError, match="2 models with preload=True do not fit"):
        registry.register("b", Loader(), preload=True)


async def test_use_before_initialize_says_how_to_start_it() -> None:
    registry = ModelRegistry(ModelsConfig())
    registry.register("a", Loader())

    with pytest.raises(ResourceError, match="not initialized: resolve it from the container"):
        await registry.get("a")


async def test_every_use_after_dispose_raises_closed_error() -> None:
    registry = ModelRegistry(ModelsConfig())
    registry.register("a", Loader())
    await registry.initialize()
    await registry.get("a")
    await registry.dispose()

    with pytest.raises(ClosedError, match="ModelRegistry 'models'"):
        await registry.get("a")
    with pytest.raises(ClosedError):
        async with registry.use("a"):
            pass
    with pytest.raises(ClosedError):
        await registry.unload("a")
    with pytest.raises(ClosedError):
        await registry.health_check()
    with pytest.raises(ClosedError):
        registry.register("b", Loader())
    with pytest.raises(ClosedError):
        await registry.initialize()
    assert registry.statistics().loads_total == 1
    assert registry.model_stats("a").loads_total == 1


async def test_dispose_twice_is_harmless() -> None:
    registry = ModelRegistry(ModelsConfig())
    loader = Loader()
    registry.register("a", loader)
    await registry.initialize()
    await registry.get("a")

    await registry.dispose()
    await registry.dispose()

    assert [m.closed for m in loader.made] == [True]


async def test_dispose_stops_a_load_in_flight_and_its_callers_get_closed_error() -> None:
    registry = ModelRegistry(ModelsConfig())
    loader = AsyncLoader()
    loader.gate = asyncio.Event()
    registry.register("a", loader)
    await registry.initialize()
    callers = [asyncio.create_task(registry.get("a")) for _ in range(3)]
    await eventually(lambda: loader.calls == 1)

    await registry.dispose()
    results = await asyncio.gather(*callers, return_exceptions=True)

    assert all(isinstance(r, ClosedError) for r in results)
    assert loader.cancelled == 1


async def test_dispose_does_not_wait_for_a_sync_loader_and_disposes_its_late_model() -> None:
    gate = threading.Event()
    loader = Loader(gate=gate)
    registry = ModelRegistry(ModelsConfig(close_timeout=0.2))
    registry.register("a", loader)
    await registry.initialize()
    caller = asyncio.create_task(registry.get("a"))
    await eventually(lambda: loader.calls == 1)

    await registry.dispose()
    gate.set()

    with pytest.raises(ClosedError):
        await caller
    await eventually(lambda: len(loader.made) == 1 and loader.made[0].closed)


async def test_dispose_waits_for_models_in_use_then_disposes_them() -> None:
    registry = ModelRegistry(ModelsConfig(close_timeout=10))
    registry.register("a", Loader())
    await registry.initialize()
    release = asyncio.Event()
    seen: list[bool] = []

    async def predict() -> None:
        async with registry.use("a") as model:
            await release.wait()
            seen.append(model.closed)

    user = asyncio.create_task(predict())
    await eventually(lambda: registry.statistics().in_use == 1)
    closing = asyncio.create_task(registry.dispose())
    await asyncio.sleep(0.05)
    assert not closing.done()

    release.set()
    await closing
    await user

    assert seen == [False]
    assert registry.statistics().in_use == 0


async def test_dispose_disposes_a_model_still_in_use_after_close_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = ModelRegistry(ModelsConfig(close_timeout=0.2))
    loader = Loader()
    registry.register("a", loader)
    await registry.initialize()

    with caplog.at_level(logging.WARNING, "tether.resources.models"):
        async with registry.use("a") as model:
            await registry.dispose()
            assert model.closed

    assert "1 model(s) still in use after close_timeout=0.2s" in caplog.text


async def test_repr_shows_the_state_and_the_loaded_count() -> None:
    registry = ModelRegistry(ModelsConfig(max_loaded=3))
    registry.register("a", Loader())
    assert repr(registry) == \
        "<ModelRegistry 'models' not initialized, 0 of 1 model(s) loaded, max_loaded=3>"
    await registry.initialize()
    await registry.get("a")

    assert repr(registry) == "<ModelRegistry 'models' open, 1 of 1 model(s) loaded, max_loaded=3>"
    await registry.dispose()
