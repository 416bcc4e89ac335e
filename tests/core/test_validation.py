"""Validation of the whole graph, and its export as Mermaid and Graphviz dot."""

from typing import Any

import pytest

from tether import Container, Scope
from tether.exceptions import (
    DependencyCycle,
    DependencyNotFound,
    GraphError,
    RegistrationError,
    ScopeViolation,
    TetherError,
)

pytestmark = pytest.mark.anyio


class A:
    def __init__(self, b: "B") -> None:
        self.b = b


class B:
    def __init__(self, a: A) -> None:
        self.a = a


class Selfish:
    def __init__(self, me: "Selfish") -> None:
        self.me = me


class Session:
    pass


class UserService:
    def __init__(self, session: Session) -> None:
        self.session = session


class Helper:
    def __init__(self, session: Session) -> None:
        self.session = session


class Service:
    def __init__(self, helper: Helper) -> None:
        self.helper = helper


class Engine:
    pass


class Repo:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine


class Mailer:
    pass


class Notifier:
    def __init__(self, mailer: Mailer, engine: Engine) -> None:
        self.mailer = mailer
        self.engine = engine


class Optional:
    def __init__(self, engine: Engine, retries: int = 3) -> None:
        self.engine = engine


def _problems(container: Container) -> tuple[TetherError, ...]:
    with pytest.raises(GraphError) as caught:
        container.validate()
    return caught.value.problems


# -- a sound graph ------------------------------------------------------------------


def test_a_sound_graph_validates() -> None:
    container = Container()
    container.bind(Engine)
    container.bind(Repo, scope=Scope.REQUEST)
    container.bind(Optional)

    container.validate()


def test_validate_builds_nothing() -> None:
    built: list[str] = []
    container = Container()

    @container.provide
    def engine() -> Engine:
        built.append("engine")
        return Engine()

    container.validate()

    assert built == []


@pytest.mark.parametrize(
    ("owner", "dependency"),
    [
        (Scope.REQUEST, Scope.APP),
        (Scope.REQUEST, Scope.SINGLETON),
        (Scope.REQUEST, Scope.SESSION),
        (Scope.SESSION, Scope.APP),
        (Scope.APP, Scope.SINGLETON),
        (Scope.APP, Scope.APP),
        (Scope.REQUEST, Scope.REQUEST),
        (Scope.TRANSIENT, Scope.REQUEST),
        (Scope.REQUEST, Scope.TRANSIENT),
        (Scope.APP, Scope.TRANSIENT),
    ],
)
def test_depending_on_an_equal_or_longer_lived_scope_is_valid(
    owner: Scope, dependency: Scope
) -> None:
    container = Container()
    container.bind(Engine, scope=dependency)
    container.bind(Repo, scope=owner)

    container.validate()


# -- missing bindings ---------------------------------------------------------------


def test_missing_binding_is_reported_with_who_needs_it() -> None:
    container = Container()
    container.bind(Repo)

    problems = _problems(container)

    assert len(problems) == 1
    missing = problems[0]
    assert isinstance(missing, DependencyNotFound)
    assert missing.dependency == "Engine"
    assert missing.needed_by == "Repo"
    assert "nothing is bound for Engine, needed by Repo" in str(missing)


def test_every_missing_binding_is_reported() -> None:
    container = Container()
    container.bind(Notifier)

    problems = _problems(container)

    assert {p.dependency for p in problems if isinstance(p, DependencyNotFound)} == {
        "Mailer",
        "Engine",
    }


def test_missing_binding_for_a_parameter_with_a_default_is_not_a_problem() -> None:
    container = Container()
    container.bind(Engine)
    container.bind(Optional)

    container.validate()


def test_parameter_without_a_hint_is_reported() -> None:
    class Untyped:
        def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
            self.engine = engine

    container = Container()
    container.bind(Untyped)

    problems = _problems(container)

    assert len(problems) == 1
    assert isinstance(problems[0], RegistrationError)
    assert "'engine'" in str(problems[0])


def test_graph_error_message_lists_each_problem_on_its_own_line() -> None:
    container = Container()
    container.bind(Notifier)

    with pytest.raises(GraphError) as caught:
        container.validate()

    lines = str(caught.value).splitlines()
    assert lines[0] == "the dependency graph has 2 problem(s):"
    assert lines[1].startswith("  - nothing is bound for Mailer")
    assert lines[2].startswith("  - nothing is bound for Engine")


# -- cycles -------------------------------------------------------------------------


def test_cycle_is_reported_with_the_loop_drawn() -> None:
    container = Container()
    container.bind(A)
    container.bind(B)

    problems = _problems(container)

    cycles = [p for p in problems if isinstance(p, DependencyCycle)]
    assert len(cycles) == 1
    assert "A (APP) -> B (APP) -> A (APP)" in str(cycles[0])
    assert [name for name, _ in cycles[0].cycle] == ["A", "B", "A"]


def test_cycle_message_gives_a_hint() -> None:
    container = Container()
    container.bind(A)
    container.bind(B)

    (cycle,) = [p for p in _problems(container) if isinstance(p, DependencyCycle)]

    assert "Hint:" in str(cycle)


def test_cycle_shows_each_members_scope() -> None:
    container = Container()
    container.bind(A, scope=Scope.TRANSIENT)
    container.bind(B, scope=Scope.TRANSIENT)

    (cycle,) = [p for p in _problems(container) if isinstance(p, DependencyCycle)]

    assert "A (TRANSIENT) -> B (TRANSIENT) -> A (TRANSIENT)" in str(cycle)


def test_a_registration_depending_on_itself_is_a_cycle() -> None:
    container = Container()
    container.bind(Selfish)

    (cycle,) = [p for p in _problems(container) if isinstance(p, DependencyCycle)]

    assert "Selfish (APP) -> Selfish (APP)" in str(cycle)


def test_dependency_cycle_is_a_graph_error() -> None:
    assert issubclass(DependencyCycle, GraphError)


# -- scope violations ---------------------------------------------------------------


def test_app_depending_on_request_is_a_scope_violation() -> None:
    container = Container()
    container.bind(Session, scope=Scope.REQUEST)
    container.bind(UserService)

    (violation,) = _problems(container)

    assert isinstance(violation, ScopeViolation)
    message = str(violation)
    assert "UserService (APP) -> Session (REQUEST)" in message
    assert "Hint:" in message
    assert "UserService to REQUEST" in message


def test_app_depending_on_request_through_a_transient_is_a_scope_violation() -> None:
    container = Container()
    container.bind(Session, scope=Scope.REQUEST)
    container.bind(Helper, scope=Scope.TRANSIENT)
    container.bind(Service)

    (violation,) = _problems(container)

    assert isinstance(violation, ScopeViolation)
    assert "Service (APP) -> Helper (TRANSIENT) -> Session (REQUEST)" in str(violation)
    assert [name for name, _ in violation.chain] == ["Service", "Helper", "Session"]


@pytest.mark.parametrize(
    ("owner", "dependency"),
    [
        (Scope.SINGLETON, Scope.APP),
        (Scope.SINGLETON, Scope.REQUEST),
        (Scope.APP, Scope.SESSION),
        (Scope.SESSION, Scope.REQUEST),
    ],
)
def test_depending_on_a_shorter_lived_scope_is_a_violation(
    owner: Scope, dependency: Scope
) -> None:
    container = Container()
    container.bind(Engine, scope=dependency)
    container.bind(Repo, scope=owner)

    (violation,) = _problems(container)

    assert isinstance(violation, ScopeViolation)
    assert f"Repo ({owner.name}) -> Engine ({dependency.name})" in str(violation)


def test_scope_violation_is_a_graph_error() -> None:
    assert issubclass(ScopeViolation, GraphError)


# -- every problem at once ----------------------------------------------------------


def test_validation_lists_every_kind_of_problem_together() -> None:
    container = Container()
    container.bind(Repo)  # Engine is missing
    container.bind(A)
    container.bind(B)  # A <-> B
    container.bind(Session, scope=Scope.REQUEST)
    container.bind(UserService)  # APP -> REQUEST

    problems = _problems(container)

    kinds = {type(p) for p in problems}
    assert kinds == {DependencyNotFound, DependencyCycle, ScopeViolation}


def test_starting_the_container_validates_it() -> None:
    container = Container()
    container.bind(Repo)

    with pytest.raises(GraphError, match=r"nothing is bound for Engine"), container:
        pass


async def test_async_with_container_validates_it() -> None:
    container = Container()
    container.bind(Session, scope=Scope.REQUEST)
    container.bind(UserService)

    with pytest.raises(GraphError) as caught:
        async with container:
            pass

    assert any(isinstance(p, ScopeViolation) for p in caught.value.problems)


async def test_async_with_container_reports_every_problem() -> None:
    container = Container()
    container.bind(Notifier)
    container.bind(A)
    container.bind(B)

    with pytest.raises(GraphError) as caught:
        async with container:
            pass

    assert len(caught.value.problems) == 3


async def test_an_invalid_container_builds_nothing_at_start() -> None:
    built: list[str] = []
    container = Container()

    @container.provide(eager=True)
    def engine() -> Engine:
        built.append("engine")
        return Engine()

    container.bind(Repo)
    container.bind(Notifier)  # Mailer missing

    with pytest.raises(GraphError):
        async with container:
            pass

    assert built == []


# -- export -------------------------------------------------------------------------


def _exported() -> Container:
    container = Container()
    container.bind(Engine)
    container.bind(Repo, scope=Scope.REQUEST)
    container.bind(Mailer, scope=Scope.TRANSIENT)
    container.bind(Notifier, scope=Scope.REQUEST)
    return container


def test_mermaid_export_draws_every_registration_with_its_scope() -> None:
    text = _exported().graph("mermaid")

    assert text.startswith("graph TD\n")
    for label in ("Engine (APP)", "Repo (REQUEST)", "Mailer (TRANSIENT)", "Notifier (REQUEST)"):
        assert f'["{label}"]' in text


def test_mermaid_export_draws_every_dependency_edge() -> None:
    text = _exported().graph("mermaid")

    ids = _mermaid_ids(text)
    edges = {tuple(line.strip().split(" --> ")) for line in text.splitlines() if "-->" in line}
    assert edges == {
        (ids["Repo (REQUEST)"], ids["Engine (APP)"]),
        (ids["Notifier (REQUEST)"], ids["Mailer (TRANSIENT)"]),
        (ids["Notifier (REQUEST)"], ids["Engine (APP)"]),
    }


def _mermaid_ids(text: str) -> dict[str, str]:
    ids = {}
    for line in text.splitlines():
        if '["' in line:
            node, label = line.strip().split('["')
            ids[label.removesuffix('"]')] = node
    return ids


def test_mermaid_is_the_default_format() -> None:
    container = _exported()

    assert container.graph() == container.graph("mermaid")


def test_dot_export_is_a_digraph_with_every_node_and_edge() -> None:
    text = _exported().graph("dot")

    assert text.startswith("digraph")
    assert text.rstrip().endswith("}")
    labels: dict[str, str] = {}
    for line in text.splitlines():
        if "[label=" in line:
            node = line.strip().split(" ")[0]
            labels[line.split('label="')[1].split('"')[0]] = node
    assert set(labels) == {
        "Engine (APP)",
        "Repo (REQUEST)",
        "Mailer (TRANSIENT)",
        "Notifier (REQUEST)",
    }
    edges = {
        tuple(line.strip().rstrip(";").split(" -> ")) for line in text.splitlines() if "->" in line
    }
    assert edges == {
        (labels["Repo (REQUEST)"], labels["Engine (APP)"]),
        (labels["Notifier (REQUEST)"], labels["Mailer (TRANSIENT)"]),
        (labels["Notifier (REQUEST)"], labels["Engine (APP)"]),
    }


def test_export_shows_named_bindings_by_name() -> None:
    container = Container()
    container.bind(Engine, Engine(), name="primary")

    assert "Engine[primary] (APP)" in container.graph("mermaid")
    assert "Engine[primary] (APP)" in container.graph("dot")


def test_export_of_an_invalid_graph_still_works() -> None:
    container = Container()
    container.bind(A)
    container.bind(B)

    text = container.graph("dot")

    assert "A (APP)" in text
    assert "B (APP)" in text


@pytest.mark.parametrize("fmt", ["svg", "", "MERMAID"])
def test_unknown_export_format_is_a_value_error(fmt: Any) -> None:
    container = _exported()

    with pytest.raises(ValueError, match=r"use 'mermaid' or 'dot'"):
        container.graph(fmt)


# -- without validate(): the first build checks what it reaches ------------------------


def test_unvalidated_cycle_fails_at_first_resolution_naming_the_loop() -> None:
    container = Container()
    container.bind(A)
    container.bind(B)

    with pytest.raises(DependencyCycle, match=r"A \(APP\) -> B \(APP\) -> A \(APP\)"):
        container.get(A)


def test_unvalidated_scope_violation_fails_instead_of_caching_a_stale_instance() -> None:
    container = Container()
    container.bind(Session, scope=Scope.REQUEST)
    container.bind(UserService)

    with container.scope() as request, pytest.raises(ScopeViolation, match="UserService"):
        request.get(UserService)
    assert "UserService" not in {type(v).__name__ for v in container._cache.values()}


async def test_unvalidated_scope_violation_through_a_transient_fails_on_aget() -> None:
    container = Container()
    container.bind(Session, scope=Scope.REQUEST)
    container.bind(Helper, scope=Scope.TRANSIENT)
    container.bind(Service)

    async with container.scope() as request:
        with pytest.raises(ScopeViolation, match=r"Service \(APP\) depends through"):
            await request.aget(Service)
