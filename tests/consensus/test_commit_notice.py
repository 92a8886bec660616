"""Commit notices (consensus/commit_notice.py), message by message.

As in test_lease.py: a real, untick'd CommitNoticeSyncObj with two peers played by hand,
every message it sends captured, its ticks run explicitly.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from raftcache.consensus.commit_notice import COMMIT_NOTICE_DELAY_S, CommitNoticeSyncObj

from tests.consensus.test_lease import ack, noop_index
from tests.consensus.test_prevote import FOLLOWER, Node, sent  # noqa: F401


@pytest.fixture
def leader(sent: list[tuple[Any, dict[str, Any]]]) -> Iterator[Node]:  # noqa: F811
    n = Node(sent, cls=CommitNoticeSyncObj)
    n.obj._SyncObj__conf.appendEntriesUseBatch = False  # as RaftNode runs it
    n.heartbeat(n.a, 1)
    n.become_leader()
    n.obj._SyncObj__pipeNotifier = SimpleNamespace(notify=lambda: None)  # no tick thread
    n.obj._SyncObj__connectedNodes.update({n.a, n.b})  # sends are captured, not refused
    n.obj._SyncObj__raftNextIndex[n.b] = noop_index(n) + 1  # b holds the no-op too
    n.obj._SyncObj__newAppendEntriesTime = time.monotonic() + 60  # no heartbeat meanwhile
    n.sent.clear()
    yield n
    n.close()


def appends(n: Node) -> list[tuple[Any, dict[str, Any]]]:
    return n.sent_of("append_entries")


def test_a_commit_with_nothing_else_to_send_is_not_announced_at_once(leader: Node) -> None:
    ack(leader, leader.a, time.monotonic())  # the no-op committed and applied
    assert leader.obj._SyncObj__raftLastApplied == noop_index(leader)
    assert appends(leader) == []
    assert leader.obj.commit_notices_held == 1


def test_the_next_entry_carries_the_notice(leader: Node) -> None:
    ack(leader, leader.a, time.monotonic())
    leader.obj._applyCommand(b"\x00next", None)
    leader.tick()
    out = appends(leader)
    assert {to for to, _ in out} == {leader.a, leader.b}
    for _, message in out:
        assert message["commit_index"] == noop_index(leader)  # the commit, told with it
        assert [e[0] for e in message["entries"]] == [b"\x00next"]
    assert leader.obj.commit_notices_carried == 1
    assert leader.obj._notice_due == 0.0


def test_with_no_entry_in_time_the_notice_goes_alone(leader: Node) -> None:
    ack(leader, leader.a, time.monotonic())
    leader.tick()
    assert appends(leader) == []  # still waiting
    time.sleep(COMMIT_NOTICE_DELAY_S * 1.5)
    leader.tick()
    out = appends(leader)
    assert {to for to, _ in out} == {leader.a, leader.b}
    for _, message in out:
        assert message["commit_index"] == noop_index(leader)
        assert message["entries"] == []
    assert leader.obj.commit_notices_carried == 0
    assert leader.obj._notice_due == 0.0


def test_a_follower_with_entries_to_get_is_told_at_once(leader: Node) -> None:
    leader.obj._SyncObj__raftNextIndex[leader.b] = noop_index(leader)  # b lacks the no-op
    ack(leader, leader.a, time.monotonic())
    out = appends(leader)
    assert leader.b in {to for to, _ in out}
    assert all(m["commit_index"] == noop_index(leader) for _, m in out)
    assert leader.obj.commit_notices_held == 0


def test_a_follower_that_is_down_does_not_stop_the_wait(leader: Node) -> None:
    leader.obj._SyncObj__raftNextIndex[leader.b] = noop_index(leader)  # b lacks the no-op
    leader.obj._SyncObj__connectedNodes.discard(leader.b)  # and is unreachable
    ack(leader, leader.a, time.monotonic())
    assert appends(leader) == []
    assert leader.obj.commit_notices_held == 1


def test_the_poll_waits_no_longer_than_the_notice(leader: Node) -> None:
    ack(leader, leader.a, time.monotonic())
    started = time.monotonic()
    leader.obj._poller.poll(5.0)  # nothing to read: only the notice's time ends it
    assert time.monotonic() - started < 0.5  # 5 ms due, with room for a loaded host


def test_a_new_term_as_leader_starts_with_no_notice_waiting(leader: Node) -> None:
    ack(leader, leader.a, time.monotonic())
    assert leader.obj._notice_due
    leader.heartbeat(leader.b, leader.term + 1)  # deposed...
    leader.become_leader()  # ...and elected again: its no-op append tells the commit
    assert leader.obj._notice_due == 0.0


def test_a_leader_that_steps_down_forgets_its_notice(leader: Node) -> None:
    ack(leader, leader.a, time.monotonic())
    assert leader.obj._notice_due
    leader.heartbeat(leader.b, leader.term + 1)  # a newer leader
    assert leader.state == FOLLOWER
    leader.obj._poller.poll(0.0)
    assert leader.obj._notice_due == 0.0  # no poll cut short from now on
