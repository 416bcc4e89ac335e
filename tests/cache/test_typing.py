"""The decorators keep the decorated function's type: mypy checks these assert_type
calls (they also run, and then check nothing more than that the calls work)."""

from __future__ import annotations

from typing import assert_type

import pytest

from tether.cache import MemoryCache, cached, cached_dependency, invalidate, singleton_dependency

pytestmark = pytest.mark.anyio


@cached(ttl=10)
async def fetch(user_id: int, *, fresh: bool = False) -> str:
    return f"user {user_id}"


@cached()
def compute(x: float) -> float:
    return x * 2


class Repository:
    @cached(cache=MemoryCache())
    async def find(self, user_id: int) -> list[str]:
        return [str(user_id)]


@cached_dependency(ttl=5)
async def settings() -> dict[str, str]:
    return {"region": "eu"}


@singleton_dependency
def region() -> str:
    return "eu"


async def test_decorated_functions_keep_their_signatures() -> None:
    assert_type(await fetch(1, fresh=True), str)
    assert_type(compute(1.5), float)
    assert_type(await Repository().find(1), list[str])
    assert_type(await settings(), dict[str, str])
    assert_type(region(), str)


async def test_invalidate_checks_the_arguments_against_the_function() -> None:
    assert_type(await invalidate(fetch, 1, fresh=True), bool)
    assert_type(await invalidate(Repository().find, 1), bool)
    # mypy rejects invalidate(fetch, "one"): the arguments follow fetch's parameters.
