"""A pysyncobj journal that actually reaches the disk.

pysyncobj's FileJournal writes through an mmap and never flushes it, and stores
the Raft term and vote without fsync (PYSYNCOBJ.md, "Durability"). This subclass
msyncs the journal once a second (pysyncobj's one-second timer, on the tick
thread) and fsyncs the term/vote file before the vote it records is sent.
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any

import pysyncobj.syncobj as _syncobj
from pysyncobj.journal import (
    FIRST_RECORD_OFFSET,
    LAST_RECORD_OFFSET_OFFSET,
    FileJournal,
    MemoryJournal,
    ResizableFile,
)
from pysyncobj.pickle import to_bytes
from raftcache.consensus.durations import Durations


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
    """FileJournal that is msync'ed at least once a second, fsyncs term and vote, and
    truncates its head (log compaction) crash-safely."""

    def __init__(self, journal_file: str) -> None:
        self.flush_durations = Durations()  # msync of the journal, fsync of term and vote
        super().__init__(journal_file)
        self._path = journal_file
        self._meta_path = journal_file + ".meta"
        self._dir = os.path.dirname(os.path.abspath(journal_file))
        self.flushes = 0

    def onOneSecondTimer(self) -> None:
        super().onOneSecondTimer()
        started = time.perf_counter_ns()
        self.flush()
        self.flush_durations.observe_ns(time.perf_counter_ns() - started)
        self.flushes += 1

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:
        super().setCurrentTerm(term, votedForNodeId)
        started = time.perf_counter_ns()
        _fsync_path(self._meta_path)
        fsync_dir(self._dir)
        self.flush_durations.observe_ns(time.perf_counter_ns() - started)

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop the first `entryTo` entries by writing a new file and renaming it in place.

        pysyncobj rewrites the kept entries over the old file from offset 0, so a kill in
        the middle leaves a journal that lost its tail (acknowledged entries). Here the
        file is always either the old or the new journal, and it shrinks to fit.
        """
        entries: list[tuple[bytes, int, int]] = getattr(self, "_FileJournal__journal")  # noqa: B009
        keep = entries[entryTo:]
        body = bytearray()
        for command, index, term in keep:
            record = struct.pack("<QQ", index, term) + to_bytes(command)
            size = struct.pack("<I", len(record))
            body += size + record + size
        end = FIRST_RECORD_OFFSET + len(body)
        header = self._FileJournal__getDefaultHeader()[:LAST_RECORD_OFFSET_OFFSET]
        tmp = self._path + ".rewrite"
        with open(tmp, "wb") as f:
            f.write(header + struct.pack("<I", end) + bytes(body))
            f.flush()
            os.fsync(f.fileno())
        old_file: Any = getattr(self, "_FileJournal__journalFile")  # noqa: B009
        old_file._destroy()
        os.replace(tmp, self._path)
        fsync_dir(self._dir)
        self._FileJournal__journalFile = ResizableFile(self._path)
        self._FileJournal__journal = keep
        self._FileJournal__currentOffset = end


def _create_journal(journalFile: str | None = None) -> Any:
    if journalFile is None:
        return MemoryJournal()
    return FlushedJournal(journalFile)


def install() -> None:
    """Make every SyncObj created from now on use FlushedJournal for its journal file."""
    _syncobj.createJournal = _create_journal
