"""Turning ``client.request(...)`` arguments into the request a backend sends.

Done here, once for both backends, so that a URL joins the base URL, a query is encoded
and a JSON body is serialised the same way whichever library sends it, and so that a
caller's mistake (a relative URL with no base URL, two bodies) is a ``ValueError``
raised before the call, never a resource failure counted by the circuit breaker.
"""

from __future__ import annotations

import base64
import json as jsonlib
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import SplitResult, unquote, urlencode, urlsplit, urlunsplit

from .._health import redact
from ._http_wire import Outgoing

QueryValue = str | int | float | bool | None
Params = Mapping[str, QueryValue | Sequence[QueryValue]]

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 token: methods, names


def check_header(name: str, value: str, where: str) -> None:
    if not _TOKEN.match(name):
        raise ValueError(f"{where}: {name!r} is not a valid header name")
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"{where}: the value of header {name!r} contains a line break")


def basic_auth(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without its user and password, and those two (percent-decoded)."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None, None
    user, colon, password = userinfo.partition(":")
    bare = urlunsplit(parts._replace(netloc=host))
    return bare, unquote(user), unquote(password) if colon else None


def _origin(parts: SplitResult) -> tuple[str, str, int | None]:
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _query(params: Params) -> str:
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if isinstance(value, str | int | float | bool) or value is None:
            pairs.append((key, _text(value)))
        else:
            pairs.extend((key, _text(v)) for v in value)
    return urlencode(pairs)


def _text(value: QueryValue) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_PLAIN_KEPT = 512


class RequestBuilder:
    """Builds every request of one client: base URL, default headers, credentials."""

    def __init__(
        self,
        resource: str,
        base_url: str,
        headers: Sequence[tuple[str, str]],
        authorization: str | None,
    ) -> None:
        self._resource = resource
        self._base = urlsplit(base_url) if base_url else None
        self._origin = _origin(self._base) if self._base else None
        self._headers = tuple(headers)
        self._authorization = authorization  # for the base URL's origin only
        # Requests with nothing but a method and a URL (most GETs) repeat: built once.
        self._plain: dict[tuple[str, str], Outgoing] = {}

    def build(
        self,
        method: str,
        url: str,
        *,
        params: Params | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | str | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
    ) -> Outgoing:
        plain = params is None and headers is None and content is None and json is None \
            and data is None
        if plain:
            built = self._plain.get((method, url))
            if built is not None:
                return built
        key = (method, url)
        method = method.upper()
        if not _TOKEN.match(method):
            raise ValueError(f"{self._resource}: {method!r} is not an HTTP method")
        parts, user, password = self._target(url)
        if params:
            query = _query(params)
            parts = parts._replace(query=f"{parts.query}&{query}" if parts.query else query)
        body, content_type = self._body(content, json, data)
        merged = self._merge(parts, headers, content_type, user, password)
        where = f"{method} {urlunsplit(parts._replace(query='', fragment=''))}"
        built = Outgoing(method, urlunsplit(parts), merged, body, where)
        if plain:
            if len(self._plain) >= _PLAIN_KEPT:
                self._plain.clear()  # many distinct URLs (ids in paths): start over
            self._plain[key] = built
        return built

    def _target(self, url: str) -> tuple[SplitResult, str | None, str | None]:
        bare, user, password = split_credentials(url)
        parts = urlsplit(bare)._replace(fragment="")
        if parts.scheme:
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    f"{self._resource}: {redact(url)!r} is not an http:// or https:// URL"
                )
            return parts, user, password
        if self._base is None:
            raise ValueError(
                f"{self._resource}: {redact(url)!r} is not an absolute URL and the client "
                f"has no base_url"
            )
        if parts.netloc:  # "//host/path": the base URL's scheme
            return parts._replace(scheme=self._base.scheme), user, password
        # As httpx does: the path is appended to the base URL's path, with or without a
        # leading "/" ("users" and "/users" on "http://h/api" are both "/api/users").
        path = self._base.path.rstrip("/") + "/" + parts.path.lstrip("/")
        return self._base._replace(path=path, query=parts.query), user, password

    def _body(
        self, content: bytes | str | None, json: Any, data: Mapping[str, str] | None
    ) -> tuple[bytes | None, str | None]:
        given = [name for name, value in (("content", content), ("json", json), ("data", data))
                 if value is not None]
        if len(given) > 1:
            raise ValueError(f"{self._resource}: pass one body, not {' and '.join(given)}")
        if json is not None:
            text = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"))
            return text.encode(), "application/json"
        if data is not None:
            return urlencode(list(data.items())).encode(), "application/x-www-form-urlencoded"
        if isinstance(content, str):
            return content.encode(), None
        return content, None

    def _merge(
        self,
        parts: SplitResult,
        extra: Mapping[str, str] | None,
        content_type: str | None,
        user: str | None,
        password: str | None,
    ) -> tuple[tuple[str, str], ...]:
        merged = {name.lower(): (name, value) for name, value in self._headers}
        if user is not None:
            merged["authorization"] = ("Authorization", basic_auth(user, password or ""))
        elif self._authorization and _origin(parts) == self._origin:
            merged.setdefault("authorization", ("Authorization", self._authorization))
        if content_type:
            merged.setdefault("content-type", ("Content-Type", content_type))
        for name, value in (extra or {}).items():
            check_header(name, value, self._resource)
            merged[name.lower()] = (name, value)
        return tuple(merged.values())
