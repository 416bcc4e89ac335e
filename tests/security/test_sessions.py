"""Server-side sessions (scenario A6): fixation, idle and absolute expiry, logout,
rotation, client binding, cookies, and the container's SESSION scope."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Request, Response
from fastapi.testclient import TestClient
from pydantic import ValidationError

from tether import Container, Scope
from tether.exceptions import ClosedError
from tether.fastapi import Inject, install
from tether.security import MemorySessionStore, Session, SessionConfig, Sessions
from tether.security.fastapi import current_session, require_session, session_validator

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock | None = None, **options: Any) -> Sessions:
    return Sessions(SessionConfig(**options), clock=clock or Clock())


async def test_a_created_session_is_found_by_its_id() -> None:
    sessions = make()
    session = await sessions.create("alice", {"cart": [1]})
    found = await sessions.get(session.id)
    assert found is not None
    assert (found.subject, found.data) == ("alice", {"cart": [1]})


async def test_ids_are_long_random_and_distinct() -> None:
    sessions = make()
    ids = {(await sessions.create()).id for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) >= 43 for i in ids)  # 32 random bytes, base64url


async def test_the_store_keeps_only_a_hash_of_the_id() -> None:
    store = MemorySessionStore()
    sessions = Sessions(SessionConfig(), store)
    session = await sessions.create("alice")
    assert session.id not in repr(store._records)
    assert session.id not in repr(session)


async def test_login_gives_a_new_id_and_the_planted_one_dies() -> None:
    sessions = make()
    planted = await sessions.create(None, {"theme": "dark"})  # the attacker's id
    logged_in = await sessions.login(planted.id, "alice")
    assert logged_in.id != planted.id
    assert logged_in.data == {"theme": "dark"}
    assert await sessions.get(planted.id) is None


async def test_an_idle_session_expires_server_side() -> None:
    clock = Clock()
    sessions = make(clock, idle_timeout=60, absolute_timeout=3600)
    session = await sessions.create("alice")
    clock.now += 50
    assert await sessions.get(session.id) is not None  # restarts the idle clock
    clock.now += 50
    assert await sessions.get(session.id) is not None
    clock.now += 61
    assert await sessions.get(session.id) is None


async def test_an_active_session_still_ends_at_the_absolute_timeout() -> None:
    clock = Clock()
    sessions = make(clock, idle_timeout=60, absolute_timeout=150)
    session = await sessions.create("alice")
    for _ in range(3):
        clock.now += 45
        assert await sessions.get(session.id) is not None
    clock.now += 45  # 180 s after creation, never idle for long
    assert await sessions.get(session.id) is None


async def test_logout_invalidates_the_session_server_side() -> None:
    sessions = make()
    session = await sessions.create("alice")
    await sessions.invalidate(session.id)
    assert await sessions.get(session.id) is None


async def test_rotation_moves_the_session_to_a_new_id() -> None:
    sessions = make()
    session = await sessions.create("alice", {"role": "user"})
    rotated = await sessions.rotate(session.id)
    assert rotated is not None
    assert rotated.id != session.id
    assert rotated.data == {"role": "user"}
    assert await sessions.get(session.id) is None
    assert await sessions.get(rotated.id) is not None


async def test_a_bound_session_refuses_another_client() -> None:
    sessions = make(bind_ip=True, bind_user_agent=True)
    session = await sessions.create("alice", ip="10.0.0.1", user_agent="firefox")
    assert await sessions.get(session.id, ip="10.0.0.1", user_agent="firefox") is not None
    assert await sessions.get(session.id, ip="10.0.0.2", user_agent="firefox") is None
    assert await sessions.get(session.id, ip="10.0.0.1", user_agent="curl") is None


async def test_the_memory_store_keeps_at_most_max_sessions() -> None:
    store = MemorySessionStore(max_sessions=3)
    sessions = Sessions(SessionConfig(), store)
    made = [await sessions.create() for _ in range(5)]
    assert len(store) == 3
    assert store.evicted_total == 2
    assert await sessions.get(made[0].id) is None
    assert await sessions.get(made[4].id) is not None


async def test_garbage_ids_are_refused_without_a_lookup_error() -> None:
    sessions = make()
    for bad in ["", "x" * 10_000, "../../etc", "\x00"]:
        assert await sessions.get(bad) is None


def test_incoherent_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="absolute_timeout"):
        SessionConfig(idle_timeout=600, absolute_timeout=60)
    with pytest.raises(ValidationError, match="cookie_secure"):
        SessionConfig(cookie_samesite="none", cookie_secure=False)


async def test_a_disposed_sessions_refuses_use() -> None:
    sessions = make()
    await sessions.dispose()
    with pytest.raises(ClosedError):
        await sessions.create()


# -- FastAPI: cookies and the SESSION scope ------------------------------------------


class Cart:
    def __init__(self) -> None:
        self.items: list[str] = []


def make_app() -> tuple[FastAPI, list[str]]:
    disposed: list[str] = []
    container = Container()
    container.bind(SessionConfig, SessionConfig(cookie_secure=False, bind_user_agent=True))
    container.bind(Sessions)

    @container.provide(scope=Scope.SESSION)
    async def cart() -> AsyncIterator[Cart]:
        c = Cart()
        yield c
        disposed.append(",".join(c.items))

    app = FastAPI()
    install(app, container, session_cookie="session",
            validate_session=session_validator(container))

    @app.post("/login")
    async def login(request: Request, response: Response,
                    sessions: Inject[Sessions]) -> str:
        session = await sessions.login(request.cookies.get("session"), "alice",
                                       user_agent=request.headers.get("user-agent"))
        sessions.set_cookie(response, session)
        return "ok"

    @app.post("/logout")
    async def logout(response: Response, sessions: Inject[Sessions],
                     session: Annotated[Session, Depends(require_session)]) -> str:
        await sessions.invalidate(session.id)
        sessions.clear_cookie(response)
        return "bye"

    @app.post("/cart/{item}")
    async def add(item: str, cart: Inject[Cart],
                  session: Annotated[Session, Depends(require_session)]) -> list[str]:
        cart.items.append(item)
        return cart.items

    @app.get("/whoami")
    async def whoami(session: Annotated[Session | None, Depends(current_session)]
                     ) -> str | None:
        return session.subject if session else None

    return app, disposed


def test_the_cookie_is_httponly_samesite_and_scoped() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        cookie = client.post("/login").headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "path=/" in cookie
    assert "max-age=28800" in cookie


def test_secure_is_the_default() -> None:
    response = Response()
    Sessions(SessionConfig()).set_cookie(response, Session("id", None, 0, 0))
    assert "secure" in response.headers["set-cookie"].lower()


def test_a_logged_in_client_keeps_its_session_scoped_resources() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        client.post("/login")
        assert client.get("/whoami").json() == "alice"
        client.post("/cart/apple")
        assert client.post("/cart/pear").json() == ["apple", "pear"]


def test_an_unknown_session_cookie_opens_no_session_scope() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        client.cookies.set("session", "made-up-by-the-client")
        assert client.get("/whoami").json() is None
        assert client.post("/cart/apple").status_code == 401


def test_logout_disposes_the_session_scope_at_once_and_the_id_dies() -> None:
    app, disposed = make_app()
    with TestClient(app) as client:
        client.post("/login")
        old = client.cookies["session"]
        client.post("/cart/apple")
        assert client.post("/logout").status_code == 200
        assert disposed == ["apple"]
        client.cookies.set("session", old)
        assert client.get("/whoami").json() is None


def test_a_session_presented_by_another_user_agent_is_ignored() -> None:
    app, _ = make_app()
    with TestClient(app) as client:
        client.post("/login")
        assert client.get("/whoami").json() == "alice"
        assert client.get("/whoami", headers={"user-agent": "evil"}).json() is None
