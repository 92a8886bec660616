"""A 3-node cluster whose every address is IPv6 loopback, written [::1]:PORT as the flags
take them: election over pysyncobj, members announced with brackets, the SDK seeded with a
follower, and a follower forwarding to the leader."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from raftcache.chaos.local_cluster import free_port
from raftcache.client import Client
from raftcache.v1 import cache_pb2, cache_pb2_grpc

pytestmark = pytest.mark.integration


@pytest.fixture
def ipv6_cluster(tmp_path: Path) -> Iterator[list[str]]:
    """Three node processes; yields their client addresses. Each has its own data
    directory (memory mode keeps its identity record there): with the default, all three
    shared ./raftcache-data, and one crashed renaming the identity file another had just
    renamed (a CI run: the test saw two members)."""
    # below the ephemeral range: an outgoing connection once took a port picked with bind(0)
    # before its node bound it, and the node never listened (a CI run)
    ports = [(free_port("::1"), free_port("::1")) for _ in range(3)]
    processes = []
    try:
        for i, (client, raft) in enumerate(ports):
            peers = ",".join(f"[::1]:{r}" for j, (_, r) in enumerate(ports) if j != i)
            command = [
                sys.executable, "-m", "raftcache.node.cli", "--node-id", f"n{i}",
                "--listen", f"[::1]:{client}", "--raft", f"[::1]:{raft}", "--peers", peers,
                "--durability", "memory", "--data-dir", str(tmp_path / f"n{i}"),
            ]  # fmt: skip
            with open(tmp_path / f"n{i}.log", "wb") as log:
                processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
        yield [f"[::1]:{client}" for client, _ in ports]
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_a_cluster_on_ipv6_serves_through_a_follower(ipv6_cluster: list[str]) -> None:
    with Client(ipv6_cluster[0], timeout=20) as client:
        client.set("v6", "ok")  # waits out the election (the SDK retries inside 20 s)
        # Each member announces its client address through the log once it knows the
        # leader: the last one may still be on its way when the first write commits.
        deadline = time.monotonic() + 10
        while True:
            nodes = client.cluster_status()
            if len([n for n in nodes if n.address]) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        leader = next(n.address for n in nodes if n.role == "leader")
    assert sorted(n.address for n in nodes) == sorted(ipv6_cluster)
    follower = next(a for a in ipv6_cluster if a != leader)
    with Client(follower, timeout=20) as client:
        assert client.get("v6") == b"ok"
        assert client.incr("v6-counter") == 1
        assert client.leader == leader  # learned from the follower's announcements
    with grpc.insecure_channel(follower) as channel:  # a write the follower forwards
        stub = cache_pb2_grpc.CacheStub(channel)
        stub.Set(cache_pb2.SetRequest(key=b"v6-forwarded", value=b"1"), timeout=10)
        read = stub.Get(cache_pb2.GetRequest(key=b"v6-forwarded"), timeout=10)
        assert read.value == b"1"
