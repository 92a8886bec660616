"""Issue 5 on a real 3-node cluster: typed values, TTLs across failover, replicated eviction."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.v1 import cache_pb2, cluster_pb2

from tests.integration.conftest import Stubs, start_cluster, stubs_for

pytestmark = pytest.mark.integration


def d(name: str, **fields: Any) -> cache_pb2.DataOp:
    return cache_pb2.DataOp(**{name: fields})


def exec_(stubs: Stubs, op: cache_pb2.DataOp, **kw: Any) -> cache_pb2.Value:
    response = stubs.cache.Exec(cache_pb2.ExecRequest(op=op, **kw), timeout=10)
    return response.value


def stale(stubs: Stubs, op: cache_pb2.DataOp) -> cache_pb2.Value:
    return exec_(stubs, op, consistency=cache_pb2.STALE)


def _holds(predicate: Any) -> bool:
    try:
        return bool(predicate())
    except grpc.RpcError:  # a restarted node that is not listening yet
        return False


def wait_for(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not _holds(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_leaderboard_under_concurrent_increments_from_every_node(
    cluster: LocalCluster,
) -> None:
    nodes = [stubs_for(cluster, i) for i in range(3)]
    players = [b"p%d" % i for i in range(10)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for round_ in range(20):
                player = players[(n + round_) % len(players)]
                exec_(nodes[n % 3], d("zincrby", key=b"lb", member=player, delta=n + 1))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    expected: dict[bytes, float] = dict.fromkeys(players, 0.0)
    for n in range(6):
        for round_ in range(20):
            expected[players[(n + round_) % len(players)]] += n + 1
    # Reverse order is (score, member) descending, as Redis's ZREVRANGE: ties by member desc.
    ranking = sorted(expected.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)
    top = exec_(nodes[0], d("zrange", key=b"lb", start=0, stop=-1, reverse=True))
    assert [(m.member, m.score) for m in top.scored.items] == ranking
    best = ranking[0][0]
    assert exec_(nodes[1], d("zrank", key=b"lb", member=best, reverse=True)).int == 0
    for node in nodes:
        node.close()


def test_a_wrong_type_op_is_failed_precondition_naming_both_types(cluster: LocalCluster) -> None:
    stubs = stubs_for(cluster, 1)
    exec_(stubs, d("sadd", key=b"wt", members=[b"m"]))
    with pytest.raises(grpc.RpcError) as info:
        exec_(stubs, d("hset", key=b"wt", fields=[{"field": b"f", "value": b"v"}]))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "holds a set, but hset works on a hash" in (info.value.details() or "")
    origin = dict(info.value.trailing_metadata() or ()).get("x-raftcache-error")
    assert origin == "WrongType"  # clients in any language can tell it from other conditions
    with pytest.raises(grpc.RpcError) as get_info:
        stubs.cache.Get(cache_pb2.GetRequest(key=b"wt"), timeout=10)
    assert get_info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stubs.close()


def test_bad_typed_input_is_refused_on_a_follower_with_nothing_changed(
    cluster: LocalCluster,
) -> None:
    leader = cluster.wait_for_leader()
    stubs = stubs_for(cluster, (leader + 1) % 3)
    for op, message in [
        (d("zadd", key=b"bad", members=[{"member": b"m", "score": float("nan")}]), "NaN"),
        (d("hset", key=b"bad"), "fields is empty"),
        (d("expire", key=b"bad", ttl_ms=0), "must be > 0"),
        (cache_pb2.DataOp(), "op is empty"),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            exec_(stubs, op)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (info.value.details() or "")
    assert exec_(stubs, d("type", key=b"bad")).text == "none"
    stubs.close()


def test_txn_and_scan_through_a_follower(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    stubs = stubs_for(cluster, (leader + 1) % 3)
    stubs.cache.Set(cache_pb2.SetRequest(key=b"stock", value=b"1"), timeout=10)
    buy = cache_pb2.TxnRequest(
        compares=[cache_pb2.Compare(key=b"stock", value=b"1")],
        success=[d("set", key=b"stock", value=b"0"), d("sadd", key=b"cart", members=[b"book"])],
        failure=[d("get", key=b"stock")],
    )
    first = stubs.cache.Txn(buy, timeout=10)
    second = stubs.cache.Txn(buy, timeout=10)
    assert first.succeeded and not second.succeeded
    assert second.results[0].bytes == b"0"
    for i in range(300):
        stubs.cache.Set(cache_pb2.SetRequest(key=b"scan:%d" % i, value=b""), timeout=10)
    seen: list[bytes] = []
    cursor = b""
    while True:
        page = stubs.cache.Scan(
            cache_pb2.ScanRequest(cursor=cursor, prefix=b"scan:", count=50), timeout=10
        )
        seen.extend(page.keys)
        cursor = page.next_cursor
        if not cursor:
            break
    assert sorted(seen) == sorted(b"scan:%d" % i for i in range(300))
    stubs.close()


def test_a_session_ttl_survives_failover_and_the_session_vanishes_everywhere(
    fresh_cluster: LocalCluster,
) -> None:
    cluster = fresh_cluster
    leader = cluster.wait_for_leader()
    stubs = stubs_for(cluster, leader)
    exec_(stubs, d("hset", key=b"sess", fields=[{"field": b"user", "value": b"42"}]))
    exec_(stubs, d("expire", key=b"sess", ttl_ms=4000))
    set_at = time.monotonic()
    stubs.close()
    cluster.kill(leader)
    new_leader = cluster.wait_for_leader(exclude=leader)
    survivor = stubs_for(cluster, new_leader)
    ttl = exec_(survivor, d("ttl", key=b"sess")).int
    elapsed_ms = (time.monotonic() - set_at) * 1000
    assert 0 < ttl <= 4000 - elapsed_ms + 200  # counted from the original deadline, not reset
    cluster.restart(leader)
    others = [stubs_for(cluster, i) for i in range(3)]
    wait_for(
        lambda: all(stale(s, d("type", key=b"sess")).text == "none" for s in others),
        "the session to expire on every node",
    )
    # Reads hide it at once; the next replicated clock tick removes it on every replica.
    wait_for(
        lambda: all(
            s.cluster.Status(cluster_pb2.StatusRequest(), timeout=5).expired_keys >= 1
            for s in others
        ),
        "every replica to count the expiry",
    )
    for s in [survivor, *others]:
        s.close()


def test_eviction_keeps_memory_under_the_limit_with_identical_keys_everywhere(
    tmp_path: Path,
) -> None:
    cluster = start_cluster(
        tmp_path, extra_args=["--max-memory", "64kb", "--eviction-policy", "allkeys-lru"]
    )
    try:
        leader = cluster.wait_for_leader()
        stubs = stubs_for(cluster, leader)
        wait_for(
            lambda: (
                stubs.cluster.Status(cluster_pb2.StatusRequest(), timeout=5).max_memory_bytes
                == 64 << 10
            ),
            "the limit to be replicated",
        )
        for i in range(400):
            stubs.cache.Set(cache_pb2.SetRequest(key=b"k%04d" % i, value=b"x" * 500), timeout=10)
            if i % 50 == 0:  # a recently read key survives LRU eviction
                stubs.cache.Get(cache_pb2.GetRequest(key=b"k0000"), timeout=10)
        statuses = cluster.wait_converged()
        assert {s.digest for s in statuses} == {statuses[0].digest}
        for s in statuses:
            assert s.memory_used_bytes <= 64 << 10
            assert s.evictions > 0
            assert s.keys < 400
        nodes = [stubs_for(cluster, i) for i in range(3)]
        key_sets = []
        for node in nodes:
            keys: list[bytes] = []
            cursor = b""
            while True:
                page = node.cache.Scan(
                    cache_pb2.ScanRequest(cursor=cursor, count=1000, consistency=cache_pb2.STALE),
                    timeout=10,
                )
                keys.extend(page.keys)
                cursor = page.next_cursor
                if not cursor:
                    break
            key_sets.append(sorted(keys))
            node.close()
        assert key_sets[0] == key_sets[1] == key_sets[2]
        assert b"k0000" in key_sets[0] and b"k0399" in key_sets[0]
        assert b"k0001" not in key_sets[0]  # the least recently used went first
        stubs.close()
    finally:
        cluster.close()


def test_noeviction_refuses_writes_over_the_limit(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path, extra_args=["--max-memory", "8kb"])
    try:
        stubs = stubs_for(cluster, cluster.wait_for_leader())
        wait_for(
            lambda: (
                stubs.cluster.Status(cluster_pb2.StatusRequest(), timeout=5).max_memory_bytes
                == 8 << 10
            ),
            "the limit to be replicated",
        )
        with pytest.raises(grpc.RpcError) as info:
            for i in range(100):
                stubs.cache.Set(cache_pb2.SetRequest(key=b"k%d" % i, value=b"x" * 500), timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-memory 8192 bytes" in (info.value.details() or "")
        status = stubs.cluster.Status(cluster_pb2.StatusRequest(), timeout=5)
        assert status.memory_used_bytes <= 8 << 10 and status.evictions == 0
        stubs.close()
    finally:
        cluster.close()
