"""Batteries: one module per kind of shared resource, each an optional extra.

Each is a ``@resource`` class built from a pydantic config model, so the container
starts it lazily or eagerly, health-checks it, measures it and disposes it; each
translates its driver's errors into ``tether.exceptions.ResourceError`` and runs its
calls under the ``tether.resilience`` policy its config describes.

    tether.resources.http       HTTPClient       (extra: http; aiohttp backend: aiohttp)
    tether.resources.database   Database         (extra: database)
    tether.resources.redis      RedisClient      (extra: redis)
    tether.resources.websocket  WebSocketClient  (extra: websocket)
    tether.resources.grpc       GRPCChannel      (extra: grpc)
    tether.resources.pool       Pool, FileHandles (extra: pool)
    tether.resources.crypto     Crypto           (extra: crypto)
    tether.resources.models     ModelRegistry    (extra: models)
"""
