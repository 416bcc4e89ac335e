"""tether.fastapi: lifespan, a scope per request, Inject in endpoints, health."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated

import pytest
from fastapi import BackgroundTasks, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tether import Container, Named, Scope, resource
from tether.exceptions import CircuitOpen, PoolTimeout, ResourceError, ResourceUnavailable
from tether.fastapi import Inject, dependency, install


class Config:
    greeting = "hello"


class Session:
    """A request-scoped resource that records its lifecycle."""

    def __init__(self) -> None:
        self.closed = False


class Log:
    def __init__(self) -> None:
        self.events: list[str] = []


class Cart:
    def __init__(self) -> None:
        self.items: list[str] = []


def make_container(log: Log) -> Container:
    container = Container()
    container.bind(Config, Config())
    container.bind(Log, log)

    @container.provide(scope=Scope.REQUEST)
    def session() -> Iterator[Session]:
        s = Session()
        log.events.append("open session")
        yield s
        s.closed = True
        log.events.append("close session")

    container.bind(Cart, scope=Scope.SESSION)
    return container


def make_app(
    log: Log, *, session_cookie: str | None = None, session_header: str | None = None
) -> tuple[FastAPI, Container]:
    container = make_container(log)
    app = FastAPI()
    install(app, container, session_cookie=session_cookie, session_header=session_header)

    @app.get("/greet")
    async def greet(
        config: Inject[Config], first: Inject[Session], second: Inject[Session]
    ) -> dict[str, object]:
        return {"greeting": config.greeting, "same": first is second, "id": id(first)}

    @app.get("/sync")
    def sync_endpoint(session: Inject[Session]) -> dict[str, bool]:
        return {"closed": session.closed}

    return app, container


def test_each_request_gets_its_own_scope_and_one_instance_within_it() -> None:
    log = Log()
    app, _ = make_app(log)
    with TestClient(app) as client:
        first = client.get("/greet").json()
        second = client.get("/greet").json()
    assert first["greeting"] == second["greeting"] == "hello"
    assert first["same"] is second["same"] is True
    assert log.events == ["open session", "close session"] * 2


def test_plain_def_endpoints_get_injected_instances() -> None:
    log = Log()
    app, _ = make_app(log)
    with TestClient(app) as client:
        assert client.get("/sync").json() == {"closed": False}
    assert log.events == ["open session", "close session"]


def test_injected_parameters_are_hidden_from_the_openapi_schema() -> None:
    app, _ = make_app(Log())
    with TestClient(app) as client:
        schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/greet"]["get"]
    assert "parameters" not in operation or operation["parameters"] == []
    assert "requestBody" not in operation


def test_named_injection_picks_the_named_binding() -> None:
    container = Container()
    container.bind(str, "plain")
    container.bind(str, "special", name="special")
    app = FastAPI()
    install(app, container)

    @app.get("/named")
    # A type checker reads "special" as a forward reference; the name works at run time.
    async def named(
        value: Inject[str, "special"],  # type: ignore[name-defined]  # noqa: F821, UP037
        other: Inject[str],
    ) -> list[str]:
        return [value, other]

    with TestClient(app) as client:
        assert client.get("/named").json() == ["special", "plain"]


def test_the_container_starts_with_the_app_and_closes_after_its_own_lifespan() -> None:
    log = Log()
    container = make_container(log)

    @container.provide(eager=True)
    def engine() -> Iterator[Config]:
        log.events.append("engine up")
        yield Config()
        log.events.append("engine down")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        log.events.append("app up")
        yield {"from_lifespan": "yes"}
        log.events.append("app down")

    app = FastAPI(lifespan=lifespan)
    install(app, container)

    @app.get("/state")
    async def state_endpoint() -> dict[str, bool]:
        return {"started": not container.closed}

    with TestClient(app) as client:
        assert client.get("/state").json() == {"started": True}
    assert log.events == ["engine up", "app up", "app down", "engine down"]
    assert container.closed


def test_a_streaming_response_keeps_the_scope_open_until_the_last_chunk() -> None:
    log = Log()
    app, _ = make_app(log)

    @app.get("/stream")
    async def stream(session: Inject[Session]) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                log.events.append(f"chunk {i} closed={session.closed}")
                yield f"{i}".encode()

        return StreamingResponse(chunks())

    with TestClient(app) as client:
        assert client.get("/stream").text == "012"
    assert log.events == [
        "open session",
        "chunk 0 closed=False",
        "chunk 1 closed=False",
        "chunk 2 closed=False",
        "close session",
    ]


def test_background_tasks_see_the_request_scope_still_open() -> None:
    log = Log()
    app, _ = make_app(log)

    @app.post("/later")
    async def later(session: Inject[Session], tasks: BackgroundTasks) -> dict[str, str]:
        def job() -> None:
            log.events.append(f"job closed={session.closed}")

        tasks.add_task(job)
        return {"queued": "yes"}

    with TestClient(app) as client:
        assert client.post("/later").json() == {"queued": "yes"}
    assert log.events == ["open session", "job closed=False", "close session"]


def test_a_websocket_connection_has_one_scope_for_its_whole_life() -> None:
    log = Log()
    app, _ = make_app(log)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, session: Inject[Session]) -> None:
        await websocket.accept()
        for _ in range(2):
            text = await websocket.receive_text()
            await websocket.send_text(f"{text}:{id(session)}")
        await websocket.close()

    with TestClient(app) as client, client.websocket_connect("/ws") as socket:
        socket.send_text("a")
        first = socket.receive_text()
        socket.send_text("b")
        second = socket.receive_text()
    assert first.split(":")[1] == second.split(":")[1]
    assert log.events == ["open session", "close session"]


def test_app_dependency_overrides_keep_working_for_tether_dependencies() -> None:
    app, _ = make_app(Log())

    class Other(Config):
        greeting = "overridden"

    app.dependency_overrides[dependency(Config)] = Other
    with TestClient(app) as client:
        assert client.get("/greet").json()["greeting"] == "overridden"


def test_container_override_applies_to_a_running_app() -> None:
    app, container = make_app(Log())

    class Other(Config):
        greeting = "swapped"

    with TestClient(app) as client:
        with container.override(Config, Other()):
            assert client.get("/greet").json()["greeting"] == "swapped"
        assert client.get("/greet").json()["greeting"] == "hello"


def test_a_session_header_binds_the_session_scope() -> None:
    app, _ = make_app(Log(), session_header="X-Session")

    @app.post("/cart/{item}")
    async def add(item: str, cart: Inject[Cart]) -> list[str]:
        cart.items.append(item)
        return cart.items

    with TestClient(app) as client:
        client.post("/cart/apple", headers={"X-Session": "s1"})
        assert client.post("/cart/pear", headers={"X-Session": "s1"}).json() == ["apple", "pear"]
        assert client.post("/cart/fig", headers={"X-Session": "s2"}).json() == ["fig"]


def test_a_session_cookie_binds_the_session_scope() -> None:
    app, _ = make_app(Log(), session_cookie="sid")

    @app.post("/cart/{item}")
    async def add(item: str, cart: Inject[Cart]) -> list[str]:
        cart.items.append(item)
        return cart.items

    with TestClient(app) as client:
        client.cookies.set("sid", "abc")
        client.post("/cart/apple")
        assert client.post("/cart/pear").json() == ["apple", "pear"]


def test_without_install_injection_fails_with_a_sentence_saying_what_to_do() -> None:
    app = FastAPI()

    @app.get("/x")
    async def x(config: Inject[Config]) -> str:
        return config.greeting

    with TestClient(app, raise_server_exceptions=True) as client, pytest.raises(
        RuntimeError, match=r"install\(app, container\)"
    ):
        client.get("/x")


def test_install_twice_is_refused() -> None:
    app, container = make_app(Log())
    with pytest.raises(RuntimeError, match="already"):
        install(app, container)


# -- health endpoints ---------------------------------------------------------------


@resource
class Database:
    healthy = True

    def dispose(self) -> None:
        pass

    async def health_check(self) -> bool:
        return self.healthy


@resource
class Search:
    healthy = True

    def dispose(self) -> None:
        pass

    async def health_check(self) -> bool:
        return self.healthy


def health_app() -> tuple[FastAPI, Database, Search]:
    database, search = Database(), Search()
    container = Container()
    container.bind(Database, database, eager=True)
    container.bind(Search, search, eager=True, critical=False)
    app = FastAPI()
    install(app, container)
    return app, database, search


def test_health_endpoints_report_healthy() -> None:
    app, _, _ = health_app()
    with TestClient(app) as client:
        assert client.get("/health").json() == {"status": "healthy"}
        assert client.get("/health/live").status_code == 200
        assert client.get("/health/ready").status_code == 200
        detailed = client.get("/health/detailed").json()
    assert set(detailed["resources"]) == {"Database", "Search"}
    assert detailed["resources"]["Database"]["healthy"] is True


def test_a_failing_non_critical_resource_makes_health_degraded_but_ready() -> None:
    app, _, search = health_app()
    search.healthy = False
    with TestClient(app) as client:
        response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "degraded"}


def test_a_failing_critical_resource_makes_readiness_503_and_liveness_200() -> None:
    app, database, _ = health_app()
    database.healthy = False
    with TestClient(app) as client:
        assert client.get("/health/ready").status_code == 503
        assert client.get("/health").status_code == 503
        assert client.get("/health/live").status_code == 200
        detailed = client.get("/health/detailed")
    assert detailed.status_code == 503
    assert detailed.json()["resources"]["Database"]["last_error"] == "check returned False"


def test_importing_without_the_extra_names_it_in_one_line() -> None:
    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "try:\n    import tether.fastapi\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (
        "tether.fastapi needs the 'fastapi' extra: pip install 'tether[fastapi]'"
    )


# -- request ids and error bodies ------------------------------------------------------


def test_every_response_carries_a_request_id() -> None:
    app, _ = make_app(Log())
    with TestClient(app) as client:
        first = client.get("/greet").headers["x-request-id"]
        second = client.get("/greet").headers["x-request-id"]
    assert first
    assert second
    assert first != second


def test_a_sane_incoming_request_id_is_kept_and_a_hostile_one_replaced() -> None:
    app, _ = make_app(Log())
    with TestClient(app) as client:
        kept = client.get("/greet", headers={"X-Request-ID": "abc-123"})
        replaced = client.get("/greet", headers={"X-Request-ID": "a b\\n<script>"})
    assert kept.headers["x-request-id"] == "abc-123"
    assert replaced.headers["x-request-id"] != "a b\\n<script>"


def test_an_unexpected_error_gives_a_json_500_without_internals() -> None:
    app, _ = make_app(Log())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("postgresql://admin:hunter2@db/prod is down")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "r-1"})
    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error", "message": "Internal server error.", "request_id": "r-1"
    }
    assert "hunter2" not in response.text


def test_a_dependency_that_cannot_be_built_gives_a_json_503() -> None:
    container = Container()

    @container.provide(scope=Scope.REQUEST)
    def broken() -> Session:
        raise ConnectionError("redis://:secret@cache:6379 refused")

    app = FastAPI()
    install(app, container)

    @app.get("/needs")
    async def needs(session: Inject[Session]) -> str:
        return "never"

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/needs")
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert "secret" not in response.text


@pytest.mark.parametrize(("error", "retry_after"), [
    (PoolTimeout("database", 5.0, 10), None),
    (ResourceUnavailable("cache", "cannot connect to redis://:secret@cache:6379", False), None),
    (CircuitOpen("payments", 2.2, 5), "3"),
])
def test_a_resource_failure_in_an_endpoint_is_a_503_naming_only_the_resource(
    error: ResourceError, retry_after: str | None,
) -> None:
    app = FastAPI()
    install(app, Container())

    @app.get("/call")
    async def call() -> str:
        raise error

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/call", headers={"X-Request-ID": "r-9"})
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "unavailable"
    assert body["request_id"] == "r-9"
    assert error.resource in body["message"]
    assert "secret" not in response.text
    assert response.headers.get("retry-after") == retry_after
    assert response.headers.get_list("x-request-id") == ["r-9"]


def test_http_and_validation_errors_keep_their_status_and_carry_the_request_id() -> None:
    app, _ = make_app(Log())

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> int:
        return item_id

    with TestClient(app) as client:
        missing = client.get("/nowhere", headers={"X-Request-ID": "r-2"})
        invalid = client.get("/items/abc", headers={"X-Request-ID": "r-3"})
    assert missing.status_code == 404
    assert missing.json() == {"error": "http_error", "message": "Not Found", "request_id": "r-2"}
    assert invalid.status_code == 422
    assert invalid.json()["request_id"] == "r-3"
    assert invalid.json()["details"][0]["loc"] == ["path", "item_id"]


def test_logs_carry_the_request_id_through_the_filter_and_json_formatter() -> None:
    import io
    import json
    import logging

    from tether.fastapi import JsonFormatter, RequestIdFilter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("test.requests")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    app, _ = make_app(Log())

    @app.get("/logged")
    async def logged() -> str:
        log.info("handling")
        return "ok"

    try:
        with TestClient(app) as client:
            client.get("/logged", headers={"X-Request-ID": "r-9"})
    finally:
        log.removeHandler(handler)
    line = json.loads(stream.getvalue().splitlines()[0])
    assert line["message"] == "handling"
    assert line["request_id"] == "r-9"


def test_the_lifespan_can_be_used_on_its_own() -> None:
    from tether.fastapi import TetherMiddleware, lifespan

    log = Log()
    container = make_container(log)

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[None]:
        log.events.append("own up")
        yield
        log.events.append("own down")

    app = FastAPI(lifespan=lifespan(container, own))
    app.add_middleware(TetherMiddleware, container=container)

    @app.get("/s")
    async def s(session: Inject[Session]) -> bool:
        return session.closed

    with TestClient(app) as client:
        assert client.get("/s").json() is False
    assert log.events == ["own up", "open session", "close session", "own down"]
    assert container.closed


def test_inject_in_an_included_router_resolves_inline_at_startup() -> None:
    from fastapi import APIRouter

    from tether.fastapi import _walk, resolve_inline

    log = Log()
    app, _ = make_app(log)
    router = APIRouter(prefix="/api")

    @router.get("/greet")
    async def greet(config: Inject[Config], session: Inject[Session]) -> str:
        return f"{config.greeting}:{session.closed}"

    app.include_router(router)
    with TestClient(app) as client:
        assert client.get("/api/greet").json() == "hello:False"
        assert client.get("/greet").json()["same"] is True
        assert resolve_inline(app) == 0  # done at startup already; a second pass changes nothing
        inlined = [
            getattr(route.dependant.call, "__tether_inline__", False)
            for route in _walk(app.routes)
            if route.path.endswith("/greet")
        ]
    assert inlined == [True, True]
    assert log.events == ["open session", "close session"] * 2


def test_an_http_exception_after_a_write_rolls_the_request_transaction_back() -> None:
    outcomes: list[str] = []
    container = Container()

    @container.provide(scope=Scope.REQUEST)
    def transaction() -> Iterator[list[str]]:
        writes: list[str] = []
        try:
            yield writes
        except BaseException:
            outcomes.append(f"rollback {writes}")
            raise
        else:
            outcomes.append(f"commit {writes}")

    app = FastAPI()
    install(app, container)

    @app.post("/async/{item}")
    async def add_async(item: str, tx: Inject[list[str]]) -> None:
        tx.append(item)
        raise HTTPException(409, {"conflict": item})

    @app.post("/sync/{item}")
    def add_sync(item: str, tx: Inject[list[str]]) -> str:
        tx.append(item)
        if item == "bad":
            raise HTTPException(409, "conflict")
        return item

    with TestClient(app) as client:
        first = client.post("/async/a")
        second = client.post("/sync/bad")
        third = client.post("/sync/ok")
    assert first.status_code == second.status_code == 409
    assert first.json()["detail"] == {"conflict": "a"}
    assert third.status_code == 200
    assert outcomes == ["rollback ['a']", "rollback ['bad']", "commit ['ok']"]


def test_a_session_endpoint_without_a_session_is_a_400_not_an_outage() -> None:
    app, _ = make_app(Log(), session_header="X-Session")

    @app.get("/cart")
    async def cart(cart: Inject[Cart]) -> list[str]:
        return cart.items

    with TestClient(app) as client:
        response = client.get("/cart")
    assert response.status_code == 400
    assert response.json()["error"] == "session_required"


def test_error_responses_carry_the_request_id_header_once() -> None:
    app, _ = make_app(Log())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as client:
        missing = client.get("/nowhere", headers={"X-Request-ID": "r-1"})
        failed = client.get("/boom", headers={"X-Request-ID": "r-2"})
    assert missing.headers.get_list("x-request-id") == ["r-1"]
    assert failed.headers.get_list("x-request-id") == ["r-2"]


def test_health_errors_never_show_url_credentials() -> None:
    container = Container()

    @resource
    class Pool:
        def dispose(self) -> None:
            pass

        async def health_check(self) -> bool:
            raise ConnectionError("cannot reach postgresql://admin:hunter2@db:5432/prod")

    container.bind(Pool, eager=True)
    app = FastAPI()
    install(app, container)
    with TestClient(app) as client:
        detailed = client.get("/health/detailed").text
        status = client.get("/status.json").text
    assert "hunter2" not in detailed
    assert "hunter2" not in status
    assert "postgresql://***@db:5432/prod" in detailed


def test_the_typed_named_form_injects_the_named_binding() -> None:
    container = Container()
    container.bind(str, "plain")
    container.bind(str, "special", name="special")
    app = FastAPI()
    install(app, container)

    @app.get("/typed")
    async def typed(value: Inject[Annotated[str, Named("special")]]) -> str:
        return value

    with TestClient(app) as client:
        assert client.get("/typed").json() == "special"


# -- the wrapper made for each endpoint ------------------------------------------------


def test_endpoint_parameters_named_like_the_wrappers_own_names_still_work() -> None:
    app, _ = make_app(Log())

    @app.get("/names/{scope}")
    async def names(
        scope: str, app: int, request: Request, values: str, config: Inject[Config],
        session: Inject[Session], error: str = "none",
    ) -> dict[str, object]:
        return {"scope": scope, "app": app, "values": values, "error": error,
                "greeting": config.greeting, "path": request.url.path,
                "open": not session.closed}

    with TestClient(app) as client:
        reply = client.get("/names/s1", params={"app": 7, "values": "v"})
    assert reply.status_code == 200
    assert reply.json() == {"scope": "s1", "app": 7, "values": "v", "error": "none",
                            "greeting": "hello", "path": "/names/s1", "open": True}


def test_a_parameter_with_the_wrappers_prefix_falls_back_to_the_general_wrapper() -> None:
    app, _ = make_app(Log())

    @app.get("/prefixed")
    async def prefixed(_tether_b: int, config: Inject[Config]) -> dict[str, object]:
        return {"b": _tether_b, "greeting": config.greeting}

    with TestClient(app) as client:
        reply = client.get("/prefixed", params={"_tether_b": 3})
    assert reply.json() == {"b": 3, "greeting": "hello"}
    route = next(r for r in app.routes if isinstance(r, APIRoute) and r.path == "/prefixed")
    call = route.dependant.call
    assert call is not None
    assert "<tether endpoint" not in call.__code__.co_filename


def test_dependency_overrides_added_after_startup_reach_inlined_parameters() -> None:
    app, _ = make_app(Log())

    class Sync(Config):
        greeting = "sync override"

    class Async(Config):
        greeting = "async override"

    async def make_async() -> Config:
        return Async()

    with TestClient(app) as client:
        assert client.get("/greet").json()["greeting"] == "hello"
        app.dependency_overrides[dependency(Config)] = Sync
        assert client.get("/greet").json()["greeting"] == "sync override"
        app.dependency_overrides[dependency(Config)] = make_async
        assert client.get("/greet").json()["greeting"] == "async override"
        app.dependency_overrides.clear()
        assert client.get("/greet").json()["greeting"] == "hello"


def test_an_endpoint_error_still_closes_the_scope_with_it() -> None:
    log = Log()
    app, _ = make_app(log)

    @app.get("/fails/{code}")
    async def fails(code: int, session: Inject[Session]) -> None:
        raise HTTPException(code, "no")

    with TestClient(app) as client:
        assert client.get("/fails/409").status_code == 409
        failed = list(log.events)
        assert client.get("/greet").status_code == 200
    # The error was thrown into the session's generator at its yield, so the line after
    # it never ran; the request that succeeded closed its session normally.
    assert failed == ["open session"]
    assert log.events == ["open session", "open session", "close session"]
