"""Raft over IPv6: bracketed [::1]:PORT addresses, as the node's flags take them.

pysyncobj splits HOST:PORT at the last colon and resolves the host as written, so the
adapter hands it ::1:PORT and turns the addresses it reports back into [::1]:PORT.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from raftcache.chaos.local_cluster import free_port
from raftcache.consensus import Durability, RaftConfig, RaftNode
from raftcache.node.replica import Replica

from tests.consensus.harness import keys, missing_keys, wait_for, write_keys


@pytest.fixture
def trio() -> Iterator[tuple[list[str], list[RaftNode], list[Replica]]]:
    addrs = [f"[::1]:{free_port('::1')}" for _ in range(3)]
    replicas = [Replica() for _ in addrs]
    nodes: list[RaftNode] = []
    try:
        for addr, replica in zip(addrs, replicas, strict=True):
            config = RaftConfig(
                self_addr=addr,
                peers=tuple(a for a in addrs if a != addr),
                durability=Durability.MEMORY,
                # Three tick threads share this process's GIL: no elections from a busy host.
                election_timeout_min=1.0,
                election_timeout_max=2.0,
                connection_timeout=2.0,
                leader_fallback_timeout=6.0,
            )
            nodes.append(RaftNode(config, replica))
        yield addrs, nodes, replicas
    finally:
        for node in nodes:
            node.destroy()


def test_three_nodes_on_ipv6_loopback_elect_and_replicate(
    trio: tuple[list[str], list[RaftNode], list[Replica]],
) -> None:
    addrs, nodes, replicas = trio
    wait_for(lambda: sum(n.is_leader() for n in nodes) == 1, "one leader")
    leader = next(n for n in nodes if n.is_leader())
    written = write_keys(leader, keys("v6-", 20))

    for replica in replicas:
        wait_for(lambda r=replica: not missing_keys(r, written), "every key on every node")
    leader_addr = addrs[nodes.index(leader)]
    wait_for(lambda: all(n.status().leader == leader_addr for n in nodes), "the leader's address")
    # Addresses come back as the node's flags write them, brackets included.
    assert leader.status().connected == {a for a in addrs if a != leader_addr}
    assert set(leader.status().match_index) == {a for a in addrs if a != leader_addr}
