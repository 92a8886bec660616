"""Auto-pipelining (raftcache.v1.pipeline) through the SDK, against a gated fake transport:
what goes out as unary and as Batch, and that each call keeps its own outcome, retries and
deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from raftcache.client import (
    AsyncClient,
    ConditionFailedError,
    OutcomeUnknownError,
    RetryPolicy,
    UnavailableError,
)
from raftcache.client._pipeline import PipelinedTransport
from raftcache.client._transport import CallFailed
from raftcache.v1 import cache_pb2, cluster_pb2
from raftcache.v1.pipeline import BATCHABLE, AutoPipeline

A = "10.0.0.1:6380"
CODE_UNAVAILABLE, CODE_FAILED_PRECONDITION = 14, 9


def _status() -> cluster_pb2.StatusResponse:
    return cluster_pb2.StatusResponse(
        leader_client_addr=A, members=[cluster_pb2.Member(client_addr=A, is_leader=True)]
    )


def answer(method: str, request: Any) -> Any:
    """A tiny in-memory node: every op succeeds."""
    if method == "Cache/Set":
        return cache_pb2.SetResponse(version=len(request.key))
    if method == "Cache/Get":
        return cache_pb2.GetResponse(found=True, value=request.key)
    if method == "Cache/Incr":
        return cache_pb2.IncrResponse(value=request.delta)
    if method == "Cache/Delete":
        return cache_pb2.DeleteResponse(deleted=True)
    if method == "Cache/Exec":
        return cache_pb2.ExecResponse(value=cache_pb2.Value(int=7))
    raise AssertionError(method)


def batch_answer(request: cache_pb2.BatchRequest) -> cache_pb2.BatchResponse:
    out = cache_pb2.BatchResponse()
    methods = {field: method for method, field in BATCHABLE.items()}
    for op in request.ops:
        kind = op.WhichOneof("op") or ""
        result = out.results.add()
        getattr(result, kind).CopyFrom(answer(methods[kind], getattr(op, kind)))
    return out


class GatedTransport:
    """Records every RPC; each waits for `gate` (when set) before `handle` answers it."""

    def __init__(self, handle: Callable[[str, Any], Any] | None = None) -> None:
        self.sent: list[tuple[str, Any, float]] = []
        self.gate: asyncio.Event | None = None
        self.handle = handle or self.default

    @staticmethod
    def default(method: str, request: Any) -> Any:
        if method == "Cache/Batch":
            return batch_answer(request)
        return answer(method, request)

    def methods(self) -> list[str]:
        return [m for m, _, _ in self.sent if m != "Cluster/Status"]

    async def call(self, address: str, method: str, request: Any, timeout: float) -> Any:
        if method == "Cluster/Status":
            return _status()
        copy = type(request)()
        copy.CopyFrom(request)
        self.sent.append((method, copy, timeout))
        if self.gate is not None:
            await self.gate.wait()
        result = self.handle(method, copy)
        if isinstance(result, BaseException):
            raise result
        return result

    def open_stream(self, address: str, method: str, request: Any) -> Any:
        raise AssertionError("no streams here")

    async def close(self) -> None:
        pass


def _client(transport: GatedTransport, **kwargs: Any) -> AsyncClient:
    policy = RetryPolicy(base_s=0.001, cap_s=0.002)
    return AsyncClient([A], transport=transport, retry=policy, client_id="cid", **kwargs)


async def _in_flight(transport: GatedTransport, client: AsyncClient, *calls: Any) -> list[Any]:
    """Start a first call and hold it in flight while `calls` are made; then let all go."""
    transport.gate = asyncio.Event()
    before = len(transport.methods())
    first = asyncio.ensure_future(client.set("first", "x"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert transport.methods()[before:] == ["Cache/Set"]  # the lone call went at once, unary
    rest = asyncio.gather(*calls, return_exceptions=True)
    for _ in range(5):
        await asyncio.sleep(0)
    transport.gate.set()
    await first
    return list(await rest)


def test_a_lone_call_goes_out_unary_at_once() -> None:
    async def main() -> None:
        transport = GatedTransport()
        async with _client(transport) as client:
            assert await client.set("k", "v") == 1
            assert await client.get("k") == b"k"
            await asyncio.gather(client.incr("c"))
        assert transport.methods() == ["Cache/Set", "Cache/Get", "Cache/Incr"]

    asyncio.run(main())


def test_calls_made_while_one_is_in_flight_go_out_as_one_batch_in_order() -> None:
    async def main() -> None:
        transport = GatedTransport()
        async with _client(transport) as client:
            results = await _in_flight(
                transport,
                client,
                client.set("abc", "1"),
                client.get("key"),
                client.incr("n", 5),
                client.delete("d"),
                client.hlen("h"),
            )
            assert results == [3, b"key", 5, True, 7]
            assert transport.methods() == ["Cache/Set", "Cache/Batch"]
            batch = transport.sent[1][1]
            assert [op.WhichOneof("op") for op in batch.ops] == [
                "set", "get", "incr", "delete", "exec",
            ]  # fmt: skip
            # Writes keep their request ids, reads their consistency.
            assert batch.ops[0].set.request_id.client_id == "cid"
            assert batch.ops[0].set.request_id.seq > 0
            assert batch.ops[1].get.consistency == cache_pb2.LINEARIZABLE
            assert client.pipeline is not None
            assert client.pipeline.stats.batches == 1
            assert client.pipeline.stats.batched_ops == 5

    asyncio.run(main())


def test_each_op_gets_its_own_error_with_the_unary_meaning() -> None:
    def handle(method: str, request: Any) -> Any:
        if method != "Cache/Batch":
            return answer(method, request)
        out = batch_answer(request)
        out.results[0].error.CopyFrom(
            cache_pb2.OpError(
                code=CODE_FAILED_PRECONDITION, message="exists", origin="ConditionFailed"
            )
        )
        return out

    async def main() -> None:
        transport = GatedTransport(handle)
        async with _client(transport) as client:
            results = await _in_flight(
                transport, client, client.set("a", "1", if_absent=True), client.get("b")
            )
        assert isinstance(results[0], ConditionFailedError) and "exists" in str(results[0])
        assert results[1] == b"b"

    asyncio.run(main())


def test_a_not_leader_op_follows_the_hint_alone() -> None:
    other = "10.0.0.2:6380"

    def handle(method: str, request: Any) -> Any:
        if method != "Cache/Batch":
            return answer(method, request)
        out = batch_answer(request)
        out.results[1].error.CopyFrom(
            cache_pb2.OpError(
                code=CODE_UNAVAILABLE, message="not leader", origin="NotLeader", leader=other
            )
        )
        return out

    async def main() -> None:
        transport = GatedTransport(handle)
        transport_calls: list[str] = []
        original = transport.call

        async def spy(address: str, method: str, request: Any, timeout: float) -> Any:
            transport_calls.append(f"{method}@{address}")
            return await original(address, method, request, timeout)

        transport.call = spy  # type: ignore[method-assign]
        async with _client(transport) as client:
            results = await _in_flight(transport, client, client.get("a"), client.incr("b", 2))
        assert results == [b"a", 2]
        assert transport_calls[-1] == f"Cache/Incr@{other}"  # retried alone, at the hint

    asyncio.run(main())


def test_a_batch_lost_in_transport_retries_writes_with_the_same_request_ids() -> None:
    failures = [CallFailed("UNAVAILABLE", "Socket closed")]

    def handle(method: str, request: Any) -> Any:
        if method == "Cache/Batch" and failures:
            return failures.pop()
        return GatedTransport.default(method, request)

    async def main() -> None:
        transport = GatedTransport(handle)
        async with _client(transport) as client:
            results = await _in_flight(
                transport, client, client.incr("n", 1), client.incr("m", 2), client.get("r")
            )
        assert results == [1, 2, b"r"]
        lost = next(r for m, r, _ in transport.sent if m == "Cache/Batch")
        ids = {(op.incr.request_id.client_id, op.incr.request_id.seq) for op in lost.ops[:2]}
        retried = {
            (r.request_id.client_id, r.request_id.seq)
            for m, r, _ in transport.sent[2:]
            if m == "Cache/Incr"
        } | {
            (op.incr.request_id.client_id, op.incr.request_id.seq)
            for m, r, _ in transport.sent[2:]
            if m == "Cache/Batch"
            for op in r.ops
            if op.HasField("incr")
        }
        assert ids == retried  # the same ids went again: applied at most once

    asyncio.run(main())


def test_a_write_without_a_settled_outcome_is_unknown_per_op() -> None:
    def handle(method: str, request: Any) -> Any:
        if method == "Cache/Set" and request.key == b"first":
            return answer(method, request)
        return CallFailed("UNAVAILABLE", "Socket closed")  # every later RPC breaks

    async def main() -> None:
        transport = GatedTransport(handle)
        async with _client(transport, timeout=0.2) as client:
            results = await _in_flight(transport, client, client.incr("n", 1), client.get("r"))
        assert isinstance(results[0], OutcomeUnknownError)
        assert results[0].request_id is not None and results[0].request_id[0] == "cid"
        assert isinstance(results[1], UnavailableError)  # a read never has an unknown outcome

    asyncio.run(main())


def test_each_call_keeps_its_own_deadline_inside_a_batch() -> None:
    async def main() -> None:
        transport = GatedTransport()
        async with _client(transport) as client:
            transport.gate = asyncio.Event()
            first = asyncio.ensure_future(client.set("first", "x"))
            await asyncio.sleep(0)
            short = asyncio.ensure_future(client.get("short", timeout=0.05))
            long = asyncio.ensure_future(client.get("long", timeout=5))
            with pytest.raises(UnavailableError, match=r"within 0\.05 s"):
                await short  # its batch is still held: its own deadline ended it
            assert not long.done()
            transport.gate.set()
            assert await long == b"long"
            await first
        batch_timeouts = [t for m, _, t in transport.sent if m == "Cache/Batch"]
        assert batch_timeouts and batch_timeouts[0] > 1  # the batch got the longest deadline

    asyncio.run(main())


def test_a_node_without_batch_gets_unary_calls_again() -> None:
    def handle(method: str, request: Any) -> Any:
        if method == "Cache/Batch":
            return CallFailed("UNIMPLEMENTED", "Method not found!")
        return answer(method, request)

    async def main() -> None:
        transport = GatedTransport(handle)
        async with _client(transport) as client:
            results = await _in_flight(transport, client, client.get("a"), client.set("bb", "1"))
            assert results == [b"a", 2]
            await _in_flight(transport, client, client.get("c"), client.get("d"))
        methods = transport.methods()
        assert methods.count("Cache/Batch") == 1  # tried once, then never again
        assert methods[-3:] == ["Cache/Set", "Cache/Get", "Cache/Get"]

    asyncio.run(main())


def test_calls_queued_when_batch_turns_out_unknown_go_unary_too() -> None:
    def handle(method: str, request: Any) -> Any:
        if method == "Cache/Batch":
            return CallFailed("UNIMPLEMENTED", "Method not found!")
        return answer(method, request)

    async def main() -> None:
        transport = GatedTransport(handle)
        pipelined = PipelinedTransport(transport)  # type: ignore[arg-type]
        transport.gate = asyncio.Event()
        held = asyncio.ensure_future(pipelined.call(A, "Cache/Get", cache_pb2.GetRequest(), 1))
        await asyncio.sleep(0)
        first = asyncio.gather(
            *(
                pipelined.call(A, "Cache/Get", cache_pb2.GetRequest(key=b"a%d" % i), 1)
                for i in range(2)
            )
        )
        for _ in range(3):
            await asyncio.sleep(0)  # the Batch of those two is in flight (held)
        more = asyncio.gather(
            *(
                pipelined.call(A, "Cache/Get", cache_pb2.GetRequest(key=b"b%d" % i), 1)
                for i in range(3)
            )
        )
        await asyncio.sleep(0)
        transport.gate.set()
        await held
        assert [r.value for r in await first] == [b"a0", b"a1"]
        assert [r.value for r in await more] == [b"b0", b"b1", b"b2"]
        assert [m for m, _, _ in transport.sent].count("Cache/Batch") == 1

    asyncio.run(main())


def test_batches_respect_the_op_and_byte_limits() -> None:
    async def main() -> None:
        transport = GatedTransport()
        inner = PipelinedTransport(transport)  # type: ignore[arg-type]
        inner._pipeline = AutoPipeline(inner._pipeline._sender, max_ops=3, max_bytes=200)
        transport.gate = asyncio.Event()
        first = asyncio.ensure_future(inner.call(A, "Cache/Get", cache_pb2.GetRequest(key=b"0"), 1))
        await asyncio.sleep(0)
        small = [cache_pb2.GetRequest(key=f"k{i}".encode()) for i in range(7)]
        big = cache_pb2.SetRequest(key=b"big", value=b"v" * 300)
        calls = [inner.call(A, "Cache/Get", r, 1) for r in small[:4]]
        calls.append(inner.call(A, "Cache/Set", big, 1))
        calls += [inner.call(A, "Cache/Get", r, 1) for r in small[4:]]
        pending = asyncio.gather(*calls)
        for _ in range(3):
            await asyncio.sleep(0)
        transport.gate.set()
        await first
        results = await pending
        assert [r.value for r in results if hasattr(r, "found")] == [r.key for r in small]
        sizes = [len(r.ops) if m == "Cache/Batch" else 1 for m, r, _ in transport.sent[1:]]
        methods = [m for m, _, _ in transport.sent[1:]]
        assert max(sizes) <= 3
        assert "Cache/Set" in methods  # too large for any batch: sent alone, unary
        assert sum(sizes) == 8

    asyncio.run(main())


def test_a_read_over_the_batch_answer_limit_is_sent_again_alone() -> None:
    def handle(method: str, request: Any) -> Any:
        if method != "Cache/Batch":
            return answer(method, request)
        out = batch_answer(request)
        out.results[1].error.CopyFrom(
            cache_pb2.OpError(code=8, message="reached the response limit", origin="TooLarge")
        )
        return out

    async def main() -> None:
        transport = GatedTransport(handle)
        async with _client(transport) as client:
            results = await _in_flight(transport, client, client.get("a"), client.get("b"))
        assert results == [b"a", b"b"]
        assert transport.methods()[-1] == "Cache/Get"

    asyncio.run(main())


def test_a_cancelled_queued_call_is_never_sent() -> None:
    async def main() -> None:
        transport = GatedTransport()
        async with _client(transport) as client:
            transport.gate = asyncio.Event()
            first = asyncio.ensure_future(client.set("first", "x"))
            await asyncio.sleep(0)
            doomed = asyncio.ensure_future(client.incr("never", 1))
            kept = asyncio.ensure_future(client.incr("kept", 1))
            await asyncio.sleep(0)
            doomed.cancel()
            transport.gate.set()
            await first
            assert await kept == 1
        sent_keys = [r.key for m, r, _ in transport.sent if m == "Cache/Incr"] + [
            op.incr.key for m, r, _ in transport.sent if m == "Cache/Batch" for op in r.ops
        ]
        assert b"never" not in sent_keys and b"kept" in sent_keys

    asyncio.run(main())


def test_a_batch_answer_of_the_wrong_length_fails_every_op() -> None:
    def handle(method: str, request: Any) -> Any:
        if method == "Cache/Batch":
            return cache_pb2.BatchResponse()
        return answer(method, request)

    async def main() -> None:
        transport = GatedTransport(handle)
        pipelined = PipelinedTransport(transport)  # type: ignore[arg-type]
        transport.gate = asyncio.Event()
        first = asyncio.ensure_future(pipelined.call(A, "Cache/Get", cache_pb2.GetRequest(), 1))
        await asyncio.sleep(0)
        calls = asyncio.gather(
            pipelined.call(A, "Cache/Incr", cache_pb2.IncrRequest(key=b"n"), 1),
            pipelined.call(A, "Cache/Get", cache_pb2.GetRequest(key=b"g"), 1),
            return_exceptions=True,
        )
        await asyncio.sleep(0)
        transport.gate.set()
        await first
        for failure in await calls:
            # No node's answer (no origin): the router treats a write as maybe applied.
            assert isinstance(failure, CallFailed)
            assert (failure.code, failure.origin) == ("INTERNAL", None)
            assert "answered 0 results for a batch of 2" in failure.details

    asyncio.run(main())


def test_switched_off_every_call_is_unary() -> None:
    async def main() -> None:
        transport = GatedTransport()
        async with _client(transport, auto_pipeline=False) as client:
            assert client.pipeline is None
            transport.gate = asyncio.Event()
            calls = asyncio.gather(*(client.incr(f"k{i}") for i in range(5)))
            await asyncio.sleep(0)
            transport.gate.set()
            await calls
        assert transport.methods() == ["Cache/Incr"] * 5

    asyncio.run(main())


def test_max_inflight_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_inflight must be >= 1"):
        AutoPipeline(None, max_inflight=0)  # type: ignore[arg-type]


async def _second_round(callers: int) -> list[tuple[str, list[bytes]]]:
    """`callers` callers each make two gets in a row. The first round goes out as one batch
    (behind a lone call held in flight); the second round is made by the callers that
    batch's answer woke. Returns the RPCs of the second round: (method, keys)."""
    transport = GatedTransport()
    async with _client(transport) as client:
        transport.gate = asyncio.Event()
        first = asyncio.ensure_future(client.set("first", "x"))
        await asyncio.sleep(0)

        async def caller(i: int) -> tuple[bytes | None, bytes | None]:
            return await client.get(f"a{i}"), await client.get(f"b{i}")

        rounds = asyncio.gather(*(caller(i) for i in range(callers)))
        for _ in range(5):
            await asyncio.sleep(0)
        assert transport.methods() == ["Cache/Set", "Cache/Batch"]  # round one, all of it
        before = len(transport.sent)
        transport.gate.set()
        await first
        assert await rounds == [(f"a{i}".encode(), f"b{i}".encode()) for i in range(callers)]
    out = []
    for method, request, _ in transport.sent[before:]:
        if method == "Cache/Batch":
            out.append((method, [op.get.key for op in request.ops]))
        elif method != "Cluster/Status":
            out.append((method, [request.key]))
    return out


def test_the_callers_one_answer_woke_travel_together_not_one_of_them_alone() -> None:
    """The batch is counted out only after the callers its answer woke have run: the first
    of them must not find the node idle and go out unary ahead of the rest."""
    second = asyncio.run(_second_round(5))
    assert second == [("Cache/Batch", [f"b{i}".encode() for i in range(5)])]


@pytest.mark.parametrize(
    ("callers", "sizes"),
    [(5, [5]), (20, [20]), (33, [17, 16]), (40, [20, 20]), (64, [32, 32])],
)
def test_a_queue_is_shared_over_the_free_slots_when_each_share_is_large(
    callers: int, sizes: list[int]
) -> None:
    """Both in-flight slots free and a queue of 2 x SPLIT_MIN_OPS or more: two batches, in
    order, so the node serves one while this process handles the other's answer. Smaller
    queues go as one batch (a batch RPC's fixed cost)."""
    second = asyncio.run(_second_round(callers))
    assert [method for method, _ in second] == ["Cache/Batch"] * len(sizes)
    assert [len(keys) for _, keys in second] == sizes
    assert [k for _, keys in second for k in keys] == [f"b{i}".encode() for i in range(callers)]


def test_no_more_than_max_inflight_rpcs_go_out_however_long_the_queue() -> None:
    """A queue longer than one batch carries waits for a free slot: it does not go out as
    many batches at once (the RPCs count in when their tasks start, after the flush)."""

    async def main() -> None:
        transport = GatedTransport()
        inner = PipelinedTransport(transport)  # type: ignore[arg-type]
        inner._pipeline = AutoPipeline(inner._pipeline._sender, max_ops=4)
        transport.gate = asyncio.Event()
        first = asyncio.ensure_future(inner.call(A, "Cache/Get", cache_pb2.GetRequest(key=b"0"), 1))
        await asyncio.sleep(0)
        keys = [f"k{i}".encode() for i in range(20)]
        pending = asyncio.gather(
            *(inner.call(A, "Cache/Get", cache_pb2.GetRequest(key=k), 1) for k in keys)
        )
        for _ in range(5):
            await asyncio.sleep(0)
        assert transport.methods() == ["Cache/Get", "Cache/Batch"]  # two slots, both taken
        transport.gate.set()
        await first
        assert [r.value for r in await pending] == keys
        assert [len(r.ops) for m, r, _ in transport.sent[1:]] == [4] * 5

    asyncio.run(main())
