"""Requests and responses, the same on both backends, against a real loopback server."""

from __future__ import annotations

import pytest

from tether.resources.http import HTTPResponse, HTTPStatusError

from .conftest import Clients
from .servers import LoopbackHTTPServer

pytestmark = pytest.mark.anyio


async def test_get_returns_the_response_with_its_body_read(clients: Clients) -> None:
    client = await clients.open()

    reply = await client.get("/echo")

    assert isinstance(reply, HTTPResponse)
    assert reply.status_code == 200
    assert reply.is_success
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["method"] == "GET"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_each_method_helper_sends_its_method(
    clients: Clients, server: LoopbackHTTPServer, method: str
) -> None:
    client = await clients.open()
    helper = getattr(client, method.lower())

    reply = await helper("/echo")

    assert reply.status_code == 200
    assert server.seen[-1].method == method


async def test_head_returns_headers_and_no_body(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open()

    reply = await client.head("/echo")

    assert reply.status_code == 200
    assert reply.content == b""
    assert server.seen[-1].method == "HEAD"


@pytest.mark.parametrize(
    ("base_path", "url", "path"),
    [
        ("", "/echo", "/echo"),
        ("/api", "users", "/api/users"),
        ("/api", "/users", "/api/users"),
        ("/api/", "/users", "/api/users"),
    ],
)
async def test_relative_urls_are_appended_to_the_base_url_path(
    clients: Clients, server: LoopbackHTTPServer, base_path: str, url: str, path: str
) -> None:
    client = await clients.open(base_url=server.url + base_path)

    await client.get(url)

    assert server.seen[-1].path == path


async def test_an_absolute_url_ignores_the_base_url(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(base_url="http://127.0.0.1:1/elsewhere")

    await client.get(f"{server.url}/echo")

    assert server.seen[-1].path == "/echo"


async def test_params_are_encoded_into_the_query(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open()

    await client.get("/echo?fixed=1", params={"q": "a b", "n": [1, 2], "flag": True})

    assert server.seen[-1].query == "fixed=1&q=a+b&n=1&n=2&flag=true"


async def test_config_headers_are_sent_with_every_request(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(headers={"User-Agent": "MyApp/1.0", "X-Team": "core"})

    await client.get("/echo")
    await client.post("/echo")

    for seen in server.seen:
        assert seen.headers["user-agent"] == "MyApp/1.0"
        assert seen.headers["x-team"] == "core"


async def test_the_default_user_agent_names_tether(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open()

    await client.get("/echo")

    assert server.seen[-1].headers["user-agent"].startswith("tether/")


async def test_request_headers_override_config_headers(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(headers={"X-Team": "core"})

    await client.get("/echo", headers={"x-team": "edge", "X-Trace": "t1"})

    assert server.seen[-1].headers["x-team"] == "edge"
    assert server.seen[-1].headers["x-trace"] == "t1"


async def test_json_body_is_sent_with_its_content_type(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open()

    await client.post("/echo", json={"name": "ann", "n": 1})

    seen = server.seen[-1]
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == b'{"name":"ann","n":1}'


async def test_form_data_is_sent_urlencoded(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open()

    await client.post("/echo", data={"a": "1 2", "b": "x"})

    seen = server.seen[-1]
    assert seen.headers["content-type"] == "application/x-www-form-urlencoded"
    assert seen.body == b"a=1+2&b=x"


async def test_content_is_sent_as_given(clients: Clients, server: LoopbackHTTPServer) -> None:
    client = await clients.open()

    await client.put("/echo", content=b"\x00raw", headers={"Content-Type": "application/x"})

    assert server.seen[-1].body == b"\x00raw"
    assert server.seen[-1].headers["content-type"] == "application/x"


async def test_two_bodies_are_refused_before_sending(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open()

    with pytest.raises(ValueError, match="one body"):
        await client.post("/echo", json={"a": 1}, content=b"x")

    assert server.seen == []


async def test_a_relative_url_without_base_url_is_refused(clients: Clients) -> None:
    client = await clients.open(base_url="", health_path="http://127.0.0.1:1/")

    with pytest.raises(ValueError, match="not an absolute URL"):
        await client.get("/echo")


async def test_a_url_with_another_scheme_is_refused(clients: Clients) -> None:
    client = await clients.open()

    with pytest.raises(ValueError, match="not an http"):
        await client.get("ftp://127.0.0.1/file")


@pytest.mark.parametrize("code", [404, 500, 503])
async def test_error_statuses_are_responses_not_errors(clients: Clients, code: int) -> None:
    client = await clients.open()

    reply = await client.get(f"/status/{code}")

    assert reply.status_code == code
    assert not reply.is_success
    assert client.statistics().failures_total == 0


async def test_raise_for_status_raises_for_an_error_status(clients: Clients) -> None:
    client = await clients.open(name="api")
    reply = await client.get("/status/404")

    with pytest.raises(HTTPStatusError, match=r"api: GET .*/status/404 answered 404 Not Found") \
            as caught:
        reply.raise_for_status()

    assert caught.value.status_code == 404
    assert caught.value.response is reply


async def test_raise_for_status_returns_a_successful_response(clients: Clients) -> None:
    client = await clients.open()
    reply = await client.get("/echo")

    assert reply.raise_for_status() is reply


async def test_text_is_decoded_with_the_declared_charset(clients: Clients) -> None:
    client = await clients.open()

    reply = await client.get("/status/200")

    assert reply.text == "status 200"
    assert reply.encoding == "utf-8"


async def test_headers_are_read_in_any_case(clients: Clients) -> None:
    client = await clients.open()

    reply = await client.get("/echo")

    assert reply.headers["Content-Type"] == reply.headers["content-type"]
    assert "CONTENT-LENGTH" in reply.headers


async def test_cookies_set_by_a_server_are_not_sent_to_the_next_caller(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open()
    reply = await client.get("/set-cookie")
    assert reply.headers["set-cookie"].startswith("session=server-set")

    await client.get("/echo")

    assert "cookie" not in server.seen[-1].headers


async def test_redirects_are_not_followed_by_default(clients: Clients) -> None:
    client = await clients.open()

    reply = await client.get("/redirect")

    assert reply.status_code == 302
    assert reply.headers["location"] == "/echo"


async def test_redirects_are_followed_when_configured(
    clients: Clients, server: LoopbackHTTPServer
) -> None:
    client = await clients.open(follow_redirects=True)

    reply = await client.get("/redirect")

    assert reply.status_code == 200
    assert [s.path for s in server.seen] == ["/redirect", "/echo"]


# -- stream --------------------------------------------------------------------------


async def test_stream_gives_the_body_in_chunks(clients: Clients) -> None:
    client = await clients.open()

    async with client.stream("GET", "/chunks/8") as stream:
        assert stream.status_code == 200
        chunks = [chunk async for chunk in stream.aiter_bytes()]

    assert sum(map(len, chunks)) == 8 * 1024
    assert len(chunks) > 1


async def test_stream_aread_reads_the_whole_body(clients: Clients) -> None:
    client = await clients.open()

    async with client.stream("GET", "/chunks/3") as stream:
        body = await stream.aread()

    assert body == b"x" * 3 * 1024


async def test_stream_left_early_gives_its_connection_back(clients: Clients) -> None:
    client = await clients.open(max_connections=1, pool_timeout=2.0)

    async with client.stream("GET", "/chunks/64") as stream:
        async for _ in stream.aiter_bytes():
            break

    reply = await client.get("/echo")
    assert reply.status_code == 200
    assert client.statistics().connections_in_use == 0


async def test_stream_read_after_its_block_is_refused(clients: Clients) -> None:
    client = await clients.open()

    async with client.stream("GET", "/echo") as stream:
        pass

    with pytest.raises(Exception, match="after its `async with` block"):
        await stream.aread()
