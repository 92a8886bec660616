"""Crash-safety details of the files a journal-mode node keeps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pysyncobj.journal import FileJournal
from raftcache.consensus import raft as raft_module
from raftcache.consensus import recovery
from raftcache.consensus.journal import FlushedJournal


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
