"""Redis under faults: a hung, killed, restarted or cut-off server (scenarios P4, P6-P9).

Each fault is real: DEBUG SLEEP and SIGSTOP freeze the server, SIGKILL crashes it,
and the fault proxy delays, drops or swallows bytes on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import anyio
import pytest

from tests.servers.proxy import FaultProxy
from tests.servers.redis import RedisServer
from tether.exceptions import CircuitOpen, PoolTimeout, ResourceTimeout, ResourceUnavailable
from tether.resources.redis import RedisClient

from .conftest import MakeClient, eventually

pytestmark = pytest.mark.anyio


def _asleep(server: RedisServer) -> bool:
    try:
        server.command("PING", timeout=0.1)
    except TimeoutError:
        return True
    return False


# -- P4: a hung server fails the call at tether's deadline --------------------------------


@pytest.mark.slow
async def test_debug_sleep_fails_the_call_at_the_deadline_while_the_server_sleeps(
    make_client: MakeClient, redis_server: RedisServer,
) -> None:
    # redis-py's default retries answered this after 2.9 s: each retry waited again.
    rc = await make_client(timeout=0.5, max_retries=3)
    await rc.set("k", "v")

    with redis_server.sleeping(3):
        with pytest.raises(ResourceTimeout) as caught:
            await rc.get("k")
        assert _asleep(redis_server)  # it gave up before the server woke up

    assert caught.value.timeout == 0.5
    assert await rc.get("k") == b"v"  # the pool recovered once the server woke


async def test_frozen_server_fails_the_call_at_the_deadline(
    make_client: MakeClient, redis_server: RedisServer,
) -> None:
    rc = await make_client(timeout=0.5)
    await rc.set("k", "v")

    with redis_server.frozen(), pytest.raises(ResourceTimeout):
        await rc.get("k")

    assert await rc.get("k") == b"v"


async def test_frozen_server_opens_the_breaker(
    make_client: MakeClient, redis_server: RedisServer,
) -> None:
    rc = await make_client(timeout=0.3, circuit_breaker_threshold=1, circuit_breaker_reset=60)

    with redis_server.frozen():
        with pytest.raises(ResourceTimeout):
            await rc.get("k")
        with pytest.raises(CircuitOpen):
            await rc.get("k")  # refused at once: the frozen server is not asked again


async def test_socket_timeout_shorter_than_the_deadline_fails_as_a_timeout(
    make_client: MakeClient, redis_server: RedisServer,
) -> None:
    rc = await make_client(timeout=5, socket_timeout=0.3)
    await rc.set("k", "v")

    with redis_server.frozen(), pytest.raises(ResourceTimeout, match="socket read or write"):
        await rc.get("k")


async def test_blackholed_connection_fails_the_call_at_the_deadline(
    make_client: MakeClient, proxy: FaultProxy,
) -> None:
    rc = await make_client(url=proxy.url(), timeout=0.5)
    await rc.set("k", "v")
    proxy.blackhole = True

    with pytest.raises(ResourceTimeout):
        await rc.get("k")


async def test_blackholed_start_up_fails_at_the_deadline(proxy: FaultProxy) -> None:
    from tether.resources.redis import RedisConfig

    proxy.blackhole = True
    rc = RedisClient(RedisConfig(url=proxy.url(), timeout=0.5))

    with pytest.raises(ResourceTimeout, match="start-up did not finish"):
        await rc.initialize()
    await rc.dispose()


# -- P6: pool exhaustion -------------------------------------------------------------------------


@pytest.mark.slow
async def test_exhausted_pool_raises_pool_timeout_naming_size_and_wait(
    make_client: MakeClient,
) -> None:
    rc = await make_client(max_connections=2, pool_timeout=0.5, timeout=10, max_retries=2)
    holders = [asyncio.create_task(rc.execute("BLPOP", f"q{i}", 1, idempotent=False))
               for i in range(2)]
    await eventually(lambda: rc.statistics().in_use == 2)

    with pytest.raises(PoolTimeout) as caught:
        await rc.execute("BLPOP", "q3", 1, idempotent=False)

    assert (caught.value.size, caught.value.timeout) == (2, 0.5)
    assert "pool_timeout=0.5s (pool size 2)" in str(caught.value)
    assert await asyncio.gather(*holders) == [None, None]  # the holders were unaffected
    stats = rc.statistics()
    assert stats.pool_timeouts_total == 1
    assert stats.retries_total == 0  # waiting in line again would only lengthen the line
    assert dict(stats.failures_by_kind) == {"PoolTimeout": 1}


# -- P7: killed and restarted ----------------------------------------------------------------------


async def test_calls_during_an_outage_fail_as_unavailable_not_at_the_deadline(
    make_client: MakeClient, redis_server: RedisServer,
) -> None:
    rc = await make_client(timeout=5)
    await rc.set("k", "v")
    redis_server.kill()

    for _ in range(3):
        with pytest.raises(ResourceUnavailable):
            await rc.get("k")


@pytest.mark.slow
async def test_same_client_works_after_the_server_restarts(
    make_client: MakeClient, redis_server: RedisServer,
) -> None:
    rc = await make_client()
    await rc.set("k", "v")
    redis_server.kill()
    with pytest.raises(ResourceUnavailable):
        await rc.get("k")

    redis_server.restart()

    assert await rc.get("k") is None  # no persistence: a new, empty server
    assert await rc.set("k", "again")
    assert redis_server.command("GET", "k") == b"again"


async def test_health_flips_unhealthy_then_healthy_across_a_restart(
    make_client: MakeClient, redis_server: RedisServer,
) -> None:
    rc = await make_client()
    assert await rc.health_check() is True
    redis_server.kill()

    with pytest.raises(ResourceUnavailable):
        await rc.health_check()

    redis_server.restart()
    assert await rc.health_check() is True


async def test_refused_connect_is_retried_even_for_incr(
    make_client: MakeClient, redis_server: RedisServer,
) -> None:
    rc = await make_client(max_retries=2)
    redis_server.kill()
    with pytest.raises(ResourceUnavailable):
        await rc.get("warm-up")  # whatever the pooled connection saw, it is dropped now
    retries_before = rc.statistics().retries_total

    with pytest.raises(ResourceUnavailable, match="cannot connect") as caught:
        await rc.incr("n")

    assert caught.value.sent is False  # INCR never left: trying again was safe
    assert rc.statistics().retries_total - retries_before == 2


async def test_connection_closed_by_the_server_between_calls_is_replaced(
    make_client: MakeClient, proxy: FaultProxy,
) -> None:
    rc = await make_client(url=proxy.url())
    await rc.set("k", "v")
    proxy.close_after_response = True
    assert await rc.get("k") == b"v"  # the proxy closes this connection after the reply
    await eventually(lambda: proxy.open_connections == 0)
    proxy.close_after_response = False

    assert await rc.get("k") == b"v"
    assert proxy.connections_total == 2


# -- P8: a cancelled command leaves no reply behind (CVE-2023-28858/9) ---------------------------


async def _cancel_task(rc: RedisClient, proxy: FaultProxy) -> None:
    task = asyncio.create_task(rc.get("foo"))
    await proxy.request_forwarded.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _cancel_scope(rc: RedisClient, proxy: FaultProxy) -> None:
    async with anyio.create_task_group() as tg:
        tg.start_soon(rc.get, "foo")
        await proxy.request_forwarded.wait()
        tg.cancel_scope.cancel()


async def _replies_come_in_order(rc: RedisClient) -> None:
    # Had the cancelled GET's reply stayed on the connection, GET bar would read "foo".
    assert await rc.get("bar") == b"bar"
    assert await rc.ping() is True
    assert await rc.get("foo") == b"foo"


@pytest.mark.parametrize("delay", [0.05, 0.5])
@pytest.mark.parametrize("cancel", [_cancel_task, _cancel_scope],
                         ids=["task-cancel", "anyio-scope"])
async def test_cancelled_get_leaves_no_reply_for_the_next_command(
    make_client: MakeClient, proxy: FaultProxy, delay: float,
    cancel: Callable[[RedisClient, FaultProxy], Awaitable[None]],
) -> None:
    # One connection, so a stale reply could only be read by the very next command.
    rc = await make_client(url=proxy.url(), max_connections=1)
    await rc.set("foo", "foo")
    await rc.set("bar", "bar")
    proxy.delay = delay
    proxy.request_forwarded.clear()

    await cancel(rc, proxy)  # after GET foo was sent, before its reply came

    proxy.delay = 0
    await _replies_come_in_order(rc)


async def test_get_past_its_deadline_leaves_no_reply_for_the_next_command(
    make_client: MakeClient, proxy: FaultProxy,
) -> None:
    rc = await make_client(url=proxy.url(), max_connections=1, timeout=0.3)
    await rc.set("foo", "foo")
    await rc.set("bar", "bar")
    proxy.request_forwarded.clear()
    proxy.hold_replies()

    with pytest.raises(ResourceTimeout):
        await rc.get("foo")

    assert proxy.request_forwarded.is_set()
    proxy.release_replies()
    await _replies_come_in_order(rc)


# -- P9: a lost reply to a non-idempotent command ---------------------------------------------


async def test_lost_incr_reply_is_reported_and_not_applied_twice(
    make_client: MakeClient, proxy: FaultProxy, redis_server: RedisServer,
) -> None:
    rc = await make_client(url=proxy.url(), max_retries=3)
    proxy.drop_next_reply()

    with pytest.raises(ResourceUnavailable) as caught:
        await rc.incr("counter")

    assert proxy.reply_dropped.is_set()
    assert caught.value.sent is True  # it may have run: so it was not retried
    assert redis_server.command("GET", "counter") == b"1"
    assert rc.statistics().retries_total == 0
    assert await rc.incr("counter") == 2


async def test_lost_get_reply_is_retried(
    make_client: MakeClient, proxy: FaultProxy,
) -> None:
    rc = await make_client(url=proxy.url(), max_retries=1)
    await rc.set("k", "v")
    proxy.drop_next_reply()

    assert await rc.get("k") == b"v"
    assert rc.statistics().retries_total == 1


async def test_connection_cut_mid_reply_fails_the_call_and_not_the_next(
    make_client: MakeClient, proxy: FaultProxy, redis_server: RedisServer,
) -> None:
    redis_server.command("SET", "big", "x" * 200_000)
    rc = await make_client(url=proxy.url())  # the handshake and PING cross well under 5 kB
    proxy.reset_after = 5000  # so the cut falls inside the 200 kB reply

    with pytest.raises(ResourceUnavailable, match="connection lost") as caught:
        await rc.get("big")

    assert caught.value.sent is True
    proxy.reset_after = None
    assert await rc.get("big") == b"x" * 200_000
