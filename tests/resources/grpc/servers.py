"""Real gRPC servers on 127.0.0.1 for the channel tests; no protoc: bytes in, bytes out.

``GRPCServer`` runs in the test's event loop with the standard ``grpc.health.v1``
service (or without it), and can stop and start again on the same port.
``GRPCProcess`` runs ``grpc_process.py`` in a child process that a test can freeze
(SIGSTOP) or kill in the middle of a call.

Methods of ``test.Echo``: ``Echo`` returns the request; ``Sleep`` sleeps
``float(request)`` seconds; ``Fail`` aborts with the status code named by the request
(``b"NOT_FOUND"``); ``Flaky`` aborts with the codes queued in ``fail_next``, one per
call, then echoes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.servers.child import ChildServer

GRPC_PROCESS = Path(__file__).with_name("grpc_process.py")


class GRPCServer:
    def __init__(self, *, with_health: bool = True,
                 credentials: grpc.ServerCredentials | None = None) -> None:
        self.port = 0
        self.calls: list[str] = []
        self.fail_next: list[grpc.StatusCode] = []
        self.health: Any = health.aio.HealthServicer() if with_health else None
        self._credentials = credentials
        self._server: Any = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> GRPCServer:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {
            "Echo": grpc.unary_unary_rpc_method_handler(self._echo),
            "Sleep": grpc.unary_unary_rpc_method_handler(self._sleep),
            "Fail": grpc.unary_unary_rpc_method_handler(self._fail),
            "Flaky": grpc.unary_unary_rpc_method_handler(self._flaky),
        }),))
        if self.health is not None:
            health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
            await self.set_serving(True)
        address = f"127.0.0.1:{self.port}"
        if self._credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, self._credentials)
        await server.start()
        self._server = server
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(None)
            self._server = None

    async def set_serving(self, serving: bool, service: str = "") -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving \
            else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set(service, status)

    async def _echo(self, request: bytes, context: Any) -> bytes:
        self.calls.append("Echo")
        return request

    async def _sleep(self, request: bytes, context: Any) -> bytes:
        self.calls.append("Sleep")
        await asyncio.sleep(float(request))
        return request

    async def _fail(self, request: bytes, context: Any) -> bytes:
        self.calls.append("Fail")
        await context.abort(grpc.StatusCode[request.decode()], "boom")
        raise AssertionError("abort() raises")

    async def _flaky(self, request: bytes, context: Any) -> bytes:
        self.calls.append("Flaky")
        if self.fail_next:
            await context.abort(self.fail_next.pop(0), "flaky")
        return request


class GRPCProcess(ChildServer):
    """``grpc_process.py`` in a child process; ``freeze()`` / ``thaw()`` / ``kill()``."""

    def __init__(self) -> None:
        super().__init__(GRPC_PROCESS, "gRPC server")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"
