"""SDK credentials: the Basic metadata every call carries (unary and streams, from a real
in-process gRPC server's point of view), the env fallbacks, and how refusals map to errors
that are never retried."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from raftcache.client import (
    AsyncClient,
    AuthenticationError,
    PermissionDeniedError,
    RaftcacheError,
    RetryPolicy,
)
from raftcache.client._router import final_error
from raftcache.client._transport import CallFailed, GrpcTransport, credentials_metadata
from raftcache.v1 import cache_pb2, cluster_pb2

from tests.unit.test_client_routing import FakeTransport


def decoded(metadata: tuple[tuple[str, str], ...]) -> str:
    ((key, value),) = metadata
    assert key == "authorization" and value.startswith("Basic ")
    return base64.b64decode(value.removeprefix("Basic ")).decode()


def test_credentials_come_from_the_arguments_else_the_environment() -> None:
    assert decoded(credentials_metadata("app", "pw", {})) == "app:pw"
    env = {"RAFTCACHE_USER": "envuser", "RAFTCACHE_PASSWORD": "envpw"}
    assert decoded(credentials_metadata(None, None, env)) == "envuser:envpw"
    assert decoded(credentials_metadata("app", None, env)) == "app:envpw"
    assert decoded(credentials_metadata(None, "only-pw", {})) == "default:only-pw"
    assert decoded(credentials_metadata("nopass-user", None, {})) == "nopass-user:"
    assert decoded(credentials_metadata("ü", "pä:ss", {})) == "ü:pä:ss"
    assert credentials_metadata(None, None, {}) == ()
    with pytest.raises(ValueError, match="cannot contain ':'"):
        credentials_metadata("a:b", "pw", {})


def test_refusals_map_to_their_own_errors_whoever_answered() -> None:
    cases = [
        (CallFailed("UNAUTHENTICATED", "bad", "Unauthenticated"), AuthenticationError),
        (CallFailed("UNAUTHENTICATED", "from a proxy"), AuthenticationError),
        (CallFailed("PERMISSION_DENIED", "no", "PermissionDenied"), PermissionDeniedError),
        (CallFailed("PERMISSION_DENIED", "from a proxy"), PermissionDeniedError),
    ]
    for failure, cls in cases:
        error = final_error(failure)
        assert type(error) is cls and str(error) == failure.details
        assert isinstance(error, RaftcacheError) and not error.retriable


@pytest.mark.parametrize(
    ("code", "origin", "cls"),
    [
        ("UNAUTHENTICATED", "Unauthenticated", AuthenticationError),
        ("PERMISSION_DENIED", "PermissionDenied", PermissionDeniedError),
    ],
)
def test_a_refused_call_is_not_retried(code: str, origin: str, cls: type[Exception]) -> None:
    transport = FakeTransport()
    transport.script("Cache/Get", CallFailed(code, "refused", origin))

    async def main() -> None:
        client = AsyncClient(
            ["10.0.0.1:6380"], transport=transport, retry=RetryPolicy(), auto_pipeline=False
        )
        with pytest.raises(cls, match="refused"):
            await client.get("k")
        await client.close()

    asyncio.run(main())
    assert [c.method for c in transport.calls].count("Cache/Get") == 1


def test_every_call_carries_the_credentials() -> None:
    """Unary, Batch (auto-pipelined), Cluster and streaming calls: each arrives with the
    same `authorization` metadata."""
    seen: list[tuple[str, str | None]] = []

    def header(context: Any) -> str | None:
        return dict(context.invocation_metadata()).get("authorization")

    async def get(request: Any, context: Any) -> Any:
        seen.append(("Get", header(context)))
        return cache_pb2.GetResponse(found=True, value=b"v", version=1)

    async def batch(request: Any, context: Any) -> Any:
        seen.append(("Batch", header(context)))
        found = cache_pb2.GetResponse(found=True, value=b"v", version=1)
        return cache_pb2.BatchResponse(
            results=[cache_pb2.BatchResult(get=found) for _ in request.ops]
        )

    async def subscribe(request: Any, context: Any) -> AsyncIterator[Any]:
        seen.append(("Subscribe", header(context)))
        yield cache_pb2.PubSubMessage(channel=b"c", message=b"m")

    async def status(request: Any, context: Any) -> Any:
        seen.append(("Status", header(context)))
        return cluster_pb2.StatusResponse(
            node_id="n1",
            role=cluster_pb2.LEADER,
            leader_client_addr=ADDRESS[0],
            client_addr=ADDRESS[0],
            members=[cluster_pb2.Member(id="n1", client_addr=ADDRESS[0], is_leader=True)],
        )

    async def whoami(request: Any, context: Any) -> Any:
        seen.append(("WhoAmI", header(context)))
        return cluster_pb2.WhoAmIResponse(user="app")

    def unary(fn: Any, req: Any, resp: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
        )

    cache = grpc.method_handlers_generic_handler(
        "raftcache.v1.Cache",
        {
            "Get": unary(get, cache_pb2.GetRequest, cache_pb2.GetResponse),
            "Batch": unary(batch, cache_pb2.BatchRequest, cache_pb2.BatchResponse),
            "Subscribe": grpc.unary_stream_rpc_method_handler(
                subscribe,
                request_deserializer=cache_pb2.SubscribeRequest.FromString,
                response_serializer=cache_pb2.PubSubMessage.SerializeToString,
            ),
        },
    )
    cluster = grpc.method_handlers_generic_handler(
        "raftcache.v1.Cluster",
        {
            "Status": unary(status, cluster_pb2.StatusRequest, cluster_pb2.StatusResponse),
            "WhoAmI": unary(whoami, cluster_pb2.WhoAmIRequest, cluster_pb2.WhoAmIResponse),
        },
    )
    ADDRESS: list[str] = []

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((cache, cluster))
        port = server.add_insecure_port("127.0.0.1:0")
        ADDRESS.append(f"127.0.0.1:{port}")
        await server.start()
        try:
            async with AsyncClient(ADDRESS[0], user="app", password="pw") as client:
                assert await client.get("k") == b"v"
                await asyncio.gather(*(client.get(f"k{i}") for i in range(8)))  # a Batch
                assert await client.whoami() == "app"
                subscription = await client.subscribe(["c"])
                async for message in subscription:
                    assert message.data == b"m"
                    break
                await subscription.aclose()
        finally:
            await server.stop(None)

    asyncio.run(main())
    expected = "Basic " + base64.b64encode(b"app:pw").decode()
    methods = {method for method, _ in seen}
    assert {"Get", "Batch", "Status", "WhoAmI", "Subscribe"} <= methods
    assert all(value == expected for _, value in seen), seen


def test_no_credentials_no_metadata() -> None:
    assert GrpcTransport(metadata=()).metadata is None
