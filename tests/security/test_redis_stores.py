"""Tokens and sessions kept on Redis: what one process writes, another sees."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from tests.servers.redis import RedisServer, redis_server  # noqa: F401
from tether.exceptions import ResourceError
from tether.resources.redis import RedisClient, RedisConfig
from tether.security import (
    InvalidToken,
    RedisSessionStore,
    RedisTokenStore,
    SessionConfig,
    Sessions,
    TokenConfig,
    Tokens,
)

pytestmark = pytest.mark.anyio

SECRET = SecretStr(secrets.token_urlsafe(48))


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[RedisClient]:  # noqa: F811
    client = RedisClient(RedisConfig(name="redis", url=redis_server.url, timeout=2.0))
    await client.initialize()
    yield client
    await client.dispose()


def tokens_on(redis: RedisClient) -> Tokens:
    """One service instance: every instance shares the secret and the Redis."""
    config = TokenConfig(issuer="i", audience="a", algorithm="HS256", secrets=(SECRET,))
    return Tokens(config, RedisTokenStore(redis))


async def test_a_refresh_token_reused_at_another_instance_revokes_the_family(
    redis: RedisClient,
) -> None:
    one, two = tokens_on(redis), tokens_on(redis)
    stolen = await one.issue("alice")
    legit = await two.refresh(stolen.refresh_token)
    with pytest.raises(InvalidToken, match="reused"):
        await one.refresh(stolen.refresh_token)
    with pytest.raises(InvalidToken, match="revoked"):
        await two.verify(legit.access_token)


async def test_racing_refreshes_on_two_instances_let_one_through(redis: RedisClient) -> None:
    one, two = tokens_on(redis), tokens_on(redis)
    pair = await one.issue("alice")
    results = await asyncio.gather(one.refresh(pair.refresh_token),
                                   two.refresh(pair.refresh_token), return_exceptions=True)
    assert sum(isinstance(r, InvalidToken) for r in results) == 1


async def test_a_revoked_access_token_is_refused_by_every_instance(
    redis: RedisClient, redis_server: RedisServer,  # noqa: F811
) -> None:
    one, two = tokens_on(redis), tokens_on(redis)
    pair = await one.issue("alice")
    await one.revoke(pair.access_token)
    with pytest.raises(InvalidToken, match="revoked"):
        await two.verify(pair.access_token)
    keys = redis_server.command("KEYS", "tether:tokens:*")
    assert isinstance(keys, list)
    assert all(isinstance(t, int) and t > 0
               for t in (redis_server.command("PTTL", k) for k in keys))  # type: ignore[arg-type]


async def test_a_session_made_by_one_instance_is_found_and_ended_by_another(
    redis: RedisClient, redis_server: RedisServer,  # noqa: F811
) -> None:
    one = Sessions(SessionConfig(), RedisSessionStore(redis))
    two = Sessions(SessionConfig(), RedisSessionStore(redis))
    session = await one.create("alice", {"cart": ["apple"]})
    found = await two.get(session.id)
    assert found is not None
    assert found.data == {"cart": ["apple"]}
    stored = redis_server.command("KEYS", "tether:session:*")
    assert isinstance(stored, list)
    assert session.id.encode() not in b"".join(k for k in stored if isinstance(k, bytes))
    await two.invalidate(session.id)
    assert await one.get(session.id) is None


async def test_a_redis_session_expires_with_its_idle_timeout(redis: RedisClient) -> None:
    sessions = Sessions(SessionConfig(idle_timeout=0.3, absolute_timeout=60),
                        RedisSessionStore(redis))
    session = await sessions.create("alice")
    await asyncio.sleep(0.5)
    assert await sessions.get(session.id) is None


async def test_the_stores_report_redis_health(
    redis: RedisClient, redis_server: RedisServer,  # noqa: F811
) -> None:
    sessions = Sessions(SessionConfig(), RedisSessionStore(redis))
    assert await sessions.health_check()
    redis_server.kill()
    with pytest.raises(ResourceError, match="redis"):
        await sessions.health_check()
