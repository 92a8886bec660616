"""Cache.Batch on a real 3-node cluster, and the SDK's auto-pipelining against it."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import grpc
import pytest
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.client import AsyncClient, Client
from raftcache.client._transport import GrpcTransport
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2
from raftcache.v1.pipeline import BATCH_MAX_BYTES, BATCH_MAX_OPS

from tests.integration.conftest import stubs_for

pytestmark = pytest.mark.integration

CODE = {code.value[0]: code for code in grpc.StatusCode}


def _ops(*ops: cache_pb2.BatchOp) -> cache_pb2.BatchRequest:
    return cache_pb2.BatchRequest(ops=list(ops))


def _rid(seq: int, client: str = "batch-test") -> cache_pb2.RequestId:
    return cache_pb2.RequestId(client_id=client, seq=seq)


def _status(cluster: LocalCluster, i: int) -> cluster_pb2.StatusResponse:
    status = cluster.status(i, timeout=5.0)
    assert status is not None
    return status


def _error(result: cache_pb2.BatchResult) -> tuple[grpc.StatusCode, str, str]:
    assert result.WhichOneof("result") == "error", result
    return CODE[result.error.code], result.error.origin, result.error.message


def test_mixed_ops_each_get_their_own_answer_or_error(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    s = stubs_for(cluster, leader).cache
    s.Exec(
        cache_pb2.ExecRequest(
            op=cache_pb2.DataOp(
                hset=cache_pb2.HSet(
                    key=b"b:hash", fields=[cache_pb2.FieldValue(field=b"f", value=b"1")]
                )
            )
        )
    )
    before = _status(cluster, leader).batch_rpcs
    response = s.Batch(
        _ops(
            cache_pb2.BatchOp(set=cache_pb2.SetRequest(key=b"b:k1", value=b"one")),
            cache_pb2.BatchOp(set=cache_pb2.SetRequest(key=b"", value=b"empty key")),
            cache_pb2.BatchOp(incr=cache_pb2.IncrRequest(key=b"b:ctr", delta=5)),
            cache_pb2.BatchOp(
                set=cache_pb2.SetRequest(key=b"b:k1", value=b"x", condition=cache_pb2.IF_ABSENT)
            ),
            cache_pb2.BatchOp(get=cache_pb2.GetRequest(key=b"b:hash")),
            cache_pb2.BatchOp(
                exec=cache_pb2.ExecRequest(
                    op=cache_pb2.DataOp(hget=cache_pb2.HGet(key=b"b:hash", field=b"f"))
                )
            ),
            cache_pb2.BatchOp(delete=cache_pb2.DeleteRequest(key=b"b:missing")),
            cache_pb2.BatchOp(),
            cache_pb2.BatchOp(
                exec=cache_pb2.ExecRequest(
                    op=cache_pb2.DataOp(sadd=cache_pb2.SAdd(key=b"b:set", members=[b"a", b"b"]))
                )
            ),
            cache_pb2.BatchOp(get=cache_pb2.GetRequest(key=b"b:k2", consistency=7)),
            cache_pb2.BatchOp(incr=cache_pb2.IncrRequest(key=b"b:k1", delta=1)),
        )
    )
    r = response.results
    assert len(r) == 11
    assert r[0].set.version > 0
    code, origin, message = _error(r[1])
    assert (code, origin) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidInput")
    assert message.startswith("ops[1] (set): key is empty")
    assert r[2].incr.value == 5
    assert _error(r[3])[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "ConditionFailed")
    code, origin, message = _error(r[4])
    assert (code, origin) == (grpc.StatusCode.FAILED_PRECONDITION, "WrongType")
    assert "holds a hash" in message
    assert r[5].exec.value.bytes == b"1"
    assert r[6].delete.deleted is False
    code, _, message = _error(r[7])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "op is empty" in message
    assert r[8].exec.value.int == 2
    code, _, message = _error(r[9])
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "unknown consistency 7" in message
    code, _, message = _error(r[10])
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "integer" in message
    # Nothing bad went in: the valid writes applied, the invalid ones did not.
    assert s.Get(cache_pb2.GetRequest(key=b"b:k1")).value == b"one"
    assert _status(cluster, leader).batch_rpcs == before + 1


def test_a_batchs_writes_share_one_log_entry(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    s = stubs_for(cluster, leader).cache
    before = _status(cluster, leader).applied_index
    ops = [
        cache_pb2.BatchOp(set=cache_pb2.SetRequest(key=f"b:e{i}".encode(), value=b"v"))
        for i in range(200)
    ]
    ops.append(cache_pb2.BatchOp(get=cache_pb2.GetRequest(key=b"b:e0")))  # one barrier
    response = s.Batch(_ops(*ops))
    versions = [r.set.version for r in response.results[:200]]
    assert response.results[200].get.value == b"v"
    # One entry: every version of it is consecutive (a revision per op), and the applied
    # index moved by a handful (ticks), not by 200.
    assert versions == list(range(versions[0], versions[0] + 200))
    assert _status(cluster, leader).applied_index - before < 20


def test_a_batchs_linearizable_reads_see_its_own_writes(cluster: LocalCluster) -> None:
    # The leader's read lease lets other reads skip the log; a batch's reads still come
    # after the writes queued ahead of them in the same batch.
    for node in (cluster.wait_for_leader(), (cluster.wait_for_leader() + 1) % 3):
        s = stubs_for(cluster, node).cache
        for round_ in range(20):
            value = f"v{node}-{round_}".encode()
            response = s.Batch(
                _ops(
                    cache_pb2.BatchOp(set=cache_pb2.SetRequest(key=b"b:ryw", value=value)),
                    cache_pb2.BatchOp(get=cache_pb2.GetRequest(key=b"b:ryw")),
                )
            )
            assert response.results[1].get.value == value, (node, round_)


def test_limits_refuse_the_whole_batch_with_what_to_do(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    s = stubs_for(cluster, leader).cache
    too_many = [cache_pb2.BatchOp(get=cache_pb2.GetRequest(key=b"b:x"))] * (BATCH_MAX_OPS + 1)
    with pytest.raises(grpc.RpcError) as exc:
        s.Batch(_ops(*too_many))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{BATCH_MAX_OPS + 1} ops, over the limit of {BATCH_MAX_OPS}" in exc.value.details()
    assert "split it" in exc.value.details()
    big = b"v" * (1 << 20)
    too_big = [
        cache_pb2.BatchOp(set=cache_pb2.SetRequest(key=f"b:big{i}".encode(), value=big))
        for i in range(9)
    ]
    with pytest.raises(grpc.RpcError) as exc:
        s.Batch(_ops(*too_big))
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"over the limit of {BATCH_MAX_BYTES} bytes" in exc.value.details()
    assert "unary" in exc.value.details()
    assert not s.Get(cache_pb2.GetRequest(key=b"b:big0")).found  # nothing applied
    assert len(s.Batch(_ops()).results) == 0  # an empty batch is a no-op


def test_bad_ops_fail_alone_and_change_nothing(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    s = stubs_for(cluster, leader).cache
    response = s.Batch(
        _ops(
            cache_pb2.BatchOp(exec=cache_pb2.ExecRequest(op=cache_pb2.DataOp())),
            cache_pb2.BatchOp(incr=cache_pb2.IncrRequest(key=b"b:bad", request_id=_rid(0))),
            cache_pb2.BatchOp(set=cache_pb2.SetRequest(key=b"b:bad", value=b"v", ttl_ms=-1)),
            cache_pb2.BatchOp(
                exec=cache_pb2.ExecRequest(
                    op=cache_pb2.DataOp(expire=cache_pb2.Expire(key=b"b:bad", ttl_ms=0))
                )
            ),
            cache_pb2.BatchOp(delete=cache_pb2.DeleteRequest(key=b"\x00rcdb1:x")),
            cache_pb2.BatchOp(
                exec=cache_pb2.ExecRequest(
                    op=cache_pb2.DataOp(call=cache_pb2.RedisCall(argv=[b"blpop", b"b:q", b"0"]))
                )
            ),
            cache_pb2.BatchOp(get=cache_pb2.GetRequest(key=b"b:bad")),
        )
    )
    messages = []
    for result in response.results[:6]:
        code, origin, message = _error(result)
        assert (code, origin) == (grpc.StatusCode.INVALID_ARGUMENT, "InvalidInput")
        messages.append(message)
    assert "op is empty" in messages[0]
    assert "seq must be > 0" in messages[1]
    assert "cannot be negative" in messages[2]
    assert "must be > 0" in messages[3]
    assert "reserved" in messages[4]
    assert "blpop blocks, and a Batch never waits" in messages[5]
    assert not response.results[6].get.found  # nothing of the bad ops was applied


def test_reads_past_the_response_limit_fail_alone(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    channel = grpc.insecure_channel(
        cluster.nodes[leader].client_addr,
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    s = cache_pb2_grpc.CacheStub(channel)
    s.Set(cache_pb2.SetRequest(key=b"b:huge", value=b"x" * (1 << 20)), timeout=30)
    # 20 answers of 1 MiB: past the 16 MiB response limit.
    gets = [cache_pb2.BatchOp(get=cache_pb2.GetRequest(key=b"b:huge")) for _ in range(20)]
    response = s.Batch(
        _ops(*gets, cache_pb2.BatchOp(incr=cache_pb2.IncrRequest(key=b"b:n"))), timeout=30
    )
    kinds = [r.WhichOneof("result") for r in response.results]
    served = kinds.count("get")
    assert 0 < served < 20 and kinds[:served] == ["get"] * served
    for result in response.results[served:20]:
        code, origin, message = _error(result)
        assert (code, origin) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TooLarge")
        assert "response limit" in message and "send it alone" in message
    assert kinds[20] == "incr"  # a write is never dropped for the budget
    channel.close()


def test_a_retried_batch_applies_each_request_id_once(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = (leader + 1) % 3
    request = _ops(
        cache_pb2.BatchOp(incr=cache_pb2.IncrRequest(key=b"b:once", delta=10, request_id=_rid(1))),
        cache_pb2.BatchOp(
            exec=cache_pb2.ExecRequest(
                op=cache_pb2.DataOp(push=cache_pb2.Push(key=b"b:list", values=[b"a"])),
                request_id=_rid(2),
            )
        ),
        cache_pb2.BatchOp(incr=cache_pb2.IncrRequest(key=b"b:twice", delta=1)),  # no id
    )
    first = stubs_for(cluster, leader).cache.Batch(request)
    again = stubs_for(cluster, follower).cache.Batch(request)  # the retry, through a follower
    assert first.results[0].incr.value == again.results[0].incr.value == 10
    assert first.results[1].exec.value.int == again.results[1].exec.value.int == 1
    assert (first.results[2].incr.value, again.results[2].incr.value) == (1, 2)
    s = stubs_for(cluster, leader).cache
    assert s.Incr(cache_pb2.IncrRequest(key=b"b:once", delta=0)).value == 10
    llen = cache_pb2.ExecRequest(op=cache_pb2.DataOp(llen=cache_pb2.LLen(key=b"b:list")))
    assert s.Exec(llen).value.int == 1


def test_each_read_keeps_its_consistency(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = (leader + 1) % 3
    on_leader = stubs_for(cluster, leader).cache
    version = on_leader.Set(cache_pb2.SetRequest(key=b"b:c", value=b"new")).version
    # A stale read sees what the follower has applied, which may trail the leader's
    # acknowledgement by a few ms (consensus/commit_notice.py): let it catch up.
    cluster.wait_converged()
    f = stubs_for(cluster, follower).cache
    forwarded_before = _status(cluster, follower).forwarded_batches
    response = f.Batch(
        _ops(
            cache_pb2.BatchOp(get=cache_pb2.GetRequest(key=b"b:c")),  # linearizable: via the leader
            cache_pb2.BatchOp(
                get=cache_pb2.GetRequest(
                    key=b"b:c", consistency=cache_pb2.STALE, max_staleness_ms=60_000
                )
            ),
            cache_pb2.BatchOp(set=cache_pb2.SetRequest(key=b"b:c2", value=b"w")),  # via the leader
        )
    )
    assert response.results[0].get.value == b"new" and response.results[0].get.version == version
    assert response.results[1].get.found  # served by the follower itself
    assert response.results[2].set.version > version
    status = _status(cluster, follower)
    # The leader-only ops went as one Batch (the stale read was not forwarded).
    assert status.forwarded_batches == forwarded_before + 1


def test_a_stale_read_over_its_bound_fails_alone(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = (leader + 1) % 3
    stubs_for(cluster, leader).cache.Set(cache_pb2.SetRequest(key=b"b:stale", value=b"s"))
    cluster.wait_converged()
    others = [i for i in range(3) if i != follower]
    for i in others:
        cluster.pause(i)
    try:
        f = stubs_for(cluster, follower).cache
        time.sleep(0.6)  # the follower hears from nobody: it goes stale
        response = f.Batch(
            _ops(
                cache_pb2.BatchOp(
                    get=cache_pb2.GetRequest(
                        key=b"b:stale", consistency=cache_pb2.STALE, max_staleness_ms=200
                    )
                ),
                cache_pb2.BatchOp(
                    get=cache_pb2.GetRequest(key=b"b:c", consistency=cache_pb2.STALE)
                ),
            ),
            timeout=10,
        )
        code, origin, _ = _error(response.results[0])
        assert (code, origin) == (grpc.StatusCode.UNAVAILABLE, "TooStale")
        assert response.results[1].get.found  # no bound: served
    finally:
        for i in others:
            cluster.resume(i)
        cluster.wait_converged()


class CountingTransport(GrpcTransport):
    """The real gRPC transport, counting the RPCs it sends by method."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: dict[str, int] = {}

    async def call(self, address: str, method: str, request: Any, timeout: float) -> Any:
        self.sent[method] = self.sent.get(method, 0) + 1
        return await super().call(address, method, request, timeout)


def test_concurrent_sdk_calls_go_out_as_batches_and_a_lone_call_unary(
    cluster: LocalCluster,
) -> None:
    cluster.wait_for_leader()
    endpoints = [n.client_addr for n in cluster.nodes]

    async def main() -> tuple[dict[str, int], dict[str, int], list[Any]]:
        transport = CountingTransport()
        async with AsyncClient(endpoints, transport=transport) as client:
            await client.set("b:lone", "1")
            lone = dict(transport.sent)
            results = await asyncio.gather(
                *(client.incr("b:auto", 1) for _ in range(100)),
                *(client.set(f"b:auto{i}", str(i)) for i in range(50)),
                *(client.get(f"b:auto{i}") for i in range(50)),
                *(client.hset("b:autoh", {f"f{i}": "x"}) for i in range(20)),
            )
            return lone, dict(transport.sent), list(results)

    before = sum(_status(cluster, i).batch_ops for i in range(3))
    lone, sent, results = asyncio.run(main())
    # Alone, it went unary (more than one Set only if a leader change redirected it).
    assert lone.get("Cache/Batch", 0) == 0 and lone["Cache/Set"] >= 1
    assert sorted(results[:100]) == list(range(1, 101))  # every incr applied once
    assert sent["Cache/Batch"] >= 1
    unary = sum(
        n for m, n in sent.items() if m in ("Cache/Set", "Cache/Get", "Cache/Incr", "Cache/Exec")
    )
    assert unary + sent["Cache/Batch"] < 220 / 4  # far fewer RPCs than calls
    assert sum(_status(cluster, i).batch_ops for i in range(3)) - before >= 150


def test_auto_pipeline_off_sends_every_call_unary(cluster: LocalCluster) -> None:
    cluster.wait_for_leader()
    endpoints = [n.client_addr for n in cluster.nodes]

    async def main() -> dict[str, int]:
        transport = CountingTransport()
        async with AsyncClient(endpoints, transport=transport, auto_pipeline=False) as client:
            assert client.pipeline is None
            await asyncio.gather(*(client.incr("b:off", 1) for _ in range(40)))
        return transport.sent

    sent = asyncio.run(main())
    assert sent.get("Cache/Batch", 0) == 0 and sent["Cache/Incr"] == 40


def test_threads_sharing_a_blocking_client_are_pipelined(cluster: LocalCluster) -> None:
    cluster.wait_for_leader()
    endpoints = [n.client_addr for n in cluster.nodes]

    with Client(endpoints) as client:
        assert client.pipeline is not None

        def work() -> None:
            for _ in range(30):
                client.incr("b:threads", 1)

        threads = [threading.Thread(target=work) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert client.get("b:threads") == b"480"
        stats = client.pipeline.stats
        assert stats.batches > 0 and stats.batched_ops > stats.batches


def test_follower_batches_concurrent_forwarded_calls(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = (leader + 1) % 3
    address = cluster.nodes[follower].client_addr

    async def main() -> list[Any]:
        async with grpc.aio.insecure_channel(address) as channel:
            set_ = channel.unary_unary(
                "/raftcache.v1.Cache/Incr",
                request_serializer=cache_pb2.IncrRequest.SerializeToString,
                response_deserializer=cache_pb2.IncrResponse.FromString,
            )
            return list(
                await asyncio.gather(
                    *(
                        set_(cache_pb2.IncrRequest(key=b"b:fwd", delta=1), timeout=10)
                        for _ in range(200)
                    )
                )
            )

    before = _status(cluster, follower)
    results = asyncio.run(main())
    after = _status(cluster, follower)
    assert sorted(r.value for r in results) == list(range(1, 201))
    forwarded_rpcs = (after.forwarded_unary - before.forwarded_unary) + (
        after.forwarded_batches - before.forwarded_batches
    )
    assert after.forwarded_batched_ops - before.forwarded_batched_ops > 100
    assert forwarded_rpcs < 100  # one RPC per burst, not one per call
