"""Start-up repair of the on-disk Raft state, run before pysyncobj opens it.

pysyncobj trap 2 (PYSYNCOBJ.md): a crash after the new snapshot file is renamed
into place but before the journal is truncated leaves a journal whose first
entries precede the snapshot. On load, pysyncobj sees that the journal does not
start with the snapshot's two entries and clears it, dropping acknowledged
entries that came after the snapshot. We finish the interrupted truncation
first, so the journal starts exactly at the snapshot and nothing is dropped.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

from raftcache.consensus import snapshot
from raftcache.consensus.journal import FlushedJournal


@dataclass(frozen=True)
class RecoveryReport:
    removed_partial_files: tuple[str, ...]
    truncated_entries: int  # journal entries before the snapshot that were dropped
    journal_entries: int  # entries left in the journal


def remove_partial_files(dump_path: str) -> list[str]:
    """Delete half-written snapshot files a crash left behind (never the snapshot itself)."""
    removed = []
    leftovers = glob.glob(glob.escape(dump_path) + ".writing*")
    leftovers += [dump_path + s for s in (".tmp", ".1.tmp", "-lock")]
    leftovers.append(os.path.join(os.path.dirname(dump_path), "raft.journal.rewrite"))
    for leftover in leftovers:
        if os.path.exists(leftover):
            os.unlink(leftover)
            removed.append(leftover)
    return removed


def repair(journal_path: str, dump_path: str) -> RecoveryReport:
    """Make the journal start at the snapshot's entries when a crash interrupted compaction."""
    removed = tuple(remove_partial_files(dump_path))
    if not (os.path.exists(journal_path) and os.path.exists(dump_path)):
        return RecoveryReport(removed, 0, 0)
    meta = snapshot.read_raft_meta(dump_path)
    journal = FlushedJournal(journal_path)
    try:
        first = meta.previous.as_tuple()
        second = meta.last.as_tuple()
        position = _find(journal, first[1])
        truncated = 0
        if (
            position is not None
            and position > 0
            and position + 1 < len(journal)
            and journal[position] == first
            and journal[position + 1] == second
        ):
            journal.deleteEntriesTo(position)
            journal.flush()
            truncated = position
        return RecoveryReport(removed, truncated, len(journal))
    finally:
        journal._destroy()


def _find(journal: FlushedJournal, index: int) -> int | None:
    if len(journal) == 0:
        return None
    offset: int = index - journal[0][1]
    if 0 <= offset < len(journal) and journal[offset][1] == index:
        return offset
    return None
