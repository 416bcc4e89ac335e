"""Passwords, roles, permissions and the FastAPI dependencies (scenario A5)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from typing import Annotated

import pytest
from argon2 import PasswordHasher as Argon2
from fastapi import Depends, FastAPI
from fastapi.security import OAuth2PasswordRequestForm
from fastapi.testclient import TestClient

from tether import Container
from tether.fastapi import Inject, install
from tether.security import (
    Authenticator,
    InvalidCredentials,
    MemoryUsers,
    NotAllowed,
    PasswordHasher,
    Permissions,
    Principal,
    TokenConfig,
    Tokens,
)
from tether.security.fastapi import (
    authenticated,
    require_permission,
    require_roles,
    require_scopes,
)

pytestmark = pytest.mark.anyio

FAST = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}
PERMISSIONS = Permissions({"reader": {"notes:read"}, "editor": {"notes:read", "notes:write"}})


async def make_auth() -> tuple[Authenticator, MemoryUsers]:
    users = MemoryUsers(PasswordHasher(**FAST))
    await users.add("alice", "correct horse", roles=["editor"])
    await users.add("bob", "battery staple", roles=["reader"], scopes=["notes:read"])
    tokens = Tokens(TokenConfig(issuer="notes", audience="notes"))
    return Authenticator(tokens, users, PERMISSIONS, roles_of=users.roles_of), users


# -- passwords -----------------------------------------------------------------------


async def test_a_password_verifies_and_a_wrong_one_does_not() -> None:
    hasher = PasswordHasher(**FAST)
    stored = await hasher.hash("s3cret")
    assert stored.startswith("$argon2id$")
    assert await hasher.verify(stored, "s3cret") == (True, None)
    assert await hasher.verify(stored, "S3cret") == (False, None)
    assert await hasher.verify("not a hash", "s3cret") == (False, None)


async def test_an_outdated_hash_is_replaced_on_a_successful_login() -> None:
    users = MemoryUsers(PasswordHasher(**FAST))
    await users.add("carol", "pw")
    old = Argon2(time_cost=1, memory_cost=512, parallelism=1).hash("pw")
    await users.set_password_hash("carol", old)
    auth = Authenticator(Tokens(TokenConfig(issuer="i", audience="a")), users)
    await auth.login("carol", "pw")
    user = await users.find("carol")
    assert user is not None
    assert user.password_hash != old
    assert "m=1024" in user.password_hash


async def test_hashing_runs_off_the_event_loop() -> None:
    hasher = PasswordHasher()  # the real cost: tens of milliseconds
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    for _ in range(3):
        await hasher.hash("pw")
    task.cancel()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) < 0.2  # a hash on the loop would stall it for its whole run


# -- logins --------------------------------------------------------------------------


async def test_login_issues_tokens_with_the_users_roles() -> None:
    auth, _ = await make_auth()
    pair = await auth.login("alice", "correct horse")
    principal = await auth.principal(pair.access_token)
    assert principal.subject == "alice"
    assert principal.roles == {"editor"}
    assert principal.permissions == {"notes:read", "notes:write"}


@pytest.mark.parametrize(("username", "password"), [
    ("alice", "wrong"), ("nobody", "correct horse"), ("", ""),
])
async def test_a_failed_login_gives_one_error_whatever_was_wrong(
    username: str, password: str
) -> None:
    auth, _ = await make_auth()
    with pytest.raises(InvalidCredentials) as caught:
        await auth.login(username, password)
    assert str(caught.value) == "wrong username or password"
    assert auth.failed_logins_total == 1


async def test_a_user_gets_only_the_scopes_it_is_granted() -> None:
    auth, _ = await make_auth()
    pair = await auth.login("bob", "battery staple", scopes=["notes:read"])
    assert (await auth.principal(pair.access_token)).scopes == {"notes:read"}
    with pytest.raises(NotAllowed, match="notes:write"):
        await auth.login("bob", "battery staple", scopes=["notes:write"])


async def test_a_role_taken_away_counts_from_the_next_request() -> None:
    auth, users = await make_auth()
    pair = await auth.login("alice", "correct horse")
    assert "notes:write" in (await auth.principal(pair.access_token)).permissions
    users.set_roles("alice", ["reader"])
    assert "notes:write" not in (await auth.principal(pair.access_token)).permissions


def test_principal_checks_name_what_is_missing() -> None:
    principal = Principal("a", roles=frozenset({"reader"}), scopes=frozenset({"x"}),
                          permissions=frozenset({"notes:read"}))
    principal.require_scopes("x")
    with pytest.raises(NotAllowed, match="missing scope y"):
        principal.require_scopes("x", "y")
    with pytest.raises(NotAllowed, match="missing role editor"):
        principal.require_roles("editor")
    with pytest.raises(NotAllowed, match="missing permission notes:write"):
        principal.require_permission("notes:write")


# -- FastAPI: 401 and 403 ------------------------------------------------------------


@pytest.fixture
def client() -> Iterator[tuple[TestClient, MemoryUsers]]:
    auth, users = asyncio.run(make_auth())
    container = Container()
    container.bind(Authenticator, auth)
    app = FastAPI()
    install(app, container)

    @app.post("/token")
    async def token(form: Annotated[OAuth2PasswordRequestForm, Depends()],
                    auth: Inject[Authenticator]) -> dict[str, object]:
        pair = await auth.login(form.username, form.password, form.scopes)
        return pair.to_dict()

    @app.get("/me")
    async def me(user: Annotated[Principal, Depends(authenticated)]) -> str:
        return user.subject

    @app.get("/notes")
    async def read(user: Annotated[Principal, Depends(require_permission("notes:read"))]
                   ) -> str:
        return "notes"

    @app.post("/notes")
    async def write(user: Annotated[Principal, Depends(require_permission("notes:write"))]
                    ) -> str:
        return "written"

    @app.get("/admin")
    async def admin(user: Annotated[Principal, Depends(require_roles("admin"))]) -> str:
        return "admin"

    @app.get("/scoped")
    async def scoped(user: Annotated[Principal, Depends(require_scopes("notes:read"))]
                     ) -> str:
        return "scoped"

    with TestClient(app) as c:
        yield c, users


def login(client: TestClient, username: str, password: str, scope: str = "") -> str:
    response = client.post("/token", data={"username": username, "password": password,
                                           "scope": scope})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_token_is_401_with_a_bearer_challenge(
    client: tuple[TestClient, MemoryUsers],
) -> None:
    c, _ = client
    response = c.get("/notes")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["request_id"]


def test_a_bad_token_is_401_invalid_token(client: tuple[TestClient, MemoryUsers]) -> None:
    c, _ = client
    response = c.get("/notes", headers=bearer("not.a.token"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


def test_an_allowed_caller_gets_through(client: tuple[TestClient, MemoryUsers]) -> None:
    c, _ = client
    token = login(c, "alice", "correct horse")
    assert c.get("/me", headers=bearer(token)).json() == "alice"
    assert c.post("/notes", headers=bearer(token)).json() == "written"


def test_a_known_caller_without_the_permission_is_403_not_401(
    client: tuple[TestClient, MemoryUsers],
) -> None:
    c, _ = client
    token = login(c, "bob", "battery staple")
    assert c.get("/notes", headers=bearer(token)).status_code == 200
    response = c.post("/notes", headers=bearer(token))
    assert response.status_code == 403
    assert "notes:write" in response.json()["message"]
    assert c.get("/admin", headers=bearer(token)).status_code == 403


def test_a_missing_scope_is_403_with_insufficient_scope(
    client: tuple[TestClient, MemoryUsers],
) -> None:
    c, _ = client
    without = login(c, "alice", "correct horse")
    response = c.get("/scoped", headers=bearer(without))
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    with_scope = login(c, "alice", "correct horse", scope="notes:read")
    assert c.get("/scoped", headers=bearer(with_scope)).status_code == 200


def test_a_role_removed_mid_session_is_403_on_the_next_request(
    client: tuple[TestClient, MemoryUsers],
) -> None:
    c, users = client
    token = login(c, "alice", "correct horse")
    assert c.post("/notes", headers=bearer(token)).status_code == 200
    users.set_roles("alice", ["reader"])
    assert c.post("/notes", headers=bearer(token)).status_code == 403


def test_the_bearer_scheme_is_in_the_openapi_schema(
    client: tuple[TestClient, MemoryUsers],
) -> None:
    c, _ = client
    schema = c.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert schema["paths"]["/notes"]["get"]["security"] == [{"HTTPBearer": []}]
