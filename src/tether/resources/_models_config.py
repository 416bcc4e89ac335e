"""The model registry's config and the statistics it reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import Field

from ..resilience import CircuitBreaker, Policy, Retry
from ._config import ResourceConfig


class ModelsConfig(ResourceConfig):
    """How a model registry loads, keeps and lets go of its models.

    ``timeout`` is the deadline of one load: every attempt, the backoff between them
    and each warm-up. ``max_retries`` counts the attempts after the first; any error
    of the loader or the warm-up is retried, after ``retry_backoff`` seconds, doubling
    up to ``retry_backoff_max``. The circuit breaker, when set, counts failed loads of
    each model on its own.
    """

    name: str = Field(default="models", min_length=1)
    timeout: float | None = Field(default=300.0, gt=0)
    max_loaded: int | None = Field(default=None, ge=1)
    retry_backoff: float = Field(default=1.0, ge=0)
    retry_backoff_max: float = Field(default=30.0, ge=0)
    warm_up: bool = True
    check_timeout: float = Field(default=5.0, gt=0)
    unload_timeout: float = Field(default=5.0, gt=0)
    close_timeout: float = Field(default=3.0, gt=0)

    def policy(self) -> Policy:
        """The load policy of a model; the registry builds one per model."""
        return self.load_policy(self.name)

    def load_policy(self, resource: str) -> Policy:
        """What one model's loads run under: the deadline, retries on any error, and a
        breaker of its own; ``resource`` (``models[name]``) names the model in errors."""
        retry = Retry(
            attempts=self.max_retries + 1, wait_initial=self.retry_backoff,
            wait_max=self.retry_backoff_max, wait_jitter=self.retry_backoff / 10,
            on=(Exception,),
        ) if self.max_retries else None
        breaker = CircuitBreaker(
            resource, threshold=self.circuit_breaker_threshold,
            reset_timeout=self.circuit_breaker_reset,
        ) if self.circuit_breaker_threshold else None
        return Policy(resource, timeout=self.timeout, retry=retry, breaker=breaker)


@dataclass(frozen=True, slots=True)
class ModelRegistryStats:
    """``ModelRegistry.statistics()``: the registry's models now, and counters since it
    was built; the ``*_by_model`` mappings hold one entry per model name.

    ``in_use`` counts models held by ``use()`` blocks (one unloaded while held
    included); ``memory_bytes`` is the estimate for every model still in memory.
    ``failures_by_kind`` names the error failed loads raised (``ResourceError``,
    ``ResourceTimeout``, ``CircuitOpen``). ``healthy_by_model`` has the last health
    check of each loaded model (1 or 0).
    """

    registered: int
    loaded: int
    loading: int
    in_use: int
    memory_bytes: int
    loads_total: int
    load_failures_total: int
    load_retries_total: int
    evictions_total: int
    unloads_total: int
    dispose_failures_total: int
    load_seconds_max: float
    failures_by_kind: Mapping[str, int]
    loaded_by_model: Mapping[str, int]
    memory_bytes_by_model: Mapping[str, int]
    load_seconds_last_by_model: Mapping[str, float]
    healthy_by_model: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class ModelStats:
    """``ModelRegistry.model_stats(name)``: one model's state and counters.

    ``load_seconds_last`` is the last successful load, retries and warm-up included;
    ``memory_bytes`` the estimate for the loaded model (0 when not loaded);
    ``last_used`` the wall-clock time (``time.time()``) of the last ``get()`` or
    ``use()``; ``healthy`` the last check of the loaded model (None before one, or
    when not loaded); ``last_error`` the last failed load or check.
    """

    name: str
    loaded: bool
    loading: bool
    in_use: int
    loads_total: int
    load_failures_total: int
    load_retries_total: int
    evictions_total: int
    unloads_total: int
    load_seconds_last: float | None
    memory_bytes: int
    last_used: float | None
    healthy: bool | None
    last_error: str | None
