"""``import tether.cache`` needs only the 'cache' extra; the Redis-backed classes say
which extra they need, in one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tether.cache


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)


# Makes "import redis" fail in the child, as if redis-py were not installed.
WITHOUT_REDIS = "import sys; sys.modules['redis'] = None\n"


def test_the_memory_parts_import_and_work_without_redis_py() -> None:
    result = run(WITHOUT_REDIS + (
        "import tether.cache as c\n"
        "cache = c.MemoryCache(max_size=3)\n"
        "cache.set_sync('k', 1)\n"
        "print(cache.get_sync('k'), 'redis' in sys.modules and sys.modules['redis'] is not None)\n"
    ))

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "False"]


@pytest.mark.parametrize("name", ["RedisCache", "HybridCache"])
def test_a_redis_backed_class_names_the_redis_extra_when_redis_py_is_missing(name: str) -> None:
    result = run(WITHOUT_REDIS + f"from tether.cache import {name}\n")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"ImportError: tether.cache.{name} needs the 'redis' extra: "
        f"pip install 'tether[redis]'"
    )


def test_without_msgpack_the_module_names_the_cache_extra() -> None:
    result = run("import sys; sys.modules['msgpack'] = None\nimport tether.cache\n")

    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "ImportError: tether.cache needs the 'cache' extra: pip install 'tether[cache]'"
    )


def test_every_public_name_is_exported_and_documented() -> None:
    for name in tether.cache.__all__:
        obj = getattr(tether.cache, name)
        assert (obj.__doc__ or "").strip(), name


def test_an_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        tether.cache.Nope  # noqa: B018
