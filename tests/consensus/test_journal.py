"""FlushedJournal: msync at least once a second, fsync the term and vote before use."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pysyncobj.syncobj
import pytest
from pysyncobj.journal import MemoryJournal, MetaStorer
from raftcache.consensus import journal as flushed
from raftcache.consensus.journal import FlushedJournal

from tests.consensus.harness import JOURNAL, RaftHarness, journal_of, keys, write_keys


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[FlushedJournal]:
    journal = FlushedJournal(str(tmp_path / JOURNAL))
    try:
        yield journal
    finally:
        journal._destroy()


class FsyncSpy:
    """Records which file each fsync reached and what the term file held at that moment."""

    def __init__(self, meta_path: Path) -> None:
        self.meta_path = os.path.realpath(meta_path)
        self.synced: list[str] = []
        self.meta_seen: list[dict[str, object]] = []
        self._fsync = os.fsync

    def __call__(self, fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        self.synced.append(target)
        if target == self.meta_path:
            self.meta_seen.append(MetaStorer(self.meta_path).getMeta())
        self._fsync(fd)


def test_every_syncobj_journal_file_is_a_flushed_journal(tmp_path: Path) -> None:
    assert pysyncobj.syncobj.createJournal is flushed._create_journal
    assert isinstance(pysyncobj.syncobj.createJournal(None), MemoryJournal)
    journal = pysyncobj.syncobj.createJournal(str(tmp_path / JOURNAL))
    try:
        assert isinstance(journal, FlushedJournal)
    finally:
        journal._destroy()


def test_one_second_timer_flushes_and_stores_the_commit_index(
    standalone: FlushedJournal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(standalone, "flush", lambda: calls.append("flush"))
    standalone.add(b"entry", 1, 1)
    standalone.setRaftCommitIndex(1)

    standalone.onOneSecondTimer()

    assert calls == ["flush"]
    assert standalone.flushes == 1
    assert MetaStorer(str(tmp_path / JOURNAL) + ".meta").getMeta()["raftCommitIndex"] == 1


def test_set_current_term_fsyncs_the_term_file_and_its_directory(
    standalone: FlushedJournal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = FsyncSpy(tmp_path / (JOURNAL + ".meta"))
    monkeypatch.setattr(os, "fsync", spy)

    standalone.setCurrentTerm(7, "127.0.0.1:7001")

    assert spy.synced == [spy.meta_path, os.path.realpath(tmp_path)]
    # The fsync covered the new term and vote, not an older file.
    assert spy.meta_seen == [{"currentTerm": 7, "votedForNodeId": "127.0.0.1:7001"}]


def test_a_running_node_flushes_its_journal_every_second(raft: RaftHarness, tmp_path: Path) -> None:
    node, _replica = raft.start(tmp_path / "node")
    journal = journal_of(node)
    flush = journal.flush
    times: list[float] = []

    def spy() -> None:
        times.append(time.monotonic())
        flush()

    journal.flush = spy  # type: ignore[method-assign]
    counted = journal.flushes
    started = time.monotonic()
    while time.monotonic() - started < 2.5:
        write_keys(node, keys("k", 5))  # keep the journal changing while we watch
        time.sleep(0.05)

    assert len(times) >= 2, times
    assert journal.flushes - counted == len(times)
    gaps = [b - a for a, b in zip([started, *times], times, strict=False)]
    assert max(gaps) < 2.0, gaps  # one second, plus slack for a stalled tick on a busy host


def test_a_node_fsyncs_its_vote_when_it_starts_an_election(
    raft: RaftHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "node"
    spy = FsyncSpy(data_dir / (JOURNAL + ".meta"))
    monkeypatch.setattr(os, "fsync", spy)

    node, _replica = raft.start(data_dir)

    assert spy.meta_path in spy.synced
    assert os.path.realpath(data_dir) in spy.synced
    assert spy.meta_seen[-1]["currentTerm"] == node.status().term >= 1
    assert spy.meta_seen[-1]["votedForNodeId"] == node.config.self_addr
