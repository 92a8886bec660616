"""Followers truncate their log only from the first conflicting entry (Raft §5.3).

The follower is a real (untick'd) pysyncobj object; AppendEntries messages are fed
to its handler directly and its replies are captured, so every case is exact.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf
from raftcache.consensus.log_matching import LogMatchingSyncObj

Entry = tuple[bytes, int, int]


class Follower:
    """A follower whose only peer is a leader we play by hand."""

    def __init__(self, cls: type[SyncObj] = LogMatchingSyncObj) -> None:
        self.obj = cls("127.0.0.1:1", ["127.0.0.1:2"], SyncObjConf(autoTick=False))
        self.leader = next(iter(self.obj._SyncObj__otherNodes))
        self.replies: list[dict[str, Any]] = []
        self.obj._SyncObj__transport.send = lambda _node, msg: self.replies.append(msg)

    def append(
        self, term: int, prev: tuple[int, int], entries: list[Entry], commit: int = 0
    ) -> dict[str, Any]:
        message = {
            "type": "append_entries",
            "term": term,
            "commit_index": commit,
            "entries": entries,
            "prevLogIdx": prev[0],
            "prevLogTerm": prev[1],
        }
        self.obj._SyncObj__onMessageReceived(self.leader, message)
        return self.replies[-1]

    @property
    def log(self) -> list[tuple[int, int]]:
        return [(e[1], e[2]) for e in self.obj._SyncObj__raftLog]

    @property
    def commit(self) -> int:
        return int(self.obj._SyncObj__raftCommitIndex)

    def close(self) -> None:
        self.obj.destroy()


def entries(first: int, last: int, term: int) -> list[Entry]:
    return [(b"op%d" % i, i, term) for i in range(first, last + 1)]


@pytest.fixture
def follower() -> Any:
    f = Follower()
    yield f
    f.close()


def test_a_duplicate_append_keeps_the_entries_after_it(follower: Follower) -> None:
    follower.append(1, (1, 0), entries(2, 10, 1), commit=8)
    assert follower.log[-1] == (10, 1)

    # The leader resends 6..7 (a reconnect, a nextIndex reset): entries 8..10 must stay.
    reply = follower.append(1, (5, 1), entries(6, 7, 1), commit=8)

    assert follower.log == [(1, 0)] + [(i, 1) for i in range(2, 11)]
    assert reply == {"type": "next_node_idx", "next_node_idx": 8, "reset": False, "success": True}
    assert follower.commit == 8
    assert follower.obj._SyncObj__leaderCommitIndex == 8  # as the leader said


def test_a_duplicate_keeps_the_leaders_commit_index_as_told(follower: Follower) -> None:
    follower.append(1, (1, 0), entries(2, 10, 1), commit=3)
    follower.append(1, (5, 1), entries(6, 7, 1), commit=9)  # a late duplicate of 6..7
    assert follower.commit == 7  # the message vouches for entries up to 7 only
    # ...but the leader has committed 9: this follower is behind, not caught up
    assert follower.obj._SyncObj__leaderCommitIndex == 9


def test_a_heartbeat_from_behind_the_end_of_the_log_truncates_nothing(follower: Follower) -> None:
    follower.append(1, (1, 0), entries(2, 10, 1), commit=10)
    reply = follower.append(1, (4, 1), [], commit=10)
    assert follower.log[-1] == (10, 1)
    assert reply["success"] and reply["next_node_idx"] == 5
    assert follower.commit == 10  # already committed: a commit index never goes down


def test_commit_never_covers_entries_the_message_did_not_vouch_for(follower: Follower) -> None:
    follower.append(1, (1, 0), entries(2, 10, 1))
    # A new leader (term 2) whose log matches only up to 7 and whose commit index is 9: the
    # follower's 8..10 are unverified and must not become committed.
    follower.append(2, (5, 1), entries(6, 7, 1), commit=9)
    assert follower.commit == 7
    assert follower.log[-1] == (10, 1)


def test_a_conflicting_entry_truncates_from_itself(follower: Follower) -> None:
    follower.append(1, (1, 0), entries(2, 10, 1), commit=5)
    # Term 2 leader: 2..7 as before, then its own 8..9.
    reply = follower.append(2, (5, 1), entries(6, 7, 1) + entries(8, 9, 2), commit=5)
    assert follower.log == [(1, 0)] + [(i, 1) for i in range(2, 8)] + [(8, 2), (9, 2)]
    assert reply["success"] and reply["next_node_idx"] == 10


def test_new_entries_after_a_matching_prefix_are_appended_once(follower: Follower) -> None:
    follower.append(1, (1, 0), entries(2, 5, 1))
    reply = follower.append(1, (3, 1), entries(4, 8, 1))
    assert follower.log == [(1, 0)] + [(i, 1) for i in range(2, 9)]
    assert reply["next_node_idx"] == 9


def test_a_missing_previous_entry_is_refused_without_touching_the_log(follower: Follower) -> None:
    follower.append(1, (1, 0), entries(2, 5, 1))
    reply = follower.append(1, (9, 1), entries(10, 10, 1))
    assert reply["success"] is False and reply["reset"] is True
    assert follower.log[-1] == (5, 1)


def test_a_previous_entry_of_another_term_is_refused(follower: Follower) -> None:
    follower.append(1, (1, 0), entries(2, 5, 1))
    reply = follower.append(2, (5, 2), entries(6, 6, 2))
    assert reply["success"] is False
    assert follower.log[-1] == (5, 1)


def test_a_stale_term_append_is_ignored(follower: Follower) -> None:
    follower.append(3, (1, 0), entries(2, 5, 3))
    replies, commit = len(follower.replies), follower.commit
    follower.obj._SyncObj__onMessageReceived(
        follower.leader,
        {
            "type": "append_entries",
            "term": 2,
            "commit_index": 5,
            "entries": [],
            "prevLogIdx": 2,
            "prevLogTerm": 3,
        },
    )
    assert len(follower.replies) == replies
    assert follower.log[-1] == (5, 3) and follower.commit == commit


def install_snapshot(follower: Follower, previous: Entry, last: Entry) -> None:
    """The follower's state right after loading the leader's snapshot, as pysyncobj's
    __loadDumpFile leaves it: the log is the snapshot's last two entries, both applied."""
    log = follower.obj._SyncObj__raftLog
    log.clear()
    log.add(*previous)
    log.add(*last)
    follower.obj._SyncObj__raftLastApplied = last[1]
    follower.obj._SyncObj__raftCommitIndex = last[1]


@pytest.mark.parametrize(
    ("prev", "sent"),
    [
        pytest.param((99, 1), entries(100, 102, 1), id="late-append-from-before-the-snapshot"),
        pytest.param((99, 1), entries(100, 100, 1), id="duplicate-of-the-snapshot-entry"),
    ],
)
def test_an_append_overlapping_a_just_installed_snapshot_truncates_nothing(
    follower: Follower,
    caplog: pytest.LogCaptureFixture,
    prev: tuple[int, int],
    sent: list[Entry],
) -> None:
    """The leader streams its snapshot while appends it sent earlier (from a nextIndex inside
    the snapshot) are still in flight. pysyncobj alone deleted the applied snapshot entry and
    logged CRITICAL "truncating already-applied log entries" (the chaos runs showed it)."""
    install_snapshot(follower, (b"op99", 99, 1), (b"op100", 100, 1))

    reply = follower.append(1, prev, sent, commit=100)

    assert follower.log == [(99, 1), (100, 1)] + [(e[1], e[2]) for e in sent[1:]]
    assert reply["success"] and reply["next_node_idx"] == sent[-1][1] + 1
    assert not [r for r in caplog.records if r.levelno >= logging.CRITICAL]


def test_upstream_pysyncobj_still_truncates_so_the_fix_is_still_needed() -> None:
    """When this fails, pysyncobj has fixed the bug: drop LogMatchingSyncObj."""
    plain = Follower(SyncObj)
    try:
        plain.append(1, (1, 0), entries(2, 10, 1))
        plain.append(1, (5, 1), entries(6, 7, 1))
        assert plain.log[-1] == (7, 1)
    finally:
        plain.close()


# -- snapshot messages -------------------------------------------------------------------------


def snapshot_part(follower: Follower, term: int, commit: int, data: Any) -> None:
    """A snapshot message as pysyncobj's leader sends it: no prevLogIdx, the leader's commit
    index, and a chunk of the snapshot (None while its forked serializer still writes it)."""
    follower.obj._SyncObj__onMessageReceived(
        follower.leader,
        {"type": "append_entries", "term": term, "commit_index": commit, "serialized": data},
    )


def deposed_leader_tail(follower: Follower) -> list[int]:
    """Entries 2..3 committed; 4..10 of term 1 never reached a majority (a deposed leader's).
    Returns the commit indexes written to the journal from now on."""
    follower.append(1, (1, 0), entries(2, 10, 1), commit=3)
    assert follower.commit == 3
    persisted: list[int] = []
    journal = follower.obj._SyncObj__raftLog
    keep = journal.setRaftCommitIndex
    journal.setRaftCommitIndex = lambda index: (persisted.append(index), keep(index))
    return persisted


@pytest.mark.parametrize("data", [None, (b"first chunk", True, False)])
def test_a_snapshot_message_never_commits_the_followers_own_tail(
    follower: Follower, data: Any
) -> None:
    persisted = deposed_leader_tail(follower)
    follower.obj._SyncObj__serializer.setTransmissionData = lambda _data: False  # not the last
    # A term-2 leader that compacted past index 10 streams its snapshot (commit index 50).
    snapshot_part(follower, 2, 50, data)
    assert follower.commit == 3, "the deposed leader's uncommitted 4..10 became committed"
    assert max(persisted, default=3) == 3  # nor is a higher one written, even for a moment
    assert follower.log[-1] == (10, 1)
    assert follower.obj._SyncObj__leaderCommitIndex == 50  # what the leader said it committed


def test_the_snapshot_that_completes_commits_up_to_its_last_entry(follower: Follower) -> None:
    persisted = deposed_leader_tail(follower)
    obj = follower.obj

    def load(clearJournal: bool) -> None:  # pysyncobj's __loadDumpFile, of a snapshot at 40
        obj._SyncObj__raftLog.clear()
        obj._SyncObj__raftLog.add(b"", 39, 2)
        obj._SyncObj__raftLog.add(b"", 40, 2)
        obj._SyncObj__raftLastApplied = 40

    obj._SyncObj__serializer.setTransmissionData = lambda _data: True  # the last chunk
    obj._SyncObj__loadDumpFile = load
    # what this node proposed as leader of term 1 at 5 and 10, and (say) at 41
    answers: list[tuple[int, int]] = []
    for index in (5, 10, 41):
        obj._SyncObj__commandsWaitingCommit[index].append(
            (1, lambda _res, reason, index=index: answers.append((index, reason)))
        )
    snapshot_part(follower, 2, 50, (b"last chunk", False, True))
    assert follower.log == [(39, 2), (40, 2)]
    assert follower.commit == 40  # the snapshot's entries are committed; 41..50 not here yet
    assert persisted[-1] == 40
    # 5 and 10 never apply here now: unknown at once, not at their commit timeout; 41 is
    # decided when the entry at 41 applies (its term says whose it is)
    assert answers == [(5, FAIL_REASON.UNKNOWN_OUTCOME), (10, FAIL_REASON.UNKNOWN_OUTCOME)]
    assert list(obj._SyncObj__commandsWaitingCommit) == [41]


def test_plain_pysyncobj_commits_the_tail_on_a_snapshot_message() -> None:
    """Why the override exists: pysyncobj 0.3.17 itself takes min(leader commit, last index)."""
    f = Follower(SyncObj)
    try:
        deposed_leader_tail(f)
        snapshot_part(f, 2, 50, None)
        assert f.commit == 10
    finally:
        f.close()
