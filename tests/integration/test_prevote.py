"""Pre-vote and check-quorum on a real 3-node cluster behind the Raft proxies.

- A follower cut off for several election timeouts comes back without an election: its
  term never grew (pre-vote refused), the leader and the term stay, writes go on.
- A leader cut off from both followers steps down on its own within ~2 election
  timeouts (check-quorum) while the majority elects a new leader.
- A leadership transfer (SIGTERM on the leader) still elects the target at once,
  although every follower is "sticky" to the live leader.

Timings come from the node defaults (RaftConfig): election timeout 0.3-0.7 s, leader
fallback 1 s. See consensus/DESIGN.md "Pre-vote and check-quorum".
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import grpc
import pytest
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.chaos.netproxy import NetProxy
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2

from tests.integration.conftest import start_cluster

pytestmark = pytest.mark.integration

ELECTION_TIMEOUT_MAX_S = 0.7  # RaftConfig.election_timeout_max


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


def _status(cluster: LocalCluster, i: int) -> cluster_pb2.StatusResponse:
    status = cluster.status(i, timeout=3)
    assert status is not None, f"{cluster.nodes[i].node_id} does not answer Status"
    return status


def _settled(cluster: LocalCluster, timeout: float = 20) -> tuple[int, int]:
    """(leader index, term) once every node names the same leader in the same term."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = [cluster.status(i) for i in range(len(cluster.nodes))]
        if all(s is not None for s in statuses):
            terms = {s.term for s in statuses if s is not None}
            leaders = {s.leader_id for s in statuses if s is not None}
            roles = [s.role for s in statuses if s is not None]
            if len(terms) == 1 and len(leaders) == 1 and roles.count(cluster_pb2.LEADER) == 1:
                return roles.index(cluster_pb2.LEADER), terms.pop()
        assert time.monotonic() < deadline, f"the cluster never settled: {statuses}"
        time.sleep(0.05)


def _role_changes(cluster: LocalCluster, i: int) -> list[tuple[float, str, str]]:
    """(unix time, old role, new role) of every 'role changed' line in node i's log."""
    out = []
    for line in cluster.nodes[i].log_path.read_text(errors="replace").splitlines():
        if "role changed" not in line:
            continue
        old = re.search(r"old_role=(\w+)", line)
        new = re.search(r"new_role=(\w+)", line)
        if old and new:
            at = datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
            out.append((at, old.group(1), new.group(1)))
    return out


def _count(cluster: LocalCluster, i: int, text: str) -> int:
    return int(cluster.nodes[i].log_path.read_text(errors="replace").count(text))


@pytest.mark.timeout(120)
def test_an_isolated_follower_rejoins_without_an_election(
    proxied: tuple[LocalCluster, NetProxy],
) -> None:
    cluster, net = proxied
    leader, term = _settled(cluster)
    leader_id = cluster.nodes[leader].node_id
    cut = (leader + 1) % 3
    stub = _cache(cluster, leader)
    stub.Set(cache_pb2.SetRequest(key=b"pv:before", value=b"1"), timeout=5)
    elections_before = [_count(cluster, i, "pre-vote won") for i in range(3)]

    net.isolate(cluster.nodes[cut].node_id)
    isolated_until = time.monotonic() + 8 * ELECTION_TIMEOUT_MAX_S
    seen_terms: set[int] = set()
    dropped_leader = False
    while time.monotonic() < isolated_until:
        status = _status(cluster, cut)
        seen_terms.add(status.term)
        assert status.role != cluster_pb2.CANDIDATE, status
        dropped_leader = dropped_leader or not status.leader_id
        time.sleep(0.1)
    # The majority kept writing meanwhile.
    stub.Set(cache_pb2.SetRequest(key=b"pv:during", value=b"2"), timeout=5)
    # Pre-vote refused every round: the cut-off node never raised its term ...
    assert seen_terms == {term}
    # ... though it stopped naming a leader it no longer heard from.
    assert dropped_leader

    net.heal()
    healed, healed_wall = time.monotonic(), time.time()
    stub.Set(cache_pb2.SetRequest(key=b"pv:after", value=b"3"), timeout=5)
    cluster.wait_converged(timeout=30)
    # Watch a few more election timeouts: nobody campaigns, the term and the leader stay.
    while time.monotonic() < healed + 5 * ELECTION_TIMEOUT_MAX_S:
        for i in range(3):
            status = _status(cluster, i)
            assert (status.term, status.leader_id) == (term, leader_id), (i, status)
        time.sleep(0.1)
    assert _settled(cluster) == (leader, term)
    assert [_count(cluster, i, "pre-vote won") for i in range(3)] == elections_before
    for i in range(3):
        assert [c for c in _role_changes(cluster, i) if c[0] >= healed_wall] == [], i
    got = _cache(cluster, cut).Get(
        cache_pb2.GetRequest(key=b"pv:during", consistency=cache_pb2.STALE), timeout=5
    )
    assert got.found and got.value == b"2"


@pytest.mark.timeout(120)
def test_an_isolated_leader_steps_down_while_the_majority_elects(
    proxied: tuple[LocalCluster, NetProxy],
) -> None:
    cluster, net = proxied
    old, term = _settled(cluster)
    cut_at = time.time()
    net.isolate(cluster.nodes[old].node_id)

    new = cluster.wait_for_leader(timeout=20, exclude=old)
    _cache(cluster, new).Set(cache_pb2.SetRequest(key=b"pv:new", value=b"1"), timeout=5)
    new_term = _status(cluster, new).term
    assert new_term > term

    deadline = time.monotonic() + 10
    while _status(cluster, old).role == cluster_pb2.LEADER:
        assert time.monotonic() < deadline, "the cut-off leader never stepped down"
        time.sleep(0.02)
    # When it stepped down, by the node's own log (polling adds its own delay).
    steps = [at for at, was, now in _role_changes(cluster, old) if was == "leader" and at > cut_at]
    assert steps, _role_changes(cluster, old)
    stepped_after = steps[0] - cut_at
    assert stepped_after < 2 * ELECTION_TIMEOUT_MAX_S + 0.6, stepped_after  # not 30 s
    # It stepped down in its old term: check-quorum, not a higher-term message.
    assert _status(cluster, old).term == term

    net.heal()
    leader, settled_term = _settled(cluster, timeout=30)
    assert (leader, settled_term) == (new, new_term)
    cluster.wait_converged(timeout=30)


@pytest.mark.timeout(120)
def test_leadership_transfer_elects_the_target_at_once(tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path)
    try:
        old, term = _settled(cluster)
        _cache(cluster, old).Set(cache_pb2.SetRequest(key=b"pv:t", value=b"1"), timeout=5)
        won_before = [_count(cluster, i, "pre-vote won") for i in range(3)]
        assert cluster.stop(old) == 0
        assert "leadership handed over" in cluster.nodes[old].log_path.read_text()
        new = cluster.wait_for_leader(exclude=old, timeout=5)
        # One election, started by TimeoutNow and let through by the followers' leader
        # stickiness: no pre-vote round won, no second attempt.
        assert _status(cluster, new).term == term + 1
        assert [_count(cluster, i, "pre-vote won") for i in range(3)] == won_before
        got = _cache(cluster, new).Get(cache_pb2.GetRequest(key=b"pv:t"), timeout=5)
        assert got.found and got.value == b"1"
    finally:
        cluster.close()
