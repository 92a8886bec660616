"""Network partitions through the Raft proxies on a real 3-node cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.chaos.netproxy import Delay, NetProxy
from raftcache.v1 import cache_pb2, cache_pb2_grpc

from tests.integration.conftest import start_cluster

pytestmark = pytest.mark.integration


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[LocalCluster, NetProxy]]:
    cluster = start_cluster(tmp_path, proxy=True)
    try:
        assert cluster.net is not None
        yield cluster, cluster.net
    finally:
        cluster.close()


def _cache(cluster: LocalCluster, i: int) -> cache_pb2_grpc.CacheStub:
    return cache_pb2_grpc.CacheStub(grpc.insecure_channel(cluster.nodes[i].client_addr))


def _set_until_acked(stub: cache_pb2_grpc.CacheStub, key: bytes, value: bytes) -> None:
    """Retry a write until it is acknowledged (the majority may still be electing)."""
    deadline = time.monotonic() + 20
    while True:
        try:
            stub.Set(cache_pb2.SetRequest(key=key, value=value), timeout=3)
            return
        except grpc.RpcError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"write never acknowledged: {exc}") from exc
            time.sleep(0.2)


@pytest.mark.timeout(120)
def test_isolated_leader_loses_leadership_and_acked_writes_survive(
    proxied: tuple[LocalCluster, NetProxy],
) -> None:
    cluster, net = proxied
    old = cluster.wait_for_leader()
    net.isolate(cluster.nodes[old].node_id)

    new = cluster.wait_for_leader(timeout=20, exclude=old)
    _set_until_acked(_cache(cluster, new), b"p:majority", b"kept")

    # The cut-off node may still believe it leads: nothing sent to it may be acknowledged,
    # and a linearizable read there must not return the state from before the partition.
    minority = _cache(cluster, old)
    with pytest.raises(grpc.RpcError) as write:
        minority.Set(cache_pb2.SetRequest(key=b"p:minority", value=b"lost"), timeout=4)
    assert write.value.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    ), write.value
    try:
        read = minority.Get(cache_pb2.GetRequest(key=b"p:majority"), timeout=4)
        assert read.found and read.value == b"kept", f"stale read on the cut-off node: {read}"
    except grpc.RpcError as exc:
        assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)

    net.heal()
    statuses = cluster.wait_converged(timeout=60)
    assert len(statuses) == 3
    for i in range(3):
        got = _cache(cluster, i).Get(
            cache_pb2.GetRequest(key=b"p:majority", consistency=cache_pb2.STALE), timeout=5
        )
        assert got.found and got.value == b"kept", (cluster.nodes[i].node_id, got)


@pytest.mark.timeout(120)
def test_minority_and_latency_keep_the_majority_writing(
    proxied: tuple[LocalCluster, NetProxy],
) -> None:
    cluster, net = proxied
    leader = cluster.wait_for_leader()
    follower = (leader + 1) % 3
    net.isolate(cluster.nodes[follower].node_id)
    _set_until_acked(_cache(cluster, leader), b"p:while-cut", b"1")
    net.heal()

    net.set_delay(Delay(0.1, jitter_s=0.05))
    started = time.monotonic()
    _set_until_acked(_cache(cluster, cluster.wait_for_leader()), b"p:slow", b"2")
    # A commit needs a round trip to a follower: at least 2 x 100 ms one way.
    assert time.monotonic() - started >= 0.2
    net.set_delay(None)
    cluster.wait_converged(timeout=60)
    got = _cache(cluster, follower).Get(
        cache_pb2.GetRequest(key=b"p:while-cut", consistency=cache_pb2.STALE), timeout=5
    )
    assert got.found and got.value == b"1"
