"""A pysyncobj journal that actually reaches the disk.

pysyncobj's FileJournal writes through an mmap and never flushes it, and stores
the Raft term and vote without fsync (PYSYNCOBJ.md, "Durability"). This subclass
msyncs the journal once a second (pysyncobj's one-second timer, on the tick
thread) and fsyncs the term/vote file before the vote it records is sent.
"""

from __future__ import annotations

import os
from typing import Any

import pysyncobj.syncobj as _syncobj
from pysyncobj.journal import FileJournal, MemoryJournal


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """Make a rename or create inside `path` durable."""
    _fsync_path(path)


class FlushedJournal(FileJournal):  # type: ignore[misc]
    """FileJournal that is msync'ed at least once a second and fsyncs term and vote."""

    def __init__(self, journal_file: str) -> None:
        super().__init__(journal_file)
        self._meta_path = journal_file + ".meta"
        self._dir = os.path.dirname(os.path.abspath(journal_file))
        self.flushes = 0

    def onOneSecondTimer(self) -> None:
        super().onOneSecondTimer()
        self.flush()
        self.flushes += 1

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        super().setCurrentTerm(term, votedForNodeId)
        _fsync_path(self._meta_path)
        fsync_dir(self._dir)


def _create_journal(journalFile: str | None = None) -> Any:
    if journalFile is None:
        return MemoryJournal()
    return FlushedJournal(journalFile)


def install() -> None:
    """Make every SyncObj created from now on use FlushedJournal for its journal file."""
    _syncobj.createJournal = _create_journal
