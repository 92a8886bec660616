"""Crash-safety details of the files a journal-mode node keeps."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pysyncobj.journal import FileJournal
from raftcache.consensus import raft as raft_module
from raftcache.consensus import recovery
from raftcache.consensus.journal import FlushedJournal

from tests.consensus.harness import wait_for, write_keys


def _journal(path: Path, count: int) -> FlushedJournal:
    journal = FlushedJournal(str(path))
    for i in range(1, count + 1):
        journal.add(f"command-{i}".encode() * 10, i, 1)
    journal.flush()
    return journal


def test_compaction_rewrite_keeps_the_tail_and_shrinks_the_file(tmp_path: Path) -> None:
    path = tmp_path / "raft.journal"
    journal = _journal(path, 200)
    size_before = path.stat().st_size
    journal.deleteEntriesTo(150)
    journal.add(b"after", 201, 2)
    journal._destroy()
    reopened = FileJournal(str(path))
    entries = [reopened[i] for i in range(len(reopened))]
    reopened._destroy()
    assert [e[1] for e in entries] == list(range(151, 202))
    assert entries[0][0] == b"command-151" * 10 and entries[-1] == (b"after", 201, 2)
    assert path.stat().st_size < size_before


def test_crash_during_compaction_rewrite_leaves_the_whole_old_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "raft.journal"
    journal = _journal(path, 100)

    def crash(*_args: object) -> None:
        raise KeyboardInterrupt("simulated kill before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        journal.deleteEntriesTo(60)
    monkeypatch.undo()
    reopened = FileJournal(str(path))
    indexes = [reopened[i][1] for i in range(len(reopened))]
    reopened._destroy()
    assert indexes == list(range(1, 101)), "a kill mid-compaction must not lose entries"
    assert recovery.remove_partial_files(str(tmp_path / "snapshot.lmdb")) == [
        str(tmp_path / "raft.journal.rewrite")
    ]


def test_partial_snapshots_of_any_writer_process_are_removed(tmp_path: Path) -> None:
    dump = tmp_path / "snapshot.lmdb"
    dump.write_bytes(b"the snapshot")
    for name in ("snapshot.lmdb.writing.123", "snapshot.lmdb.writing.456", "snapshot.lmdb.1.tmp"):
        (tmp_path / name).write_bytes(b"partial")
    removed = recovery.remove_partial_files(str(dump))
    assert len(removed) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot.lmdb"]


def test_orphaned_memory_scratch_dirs_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    orphan = tmp_path / f"raftcache-{dead_pid}-abc"
    alive = tmp_path / f"raftcache-{os.getpid()}-def"
    other = tmp_path / "unrelated"
    for d in (orphan, alive, other):
        d.mkdir()
        (d / "snapshot.lmdb").write_bytes(b"x" * 100)
    raft_module._remove_orphaned_scratch(str(tmp_path))
    assert not orphan.exists()
    assert alive.exists() and other.exists()


def test_snapshot_round_trip_with_keys_longer_than_lmdb_allows(tmp_path: Path) -> None:
    from raftcache.consensus import snapshot

    long_keys = [b"k" * 512, b"x" * 64 * 1024, b"short"]
    items = [(k, b"value-" + k[:8]) for k in long_keys]
    entry = snapshot.RaftEntry(b"cmd", 7, 1)
    meta = snapshot.RaftMeta(last=entry, previous=snapshot.RaftEntry(b"c", 6, 1), cluster=("a:1",))
    path = str(tmp_path / "snapshot.lmdb")
    snapshot.write(path, meta, b"{}", items)
    with snapshot.reader(path) as (raft_meta, state_meta, stored):
        assert list(stored) == items
        assert raft_meta == meta and state_meta == b"{}"


def test_a_failing_snapshot_writer_is_retried_later_not_on_every_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raftcache.consensus import RaftNode
    from raftcache.node.replica import Replica

    from tests.consensus.harness import lone_journal_config

    replica = Replica()
    # the log is over the threshold on every tick
    config = lone_journal_config(tmp_path, compaction_min_entries=2)
    forks: list[int] = []
    real_fork = os.fork

    def counting_fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid

    def broken_items() -> object:
        raise RuntimeError("simulated snapshot writer failure")

    monkeypatch.setattr(os, "fork", counting_fork)
    monkeypatch.setattr(replica, "snapshot_items", broken_items)
    node = RaftNode(config, replica)
    try:
        wait_for(node.is_leader, "the single node to elect itself")
        write_keys(node, [f"k{i}".encode() for i in range(10)])
        wait_for(lambda: forks, "a snapshot writer to start")
        time.sleep(1.5)  # ~150 ticks: without a back-off pysyncobj forks again on each
        assert len(forks) == 1, f"{len(forks)} writers forked after one failure"
        assert node.snapshots_taken == 0
        assert not list(tmp_path.glob("*.writing*")), "a failed writer must remove its file"
    finally:
        node.destroy()


def test_a_writer_that_cannot_start_is_a_failure_retried_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception before the fork (fork itself failing, or the snapshot's voters not
    readable): pysyncobj's serializer swallowed it and never called the writer again, so no
    snapshot was ever taken again and no follower behind could be streamed one."""
    from raftcache.consensus import RaftNode, raft
    from raftcache.node.replica import Replica

    from tests.consensus.harness import lone_journal_config

    monkeypatch.setattr(raft, "_SNAPSHOT_RETRY_S", 0.3)
    config = lone_journal_config(tmp_path, compaction_min_entries=2)
    refused: list[int] = []
    real = RaftNode._voters_at

    def fails_once(self: RaftNode, index: int, cluster: object) -> tuple[str, ...]:
        if not refused:
            refused.append(index)
            raise RuntimeError("simulated: cannot start the writer")
        return real(self, index, cluster)

    monkeypatch.setattr(RaftNode, "_voters_at", fails_once)
    node = RaftNode(config, Replica())
    try:
        wait_for(node.is_leader, "the single node to elect itself")
        write_keys(node, [f"k{i}".encode() for i in range(10)])
        wait_for(lambda: refused, "a snapshot attempt")
        wait_for(lambda: node.snapshot_failures == 1, "the attempt counted as failed")
        wait_for(lambda: node.snapshots_taken >= 1, "a snapshot after the retry delay")
    finally:
        node.destroy()
