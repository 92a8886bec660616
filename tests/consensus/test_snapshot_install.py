"""A follower installing the leader's snapshot while its own snapshot writer still runs.

Three in-process RaftNodes. The follower comes back after the leader compacted past
its log, so the leader streams its snapshot; at that moment the follower is writing
an older snapshot of its own (made slow here). The older file must not replace the
received one: on the next restart pysyncobj would load it, clear the journal that
starts after it, and the follower would lose entries it had acknowledged.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pysyncobj.journal import MetaStorer
from raftcache.chaos.local_cluster import free_port
from raftcache.consensus import Durability, RaftConfig, RaftNode, snapshot
from raftcache.node.replica import Replica

from tests.consensus.harness import (
    DUMP,
    JOURNAL,
    keys,
    missing_keys,
    take_snapshot,
    wait_for,
    write_keys,
)

SLOW_WRITER_S = 2.0


class Trio:
    """Three voters in this process; each node i has its own data dir and Replica."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        self.nodes: list[RaftNode | None] = [None, None, None]
        self.replicas: list[Replica] = [Replica(), Replica(), Replica()]

    def start(self, i: int) -> RaftNode:
        self.replicas[i] = Replica()
        config = RaftConfig(
            self_addr=self.addrs[i],
            peers=tuple(a for j, a in enumerate(self.addrs) if j != i),
            durability=Durability.JOURNAL,
            data_dir=self.base / f"n{i}",
            # Three tick threads share this process's GIL: keep a busy host from
            # causing elections in the middle of the scenario.
            election_timeout_min=1.0,
            election_timeout_max=2.0,
            connection_timeout=2.0,
            leader_fallback_timeout=6.0,
        )
        node = self.nodes[i] = RaftNode(config, self.replicas[i])
        return node

    def node(self, i: int) -> RaftNode:
        node = self.nodes[i]
        assert node is not None
        return node

    def stop(self, i: int) -> None:
        node, self.nodes[i] = self.nodes[i], None
        if node is not None:
            node.destroy()

    def leader(self) -> int:
        found: list[int] = []

        def one_leads() -> bool:
            found[:] = [i for i, n in enumerate(self.nodes) if n is not None and n.is_leader()]
            return len(found) == 1

        wait_for(one_leads, "a leader")
        return found[0]

    def close(self) -> None:
        for i in range(3):
            self.stop(i)


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[Trio]:
    nodes = Trio(tmp_path)
    try:
        yield nodes
    finally:
        nodes.close()


def _stored_commit_index(data_dir: Path) -> int:
    meta: dict[str, Any] = MetaStorer(str(data_dir / (JOURNAL + ".meta"))).getMeta()
    return int(meta.get("raftCommitIndex", 1))


def test_an_older_local_snapshot_never_replaces_a_received_one(
    trio: Trio, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        trio.start(i)
    leader = trio.leader()
    follower = (leader + 1) % 3
    first = write_keys(trio.node(leader), keys("first-", 20))
    commit = trio.node(leader).status().commit_index
    follower_dir = trio.base / f"n{follower}"
    wait_for(lambda: _stored_commit_index(follower_dir) >= commit, "the follower's commit index")
    trio.stop(follower)

    second = write_keys(trio.node(leader), keys("second-", 50))
    received = take_snapshot(trio.node(leader))  # the follower's log ends before this

    write = snapshot.write
    started = trio.base / "writer-started"

    def slow_write(*args: Any) -> None:  # runs in the follower's forked writer
        started.touch()
        time.sleep(SLOW_WRITER_S)
        write(*args)

    serialize = RaftNode._serialize

    def serialize_until_started(self: RaftNode, *args: Any) -> None:  # the tick thread
        serialize(self, *args)
        if self.config.data_dir != follower_dir:
            return  # another node's snapshot: nothing to hold
        # Hold the tick thread (so no message is read) until the forked writer runs
        # its first line: on a loaded host the leader's snapshot could otherwise stop
        # the writer before it started, and the scenario would not happen.
        deadline = time.monotonic() + 10
        while self._child_pid and not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)

    monkeypatch.setattr(snapshot, "write", slow_write)
    monkeypatch.setattr(RaftNode, "_serialize", serialize_until_started)
    node = trio.start(follower)
    # The first tick applies the old journal and forks the (slow) writer before it
    # reads any message, so the leader's snapshot arrives while the writer runs.
    assert node.force_snapshot()
    wait_for(lambda: node.status().applied_index >= received.last.index, "the received snapshot")
    wait_for(lambda: node._child_pid == 0, "the follower's writer to finish", timeout=10)
    assert started.exists()  # the scenario happened: a writer was running
    assert snapshot.read_raft_meta(str(follower_dir / DUMP)).last.index >= received.last.index
    assert node.snapshots_taken == 0  # the writer was stopped, not left to finish

    # What that file means after a restart with nobody else to catch up from.
    monkeypatch.setattr(snapshot, "write", write)
    for i in range(3):
        trio.stop(i)
    restarted = trio.start(follower)
    wait_for(lambda: restarted.status().applied_index >= received.last.index, "the restart")
    assert missing_keys(trio.replicas[follower], first + second) == []
