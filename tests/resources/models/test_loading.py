"""Loading: lazily, once however many ask, off the event loop, with retries, a
deadline and a warm-up."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from tests.resources.models.linear import (
    AsyncLoader,
    LinearModel,
    Loader,
    eventually,
    expected,
    fit_linear,
    probe,
    started,
)
from tether.exceptions import CircuitOpen, ResourceError, ResourceTimeout

pytestmark = pytest.mark.anyio


# -- lazy, exactly once ------------------------------------------------------------------


async def test_a_model_is_loaded_on_first_use_not_before() -> None:
    loader = Loader()
    async with started() as registry:
        registry.register("price", loader)
        assert loader.calls == 0
        assert registry.loaded() == ()

        model = await registry.get("price")

        assert loader.calls == 1
        assert registry.loaded() == ("price",)
        x = np.random.default_rng(7).normal(size=(5, 4))
        np.testing.assert_allclose(model.predict(x), expected(x), atol=0.05)


async def test_later_calls_get_the_same_model_without_loading_again() -> None:
    loader = Loader()
    async with started() as registry:
        registry.register("price", loader)

        first = await registry.get("price")
        again = await registry.get("price")

        assert again is first
        assert loader.calls == 1


async def test_a_hundred_concurrent_first_callers_share_one_load() -> None:
    gate = threading.Event()
    loader = Loader(gate=gate)
    async with started() as registry:
        registry.register("price", loader)
        callers = [asyncio.create_task(registry.get("price")) for _ in range(100)]
        await eventually(lambda: loader.calls == 1)
        await asyncio.sleep(0.05)  # let every caller reach the load
        gate.set()

        models = await asyncio.gather(*callers)

        assert loader.calls == 1
        assert all(m is models[0] for m in models)
        assert registry.statistics().loads_total == 1


async def test_a_hundred_concurrent_users_of_an_async_loader_share_one_load() -> None:
    loader = AsyncLoader()
    loader.gate = asyncio.Event()
    async with started() as registry:
        registry.register("price", loader)

        async def predict() -> float:
            async with registry.use("price") as model:
                return float(model.predict(probe())[0])

        callers = [asyncio.create_task(predict()) for _ in range(100)]
        await eventually(lambda: loader.calls == 1)
        loader.gate.set()
        answers = await asyncio.gather(*callers)

        assert loader.calls == 1
        assert len(set(answers)) == 1
        assert registry.statistics().in_use == 0


async def test_a_cancelled_caller_leaves_the_load_going_for_the_others() -> None:
    loader = AsyncLoader()
    loader.gate = asyncio.Event()
    async with started() as registry:
        registry.register("price", loader)
        first = asyncio.create_task(registry.get("price"))
        second = asyncio.create_task(registry.get("price"))
        await eventually(lambda: loader.calls == 1)

        first.cancel()
        await asyncio.gather(first, return_exceptions=True)
        loader.gate.set()

        assert isinstance(await second, LinearModel)
        assert first.cancelled()
        assert loader.cancelled == 0
        assert loader.calls == 1


async def test_an_unknown_name_is_a_lookup_error_naming_the_registered_ones() -> None:
    async with started() as registry:
        registry.register("price", Loader())

        with pytest.raises(LookupError, match=r"no model named 'cost'.*registered: 'price'"):
            await registry.get("cost")


async def test_registering_a_name_twice_is_refused() -> None:
    async with started() as registry:
        registry.register("price", Loader())

        with pytest.raises(ValueError, match="'price' is already registered"):
            registry.register("price", Loader())


async def test_a_loader_that_is_not_callable_is_refused() -> None:
    async with started() as registry:
        with pytest.raises(TypeError, match="loader of model 'price' must be callable"):
            registry.register("price", fit_linear())  # type: ignore[arg-type]


# -- off the event loop ------------------------------------------------------------------


async def test_a_sync_loader_runs_in_a_worker_thread_while_the_loop_keeps_running() -> None:
    # The loader blocks until the test, running on the event loop, opens the gate: if
    # it ran on the loop, the loop could not tick, and the gate would never open.
    gate = threading.Event()
    loader = Loader(gate=gate)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    async with started() as registry:
        registry.register("price", loader)
        ticker = asyncio.create_task(tick())
        loading = asyncio.create_task(registry.get("price"))
        await eventually(lambda: loader.calls == 1)
        seen = ticks
        await eventually(lambda: ticks >= seen + 5)

        assert not loading.done()
        gate.set()
        model = await loading
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)

    assert isinstance(model, LinearModel)
    assert threading.get_ident() not in loader.threads


async def test_a_sync_loader_that_returns_a_coroutine_has_it_awaited() -> None:
    async def load() -> LinearModel:
        return fit_linear()

    async with started() as registry:
        registry.register("price", lambda: load())

        assert isinstance(await registry.get("price"), LinearModel)


# -- failures and retries ----------------------------------------------------------------


async def test_a_failed_load_reaches_every_waiter_and_is_not_kept() -> None:
    loader = AsyncLoader(fail_first=1)
    loader.gate = asyncio.Event()
    async with started() as registry:
        registry.register("price", loader)
        waiters = [asyncio.create_task(registry.get("price")) for _ in range(10)]
        await eventually(lambda: loader.calls == 1)
        loader.gate.set()

        results = await asyncio.gather(*waiters, return_exceptions=True)

        assert all(isinstance(r, ResourceError) for r in results)
        assert {id(r) for r in results} == {id(results[0])}
        assert registry.loaded() == ()
        # The next call loads again, and this time succeeds.
        assert isinstance(await registry.get("price"), LinearModel)
        assert loader.calls == 2


async def test_a_failed_load_names_the_model_and_keeps_the_loader_error_as_cause() -> None:
    async with started() as registry:
        registry.register("price", Loader(fail_first=1))

        with pytest.raises(ResourceError) as caught:
            await registry.get("price")

    assert caught.value.resource == "models[price]"
    assert "load failed after 1 attempt: OSError: weights file unreadable" in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)


async def test_load_retries_recover_from_a_loader_that_fails_twice() -> None:
    loader = Loader(fail_first=2)
    async with started(max_retries=2, retry_backoff=0.01) as registry:
        registry.register("price", loader)

        model = await registry.get("price")

        assert isinstance(model, LinearModel)
        assert loader.calls == 3
        stats = registry.model_stats("price")
        assert (stats.loads_total, stats.load_failures_total, stats.load_retries_total) == \
            (1, 0, 2)


async def test_a_load_fails_once_its_retries_are_spent() -> None:
    loader = Loader(fail_first=5)
    async with started(max_retries=2, retry_backoff=0.01) as registry:
        registry.register("price", loader)

        with pytest.raises(ResourceError, match="load failed after 3 attempts"):
            await registry.get("price")

        assert loader.calls == 3
        assert registry.statistics().load_failures_total == 1


async def test_a_loader_returning_none_fails_the_load() -> None:
    async with started() as registry:
        registry.register("price", lambda: None)

        with pytest.raises(ResourceError, match="returned None; it must return the model"):
            await registry.get("price")


async def test_the_breaker_stops_loading_a_model_that_keeps_failing() -> None:
    loader = Loader(fail_first=100)
    async with started(circuit_breaker_threshold=2, circuit_breaker_reset=60) as registry:
        registry.register("price", loader)
        registry.register("other", Loader())
        for _ in range(2):
            with pytest.raises(ResourceError):
                await registry.get("price")

        with pytest.raises(CircuitOpen):
            await registry.get("price")

        assert loader.calls == 2
        # Each model has a breaker of its own.
        assert isinstance(await registry.get("other"), LinearModel)


# -- deadline ----------------------------------------------------------------------------


async def test_a_load_past_the_timeout_fails_with_resource_timeout() -> None:
    loader = AsyncLoader()
    loader.gate = asyncio.Event()  # never set
    async with started(timeout=0.2) as registry:
        registry.register("price", loader)

        with pytest.raises(ResourceTimeout) as caught:
            await registry.get("price")

        assert caught.value.resource == "models[price]"
        assert "load did not finish within timeout=0.2s" in str(caught.value)
        assert loader.cancelled == 1
        assert registry.statistics().failures_by_kind == {"ResourceTimeout": 1}


async def test_a_sync_load_past_the_timeout_has_its_late_model_disposed() -> None:
    gate = threading.Event()
    loader = Loader(gate=gate)
    async with started(timeout=0.2) as registry:
        registry.register("price", loader)
        with pytest.raises(ResourceTimeout):
            await registry.get("price")

        gate.set()  # the thread goes on and returns a model nobody waits for
        await eventually(lambda: len(loader.made) == 1 and loader.made[0].closed)

        assert registry.loaded() == ()


async def test_the_timeout_covers_retries_and_their_backoff() -> None:
    loader = Loader(fail_first=100)
    async with started(timeout=0.3, max_retries=20, retry_backoff=0.05,
                       retry_backoff_max=0.05) as registry:
        registry.register("price", loader)

        with pytest.raises(ResourceError):
            await registry.get("price")

        assert loader.calls < 21  # the deadline ended the retries, not max_retries


# -- warm-up -----------------------------------------------------------------------------


async def test_warm_up_runs_once_per_load_before_the_model_is_handed_out() -> None:
    warmed: list[LinearModel] = []

    def warm_up(model: LinearModel) -> None:
        model.predict(probe())
        warmed.append(model)

    async with started() as registry:
        registry.register("price", Loader(), warm_up=warm_up)
        models = await asyncio.gather(*(registry.get("price") for _ in range(10)))
        assert warmed == [models[0]]

        await registry.unload("price")
        reloaded = await registry.get("price")

        assert warmed == [models[0], reloaded]
        assert reloaded.predictions == 1


async def test_an_async_warm_up_is_awaited() -> None:
    warmed: list[LinearModel] = []

    async def warm_up(model: LinearModel) -> None:
        warmed.append(model)

    async with started() as registry:
        registry.register("price", Loader(), warm_up=warm_up)

        assert warmed == [await registry.get("price")]


async def test_a_failing_warm_up_fails_the_load_and_disposes_the_model() -> None:
    loader = Loader()

    def warm_up(model: LinearModel) -> None:
        raise ValueError("shape mismatch")

    async with started() as registry:
        registry.register("price", loader, warm_up=warm_up)

        with pytest.raises(ResourceError, match="ValueError: shape mismatch"):
            await registry.get("price")

        assert [m.closed for m in loader.made] == [True]
        assert registry.loaded() == ()


async def test_warm_up_false_in_the_config_skips_warm_up_hooks() -> None:
    warmed: list[LinearModel] = []
    async with started(warm_up=False) as registry:
        registry.register("price", Loader(), warm_up=warmed.append)

        await registry.get("price")

        assert warmed == []
