"""The backup file format: round trip, and every damaged file refused with a clear error."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from raftcache.node import backup_file
from raftcache.node import values as tv
from raftcache.node.backup_file import BackupFormatError, BackupInfo
from raftcache.node.state_machine import StateMachine, encode_cut_item

from tests.unit.redis_harness import Redis

_ENTRY = struct.Struct(">QqBI")


def _state(n: int = 50) -> StateMachine:
    items = [
        (b"k%03d" % i, _ENTRY.pack(i + 1, 1_900_000_000_000 if i % 2 else 0, tv.STRING_TAG, i)
         + b"v%d" % i)
        for i in range(n)
    ]  # fmt: skip
    return StateMachine.restore(StateMachine().export_meta(), items)


def _write(path: Path, sm: StateMachine, chunk: int = 64) -> BackupInfo:
    cut = sm.export_cut()
    info = BackupInfo(1, "c-1", 42, sm.revision, 1_800_000_000_000, len(cut), 7, "n1")
    enc = backup_file.Encoder()
    out = backup_file.FileWriter(str(path))
    enc.start(info, sm.export_meta())
    for key, item in cut:
        enc.record(key, encode_cut_item(item))
        if enc.pending() >= chunk:
            out.write(enc.take())
    tail, checksum = enc.finish()
    out.write(tail)
    out.commit(checksum)
    return info


def test_round_trip_restores_an_identical_state(tmp_path: Path) -> None:
    sm = _state()
    path = tmp_path / "b.rcbak"
    _write(path, sm)
    info = backup_file.verify(str(path))
    assert (info.cluster_id, info.applied_index, info.key_count) == ("c-1", 42, 50)
    assert info.cluster_time_ms == 1_800_000_000_000
    assert info.size == path.stat().st_size and len(info.checksum) == 64
    with backup_file.reader(str(path)) as (head, meta, items):
        restored = StateMachine.restore(meta, items)
    assert head.key_count == 50
    assert restored.digest() == sm.digest()
    assert restored.deadline_of(b"k001") == 1_900_000_000_000
    assert not (tmp_path / "b.rcbak.partial").exists()


def test_an_empty_state_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "b.rcbak"
    _write(path, StateMachine())
    assert backup_file.verify(str(path)).key_count == 0


def test_a_flipped_byte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.rcbak"
    _write(path, _state())
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(BackupFormatError, match="checksum does not match"):
        backup_file.verify(str(path))


@pytest.mark.parametrize("cut", [1, 33, 100, 500])
def test_a_truncated_file_is_refused(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "b.rcbak"
    _write(path, _state())
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - cut])
    with pytest.raises(BackupFormatError, match=r"truncated|corrupt"):
        backup_file.verify(str(path))


def test_another_format_version_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "b.rcbak"
    _write(path, _state())
    raw = bytearray(path.read_bytes())
    raw[8:12] = struct.pack(">I", 9)
    path.write_bytes(bytes(raw))
    with pytest.raises(BackupFormatError, match="format 9; this build reads format 1"):
        backup_file.verify(str(path))


def test_a_file_that_is_not_a_backup_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "b.rcbak"
    path.write_bytes(b"SQLite format 3\0" + bytes(100))
    with pytest.raises(BackupFormatError, match="not a raftcache backup"):
        backup_file.verify(str(path))
    with pytest.raises(BackupFormatError, match="cannot read backup"):
        backup_file.verify(str(tmp_path / "missing"))


def test_a_damaged_stream_is_never_renamed_into_place(tmp_path: Path) -> None:
    out = backup_file.FileWriter(str(tmp_path / "b.rcbak"))
    out.write(b"abc")
    with pytest.raises(BackupFormatError, match="arrived damaged"):
        out.commit(bytes(32))
    assert list(tmp_path.iterdir()) == []


def test_the_cut_copies_containers_so_later_writes_do_not_leak_in() -> None:
    r = Redis()
    r("RPUSH", "l", "a")
    cut = r.sm.export_cut()
    r("RPUSH", "l", "b")
    ((key, item),) = cut
    assert key == b"l" and isinstance(item, bytes)
    restored = StateMachine.restore(r.sm.export_meta(), [(key, encode_cut_item(item))])
    assert restored.read_call([b"LLEN", b"l"], 0, r.now_ms) == 1


def test_a_backup_leaves_the_forwarding_key_out_but_keeps_the_users() -> None:
    """The forwarding key proves that a relayed call comes from a member: whoever reads a
    backup (a read-only backup user) must not get it. The users (digests) are kept."""
    import asyncio

    from raftcache.node import backup
    from raftcache.node.keyspace.acl import FORWARD_KEY, read_stored
    from raftcache.node.replica import Replica

    r = Redis()
    assert r("raftcache.acl.setuser", b"k" * 32, "app", "on", "#" + "a" * 64, "~app:*") == "OK"
    assert read_stored(r.sm) == (read_stored(r.sm)[0], b"k" * 32)
    replica = Replica()
    replica._sm = r.sm

    async def take() -> bytes:
        return b"".join([c.data async for c in backup.stream(replica, "c-1", "n1", 1)])

    data = asyncio.run(take())
    assert b"k" * 32 not in data and FORWARD_KEY not in data
    assert b"user app on #" + b"a" * 64 in data


def test_a_backup_leaves_out_the_pending_rejoins() -> None:
    """They name this cluster's members (node/keyspace/rejoin.py): a cluster restored from
    the file must not try to add them."""
    import asyncio

    from raftcache.node import backup
    from raftcache.node.keyspace.rejoin import PENDING_KEY, read_pending
    from raftcache.node.replica import Replica

    r = Redis()
    assert r("raftcache.rejoin.pending", "10.0.0.7:7380") == 1
    assert r("SET", "kept", "1") == "OK"
    assert read_pending(r.sm) == {"10.0.0.7:7380"}
    replica = Replica()
    replica._sm = r.sm

    async def take() -> bytes:
        return b"".join([c.data async for c in backup.stream(replica, "c-1", "n1", 1)])

    data = asyncio.run(take())
    assert PENDING_KEY not in data and b"10.0.0.7:7380" not in data
    assert b"kept" in data
