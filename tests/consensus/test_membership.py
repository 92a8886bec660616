"""One membership change at a time, in the adapter (consensus/raft.py change_membership).

A single-node cluster asked to add a voter that is not running appends the change but
cannot commit it (two voters need both). Every further change is refused while it is
pending: first by the leader's own in-flight marker, and, with that marker gone (as on a
newly elected leader that inherited the entry), by the uncommitted entry in its log.
"""

from __future__ import annotations

import queue
import socket
from collections.abc import Iterator

import pytest
from raftcache.consensus import Durability, Outcome, RaftConfig, RaftNode
from raftcache.node.replica import Replica

from tests.consensus.harness import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
