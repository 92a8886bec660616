"""A follower relays the leader's answers, and never turns an unknown write outcome
into a "safe to retry" one (in-process gRPC servers on loopback)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from raftcache.chaos.local_cluster import free_port
from raftcache.node.forwarding import LeaderForwarder
from raftcache.v1 import cache_pb2, cache_pb2_grpc
from raftcache.v1.wire import ORIGIN_METADATA_KEY

Behaviour = Callable[[Any, grpc.aio.ServicerContext], Any]


class FakeLeader(cache_pb2_grpc.CacheServicer):  # type: ignore[misc]
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour

    async def Set(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self.behaviour(request, context)


class Follower(cache_pb2_grpc.CacheServicer):  # type: ignore[misc]
    def __init__(self, leader_addr: str) -> None:
        self.leader_addr = leader_addr
        self.forwarder = LeaderForwarder([])

    async def Set(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self.forwarder.forward(self.leader_addr, "Set", request, context)


async def _serve(servicer: Any) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    cache_pb2_grpc.add_CacheServicer_to_server(servicer, server)
    addr = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(addr)
    await server.start()
    return server, addr


async def _call_through_follower(behaviour: Behaviour | None) -> grpc.aio.AioRpcError | Any:
    leader, leader_addr = (None, f"127.0.0.1:{free_port()}")
    if behaviour is not None:
        leader, leader_addr = await _serve(FakeLeader(behaviour))
    follower, follower_addr = await _serve(Follower(leader_addr))
    try:
        async with grpc.aio.insecure_channel(follower_addr) as channel:
            stub = cache_pb2_grpc.CacheStub(channel)
            try:
                return await stub.Set(cache_pb2.SetRequest(key=b"k", value=b"v"), timeout=10)
            except grpc.aio.AioRpcError as exc:
                return exc
    finally:
        await follower.stop(None)
        if leader is not None:
            await leader.stop(None)


@pytest.fixture
def run() -> AsyncIterator[Callable[[Any], Any]]:
    loop = asyncio.new_event_loop()
    yield loop.run_until_complete
    loop.close()


def test_the_leaders_answer_is_relayed(run: Callable[[Any], Any]) -> None:
    async def ok(request: Any, context: Any) -> Any:
        return cache_pb2.SetResponse(version=42)

    assert run(_call_through_follower(ok)).version == 42


def test_the_leaders_own_errors_pass_through_with_their_metadata(
    run: Callable[[Any], Any],
) -> None:
    async def refuse(request: Any, context: Any) -> Any:
        context.set_trailing_metadata(((ORIGIN_METADATA_KEY, "NoLeader"),))
        await context.abort(grpc.StatusCode.UNAVAILABLE, "no leader is known right now")

    exc = run(_call_through_follower(refuse))
    assert exc.code() == grpc.StatusCode.UNAVAILABLE
    assert exc.details() == "no leader is known right now"


def test_a_write_lost_in_transit_is_reported_as_outcome_unknown(
    run: Callable[[Any], Any],
) -> None:
    async def break_connection(request: Any, context: Any) -> Any:
        # What a leader dying after receiving the write looks like: an error the node
        # did not answer itself (no origin metadata).
        await context.abort(grpc.StatusCode.UNAVAILABLE, "Socket closed")

    exc = run(_call_through_follower(break_connection))
    assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "outcome unknown" in exc.details() and "same request id" in exc.details()


def test_a_leader_that_cannot_be_reached_is_safe_to_retry(run: Callable[[Any], Any]) -> None:
    exc = run(_call_through_follower(None))
    assert exc.code() == grpc.StatusCode.UNAVAILABLE
