"""The LMDB snapshot format: a lossless, self-contained single file."""

from __future__ import annotations

import gzip
import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path

import hypothesis.strategies as st
import lmdb
import pytest
from hypothesis import given, settings
from raftcache.consensus import snapshot
from raftcache.consensus.snapshot import RaftEntry, RaftMeta, SnapshotFormatError
from raftcache.node import commands
from raftcache.node.replica import Replica
from raftcache.node.state_machine import IncrOk
from raftcache.v1 import command_pb2

from tests.consensus.harness import command, set_op

RAFT = RaftMeta(
    last=RaftEntry(b"\x00\x80last-command", 12_345, 7),
    previous=RaftEntry(b"\x00\x80previous-command", 12_344, 6),
    cluster=("127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"),
)


def _announce(node_id: str, port: int) -> command_pb2.Op:
    op = command_pb2.Op()
    op.announce.node_id = node_id
    op.announce.raft_addr = f"127.0.0.1:{port}"
    op.announce.client_addr = f"127.0.0.1:{port + 1000}"
    return op


def _incr(key: bytes, delta: int, client: str, seq: int) -> command_pb2.Op:
    op = command_pb2.Op(incr=command_pb2.IncrOp(key=key, delta=delta))
    op.request_id.client_id = client
    op.request_id.seq = seq
    return op


def _apply(replica: Replica, cmd: command_pb2.Command) -> list[object]:
    return list(replica.apply(commands.encode(cmd)))


def _populated() -> Replica:
    """A replica with plain keys, TTL keys, members, dedup sessions and a deleted key."""
    replica = Replica()
    mset = command_pb2.Op()
    for i in range(3):
        mset.mset.entries.add(key=b"m%d" % i, value=b"mv%d" % i, deadline_ms=90_000)
    _apply(
        replica,
        command(
            _announce("n1", 7001),
            _announce("n2", 7002),
            set_op(b"plain", b"no expiry"),
            set_op(b"short-ttl", b"gone at 5000", deadline_ms=5_000),
            set_op(b"long-ttl", b"gone at 60000", deadline_ms=60_000),
            set_op(b"doomed", b"deleted below"),
            mset,
            _incr(b"counter", 5, "client-a", 1),
            now_ms=1_000,
        ),
    )
    delete = command_pb2.Op(delete=command_pb2.DeleteOp(key=b"doomed"))
    _apply(replica, command(delete, _incr(b"counter", 2, "client-b", 9), now_ms=2_000))
    _apply(replica, command(*[set_op(b"bulk%04d" % i, os.urandom(40)) for i in range(500)]))
    return replica


def _restore(path: str) -> tuple[RaftMeta, Replica]:
    restored = Replica()
    with snapshot.reader(path) as (raft, state_meta, items):
        restored.restore(state_meta, items)
    return raft, restored


def test_round_trip_restores_the_whole_state(tmp_path: Path) -> None:
    original = _populated()
    path = str(tmp_path / "snapshot.lmdb")
    snapshot.write(path, RAFT, original.snapshot_meta(), original.snapshot_items())

    raft, restored = _restore(path)

    assert raft == RAFT
    assert snapshot.read_raft_meta(path) == RAFT
    assert restored.digest() == original.digest()
    assert restored.key_count() == original.key_count() == 507
    assert restored.snapshot_meta() == original.snapshot_meta()  # sessions, clock, members
    assert sorted(restored.snapshot_items()) == sorted(original.snapshot_items())
    assert restored.members() == original.members() and len(restored.members()) == 2
    assert restored.cluster_time_ms == 2_000
    assert restored.get(b"doomed", 0) is None
    long_ttl = restored.get(b"long-ttl", 0)
    assert long_ttl is not None and long_ttl.deadline_ms == 60_000


def test_a_received_snapshots_end_is_read_without_loading_it(tmp_path: Path) -> None:
    """What a follower checks before it lets a streamed snapshot replace its log
    (log_matching.py: a snapshot this log already holds is refused)."""
    from raftcache.consensus.raft import _snapshot_end

    path = str(tmp_path / "snapshot.lmdb.1.tmp")
    snapshot.write(path, RAFT, _populated().snapshot_meta(), _populated().snapshot_items())
    assert _snapshot_end(path) == (RAFT.last.index, RAFT.last.term)
    Path(path).write_bytes(b"not a snapshot")
    with pytest.raises(SnapshotFormatError):
        _snapshot_end(path)


def test_restored_state_keeps_behaving_like_the_original(tmp_path: Path) -> None:
    """Dedup sessions answer a retry, and TTL keys expire, exactly as before the snapshot."""
    original = _populated()
    path = str(tmp_path / "snapshot.lmdb")
    snapshot.write(path, RAFT, original.snapshot_meta(), original.snapshot_items())
    _raft, restored = _restore(path)

    retry = command(_incr(b"counter", 5, "client-a", 1), now_ms=3_000)
    first = _apply(original, retry)
    assert _apply(restored, retry) == first
    assert isinstance(first[0], IncrOk) and first[0].value == 5  # the first answer again
    counter = restored.get(b"counter", 0)
    assert counter is not None and counter.value == b"7"  # 5 + 2: the retry did not apply

    later = command(set_op(b"after", b"snapshot"), now_ms=70_000)
    assert _apply(restored, later) == _apply(original, later)
    assert restored.get(b"short-ttl", 0) is None and restored.get(b"long-ttl", 0) is None
    assert restored.get(b"m0", 0) is not None  # its deadline (90 000) has not passed
    assert restored.digest() == original.digest()
    assert restored.key_count() == original.key_count() == 506  # expired keys were removed


_keys = st.binary(min_size=1, max_size=8)
_ops = st.lists(
    st.one_of(
        st.builds(set_op, _keys, st.binary(max_size=32), st.sampled_from([0, 0, 1_500, 10**12])),
        st.builds(lambda k: command_pb2.Op(delete=command_pb2.DeleteOp(key=k)), _keys),
        st.builds(_incr, _keys, st.integers(-5, 5), st.sampled_from(["a", "b"]), st.integers(1, 4)),
    ),
    max_size=30,
)


@settings(max_examples=30, deadline=None)
@given(batches=st.lists(_ops, min_size=1, max_size=4), now=st.integers(1_000, 2_000))
def test_round_trip_of_any_history(batches: list[list[command_pb2.Op]], now: int) -> None:
    original = Replica()
    for i, ops in enumerate(batches):
        _apply(original, command(*ops, now_ms=now + i * 500))
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "snapshot.lmdb")
        snapshot.write(path, RAFT, original.snapshot_meta(), original.snapshot_items())
        raft, restored = _restore(path)
    assert raft == RAFT
    assert restored.digest() == original.digest()
    assert restored.snapshot_meta() == original.snapshot_meta()
    assert sorted(restored.snapshot_items()) == sorted(original.snapshot_items())


def test_snapshot_is_one_self_contained_file(tmp_path: Path) -> None:
    """Streaming copies the file byte for byte: nothing may live beside it."""
    original = _populated()
    written = tmp_path / "written"
    written.mkdir()
    path = written / "snapshot.lmdb"
    (written / "snapshot.lmdb-lock").write_bytes(b"stale lock from an older layout")
    snapshot.write(str(path), RAFT, b"stale", [(b"k", b"\x00" * 16)])
    snapshot.write(str(path), RAFT, original.snapshot_meta(), original.snapshot_items())
    _restore(str(path))
    assert [p.name for p in written.iterdir()] == ["snapshot.lmdb"]
    assert path.is_file()

    received = tmp_path / "received"
    received.mkdir()
    copy = received / "streamed.lmdb"
    with path.open("rb") as source, copy.open("wb") as target:
        while chunk := source.read(4096):  # like pysyncobj's chunked transmission
            target.write(chunk)
    raft, restored = _restore(str(copy))
    assert raft == RAFT
    assert restored.digest() == original.digest()
    assert [p.name for p in received.iterdir()] == ["streamed.lmdb"]


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _pysyncobj_dump(path: Path) -> None:
    """What pysyncobj's default serializer writes: a gzipped pickle."""
    path.write_bytes(gzip.compress(pickle.dumps(({}, (b"x", 2, 1), (b"y", 1, 1), set()))))


def _foreign_lmdb(path: Path) -> None:
    env = lmdb.open(str(path), subdir=False, lock=False, max_dbs=2)
    try:
        db = env.open_db(b"other")
        with env.begin(write=True) as txn:
            txn.put(b"format", snapshot.SNAPSHOT_FORMAT, db=db)
    finally:
        env.close()


def _incomplete(path: Path) -> None:
    """Our databases and format marker, but no raft entries or state."""
    env = lmdb.open(str(path), subdir=False, lock=False, max_dbs=4)
    try:
        raft_db = env.open_db(b"raft")
        env.open_db(b"meta")
        env.open_db(b"data")
        with env.begin(write=True) as txn:
            txn.put(b"format", snapshot.SNAPSHOT_FORMAT, db=raft_db)
    finally:
        env.close()


@pytest.mark.parametrize("make", [_garbage, _empty, _pysyncobj_dump, _foreign_lmdb, _incomplete])
def test_a_file_that_is_not_a_snapshot_is_rejected(
    tmp_path: Path, make: Callable[[Path], None]
) -> None:
    path = tmp_path / "snapshot.lmdb"
    make(path)
    with pytest.raises(SnapshotFormatError):
        snapshot.read_raft_meta(str(path))
    with pytest.raises(SnapshotFormatError):
        _restore(str(path))


def test_a_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SnapshotFormatError):
        snapshot.read_raft_meta(str(tmp_path / "absent.lmdb"))


def test_a_snapshot_of_another_format_version_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "snapshot.lmdb")
    with monkeypatch.context() as patch:
        patch.setattr(snapshot, "SNAPSHOT_FORMAT", b"2")
        snapshot.write(path, RAFT, b"{}", [])
        assert snapshot.read_raft_meta(path) == RAFT  # readable by the build that wrote it
    with pytest.raises(SnapshotFormatError, match="format b'2'"):
        snapshot.read_raft_meta(path)
