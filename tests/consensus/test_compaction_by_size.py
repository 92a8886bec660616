"""compaction_log_bytes (--compaction-log-bytes): a node snapshots once that many bytes of
entries were applied since its last snapshot began, even far below compaction_min_entries
(an entry carries up to thousands of ops, so a count alone lets the log grow to hundreds
of MB); with 0, entries alone decide, as before."""

from __future__ import annotations

from pathlib import Path

from raftcache.consensus import Outcome, RaftNode
from raftcache.node import commands
from raftcache.node.replica import Replica

from tests.consensus.harness import command, lone_journal_config, propose_all, set_op, wait_for

ENTRY_BYTES = 64 << 10  # one big entry: a pipelined batch of SETs
LIMIT = 1 << 20


def _node(tmp_path: Path, log_bytes: int) -> tuple[RaftNode, Replica]:
    replica = Replica()
    config = lone_journal_config(
        tmp_path,
        compaction_min_entries=100_000,  # never reached here
        compaction_log_bytes=log_bytes,
    )
    node = RaftNode(config, replica)
    wait_for(node.is_leader, "the single node to elect itself")
    return node, replica


def _write(node: RaftNode, entries: int, start: int = 0) -> None:
    payloads = [
        commands.encode(command(set_op(b"k%d" % (start + i), b"x" * ENTRY_BYTES)))
        for i in range(entries)
    ]
    proposals = propose_all(node, payloads)
    assert all(p.outcome is Outcome.APPLIED for p in proposals)


def test_a_log_past_its_byte_limit_is_compacted_long_before_its_entry_limit(
    tmp_path: Path,
) -> None:
    node, replica = _node(tmp_path, LIMIT)
    try:
        _write(node, 8)  # ~0.5 MB: under the limit
        assert node.size_compactions == 0 and node.snapshots_taken == 0
        _write(node, 12, start=8)  # ~1.3 MB in all: over it
        wait_for(lambda: node.snapshots_taken >= 1, "a snapshot asked for by size")
        assert node.size_compactions == 1
        assert (tmp_path / "snapshot.lmdb").exists()
        # The snapshot restarted the count: another ~0.8 MB is under the limit again...
        _write(node, 12, start=20)
        assert node.size_compactions == 1
        # ...and the log no longer holds the compacted entries.
        log = node._syncobj._SyncObj__raftLog
        assert len(log) < 20, len(log)
        assert replica.state.get(b"k31", 0) is not None
    finally:
        node.destroy()


def test_with_no_byte_limit_only_the_entry_count_compacts(tmp_path: Path) -> None:
    node, _ = _node(tmp_path, 0)
    try:
        _write(node, 40)  # ~2.6 MB
        assert node.size_compactions == 0 and node.snapshots_taken == 0
        assert not (tmp_path / "snapshot.lmdb").exists()
    finally:
        node.destroy()
