"""RedisClient against a real three-node Redis Cluster (each node a primary, no replicas)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from tests.servers.redis import RedisClusterNodes, find_redis_server, free_port
from tether.exceptions import ResourceUnavailable
from tether.resources.redis import RedisClient, RedisConfig

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

KEYS = [f"key:{i}" for i in range(30)]


@pytest.fixture
async def rc(redis_cluster: RedisClusterNodes) -> AsyncIterator[RedisClient]:
    client = RedisClient(RedisConfig(url=redis_cluster.url, max_connections=5))
    await client.initialize()
    yield client
    await client.dispose()


def _node_of(cluster: RedisClusterNodes, key: str) -> int:
    slot = cluster.nodes[0].command("CLUSTER", "KEYSLOT", key)
    assert isinstance(slot, int)
    return next(i for i, (low, high) in enumerate(cluster.SLOTS) if low <= slot <= high)


async def test_cluster_url_gives_a_cluster_client(rc: RedisClient) -> None:
    assert isinstance(rc.client, RedisCluster)


async def test_keys_land_on_the_node_owning_their_slot(
    rc: RedisClient, redis_cluster: RedisClusterNodes,
) -> None:
    for key in KEYS:
        await rc.set(key, key)

    for key in KEYS:
        owner = redis_cluster.nodes[_node_of(redis_cluster, key)]
        assert owner.command("GET", key) == key.encode()
        assert await rc.get(key) == key.encode()


async def test_cluster_flag_with_a_plain_url_gives_a_cluster_client(
    redis_cluster: RedisClusterNodes,
) -> None:
    client = RedisClient(RedisConfig(url=redis_cluster.nodes[1].url.removesuffix("/0"),
                                     cluster=True))
    await client.initialize()
    try:
        assert isinstance(client.client, RedisCluster)
        assert await client.incr("cluster-flag-counter") == 1
    finally:
        await client.dispose()


async def test_cluster_health_check_pings(rc: RedisClient) -> None:
    assert await rc.health_check() is True


async def test_cluster_statistics_count_every_node(rc: RedisClient) -> None:
    await rc.set("a", "1")

    stats = rc.statistics()

    assert stats.max_connections == 5 * 3
    assert stats.in_use == 0
    assert stats.idle >= 1


async def test_keys_in_different_slots_reach_the_caller_unchanged(rc: RedisClient) -> None:
    with pytest.raises(RedisClusterException, match="same key slot"):
        await rc.execute("MGET", "key:1", "key:2", idempotent=True)


async def test_unreachable_cluster_fails_start_up_as_unavailable() -> None:
    client = RedisClient(RedisConfig(url=f"redis+cluster://127.0.0.1:{free_port()}"))

    with pytest.raises(ResourceUnavailable, match="cannot reach the cluster") as caught:
        await client.initialize()

    assert caught.value.sent is False
    await client.dispose()


async def test_killed_node_fails_its_keys_as_unavailable_and_not_the_others(
    tmp_path: Path,
) -> None:
    find_redis_server()
    cluster = RedisClusterNodes(tmp_path / "cluster")
    client = RedisClient(RedisConfig(url=cluster.url, timeout=5))
    try:
        cluster.start()
        await client.initialize()
        on_third = next(k for k in KEYS if _node_of(cluster, k) == 2)
        on_first = next(k for k in KEYS if _node_of(cluster, k) == 0)
        await client.set(on_third, "3")
        await client.set(on_first, "1")

        cluster.nodes[2].kill()

        with pytest.raises(ResourceUnavailable):
            await client.get(on_third)
        assert await client.get(on_first) == b"1"
    finally:
        await client.dispose()
        cluster.close()
