"""What can be registered, and how a registration that cannot work is refused."""

import dataclasses
import sys
import types
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator
from typing import Annotated, Any, Protocol

import pytest

from tether import Container, Inject, Named, Scope, resource
from tether.exceptions import AsyncRequired, RegistrationError

pytestmark = pytest.mark.anyio


class Settings:
    pass


class Repo:
    pass


class Service:
    def __init__(self, settings: Settings, repo: Repo) -> None:
        self.settings = settings
        self.repo = repo


class Cipher:
    def __init__(self, algorithm: str = "plain") -> None:
        self.algorithm = algorithm


class Clock:
    def now(self) -> float:
        return 0.0


class SystemClock(Clock):
    pass


class FrozenClock(Clock):
    pass


# -- values -------------------------------------------------------------------------


def test_value_is_returned_as_is() -> None:
    container = Container()
    settings = Settings()
    container.bind(Settings, settings)

    assert container.get(Settings) is settings


async def test_value_is_returned_as_is_by_aget() -> None:
    container = Container()
    settings = Settings()
    container.bind(Settings, settings)

    assert await container.aget(Settings) is settings


def test_value_is_shared_by_every_request_scope() -> None:
    container = Container()
    settings = Settings()
    container.bind(Settings, settings)

    with container.scope() as first, container.scope() as second:
        assert first.get(Settings) is settings
        assert second.get(Settings) is settings


def test_value_cannot_be_request_scoped() -> None:
    container = Container()

    with pytest.raises(RegistrationError, match=r"cannot be REQUEST-scoped") as caught:
        container.bind(Settings, Settings(), scope=Scope.REQUEST)

    assert "Hint" in str(caught.value)
    assert "Settings" in str(caught.value)


@pytest.mark.parametrize("scope", [Scope.SESSION, Scope.TRANSIENT])
def test_value_cannot_have_a_per_use_scope(scope: Scope) -> None:
    container = Container()

    with pytest.raises(RegistrationError, match=scope.name):
        container.bind(Settings, Settings(), scope=scope)


def test_value_none_is_refused() -> None:
    container = Container()

    with pytest.raises(RegistrationError, match=r"cannot bind None for Settings"):
        container.bind(Settings, None)


# -- classes ------------------------------------------------------------------------


def test_class_bound_to_itself_is_autowired_from_init_hints() -> None:
    container = Container()
    container.bind(Settings)
    container.bind(Repo)
    container.bind(Service)

    service = container.get(Service)

    assert isinstance(service, Service)
    assert service.settings is container.get(Settings)
    assert service.repo is container.get(Repo)


def test_class_without_init_is_built_with_no_arguments() -> None:
    container = Container()
    container.bind(Repo)

    assert isinstance(container.get(Repo), Repo)


def test_class_registration_is_app_scoped_by_default() -> None:
    container = Container()
    container.bind(Repo)

    assert container.get(Repo) is container.get(Repo)


def test_class_in_future_annotations_module_is_autowired(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = (
        "from __future__ import annotations\n"
        "import dataclasses\n"
        "class Engine:\n"
        "    pass\n"
        "class Repo:\n"
        "    def __init__(self, engine: Engine, retries: int = 3) -> None:\n"
        "        self.engine = engine\n"
        "        self.retries = retries\n"
        "@dataclasses.dataclass\n"
        "class Service:\n"
        "    repo: Repo\n"
        "    engine: Engine\n"
    )
    module = types.ModuleType("tether_test_future_module")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source, "<future module>", "exec"), module.__dict__)
    engine_cls: Any = module.Engine
    repo_cls: Any = module.Repo
    service_cls: Any = module.Service
    container = Container()
    container.bind(engine_cls)
    container.bind(repo_cls)
    container.bind(service_cls)

    service = container.get(service_cls)

    assert service.repo is container.get(repo_cls)
    assert service.engine is container.get(engine_cls)
    assert service.repo.engine is service.engine
    assert service.repo.retries == 3


class _ForwardRef:
    def __init__(self, later: "_DefinedLater") -> None:
        self.later = later


class _DefinedLater:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings


def test_string_annotation_naming_a_later_class_is_resolved() -> None:
    container = Container()
    container.bind(Settings)
    container.bind(_ForwardRef)
    container.bind(_DefinedLater)

    later = container.get(_ForwardRef).later

    assert later is container.get(_DefinedLater)
    assert later.settings is container.get(Settings)


def test_dataclass_is_autowired_from_its_fields() -> None:
    @dataclasses.dataclass
    class Handler:
        settings: Settings
        repo: Repo
        retries: int = 5

    container = Container()
    container.bind(Settings)
    container.bind(Repo)
    container.bind(Handler)

    handler = container.get(Handler)

    assert handler.settings is container.get(Settings)
    assert handler.repo is container.get(Repo)
    assert handler.retries == 5


def test_frozen_slotted_dataclass_is_autowired() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Handler:
        repo: Repo

    container = Container()
    container.bind(Repo)
    container.bind(Handler)

    assert container.get(Handler).repo is container.get(Repo)


def test_parameter_with_default_and_unbound_type_keeps_its_default() -> None:
    class Client:
        def __init__(self, settings: Settings, timeout: float = 2.5, name: str = "x") -> None:
            self.settings = settings
            self.timeout = timeout
            self.name = name

    container = Container()
    container.bind(Settings)
    container.bind(Client)

    client = container.get(Client)

    assert client.timeout == 2.5
    assert client.name == "x"


def test_parameter_after_a_skipped_default_is_still_injected() -> None:
    default = Settings()

    class Client:
        def __init__(self, timeout: float = 2.5, settings: Settings = default) -> None:
            self.timeout = timeout
            self.settings = settings

    container = Container()
    container.bind(Settings)
    container.bind(Client)

    client = container.get(Client)

    assert client.timeout == 2.5
    assert client.settings is container.get(Settings)


def test_parameter_with_default_and_bound_type_is_injected() -> None:
    default = Settings()

    class Client:
        def __init__(self, settings: Settings = default) -> None:
            self.settings = settings

    container = Container()
    bound = Settings()
    container.bind(Settings, bound)
    container.bind(Client)

    assert container.get(Client).settings is bound


def test_parameter_without_hint_but_with_default_keeps_its_default() -> None:
    class Client:
        def __init__(self, settings: Settings, retries=3) -> None:  # type: ignore[no-untyped-def]
            self.settings = settings
            self.retries = retries

    container = Container()
    container.bind(Settings)
    container.bind(Client)

    assert container.get(Client).retries == 3


def test_positional_only_parameters_are_injected() -> None:
    class Client:
        def __init__(self, settings: Settings, repo: Repo, /) -> None:
            self.settings = settings
            self.repo = repo

    container = Container()
    container.bind(Settings)
    container.bind(Repo)
    container.bind(Client)

    client = container.get(Client)

    assert client.settings is container.get(Settings)
    assert client.repo is container.get(Repo)


def test_keyword_only_parameters_are_injected() -> None:
    class Client:
        def __init__(self, *, settings: Settings, repo: Repo) -> None:
            self.settings = settings
            self.repo = repo

    container = Container()
    container.bind(Settings)
    container.bind(Repo)
    container.bind(Client)

    client = container.get(Client)

    assert client.settings is container.get(Settings)
    assert client.repo is container.get(Repo)


def test_positional_only_parameter_after_a_skipped_default_is_refused_by_name() -> None:
    default = Repo()

    class Client:
        def __init__(self, retries: int = 3, repo: Repo = default, /) -> None:
            self.repo = repo

    container = Container()
    container.bind(Repo)
    container.bind(Client)

    with pytest.raises(RegistrationError, match=r"'repo'.*positional-only"):
        container.get(Client)


def test_parameter_without_hint_or_default_is_refused_with_a_hint() -> None:
    class Client:
        def __init__(self, settings) -> None:  # type: ignore[no-untyped-def]
            self.settings = settings

    container = Container()
    container.bind(Client)

    with pytest.raises(RegistrationError, match=r"parameter 'settings' of .*Client") as caught:
        container.get(Client)

    assert "has no type hint" in str(caught.value)
    assert "Hint: annotate it" in str(caught.value)


def test_unresolvable_string_annotation_is_refused_naming_the_class() -> None:
    class Client:
        def __init__(self, settings: "NoSuchType") -> None:  # type: ignore[name-defined]  # noqa: F821
            self.settings = settings

    container = Container()
    container.bind(Client)

    with pytest.raises(RegistrationError, match=r"cannot read the type hints of .*Client"):
        container.get(Client)


# -- interface -> implementation ----------------------------------------------------


def test_interface_bound_to_implementation_returns_the_implementation() -> None:
    container = Container()
    container.bind(Clock, SystemClock)

    clock = container.get(Clock)

    assert type(clock) is SystemClock


def test_implementation_that_is_not_a_subclass_is_refused_with_a_hint() -> None:
    container = Container()

    with pytest.raises(RegistrationError, match=r"cannot bind Clock to Repo") as caught:
        container.bind(Clock, Repo)

    message = str(caught.value)
    assert "not a subclass" in message
    assert "Hint" in message


def test_protocol_may_be_bound_to_a_structural_implementation() -> None:
    class Ticker(Protocol):
        def now(self) -> float: ...

    container = Container()
    container.bind(Ticker, SystemClock)

    assert type(container.get(Ticker)) is SystemClock


def test_rebinding_replaces_the_earlier_registration() -> None:
    container = Container()
    container.bind(Clock, SystemClock)
    container.bind(Clock, FrozenClock)

    assert type(container.get(Clock)) is FrozenClock


# -- factories ----------------------------------------------------------------------


def test_sync_factory_bound_for_a_type_is_called_with_its_dependencies() -> None:
    container = Container()
    container.bind(Settings)

    def make_repo(settings: Settings) -> Repo:
        repo = Repo()
        repo.settings = settings  # type: ignore[attr-defined]
        return repo

    container.bind(Repo, make_repo)

    repo = container.get(Repo)

    assert repo.settings is container.get(Settings)  # type: ignore[attr-defined]


async def test_async_factory_bound_for_a_type_is_awaited() -> None:
    container = Container()

    async def make_repo() -> Repo:
        return Repo()

    container.bind(Repo, make_repo)

    assert isinstance(await container.aget(Repo), Repo)


def test_provide_reads_the_type_from_the_return_hint() -> None:
    container = Container()

    @container.provide
    def make_cipher() -> Cipher:
        return Cipher("aes")

    assert container.get(Cipher).algorithm == "aes"


def test_provide_returns_the_function_unchanged() -> None:
    container = Container()

    def make_cipher() -> Cipher:
        return Cipher("aes")

    assert container.provide(make_cipher) is make_cipher
    assert container.provide(scope=Scope.TRANSIENT)(make_cipher) is make_cipher


async def test_provide_registers_an_async_factory() -> None:
    container = Container()

    @container.provide(scope=Scope.APP)
    async def make_cipher(settings: Settings) -> Cipher:
        return Cipher("async")

    container.bind(Settings)

    assert (await container.aget(Cipher)).algorithm == "async"


def test_provide_with_provides_overrides_the_return_hint() -> None:
    container = Container()

    @container.provide(provides=Clock)
    def make_clock() -> SystemClock:
        return SystemClock()

    assert type(container.get(Clock)) is SystemClock


def test_provide_without_return_hint_is_refused_with_a_hint() -> None:
    container = Container()

    def make_cipher():  # type: ignore[no-untyped-def]
        return Cipher()

    with pytest.raises(RegistrationError, match=r"make_cipher has no return type hint") as caught:
        container.provide(make_cipher)

    assert "Hint" in str(caught.value)
    assert "provides=" in str(caught.value)


def test_provide_with_none_return_hint_is_refused() -> None:
    container = Container()

    def setup() -> None:
        return None

    with pytest.raises(RegistrationError, match=r"no return type hint"):
        container.provide(setup)


def test_provide_on_a_class_is_refused_pointing_to_bind() -> None:
    container = Container()

    with pytest.raises(RegistrationError, match=r"container\.bind\(\)"):
        container.provide(Repo)


# -- generators ---------------------------------------------------------------------


def test_sync_generator_yields_the_instance_and_tears_down_on_close() -> None:
    container = Container()
    events: list[str] = []

    @container.provide
    def make_repo() -> Iterator[Repo]:
        events.append("open")
        yield Repo()
        events.append("close")

    with container:
        assert isinstance(container.get(Repo), Repo)
        assert events == ["open"]

    assert events == ["open", "close"]


def test_sync_generator_annotated_as_generator_provides_its_yield_type() -> None:
    container = Container()

    @container.provide
    def make_repo() -> Generator[Repo, None, None]:
        yield Repo()

    with container:
        assert isinstance(container.get(Repo), Repo)


async def test_async_generator_yields_the_instance_and_tears_down_on_close() -> None:
    container = Container()
    events: list[str] = []

    @container.provide(scope=Scope.REQUEST)
    async def make_repo() -> AsyncIterator[Repo]:
        events.append("open")
        yield Repo()
        events.append("close")

    async with container:
        async with container.scope() as request:
            assert isinstance(await request.aget(Repo), Repo)
            assert events == ["open"]
        assert events == ["open", "close"]


async def test_async_generator_annotated_as_async_generator_provides_its_yield_type() -> None:
    container = Container()

    @container.provide
    async def make_repo() -> AsyncGenerator[Repo, None]:
        yield Repo()

    async with container:
        assert isinstance(await container.aget(Repo), Repo)


def test_generator_without_return_hint_is_refused_with_a_hint() -> None:
    container = Container()

    def make_repo():  # type: ignore[no-untyped-def]
        yield Repo()

    with pytest.raises(RegistrationError, match=r"no return type hint") as caught:
        container.provide(make_repo)

    assert "Iterator[MyType]" in str(caught.value)


def test_generator_annotated_with_the_bare_type_is_refused() -> None:
    container = Container()

    def make_repo() -> Repo:  # type: ignore[misc]
        yield Repo()

    with pytest.raises(RegistrationError, match=r"must be annotated -> Iterator\[T\]"):
        container.provide(make_repo)


def test_generator_bound_with_bind_is_a_generator_factory() -> None:
    container = Container()
    events: list[str] = []

    def make_repo() -> Iterator[Repo]:
        yield Repo()
        events.append("close")

    container.bind(Repo, make_repo)
    with container:
        assert isinstance(container.get(Repo), Repo)

    assert events == ["close"]


# -- @resource ----------------------------------------------------------------------


@resource
class SyncDatabase:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.events: list[str] = []

    def initialize(self) -> None:
        self.events.append("initialize")

    def dispose(self) -> None:
        self.events.append("dispose")

    def health_check(self) -> bool:
        return True


@resource
class AsyncDatabase:
    def __init__(self) -> None:
        self.events: list[str] = []

    async def initialize(self) -> None:
        self.events.append("initialize")

    async def dispose(self) -> None:
        self.events.append("dispose")

    async def health_check(self) -> bool:
        return True


def test_resource_class_is_initialized_when_built_and_disposed_on_close() -> None:
    container = Container()
    container.bind(Settings)
    container.bind(SyncDatabase)

    with container:
        db = container.get(SyncDatabase)
        assert db.events == ["initialize"]
        assert db.settings is container.get(Settings)

    assert db.events == ["initialize", "dispose"]


async def test_async_resource_class_is_initialized_and_disposed_with_await() -> None:
    container = Container()
    container.bind(AsyncDatabase)

    async with container:
        db = await container.aget(AsyncDatabase)
        assert db.events == ["initialize"]

    assert db.events == ["initialize", "dispose"]


def test_resource_with_async_initialize_needs_aget() -> None:
    container = Container()
    container.bind(AsyncDatabase)

    with pytest.raises(AsyncRequired, match=r"aget"):
        container.get(AsyncDatabase)


async def test_resource_instance_is_initialized_on_first_use_and_disposed() -> None:
    container = Container()
    db = AsyncDatabase()
    container.bind(AsyncDatabase, db)

    async with container:
        assert db.events == []
        assert await container.aget(AsyncDatabase) is db
        assert db.events == ["initialize"]

    assert db.events == ["initialize", "dispose"]


def test_sync_resource_instance_is_initialized_once() -> None:
    container = Container()
    container.bind(Settings)
    db = SyncDatabase(Settings())
    container.bind(SyncDatabase, db)

    with container:
        container.get(SyncDatabase)
        container.get(SyncDatabase)

    assert db.events == ["initialize", "dispose"]


class Store:
    """An interface a factory is registered under."""


@resource
class SqlStore(Store):
    def __init__(self) -> None:
        self.events: list[str] = []

    async def initialize(self) -> None:
        self.events.append("initialize")

    async def dispose(self) -> None:
        self.events.append("dispose")

    async def health_check(self) -> bool:
        return True


async def test_a_factory_returning_a_resource_gets_its_lifecycle_and_health() -> None:
    made: list[SqlStore] = []
    container = Container()

    @container.provide(provides=Store)
    async def store() -> SqlStore:
        made.append(SqlStore())
        return made[-1]

    async with container:
        assert await container.aget(Store) is made[0]
        assert made[0].events == ["initialize"]
        report = await container.health()
        assert report.resources["Store"].is_healthy is True

    assert made[0].events == ["initialize", "dispose"]


def test_a_sync_factory_returning_a_resource_per_request_disposes_each() -> None:
    container = Container()
    container.bind(Settings)

    @container.provide(scope=Scope.REQUEST)
    def database(settings: Settings) -> SyncDatabase:
        return SyncDatabase(settings)

    with container:
        with container.scope() as request:
            first = request.get(SyncDatabase)
        with container.scope() as request:
            second = request.get(SyncDatabase)

    assert first is not second
    assert first.events == second.events == ["initialize", "dispose"]


def test_a_factory_returning_a_plain_class_is_left_alone() -> None:
    container = Container()

    @container.provide
    def settings() -> Settings:
        return Settings()

    with container:
        assert isinstance(container.get(Settings), Settings)
    assert container.metrics()["Settings"].disposed == 0


def test_resource_with_only_dispose_is_accepted() -> None:
    @resource
    class Pool:
        closed = False

        def dispose(self) -> None:
            self.closed = True

    container = Container()
    container.bind(Pool)
    with container:
        pool = container.get(Pool)

    assert pool.closed


def test_resource_decorator_returns_the_class() -> None:
    class Pool:
        def dispose(self) -> None:
            pass

    assert resource(Pool) is Pool


def test_resource_without_initialize_or_dispose_is_refused() -> None:
    class Plain:
        pass

    with pytest.raises(RegistrationError, match=r"defines neither initialize\(\) nor dispose\(\)"):
        resource(Plain)


def test_resource_on_a_function_is_refused() -> None:
    def not_a_class() -> None:
        pass

    with pytest.raises(RegistrationError, match=r"@resource decorates a class"):
        resource(not_a_class)  # type: ignore[arg-type]


# -- names --------------------------------------------------------------------------


def test_names_register_several_bindings_of_one_type() -> None:
    container = Container()
    container.bind(Cipher, Cipher("aes"), name="aes")
    container.bind(Cipher, Cipher("rsa"), name="rsa")

    assert container.get(Cipher, name="aes").algorithm == "aes"
    assert container.get(Cipher, "rsa").algorithm == "rsa"


def test_named_and_unnamed_bindings_are_separate() -> None:
    container = Container()
    container.bind(Cipher, Cipher("default"))
    container.bind(Cipher, Cipher("aes"), name="aes")

    assert container.get(Cipher).algorithm == "default"
    assert container.get(Cipher, name="aes").algorithm == "aes"


def test_inject_marker_with_a_name_selects_the_named_binding() -> None:
    class Sealer:
        def __init__(self, cipher: Inject[Cipher, "aes"]) -> None:  # type: ignore[name-defined]  # noqa: F821
            self.cipher = cipher

    container = Container()
    container.bind(Cipher, Cipher("default"))
    container.bind(Cipher, Cipher("aes"), name="aes")
    container.bind(Sealer)

    assert container.get(Sealer).cipher.algorithm == "aes"


def test_annotated_named_selects_the_named_binding() -> None:
    class Sealer:
        def __init__(self, cipher: Annotated[Cipher, Named("rsa")]) -> None:
            self.cipher = cipher

    container = Container()
    container.bind(Cipher, Cipher("aes"), name="aes")
    container.bind(Cipher, Cipher("rsa"), name="rsa")
    container.bind(Sealer)

    assert container.get(Sealer).cipher.algorithm == "rsa"


def test_unnamed_inject_marker_selects_the_unnamed_binding() -> None:
    class Sealer:
        def __init__(self, cipher: Inject[Cipher]) -> None:
            self.cipher = cipher

    container = Container()
    container.bind(Cipher, Cipher("default"))
    container.bind(Cipher, Cipher("aes"), name="aes")
    container.bind(Sealer)

    assert container.get(Sealer).cipher.algorithm == "default"


def test_provide_with_a_name_registers_a_named_factory() -> None:
    container = Container()

    @container.provide(name="aes")
    def aes() -> Cipher:
        return Cipher("aes")

    assert container.get(Cipher, name="aes").algorithm == "aes"


@pytest.mark.parametrize("name", ["", 3])
def test_name_must_be_a_non_empty_string(name: Any) -> None:
    container = Container()

    with pytest.raises(RegistrationError, match=r"name must be a non-empty string"):
        container.bind(Cipher, Cipher(), name=name)


def test_named_marker_refuses_an_empty_name() -> None:
    with pytest.raises(TypeError, match=r"non-empty string"):
        Named("")


def test_inject_marker_refuses_a_non_string_name() -> None:
    inject: Any = Inject
    with pytest.raises(TypeError, match=r"Inject\[T, 'name'\]"):
        inject[Cipher, 3]


# -- eager --------------------------------------------------------------------------


async def test_eager_app_registration_is_built_at_start() -> None:
    container = Container()
    built: list[str] = []

    @container.provide(eager=True)
    async def make_repo() -> Repo:
        built.append("repo")
        return Repo()

    assert built == []
    async with container:
        assert built == ["repo"]
        await container.aget(Repo)
        assert built == ["repo"]


def test_eager_sync_registration_is_built_by_a_sync_start() -> None:
    container = Container()
    built: list[str] = []

    @container.provide(eager=True)
    def make_repo() -> Repo:
        built.append("repo")
        return Repo()

    with container:
        assert built == ["repo"]


async def test_lazy_registration_is_not_built_at_start() -> None:
    container = Container()
    built: list[str] = []

    @container.provide
    def make_repo() -> Repo:
        built.append("repo")
        return Repo()

    async with container:
        assert built == []


async def test_eager_singleton_registration_is_built_at_start() -> None:
    container = Container()
    built: list[str] = []

    class Pool:
        pass

    @container.provide(scope=Scope.SINGLETON, eager=True)
    def make_pool() -> Pool:
        built.append("pool")
        return Pool()

    async with container:
        assert built == ["pool"]


@pytest.mark.parametrize("scope", [Scope.SESSION, Scope.REQUEST, Scope.TRANSIENT])
def test_eager_is_refused_outside_app_and_singleton(scope: Scope) -> None:
    container = Container()

    with pytest.raises(RegistrationError, match=rf"APP and SINGLETON.*not {scope.name}"):
        container.bind(Repo, scope=scope, eager=True)


# -- other bad input ----------------------------------------------------------------


def test_bind_of_a_non_class_without_target_is_refused() -> None:
    container = Container()

    with pytest.raises(RegistrationError, match=r"needs a target"):
        container.bind("repo")


def test_scope_must_be_a_tether_scope() -> None:
    container = Container()

    with pytest.raises(RegistrationError, match=r"scope must be a tether.Scope, got 'app'"):
        container.bind(Repo, scope="app")  # type: ignore[arg-type]


def test_health_check_must_be_callable() -> None:
    container = Container()

    with pytest.raises(RegistrationError, match=r"health_check for Repo must be callable"):
        container.bind(Repo, health_check=True)  # type: ignore[arg-type]


def test_unhashable_dependency_key_is_refused() -> None:
    container = Container()

    with pytest.raises(RegistrationError, match=r"not hashable"):
        container.bind([Repo], Repo())


def test_registration_error_is_a_type_error() -> None:
    container = Container()

    with pytest.raises(TypeError):
        container.bind(Clock, Repo)


def test_registration_on_a_closed_container_is_refused() -> None:
    container = Container()
    with container:
        pass

    with pytest.raises(RuntimeError, match=r"closed"):
        container.bind(Repo)
