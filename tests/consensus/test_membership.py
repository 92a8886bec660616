"""One membership change at a time, in the adapter (consensus/raft.py change_membership).

A single-node cluster asked to add a voter that is not running appends the change but
cannot commit it (two voters need both). Every further change is refused while it is
pending: first by the leader's own in-flight marker, and, with that marker gone (as on a
newly elected leader that inherited the entry), by the uncommitted entry in its log.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator

import pytest
from raftcache.chaos.local_cluster import free_port
from raftcache.consensus import Durability, Outcome, RaftConfig, RaftNode
from raftcache.node.replica import Replica

from tests.consensus.harness import take_snapshot, wait_for


@pytest.fixture
def solo() -> Iterator[RaftNode]:
    config = RaftConfig(
        self_addr=f"127.0.0.1:{free_port()}",
        peers=(),
        durability=Durability.MEMORY,
        # The added voter never answers: keep leading meanwhile (check-quorum would step
        # down after 1 s, and a follower refuses every change as "not the leader").
        leader_fallback_timeout=60.0,
    )
    node = RaftNode(config, Replica())
    try:
        yield node
    finally:
        node.destroy()


def change(node: RaftNode, kind: str, address: str) -> tuple[Outcome, str] | None:
    answers: queue.Queue[tuple[Outcome, str]] = queue.Queue()
    node.change_membership(kind, address, lambda o, d: answers.put((o, d)))
    try:
        return answers.get(timeout=0.5)
    except queue.Empty:
        return None  # appended, not committed


def test_a_second_change_is_refused_while_the_first_is_uncommitted(solo: RaftNode) -> None:
    node = solo
    wait_for(lambda: node.is_leader() and node.status().commit_index >= 2, "a leader")
    me = node.config.self_addr
    absent = f"127.0.0.1:{free_port()}"

    outcome = change(node, "remove", "127.0.0.1:1")
    assert outcome is not None and outcome[0] is Outcome.NOT_APPLIED
    assert "is not a member" in outcome[1]
    outcome = change(node, "remove", me)
    assert outcome is not None and "transfer leadership" in outcome[1]

    assert change(node, "add", absent) is None  # appended; {me, absent} cannot commit it
    wait_for(lambda: node.status().pending_change.startswith(f"add {absent}"), "pending")
    assert node.status().members == tuple(sorted((me, absent)))  # in effect once appended

    other = f"127.0.0.1:{free_port()}"
    outcome = change(node, "add", other)
    assert outcome is not None and outcome[0] is Outcome.NOT_APPLIED
    assert "in progress" in outcome[1] and absent in outcome[1]

    node._change_in_flight = None  # as on a new leader: only the log says a change is pending
    outcome = change(node, "add", other)
    assert outcome is not None and outcome[0] is Outcome.NOT_APPLIED
    assert "appended but not committed" in outcome[1] and absent in outcome[1], outcome
    outcome = change(node, "remove", absent)
    assert outcome is not None and "in progress" in outcome[1], outcome


def test_a_snapshot_holds_the_voters_of_its_own_index(solo: RaftNode) -> None:
    """pysyncobj puts a change in effect once appended and hands its current set to the
    snapshot writer. A snapshot taken while an addition is appended but not committed must
    not hold it: the entry may yet be overwritten, and the snapshot would bring the voter
    back at every restart (and to every follower it is streamed to)."""
    node = solo
    wait_for(lambda: node.is_leader() and node.status().commit_index >= 2, "a leader")
    me = node.config.self_addr
    absent = f"127.0.0.1:{free_port()}"
    assert change(node, "add", absent) is None  # appended; {me, absent} cannot commit it
    assert node.status().members == tuple(sorted((me, absent)))

    meta = take_snapshot(node)

    assert meta.last.index < node._syncobj._SyncObj__raftLog[-1][1]  # the change is after it
    assert meta.cluster == (me,)


def test_the_voters_of_an_index_undo_every_later_change_newest_first() -> None:
    """Removals come back and additions go, for the changes after the index only."""
    import pickle
    from types import SimpleNamespace

    from pysyncobj.node import TCPNode
    from pysyncobj.syncobj import _COMMAND_TYPE

    def change_entry(kind: str, address: str, index: int) -> tuple[bytes, int, int]:
        request = [kind, address, TCPNode(address)]
        return bytes([_COMMAND_TYPE.MEMBERSHIP]) + pickle.dumps(request), index, 1

    noop = bytes([_COMMAND_TYPE.NO_OP])
    log = [
        (noop, 1, 1),
        change_entry("rem", "10.0.0.9:1", 2),  # at or before the index: stays in effect
        (noop, 3, 1),
        change_entry("rem", "10.0.0.2:1", 4),
        change_entry("add", "10.0.0.4:1", 5),
        change_entry("rem", "10.0.0.4:1", 6),  # added and removed after: not a voter at 3
    ]
    node = SimpleNamespace(_syncobj=SimpleNamespace(_SyncObj__raftLog=log))
    node._membership_entries_after = lambda after: RaftNode._membership_entries_after(
        node,  # type: ignore[arg-type]
        after,
    )
    current = {TCPNode("10.0.0.1:1"), TCPNode("10.0.0.3:1")}  # pysyncobj's set after 6
    voters = RaftNode._voters_at(node, 3, current)  # type: ignore[arg-type]
    assert voters == ("10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1")
