"""Where revocations and refresh-token families live: memory or Redis."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..resources.redis import RedisClient

_REVOKED = "revoked"


@runtime_checkable
class TokenStore(Protocol):
    """What ``Tokens`` needs to remember between requests.

    ``rotate`` must be atomic: of two refreshes racing with the same token, one wins.
    """

    async def initialize(self) -> None: ...

    async def dispose(self) -> None: ...

    async def start_family(self, family: str, refresh_id: str, ttl: float) -> None: ...

    async def rotate(self, family: str, expected: str, new: str, ttl: float) -> bool: ...

    async def revoke_family(self, family: str, ttl: float) -> None: ...

    async def revoke(self, token_id: str, ttl: float) -> None: ...

    async def is_revoked(self, token_id: str, family: str) -> bool: ...


class MemoryTokenStore:
    """One process's store: fine for one worker, wrong for several (each would know
    only its own revocations); use ``RedisTokenStore`` there."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._families: dict[str, tuple[str, float]] = {}  # family -> (current id, expiry)
        self._revoked: dict[str, float] = {}  # token id -> expiry
        self._next_purge = 0.0

    async def initialize(self) -> None:
        pass

    async def dispose(self) -> None:
        self._families.clear()
        self._revoked.clear()

    def _purge(self, now: float) -> None:
        if now < self._next_purge:
            return
        self._next_purge = now + 60.0
        self._families = {f: v for f, v in self._families.items() if v[1] > now}
        self._revoked = {t: exp for t, exp in self._revoked.items() if exp > now}

    async def start_family(self, family: str, refresh_id: str, ttl: float) -> None:
        now = self._clock()
        self._purge(now)
        self._families[family] = (refresh_id, now + ttl)

    async def rotate(self, family: str, expected: str, new: str, ttl: float) -> bool:
        now = self._clock()
        current = self._families.get(family)
        if current is None or current[1] <= now or current[0] != expected:
            return False
        self._families[family] = (new, now + ttl)
        return True

    async def revoke_family(self, family: str, ttl: float) -> None:
        self._families[family] = (_REVOKED, self._clock() + ttl)

    async def revoke(self, token_id: str, ttl: float) -> None:
        self._revoked[token_id] = self._clock() + ttl

    async def is_revoked(self, token_id: str, family: str) -> bool:
        now = self._clock()
        expiry = self._revoked.get(token_id)
        if expiry is not None and expiry > now:
            return True
        current = self._families.get(family)
        return current is not None and current[0] == _REVOKED and current[1] > now


# Compare-and-set of a family's current refresh-token id: of two refreshes racing with
# one token, exactly one sees its id and moves the family on.
_ROTATE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


class RedisTokenStore:
    """Revocations and refresh families on Redis, shared by every process. Keys expire
    with the tokens they describe. Writes are not retried once sent."""

    def __init__(self, redis: RedisClient, *, prefix: str = "tether:tokens:") -> None:
        self.redis = redis
        self.prefix = prefix
        self._rotate: Any = None

    async def initialize(self) -> None:
        await self.redis.ping()

    async def dispose(self) -> None:
        return None  # the RedisClient is the container's to close

    async def start_family(self, family: str, refresh_id: str, ttl: float) -> None:
        key = self.prefix + "fam:" + family
        await self.redis.call(lambda r: r.set(key, refresh_id, px=_ms(ttl)), idempotent=True)

    async def rotate(self, family: str, expected: str, new: str, ttl: float) -> bool:
        if self._rotate is None:
            self._rotate = self.redis.client.register_script(_ROTATE)
        script, key = self._rotate, self.prefix + "fam:" + family
        done = await self.redis.call(
            lambda r: script(keys=[key], args=[expected, new, _ms(ttl)], client=r),
            idempotent=False)
        return bool(done)

    async def revoke_family(self, family: str, ttl: float) -> None:
        key = self.prefix + "fam:" + family
        await self.redis.call(lambda r: r.set(key, _REVOKED, px=_ms(ttl)), idempotent=True)

    async def revoke(self, token_id: str, ttl: float) -> None:
        key = self.prefix + "jti:" + token_id
        await self.redis.call(lambda r: r.set(key, "1", px=_ms(ttl)), idempotent=True)

    async def is_revoked(self, token_id: str, family: str) -> bool:
        keys = [self.prefix + "jti:" + token_id, self.prefix + "fam:" + family]
        revoked, current = await self.redis.call(lambda r: r.mget(keys), idempotent=True)
        return revoked is not None or current in (_REVOKED, _REVOKED.encode())


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
