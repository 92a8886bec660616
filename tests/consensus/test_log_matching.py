"""Followers truncate their log only from the first conflicting entry (Raft §5.3).

The follower is a real (untick'd) pysyncobj object; AppendEntries messages are fed
to its handler directly and its replies are captured, so every case is exact.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf
from raftcache.consensus.log_matching import LogMatchingSyncObj

Entry = tuple[bytes, int, int]


class Follower:
    """A follower whose only peer is a leader we play by hand."""

    def __init__(self, cls: type[SyncObj] = LogMatchingSyncObj, **kwargs: Any) -> None:
        """`kwargs`: SyncObjConf's (fullDumpFile=...) and the class's (snapshot_end=...)."""
        conf = {k: kwargs.pop(k) for k in ("fullDumpFile",) if k in kwargs}
        self.obj = cls(
            "127.0.0.1:1", ["127.0.0.1:2"], SyncObjConf(autoTick=False, **conf), **kwargs
        )
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


# -- a snapshot this log already holds -----------------------------------------------------------


def snapshot_file_end(path: str) -> tuple[int, int]:
    """The end (index, term) of a test snapshot file, which holds just "index term"."""
    index, term = Path(path).read_text().split()
    return int(index), int(term)


def stream_snapshot(follower: Follower, term: int, end: tuple[int, int]) -> None:
    """A whole snapshot stream, chunk by chunk as pysyncobj's leader sends it (the last
    part is empty); the file's content names its end."""
    snapshot_part(follower, term, 55, (b"%d %d" % end, True, False))
    snapshot_part(follower, term, 55, (b"", False, True))


@pytest.fixture
def streamed_to(tmp_path: Path) -> Any:
    """A file-backed follower holding 2..60 of term 2 (commit 55) and its own snapshot file,
    which reads the end of a received snapshot as raft.py does (snapshot_end)."""
    dump = tmp_path / "snapshot"
    f = Follower(fullDumpFile=str(dump), snapshot_end=snapshot_file_end)
    f.append(2, (1, 0), entries(2, 60, 2), commit=55)
    dump.write_text("50 2")  # this node's own snapshot, newer than what a stale stream brings
    yield f, dump
    f.close()


@pytest.mark.parametrize(
    ("commit", "end", "matched"),
    [
        pytest.param(55, (40, 2), 55, id="end-committed-here"),
        pytest.param(30, (40, 2), 40, id="end-in-the-log-uncommitted"),
    ],
)
def test_a_snapshot_this_log_already_holds_is_refused_and_answered(
    streamed_to: tuple[Follower, Path], commit: int, end: tuple[int, int], matched: int
) -> None:
    """A reply from before an earlier stream resets the leader's nextIndex (pysyncobj takes
    resets unchecked) and it streams its snapshot again to a follower that went on since.
    Loading it would drop 41..60, which the leader's matchIndex still counts (Raft's
    InstallSnapshot rule 6: keep the log, answer)."""
    follower, dump = streamed_to
    follower.obj._SyncObj__raftCommitIndex = commit
    stream_snapshot(follower, 2, end)
    assert follower.log == [(1, 0)] + [(i, 2) for i in range(2, 61)]
    assert follower.commit == commit
    assert follower.replies[-1] == {
        "type": "next_node_idx",
        "next_node_idx": matched + 1,
        "reset": False,
        "success": True,
    }
    assert dump.read_text() == "50 2", "the stale snapshot replaced this node's own"
    assert not Path(f"{dump}.1.tmp").exists()
    assert follower.obj.stale_snapshots_refused == 1


@pytest.mark.parametrize(
    "end",
    [
        pytest.param((70, 2), id="ahead-of-the-log"),
        pytest.param((58, 3), id="end-conflicts-with-an-uncommitted-entry"),
    ],
)
def test_a_snapshot_this_log_does_not_hold_still_loads(
    streamed_to: tuple[Follower, Path], end: tuple[int, int]
) -> None:
    follower, dump = streamed_to
    obj = follower.obj
    loaded: list[str] = []

    def load(clearJournal: bool) -> None:  # pysyncobj's __loadDumpFile, as far as the log goes
        loaded.append(dump.read_text())
        obj._SyncObj__raftLog.clear()
        obj._SyncObj__raftLog.add(b"", end[0] - 1, end[1])
        obj._SyncObj__raftLog.add(b"", *end)
        obj._SyncObj__raftLastApplied = end[0]

    obj._SyncObj__loadDumpFile = load
    stream_snapshot(follower, 3, end)
    assert loaded == [f"{end[0]} {end[1]}"]  # renamed into place, then loaded
    assert follower.log == [(end[0] - 1, end[1]), end]
    assert follower.commit == end[0]
    assert obj.stale_snapshots_refused == 0


def test_without_the_check_a_stale_snapshot_rolls_the_follower_back(tmp_path: Path) -> None:
    """What the check prevents, with snapshot_end unset (pysyncobj's own behaviour)."""
    dump = tmp_path / "snapshot"
    f = Follower(fullDumpFile=str(dump))
    try:
        f.append(2, (1, 0), entries(2, 60, 2), commit=55)
        obj = f.obj

        def load(clearJournal: bool) -> None:
            obj._SyncObj__raftLog.clear()
            obj._SyncObj__raftLog.add(b"", 39, 2)
            obj._SyncObj__raftLog.add(b"", 40, 2)

        obj._SyncObj__loadDumpFile = load
        stream_snapshot(f, 2, (40, 2))
        assert f.log == [(39, 2), (40, 2)]  # 41..60, acknowledged, are gone
        assert f.replies[-1]["success"] and f.replies[-1]["next_node_idx"] == 41
    finally:
        f.close()


def test_a_part_of_another_stream_ends_the_one_being_received(
    streamed_to: tuple[Follower, Path],
) -> None:
    """Leader A starts a stream in term 2 and is deposed; a term-3 leader's stream is cut
    after its first part; A, leading again, goes on with its old stream's later parts. The
    file would be two snapshots spliced: nothing may load until a stream starts over."""
    follower, dump = streamed_to
    obj = follower.obj
    loads: list[bool] = []
    obj._SyncObj__loadDumpFile = lambda clearJournal: loads.append(clearJournal)
    tmp = Path(f"{dump}.1.tmp")
    snapshot_part(follower, 3, 55, (b"70 3", True, False))  # the term-3 leader's first part
    snapshot_part(follower, 4, 55, (b" spliced", False, False))  # a later part of another
    snapshot_part(follower, 4, 55, (b"", False, True))
    assert loads == [] and tmp.read_text() == "70 3"
    assert dump.read_text() == "50 2"
    snapshot_part(follower, 4, 55, (b"80 4", True, False))  # a stream that starts over
    snapshot_part(follower, 4, 55, (b"", False, True))
    assert loads == [True] and dump.read_text() == "80 4"


def test_a_new_leader_starts_its_snapshot_streams_over(tmp_path: Path) -> None:
    """pysyncobj keeps each follower's stream position across terms (until a disconnect):
    a leader deposed mid-stream and elected again would go on where it stopped."""
    f = Follower(fullDumpFile=str(tmp_path / "snapshot"))
    try:
        streams = f.obj._SyncObj__serializer._Serializer__transmissions
        left = (tmp_path / "left-open").open("wb")
        streams[f.leader] = {"file": left, "transmitted": 1 << 20}
        f.obj._SyncObj__connectedNodes.add(f.leader)  # (pysyncobj drops a disconnected one's)
        f.obj._SyncObj__onBecomeLeader()
        assert streams == {} and left.closed
        assert f.obj._isLeader()
    finally:
        f.close()


def test_a_real_snapshot_file_this_log_holds_is_refused(tmp_path: Path) -> None:
    """The refusal as a node runs it: an LMDB snapshot streamed in parts, its end read from
    the file being received (raft._snapshot_end), the node's own file left as it was."""
    from raftcache.consensus import snapshot
    from raftcache.consensus.raft import _snapshot_end

    source = tmp_path / "leader.lmdb"
    meta = snapshot.RaftMeta(
        last=snapshot.RaftEntry(b"\x01x", 40, 2),
        previous=snapshot.RaftEntry(b"\x01y", 39, 2),
        cluster=("127.0.0.1:1", "127.0.0.1:2"),
    )
    snapshot.write(str(source), meta, b"{}", [(b"k%d" % i, b"v" * 100) for i in range(2000)])
    data = source.read_bytes()
    dump = tmp_path / "snapshot.lmdb"
    f = Follower(fullDumpFile=str(dump), snapshot_end=_snapshot_end)
    try:
        f.append(2, (1, 0), entries(2, 60, 2), commit=55)
        dump.write_bytes(b"own")
        parts = [data[i : i + 65536] for i in range(0, len(data), 65536)]
        assert len(parts) > 1
        for k, part in enumerate(parts):
            snapshot_part(f, 2, 55, (part, k == 0, False))
        snapshot_part(f, 2, 55, (b"", False, True))
        assert f.obj.stale_snapshots_refused == 1
        assert dump.read_bytes() == b"own"
        assert f.replies[-1]["success"] and f.replies[-1]["next_node_idx"] == 56
        assert f.log[-1] == (60, 2)
    finally:
        f.close()


def test_a_part_of_another_stream_in_memory_mode_ends_it_too() -> None:
    """pysyncobj without a dump file keeps the stream in bytes (nothing to close)."""
    f = Follower()
    try:
        snapshot_part(f, 3, 0, (b"abc", True, False))
        snapshot_part(f, 4, 0, (b"def", False, False))
        assert f.obj._SyncObj__serializer._Serializer__incomingTransmissionFile is None
    finally:
        f.close()
