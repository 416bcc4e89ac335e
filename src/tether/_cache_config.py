"""The config models of the caches."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .resources._config import ResourceConfig

_NAMESPACE = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")


class MemoryCacheConfig(BaseModel):
    """An in-process LRU cache: at most ``max_size`` entries, each kept for
    ``default_ttl`` seconds unless ``set`` says otherwise (None: until evicted)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(default="cache", min_length=1)
    max_size: int = Field(default=10_000, ge=1)
    default_ttl: float | None = Field(default=300.0, gt=0)


class RedisCacheConfig(ResourceConfig):
    """A cache kept in Redis, shared by every process using the same ``namespace``.

    Keys live under ``tether:cache:<namespace>:`` (``namespace`` defaults to ``name``).
    ``timeout`` bounds each Redis call and is short on purpose: a cache that waits
    longer than the loader would is no cache; ``circuit_breaker_threshold`` failures in
    a row stop calling Redis for ``circuit_breaker_reset`` seconds. ``serializer``
    writes values as msgpack or JSON (never pickle); payloads above ``compress_above``
    bytes are zlib-compressed (None: never); a value over ``max_value_size`` bytes is
    refused when written and rejected when read. ``lock`` makes ``get_or_load`` take
    a Redis lock per key so that one process in the whole fleet runs the loader on a
    miss; a holder that dies releases it after ``lock_timeout`` seconds, which is also
    how long the others wait before loading themselves.
    """

    name: str = Field(default="cache", min_length=1)
    timeout: float | None = Field(default=0.25, gt=0)
    circuit_breaker_threshold: int | None = Field(default=3, ge=1)
    circuit_breaker_reset: float = Field(default=5.0, gt=0)
    namespace: str | None = None
    default_ttl: float | None = Field(default=300.0, gt=0)
    serializer: Literal["msgpack", "json"] = "msgpack"
    compress_above: int | None = Field(default=4096, ge=0)
    max_value_size: int = Field(default=16 * 1024 * 1024, ge=1024)
    lock: bool = False
    lock_timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _namespace_is_a_plain_word(self) -> RedisCacheConfig:
        field = "namespace" if self.namespace is not None else "name (the default namespace)"
        if not _NAMESPACE.fullmatch(self.key_namespace):
            raise ValueError(
                f"{field} must be 1-100 characters among letters, digits and _ . : - "
                f"(it becomes part of every Redis key)"
            )
        return self

    @property
    def key_namespace(self) -> str:
        return self.namespace if self.namespace is not None else self.name


class HybridCacheConfig(RedisCacheConfig):
    """A memory tier in front of Redis (every ``RedisCacheConfig`` option applies).

    The memory tier holds at most ``max_size`` entries, each for at most
    ``memory_ttl`` seconds (None: as long as the Redis entry); writes and deletes in
    any process drop the key from every other process's memory tier.
    """

    max_size: int = Field(default=10_000, ge=1)
    memory_ttl: float | None = Field(default=60.0, gt=0)
