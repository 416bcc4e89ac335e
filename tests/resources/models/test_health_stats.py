"""Statistics, the memory estimate and health checks."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
from typing import Any

import numpy as np
import pytest

from tests.resources.models.linear import LinearModel, Loader, probe, started
from tether import Container, HealthStatus
from tether.exceptions import ResourceError
from tether.resources.models import ModelRegistry, ModelRegistryStats, ModelsConfig

pytestmark = pytest.mark.anyio


class Embedding:
    """A model whose arrays sit in an attribute and in a list attribute."""

    def __init__(self) -> None:
        self.table = np.zeros((1000, 100), dtype=np.float32)  # 400,000 bytes
        self.layers = [np.ones(10), np.ones(10)]  # 2 x 80 bytes
        self.labels = ("neg", "pos")


class Lookup:
    """A model with no arrays at all."""

    def __init__(self) -> None:
        self.words = {"good": 1.0, "bad": -1.0}


# -- memory estimate ---------------------------------------------------------------------


async def test_memory_is_estimated_from_the_arrays_a_model_holds() -> None:
    async with started() as registry:
        registry.register("embedding", Embedding)
        await registry.get("embedding")

        assert registry.model_stats("embedding").memory_bytes == 400_000 + 160
        assert registry.statistics().memory_bytes == 400_160


async def test_a_model_that_is_an_array_counts_its_bytes() -> None:
    async with started() as registry:
        registry.register("weights", lambda: np.zeros(256, dtype=np.float64))
        await registry.get("weights")

        assert registry.model_stats("weights").memory_bytes == 2048


async def test_a_size_callable_replaces_the_estimate() -> None:
    async with started() as registry:
        registry.register("embedding", Embedding, size=lambda m: 7 * 1024**2)
        await registry.get("embedding")

        assert registry.model_stats("embedding").memory_bytes == 7 * 1024**2


async def test_a_model_without_arrays_falls_back_to_getsizeof() -> None:
    async with started() as registry:
        registry.register("lookup", Lookup)
        model = await registry.get("lookup")

        assert registry.model_stats("lookup").memory_bytes == sys.getsizeof(model)


async def test_a_size_callable_that_raises_is_logged_and_the_estimate_used(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(model: Any) -> int:
        raise AttributeError("no such field")

    async with started() as registry:
        registry.register("embedding", Embedding, size=broken)
        with caplog.at_level(logging.WARNING, "tether.resources.models"):
            await registry.get("embedding")

        assert registry.model_stats("embedding").memory_bytes == 400_160
    assert "size() of a model raised" in caplog.text


# -- statistics --------------------------------------------------------------------------


async def test_statistics_count_loads_failures_and_memory_per_model() -> None:
    async with started(max_loaded=1) as registry:
        registry.register("embedding", Embedding)
        registry.register("price", Loader(fail_first=1))
        with pytest.raises(ResourceError):
            await registry.get("price")
        await registry.get("price")
        await registry.get("embedding")  # evicts price

        stats = registry.statistics()

    assert isinstance(stats, ModelRegistryStats)
    assert (stats.registered, stats.loaded, stats.loading, stats.in_use) == (2, 1, 0, 0)
    assert (stats.loads_total, stats.load_failures_total, stats.evictions_total) == (2, 1, 1)
    assert stats.unloads_total == 1
    assert dict(stats.failures_by_kind) == {"ResourceError": 1}
    assert dict(stats.loaded_by_model) == {"embedding": 1, "price": 0}
    assert dict(stats.memory_bytes_by_model) == {"embedding": 400_160, "price": 0}
    assert set(stats.load_seconds_last_by_model) == {"embedding", "price"}
    assert all(s > 0 for s in stats.load_seconds_last_by_model.values())
    assert stats.load_seconds_max > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.loaded = 5  # type: ignore[misc]


async def test_model_stats_show_one_models_state() -> None:
    async with started() as registry:
        registry.register("price", Loader(fail_first=1))
        before = registry.model_stats("price")
        with pytest.raises(ResourceError):
            await registry.get("price")
        failed = registry.model_stats("price")

        async with registry.use("price"):
            held = registry.model_stats("price")

    assert (before.loaded, before.last_used, before.load_seconds_last) == (False, None, None)
    assert failed.last_error is not None
    assert "OSError" in failed.last_error
    assert (held.loaded, held.in_use, held.loads_total, held.load_failures_total) == \
        (True, 1, 1, 1)
    assert held.last_error is None
    assert held.last_used is not None
    assert held.memory_bytes > 0


async def test_a_model_in_use_counts_in_statistics_until_released() -> None:
    async with started() as registry:
        registry.register("price", Loader())

        async with registry.use("price"), registry.use("price"):
            assert registry.statistics().in_use == 1
            assert registry.model_stats("price").in_use == 2

        assert registry.statistics().in_use == 0


# -- health ------------------------------------------------------------------------------


async def test_health_check_passes_and_loads_nothing_when_nothing_is_loaded() -> None:
    loader = Loader()
    async with started() as registry:
        registry.register("price", loader, check=lambda m: False)

        assert await registry.health_check() is True

        assert loader.calls == 0
        assert registry.loaded() == ()


async def test_health_check_runs_each_loaded_models_check() -> None:
    checked: list[str] = []

    def check(name: str) -> Any:
        def run(model: LinearModel) -> bool:
            checked.append(name)
            return bool(np.isfinite(model.predict(probe())).all())
        return run

    async with started() as registry:
        for name in "abc":
            registry.register(name, Loader(), check=check(name))
        await registry.get("a")
        await registry.get("c")

        assert await registry.health_check() is True

        assert sorted(checked) == ["a", "c"]
        assert dict(registry.statistics().healthy_by_model) == {"a": 1, "c": 1}


async def test_a_failing_model_check_makes_the_registry_unhealthy_naming_it() -> None:
    def check(model: LinearModel) -> None:
        raise ValueError("predictions are NaN")

    async with started() as registry:
        registry.register("a", Loader())
        registry.register("b", Loader(), check=check)
        await registry.get("a")
        await registry.get("b")

        with pytest.raises(ResourceError, match=r"'b' \(ValueError: predictions are NaN\)"):
            await registry.health_check()

        assert dict(registry.statistics().healthy_by_model) == {"a": 1, "b": 0}
        assert registry.model_stats("b").healthy is False


async def test_a_check_returning_false_or_running_too_long_fails() -> None:
    async def false(model: LinearModel) -> bool:
        return False

    async def slow(model: LinearModel) -> bool:
        await asyncio.sleep(30)
        return True

    async with started(check_timeout=0.2) as registry:
        registry.register("false", Loader(), check=false)
        registry.register("slow", Loader(), check=slow)
        await registry.get("false")
        await registry.get("slow")

        with pytest.raises(ResourceError) as caught:
            await registry.health_check()

    assert "'false' (check returned False)" in str(caught.value)
    assert "'slow' (check timed out after check_timeout=0.2s)" in str(caught.value)


async def test_a_health_check_does_not_count_as_a_use() -> None:
    async with started(max_loaded=2) as registry:
        registry.register("a", Loader(), check=lambda m: True)  # checked, least recent
        registry.register("b", Loader())
        registry.register("c", Loader())
        await registry.get("a")
        await registry.get("b")

        await registry.health_check()
        await registry.get("c")

        assert registry.loaded() == ("b", "c")


async def test_container_health_reports_the_failing_model() -> None:
    registry = ModelRegistry(ModelsConfig(name="ml"))
    registry.register("price", Loader(), check=lambda m: m.predict(probe()).size == 0)
    container = Container()
    container.bind(ModelRegistry, registry)

    async with container:
        models = await container.aget(ModelRegistry)
        assert (await container.health()).status is HealthStatus.HEALTHY
        await models.get("price")

        report = await container.health()

    health = report.resources["ModelRegistry"]
    assert report.status is HealthStatus.UNHEALTHY
    assert health.last_error == "ResourceError: ml: model check failed: 'price' (check " \
        "returned False)"
