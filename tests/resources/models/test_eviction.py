"""Eviction and unloading: least recently used first, models in use are held, every
evicted model is disposed and let go of."""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import weakref

import pytest

from tests.resources.models.linear import (
    LinearModel,
    Loader,
    eventually,
    fit_linear,
    probe,
    started,
)
from tether.resources.models import ModelRegistry

pytestmark = pytest.mark.anyio


def _register(registry: ModelRegistry, names: str) -> dict[str, Loader]:
    loaders = {name: Loader() for name in names}
    for name, loader in loaders.items():
        registry.register(name, loader)
    return loaders


# -- least recently used first -----------------------------------------------------------


async def test_the_least_recently_used_model_is_evicted_and_closed() -> None:
    async with started(max_loaded=2) as registry:
        loaders = _register(registry, "abc")
        a = await registry.get("a")
        b = await registry.get("b")
        await registry.get("a")  # a is now more recent than b

        await registry.get("c")

        assert registry.loaded() == ("a", "c")
        assert b.closed
        assert not a.closed
        assert registry.model_stats("b").evictions_total == 1
        assert registry.statistics().evictions_total == 1
        assert [loader.calls for loader in loaders.values()] == [1, 1, 1]


async def test_an_evicted_model_is_loaded_again_when_asked_for() -> None:
    async with started(max_loaded=1) as registry:
        loaders = _register(registry, "ab")
        first = await registry.get("a")
        await registry.get("b")

        again = await registry.get("a")

        assert again is not first
        assert first.closed
        assert not again.closed
        assert loaders["a"].calls == 2
        assert registry.loaded() == ("a",)


async def test_room_is_made_before_the_next_loader_runs() -> None:
    async with started(max_loaded=1) as registry:
        registry.register("a", Loader())
        a = await registry.get("a")
        seen: list[bool] = []

        def load_b() -> LinearModel:
            seen.append(a.closed)  # the evicted model is already disposed
            return fit_linear()

        registry.register("b", load_b)
        await registry.get("b")

        assert seen == [True]


async def test_an_evicted_model_is_disposed_and_no_reference_to_it_is_kept() -> None:
    disposed: list[int] = []
    async with started(max_loaded=1) as registry:
        registry.register("a", Loader(keep=False), dispose=lambda m: disposed.append(m.number))
        registry.register("b", Loader(keep=False))
        evicted = weakref.ref(await registry.get("a"))

        await registry.get("b")

        assert disposed == [1]
        assert evicted() is None


async def test_a_custom_dispose_hook_replaces_the_models_close() -> None:
    released: list[LinearModel] = []

    async def release(model: LinearModel) -> None:
        released.append(model)

    async with started() as registry:
        registry.register("a", Loader(), dispose=release)
        model = await registry.get("a")

        assert await registry.unload("a") is True

        assert released == [model]
        assert not model.closed


async def test_a_models_async_aclose_is_awaited_on_eviction() -> None:
    class Session:
        closed = False

        async def aclose(self) -> None:
            await asyncio.sleep(0)
            self.closed = True

    async with started(max_loaded=1) as registry:
        registry.register("session", Session)
        registry.register("b", Loader())
        session = await registry.get("session")

        await registry.get("b")

        assert session.closed


async def test_a_failing_dispose_hook_is_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(model: LinearModel) -> None:
        raise RuntimeError("driver gone")

    async with started() as registry:
        registry.register("a", Loader(), dispose=broken)
        await registry.get("a")

        with caplog.at_level(logging.WARNING, "tether.resources.models"):
            await registry.unload("a")

        assert registry.statistics().dispose_failures_total == 1
        assert registry.loaded() == ()
    assert "models[a]: disposing the model failed" in caplog.text


async def test_a_dispose_hook_past_unload_timeout_is_abandoned() -> None:
    async def hang(model: LinearModel) -> None:
        await asyncio.Event().wait()

    async with started(unload_timeout=0.2) as registry:
        registry.register("a", Loader(), dispose=hang)
        await registry.get("a")

        await registry.unload("a")

        assert registry.statistics().dispose_failures_total == 1


async def test_unloading_a_model_that_is_not_loaded_returns_false() -> None:
    async with started() as registry:
        registry.register("a", Loader())

        assert await registry.unload("a") is False


async def test_eviction_runs_without_pytorch_and_never_imports_it() -> None:
    if "torch" in sys.modules:
        pytest.skip("another test imported torch")
    async with started(max_loaded=1) as registry:
        _register(registry, "ab")
        a = await registry.get("a")

        await registry.get("b")

        assert a.closed
    assert "torch" not in sys.modules


# -- models in use -----------------------------------------------------------------------


async def test_a_model_in_use_is_not_evicted_until_it_is_released() -> None:
    async with started(max_loaded=1) as registry:
        _register(registry, "ab")

        async with registry.use("a") as a:
            b = await registry.get("b")
            # Over the limit for now: the only other model is in use.
            assert set(registry.loaded()) == {"a", "b"}
            assert a.predict(probe()).shape == (1,)
            assert not a.closed

        # a was used last (its block just ended), so b goes.
        assert registry.loaded() == ("a",)
        await eventually(lambda: b.closed)
        assert not a.closed


async def test_a_model_unloaded_while_in_use_is_disposed_when_released() -> None:
    async with started() as registry:
        _register(registry, "a")

        async with registry.use("a") as a:
            assert await registry.unload("a") is True
            assert registry.loaded() == ()
            assert a.predict(probe()).shape == (1,)
            fresh = await registry.get("a")  # the next caller gets a new one
            assert fresh is not a
            assert not a.closed

        await eventually(lambda: a.closed)
        assert not fresh.closed
        assert registry.statistics().in_use == 0


async def test_a_model_handed_out_by_get_is_disposed_on_eviction_even_if_still_held() -> None:
    # get() hands out a plain reference: this is what use() is for.
    async with started(max_loaded=1) as registry:
        _register(registry, "ab")
        a = await registry.get("a")

        await registry.get("b")

        assert a.closed


async def test_concurrent_users_of_two_models_with_room_for_one_all_get_live_models() -> None:
    async with started(max_loaded=1) as registry:
        _register(registry, "ab")

        async def predict(name: str) -> bool:
            async with registry.use(name) as model:
                await asyncio.sleep(0.001)
                model.predict(probe())  # raises if it was closed under us
                return True

        results = await asyncio.gather(*(predict("ab"[i % 2]) for i in range(40)))

        assert all(results)
        assert len(registry.loaded()) == 1
        assert registry.statistics().in_use == 0


async def test_a_storm_of_users_and_unloads_never_sees_a_disposed_model() -> None:
    loaders = {name: Loader() for name in "abc"}
    rng = random.Random(3)
    async with started(max_loaded=2) as registry:
        for name, loader in loaders.items():
            registry.register(name, loader)

        async def user() -> None:
            await asyncio.sleep(rng.random() / 10)  # arrivals spread over 100 ms
            async with registry.use(rng.choice("abc")) as model:
                await asyncio.sleep(rng.random() / 500)
                model.predict(probe())  # raises if it was closed under us

        async def unloader() -> None:
            for _ in range(20):
                await asyncio.sleep(0.005)
                await registry.unload(rng.choice("abc"))

        await asyncio.gather(*(user() for _ in range(300)), unloader())
        stats = registry.statistics()

    made = [model for loader in loaders.values() for model in loader.made]
    assert stats.in_use == 0
    assert stats.loaded <= 2
    assert stats.loads_total == len(made)
    assert stats.evictions_total > 0
    assert [model.close_calls for model in made] == [1] * len(made)  # each disposed once
