"""Small real models for the registry tests: linear regressions fitted with NumPy on
generated data, and loaders that record what the registry did with them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np

from tests.waiting import eventually as eventually
from tether.resources.models import ModelRegistry, ModelsConfig

TRUE_COEF = np.array([1.5, -2.0, 0.5, 3.0])
TRUE_INTERCEPT = 0.7
FEATURES = len(TRUE_COEF)


class LinearModel:
    """``y = x @ coef + intercept``; ``close()`` marks it unusable, like a freed model."""

    def __init__(self, coef: np.ndarray, intercept: float, number: int = 0) -> None:
        self.coef = coef
        self.intercept = intercept
        self.number = number
        self.closed = False
        self.close_calls = 0
        self.predictions = 0

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.closed:
            raise RuntimeError(f"model {self.number} was closed")
        self.predictions += 1
        return np.asarray(x @ self.coef + self.intercept)

    def close(self) -> None:
        self.closed = True
        self.close_calls += 1

    def __repr__(self) -> str:
        return f"LinearModel({self.number})"


def fit_linear(seed: int = 0, samples: int = 200, number: int = 0) -> LinearModel:
    """Least squares on ``samples`` noisy points of the true line."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, FEATURES))
    y = x @ TRUE_COEF + TRUE_INTERCEPT + rng.normal(scale=0.01, size=samples)
    design = np.hstack([x, np.ones((samples, 1))])
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    return LinearModel(solution[:-1], float(solution[-1]), number)


def probe() -> np.ndarray:
    """One row of inputs, as a warm-up or a check would predict."""
    return np.ones((1, FEATURES))


def expected(x: np.ndarray) -> np.ndarray:
    return np.asarray(x @ TRUE_COEF + TRUE_INTERCEPT)


class Loader:
    """A sync loader (the registry runs it in a worker thread) that fits a model per
    call. ``fail_first`` calls raise ``OSError``; with a ``gate``, each call waits for
    it (up to 10 s, then raises: a loader blocking the event loop never sees it set).
    ``keep=False`` keeps no reference to the models it made."""

    def __init__(self, *, fail_first: int = 0, gate: threading.Event | None = None,
                 keep: bool = True) -> None:
        self.calls = 0
        self.fail_first = fail_first
        self.gate = gate
        self.keep = keep
        self.made: list[LinearModel] = []
        self.threads: set[int] = set()
        self._lock = threading.Lock()

    def __call__(self) -> LinearModel:
        with self._lock:
            self.calls += 1
            number = self.calls
            self.threads.add(threading.get_ident())
        if self.gate is not None and not self.gate.wait(timeout=10):
            raise RuntimeError("the gate was never opened")
        if number <= self.fail_first:
            raise OSError(f"weights file unreadable (call {number})")
        model = fit_linear(seed=number, number=number)
        if self.keep:
            with self._lock:
                self.made.append(model)
        return model


class AsyncLoader:
    """An async loader; each call waits for ``gate`` (when set) on the event loop."""

    def __init__(self, *, fail_first: int = 0) -> None:
        self.calls = 0
        self.fail_first = fail_first
        self.gate: asyncio.Event | None = None
        self.cancelled = 0
        self.made: list[LinearModel] = []

    async def __call__(self) -> LinearModel:
        self.calls += 1
        number = self.calls
        try:
            if self.gate is not None:
                await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if number <= self.fail_first:
            raise OSError(f"weights file unreadable (call {number})")
        model = fit_linear(seed=number, number=number)
        self.made.append(model)
        return model


def loaders_for(names: str) -> dict[str, Loader]:
    return {name: Loader() for name in names}


@asynccontextmanager
async def started(**options: Any) -> AsyncIterator[ModelRegistry]:
    """An initialized registry, disposed when the block ends."""
    registry = ModelRegistry(ModelsConfig(**options))
    await registry.initialize()
    try:
        yield registry
    finally:
        await registry.dispose()
