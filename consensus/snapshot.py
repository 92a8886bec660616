"""Snapshots as single-file LMDB environments.

One file holds everything a node needs to resume from: the application state
(`meta` and `data` databases) and pysyncobj's own tuple (the two log entries the
snapshot ends with, and the cluster members) in `raft`. The file is what the
leader streams to a lagging follower, so it must be self-contained: no lock
file, no sub-directory.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import lmdb

SNAPSHOT_FORMAT = b"1"
_MAP_SIZE = 1 << 40  # address space only: the file grows with what is written
_ENTRY = struct.Struct(">QQ")  # raft index, raft term
_SEQ = struct.Struct(">Q")
_KEY_LEN = struct.Struct(">I")


def _items(records: Iterator[bytes]) -> Iterator[tuple[bytes, bytes]]:
    for record in records:
        (size,) = _KEY_LEN.unpack_from(record)
        start = _KEY_LEN.size
        yield record[start : start + size], record[start + size :]


@dataclass(frozen=True)
class RaftEntry:
    """A pysyncobj log entry: (command bytes, index, term)."""

    command: bytes
    index: int
    term: int

    def as_tuple(self) -> tuple[bytes, int, int]:
        return (self.command, self.index, self.term)

    def encode(self) -> bytes:
        return _ENTRY.pack(self.index, self.term) + self.command

    @classmethod
    def decode(cls, raw: bytes) -> RaftEntry:
        index, term = _ENTRY.unpack_from(raw)
        return cls(bytes(raw[_ENTRY.size :]), index, term)


@dataclass(frozen=True)
class RaftMeta:
    """What pysyncobj needs back from a snapshot: its last two entries and the members."""

    last: RaftEntry  # the entry the snapshot was taken at (pysyncobj's data[1])
    previous: RaftEntry  # the entry before it (data[2])
    cluster: tuple[str, ...]


class SnapshotFormatError(Exception):
    """The file is not a raftcache snapshot this build can read."""


def _open(path: str, readonly: bool) -> lmdb.Environment:
    return lmdb.open(
        path,
        subdir=False,
        lock=False,
        readonly=readonly,
        max_dbs=4,
        map_size=_MAP_SIZE,
        metasync=not readonly,
        sync=not readonly,
    )


def write(
    path: str, raft: RaftMeta, state_meta: bytes, items: Iterable[tuple[bytes, bytes]]
) -> None:
    """Write a complete snapshot to `path` (replacing it) and fsync it."""
    for stale in (path, path + "-lock"):
        if os.path.exists(stale):
            os.unlink(stale)
    env = _open(path, readonly=False)
    try:
        raft_db = env.open_db(b"raft")
        meta_db = env.open_db(b"meta")
        data_db = env.open_db(b"data")
        with env.begin(write=True) as txn:
            txn.put(b"format", SNAPSHOT_FORMAT, db=raft_db)
            txn.put(b"last", raft.last.encode(), db=raft_db)
            txn.put(b"previous", raft.previous.encode(), db=raft_db)
            txn.put(b"cluster", json.dumps(sorted(raft.cluster)).encode(), db=raft_db)
            txn.put(b"state", state_meta, db=meta_db)
            with txn.cursor(db=data_db) as cursor:
                # LMDB keys are at most 511 bytes, our keys up to 64 KiB: store each item
                # under its sequence number (in order, so LMDB can append) with the real
                # key length-prefixed in the value.
                cursor.putmulti(
                    (
                        (_SEQ.pack(i), _KEY_LEN.pack(len(key)) + key + value)
                        for i, (key, value) in enumerate(items)
                    ),
                    append=True,
                )
        env.sync(True)
    finally:
        env.close()


def read_raft_meta(path: str) -> RaftMeta:
    """The pysyncobj part of a snapshot, without loading the state."""
    with reader(path) as (raft, _meta, _items):
        return raft


def _required(txn: lmdb.Transaction, key: bytes, db: Any, path: str) -> bytes:
    value = txn.get(key, db=db)
    if value is None:
        raise SnapshotFormatError(f"{path} has no {key.decode()!r} record: not a complete snapshot")
    return bytes(value)


@contextmanager
def reader(path: str) -> Iterator[tuple[RaftMeta, bytes, Iterator[tuple[bytes, bytes]]]]:
    """Open a snapshot: yields (raft meta, state meta, an iterator over the stored items)."""
    try:
        env = _open(path, readonly=True)
    except lmdb.Error as exc:
        raise SnapshotFormatError(f"{path} is not an LMDB snapshot: {exc}") from exc
    try:
        raft_db = env.open_db(b"raft", create=False)
        meta_db = env.open_db(b"meta", create=False)
        data_db = env.open_db(b"data", create=False)
        with env.begin(buffers=False) as txn:
            fmt = txn.get(b"format", db=raft_db)
            if fmt != SNAPSHOT_FORMAT:
                raise SnapshotFormatError(
                    f"{path} has snapshot format {fmt!r}; this build reads {SNAPSHOT_FORMAT!r} "
                    "(a newer raftcache wrote it: upgrade this node before it loads it)"
                )
            raft = RaftMeta(
                last=RaftEntry.decode(_required(txn, b"last", raft_db, path)),
                previous=RaftEntry.decode(_required(txn, b"previous", raft_db, path)),
                cluster=tuple(json.loads(_required(txn, b"cluster", raft_db, path))),
            )
            state_meta = _required(txn, b"state", meta_db, path)
            with txn.cursor(db=data_db) as cursor:
                yield raft, state_meta, _items(cursor.iternext(keys=False, values=True))
    except lmdb.Error as exc:
        raise SnapshotFormatError(f"{path} is not a complete snapshot: {exc}") from exc
    finally:
        env.close()
