"""Leader leases (consensus/lease.py), message by message.

As in test_prevote.py: a real, untick'd LeaseSyncObj with two peers played by hand, every
message it sends captured below its transport's own send logic (where stamps and echoes
are added), its ticks run explicitly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from raftcache.consensus.lease import LEASE_ACK, LEASE_FRACTION, LEASE_STAMP, LeaseSyncObj
from raftcache.consensus.prevote import TERM_NOTICE

from tests.consensus.test_prevote import FOLLOWER, LEADER, MIN_TIMEOUT, Node, sent  # noqa: F401

LEASE = LEASE_FRACTION * MIN_TIMEOUT


@pytest.fixture
def leader(sent: list[tuple[Any, dict[str, Any]]]) -> Iterator[Node]:  # noqa: F811
    n = Node(sent, cls=LeaseSyncObj)
    n.heartbeat(n.a, 1)
    n.sent.clear()
    n.become_leader()
    yield n
    n.close()


@pytest.fixture
def follower(sent: list[tuple[Any, dict[str, Any]]]) -> Iterator[Node]:  # noqa: F811
    n = Node(sent, cls=LeaseSyncObj)
    yield n
    n.close()


def noop_index(n: Node) -> int:
    return int(n.obj._SyncObj__noopIDx)


def stamps(n: Node) -> list[tuple[Any, tuple[int, float]]]:
    return [(to, m[LEASE_STAMP]) for to, m in n.sent_of("append_entries")]


def append(n: Node, node: Any, term: int, stamp: tuple[int, float] | None, **extra: Any) -> None:
    """An append_entries from `node` after the initial entry (no entries unless given)."""
    message: dict[str, Any] = {
        "type": "append_entries",
        "term": term,
        "commit_index": 0,
        "entries": [],
        "prevLogIdx": 1,
        "prevLogTerm": 0,
        **extra,
    }
    if stamp is not None:
        message[LEASE_STAMP] = stamp
    n.receive(node, message)


def ack(
    n: Node,
    node: Any,
    sent_at: float,
    *,
    term: int | None = None,
    success: bool = True,
    min_timeout: float = MIN_TIMEOUT,
    next_idx: int | None = None,
) -> None:
    """`node` answers an append the leader stamped `sent_at` (pysyncobj's next_node_idx)."""
    n.receive(
        node,
        {
            "type": "next_node_idx",
            "next_node_idx": noop_index(n) + 1 if next_idx is None else next_idx,
            "reset": False,
            "success": success,
            LEASE_ACK: (n.term if term is None else term, sent_at, min_timeout),
        },
    )
    n.tick()  # commits and applies what a majority holds, publishes the lease


# ---------------------------------------------------------------- the leader side


def test_the_leader_stamps_its_appends_with_term_and_send_time(leader: Node) -> None:
    leader.obj._SyncObj__connectedNodes.update({leader.a, leader.b})  # nobody listens
    leader.sent.clear()
    before = time.monotonic()
    leader.obj._SyncObj__sendAppendEntries()
    got = stamps(leader)
    assert {to for to, _ in got} == {leader.a, leader.b}
    for _, (term, at) in got:
        assert term == leader.term and before <= at <= time.monotonic()


def test_no_lease_until_a_majority_answered_a_stamped_append(leader: Node) -> None:
    assert leader.state == LEADER
    assert not leader.obj.lease_read_ok()
    ack(leader, leader.a, time.monotonic())
    assert leader.obj.lease_read_ok()
    assert 0 < leader.obj.lease_remaining() <= LEASE


def test_the_lease_runs_from_the_send_time_not_the_answer(leader: Node) -> None:
    sent_at = time.monotonic() - LEASE / 2  # an answer to an append sent a while ago
    ack(leader, leader.a, sent_at)
    assert leader.obj.lease_remaining() <= LEASE / 2 + 0.01
    time.sleep(LEASE / 2 + 0.02)
    assert not leader.obj.lease_read_ok() and leader.obj.lease_remaining() == 0


def test_later_answers_extend_it_and_older_ones_do_not_shorten_it(leader: Node) -> None:
    ack(leader, leader.a, time.monotonic())
    time.sleep(LEASE * 0.75)
    ack(leader, leader.a, time.monotonic())
    assert leader.obj.lease_remaining() > LEASE * 0.5
    ack(leader, leader.a, time.monotonic() - LEASE)  # reordered, older: ignored
    assert leader.obj.lease_remaining() > LEASE * 0.5


def test_the_shortest_election_timeout_of_the_majority_bounds_it(leader: Node) -> None:
    ack(leader, leader.a, time.monotonic(), min_timeout=MIN_TIMEOUT / 4)
    assert leader.obj.lease_remaining() <= LEASE_FRACTION * MIN_TIMEOUT / 4


def test_answers_that_do_not_count(leader: Node) -> None:
    now = time.monotonic()
    ack(leader, leader.a, now, term=leader.term - 1)  # another term's answer
    assert not leader.obj.lease_read_ok()
    leader.receive(
        leader.a,
        {
            "type": "next_node_idx",
            "next_node_idx": noop_index(leader) + 1,
            "reset": False,
            "success": True,
        },
    )  # an older build: no echo
    leader.tick()
    assert not leader.obj.lease_read_ok()
    for bad in [("x", now, MIN_TIMEOUT), (leader.term, now), None, "junk"]:
        leader.receive(
            leader.a,
            {
                "type": "next_node_idx",
                "next_node_idx": 1,
                "reset": False,
                "success": False,
                LEASE_ACK: bad,
            },
        )
    leader.tick()
    assert not leader.obj.lease_read_ok()


@pytest.mark.parametrize("reset", [False, True])
def test_an_answer_to_an_older_terms_append_moves_no_index(leader: Node, reset: bool) -> None:
    """pysyncobj's answers carry no term: one held up through this node's losing and
    winning back the lead would set matchIndex (or nextIndex) for a log the member may
    have changed since. The echoed stamp names the term it answers: older ones are dropped."""
    so = leader.obj
    match, next_ = dict(so._SyncObj__raftMatchIndex), dict(so._SyncObj__raftNextIndex)
    far = noop_index(leader) + 50
    ack(leader, leader.a, time.monotonic(), term=leader.term - 1, next_idx=far)
    leader.receive(
        leader.a,
        {
            "type": "next_node_idx",
            "next_node_idx": 1 if reset else far,
            "reset": reset,
            "success": not reset,
            LEASE_ACK: (leader.term - 1, time.monotonic(), MIN_TIMEOUT),
        },
    )
    assert so._SyncObj__raftMatchIndex == match and so._SyncObj__raftNextIndex == next_
    assert so.stale_answers_dropped == 2
    ack(leader, leader.a, time.monotonic(), next_idx=noop_index(leader) + 1)  # this term's
    assert so._SyncObj__raftMatchIndex[leader.a] == noop_index(leader)


def test_no_lease_before_the_leaders_no_op_is_applied(leader: Node) -> None:
    # A member that answered but does not hold the no-op yet: the lease is there, but entries
    # of earlier terms may be committed and not applied here.
    ack(leader, leader.a, time.monotonic(), success=False, next_idx=noop_index(leader))
    assert leader.obj.lease_remaining() > 0
    assert not leader.obj.lease_read_ok()
    ack(leader, leader.a, time.monotonic())
    assert leader.obj.lease_read_ok()


def test_nothing_committed_may_be_left_unapplied(leader: Node) -> None:
    ack(leader, leader.a, time.monotonic())
    assert leader.obj.lease_read_ok()
    leader.obj._SyncObj__raftCommitIndex += 1  # committed, not applied yet (mid-tick)
    assert not leader.obj.lease_read_ok()


def test_applied_everything_waits_for_the_whole_log_not_the_lease(
    leader: Node,
    follower: Node,
) -> None:
    # The no-op of the new term is appended, not yet committed: not everything is applied
    # (entries of earlier terms before it may change the settings a set run checks).
    assert not leader.obj.applied_everything()
    ack(leader, leader.a, time.monotonic())  # commits and applies the no-op
    assert leader.obj.applied_everything()
    last = leader.obj._SyncObj__raftLog[-1]
    leader.obj._SyncObj__raftLog.add(b"\x00", last[1] + 1, last[2])  # appended, unapplied
    assert not leader.obj.applied_everything()
    leader.obj._SyncObj__raftLastApplied += 1  # as if applied
    assert leader.obj.applied_everything()
    leader.obj._applyCommand(b"\x00queued", None)  # proposed, not in the log yet
    assert not leader.obj.applied_everything()
    assert not follower.obj.applied_everything()  # only a leader answers for the next entry


def test_a_leadership_transfer_gives_the_lease_up_for_the_term(leader: Node) -> None:
    ack(leader, leader.a, time.monotonic())
    assert leader.obj.lease_read_ok()
    leader.obj._SyncObj__transport.send(leader.a, {"type": "timeout_now", "term": leader.term})
    assert not leader.obj.lease_read_ok()
    ack(leader, leader.b, time.monotonic())  # members still answer: no lease this term
    assert not leader.obj.lease_read_ok()
    assert leader.obj.lease_voided == 1


def test_a_deposed_leader_has_no_lease(leader: Node) -> None:
    ack(leader, leader.a, time.monotonic())
    leader.receive(leader.b, {"type": TERM_NOTICE, "term": leader.term + 1})
    assert leader.state == FOLLOWER
    assert not leader.obj.lease_read_ok() and leader.obj.lease_remaining() == 0


def test_off_it_never_holds_one(sent: list[tuple[Any, dict[str, Any]]]) -> None:  # noqa: F811
    n = Node(sent, cls=LeaseSyncObj, lease_reads=False)
    try:
        n.heartbeat(n.a, 1)
        n.become_leader()
        ack(n, n.a, time.monotonic())
        ack(n, n.b, time.monotonic())
        assert not n.obj.lease_read_ok()
    finally:
        n.close()


# ---------------------------------------------------------------- the member side


def test_a_member_echoes_the_stamp_of_the_append_it_accepted(follower: Node) -> None:
    follower.sent.clear()
    append(follower, follower.a, 2, (2, 123.5))
    ((to, answer),) = follower.sent_of("next_node_idx")
    assert to == follower.a and answer[LEASE_ACK] == (2, 123.5, MIN_TIMEOUT)
    # ... which keeps it from voting for anyone else for its minimum election timeout
    assert not follower.ask_pre_vote(follower.b, 3, 1, 0)


def test_no_echo_without_a_stamp_or_for_a_stale_leader(follower: Node) -> None:
    follower.heartbeat(follower.a, 3)
    follower.sent.clear()
    append(follower, follower.a, 3, None)
    assert all(LEASE_ACK not in m for _, m in follower.sent_of("next_node_idx"))
    follower.sent.clear()
    append(follower, follower.b, 2, (2, 1.0))
    assert not follower.sent_of("next_node_idx")  # an older term's append is not answered
    assert follower.sent_of(TERM_NOTICE)


def test_an_answer_to_an_already_held_append_is_echoed_too(follower: Node) -> None:
    # LogMatchingSyncObj answers an append whose entries the member already holds itself.
    follower.append(follower.a, 2, 2, 3)
    follower.sent.clear()
    append(follower, follower.a, 2, (2, 9.0), entries=[(b"op", 2, 2)])
    ((_, answer),) = follower.sent_of("next_node_idx")
    assert answer[LEASE_ACK] == (2, 9.0, MIN_TIMEOUT)


def test_stamps_do_not_leak_into_other_answers(follower: Node) -> None:
    append(follower, follower.a, 2, (2, 5.0))
    follower.sent.clear()
    follower.obj._SyncObj__sendNextNodeIdx(follower.a, success=True)  # outside any append
    ((_, answer),) = follower.sent_of("next_node_idx")
    assert LEASE_ACK not in answer
