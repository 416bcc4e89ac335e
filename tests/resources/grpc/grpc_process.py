"""A gRPC echo server in its own process, so that a test can freeze it (SIGSTOP) or kill
it in the middle of a call.

Usage: python grpc_process.py [PORT]. Prints the port it listens on, then serves
127.0.0.1 until killed. Methods (bytes in, bytes out): /test.Echo/Echo returns the
request; /test.Echo/Sleep sleeps float(request) seconds, then returns it.
"""

import asyncio
import sys

import grpc


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def sleep(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await asyncio.sleep(float(request))
    return request


async def main(port: int) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
    }),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print(bound, flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
