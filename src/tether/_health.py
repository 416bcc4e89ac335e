"""Health: every registration with a check reports the same way."""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from time import perf_counter
from typing import TYPE_CHECKING, Any

from ._resolve import MISS
from ._scope import Scope

if TYPE_CHECKING:
    from ._providers import Provider
    from ._registry import Registry


class HealthStatus(StrEnum):
    """The overall verdict of a ``HealthReport``."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"  # only non-critical resources fail
    UNHEALTHY = "unhealthy"  # a critical resource fails


@dataclass(frozen=True, slots=True)
class ResourceHealth:
    """One resource's last check. ``is_healthy`` is None for a lazy resource not yet built."""

    name: str
    scope: Scope
    critical: bool
    is_healthy: bool | None
    response_time: float | None
    error_count: int
    last_error: str | None
    checked_at: float
    uptime: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scope": self.scope.name,
            "critical": self.critical,
            "healthy": self.is_healthy,
            "response_time": self.response_time,
            "error_count": self.error_count,
            "last_error": self.last_error,
            "checked_at": self.checked_at,
            "uptime": self.uptime,
        }


@dataclass(frozen=True, slots=True)
class HealthReport:
    """``await container.health()``: the overall status and each resource's check."""

    status: HealthStatus
    resources: Mapping[str, ResourceHealth] = field(default_factory=dict)
    checked_at: float = 0.0

    @property
    def is_healthy(self) -> bool:
        return self.status is HealthStatus.HEALTHY

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "checked_at": self.checked_at,
            "resources": {name: r.to_dict() for name, r in self.resources.items()},
        }


class HealthState:
    """What a registration's checks have seen so far."""

    __slots__ = ("error_count", "last_error")

    def __init__(self) -> None:
        self.error_count = 0
        self.last_error: str | None = None


def check_of(p: Provider) -> Any:
    """The callable that checks ``p``'s instance, or None."""
    if p.health_check is not None:
        return p.health_check
    if p.resource:
        method = getattr(p.lifecycle, "health_check", None)
        if method is not None:
            return method
    return None


# scheme://user:password@host: up to the last "@" before the path, so a raw "@" in a
# password is hidden too.
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^\s/]*@")


def redact(text: str) -> str:
    """Hide the user and password of every URL in ``text`` (``scheme://***@host``)."""
    return _CREDENTIALS.sub(r"\1***@", text)


def describe_error(error: BaseException) -> str:
    # The type and message only, with URL credentials hidden: no traceback, no locals.
    text = redact(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def run_checks(reg: Registry) -> HealthReport:
    root = reg.root
    assert root is not None
    checks = []
    for key in reg.order:
        p = reg.providers.get(key)
        if p is None or p.scope > Scope.APP:
            continue
        check = check_of(p)
        if check is not None:
            checks.append((p, check))
    results = await asyncio.gather(*(_one(reg, p, check) for p, check in checks))
    resources = {r.name: r for r in results}
    status = HealthStatus.HEALTHY
    for r in results:
        if r.is_healthy is False:
            if r.critical:
                status = HealthStatus.UNHEALTHY
                break
            status = HealthStatus.DEGRADED
    return HealthReport(status=status, resources=resources, checked_at=time.time())


async def _one(reg: Registry, p: Provider, check: Any) -> ResourceHealth:
    owner = reg.singletons if p.scope is Scope.SINGLETON else reg.root
    assert owner is not None
    state = reg.health_states.setdefault(p.key, HealthState())
    instance = owner._cache.get(p.cache_key, MISS) if not owner._closed else MISS
    now = time.time()
    if instance is MISS:
        # Not built (lazy) or its last build failed: report that, do not build it here.
        failed = p.stats.failed > 0
        return ResourceHealth(
            name=p.display, scope=p.scope, critical=p.critical,
            is_healthy=False if failed else None, response_time=None,
            error_count=state.error_count + p.stats.failed,
            last_error=state.last_error or p.stats.last_error,
            checked_at=now, uptime=None,
        )
    started = perf_counter()
    healthy = False
    try:
        async with asyncio.timeout(reg.health_timeout):
            # A sync check runs inline (objects such as an SQLite connection are bound to
            # their thread), so only an async check can be cut off by the timeout.
            result = check(instance)
            if inspect.isawaitable(result):
                result = await result
        healthy = result is not False
        if not healthy:
            state.last_error = "check returned False"
    except TimeoutError:
        state.last_error = f"check timed out after {reg.health_timeout:g}s"
    except Exception as error:
        state.last_error = describe_error(error)
    elapsed = perf_counter() - started
    if not healthy:
        state.error_count += 1
    born = p.stats.born
    return ResourceHealth(
        name=p.display, scope=p.scope, critical=p.critical, is_healthy=healthy,
        response_time=elapsed, error_count=state.error_count, last_error=state.last_error,
        checked_at=now, uptime=None if born is None else perf_counter() - born,
    )
