"""Start-up recovery: pysyncobj traps 1 and 2 (shared/PYSYNCOBJ.md) must not lose entries.

Trap 2 is a crash after the new snapshot was renamed into place but before the
journal was truncated. The crash state is produced for real: a node whose journal
refuses to truncate takes a snapshot (the dump is renamed into place, the journal
keeps every entry from index 1), goes on acknowledging entries after the snapshot,
and is stopped. That directory is exactly what a crash in the window leaves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from raftcache.consensus import Durability, Outcome, recovery, snapshot
from raftcache.consensus.journal import FlushedJournal
from raftcache.node import commands

from tests.consensus.harness import (
    DUMP,
    JOURNAL,
    RaftHarness,
    command,
    copy_dir,
    journal_of,
    keys,
    missing_keys,
    propose_all,
    read_journal,
    set_op,
    take_snapshot,
    value_of,
    wait_applied_all,
    write_keys,
)


@dataclass(frozen=True)
class CrashState:
    data_dir: Path
    addr: str
    before: list[bytes]  # acknowledged before the snapshot
    after: list[bytes]  # acknowledged after it: only the journal has them
    snapshot: snapshot.RaftMeta
    journal: list[tuple[bytes, int, int]]  # the whole untruncated journal


@pytest.fixture(scope="module")
def crash_state(tmp_path_factory: pytest.TempPathFactory) -> CrashState:
    data_dir = tmp_path_factory.mktemp("crash") / "node"
    harness = RaftHarness()
    try:
        node, _replica = harness.start(data_dir)
        before = write_keys(node, keys("before-", 40))
        # The crash window: the dump is renamed into place, the truncation never happens.
        journal_of(node).deleteEntriesTo = lambda _entry_to: None
        meta = take_snapshot(node)
        after = write_keys(node, keys("after-", 30))
        addr = node.config.self_addr
        harness.stop(node)
    finally:
        harness.close()
    journal = read_journal(data_dir / JOURNAL)
    # The state this file is about: a journal from index 1 past a newer snapshot.
    assert journal[0][1] == 1
    assert journal[0][1] < meta.previous.index < meta.last.index < journal[-1][1]
    assert meta.last.index - journal[0][1] >= len(before)
    assert journal[-1][1] - meta.last.index >= len(after)
    return CrashState(data_dir, addr, before, after, meta, journal)


def test_restart_after_interrupted_compaction_keeps_every_acknowledged_entry(
    crash_state: CrashState, raft: RaftHarness, tmp_path: Path
) -> None:
    data_dir = copy_dir(crash_state.data_dir, tmp_path / "node")
    node, replica = raft.start(data_dir, crash_state.addr)
    wait_applied_all(node)

    assert node.recovery is not None and node.recovery.truncated_entries > 0
    assert missing_keys(replica, crash_state.before + crash_state.after) == []
    assert replica.key_count() == len(crash_state.before) + len(crash_state.after)
    assert journal_of(node)[0] == crash_state.snapshot.previous.as_tuple()


def test_without_the_repair_pysyncobj_drops_entries_after_the_snapshot(
    crash_state: CrashState, raft: RaftHarness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves the test above can fail: pysyncobj alone clears the journal (trap 2)."""
    monkeypatch.setattr(
        recovery, "repair", lambda _journal, _dump: recovery.RecoveryReport((), 0, 0)
    )
    data_dir = copy_dir(crash_state.data_dir, tmp_path / "node")
    node, replica = raft.start(data_dir, crash_state.addr)
    wait_applied_all(node)

    assert missing_keys(replica, crash_state.before) == []
    assert missing_keys(replica, crash_state.after) == crash_state.after


def test_repair_truncates_the_journal_to_start_at_the_snapshot(
    crash_state: CrashState, tmp_path: Path
) -> None:
    data_dir = copy_dir(crash_state.data_dir, tmp_path / "node")
    journal_path, dump_path = str(data_dir / JOURNAL), str(data_dir / DUMP)
    meta = crash_state.snapshot
    kept = crash_state.journal[meta.previous.index - 1 :]

    report = recovery.repair(journal_path, dump_path)

    assert report.truncated_entries == meta.previous.index - 1 > 0
    assert report.journal_entries == len(kept)
    assert report.removed_partial_files == ()
    repaired = read_journal(data_dir / JOURNAL)
    assert repaired[0] == meta.previous.as_tuple()
    assert repaired[1] == meta.last.as_tuple()
    assert repaired == kept  # every entry after the snapshot, unchanged and in order

    again = recovery.repair(journal_path, dump_path)
    assert (again.truncated_entries, again.journal_entries) == (0, len(kept))
    assert read_journal(data_dir / JOURNAL) == kept


def test_repair_leaves_a_consistent_directory_alone(raft: RaftHarness, tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    node, _replica = raft.start(data_dir)
    write_keys(node, keys("k", 10))
    take_snapshot(node)
    write_keys(node, keys("j", 5))
    raft.stop(node)
    journal = read_journal(data_dir / JOURNAL)

    report = recovery.repair(str(data_dir / JOURNAL), str(data_dir / DUMP))

    assert report == recovery.RecoveryReport((), 0, len(journal))
    assert read_journal(data_dir / JOURNAL) == journal


def test_repair_without_a_snapshot_or_journal_does_nothing(tmp_path: Path) -> None:
    journal, dump = tmp_path / JOURNAL, tmp_path / DUMP
    assert recovery.repair(str(journal), str(dump)) == recovery.RecoveryReport((), 0, 0)
    assert list(tmp_path.iterdir()) == []


def test_partial_snapshot_files_are_removed_and_the_snapshot_kept(
    crash_state: CrashState, tmp_path: Path
) -> None:
    data_dir = copy_dir(crash_state.data_dir, tmp_path / "node")
    dump = data_dir / DUMP
    # What a crashed writer child (.writing) or a half-received transfer (.1.tmp) leaves.
    leftovers = [Path(str(dump) + s) for s in (".writing", ".writing-lock", ".1.tmp", ".tmp")]
    for path in leftovers:
        path.write_bytes(b"half written")
    before = dump.read_bytes()

    removed = recovery.remove_partial_files(str(dump))

    assert sorted(removed) == sorted(str(p) for p in leftovers)
    assert not any(p.exists() for p in leftovers)
    assert dump.read_bytes() == before
    assert snapshot.read_raft_meta(str(dump)) == crash_state.snapshot
    assert sorted(p.name for p in data_dir.iterdir()) == sorted([DUMP, JOURNAL, JOURNAL + ".meta"])


def test_node_start_removes_a_crashed_writers_leftovers(
    crash_state: CrashState, raft: RaftHarness, tmp_path: Path
) -> None:
    data_dir = copy_dir(crash_state.data_dir, tmp_path / "node")
    partial = Path(str(data_dir / DUMP) + ".writing")
    partial.write_bytes(b"half written by a killed child")
    node, replica = raft.start(data_dir, crash_state.addr)
    wait_applied_all(node)

    assert node.recovery is not None
    assert node.recovery.removed_partial_files == (str(partial),)
    assert not partial.exists()
    assert missing_keys(replica, crash_state.before + crash_state.after) == []


# ---------------------------------------------------------------- trap 1


def test_journal_mode_always_keeps_the_dump_next_to_the_journal(
    raft: RaftHarness, tmp_path: Path
) -> None:
    data_dir = tmp_path / "node"
    node, _replica = raft.start(data_dir)
    conf = node._syncobj.conf
    assert conf.journalFile == str(data_dir / JOURNAL)
    assert conf.fullDumpFile == str(data_dir / DUMP)
    assert conf.serializer is not None and conf.deserializer is not None
    assert isinstance(journal_of(node), FlushedJournal)


def test_memory_mode_dumps_to_a_scratch_dir_that_destroy_removes(
    raft: RaftHarness, tmp_path: Path
) -> None:
    node, _replica = raft.start(tmp_path / "unused", durability=Durability.MEMORY)
    conf = node._syncobj.conf
    assert conf.journalFile is None
    scratch = os.path.dirname(conf.fullDumpFile)
    if os.path.isdir("/dev/shm"):
        assert scratch.startswith("/dev/shm/")
    write_keys(node, keys("k", 5))
    take_snapshot(node)
    assert os.path.isfile(conf.fullDumpFile)
    raft.stop(node)
    assert not os.path.exists(scratch)
    assert not (tmp_path / "unused").exists()


def test_restart_after_compactions_keeps_all_data(raft: RaftHarness, tmp_path: Path) -> None:
    """Trap 1: a journal without a dump loses everything after a compaction and restart."""
    data_dir = tmp_path / "node"
    node, replica = raft.start(data_dir)
    addr = node.config.self_addr
    written: list[bytes] = []
    for cycle in range(2):
        written += write_keys(node, keys(f"c{cycle}-before-", 40))
        meta = take_snapshot(node)
        assert journal_of(node)[0] == meta.previous.as_tuple()  # the log was compacted
        written += write_keys(node, keys(f"c{cycle}-after-", 20))
        digest = replica.digest()
        raft.stop(node)

        node, replica = raft.start(data_dir, addr)
        wait_applied_all(node)
        assert missing_keys(replica, written) == []
        assert replica.key_count() == len(written)
        assert replica.digest() == digest
        assert node.recovery is not None and node.recovery.truncated_entries == 0


def test_restart_right_after_a_compaction_restores_from_the_snapshot_alone(
    raft: RaftHarness, tmp_path: Path
) -> None:
    data_dir = tmp_path / "node"
    node, replica = raft.start(data_dir)
    addr = node.config.self_addr
    write_keys(node, keys("single-", 20))
    batch = command(*[set_op(k, value_of(k)) for k in keys("batch-", 300)])
    [proposal] = propose_all(node, [commands.encode(batch)])
    assert proposal.outcome is Outcome.APPLIED
    meta = take_snapshot(node)
    assert len(journal_of(node)) == 2  # nothing after the snapshot
    digest = replica.digest()
    raft.stop(node)

    node, replica = raft.start(data_dir, addr)
    wait_applied_all(node)
    assert replica.digest() == digest
    assert replica.key_count() == 320
    assert missing_keys(replica, keys("single-", 20) + keys("batch-", 300)) == []
    assert node.status().applied_index > meta.last.index
