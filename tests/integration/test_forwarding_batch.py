"""A follower auto-pipelines concurrent forwarded calls into Batch RPCs, and each caller
gets exactly the answer or status its own forwarded unary call would have (in-process gRPC
servers on loopback; the leader is a scripted fake)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from raftcache.chaos.local_cluster import free_port
from raftcache.node.forwarding import LeaderForwarder
from raftcache.v1 import cache_pb2, cache_pb2_grpc
from raftcache.v1.wire import FORWARDED_METADATA_KEY, LEADER_METADATA_KEY, ORIGIN_METADATA_KEY

BatchBehaviour = Callable[[cache_pb2.BatchRequest, grpc.aio.ServicerContext], Any]


class FakeLeader(cache_pb2_grpc.CacheServicer):  # type: ignore[misc]
    """Holds its first unary call until `release` is set, so later calls queue behind it."""

    def __init__(self, batch: BatchBehaviour | None = None) -> None:
        self.release = asyncio.Event()
        self.received: list[tuple[str, Any]] = []
        self.forwarded_marks: list[bool] = []
        self.batch = batch

    def _note(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.received.append((method, request))
        metadata = dict(context.invocation_metadata() or ())
        self.forwarded_marks.append(FORWARDED_METADATA_KEY in metadata)

    async def Set(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._note("Set", request, context)
        await self.release.wait()
        return cache_pb2.SetResponse(version=len(request.value))

    async def Get(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._note("Get", request, context)
        return cache_pb2.GetResponse(found=True, value=request.key)

    async def Batch(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        self._note("Batch", request, context)
        if self.batch is not None:
            return await self.batch(request, context)
        out = cache_pb2.BatchResponse()
        for op in request.ops:
            if op.HasField("set"):
                out.results.add(set=cache_pb2.SetResponse(version=len(op.set.value)))
            else:
                out.results.add(get=cache_pb2.GetResponse(found=True, value=op.get.key))
        return out


class Follower(cache_pb2_grpc.CacheServicer):  # type: ignore[misc]
    def __init__(self, leader_addr: str) -> None:
        self.leader_addr = leader_addr
        # One RPC in flight: the calls made while the first is held all queue, so what
        # goes out is deterministic (one Batch once the first returns).
        self.forwarder = LeaderForwarder([], max_inflight=1)

    async def Set(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self.forwarder.forward(self.leader_addr, "Set", request, context)

    async def Get(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return await self.forwarder.forward(self.leader_addr, "Get", request, context)


async def _serve(servicer: Any) -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    cache_pb2_grpc.add_CacheServicer_to_server(servicer, server)
    addr = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(addr)
    await server.start()
    return server, addr


async def _burst(leader: FakeLeader, calls: list[Any]) -> tuple[Follower, list[Any]]:
    """A first Set held in flight at the leader, then `calls` (stub -> awaitable) through
    the follower; the answers (or AioRpcErrors) of the calls after the first."""
    leader_server, leader_addr = await _serve(leader)
    follower = Follower(leader_addr)
    follower_server, follower_addr = await _serve(follower)
    try:
        async with grpc.aio.insecure_channel(follower_addr) as channel:
            stub = cache_pb2_grpc.CacheStub(channel)
            first = asyncio.ensure_future(
                stub.Set(cache_pb2.SetRequest(key=b"k0", value=b"v"), timeout=10)
            )
            while not leader.received:
                await asyncio.sleep(0.01)
            rest = asyncio.gather(*(call(stub) for call in calls), return_exceptions=True)
            while follower.forwarder.pipeline is not None and sum(
                len(n.queue) for n in follower.forwarder.pipeline._nodes.values()
            ) < len(calls):
                await asyncio.sleep(0.01)
            leader.release.set()
            await first
            return follower, list(await rest)
    finally:
        await follower_server.stop(None)
        await leader_server.stop(None)


def _set(value: bytes) -> Any:
    return lambda stub: stub.Set(cache_pb2.SetRequest(key=b"k", value=value), timeout=10)


def _get(key: bytes) -> Any:
    return lambda stub: stub.Get(cache_pb2.GetRequest(key=key), timeout=10)


def test_concurrent_forwarded_calls_go_to_the_leader_as_one_batch() -> None:
    async def main() -> None:
        leader = FakeLeader()
        follower, results = await _burst(leader, [_set(b"ab"), _get(b"g1"), _set(b"abcd")])
        assert [type(r).__name__ for r in results] == ["SetResponse", "GetResponse", "SetResponse"]
        assert (results[0].version, results[1].value, results[2].version) == (2, b"g1", 4)
        assert [m for m, _ in leader.received] == ["Set", "Batch"]
        assert len(leader.received[1][1].ops) == 3
        assert all(leader.forwarded_marks)  # never forwarded twice
        stats = follower.forwarder.stats
        assert (stats.unary, stats.batches, stats.batched_ops) == (1, 1, 3)

    asyncio.run(main())


def test_each_forwarded_call_gets_the_leaders_own_error_with_its_metadata() -> None:
    async def answer(request: Any, context: Any) -> Any:
        out = cache_pb2.BatchResponse()
        for op in request.ops:  # the calls reach the follower in any order
            if op.HasField("set"):
                out.results.add(set=cache_pb2.SetResponse(version=9))
                continue
            out.results.add(
                error=cache_pb2.OpError(
                    code=grpc.StatusCode.UNAVAILABLE.value[0],
                    message="this node is not the leader; the leader is at 1.2.3.4:5",
                    origin="NotLeader",
                    leader="1.2.3.4:5",
                )
            )
        return out

    async def main() -> None:
        _, results = await _burst(FakeLeader(answer), [_get(b"a"), _set(b"b")])
        failed, ok = results
        assert isinstance(failed, grpc.aio.AioRpcError)
        assert failed.code() == grpc.StatusCode.UNAVAILABLE
        trailing = dict(failed.trailing_metadata() or ())
        assert trailing[ORIGIN_METADATA_KEY] == "NotLeader"
        assert trailing[LEADER_METADATA_KEY] == "1.2.3.4:5"
        assert ok.version == 9

    asyncio.run(main())


def test_a_batch_lost_in_transit_is_outcome_unknown_for_writes_only() -> None:
    async def broken(request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "Socket closed")

    async def main() -> None:
        _, results = await _burst(FakeLeader(broken), [_set(b"w"), _get(b"r")])
        write, read = results
        assert write.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "outcome unknown" in write.details() and "same request id" in write.details()
        assert read.code() == grpc.StatusCode.UNAVAILABLE  # a read is safe to retry
        assert read.details() == "Socket closed"

    asyncio.run(main())


def test_an_older_leader_without_batch_gets_the_calls_unary() -> None:
    async def unknown(request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")

    async def main() -> None:
        leader = FakeLeader(unknown)
        _, results = await _burst(leader, [_get(b"x"), _get(b"y")])
        assert [r.value for r in results] == [b"x", b"y"]
        assert [m for m, _ in leader.received] == ["Set", "Batch", "Get", "Get"]

    asyncio.run(main())


def test_switched_off_every_forwarded_call_is_unary() -> None:
    async def main() -> None:
        leader = FakeLeader()
        leader_server, leader_addr = await _serve(leader)
        follower = Follower(leader_addr)
        follower.forwarder = LeaderForwarder([], auto_pipeline=False)
        follower_server, follower_addr = await _serve(follower)
        leader.release.set()
        try:
            async with grpc.aio.insecure_channel(follower_addr) as channel:
                stub = cache_pb2_grpc.CacheStub(channel)
                await asyncio.gather(*(_set(b"v")(stub) for _ in range(10)))
        finally:
            await follower_server.stop(None)
            await leader_server.stop(None)
        assert [m for m, _ in leader.received] == ["Set"] * 10
        assert follower.forwarder.stats.unary == 10

    asyncio.run(main())


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL])
def test_a_relayed_batch_that_breaks_keeps_each_ops_forwarded_outcome(
    code: grpc.StatusCode,
) -> None:
    async def broken(request: Any, context: Any) -> Any:
        await context.abort(code, "connection reset")

    async def main() -> list[cache_pb2.BatchResult]:
        leader_server, leader_addr = await _serve(FakeLeader(broken))
        forwarder = LeaderForwarder([])
        try:
            request = cache_pb2.BatchRequest(
                ops=[
                    cache_pb2.BatchOp(set=cache_pb2.SetRequest(key=b"k", value=b"v")),
                    cache_pb2.BatchOp(get=cache_pb2.GetRequest(key=b"k")),
                ]
            )
            return await forwarder.forward_batch(leader_addr, request, 5.0)
        finally:
            await forwarder.close()
            await leader_server.stop(None)

    write, read = asyncio.run(main())
    assert write.error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert "outcome unknown" in write.error.message and write.error.origin == ""
    assert read.error.code == code.value[0] and read.error.message == "connection reset"


def test_a_relayed_batch_to_an_unreachable_leader_is_safe_to_retry() -> None:
    async def main() -> list[cache_pb2.BatchResult]:
        forwarder = LeaderForwarder([])
        try:
            request = cache_pb2.BatchRequest(
                ops=[cache_pb2.BatchOp(set=cache_pb2.SetRequest(key=b"k", value=b"v"))]
            )
            return await forwarder.forward_batch(f"127.0.0.1:{free_port()}", request, 5.0)
        finally:
            await forwarder.close()

    (write,) = asyncio.run(main())
    assert write.error.code == grpc.StatusCode.UNAVAILABLE.value[0]  # never sent: not unknown
