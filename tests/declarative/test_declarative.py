"""Resources declared in a file: Container.from_config and declare()."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tether import Container
from tether._declarative import declare
from tether.resources.crypto import Crypto
from tether.resources.database import Database
from tether.resources.http import HTTPClient
from tether.resources.redis import RedisClient
from tether.settings import SettingsError

pytestmark = pytest.mark.anyio


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


GOOD = """\
    resources:
      api: {type: http, base_url: "http://127.0.0.1:9", max_connections: 7, timeout: 3}
      default: {type: database, url: "sqlite+aiosqlite://", eager: true}
      cache: {type: redis, url: "redis://127.0.0.1:9/0", critical: false}
    crypto:
      default: {algorithm: AES_256_GCM}
    """


async def test_a_yaml_file_registers_every_resource_under_its_name(tmp_path: Path) -> None:
    container = Container.from_config(write(tmp_path, "resources.yaml", GOOD), environ={})
    names = set(container.metrics())
    assert names == {"HTTPClient[api]", "Database", "RedisClient[cache]", "Crypto"}
    async with container:  # the database is eager: it starts with the container
        assert container.statistics()["Database"] is not None
        db = await container.aget(Database)
        assert db.config.name == "default"
        api = await container.aget(HTTPClient, "api")
        assert api.config.max_connections == 7
        crypto = await container.aget(Crypto)
        assert crypto.decrypt(crypto.encrypt(b"x")) == b"x"


async def test_toml_and_json_files_work_the_same(tmp_path: Path) -> None:
    toml = write(tmp_path, "r.toml", """\
        [resources.api]
        type = "http"
        base_url = "http://127.0.0.1:9"
        """)
    json_file = write(tmp_path, "r.json",
                      '{"resources": {"api": {"type": "http", "base_url": "http://127.0.0.1:9"}}}')
    for path in (toml, json_file):
        container = Container()
        assert declare(container, path, environ={}) == ["HTTPClient[api]"]


def test_the_environment_overrides_the_file_and_declares_more(tmp_path: Path) -> None:
    container = Container()
    environ = {
        "TETHER_RESOURCES__API__MAX_CONNECTIONS": "42",
        "TETHER_RESOURCES__REPORTS__TYPE": "database",
        "TETHER_RESOURCES__REPORTS__URL": "sqlite+aiosqlite://",
        "TETHER_RESOURCES__API__HEADERS": '{"User-Agent": "notes/1.0"}',
        "OTHER_RESOURCES__API__MAX_CONNECTIONS": "1",
    }
    declare(container, write(tmp_path, "r.yaml", GOOD), environ=environ)
    api = container._registry.providers[(HTTPClient, "api")].target
    assert api.config.max_connections == 42
    assert dict(api.config.headers) == {"User-Agent": "notes/1.0"}
    assert "Database[reports]" in container.metrics()


def test_a_bad_value_names_the_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", """\
        resources:
          api:
            type: http
            base_url: "http://127.0.0.1:9"
            max_connections: lots
        """)
    with pytest.raises(SettingsError) as caught:
        Container.from_config(path, environ={})
    text = str(caught.value)
    assert "resources.api.max_connections" in text
    assert f"{path}:5" in text


def test_a_bad_value_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="env TETHER_RESOURCES__API__MAX_CONNECTIONS"):
        declare(Container(), write(tmp_path, "r.yaml", GOOD),
                environ={"TETHER_RESOURCES__API__MAX_CONNECTIONS": "lots"})


@pytest.mark.parametrize(("entry", "message"), [
    ("{type: ftp}", "resources.x.type .*should be one of http, database, redis"),
    ("{url: 'redis://h'}", "resources.x.type .*is missing"),
    ("{type: http, base_url: 'http://h', nonsense: 1}", "resources.x.nonsense"),
    ("{type: http, base_url: 'http://h', eager: maybe}", "resources.x.eager"),
    ("[1, 2]", "resources.x .*should be a mapping"),
])
def test_bad_entries_are_refused_with_their_key(tmp_path: Path, entry: str,
                                                message: str) -> None:
    path = write(tmp_path, "r.yaml", f"resources:\n  x: {entry}\n")
    with pytest.raises(SettingsError, match=message):
        Container.from_config(path, environ={})


def test_every_problem_is_listed_and_nothing_is_registered(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", """\
        resources:
          good: {type: http, base_url: "http://127.0.0.1:9"}
          bad1: {type: ftp}
          bad2: {type: redis, max_connections: 0}
        databases: {}
        """)
    container = Container()
    with pytest.raises(SettingsError) as caught:
        declare(container, path, environ={})
    keys = [p.key for p in caught.value.problems]
    assert keys == ["databases", "resources.bad1.type", "resources.bad2.max_connections"]
    assert container.metrics() == {}


def test_unsafe_yaml_is_refused_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", """\
        resources:
          api: !!python/object/apply:os.system ["echo owned"]
        """)
    with pytest.raises(SettingsError, match=r"r\.yaml:2"):
        Container.from_config(path, environ={})


def test_a_password_in_a_url_never_reaches_the_error(tmp_path: Path) -> None:
    path = write(tmp_path, "r.yaml", """\
        resources:
          cache: {type: redis, url: "redis://:hunter2@127.0.0.1:6379/0", max_connections: -1}
        """)
    with pytest.raises(SettingsError) as caught:
        Container.from_config(path, environ={})
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value)


def test_a_mapping_can_be_declared_directly() -> None:
    container = Container()
    declare(container, {"resources": {"cache": {"type": "redis"}}}, environ={})
    assert list(container.metrics()) == ["RedisClient[cache]"]
    assert isinstance(container._registry.providers[(RedisClient, "cache")].target,
                      RedisClient)
