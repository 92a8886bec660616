"""No amnesiac voters (issue 15 item 5) on a real 3-node cluster behind the Raft proxies.

A write is acknowledged by the leader and one follower while the third node is cut off.
The follower then loses its disk (killed, data dir deleted: a StatefulSet pod on a new
volume) and comes back under its old identity while the leader is isolated. The wiped
node and the third node together are a majority: if the wiped node voted, the third
(which lacks the write) would win and the acknowledged write would be gone for good. The
wiped node must not vote until the leader has removed and re-added it and it has caught
up (consensus/DESIGN.md "Amnesia"), and it must do that by itself.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import grpc
import pytest
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2

from tests.integration.conftest import start_cluster

pytestmark = pytest.mark.integration


def _get(address: str, key: bytes) -> cache_pb2.GetResponse | None:
    with grpc.insecure_channel(address) as channel:
        try:
            response: cache_pb2.GetResponse = cache_pb2_grpc.CacheStub(channel).Get(
                cache_pb2.GetRequest(key=key), timeout=3
            )
            return response
        except grpc.RpcError:
            return None


@pytest.mark.parametrize("durability", ["journal", "memory"])
def test_a_node_that_lost_its_disk_does_not_vote_the_write_away(
    tmp_path: Path, durability: str
) -> None:
    cluster = start_cluster(tmp_path, proxy=True, durability=durability)
    try:
        net = cluster.net
        assert net is not None
        leader = cluster.wait_until_ready(timeout=30)
        names = [n.node_id for n in cluster.nodes]
        wiped, behind = [i for i in range(3) if i != leader]
        net.isolate(names[behind])
        time.sleep(0.3)
        with grpc.insecure_channel(cluster.nodes[leader].client_addr) as channel:
            stub = cache_pb2_grpc.CacheStub(channel)
            stub.Set(cache_pb2.SetRequest(key=b"acked", value=b"kept"), timeout=10)
        # the write is on the leader and `wiped` (a majority); `behind` lacks it
        cluster.kill(wiped)
        if durability == "journal":
            shutil.rmtree(cluster.nodes[wiped].data_dir)  # a new, empty volume
        net.heal()
        net.isolate(names[leader])
        cluster.start_node(wiped)
        # `wiped` and `behind` are a majority now; give them many election timeouts
        deadline = time.monotonic() + 8
        elected: set[str] = set()
        while time.monotonic() < deadline:
            for i in (wiped, behind):
                status = cluster.status(i)
                if status is not None and status.role == cluster_pb2.LEADER:
                    elected.add(f"{names[i]} in term {status.term}")
            time.sleep(0.2)
        net.heal()
        new_leader = cluster.wait_for_leader(timeout=20)
        deadline = time.monotonic() + 20
        got = None
        while time.monotonic() < deadline:
            got = _get(cluster.nodes[new_leader].client_addr, b"acked")
            if got is not None:
                break
            time.sleep(0.2)
            new_leader = cluster.wait_for_leader(timeout=20)
        assert got is not None
        assert got.found and got.value == b"kept", (
            f"the acknowledged write is lost (leaders elected while the old one was cut off: "
            f"{elected or 'none'}); logs in {cluster.base_dir}"
        )
        assert not elected, f"the wiped node helped elect {elected}"
        # it rejoins by itself: re-added, caught up and voting again, with no operator action
        cluster.wait_until_ready(timeout=30)
        log = cluster.nodes[wiped].log_path
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "voting again" not in log.read_text():
            time.sleep(0.2)
        assert "voting again" in log.read_text(), (
            f"it never voted again; logs in {cluster.base_dir}"
        )
        assert _get(cluster.nodes[wiped].client_addr, b"acked") is not None, (
            "the rejoined node does not answer"
        )
    finally:
        cluster.close()
