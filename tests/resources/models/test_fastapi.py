"""Models injected into FastAPI endpoints with ``bind_model``: a real app, served by
Starlette's TestClient, with tether installed."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.resources.models.linear import LinearModel, Loader, expected
from tether import Container, Named
from tether.fastapi import Inject, install
from tether.resources.models import ModelRegistry, ModelsConfig, bind_model

Price = Annotated[LinearModel, Named("price")]
Demand = Annotated[LinearModel, Named("demand")]


def make_app(registry: ModelRegistry, *, registry_name: str | None = None) -> FastAPI:
    container = Container()
    container.bind(ModelRegistry, registry, name=registry_name)
    bind_model(container, LinearModel, "price", registry=registry_name)
    bind_model(container, LinearModel, "demand", registry=registry_name)
    app = FastAPI()
    install(app, container)

    @app.post("/price")
    async def price(rows: list[list[float]], model: Inject[Price]) -> dict[str, Any]:
        return {"y": model.predict(np.array(rows)).tolist(),
                "in_use": registry.statistics().in_use}

    @app.post("/both")
    def both(rows: list[list[float]], price: Inject[Price], demand: Inject[Demand]) -> Any:
        x = np.array(rows)
        return {"price": price.predict(x).tolist(), "demand": demand.predict(x).tolist(),
                "loaded": sorted(registry.loaded())}

    return app


def models(max_loaded: int | None = None, **loaders: Loader) -> ModelRegistry:
    registry = ModelRegistry(ModelsConfig(max_loaded=max_loaded))
    for name in ("price", "demand"):
        registry.register(name, loaders.get(name) or Loader())
    return registry


ROWS = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]]


def test_an_endpoint_gets_the_model_loaded_once_and_held_for_the_request() -> None:
    loader = Loader()
    registry = models(price=loader)
    app = make_app(registry)

    with TestClient(app) as client:
        assert registry.loaded() == ()
        answers = [client.post("/price", json=ROWS).json() for _ in range(3)]
        after = registry.statistics().in_use

    np.testing.assert_allclose(answers[0]["y"], expected(np.array(ROWS)), atol=0.05)
    assert [a["in_use"] for a in answers] == [1, 1, 1]
    assert after == 0
    assert loader.calls == 1
    assert [m.closed for m in loader.made] == [True]  # disposed when the app stopped


def test_a_model_that_fails_to_load_answers_503_and_loads_on_the_next_request() -> None:
    registry = models(price=Loader(fail_first=1))
    app = make_app(registry)

    with TestClient(app) as client:
        failed = client.post("/price", json=ROWS)
        recovered = client.post("/price", json=ROWS)

    assert failed.status_code == 503
    assert failed.json()["error"] == "unavailable"
    assert recovered.status_code == 200


def test_two_models_held_by_one_request_are_both_kept_past_max_loaded() -> None:
    price, demand = Loader(), Loader()
    registry = models(max_loaded=1, price=price, demand=demand)
    app = make_app(registry)

    with TestClient(app) as client:
        answer = client.post("/both", json=ROWS)
        after = registry.loaded()

    assert answer.status_code == 200
    assert answer.json()["loaded"] == ["demand", "price"]
    assert len(after) == 1
    assert sum(m.closed for m in [*price.made, *demand.made]) == 2


def test_models_of_a_named_registry_are_injected() -> None:
    registry = models()
    app = make_app(registry, registry_name="gpu")

    with TestClient(app) as client:
        answer = client.post("/price", json=ROWS)

    assert answer.status_code == 200
    assert registry.statistics().loads_total == 1


def test_metrics_carry_one_series_per_model() -> None:
    registry = models()
    app = make_app(registry)

    with TestClient(app) as client:
        client.post("/price", json=ROWS)
        text = client.get("/metrics").text

    lines = [line for line in text.splitlines() if line.startswith("tether_resource_")]
    assert 'tether_resource_loaded_by_model{kind="price",resource="ModelRegistry"} 1.0' in lines
    assert 'tether_resource_loaded_by_model{kind="demand",resource="ModelRegistry"} 0.0' in lines
    assert 'tether_resource_memory_bytes_by_model{kind="price",resource="ModelRegistry"} 32.0' \
        in lines
    assert 'tether_resource_loads_total{resource="ModelRegistry"} 1.0' in lines
