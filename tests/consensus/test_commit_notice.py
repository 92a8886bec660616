"""Commit notices (consensus/commit_notice.py), message by message.

As in test_prevote.py and test_lease.py: a real, untick'd CommitNoticeSyncObj leading two
peers played by hand, every message it sends captured under its transport's send logic,
its ticks run explicitly. pysyncobj's own behaviour (a notice at once) is the
`commit_notice_delay=0` case.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pysyncobj.syncobj import _COMMAND_TYPE, _bchr
from raftcache.consensus.commit_notice import CommitNoticeSyncObj

from tests.consensus.test_prevote import FOLLOWER, LEADER, Node, sent  # noqa: F401

NoticeNode = Callable[[float], Node]


@pytest.fixture
def leading(sent: list[tuple[Any, dict[str, Any]]]) -> Iterator[NoticeNode]:  # noqa: F811
    """A leader with `commit_notice_delay` (seconds) whose initial no-op is in its log,
    acknowledged by nobody yet; nothing sent so far is kept."""
    made: list[Node] = []

    def make(delay: float) -> Node:
        n = Node(sent, cls=CommitNoticeSyncObj, commit_notice_delay=delay)
        # Our nodes run pysyncobj unbatched (consensus/raft.py): an entry is sent when
        # proposed and a commit is announced when applied.
        n.obj._SyncObj__conf.appendEntriesUseBatch = False
        n.heartbeat(n.a, 1)
        n.become_leader()
        n.obj._SyncObj__connectedNodes.update({n.a, n.b})  # nobody listens on their ports
        # No heartbeat unless a test asks for one: it would carry the commit index too.
        n.obj._SyncObj__conf.appendEntriesPeriod = 60.0
        n.obj._SyncObj__newAppendEntriesTime = time.monotonic() + 60.0
        made.append(n)
        n.sent.clear()
        return n

    yield make
    for n in made:
        n.close()


def last_index(n: Node) -> int:
    return int(n.obj._SyncObj__getCurrentLogIndex())


def commit_index(n: Node) -> int:
    return int(n.obj._SyncObj__raftCommitIndex)


def acknowledge(n: Node, node: Any) -> None:
    """`node` holds the leader's whole log (pysyncobj's next_node_idx answer)."""
    n.receive(
        node,
        {
            "type": "next_node_idx",
            "next_node_idx": last_index(n) + 1,
            "reset": False,
            "success": True,
        },
    )


def propose(n: Node) -> None:
    """A no-op entry in the commands queue, where the node's front-end proposals wait for
    the tick (without its pipe notifier, which an untick'd node lacks)."""
    n.obj._SyncObj__commandsQueue.put_nowait((_bchr(_COMMAND_TYPE.NO_OP), None))


def appends(n: Node) -> list[tuple[Any, dict[str, Any]]]:
    return n.sent_of("append_entries")


def is_notice(n: Node, to: Any, message: dict[str, Any], committed: int) -> bool:
    """An append announcing `committed`; to `a`, which holds the log, it carries nothing
    else (`b` acknowledged nothing, so its append repeats the entries it may lack)."""
    return message["commit_index"] == committed and (to != n.a or not message["entries"])


def commit_and_apply(n: Node) -> int:
    """A majority acknowledges everything; one tick commits and applies it."""
    acknowledge(n, n.a)
    n.sent.clear()
    n.tick()
    assert n.obj.raftLastApplied == commit_index(n) == last_index(n)
    return commit_index(n)


def test_without_a_delay_the_commit_is_announced_at_once(leading: NoticeNode) -> None:
    n = leading(0.0)
    committed = commit_and_apply(n)
    notices = appends(n)
    assert {to for to, _ in notices} == {n.a, n.b}
    assert all(is_notice(n, to, m, committed) for to, m in notices)
    assert n.obj.commit_notices_held == n.obj.commit_notices_sent == 0


def test_the_next_entry_carries_a_held_commit_notice(leading: NoticeNode) -> None:
    n = leading(10.0)
    committed = commit_and_apply(n)
    assert appends(n) == []  # held: nothing went out for the commit alone
    assert n.state == LEADER

    propose(n)
    n.tick()
    sent_now = appends(n)
    assert {to for to, _ in sent_now} == {n.a, n.b}
    for _, message in sent_now:
        assert message["commit_index"] == committed  # the followers learn it here
        assert [e[1] for e in message["entries"]][-1:] == [last_index(n)]
    assert n.obj.commit_notices_held == 1
    assert n.obj.commit_notices_sent == 0
    n.sent.clear()
    n.tick()
    assert appends(n) == []  # settled: no notice follows later


def test_a_held_notice_goes_out_alone_when_due(leading: NoticeNode) -> None:
    n = leading(0.05)
    committed = commit_and_apply(n)
    assert appends(n) == []
    n.tick()
    assert appends(n) == []  # not due yet
    time.sleep(0.06)
    n.tick()
    notices = appends(n)
    assert {to for to, _ in notices} == {n.a, n.b}
    assert all(is_notice(n, to, m, committed) for to, m in notices)
    assert n.obj.commit_notices_sent == 1
    assert n.obj.commit_notices_held == 0


def test_the_tick_never_sleeps_past_a_due_notice(leading: NoticeNode) -> None:
    n = leading(0.05)
    commit_and_apply(n)
    started = time.monotonic()
    n.obj._poller.poll(30.0)  # the tick's wait for sockets; nothing will arrive
    assert time.monotonic() - started < 5.0  # woke for the notice, not after 30 s
    due = n.obj._notice_due
    assert due is not None
    time.sleep(max(0.0, due - time.monotonic()) + 0.005)
    n.tick()
    assert n.obj.commit_notices_sent == 1


def test_a_heartbeat_settles_a_held_notice(leading: NoticeNode) -> None:
    n = leading(10.0)
    committed = commit_and_apply(n)
    n.obj._SyncObj__newAppendEntriesTime = 0.0  # the heartbeat period has passed
    n.tick()
    beats = appends(n)
    assert {to for to, _ in beats} == {n.a, n.b}
    assert all(m["commit_index"] == committed for _, m in beats)
    assert n.obj._notice_due is None
    assert n.obj.commit_notices_held == 1


def test_a_leader_that_steps_down_drops_its_held_notice(leading: NoticeNode) -> None:
    n = leading(0.05)
    commit_and_apply(n)
    assert n.obj._notice_due is not None
    n.heartbeat(n.b, n.term + 1)  # a newer leader
    assert n.state == FOLLOWER
    time.sleep(0.06)
    n.sent.clear()
    n.tick()
    assert n.obj._notice_due is None
    assert n.obj.commit_notices_sent == 0
    assert not [m for _, m in appends(n)]  # a follower sends no appends
