"""The ``tether`` command line: check, graph, health and demo.

The containers the commands load live in this module ("tests.test_cli:..."); health
is read from a real uvicorn serving tether.fastapi on a free loopback port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner, Result

from tether import Container, Scope, resource
from tether.cli import app
from tether.fastapi import install

ROOT = Path(__file__).resolve().parents[1]
HERE = __name__  # "tests.test_cli": what the commands import

# Wide, colourless output, and no proxy between the client and loopback.
ENV: dict[str, str | None] = {
    "COLUMNS": "250",
    "NO_COLOR": "1",
    "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None,
    "TTY_INTERACTIVE": None,
    **dict.fromkeys(("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                     "http_proxy", "https_proxy", "all_proxy")),
}


# -- what the commands load -----------------------------------------------------------


class Settings:
    dsn = "sqlite://"


@resource
class Database:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def initialize(self) -> None:
        pass

    async def dispose(self) -> None:
        pass

    async def health_check(self) -> bool:
        return True


class Mailer:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings


class Cache:
    pass


class Session:
    def __init__(self, db: Database) -> None:
        self.db = db


def _cache_down(cache: Cache) -> bool:
    raise ConnectionError("cache node 10.0.0.7 is down")


def _refuses() -> Mailer:
    raise ConnectionRefusedError("smtp.example.test:25 refused the connection")


def _base() -> Container:
    c = Container()
    c.bind(Settings, Settings())
    c.bind(Database, eager=True)
    c.bind(Session, scope=Scope.REQUEST)
    return c


def healthy() -> Container:
    c = _base()
    c.bind(Mailer)  # lazy, no health check
    return c


def degraded() -> Container:
    c = healthy()
    c.bind(Cache, Cache(), critical=False, eager=True, health_check=_cache_down)
    return c


def unhealthy() -> Container:
    c = Container()
    c.bind(Settings, Settings())
    c.bind(Database, eager=True, health_check=lambda db: False)
    return c


def fails_at_startup() -> Container:
    c = _base()
    c.provide(eager=True)(_refuses)
    return c


def lazy_fails() -> Container:
    c = _base()
    c.provide(_refuses)
    return c


class Notifier:
    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer


def dependency_fails() -> Container:
    c = lazy_fails()
    c.bind(Notifier)
    return c


def lazy_fails_not_critical() -> Container:
    c = _base()
    c.provide(critical=False)(_refuses)
    return c


def missing_dependency() -> Container:
    c = Container()
    c.bind(Mailer)
    return c


def _settings_that_fail_to_close() -> Iterator[Settings]:
    yield Settings()
    raise RuntimeError("flush on close failed")


def teardown_fails() -> Container:
    c = Container()
    c.provide(_settings_that_fail_to_close)
    return c


def not_a_container() -> int:
    return 42


def needs_arguments(settings: Settings, debug: bool) -> Container:
    return Container()


async def async_factory() -> Container:
    return Container()


def raises() -> Container:
    raise RuntimeError("DATABASE_URL is not set")


container = healthy()  # module-level, as users write it
answer = 42


@pytest.fixture
def cli() -> Callable[..., Result]:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args), env=ENV, catch_exceptions=False)

    return invoke


Invoke = Callable[..., Result]


def error_lines(result: Result) -> list[str]:
    return result.stderr.strip().splitlines()


# -- tether check ---------------------------------------------------------------------


def test_check_a_healthy_container_prints_every_registration_and_exits_0(cli: Invoke) -> None:
    result = cli("check", f"{HERE}:healthy")

    assert result.exit_code == 0, result.output
    table = {line.split()[1]: line for line in result.stdout.splitlines()
             if line.startswith("│")}
    assert set(table) == {"Settings", "Database", "Mailer"}
    assert "healthy" in table["Database"]
    assert " ms " in table["Database"]
    assert "started" in table["Mailer"]  # built, no health check of its own
    assert "status: healthy" in result.stdout
    assert "1 registration(s) scoped to a session, request or use" in result.stdout
    assert result.stderr == ""


def test_check_accepts_a_module_level_container(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[HERE], "container", healthy())

    result = cli("check", f"{HERE}:container")

    assert result.exit_code == 0, result.output
    assert "Database" in result.stdout
    assert sys.modules[HERE].container.closed  # started, checked, then disposed


def test_check_starts_lazy_registrations_too(cli: Invoke) -> None:
    result = cli("check", f"{HERE}:lazy_fails")

    assert result.exit_code == 1
    row = next(line for line in result.stdout.splitlines() if "Mailer" in line)
    assert "FAILING" in row
    assert "ConnectionRefusedError: smtp.example.test:25 refused the connection" in row
    assert "status: unhealthy" in result.stdout
    assert error_lines(result) == ["error: critical registration(s) failing: Mailer"]


def test_check_names_the_failed_dependency_of_a_registration(cli: Invoke) -> None:
    result = cli("check", f"{HERE}:dependency_fails")

    assert result.exit_code == 1
    row = next(line for line in result.stdout.splitlines() if "Notifier" in line)
    assert "FAILING" in row
    assert "needs Mailer, which failed: ConnectionRefusedError: smtp.example.test:25" in row
    assert error_lines(result) == [
        "error: critical registration(s) failing: Mailer, Notifier"
    ]


def test_check_eager_only_leaves_lazy_registrations_alone(cli: Invoke) -> None:
    result = cli("check", f"{HERE}:lazy_fails", "--eager-only")

    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "Mailer" in line)
    assert "not started" in row


def test_check_exits_0_when_only_a_non_critical_resource_fails(cli: Invoke) -> None:
    result = cli("check", f"{HERE}:degraded")

    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "Cache" in line)
    assert "FAILING" in row
    assert "ConnectionError: cache node 10.0.0.7 is down" in row
    assert "status: degraded" in result.stdout


def test_check_exits_0_when_a_non_critical_lazy_registration_fails_to_build(
    cli: Invoke,
) -> None:
    result = cli("check", f"{HERE}:lazy_fails_not_critical")

    assert result.exit_code == 0, result.output
    assert "status: degraded" in result.stdout


def test_check_exits_1_when_a_critical_health_check_fails(cli: Invoke) -> None:
    result = cli("check", f"{HERE}:unhealthy")

    assert result.exit_code == 1
    row = next(line for line in result.stdout.splitlines() if "Database" in line)
    assert "FAILING" in row
    assert "check returned False" in row
    assert "status: unhealthy" in result.stdout
    assert error_lines(result) == ["error: critical registration(s) failing: Database"]


def test_check_prints_a_startup_error_as_one_sentence(cli: Invoke) -> None:
    result = cli("check", f"{HERE}:fails_at_startup")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert error_lines(result) == [
        "error: start-up failed at Mailer: ConnectionRefusedError: smtp.example.test:25 "
        "refused the connection. The resources started before it were disposed in "
        "reverse order."
    ]


def test_check_reports_graph_problems_before_starting_anything(cli: Invoke) -> None:
    result = cli("check", f"{HERE}:missing_dependency")

    assert result.exit_code == 1
    lines = error_lines(result)
    assert lines[0] == "error: the dependency graph has 1 problem(s):"
    assert "nothing is bound for Settings, needed by Mailer" in lines[1]
    assert "Traceback" not in result.output


def test_check_exits_1_when_disposing_fails(cli: Invoke) -> None:
    result = cli("check", f"{HERE}:teardown_fails")

    assert result.exit_code == 1
    assert "status: healthy" in result.stdout  # the check passed; closing did not
    assert error_lines(result) == [
        "error: disposing Settings failed: RuntimeError: flush on close failed"
    ]


def test_check_a_closed_container_says_so(cli: Invoke, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = healthy()
    closed.close()
    monkeypatch.setattr(sys.modules[HERE], "container", closed)

    result = cli("check", f"{HERE}:container")

    assert result.exit_code == 1
    assert error_lines(result) == [
        "error: cannot use this container once it has been closed. Hint: open a new one "
        "instead of keeping a reference past its `with` block."
    ]


# -- finding the container (check and graph alike) -------------------------------------


@pytest.mark.parametrize("command", ["check", "graph"])
@pytest.mark.parametrize(
    ("spec", "code", "expected"),
    [
        pytest.param("tests", 2, "'tests' is not a module:attribute spec. Hint: write it as "
                     "package.module:attribute, e.g. myapp.main:container.", id="no-colon"),
        pytest.param(":container", 2, "':container' is not a module:attribute spec",
                     id="no-module"),
        pytest.param(f"{HERE}:", 2, f"'{HERE}:' is not a module:attribute spec",
                     id="no-attribute"),
        pytest.param("tests.no_such_module:container", 2,
                     "cannot import 'tests.no_such_module' from 'tests.no_such_module:"
                     "container': there is no module named 'tests.no_such_module'",
                     id="missing-module"),
        pytest.param(f"{HERE}:nope", 2, f"module '{HERE}' has no attribute 'nope'. "
                     "Containers it defines: container.", id="missing-attribute"),
        pytest.param(f"{HERE}:answer", 2, f"{HERE}:answer is a int, not a "
                     "tether.Container or a function that returns one.", id="not-callable"),
        pytest.param(f"{HERE}:Settings", 2, f"{HERE}:Settings is the class Settings, "
                     "not a tether.Container", id="other-class"),
        pytest.param(f"{HERE}:not_a_container", 2, f"{HERE}:not_a_container() returned "
                     "int, not a tether.Container.", id="returns-something-else"),
        pytest.param(f"{HERE}:needs_arguments", 2, f"{HERE}:needs_arguments takes "
                     "arguments (settings, debug)", id="needs-arguments"),
        pytest.param(f"{HERE}:async_factory", 2, f"{HERE}:async_factory is an async "
                     "function", id="async-factory"),
        pytest.param(f"{HERE}:raises", 1, f"calling {HERE}:raises() raised RuntimeError: "
                     "DATABASE_URL is not set", id="factory-raises"),
    ],
)
def test_a_container_that_cannot_be_loaded_gets_one_line_naming_why(
    cli: Invoke, command: str, spec: str, code: int, expected: str
) -> None:
    result = cli(command, spec)

    assert result.exit_code == code
    assert result.stdout == ""
    [line] = error_lines(result)
    assert line.startswith("error: " + expected)


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_a_module_that_raises_on_import_is_named_with_its_error(
    cli: Invoke, module_dir: Path
) -> None:
    (module_dir / "tether_cli_raises_on_import.py").write_text(
        "raise RuntimeError('settings.toml is missing')\n", encoding="utf-8"
    )

    result = cli("check", "tether_cli_raises_on_import:container")

    assert result.exit_code == 1
    assert error_lines(result) == [
        "error: importing 'tether_cli_raises_on_import' raised RuntimeError: settings.toml "
        "is missing. Hint: run `python -c 'import tether_cli_raises_on_import'` to see the "
        "traceback."
    ]


def test_a_module_whose_own_import_is_missing_is_not_called_missing_itself(
    cli: Invoke, module_dir: Path
) -> None:
    (module_dir / "tether_cli_needs_a_package.py").write_text(
        "import tether_cli_package_not_installed\n", encoding="utf-8"
    )

    result = cli("check", "tether_cli_needs_a_package:container")

    assert result.exit_code == 1
    [line] = error_lines(result)
    assert line.startswith(
        "error: importing 'tether_cli_needs_a_package' raised ModuleNotFoundError: "
        "No module named 'tether_cli_package_not_installed'."
    )


def test_a_module_in_the_current_folder_is_found(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tether_cli_beside_you.py").write_text(
        "from tether import Container\ncontainer = Container()\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "tether_cli_beside_you", raising=False)

    result = cli("graph", "tether_cli_beside_you:container")

    assert result.exit_code == 0, result.output
    assert result.stdout == "graph TD\n"


# -- tether graph ---------------------------------------------------------------------


def test_graph_prints_mermaid_by_default(cli: Invoke) -> None:
    result = cli("graph", f"{HERE}:container")

    assert result.exit_code == 0, result.output
    assert result.stdout == container.graph("mermaid")
    assert '["Session (REQUEST)"]' in result.stdout
    assert result.stderr == ""


def test_graph_prints_dot(cli: Invoke) -> None:
    result = cli("graph", f"{HERE}:healthy", "--format", "dot")

    assert result.exit_code == 0, result.output
    assert result.stdout == healthy().graph("dot")
    assert result.stdout.startswith("digraph tether {")


def test_graph_refuses_an_unknown_format_naming_the_choices(cli: Invoke) -> None:
    result = cli("graph", f"{HERE}:healthy", "--format", "png")

    assert result.exit_code == 2
    assert "'png'" in result.stderr
    assert "mermaid" in result.stderr
    assert "dot" in result.stderr


def test_graph_still_draws_a_graph_with_problems_and_lists_them(cli: Invoke) -> None:
    result = cli("graph", f"{HERE}:missing_dependency")

    assert result.exit_code == 0
    assert result.stdout == missing_dependency().graph("mermaid")
    assert "note: the dependency graph has 1 problem(s):" in result.stderr
    assert "nothing is bound for Settings" in result.stderr


# -- tether health --------------------------------------------------------------------


@contextmanager
def serving(c: Container) -> Iterator[str]:
    """A FastAPI app wired to ``c``, under uvicorn on a free loopback port."""
    api = FastAPI()
    install(api, c, drain_timeout=5)

    @api.get("/slow")
    async def slow() -> str:
        import asyncio

        await asyncio.sleep(1)
        return "late"

    config = uvicorn.Config(api, host="127.0.0.1", port=0, log_level="warning",
                            ws="none", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError("uvicorn did not start")
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
    assert not thread.is_alive()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


def test_health_prints_the_per_resource_table_of_a_running_service(cli: Invoke) -> None:
    with serving(healthy()) as url:
        result = cli("health", url)

    assert result.exit_code == 0, result.output
    assert f"{url}/health/detailed" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "Database" in line)
    assert "APP" in row
    assert "healthy" in row
    assert " ms " in row
    assert "status: healthy" in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("{url}/", id="trailing-slash"),
        pytest.param("{url}/health/detailed", id="full-url"),
        pytest.param("{host}", id="no-scheme"),
    ],
)
def test_health_accepts_the_address_in_the_forms_people_write_it(
    cli: Invoke, address: str
) -> None:
    with serving(healthy()) as url:
        result = cli("health", address.format(url=url, host=url.removeprefix("http://")))

    assert result.exit_code == 0, result.output
    assert f"{url}/health/detailed" in result.stdout


def test_health_exits_0_for_a_degraded_service(cli: Invoke) -> None:
    with serving(degraded()) as url:
        result = cli("health", url)

    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "Cache" in line)
    assert "FAILING" in row
    assert "ConnectionError: cache node 10.0.0.7 is down" in row
    assert "status: degraded" in result.stdout


def test_health_exits_1_for_an_unhealthy_service_naming_what_fails(cli: Invoke) -> None:
    with serving(unhealthy()) as url:
        result = cli("health", url)

    assert result.exit_code == 1
    row = next(line for line in result.stdout.splitlines() if "Database" in line)
    assert "FAILING" in row
    assert "check returned False" in row
    assert "status: unhealthy" in result.stdout
    assert error_lines(result) == [
        f"error: {url}/health/detailed is unhealthy (HTTP 503): Database failing"
    ]


def test_health_of_an_unreachable_service_is_one_line(cli: Invoke) -> None:
    url = f"http://127.0.0.1:{closed_port()}"

    result = cli("health", url)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert error_lines(result) == [
        f"error: cannot reach {url}/health/detailed: nothing answered. Is the service running?"
    ]


def test_health_gives_up_after_the_timeout(cli: Invoke) -> None:
    with serving(healthy()) as url:
        result = cli("health", f"{url}/slow", "--timeout", "0.1")

    assert result.exit_code == 1
    assert error_lines(result) == [f"error: {url}/slow did not answer within 0.1s."]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/health/live", "answered HTTP 200 without a tether health report: its "
                     "status is 'alive', not healthy, degraded or unhealthy", id="summary"),
        pytest.param("/nowhere", "answered HTTP 404 without a tether health report: its "
                     "JSON has no status", id="not-found"),
        pytest.param("/docs", "answered HTTP 200 without a tether health report: its body "
                     "is not JSON", id="html"),
    ],
)
def test_health_of_an_endpoint_that_is_not_a_report_names_the_right_one(
    cli: Invoke, path: str, expected: str
) -> None:
    with serving(healthy()) as url:
        result = cli("health", f"{url}{path}")

    assert result.exit_code == 1
    assert error_lines(result) == [
        f"error: {url}{path} {expected}. Hint: point at the service's /health/detailed."
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("ftp://127.0.0.1/", "'ftp://127.0.0.1/' is not an http(s) URL",
                     id="scheme"),
        pytest.param("http://[::1", "'http://[::1' is not a URL", id="malformed"),
    ],
)
def test_health_refuses_a_malformed_url(cli: Invoke, url: str, expected: str) -> None:
    result = cli("health", url)

    assert result.exit_code == 2
    [line] = error_lines(result)
    assert line.startswith(f"error: {expected}")


# -- tether demo ----------------------------------------------------------------------


def test_demo_missing_from_the_build_is_one_line(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tether.demo", None)
    monkeypatch.setitem(sys.modules, "tether.demo.__main__", None)

    result = cli("demo")

    assert result.exit_code == 2
    assert error_lines(result) == [
        "error: the demo service is not available in this build of tether."
    ]


@pytest.mark.parametrize("package", ["uvicorn", "fastapi"])
def test_demo_without_its_extra_names_the_extra(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, package: str
) -> None:
    monkeypatch.setitem(sys.modules, package, None)
    if package == "fastapi":  # imported with the demo's app: import it afresh
        for name in ("tether.demo", "tether.demo.app", "tether.demo.__main__"):
            monkeypatch.delitem(sys.modules, name, raising=False)

    result = cli("demo")

    assert result.exit_code == 2
    [line] = error_lines(result)
    assert line.startswith("error: the demo needs the 'demo' extra")
    assert line.endswith("pip install 'tether[demo]'")


def test_demo_refuses_a_port_out_of_range(cli: Invoke) -> None:
    result = cli("demo", "--port", "70000")

    assert result.exit_code == 2
    assert "--port" in result.stderr


@pytest.mark.slow
def test_demo_serves_the_demo_and_health_reads_it(cli: Invoke, tmp_path: Path) -> None:
    port = closed_port()
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'notes.db'}",
               TETHER_DEMO_KEY_FILE=str(tmp_path / "keys.json"))
    env.pop("REDIS_URL", None)
    for name, value in ENV.items():
        if value is None:
            env.pop(name, None)
    process = subprocess.Popen(
        [sys.executable, "-m", "tether.cli", "demo", "--host", "127.0.0.1", "--port",
         str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/health/live", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("the demo did not start") from None
                time.sleep(0.05)
        result = cli("health", url)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()

    assert result.exit_code == 0, result.output
    assert "Database" in result.stdout
    assert "status: healthy" in result.stdout
    assert f"encrypted notes on {url}" in output


# -- the command line itself -----------------------------------------------------------


def test_help_lists_every_command(cli: Invoke) -> None:
    result = cli("--help")

    assert result.exit_code == 0
    for command in ("check", "graph", "health", "demo"):
        assert command in result.stdout


def test_importing_tether_does_not_import_the_cli_packages() -> None:
    code = "import sys, tether\nprint(sorted({'typer', 'rich', 'click'} & set(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)

    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["typer", "rich"])
def test_importing_the_cli_without_its_extra_names_it_in_one_line(package: str) -> None:
    code = (
        f"import sys; sys.modules[{package!r}] = None\n"
        "try:\n    import tether.cli\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)

    assert out.stdout.strip() == "tether.cli needs the 'cli' extra: pip install 'tether[cli]'"
