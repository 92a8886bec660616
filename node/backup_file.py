"""The backup file: one self-describing, checksummed stream of a cluster's state at one cut.

Layout (integers big-endian):

    b"RCBACKUP"  u32 format
    u32 n, header JSON (cluster_id, applied_index, revision, cluster_time_ms, key_count, ...)
    u32 n, state meta JSON (StateMachine.export_meta)
    key_count x (u32 n, key, u32 n, encoded entry)      # as StateMachine.export_items
    b"RCEND\\0\\0\\0"  u64 key_count
    32 bytes: BLAKE2b-256 of every byte before it

Written and read as a stream, never held whole in memory. `verify()` reads a file
once and refuses anything that is not exactly this (wrong magic or format, a bad
checksum, a truncated or over-long file, a record count that disagrees).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

MAGIC = b"RCBACKUP"
FOOTER = b"RCEND\0\0\0"
FORMAT = 1
CHECKSUM_SIZE = 32
CHUNK_BYTES = 1 << 20
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_MAX_RECORD = 1 << 30


class BackupFormatError(ValueError):
    """The file is not a complete, intact raftcache backup this build can read."""


def new_hash() -> Any:
    return hashlib.blake2b(digest_size=CHECKSUM_SIZE)


@dataclass(frozen=True)
class BackupInfo:
    """What a backup's header says, plus its size and checksum."""

    format: int
    cluster_id: str
    applied_index: int
    revision: int
    cluster_time_ms: int
    key_count: int
    created_ms: int
    node_id: str
    size: int = 0
    checksum: str = ""

    def header(self) -> dict[str, Any]:
        fields = ("cluster_id", "applied_index", "revision", "cluster_time_ms", "key_count")
        return {name: getattr(self, name) for name in (*fields, "created_ms", "node_id")}


class Encoder:
    """Builds the file's bytes: `start`, `record` for each item, `finish`; `take` drains."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._hash = new_hash()
        self._count = 0

    def start(self, info: BackupInfo, meta: bytes) -> None:
        head = json.dumps(info.header(), separators=(",", ":")).encode()
        self._emit(MAGIC + _U32.pack(FORMAT) + _U32.pack(len(head)) + head)
        self._emit(_U32.pack(len(meta)) + meta)

    def record(self, key: bytes, value: bytes) -> None:
        self._buf += _U32.pack(len(key))
        self._buf += key
        self._buf += _U32.pack(len(value))
        self._buf += value
        self._count += 1

    def pending(self) -> int:
        return len(self._buf)

    def take(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        self._hash.update(out)
        return out

    def finish(self) -> tuple[bytes, bytes]:
        """The last bytes before the checksum, and the checksum itself."""
        self._emit(FOOTER + _U64.pack(self._count))
        tail = self.take()
        return tail, self._hash.digest()

    def _emit(self, data: bytes) -> None:
        self._buf += data


class _Reader:
    def __init__(self, f: BinaryIO, path: str, limit: int) -> None:
        self._f = f
        self._path = path
        self._left = limit  # bytes before the checksum
        self.hash = new_hash()

    def read(self, n: int, what: str) -> bytes:
        if n > self._left:
            raise BackupFormatError(
                f"{self._path} is truncated: it ends inside the {what} (a partial copy?)"
            )
        data = self._f.read(n)
        if len(data) != n:
            raise BackupFormatError(f"{self._path} is truncated: it ends inside the {what}")
        self._left -= n
        self.hash.update(data)
        return data

    def u32(self, what: str) -> int:
        value: int = _U32.unpack(self.read(4, what))[0]
        return value

    @property
    def left(self) -> int:
        return self._left


def _read_head(r: _Reader, path: str, size: int) -> tuple[BackupInfo, bytes]:
    if r.read(len(MAGIC), "magic") != MAGIC:
        raise BackupFormatError(f"{path} is not a raftcache backup (no RCBACKUP magic)")
    fmt = r.u32("format")
    if fmt != FORMAT:
        raise BackupFormatError(
            f"{path} has backup format {fmt}; this build reads format {FORMAT}: "
            "use the raftcache release that wrote it, or a newer one"
        )
    try:
        head = json.loads(r.read(_bounded(r.u32("header"), path), "header"))
        info = BackupInfo(format=fmt, size=size, **head)
    except (ValueError, TypeError) as exc:
        raise BackupFormatError(f"{path} has an unreadable header: {exc}") from exc
    meta = r.read(_bounded(r.u32("state meta"), path), "state meta")
    return info, meta


def _bounded(n: int, path: str) -> int:
    if n > _MAX_RECORD:
        raise BackupFormatError(f"{path} is corrupt: a record claims {n} bytes")
    return n


def _records(r: _Reader, info: BackupInfo, path: str) -> Iterator[tuple[bytes, bytes]]:
    for _ in range(info.key_count):
        key = r.read(_bounded(r.u32("key length"), path), "key")
        value = r.read(_bounded(r.u32("value length"), path), "value")
        yield key, value
    footer = r.read(len(FOOTER) + _U64.size, "footer")
    if footer[: len(FOOTER)] != FOOTER:
        raise BackupFormatError(
            f"{path} is corrupt: no footer after the {info.key_count} records its header announces"
        )
    (count,) = _U64.unpack(footer[len(FOOTER) :])
    if count != info.key_count or r.left:
        raise BackupFormatError(
            f"{path} is corrupt: header says {info.key_count} keys, footer {count}, "
            f"{r.left} stray bytes"
        )


@contextmanager
def _open(path: str) -> Iterator[tuple[_Reader, BinaryIO, int]]:
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise BackupFormatError(f"cannot read backup {path}: {exc.strerror}") from exc
    with f:
        size = os.fstat(f.fileno()).st_size
        if size < len(MAGIC) + 4 + CHECKSUM_SIZE:
            raise BackupFormatError(f"{path} is truncated or empty ({size} bytes)")
        yield _Reader(f, path, size - CHECKSUM_SIZE), f, size


def verify(path: str) -> BackupInfo:
    """Read the whole file once; its header if it is intact, else BackupFormatError."""
    with _open(path) as (r, f, size):
        info, _meta = _read_head(r, path, size)
        for _ in _records(r, info, path):
            pass
        stored = f.read(CHECKSUM_SIZE)
        if stored != r.hash.digest():
            raise BackupFormatError(
                f"{path} is corrupt: its checksum does not match its content "
                "(damaged in storage or transfer): take or fetch the backup again"
            )
        return replace(info, checksum=stored.hex())


@contextmanager
def reader(path: str) -> Iterator[tuple[BackupInfo, bytes, Iterator[tuple[bytes, bytes]]]]:
    """(header, state meta, items) of a file `verify()` accepted; streams the items."""
    with _open(path) as (r, _f, size):
        info, meta = _read_head(r, path, size)
        yield info, meta, _records(r, info, path)


class FileWriter:
    """Writes streamed backup bytes to `path` via a partial file; `commit` checks and renames."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._partial = f"{path}.partial"
        self._f: BinaryIO = open(self._partial, "wb")  # noqa: SIM115 (closed in commit/abort)
        self._hash = new_hash()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._f.write(data)
        self._hash.update(data)
        self.size += len(data)

    def commit(self, checksum: bytes) -> None:
        """Append the sender's checksum if it matches what arrived, fsync, rename into place."""
        if checksum != self._hash.digest():
            self.abort()
            raise BackupFormatError(
                "the backup stream arrived damaged (checksum mismatch); nothing was written: "
                "take the backup again"
            )
        self._f.write(checksum)
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        os.replace(self._partial, self.path)
        self.size += len(checksum)

    def abort(self) -> None:
        self._f.close()
        if os.path.exists(self._partial):
            os.unlink(self._partial)
