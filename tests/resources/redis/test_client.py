"""RedisClient against a real redis-server: commands, lifecycle, errors, statistics."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import DataError, ResponseError

from tests.servers.redis import RedisServer, find_redis_server, free_port
from tether.exceptions import CircuitOpen, ClosedError, ResourceError, ResourceUnavailable
from tether.resources.redis import RedisClient, RedisConfig, RedisStats

from .conftest import MakeClient, eventually

pytestmark = pytest.mark.anyio


# -- commands -------------------------------------------------------------------------


async def test_set_then_get(make_client: MakeClient) -> None:
    rc = await make_client()

    assert await rc.set("greeting", "hello") is True
    assert await rc.get("greeting") == b"hello"


async def test_get_of_a_missing_key_is_none(make_client: MakeClient) -> None:
    rc = await make_client()

    assert await rc.get("missing") is None


async def test_decode_responses_gives_text(make_client: MakeClient) -> None:
    rc = await make_client(decode_responses=True)
    await rc.set("k", "v")

    assert await rc.get("k") == "v"


async def test_set_nx_reports_an_existing_key(make_client: MakeClient) -> None:
    rc = await make_client()
    await rc.set("k", "first")

    assert await rc.set("k", "second", nx=True) is False
    assert await rc.get("k") == b"first"


async def test_set_with_expiry_sets_a_ttl(make_client: MakeClient) -> None:
    rc = await make_client()
    await rc.set("k", "v", ex=timedelta(seconds=100))

    assert 0 < await rc.ttl("k") <= 100


async def test_expire_then_ttl(make_client: MakeClient) -> None:
    rc = await make_client()
    await rc.set("k", "v")

    assert await rc.ttl("k") == -1
    assert await rc.expire("k", 50) is True
    assert 0 < await rc.ttl("k") <= 50


async def test_incr_counts_up_by_the_amount(make_client: MakeClient) -> None:
    rc = await make_client()

    assert await rc.incr("n") == 1
    assert await rc.incr("n", 5) == 6


async def test_delete_and_exists_count_keys(make_client: MakeClient) -> None:
    rc = await make_client()
    await rc.set("a", "1")
    await rc.set("b", "2")

    assert await rc.exists("a", "b", "c") == 2
    assert await rc.delete("a", "b", "c") == 2
    assert await rc.exists("a", "b") == 0


async def test_execute_runs_a_raw_command(make_client: MakeClient,
                                          redis_server: RedisServer) -> None:
    rc = await make_client()

    assert await rc.execute("HSET", "user:1", "name", "ann", idempotent=True) == 1
    assert redis_server.command("HGET", "user:1", "name") == b"ann"


async def test_call_runs_any_client_method(make_client: MakeClient) -> None:
    rc = await make_client()
    await rc.execute("HSET", "h", "a", "1", "b", "2", idempotent=True)

    assert await rc.call(lambda r: r.hgetall("h"), idempotent=True) == {b"a": b"1", b"b": b"2"}


async def test_pipeline_under_call_runs_as_one_transaction(make_client: MakeClient) -> None:
    rc = await make_client()

    async def incr_and_expire(r: redis.asyncio.Redis | RedisCluster) -> list[object]:
        async with r.pipeline(transaction=True) as pipe:
            pipe.incr("hits")
            pipe.expire("hits", 60)
            return list(await pipe.execute())

    assert await rc.call(incr_and_expire, idempotent=False) == [1, True]
    assert 0 < await rc.ttl("hits") <= 60


async def test_pipeline_passthrough_is_redis_py_pipeline(make_client: MakeClient) -> None:
    rc = await make_client()

    async with rc.pipeline() as pipe:
        assert await pipe.set("a", "1").get("a").execute() == [True, b"1"]


async def test_client_is_the_raw_redis_py_client(make_client: MakeClient) -> None:
    rc = await make_client()

    assert isinstance(rc.client, redis.asyncio.Redis)
    assert await rc.client.echo("hi") == b"hi"


async def test_unix_socket_url_connects(tmp_path: Path) -> None:
    find_redis_server()
    server = RedisServer(tmp_path / "r", unix_socket=tmp_path / "r.sock")
    server.start()
    rc = RedisClient(RedisConfig(url=f"unix://{tmp_path / 'r.sock'}?db=3"))
    try:
        await rc.initialize()
        await rc.set("k", "over the socket")
        info = await rc.client.client_info()

        assert (info["db"], info["flags"]) == (3, "U")  # U: a unix socket client
    finally:
        await rc.dispose()
        server.close()


async def test_ping_is_true(make_client: MakeClient) -> None:
    rc = await make_client()

    assert await rc.ping() is True


# -- the caller's own errors ---------------------------------------------------------------


async def test_wrongtype_reaches_the_caller_unchanged(make_client: MakeClient) -> None:
    rc = await make_client()
    await rc.set("k", "v")

    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await rc.execute("LPUSH", "k", "x", idempotent=False)


async def test_bad_argument_reaches_the_caller_unchanged(make_client: MakeClient) -> None:
    rc = await make_client()

    with pytest.raises(DataError):
        await rc.set("k", {"not": "encodable"})  # type: ignore[arg-type]


async def test_caller_errors_never_open_the_breaker(make_client: MakeClient) -> None:
    rc = await make_client(circuit_breaker_threshold=2)
    await rc.set("k", "v")
    for _ in range(5):
        with pytest.raises(ResponseError):
            await rc.execute("LPUSH", "k", "x", idempotent=False)

    assert await rc.get("k") == b"v"


async def test_breaker_opens_after_connection_failures(make_client: MakeClient,
                                                       redis_server: RedisServer) -> None:
    rc = await make_client(circuit_breaker_threshold=2, circuit_breaker_reset=60)
    redis_server.kill()
    for _ in range(2):
        with pytest.raises(ResourceUnavailable):
            await rc.get("k")

    with pytest.raises(CircuitOpen):
        await rc.get("k")


async def test_health_check_reaches_the_server_while_the_breaker_is_open(
    make_client: MakeClient, redis_server: RedisServer,
) -> None:
    rc = await make_client(circuit_breaker_threshold=1, circuit_breaker_reset=60)
    redis_server.kill()
    with pytest.raises(ResourceUnavailable):
        await rc.get("k")
    redis_server.restart()

    with pytest.raises(CircuitOpen):
        await rc.get("k")
    assert await rc.health_check() is True


# -- lifecycle ----------------------------------------------------------------------------------


async def test_use_before_initialize_says_how_to_get_one() -> None:
    rc = RedisClient(RedisConfig(name="cache"))

    with pytest.raises(ResourceError, match="cache: not initialized: resolve it from the "
                                            "container"):
        await rc.get("k")


async def test_use_after_dispose_is_a_closed_error(make_client: MakeClient) -> None:
    rc = await make_client(name="cache")
    await rc.dispose()

    with pytest.raises(ClosedError, match="RedisClient 'cache'"):
        await rc.get("k")
    with pytest.raises(ClosedError):
        _ = rc.client


async def test_initialize_after_dispose_is_a_closed_error(make_client: MakeClient) -> None:
    rc = await make_client()
    await rc.dispose()

    with pytest.raises(ClosedError):
        await rc.initialize()


async def test_dispose_twice_is_harmless(make_client: MakeClient) -> None:
    rc = await make_client()

    await rc.dispose()
    await rc.dispose()


async def test_dispose_before_initialize_is_harmless() -> None:
    rc = RedisClient(RedisConfig())

    await rc.dispose()

    with pytest.raises(ClosedError):
        await rc.initialize()


async def test_dispose_closes_every_connection(make_client: MakeClient,
                                               redis_server: RedisServer) -> None:
    rc = await make_client(name="closing")
    await rc.client.client_setname("tether-dispose-test")
    assert b"tether-dispose-test" in _client_list(redis_server)

    await rc.dispose()

    await eventually(lambda: b"tether-dispose-test" not in _client_list(redis_server))


def _client_list(server: RedisServer) -> bytes:
    clients = server.command("CLIENT", "LIST")
    assert isinstance(clients, bytes)
    return clients


async def test_initialize_against_a_closed_port_fails_as_unavailable() -> None:
    rc = RedisClient(RedisConfig(url=f"redis://127.0.0.1:{free_port()}/0"))

    with pytest.raises(ResourceUnavailable, match="cannot connect") as caught:
        await rc.initialize()

    assert caught.value.sent is False
    await rc.dispose()


async def test_initialize_failure_leaves_the_client_retryable(redis_server: RedisServer) -> None:
    rc = RedisClient(RedisConfig(url=redis_server.url))
    redis_server.kill()
    with pytest.raises(ResourceUnavailable):
        await rc.initialize()

    redis_server.restart()
    await rc.initialize()

    assert await rc.ping()
    await rc.dispose()


async def test_dispose_returns_while_the_server_is_frozen(
    make_client: MakeClient, redis_server: RedisServer,
) -> None:
    rc = await make_client(socket_connect_timeout=0.5)
    await rc.set("k", "v")  # a pooled connection to close

    with redis_server.frozen():
        await rc.dispose()  # bounded: pytest-timeout fails the test if it hangs

    with pytest.raises(ClosedError):
        await rc.get("k")


# -- statistics ---------------------------------------------------------------------------


async def test_statistics_count_calls_and_failures_by_kind(
    make_client: MakeClient, redis_server: RedisServer,
) -> None:
    rc = await make_client()
    await rc.set("k", "v")
    await rc.get("k")
    redis_server.kill()
    with pytest.raises(ResourceUnavailable):
        await rc.get("k")

    stats = rc.statistics()

    assert isinstance(stats, RedisStats)
    assert stats.calls_total == 3
    assert stats.failures_total == 1
    assert dict(stats.failures_by_kind) == {"ResourceUnavailable": 1}
    assert (stats.active, stats.peak) == (0, 1)
    assert stats.latency_seconds_total >= stats.latency_seconds_max > 0


async def test_statistics_report_the_pool(make_client: MakeClient) -> None:
    rc = await make_client(max_connections=7)
    await rc.set("k", "v")

    stats = rc.statistics()

    assert stats.max_connections == 7
    assert (stats.in_use, stats.idle) == (0, 1)
    assert stats.pool_timeouts_total == 0


async def test_statistics_before_initialize_are_zero() -> None:
    stats = RedisClient(RedisConfig(max_connections=3)).statistics()

    assert (stats.calls_total, stats.in_use, stats.idle, stats.max_connections) == (0, 0, 0, 3)


async def test_statistics_are_frozen(make_client: MakeClient) -> None:
    stats = (await make_client()).statistics()

    with pytest.raises(AttributeError):
        stats.calls_total = 5  # type: ignore[misc]
