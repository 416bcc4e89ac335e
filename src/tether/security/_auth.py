"""Users, passwords, roles, permissions and scopes: who is calling and what they may do."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ._errors import InvalidCredentials, NotAllowed
from ._tokens import Claims, TokenPair, Tokens


class PasswordHasher:
    """Argon2id password hashes (argon2-cffi, RFC 9106 low-memory profile by default).

    ``verify`` tells when a hash was made with weaker parameters than today's, so the
    caller can store the new hash it returns. Hashing runs in a worker thread: it takes
    tens of milliseconds on purpose and must not stall the event loop.
    """

    def __init__(self, *, time_cost: int = 3, memory_cost: int = 65536,
                 parallelism: int = 4) -> None:
        self._hasher = _Argon2(time_cost=time_cost, memory_cost=memory_cost,
                               parallelism=parallelism)
        # Verified against when a user does not exist, so that answer takes as long.
        self._dummy = self._hasher.hash("tether: no such user")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str, password: str) -> tuple[bool, str | None]:
        """``(matches, new_hash)``: ``new_hash`` is set when ``stored`` should be
        replaced because its parameters are outdated."""
        return await asyncio.to_thread(self._verify, stored, password)

    def _verify(self, stored: str, password: str) -> tuple[bool, str | None]:
        try:
            self._hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, None
        if self._hasher.check_needs_rehash(stored):
            return True, self._hasher.hash(password)
        return True, None

    async def burn(self, password: str) -> None:
        """Spend the time of one verification (for a user that does not exist)."""
        await asyncio.to_thread(self._verify, self._dummy, password)


@dataclass(frozen=True, slots=True)
class User:
    """What a ``UserStore`` returns for a login name."""

    subject: str
    password_hash: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] | None = None  # the OAuth2 scopes it may ask for; None: any
    disabled: bool = False


@runtime_checkable
class UserStore(Protocol):
    """Your user table, seen by the authenticator."""

    async def find(self, username: str) -> User | None: ...

    async def set_password_hash(self, subject: str, password_hash: str) -> None: ...


class MemoryUsers:
    """A ``UserStore`` in a dict: for tests, demos and fixed service accounts."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._users: dict[str, User] = {}
        self._by_subject: dict[str, str] = {}

    async def add(self, username: str, password: str, *, roles: Iterable[str] = (),
                  scopes: Iterable[str] | None = None, subject: str | None = None) -> User:
        user = User(subject or username, await self.hasher.hash(password),
                    frozenset(roles), None if scopes is None else frozenset(scopes))
        self._users[username] = user
        self._by_subject[user.subject] = username
        return user

    def set_roles(self, username: str, roles: Iterable[str]) -> None:
        user = self._users[username]
        self._users[username] = User(user.subject, user.password_hash, frozenset(roles),
                                     user.scopes, user.disabled)

    async def find(self, username: str) -> User | None:
        return self._users.get(username)

    async def roles_of(self, subject: str) -> frozenset[str]:
        username = self._by_subject.get(subject)
        user = self._users.get(username) if username is not None else None
        return user.roles if user is not None and not user.disabled else frozenset()

    async def set_password_hash(self, subject: str, password_hash: str) -> None:
        username = self._by_subject[subject]
        user = self._users[username]
        self._users[username] = User(user.subject, password_hash, user.roles, user.scopes,
                                     user.disabled)


class Permissions:
    """Roles mapped to permissions: ``Permissions({"editor": {"notes:write"}})``."""

    def __init__(self, roles: Mapping[str, Iterable[str]]) -> None:
        self._roles = {role: frozenset(perms) for role, perms in roles.items()}

    def of(self, roles: Iterable[str]) -> frozenset[str]:
        granted: set[str] = set()
        for role in roles:
            granted |= self._roles.get(role, frozenset())
        return frozenset(granted)

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(self._roles)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: who, with which roles, scopes and permissions."""

    subject: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    permissions: frozenset[str] = frozenset()
    claims: Claims | None = field(default=None, compare=False)

    def require_scopes(self, *scopes: str) -> None:
        missing = set(scopes) - self.scopes
        if missing:
            raise NotAllowed(f"missing scope {', '.join(sorted(missing))}")

    def require_roles(self, *roles: str) -> None:
        if not set(roles) <= self.roles:
            raise NotAllowed(f"missing role {', '.join(sorted(set(roles) - self.roles))}")

    def require_permission(self, *permissions: str) -> None:
        missing = set(permissions) - self.permissions
        if missing:
            raise NotAllowed(f"missing permission {', '.join(sorted(missing))}")


RolesOf = Callable[[str], Awaitable[Iterable[str]] | Iterable[str]]


class Authenticator:
    """Logs users in with a password and turns bearer tokens into ``Principal``s.

    ``roles_of(subject)``, when given, is asked on every request, so a role taken away
    counts from the caller's next request rather than when the token expires; without
    it the roles written into the token at login are used.
    """

    def __init__(
        self,
        tokens: Tokens,
        users: UserStore,
        permissions: Permissions | None = None,
        *,
        hasher: PasswordHasher | None = None,
        roles_of: RolesOf | None = None,
    ) -> None:
        self.tokens = tokens
        self.users = users
        self.permissions = permissions or Permissions({})
        self.hasher = hasher or getattr(users, "hasher", None) or PasswordHasher()
        self.roles_of = roles_of
        self.failed_logins_total = 0

    async def login(self, username: str, password: str,
                    scopes: Iterable[str] = ()) -> TokenPair:
        """Check the password and issue tokens. ``scopes`` are the OAuth2 scopes asked
        for; the user gets those it is allowed, and a scope it may not have is refused."""
        user = await self.users.find(username)
        if user is None:
            await self.hasher.burn(password)
            self.failed_logins_total += 1
            raise InvalidCredentials()
        ok, new_hash = await self.hasher.verify(user.password_hash, password)
        if not ok or user.disabled:
            self.failed_logins_total += 1
            raise InvalidCredentials()
        if new_hash is not None:
            await self.users.set_password_hash(user.subject, new_hash)
        wanted = frozenset(scopes)
        if user.scopes is not None and not wanted <= user.scopes:
            raise NotAllowed(f"scope {', '.join(sorted(wanted - user.scopes))} is not "
                             f"granted to this user")
        return await self.tokens.issue(user.subject, scopes=sorted(wanted),
                                       roles=sorted(user.roles))

    async def principal(self, token: str) -> Principal:
        """Verify an access token (signature, claims, revocation) and build the caller."""
        claims = await self.tokens.verify(token, "access")
        roles: Iterable[str] = claims.roles
        if self.roles_of is not None:
            found = self.roles_of(claims.subject)
            roles = await found if inspect.isawaitable(found) else found
        role_set = frozenset(roles)
        return Principal(claims.subject, role_set, frozenset(claims.scopes),
                         self.permissions.of(role_set), claims)
