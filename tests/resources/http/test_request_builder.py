"""``RequestBuilder``: plain requests are built once, everything else every time."""

from __future__ import annotations

from tether.resources import _http_request
from tether.resources._http_request import RequestBuilder


def _builder() -> RequestBuilder:
    return RequestBuilder("api", "http://127.0.0.1:8080/v1", [("User-Agent", "t")], None)


def test_a_plain_request_is_built_once_and_kept() -> None:
    builder = _builder()

    first = builder.build("GET", "/users/1")
    again = builder.build("GET", "/users/1")

    assert again is first
    assert first.url == "http://127.0.0.1:8080/v1/users/1"
    assert builder.build("get", "/users/1").method == "GET"
    assert builder.build("DELETE", "/users/1").method == "DELETE"
    assert builder.build("GET", "/users/2").url.endswith("/users/2")


def test_requests_with_params_headers_or_a_body_are_never_shared() -> None:
    builder = _builder()
    plain = builder.build("GET", "/items")

    with_params = builder.build("GET", "/items", params={"page": 2})
    with_headers = builder.build("GET", "/items", headers={"X-Trace": "1"})
    with_body = builder.build("POST", "/items", json={"a": 1})

    assert with_params.url.endswith("/items?page=2")
    assert ("X-Trace", "1") in with_headers.headers
    assert with_body.content == b'{"a":1}'
    assert builder.build("GET", "/items") is plain
    assert builder.build("GET", "/items", params={"page": 3}).url.endswith("page=3")


def test_the_kept_requests_stay_bounded() -> None:
    builder = _builder()

    for number in range(_http_request._PLAIN_KEPT * 3):
        assert builder.build("GET", f"/users/{number}").url.endswith(f"/users/{number}")

    assert len(builder._plain) <= _http_request._PLAIN_KEPT
