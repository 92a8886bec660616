"""What a command handler sees: one Redis database of the state machine, at one instant.

Database 0 is the gRPC keyspace; database N > 0 keeps its keys under an internal prefix
(`db_key`), so every replicated structure (expiry heap, scan buckets, memory, digest,
snapshots) serves all sixteen databases unchanged.
"""

from __future__ import annotations

import itertools
import random
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, TypeVar, cast

from raftcache.node.keyspace.reply import OOM, WRONGTYPE, CommandError
from raftcache.node.values import Container

if TYPE_CHECKING:
    from raftcache.node.state_machine import StateMachine

C = TypeVar("C", bound=Container)
DATABASES = 16
DB_PREFIX = b"\x00rcdb"
RESERVED_KEY = "ERR keys starting with \\x00rcdb are reserved for databases 1-15: use another key"
"""Keys of databases 1-15 start with this, then the database number as one byte; gRPC
refuses keys that start with it, so no gRPC key can land in another database."""

KEY_OVERHEAD = 360
"""Accounted bytes per key on top of its key and value bytes: CPython's cost of a key (two
bytes objects, the entry tuple, its version, the dict and scan-index slots) measured with
tracemalloc: 476 B for a 12-byte key and a 100-byte value (see node/DESIGN.md), plus 8 B
since the entry tuple grew a slot for memcached's client flags."""

Stored = tuple[bytes | Container, int, int, int]  # (value, version, deadline_ms, flags)
_READ_DRAWS = itertools.count()


def db_key(db: int, key: bytes) -> bytes:
    return key if db == 0 else DB_PREFIX + bytes((db,)) + key


def key_db(internal: bytes) -> tuple[int, bytes]:
    """(database, user key) of a stored key."""
    if internal.startswith(DB_PREFIX) and len(internal) > len(DB_PREFIX):
        return internal[len(DB_PREFIX)], internal[len(DB_PREFIX) + 1 :]
    return 0, internal


class Db:
    """One database as handlers use it. `write` is False for reads (nothing may change)."""

    def __init__(self, sm: StateMachine, db: int, now: int, write: bool, user: str = "") -> None:
        self.sm = sm
        self.db = db
        self.now = now
        self.write = write
        self.user = user  # a script's calls are checked as this user ("" = no check)

    def k(self, key: bytes) -> bytes:
        if key[:5] == DB_PREFIX:  # every key passes here: database 0 cannot alias another
            raise CommandError(RESERVED_KEY)
        return db_key(self.db, key)

    # -- reading -------------------------------------------------------------

    def entry(self, key: bytes) -> Stored | None:
        """The live (value, version, deadline) at key, or None."""
        return self.sm._live(self.k(key), self.now)

    def exists(self, key: bytes) -> bool:
        return self.entry(key) is not None

    def string(self, key: bytes) -> bytes | None:
        """The string at key (None if missing); WRONGTYPE for any other type."""
        entry = self.entry(key)
        if entry is None:
            return None
        if not isinstance(entry[0], bytes):
            raise CommandError(WRONGTYPE)
        return entry[0]

    def typed(self, key: bytes, cls: type[C]) -> C | None:
        """The container at key (None if missing); WRONGTYPE for any other type."""
        entry = self.entry(key)
        if entry is None:
            return None
        if not isinstance(entry[0], cls):
            raise CommandError(WRONGTYPE)
        return entry[0]

    def deadline(self, key: bytes) -> int:
        entry = self.entry(key)
        return 0 if entry is None else entry[2]

    def keys(self) -> Iterator[bytes]:
        """Every live key of this database (user form), in insertion order."""
        now, live = self.now, self.sm._live
        for internal in list(self.sm._data):
            db, key = key_db(internal)
            if db == self.db and live(internal, now) is not None:
                yield key

    def size(self) -> int:
        return self.sm.db_size(self.db)

    # -- changing (apply only) -----------------------------------------------

    def reserve(self, growth: int) -> None:
        """Refuse (OOM) a write that may add `growth` accounted bytes over --max-memory."""
        if self.sm._over_limit(growth) is not None:
            raise CommandError(OOM)

    def set(self, key: bytes, value: bytes | Container, deadline: int, flags: int = 0) -> int:
        """Store a value (replacing any type, and any memcached flags unless given); returns
        the new version."""
        assert self.write, "a read handler tried to write"
        return self.sm._put(self.k(key), value, deadline, flags=flags)

    def delete(self, key: bytes) -> bool:
        """Remove key; True when it existed (was live)."""
        assert self.write, "a read handler tried to write"
        internal = self.k(key)
        existed = self.sm._live(internal, self.now) is not None
        if internal in self.sm._data:
            self.sm._drop(internal, "delete" if existed else "expire")
        return existed

    def open(self, key: bytes, cls: type[C]) -> tuple[C, Stored | None]:
        """The container at key to change in place (a new one if missing); pair with close."""
        assert self.write, "a read handler tried to write"
        got = self.sm._open(self.k(key), self.now, cls, "")
        if type(got) is not tuple:  # a Failure (itself a NamedTuple): the key's type differs
            raise CommandError(WRONGTYPE)
        return cast(tuple[C, Stored | None], got)

    def close(self, key: bytes, c: Container, entry: Stored | None, changed: bool) -> None:
        """Account a container after open: a change gets a new version; empty is deleted."""
        self.sm._close(self.k(key), c, entry, changed)

    def set_deadline(self, key: bytes, deadline: int) -> bool:
        """Give a live key a new deadline (0 = persist); True if the key exists."""
        entry = self.entry(key)
        if entry is None:
            return False
        if deadline and deadline <= self.now:
            self.delete(key)
            return True
        self.sm._put(self.k(key), entry[0], deadline, flags=entry[3])
        return True

    def notify(self, cls: str, event: str, key: bytes) -> None:
        """A keyspace notification a handler names itself (the stream commands: their events
        are not told apart by the key's change); keyspace/notify.py publishes the rest."""
        sm = self.sm
        if sm.notify_on and cls in sm.notify_classes:
            from raftcache.node.keyspace.notify import named_by_handler

            named_by_handler(sm, self.db, key, event.encode())

    def rng(self, salt: bytes = b"") -> random.Random:
        """Randomness every replica draws identically (seeded by the revision and time). A
        read is never replicated, so it also draws a per-process count: repeated
        SRANDMEMBER/HRANDFIELD calls within one millisecond differ, as Redis's do."""
        seed = struct.pack(">QQ", self.sm.revision, self.now) + salt
        if not self.write:
            seed += struct.pack(">Q", next(_READ_DRAWS))
        return random.Random(seed)
