"""What every battery's config model shares: its name and its call policy."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..resilience import Policy


class ResourceConfig(BaseModel):
    """Base of every battery config: frozen, unknown keys refused.

    ``timeout`` is the deadline of one call, retries included; ``max_retries`` counts
    the retries after the first attempt (idempotent calls only, unless the request
    never left); ``circuit_breaker_threshold`` failures in a row open the breaker
    for ``circuit_breaker_reset`` seconds (None: no breaker).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    timeout: float | None = Field(default=10.0, gt=0)
    max_retries: int = Field(default=0, ge=0, le=20)
    circuit_breaker_threshold: int | None = Field(default=None, ge=1)
    circuit_breaker_reset: float = Field(default=30.0, gt=0)

    def policy(self) -> Policy:
        return Policy.from_options(
            self.name,
            timeout=self.timeout,
            max_retries=self.max_retries,
            circuit_breaker_threshold=self.circuit_breaker_threshold,
            circuit_breaker_reset=self.circuit_breaker_reset,
        )
