"""Nodes started with --cpu-affinity (node/affinity.py): each on its own CPU, every thread of
it (the event loop, pysyncobj's tick thread, gRPC's) there, and the cluster serving."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis
from raftcache.chaos.local_cluster import LocalCluster

from tests.integration.conftest import running_cluster

CPUS = sorted(os.sched_getaffinity(0))


def thread_cpus(pid: int) -> dict[str, str]:
    """Cpus_allowed_list of every thread of a process, by thread id."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        found[tid] = status.split("Cpus_allowed_list:")[1].split()[0]
    return found


@pytest.mark.skipif(len(CPUS) < 2, reason="needs two CPUs to place nodes on different ones")
def test_each_node_runs_every_thread_on_the_cpu_it_was_given(tmp_path: Path) -> None:
    placement = [CPUS[0], CPUS[1], CPUS[1]]

    def configure(cluster: LocalCluster) -> None:
        for node, cpu in zip(cluster.nodes, placement, strict=True):
            node.extra_args = ["--cpu-affinity", str(cpu)]

    with running_cluster(tmp_path, configure=configure) as cluster:
        leader = cluster.wait_for_leader()
        client = redis.Redis(port=cluster.nodes[leader].redis_port)
        assert client.set("pinned", "yes") and client.get("pinned") == b"yes"
        for node, cpu in zip(cluster.nodes, placement, strict=True):
            assert node.process is not None
            threads = thread_cpus(node.process.pid)
            assert len(threads) >= 3  # the loop, the tick thread and gRPC's at least
            assert set(threads.values()) == {str(cpu)}, (node.node_id, threads)
