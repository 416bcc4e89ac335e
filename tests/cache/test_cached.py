"""@cached: keys from the qualified name and normalised arguments (scenario C3: no
collisions between functions), async and sync functions and methods, errors not
cached unless asked, typed values through Redis, invalidate()."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import enum
import inspect
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from tether import Container, Scope
from tether.cache import Cache, MemoryCache, SerializationError, cached, invalidate

from .conftest import MakeHybrid, MakeRedisCache, eventually

pytestmark = pytest.mark.anyio


class Recorder:
    """Counts the calls that reached the function."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)


# -- keys --------------------------------------------------------------------------------


async def test_a_second_call_with_the_same_arguments_is_served_from_the_cache() -> None:
    seen = Recorder()

    @cached(ttl=60)
    async def square(x: int) -> int:
        seen(x)
        return x * x

    assert await square(3) == 9
    assert await square(3) == 9
    assert await square(4) == 16
    assert seen.calls == [(3,), (4,)]


async def test_positional_keyword_and_default_spellings_of_one_call_share_an_entry() -> None:
    seen = Recorder()

    @cached()
    async def page(user: int, size: int = 20, *, sort: str = "id") -> str:
        seen(user, size, sort)
        return f"{user}/{size}/{sort}"

    await page(1)
    await page(user=1)
    await page(1, 20)
    await page(1, size=20, sort="id")

    assert seen.calls == [(1, 20, "id")]


async def test_two_functions_called_with_the_same_arguments_do_not_collide() -> None:
    cache = MemoryCache()

    @cached(cache=cache)
    async def first(x: int) -> str:
        return "first"

    @cached(cache=cache)
    async def second(x: int) -> str:
        return "second"

    assert (await first(1), await second(1)) == ("first", "second")
    assert (await first(1), await second(1)) == ("first", "second")
    assert cache.statistics().size == 2


@pytest.mark.parametrize(("a", "b"), [
    (1, "1"), (1, 1.5), (True, 1), (None, "None"), ([1, 2], "[1, 2]"), ((1,), 1),
    ({"a": 1}, [["a", 1]]), (b"x", "x"), (frozenset({1}), [1]),
])
async def test_arguments_of_different_types_get_different_entries(a: Any, b: Any) -> None:
    seen = Recorder()

    @cached()
    async def echo(x: Any) -> str:
        seen(x)
        return repr(x)

    assert await echo(a) == repr(a)
    assert await echo(b) == repr(b)
    assert len(seen.calls) == 2


async def test_equal_containers_written_differently_share_an_entry() -> None:
    seen = Recorder()

    @cached()
    async def count(values: Any) -> int:
        seen(values)
        return len(values)

    await count({"a": 1, "b": 2})
    await count({"b": 2, "a": 1})
    await count({3, 1, 2})
    await count({1, 2, 3})

    assert len(seen.calls) == 2


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


class Query(BaseModel):
    term: str
    limit: int = 10


@pytest.mark.parametrize("value", [
    datetime.date(2024, 1, 2), uuid.UUID(int=7), Decimal("1.10"), Color.RED, Point(1, 2),
    Query(term="ann"),
])
async def test_well_known_value_types_can_be_arguments(value: Any) -> None:
    seen = Recorder()

    @cached()
    async def echo(x: Any) -> str:
        seen(x)
        return "ok"

    await echo(value)
    await echo(value)

    assert len(seen.calls) == 1


async def test_an_argument_with_no_stable_form_is_refused_with_a_hint() -> None:
    @cached()
    async def describe(thing: object) -> str:
        return "never"

    with pytest.raises(TypeError, match=r"argument 'thing'.*Hint: pass key="):
        await describe(object())


async def test_a_key_function_names_what_identifies_the_result() -> None:
    seen = Recorder()

    @cached(key=lambda user, request: str(user))
    async def profile(user: int, request: object) -> str:
        seen(user)
        return f"user {user}"

    assert await profile(1, object()) == "user 1"
    assert await profile(1, object()) == "user 1"
    assert seen.calls == [(1,)]


async def test_a_key_function_keeps_functions_apart() -> None:
    cache = MemoryCache()

    @cached(cache=cache, key=lambda x: "same")
    async def first(x: int) -> str:
        return "first"

    @cached(cache=cache, key=lambda x: "same")
    async def second(x: int) -> str:
        return "second"

    assert (await first(1), await second(1)) == ("first", "second")


async def test_a_key_function_must_return_a_string() -> None:
    @cached(key=lambda x: x)
    async def f(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="key= must return a str, got int"):
        await f(1)


# -- methods -----------------------------------------------------------------------------


class Repository:
    def __init__(self, name: str, seen: Recorder) -> None:
        self.name = name
        self.seen = seen

    @cached()
    async def find(self, user_id: int) -> str:
        self.seen(self.name, user_id)
        return f"user {user_id}"

    @cached(key=lambda self, user_id: f"{self.name}:{user_id}")
    async def find_own(self, user_id: int) -> str:
        self.seen(self.name, user_id)
        return f"{self.name} user {user_id}"


async def test_self_does_not_take_part_in_method_keys() -> None:
    seen = Recorder()
    first, second = Repository("a", seen), Repository("b", seen)

    assert await first.find(1) == "user 1"
    assert await second.find(1) == "user 1"

    assert seen.calls == [("a", 1)]


async def test_a_key_function_can_use_self() -> None:
    seen = Recorder()
    first, second = Repository("a", seen), Repository("b", seen)

    assert await first.find_own(1) == "a user 1"
    assert await second.find_own(1) == "b user 1"
    assert await first.find_own(1) == "a user 1"

    assert seen.calls == [("a", 1), ("b", 1)]


async def test_a_classmethod_is_cached_without_cls_in_the_key() -> None:
    seen = Recorder()

    class Prices:
        @classmethod
        @cached()
        async def of(cls, item: str) -> int:
            seen(cls, item)
            return len(item)

    class Discounted(Prices):
        pass

    assert await Prices.of("tea") == 3
    assert await Discounted.of("tea") == 3
    assert seen.calls == [(Prices, "tea")]


# -- sync functions ----------------------------------------------------------------------


def test_a_sync_function_is_cached() -> None:
    seen = Recorder()

    @cached(ttl=60)
    def double(x: int) -> int:
        seen(x)
        return 2 * x

    assert double(2) == 4
    assert double(2) == 4
    assert seen.calls == [(2,)]


def test_a_sync_method_is_cached() -> None:
    seen = Recorder()

    class Prices:
        @cached()
        def of(self, item: str) -> int:
            seen(item)
            return len(item)

    prices = Prices()
    assert prices.of("tea") == prices.of("tea") == 3
    assert seen.calls == [("tea",)]


async def test_a_sync_function_cannot_use_a_redis_cache(
    make_redis_cache: MakeRedisCache,
) -> None:
    cache = await make_redis_cache()

    with pytest.raises(TypeError, match="can only use a MemoryCache"):
        @cached(cache=cache)
        def f(x: int) -> int:
            return x


def test_a_sync_function_takes_a_sync_lookup() -> None:
    container = Container()
    container.bind(MemoryCache, scope=Scope.APP)

    @cached(cache=lambda: container.get(MemoryCache))
    def f(x: int) -> int:
        return x

    with container:
        assert f(1) == 1
        assert f(1) == 1
        assert container.get(MemoryCache).statistics().hits_total == 1


def test_a_sync_function_refuses_an_async_lookup() -> None:
    container = Container()
    container.bind(MemoryCache)

    @cached(cache=lambda: container.aget(MemoryCache))
    def f(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="its cache lookup must be sync too"):
        f(1)


# -- errors ------------------------------------------------------------------------------


async def test_an_exception_is_not_cached_by_default() -> None:
    seen = Recorder()

    @cached()
    async def fragile(x: int) -> int:
        seen(x)
        raise ConnectionError("flaky")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            await fragile(1)

    assert len(seen.calls) == 2


class NotFound(Exception):
    pass


async def test_listed_exceptions_are_cached_and_raised_again() -> None:
    seen = Recorder()

    @cached(cache_errors=(NotFound,))
    async def find(user_id: int) -> str:
        seen(user_id)
        raise NotFound(f"no user {user_id}", user_id)

    with pytest.raises(NotFound) as first:
        await find(7)
    with pytest.raises(NotFound) as second:
        await find(7)

    assert len(seen.calls) == 1
    assert second.value.args == first.value.args == ("no user 7", 7)
    assert second.value is not first.value


async def test_cached_exceptions_survive_a_trip_through_redis(
    make_redis_cache: MakeRedisCache,
) -> None:
    cache = await make_redis_cache()
    seen = Recorder()

    @cached(cache=cache, cache_errors=(NotFound,))
    async def find(user_id: int) -> str:
        seen(user_id)
        raise NotFound("gone")

    for _ in range(2):
        with pytest.raises(NotFound, match="gone"):
            await find(1)

    assert len(seen.calls) == 1


async def test_unlisted_exceptions_are_not_cached_when_some_are_listed() -> None:
    seen = Recorder()

    @cached(cache_errors=(NotFound,))
    async def find(user_id: int) -> str:
        seen(user_id)
        raise ValueError("bad")

    for _ in range(2):
        with pytest.raises(ValueError, match="bad"):
            await find(1)

    assert len(seen.calls) == 2


def test_cache_errors_takes_exception_classes() -> None:
    with pytest.raises(TypeError, match="Exception subclasses"):
        cached(cache_errors=(KeyboardInterrupt,))  # type: ignore[arg-type]


# -- concurrency -------------------------------------------------------------------------


async def test_concurrent_calls_with_the_same_arguments_run_the_function_once() -> None:
    seen = Recorder()
    release = asyncio.Event()

    @cached()
    async def slow(x: int) -> int:
        seen(x)
        await release.wait()
        return x

    calls = [asyncio.create_task(slow(1)) for _ in range(50)]
    await asyncio.sleep(0)
    release.set()

    assert await asyncio.gather(*calls) == [1] * 50
    assert len(seen.calls) == 1


# -- typed values through Redis ----------------------------------------------------------


class User(BaseModel):
    id: int
    name: str
    joined: datetime.datetime


async def test_a_model_comes_back_as_the_annotated_type_from_redis(
    make_hybrid: MakeHybrid,
) -> None:
    writer = await make_hybrid()
    reader = await make_hybrid()
    joined = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.UTC)

    def define(cache: Cache) -> Callable[[int], Any]:
        @cached(cache=cache)
        async def get_user(user_id: int) -> User:
            return User(id=user_id, name="Ann", joined=joined)
        return get_user

    first = await define(writer)(1)
    again = await define(reader)(1)  # another "process": read from Redis

    assert again == first == User(id=1, name="Ann", joined=joined)
    assert isinstance(again, User)


async def test_a_tuple_comes_back_as_a_tuple_from_redis(make_redis_cache: MakeRedisCache) -> None:
    cache = await make_redis_cache()

    @cached(cache=cache)
    async def pair(x: int) -> tuple[int, str]:
        return (x, "x")

    assert await pair(1) == (1, "x")
    assert await pair(1) == (1, "x")


async def test_a_value_that_does_not_match_its_annotation_is_refused(
    make_redis_cache: MakeRedisCache,
) -> None:
    cache = await make_redis_cache()

    @cached(cache=cache)
    async def broken(x: int) -> int:
        return "not an int"  # type: ignore[return-value]

    with pytest.raises(SerializationError, match="return annotation"):
        await broken(1)


async def test_an_unannotated_value_that_cannot_be_encoded_is_refused(
    make_redis_cache: MakeRedisCache,
) -> None:
    cache = await make_redis_cache()

    @cached(cache=cache)
    async def opaque(x: int):  # type: ignore[no-untyped-def]
        return object()

    with pytest.raises(SerializationError, match="type object"):
        await opaque(1)


async def test_stored_data_that_no_longer_fits_the_type_is_reloaded(
    make_redis_cache: MakeRedisCache,
) -> None:
    cache = await make_redis_cache()
    seen = Recorder()

    @cached(cache=cache)
    async def user(user_id: int) -> User:
        seen(user_id)
        return User(id=user_id, name="Ann", joined=datetime.datetime(2024, 1, 1))

    # What an older version of the function, with another return type, left behind.
    key = "tests.cache.test_cached.test_stored_data_that_no_longer_fits_the_type_is_reloaded" \
        ".<locals>.user:[1]"
    await cache.set(key, {"id": 1, "fullname": "Ann"})

    assert (await user(1)).name == "Ann"
    assert (await user(1)).name == "Ann"
    assert len(seen.calls) == 1


# -- where the cache comes from ----------------------------------------------------------


async def test_a_container_lookup_resolves_the_cache_at_each_call() -> None:
    container = Container()
    container.bind(MemoryCache)

    @cached(cache=lambda: container.aget(MemoryCache))
    async def f(x: int) -> int:
        return x

    async with container:
        await f(1)
        await f(1)
        stats = container.statistics()["MemoryCache"]

    assert (stats.hits_total, stats.misses_total) == (1, 1)


async def test_a_lookup_that_returns_something_else_is_refused() -> None:
    @cached(cache=lambda: "not a cache")  # type: ignore[arg-type, return-value]
    async def f(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="not a cache"):
        await f(1)


def test_a_cache_class_instead_of_an_instance_is_refused() -> None:
    with pytest.raises(TypeError, match="a cache instance or a lookup"):
        cached(cache=MemoryCache)


def test_generators_are_refused() -> None:
    async def stream() -> Any:
        yield 1

    with pytest.raises(TypeError, match="return a value"):
        cached()(stream)


# -- invalidate --------------------------------------------------------------------------


async def test_invalidate_drops_the_entry_for_those_arguments() -> None:
    seen = Recorder()

    @cached()
    async def square(x: int, power: int = 2) -> int:
        seen(x)
        return int(x**power)

    await square(2)
    await square(3)

    assert await invalidate(square, x=2) is True
    assert await invalidate(square, 2) is False
    await square(2)
    await square(3)
    assert seen.calls == [(2,), (3,), (2,)]


async def test_invalidate_works_on_bound_methods() -> None:
    seen = Recorder()
    repo = Repository("a", seen)
    await repo.find(101)  # an id no other test uses: the entries outlive the instances

    assert await invalidate(repo.find, 101) is True
    await repo.find(101)
    assert len(seen.calls) == 2


async def test_invalidate_works_on_sync_functions() -> None:
    seen = Recorder()

    @cached()
    def f(x: int) -> int:
        seen(x)
        return x

    f(1)
    assert await invalidate(f, 1) is True
    f(1)
    assert len(seen.calls) == 2


async def test_invalidate_refuses_a_function_that_is_not_cached() -> None:
    async def plain(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="decorated with @cached"):
        await invalidate(plain, 1)


async def test_invalidate_in_a_hybrid_cache_reaches_the_other_processes(
    make_hybrid: MakeHybrid,
) -> None:
    here = await make_hybrid()
    there = await make_hybrid()
    seen = Recorder()

    def define(cache: Cache) -> Any:
        @cached(cache=cache)
        async def price(item: str) -> int:
            seen(item)
            return len(seen.calls)
        return price

    price_here, price_there = define(here), define(there)
    assert await price_here("tea") == 1
    assert await price_there("tea") == 1

    await invalidate(price_here, "tea")

    await eventually(lambda: there.statistics().size == 0)
    assert await price_there("tea") == 2


# -- the wrapper -------------------------------------------------------------------------


def test_the_wrapper_keeps_the_signature_name_and_docstring() -> None:
    async def original(user_id: int, *, verbose: bool = False) -> str:
        """Finds a user."""
        return ""

    wrapped = cached()(original)

    assert inspect.signature(wrapped) == inspect.signature(original)
    assert wrapped.__name__ == "original"
    assert wrapped.__doc__ == "Finds a user."
    assert inspect.iscoroutinefunction(wrapped)


async def test_var_positional_and_var_keyword_arguments_are_part_of_the_key() -> None:
    seen = Recorder()

    @cached()
    async def join(*parts: str, **options: str) -> str:
        seen(parts, options)
        return "-".join(parts)

    assert await join("a", "b", sep="x") == "a-b"
    assert await join("a", "b", sep="x") == "a-b"
    assert await join("a", "c", sep="x") == "a-c"
    assert len(seen.calls) == 2


class Rates:
    def __init__(self, base: str) -> None:
        self.base = base


class Settings:
    base = "EUR"


async def test_a_cached_factory_can_be_registered_with_the_container() -> None:
    container = Container()
    container.bind(Settings, Settings())
    seen = Recorder()

    # Injected objects have no normal form: the key says what identifies the value
    # (cached_dependency keys them by identity instead).
    @container.provide(scope=Scope.TRANSIENT)
    @cached(key=lambda settings: settings.base)
    async def rates(settings: Settings) -> Rates:
        seen(settings)
        return Rates(settings.base)

    async with container:
        first = await container.aget(Rates)
        second = await container.aget(Rates)

    assert first is second
    assert first.base == "EUR"
    assert len(seen.calls) == 1
