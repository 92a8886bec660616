"""The replicated cache state: a pure, deterministic `apply(command) -> results`.

Same commands in, same state out, on every replica. Nothing here reads a clock,
a random source or a thread: time arrives only as `Command.now_ms`, stamped by
the leader, which advances the replicated cluster clock and expires keys whose
absolute deadline has passed.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import itertools
import json
import math
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, TypeVar

from raftcache.node import values as tv
from raftcache.node.keyspace import dispatch as redis_commands
from raftcache.node.keyspace import notify
from raftcache.node.keyspace.blocking import TAKING, UNPOP
from raftcache.node.keyspace.db import (
    DATABASES,
    DB_PREFIX,
    KEY_OVERHEAD,
    RESERVED_KEY,
    Db,
    db_key,
    key_db,
)
from raftcache.node.keyspace.memcached import STORE_COMMAND, STORED, client_flags
from raftcache.node.keyspace.reply import NULL_ARRAY, OK, OOM, Error, ReplyT
from raftcache.node.keyspace.reply import from_proto as reply_from_proto
from raftcache.node.keyspace.reply import to_proto as reply_to_proto
from raftcache.node.values import Container
from raftcache.v1 import cache_pb2, command_pb2
from xxhash import xxh3_128_intdigest

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

MAX_EXPIRIES_PER_COMMAND = 10_000
"""Keys removed by one command at most; the rest follow with later commands (reads hide them)."""

DEDUP_RESULTS_PER_CLIENT = 1024
"""Results remembered per client for request-id deduplication."""

DEDUP_MAX_CLIENTS = 10_000
DEDUP_IDLE_MS = 3_600_000
"""A client session unused for this long (cluster time) is forgotten."""

EVICTION_POLICIES = (
    "noeviction",
    "allkeys-lru",
    "allkeys-lfu",
    "volatile-lru",
    "volatile-ttl",
    "allkeys-random",
)

SCAN_BUCKETS = 1 << 16
"""Scan walks keys bucket by bucket (crc32 of the key); a cursor is a bucket number."""

C = TypeVar("C", bound=Container)
_SWEEP_EVERY_MS = 60_000
_DIGEST_MOD = 1 << 128
_ENTRY_HEADER = struct.Struct(">Qq")  # version, deadline_ms (snapshot format 1: strings only)
_TYPED_HEADER = struct.Struct(">QqB")  # version, deadline_ms, value type tag (format 2)
_FLAGGED_HEADER = struct.Struct(">QqBI")  # format 2 + memcached client flags (format 3)
_HASH_HEADER = struct.Struct(">IQqBI")  # key length, version, deadline_ms, type tag, flags
SNAPSHOT_FORMAT = 3


class ErrorCode(enum.Enum):
    """Domain failures the state machine answers with; mapped to gRPC codes in status_codes."""

    CONDITION_FAILED = "condition_failed"
    NOT_AN_INTEGER = "not_an_integer"
    OVERFLOW = "overflow"
    REQUEST_TOO_OLD = "request_too_old"
    INVALID_COMMAND = "invalid_command"
    WRONG_TYPE = "wrong_type"
    OUT_OF_MEMORY = "out_of_memory"


class SetOk(NamedTuple):
    version: int


class DeleteOk(NamedTuple):
    deleted: bool


class IncrOk(NamedTuple):
    value: int
    version: int


class MSetOk(NamedTuple):
    """An MSet's entries get consecutive versions; kept as a range so that remembered
    results (request-id dedup) cost two ints, not one per entry."""

    first: int
    size: int

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(range(self.first, self.first + self.size))


class AnnounceOk(NamedTuple):
    pass


class Value(NamedTuple):
    """A typed op's answer; kind is a raftcache.v1.Value oneof name (nil, int, score, bytes,
    list, fields, scored, text) and data its Python form."""

    kind: str
    data: Any = None


class TxnOk(NamedTuple):
    succeeded: bool
    results: tuple[Value, ...]


class EvictOk(NamedTuple):
    evicted: int


class Failure(NamedTuple):
    code: ErrorCode
    message: str


Result = SetOk | DeleteOk | IncrOk | MSetOk | AnnounceOk | Value | TxnOk | EvictOk | Failure
NIL = Value("nil", True)


_Stored = tuple[bytes | Container, int, int, int]
"""How entries are kept: a plain tuple (value, version, deadline_ms, flags), flags being
memcached's 32-bit client flags (0 for everything else: any other write resets them).
CPython's GC stops tracking tuples of untracked objects, so a million keys cost a full
collection ~1 ms; as NamedTuples they stay tracked and a full collection takes ~100 ms
(measured), which stalls the Raft tick thread."""
_VALUE: Final = 0
_VERSION: Final = 1
_DEADLINE: Final = 2
_FLAGS: Final = 3


class Entry(NamedTuple):
    """A stored value; deadline_ms 0 means no expiry."""

    value: bytes | Container
    version: int
    deadline_ms: int
    flags: int = 0  # memcached's client flags


_tuple_new = tuple.__new__  # builds a NamedTuple from a tuple of all its fields, as _make does


class Change(NamedTuple):
    """A key changed: kind is "set", "delete", "expire" or "evict"; revision is unique."""

    kind: str
    key: bytes
    revision: int
    value: bytes  # a string key's new value on "set"; b"" otherwise
    type: str  # the key's type on "set"; "" otherwise
    created: bool = False  # a "set" of a key that did not exist


class Published(NamedTuple):
    """A pub/sub message, delivered by every node in log order; never stored."""

    channel: bytes
    message: bytes


Event = Change | Published


class Member(NamedTuple):
    raft_addr: str
    client_addr: str
    redis_addr: str = ""
    memcached_addr: str = ""


@dataclass
class _Session:
    """Recent results of one client's non-idempotent ops, keyed by sequence number."""

    results: dict[int, Result] = field(default_factory=dict)
    floor: int = 0  # a seq <= floor that is not in results was forgotten (or never seen)
    last_seen_ms: int = 0


def _forget_below(session: _Session, done_below: int) -> None:
    """The client has every answer below `done_below` and retries none of them: forget
    their results (the oldest first: insertion order is nearly seq order; a straggler
    leaves with the size cap). The floor stays: whether an op applies must not depend on
    `done_below`, which a replica of an older build does not see (a request of the client
    that arrives late, cancelled by it, applies on every replica alike); a client that
    sends a seq below its own `done_below` again has it applied again."""
    results = session.results
    while results:
        oldest = next(iter(results))
        if oldest >= done_below:
            break
        del results[oldest]


def _is_attempt(op: command_pb2.Op) -> bool:
    """A blocked call's attempt or its undo (keyspace/blocking.TAKING)."""
    if op.WhichOneof("kind") != "data" or op.data.op.WhichOneof("op") != "call":
        return False
    argv = op.data.op.call.argv
    return bool(argv) and argv[0].lower() in TAKING


def _took(result: Result) -> bool:
    """Whether an attempt took something (not the timeout reply, not an error)."""
    if not isinstance(result, Value) or result.kind != "reply":
        return False
    data = result.data
    return data is not None and data is not NULL_ARRAY and not isinstance(data, Error)


def _entry_hash(key: bytes, entry: _Stored) -> int:
    value = entry[_VALUE]
    tag = tv.STRING_TAG if isinstance(value, bytes) else value.TAG
    header = _HASH_HEADER.pack(len(key), entry[_VERSION], entry[_DEADLINE], tag, entry[_FLAGS])
    return xxh3_128_intdigest(header + key + tv.value_hash(value))


def _entry_nbytes(key: bytes, entry: _Stored) -> int:
    return len(key) + KEY_OVERHEAD + tv.value_nbytes(entry[_VALUE])


def scan_bucket(key: bytes) -> int:
    return zlib.crc32(key) & (SCAN_BUCKETS - 1)


def _parse_int(value: bytes) -> int | None:
    # One optional minus sign: int() raises on b"--5", which would crash apply on every replica.
    digits = value[1:] if value.startswith(b"-") else value
    if not digits or len(value) > 20 or not digits.isdigit():
        return None
    number = int(value)
    return number if INT64_MIN <= number <= INT64_MAX else None


class StateMachine:
    """Keys, versions, deadlines, members and dedup sessions, changed only by `apply`."""

    def __init__(self) -> None:
        self._data: dict[bytes, _Stored] = {}
        self._expiry: list[tuple[int, bytes]] = []  # (deadline, key) min-heap, lazily pruned
        self._ttl_keys = 0
        self._sessions: dict[str, _Session] = {}
        self._members: dict[str, Member] = {}
        self._revision = 0
        self._cluster_time_ms = 0
        self._next_sweep_ms = 0
        self._digest_acc = 0
        self._memory = 0
        self._buckets: dict[int, set[bytes]] = {}
        self._events: list[Event] = []
        self._db_keys: dict[int, int] = {}  # stored keys of databases 1-15 (db 0: the rest)
        self._undo: dict[bytes, _Stored | None] | None = None  # set while a Txn runs
        self.max_memory = 0
        self.eviction_policy = "noeviction"
        self.expired_total = 0
        self.evicted_total = 0
        # Keyspace notifications (keyspace/notify.py): the replicated flags (notify.normalize).
        self.notify_flags = ""
        self.notify_classes: frozenset[str] = frozenset()
        self.notify_keyspace = self.notify_keyevent = self.notify_on = False
        self._notified = 0  # events before this index have had their notifications

    def set_notify_flags(self, flags: str) -> None:
        """Publish keyspace notifications per `flags` (normalized) from now on."""
        self.notify_flags = flags
        classes = set(flags) & set(notify.CLASSES)
        self.notify_classes = frozenset(classes)
        self.notify_keyspace, self.notify_keyevent = "K" in flags, "E" in flags
        self.notify_on = bool(classes) and (self.notify_keyspace or self.notify_keyevent)

    # ----------------------------------------------------------------- apply

    def apply(self, command: command_pb2.Command) -> list[Result]:
        """Apply one decoded command; returns one result per op, in order."""
        if command.now_ms > self._cluster_time_ms:
            self._cluster_time_ms = command.now_ms
        now = self._cluster_time_ms
        self._expire(now)
        if now >= self._next_sweep_ms and command.now_ms:
            self._sweep_sessions(now)
            self._next_sweep_ms = now + _SWEEP_EVERY_MS
        if not self.notify_on:
            return [self._apply_op(op, now) for op in command.ops]
        # Changes no Redis command named (expiry, eviction, gRPC and memcached writes) get
        # their notifications after each op; a Redis command's own come with it (dispatch).
        notify.publish(self, None, [], 0)
        results = []
        for op in command.ops:
            results.append(self._apply_op(op, now))
            notify.publish(self, None, [], 0)
        return results

    def take_events(self) -> list[Event]:
        """Key changes and published messages of the commands applied since the last call."""
        events, self._events = self._events, []
        self._notified = 0
        return events

    def _apply_op(self, op: command_pb2.Op, now: int) -> Result:
        if not op.HasField("request_id"):
            return self._dispatch(op, now)
        rid = op.request_id
        if _is_attempt(op):
            return self._take_once(op, rid, now)
        # Sessions are kept in least-recently-used order (re-inserted on every use), so
        # evicting one is O(1); the order is part of the replicated state and snapshot.
        session = self._sessions.pop(rid.client_id, None) or _Session()
        self._sessions[rid.client_id] = session
        session.last_seen_ms = now
        if rid.done_below:
            _forget_below(session, rid.done_below)
        cached = session.results.get(rid.seq)
        if cached is not None:
            return cached
        if rid.seq <= session.floor:
            return Failure(
                ErrorCode.REQUEST_TOO_OLD,
                f"request id {rid.client_id}/{rid.seq} is older than the last "
                f"{DEDUP_RESULTS_PER_CLIENT} remembered for that client: its outcome is unknown",
            )
        result = self._dispatch(op, now)
        session.results[rid.seq] = result
        if len(session.results) > DEDUP_RESULTS_PER_CLIENT:
            oldest = next(iter(session.results))  # insertion order: O(1), not min()
            del session.results[oldest]
            session.floor = max(session.floor, oldest)
        if len(self._sessions) > DEDUP_MAX_CLIENTS:
            # The least recently used; never the client just served (it is last).
            del self._sessions[next(iter(self._sessions))]
        return result

    def _take_once(self, op: command_pb2.Op, rid: command_pb2.OpRequestId, now: int) -> Result:
        """An attempt of a blocked call (node/blocking.py) under the call's request id: the
        first attempt that takes something is remembered, and a later attempt with that id
        (the relaying follower's retry at a new leader) answers it instead of taking again.
        Attempts that took nothing are not remembered (the call keeps trying), and no floor
        applies (a call's id is fixed when it starts; calls take in any order). The undo of
        a take (raftcache.unpop) runs only while the take is remembered and forgets it, so
        a retry after it takes afresh and a second undo does nothing."""
        session = self._sessions.get(rid.client_id)
        cached = None if session is None else session.results.get(rid.seq)
        if op.data.op.call.argv[0].lower() == UNPOP:
            if session is None or cached is None:
                return Value("reply", 0)  # put back already (or never remembered)
            del session.results[rid.seq]
            return self._dispatch(op, now)
        if cached is not None:
            return cached
        result = self._dispatch(op, now)
        if not _took(result):
            return result
        if session is None:
            session = self._sessions[rid.client_id] = _Session()
        else:  # least recently used order, as in _apply_op
            self._sessions[rid.client_id] = self._sessions.pop(rid.client_id)
        session.last_seen_ms = now
        session.results[rid.seq] = result
        if len(session.results) > DEDUP_RESULTS_PER_CLIENT:
            oldest = next(iter(session.results))
            del session.results[oldest]
            session.floor = max(session.floor, oldest)
        if len(self._sessions) > DEDUP_MAX_CLIENTS:
            del self._sessions[next(iter(self._sessions))]
        return result

    def _dispatch(self, op: command_pb2.Op, now: int) -> Result:
        kind = op.WhichOneof("kind")
        if kind == "set":
            return self._set(op.set, now)
        if kind == "delete":
            return self._delete(op.delete.key, now)
        if kind == "incr":
            return self._incr(op.incr, now)
        if kind == "mset":
            return self._mset(op.mset, now)
        if kind == "data":
            return self._data_cmd(op.data, now)
        if kind == "txn":
            return self._txn(op.txn, now)
        if kind == "evict":
            return self._evict(op.evict.keys, now)
        if kind == "publish":
            self._events.append(Published(op.publish.channel, op.publish.message))
            return AnnounceOk()
        if kind == "config":
            return self._config(op.config)
        if kind == "announce":
            a = op.announce
            self._members[a.node_id] = Member(
                a.raft_addr, a.client_addr, a.redis_addr, a.memcached_addr
            )
            return AnnounceOk()
        return Failure(ErrorCode.INVALID_COMMAND, f"op has no known kind ({kind!r})")

    def _live(self, key: bytes, now: int) -> _Stored | None:
        entry = self._data.get(key)
        if entry is None or (entry[_DEADLINE] and entry[_DEADLINE] <= now):
            return None
        return entry

    def _string(self, key: bytes, now: int, op: str) -> _Stored | Failure | None:
        entry = self._live(key, now)
        if entry is not None and not isinstance(entry[_VALUE], bytes):
            return _wrong_type(key, entry[_VALUE], "string", op)
        return entry

    def _set(self, op: command_pb2.SetOp, now: int) -> Result:
        current = self._live(op.key, now)
        if op.condition == 1 and current is not None:
            return Failure(ErrorCode.CONDITION_FAILED, "key exists and the set was if-absent")
        if op.condition == 2 and current is None:
            return Failure(
                ErrorCode.CONDITION_FAILED, "key does not exist and the set was if-present"
            )
        if op.has_expected_version:
            actual = 0 if current is None else current[_VERSION]
            if actual != op.expected_version:
                return Failure(
                    ErrorCode.CONDITION_FAILED,
                    f"expected version {op.expected_version} but the key's version is {actual}",
                )
        full = self._over_limit(_GROWTH["set"](op))
        return full or SetOk(self._put(op.key, op.value, op.deadline_ms))

    def _mset(self, op: command_pb2.MSetOp, now: int) -> Result:
        entries = op.entries
        if self.max_memory:  # the bound costs a pass over the entries: only under a limit
            full = self._over_limit(sum(_GROWTH["set"](e) for e in entries))
            if full:
                return full
        if not entries:
            return MSetOk(0, 0)
        first = self._revision + 1
        if self._undo is not None:
            for e in entries:
                self._put(e.key, e.value, e.deadline_ms)
        else:
            self._put_strings(entries)
        return MSetOk(first, self._revision - first + 1)

    def _put_strings(self, entries: Iterable[Any]) -> None:
        """`_put(e.key, e.value, e.deadline_ms)` for each entry, in order, outside a
        transaction: what an MSetOp of hundreds of SETs (a set run, memcached's plain sets)
        costs every replica. The common case (no TTL before or after, a string or no key
        before) runs inline, with `_put`'s and `_account`'s bookkeeping summed once for the
        whole op: 2.1-2.3 against 3.0-3.2 us per SET in process. Anything else goes through
        `_put` itself, in its place. tests/unit/test_put_strings.py compares both ways."""
        data = self._data
        get = data.get
        put = self._put
        pack = _HASH_HEADER.pack
        digest = xxh3_128_intdigest
        add = self._events.append
        tag = tv.STRING_TAG
        acc = memory = 0
        created: list[bytes] = []
        revision = self._revision
        for e in entries:
            key = e.key
            value = e.value
            deadline = e.deadline_ms
            old = get(key)
            if deadline or (old is not None and (old[_DEADLINE] or type(old[_VALUE]) is not bytes)):
                self._revision = revision
                put(key, value, deadline)
                revision = self._revision
                continue
            size = len(key) + KEY_OVERHEAD
            if old is None:
                created.append(key)
            else:
                old_value, old_revision, _, old_flags = old
                acc -= digest(pack(len(key), old_revision, 0, tag, old_flags) + key + old_value)
                memory -= size + len(old_value)
            revision += 1
            data[key] = (value, revision, 0, 0)
            acc += digest(pack(len(key), revision, 0, tag, 0) + key + value)
            memory += size + len(value)
            add(_tuple_new(Change, ("set", key, revision, value, "string", old is None)))
        self._revision = revision
        self._digest_acc = (self._digest_acc + acc) % _DIGEST_MOD
        self._memory += memory
        for key in created:
            self._index(key)

    def _incr(self, op: command_pb2.IncrOp, now: int) -> Result:
        current = self._string(op.key, now, "incr")
        if isinstance(current, Failure):
            return current
        if current is None:
            base, deadline = 0, op.deadline_ms
        else:
            parsed = _parse_int(current[_VALUE])  # type: ignore[arg-type]  # a string here
            if parsed is None:
                return Failure(
                    ErrorCode.NOT_AN_INTEGER,
                    "the key's value is not a decimal 64-bit integer, so it cannot be incremented",
                )
            base, deadline = parsed, current[_DEADLINE]
        if op.delta == 0:  # a read of the counter: no write, no new version
            return IncrOk(base, 0 if current is None else current[_VERSION])
        total = base + op.delta
        if not INT64_MIN <= total <= INT64_MAX:
            return Failure(ErrorCode.OVERFLOW, f"{base} + {op.delta} overflows a 64-bit integer")
        full = self._over_limit(_GROWTH["incr"](op) if current is None else 0)
        return full or IncrOk(total, self._put(op.key, str(total).encode(), deadline))

    def _delete(self, key: bytes, now: int) -> Result:
        existed = self._live(key, now) is not None
        if key in self._data:
            self._drop(key, "delete" if existed else "expire")
        return DeleteOk(existed)

    # ------------------------------------------------------------- bookkeeping

    def _account(self, key: bytes, entry: _Stored, sign: int) -> None:
        value, version, deadline, flags = entry
        if type(value) is bytes:  # _entry_hash and _entry_nbytes inlined: every write's path
            digest = xxh3_128_intdigest(
                _HASH_HEADER.pack(len(key), version, deadline, tv.STRING_TAG, flags) + key + value
            )
            nbytes = len(key) + KEY_OVERHEAD + len(value)
        else:
            digest = _entry_hash(key, entry)
            nbytes = _entry_nbytes(key, entry)
        self._digest_acc = (self._digest_acc + sign * digest) % _DIGEST_MOD
        self._memory += sign * nbytes
        if deadline:
            self._ttl_keys += sign

    def _put(
        self,
        key: bytes,
        value: bytes | Container,
        deadline_ms: int,
        detached: _Stored | None = None,
        flags: int = 0,
    ) -> int:
        """Store a value; `detached` is the old entry when the caller already unaccounted it
        (a container changed in place); `flags` are memcached's client flags."""
        data = self._data
        if self._undo is not None and key not in self._undo and detached is None:
            self._undo[key] = _copied(data.get(key))
        old = detached if detached is not None else data.get(key)
        if old is None:
            self._index(key)
        elif detached is None:
            self._account(key, old, -1)
        revision = self._revision = self._revision + 1
        entry = (value, revision, deadline_ms, flags)
        data[key] = entry
        self._account(key, entry, 1)
        if deadline_ms and (old is None or old[_DEADLINE] != deadline_ms):
            heapq.heappush(self._expiry, (deadline_ms, key))
            if len(self._expiry) > 2 * self._ttl_keys + 1024:
                self._rebuild_expiry()
        if type(value) is bytes:  # Change(...) without its Python-level __new__: 0.1 us
            change = _tuple_new(Change, ("set", key, revision, value, "string", old is None))
        else:
            string = value if isinstance(value, bytes) else b""
            change = Change("set", key, revision, string, tv.type_name(value), old is None)
        self._events.append(change)
        return revision

    def _index(self, key: bytes) -> None:
        """A key stored that was not: into its scan bucket and its database's key count."""
        self._buckets.setdefault(scan_bucket(key), set()).add(key)
        if key[:5] == DB_PREFIX and len(key) > 5:
            self._db_keys[key[5]] = self._db_keys.get(key[5], 0) + 1

    def _drop(self, key: bytes, kind: str, detached: bool = False) -> None:
        """Remove a key (delete, expire or evict): a new revision and a change event."""
        if self._undo is not None and key not in self._undo and not detached:
            self._undo[key] = _copied(self._data.get(key))
        old = self._data.pop(key)
        if key[:5] == DB_PREFIX and len(key) > 5:
            self._db_keys[key[5]] -= 1
        if not detached:
            self._account(key, old, -1)
        bucket = self._buckets[scan_bucket(key)]
        bucket.discard(key)
        if not bucket:
            del self._buckets[scan_bucket(key)]
        self._revision += 1
        self._events.append(Change(kind, key, self._revision, b"", ""))

    def _over_limit(self, growth: int) -> Failure | None:
        """A write that may add `growth` accounted bytes, refused when it could pass the limit."""
        if not self.max_memory or growth <= 0 or self._memory + growth <= self.max_memory:
            return None
        return Failure(
            ErrorCode.OUT_OF_MEMORY,
            f"this write could add {growth} bytes to {self._memory} used, over --max-memory "
            f"{self.max_memory} bytes (eviction policy {self.eviction_policy}): delete keys, "
            "set TTLs, raise --max-memory or choose an eviction policy",
        )

    def _expire(self, now: int) -> None:
        heap = self._expiry
        removed = 0
        while heap and heap[0][0] <= now and removed < MAX_EXPIRIES_PER_COMMAND:
            deadline, key = heapq.heappop(heap)
            entry = self._data.get(key)
            if entry is not None and entry[_DEADLINE] == deadline:
                self._drop(key, "expire")
                removed += 1
        self.expired_total += removed

    def _evict(self, keys: Iterable[bytes], now: int) -> Result:
        evicted = 0
        for key in keys:
            if key in self._data:
                self._drop(key, "evict")
                evicted += 1
        self.evicted_total += evicted
        return EvictOk(evicted)

    def _config(self, op: command_pb2.ConfigOp) -> Result:
        if op.eviction_policy not in EVICTION_POLICIES:
            return Failure(
                ErrorCode.INVALID_COMMAND, f"unknown eviction policy {op.eviction_policy!r}"
            )
        self.max_memory = op.max_memory
        self.eviction_policy = op.eviction_policy
        return AnnounceOk()

    def _rebuild_expiry(self) -> None:
        """Drop stale heap entries (keys rewritten or removed) without scanning all keys."""
        data = self._data
        live = [*{(d, k) for d, k in self._expiry if (e := data.get(k)) and e[_DEADLINE] == d}]
        heapq.heapify(live)  # pop order is the tuples' total order: deterministic
        self._expiry = live  # only as a heap: lease reads peek at it from another thread

    def _sweep_sessions(self, now: int) -> None:
        idle = [cid for cid, s in self._sessions.items() if now - s.last_seen_ms > DEDUP_IDLE_MS]
        for cid in idle:
            del self._sessions[cid]

    # ------------------------------------------------------------ typed values

    def _data_cmd(self, cmd: command_pb2.DataCmd, now: int) -> Result:
        return self._run(cmd.op, cmd.deadline_ms, now, write=True)

    def _run(self, op: cache_pb2.DataOp, deadline: int, now: int, write: bool) -> Result:
        name = op.WhichOneof("op")
        if name == "call":
            return self._redis(op.call, now, write)
        handler = _HANDLERS.get(name or "")
        if handler is None:
            return Failure(ErrorCode.INVALID_COMMAND, f"data op has no known kind ({name!r})")
        if name not in READ_OPS and not write:
            return Failure(ErrorCode.INVALID_COMMAND, f"{name} changes data: it is not a read")
        return handler(self, getattr(op, name), now, deadline)

    def _typed(self, key: bytes, now: int, cls: type[C], op: str) -> C | Failure | None:
        entry = self._live(key, now)
        if entry is None:
            return None
        value = entry[_VALUE]
        if not isinstance(value, cls):
            return _wrong_type(key, value, cls.TYPE, op)
        return value

    def _open(
        self, key: bytes, now: int, cls: type[C], op: str
    ) -> tuple[C, _Stored | None] | Failure:
        """The container at key (a new empty one if missing), unaccounted until `_close`."""
        got = self._typed(key, now, cls, op)
        if isinstance(got, Failure):
            return got
        if got is None:
            if key in self._data:  # an expired key not yet swept
                self._drop(key, "expire")
            return cls(), None
        entry = self._data[key]
        if self._undo is not None and key not in self._undo:
            self._undo[key] = _copied(entry)
        self._account(key, entry, -1)
        return got, entry

    def _close(self, key: bytes, c: Container, entry: _Stored | None, changed: bool) -> None:
        """Account a container after `_open` (a change gets a new version; empty is deleted)."""
        if not changed:
            if entry is not None:
                self._account(key, entry, 1)
        elif not len(c) and not c.KEEP_EMPTY:
            if entry is not None:
                self._drop(key, "delete", detached=True)
        else:
            self._put(key, c, 0 if entry is None else entry[_DEADLINE], detached=entry)

    def _redis(self, call: cache_pb2.RedisCall, now: int, write: bool) -> Result:
        """A Redis command through the command table; errors are replies, never Failures."""
        if write and not self.notify_on:
            # on the protobuf's own argv: a plain SET never builds the list (~0.5 us)
            done = self._plain_write(call.db, call.argv)
            if done is not None:
                return done
        db = Db(self, call.db, now, write, call.user)
        return Value("reply", redis_commands.execute(db, list(call.argv)))

    def _plain_write(self, db: int, argv: Sequence[bytes]) -> Result | None:
        """`SET key value` and memcached's plain `set` through _plain_set, or None for any
        other command (for the table). Only while notifications are off (the table
        publishes them)."""
        parts = plain_set_parts(argv)
        if parts is None:
            return None
        key, value, flags, memcached = parts
        stored = self._plain_set(db, key, value, flags)
        if isinstance(stored, Error):
            return Value("reply", stored)
        return Value("reply", [STORED, stored] if memcached else OK)

    def sets_fit(self, least: int, growth: Callable[[], int]) -> bool:
        """Whether an entry's plain SETs, applied as MSetOps (the proposer's set runs),
        answer as they would one by one: no keyspace notifications to publish per command,
        and no --max-memory limit, or room for `growth()` (a bound of what the whole entry
        may add, one op per write, as eviction counts it) so that no write of the entry is
        refused and no eviction is chosen for it either way (MSetOp refuses all or none).
        `least` (at most `growth()`) refuses a full cache without computing `growth()`."""
        if self.notify_on:
            return False
        if not self.max_memory:
            return True
        room = self.max_memory - self._memory
        return least <= room and growth() <= room

    def _plain_set(self, db: int, key: bytes, value: bytes, flags: int) -> int | Error:
        """`SET key value` (no options) and memcached's `set key flags 0` as the table's
        commands apply them, ~3 us cheaper on every replica: the commonest writes. Same
        checks in the same order (the reserved prefix, then --max-memory), same effect (the
        value replaces any type and its TTL; memcached flags set or reset); returns the new
        version or the error reply. tests/unit/test_plain_set.py compares them."""
        if key[:5] == DB_PREFIX:
            return Error(RESERVED_KEY)
        if self._over_limit(len(key) + len(value) + KEY_OVERHEAD) is not None:
            return Error(OOM)
        return self._put(db_key(db, key), value, 0, flags=flags)

    def emit_published(self, channel: bytes, message: bytes) -> None:
        """A pub/sub message from a Redis PUBLISH inside MULTI (delivered like PublishOp)."""
        self._events.append(Published(channel, message))

    def db_size(self, db: int) -> int:
        """Stored keys of one Redis database (including expired ones not yet removed)."""
        if db:
            return self._db_keys.get(db, 0)
        return len(self._data) - sum(self._db_keys.values())

    # strings, as data ops (for transactions)
    def _op_get(self, op: cache_pb2.StrGet, now: int, _dl: int) -> Result:
        got = self._string(op.key, now, "get")
        if isinstance(got, Failure):
            return got
        return NIL if got is None else Value("bytes", got[_VALUE])

    def _op_set(self, op: cache_pb2.StrSet, now: int, deadline: int) -> Result:
        full = self._over_limit(_GROWTH["set"](op))
        return full or Value("int", self._put(op.key, op.value, deadline))

    def _op_delete(self, op: cache_pb2.KeyDelete, now: int, _dl: int) -> Result:
        deleted = self._delete(op.key, now)
        return Value("int", int(deleted.deleted)) if isinstance(deleted, DeleteOk) else deleted

    def _op_incr(self, op: cache_pb2.StrIncr, now: int, _dl: int) -> Result:
        result = self._incr(command_pb2.IncrOp(key=op.key, delta=op.delta), now)
        return Value("int", result.value) if isinstance(result, IncrOk) else result

    # hashes
    def _op_hset(self, op: cache_pb2.HSet, now: int, _dl: int) -> Result:
        opened = self._over_limit(_GROWTH["hset"](op)) or self._open(op.key, now, tv.Hash, "hset")
        if isinstance(opened, Failure):
            return opened
        h, entry = opened
        added = sum(h.set(f.field, f.value) for f in op.fields)
        self._close(op.key, h, entry, changed=bool(op.fields))
        return Value("int", added)

    def _op_hget(self, op: cache_pb2.HGet, now: int, _dl: int) -> Result:
        h = self._typed(op.key, now, tv.Hash, "hget")
        if isinstance(h, Failure):
            return h
        value = None if h is None else h.fields.get(op.field)
        return NIL if value is None else Value("bytes", value)

    def _op_hgetall(self, op: cache_pb2.HGetAll, now: int, _dl: int) -> Result:
        h = self._typed(op.key, now, tv.Hash, "hgetall")
        if isinstance(h, Failure):
            return h
        return Value("fields", () if h is None else tuple(sorted(h.fields.items())))

    def _counted(
        self, key: bytes, now: int, cls: type[C], op: str, change: Callable[[C], int]
    ) -> Result:
        """Apply `change` to the container at key; it returns how many elements it added or
        removed, which is the answer (and 0 means nothing changed: no new version)."""
        opened = self._open(key, now, cls, op)
        if isinstance(opened, Failure):
            return opened
        container, entry = opened
        count = change(container)
        self._close(key, container, entry, changed=count > 0)
        return Value("int", count)

    def _op_hdel(self, op: cache_pb2.HDel, now: int, _dl: int) -> Result:
        return self._counted(
            op.key, now, tv.Hash, "hdel", lambda h: sum(h.delete(f) for f in op.fields)
        )

    def _op_hincrby(self, op: cache_pb2.HIncrBy, now: int, _dl: int) -> Result:
        growth = _GROWTH["hincrby"](op)
        opened = self._over_limit(growth) or self._open(op.key, now, tv.Hash, "hincrby")
        if isinstance(opened, Failure):
            return opened
        h, entry = opened
        current = h.fields.get(op.field, b"0")
        base = _parse_int(current)
        total = None if base is None else base + op.delta
        if total is None or not INT64_MIN <= total <= INT64_MAX:
            self._close(op.key, h, entry, changed=False)
            what = "is not a decimal 64-bit integer" if base is None else "would overflow"
            return Failure(ErrorCode.NOT_AN_INTEGER, f"hash field {op.field!r} {what}")
        h.set(op.field, str(total).encode())
        self._close(op.key, h, entry, changed=True)
        return Value("int", total)

    def _op_hlen(self, op: cache_pb2.HLen, now: int, _dl: int) -> Result:
        return self._count(self._typed(op.key, now, tv.Hash, "hlen"))

    def _count(self, got: Container | Failure | None) -> Result:
        if isinstance(got, Failure):
            return got
        return Value("int", 0 if got is None else len(got))

    # sorted sets
    def _op_zadd(self, op: cache_pb2.ZAdd, now: int, _dl: int) -> Result:
        opened = self._over_limit(_GROWTH["zadd"](op)) or self._open(op.key, now, tv.ZSet, "zadd")
        if isinstance(opened, Failure):
            return opened
        z, entry = opened
        added, changed = 0, False
        for m in op.members:
            before = z.scores.get(m.member)
            added += z.set(m.member, m.score)
            changed = changed or before != tv.canonical_score(m.score)
        self._close(op.key, z, entry, changed)
        return Value("int", added)

    def _op_zincrby(self, op: cache_pb2.ZIncrBy, now: int, _dl: int) -> Result:
        growth = _GROWTH["zincrby"](op)
        opened = self._over_limit(growth) or self._open(op.key, now, tv.ZSet, "zincrby")
        if isinstance(opened, Failure):
            return opened
        z, entry = opened
        score = z.scores.get(op.member, 0.0) + op.delta
        if math.isnan(score):
            self._close(op.key, z, entry, changed=False)
            return Failure(ErrorCode.OVERFLOW, "the increment would make the score NaN")
        z.set(op.member, score)
        self._close(op.key, z, entry, changed=True)
        return Value("score", tv.canonical_score(score))

    def _op_zscore(self, op: cache_pb2.ZScore, now: int, _dl: int) -> Result:
        z = self._typed(op.key, now, tv.ZSet, "zscore")
        if isinstance(z, Failure):
            return z
        score = None if z is None else z.scores.get(op.member)
        return NIL if score is None else Value("score", score)

    def _op_zrank(self, op: cache_pb2.ZRank, now: int, _dl: int) -> Result:
        z = self._typed(op.key, now, tv.ZSet, "zrank")
        if isinstance(z, Failure):
            return z
        score = None if z is None else z.scores.get(op.member)
        if z is None or score is None:
            return NIL
        rank = z.order.rank((score, op.member))
        return Value("int", len(z) - 1 - rank if op.reverse else rank)

    def _op_zrange(self, op: cache_pb2.ZRange, now: int, _dl: int) -> Result:
        z = self._typed(op.key, now, tv.ZSet, "zrange")
        if isinstance(z, Failure):
            return z
        if z is None:
            return Value("scored", ())
        start, stop = _rank_range(op.start, op.stop, len(z))
        if op.reverse:
            pairs = z.order.slice(len(z) - stop, len(z) - start)[::-1]
        else:
            pairs = z.order.slice(start, stop)
        return Value("scored", tuple((m, s) for s, m in pairs))

    def _op_zrangebyscore(self, op: cache_pb2.ZRangeByScore, now: int, _dl: int) -> Result:
        z = self._typed(op.key, now, tv.ZSet, "zrangebyscore")
        if isinstance(z, Failure):
            return z
        if z is None:
            return Value("scored", ())
        lo, hi = _score_ranks(z, op.min, op.max)
        limit = op.limit or len(z)
        if op.reverse:
            end = hi - op.offset
            pairs = z.order.slice(max(lo, end - limit), end)[::-1]
        else:
            begin = lo + op.offset
            pairs = z.order.slice(begin, min(hi, begin + limit))
        return Value("scored", tuple((m, s) for s, m in pairs))

    def _op_zrem(self, op: cache_pb2.ZRem, now: int, _dl: int) -> Result:
        return self._counted(
            op.key, now, tv.ZSet, "zrem", lambda z: sum(z.remove(m) for m in op.members)
        )

    def _op_zcard(self, op: cache_pb2.ZCard, now: int, _dl: int) -> Result:
        return self._count(self._typed(op.key, now, tv.ZSet, "zcard"))

    def _op_zcount(self, op: cache_pb2.ZCount, now: int, _dl: int) -> Result:
        z = self._typed(op.key, now, tv.ZSet, "zcount")
        if isinstance(z, Failure):
            return z
        if z is None:
            return Value("int", 0)
        lo, hi = _score_ranks(z, op.min, op.max)
        return Value("int", max(hi - lo, 0))

    # lists
    def _op_push(self, op: cache_pb2.Push, now: int, _dl: int) -> Result:
        opened = self._over_limit(_GROWTH["push"](op)) or self._open(op.key, now, tv.List, "push")
        if isinstance(opened, Failure):
            return opened
        lst, entry = opened
        right = op.end == cache_pb2.RIGHT
        for value in op.values:
            lst.push(value, right)
        self._close(op.key, lst, entry, changed=bool(op.values))
        return Value("int", len(lst))

    def _op_pop(self, op: cache_pb2.Pop, now: int, _dl: int) -> Result:
        opened = self._open(op.key, now, tv.List, "pop")
        if isinstance(opened, Failure):
            return opened
        lst, entry = opened
        right = op.end == cache_pb2.RIGHT
        items = tuple(lst.pop(right) for _ in range(min(op.count or 1, len(lst))))
        self._close(op.key, lst, entry, changed=bool(items))
        return Value("list", items)

    def _op_lrange(self, op: cache_pb2.LRange, now: int, _dl: int) -> Result:
        lst = self._typed(op.key, now, tv.List, "lrange")
        if isinstance(lst, Failure):
            return lst
        if lst is None:
            return Value("list", ())
        start, stop = _rank_range(op.start, op.stop, len(lst))
        return Value("list", tuple(itertools.islice(lst.items, start, stop)))

    def _op_llen(self, op: cache_pb2.LLen, now: int, _dl: int) -> Result:
        return self._count(self._typed(op.key, now, tv.List, "llen"))

    # sets
    def _op_sadd(self, op: cache_pb2.SAdd, now: int, _dl: int) -> Result:
        return self._over_limit(_GROWTH["sadd"](op)) or self._counted(
            op.key, now, tv.Set, "sadd", lambda s: sum(s.add(m) for m in op.members)
        )

    def _op_srem(self, op: cache_pb2.SRem, now: int, _dl: int) -> Result:
        return self._counted(
            op.key, now, tv.Set, "srem", lambda s: sum(s.remove(m) for m in op.members)
        )

    def _op_smembers(self, op: cache_pb2.SMembers, now: int, _dl: int) -> Result:
        s = self._typed(op.key, now, tv.Set, "smembers")
        if isinstance(s, Failure):
            return s
        return Value("list", () if s is None else tuple(sorted(s.members)))

    def _op_sismember(self, op: cache_pb2.SIsMember, now: int, _dl: int) -> Result:
        s = self._typed(op.key, now, tv.Set, "sismember")
        if isinstance(s, Failure):
            return s
        return Value("int", int(s is not None and op.member in s.members))

    def _op_scard(self, op: cache_pb2.SCard, now: int, _dl: int) -> Result:
        return self._count(self._typed(op.key, now, tv.Set, "scard"))

    # any key
    def _op_expire(self, op: cache_pb2.Expire, now: int, deadline: int) -> Result:
        return self._retime(op.key, now, deadline)

    def _op_persist(self, op: cache_pb2.Persist, now: int, _dl: int) -> Result:
        return self._retime(op.key, now, 0)

    def _retime(self, key: bytes, now: int, deadline: int) -> Result:
        entry = self._live(key, now)
        if entry is None or (not deadline and not entry[_DEADLINE]):
            return Value("int", 0)
        self._put(key, entry[_VALUE], deadline, flags=entry[_FLAGS])
        return Value("int", 1)

    def _op_ttl(self, op: cache_pb2.Ttl, now: int, _dl: int) -> Result:
        entry = self._live(op.key, now)
        if entry is None:
            return Value("int", -2)
        return Value("int", max(entry[_DEADLINE] - now, 1) if entry[_DEADLINE] else -1)

    def _op_type(self, op: cache_pb2.TypeOf, now: int, _dl: int) -> Result:
        entry = self._live(op.key, now)
        return Value("text", "none" if entry is None else tv.type_name(entry[_VALUE]))

    # ------------------------------------------------------------ transactions

    def _txn(self, op: command_pb2.TxnOp, now: int) -> Result:
        holds = all(self._compare(c, now) for c in op.compares)
        branch = op.success if holds else op.failure
        # _put, _drop and _open record each key's entry before its first change. A branch of
        # Redis commands only cannot fail (their errors are replies): nothing to record.
        undo: dict[bytes, _Stored | None] = {}
        revision, events = self._revision, len(self._events)
        results: list[Value] = []
        if any(cmd.op.WhichOneof("op") != "call" for cmd in branch):
            self._undo = undo
        try:
            for i, cmd in enumerate(branch):
                result = self._run(cmd.op, cmd.deadline_ms, now, write=True)
                if isinstance(result, Failure):
                    self._undo = None
                    self._roll_back(undo, revision, events)
                    return Failure(result.code, f"transaction op {i + 1}: {result.message}")
                results.append(result)  # type: ignore[arg-type]  # data ops answer Values
        finally:
            self._undo = None
        return TxnOk(holds, tuple(results))

    def _roll_back(self, undo: dict[bytes, _Stored | None], revision: int, events: int) -> None:
        for key, saved in undo.items():
            current = self._data.pop(key, None)
            prefixed = key[:5] == DB_PREFIX and len(key) > 5
            if current is not None:
                self._account(key, current, -1)
                self._buckets[scan_bucket(key)].discard(key)
                if prefixed:
                    self._db_keys[key[5]] -= 1
            if saved is not None:
                self._data[key] = saved
                self._account(key, saved, 1)
                self._index(key)
                if saved[_DEADLINE]:
                    heapq.heappush(self._expiry, (saved[_DEADLINE], key))
            if not self._buckets.get(scan_bucket(key), True):
                del self._buckets[scan_bucket(key)]
        self._revision = revision
        del self._events[events:]
        self._notified = min(self._notified, events)

    def _compare(self, c: cache_pb2.Compare, now: int) -> bool:
        entry = self._live(c.key, now)
        target = c.WhichOneof("target")
        actual: object
        expected: object
        if target == "exists":
            actual, expected = entry is not None, c.exists
        elif target == "version":
            actual, expected = (0 if entry is None else entry[_VERSION]), c.version
        else:
            value = None if entry is None else entry[_VALUE]
            if not isinstance(value, bytes):
                return c.op == cache_pb2.Compare.NOT_EQUAL
            actual, expected = value, c.value
        return _COMPARE_OPS[c.op](actual, expected)

    # ----------------------------------------------------------------- reads

    def get(self, key: bytes, now_ms: int) -> Entry | None:
        """The live string entry for key, hiding one whose deadline is at or before now_ms.

        A key of another type reads as an Entry whose value is the container; the Get RPC
        refuses it (see `read` for typed reads)."""
        entry = self._live(key, max(now_ms, self._cluster_time_ms))
        return None if entry is None else Entry(*entry)

    def live(self, key: bytes, now_ms: int = 0) -> _Stored | None:
        """The stored (value, version, deadline, flags) at key as a read at the applied
        cluster time (or at `now_ms` if later, as read_call) sees it, or None: the
        front-ends' GET fast paths."""
        return self._live(key, max(now_ms, self._cluster_time_ms))

    def read(self, op: cache_pb2.DataOp, now_ms: int) -> Result:
        """Serve a read-only data op from local state (no change, no event)."""
        return self._run(op, 0, max(now_ms, self._cluster_time_ms), write=False)

    def read_call(self, argv: list[bytes], db: int, now_ms: int, user: str = "") -> ReplyT:
        """A read-only Redis-table command on local state, without building a DataOp (the
        front-ends' local reads: RESP, memcached); a script's calls checked as `user`."""
        now = max(now_ms, self._cluster_time_ms)
        return redis_commands.execute(Db(self, db, now, False, user), argv)

    def scan(
        self, cursor: int, prefix: bytes, count: int, now_ms: int, db: int = 0
    ) -> tuple[list[bytes], int]:
        """Live keys of Redis database `db` (0: the gRPC keyspace) in whole buckets from
        `cursor` on, stopping after about `count` examined keys (or 4,096 empty buckets);
        returns the (internal) keys and the next cursor (0 = done)."""
        now = max(now_ms, self._cluster_time_ms)
        want = db_key(db, prefix)
        keys: list[bytes] = []
        if not self._buckets:
            return keys, 0
        examined = 0
        bucket = cursor
        budget = count + 4096
        while bucket < SCAN_BUCKETS and examined < count and budget > 0:
            members = self._buckets.get(bucket, ())
            examined += len(members)
            budget -= 1 + len(members)
            keys.extend(
                k
                for k in sorted(members)
                if k.startswith(want) and key_db(k)[0] == db and self._live(k, now)
            )
            bucket += 1
        return keys, (0 if bucket >= SCAN_BUCKETS else bucket)

    @property
    def cluster_time_ms(self) -> int:
        return self._cluster_time_ms

    def next_deadline_ms(self) -> float:
        """A lower bound on the earliest deadline of any key (inf: none has one). The heap is
        pruned lazily, so this may name a key rewritten or gone: callers treat it as "some
        key may expire from here on". Safe from any thread (the tick thread may be applying)."""
        try:
            return self._expiry[0][0]
        except IndexError:
            return math.inf

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def memory_used(self) -> int:
        """Accounted bytes of every key and value (node/DESIGN.md), equal on every replica."""
        return self._memory

    @property
    def ttl_keys(self) -> int:
        """Stored keys that have a deadline, in every database (INFO's expires)."""
        return self._ttl_keys

    @property
    def members(self) -> dict[str, Member]:
        return dict(self._members)

    def __len__(self) -> int:
        return len(self._data)

    def user_key_count(self) -> int:
        """Stored keys of the 16 Redis databases (expired ones not yet removed included):
        the internal ones (users, scripts, libraries, pending rejoins) left out."""
        internal = sum(n for db, n in self._db_keys.items() if db >= DATABASES)
        return len(self._data) - internal

    def keys_with_deadlines(self, limit: int) -> list[tuple[int, bytes]]:
        """Up to `limit` (deadline, key) pairs among the soonest to expire (heap order)."""
        data = self._data
        return [
            (d, k)
            for d, k in self._expiry[: 4 * limit]
            if (e := data.get(k)) is not None and e[_DEADLINE] == d
        ][:limit]

    def random_keys(self, bucket: int, limit: int) -> list[bytes]:
        """Up to `limit` keys from the first non-empty scan bucket at or after `bucket`."""
        for b in itertools.chain(range(bucket, SCAN_BUCKETS), range(bucket)):
            members = self._buckets.get(b)
            if members:
                return sorted(members)[:limit]
        return []

    def keys(self) -> Iterator[bytes]:
        """Every stored key, oldest insertion first."""
        return iter(self._data)

    def nbytes_of(self, key: bytes) -> int | None:
        """Accounted bytes of a stored key, or None when it is not stored."""
        entry = self._data.get(key)
        return None if entry is None else _entry_nbytes(key, entry)

    def deadline_of(self, key: bytes) -> int | None:
        """The key's deadline (0 = none), or None when it is not stored."""
        entry = self._data.get(key)
        return None if entry is None else entry[_DEADLINE]

    def digest(self) -> str:
        """Hash of the content: keys, values, versions, deadlines, members, revision.

        The cluster clock is left out so that idle clock ticks do not change it:
        replicas that applied the same writes show the same digest.
        """
        h = hashlib.blake2b(digest_size=16)
        h.update(self._digest_acc.to_bytes(16, "big"))
        h.update(struct.pack(">QQ", self._revision, self.max_memory))
        h.update(self.eviction_policy.encode())
        if self.notify_flags:  # left out while off (digests compare within one build only)
            h.update(b"notify:" + self.notify_flags.encode())
        for node_id in sorted(self._members):
            m = self._members[node_id]
            h.update("\0".join((node_id, *m, "")).encode())
        return h.hexdigest()

    # ------------------------------------------------------------- snapshots

    def export_items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every stored key with its encoded entry, for a snapshot."""
        pack = _FLAGGED_HEADER.pack
        for key, entry in self._data.items():
            tag, payload = tv.encode_value(entry[_VALUE])
            yield key, pack(entry[_VERSION], entry[_DEADLINE], tag, entry[_FLAGS]) + payload

    def export_cut(self) -> list[tuple[bytes, bytes | _Stored]]:
        """A copy of the items that later applies cannot change: call it under the apply lock.

        Strings are immutable and kept as references (cheap); containers change in place,
        so they are encoded now. `encode_cut_item` finishes the rest outside the lock.
        """
        pack = _FLAGGED_HEADER.pack
        out: list[tuple[bytes, bytes | _Stored]] = []
        append = out.append
        for key, entry in self._data.items():
            value = entry[_VALUE]
            if isinstance(value, bytes):
                append((key, entry))
            else:
                header = pack(entry[_VERSION], entry[_DEADLINE], value.TAG, entry[_FLAGS])
                append((key, header + value.encode()))
        return out

    def export_meta(self) -> bytes:
        """Everything but the keys, as JSON bytes, for a snapshot."""
        sessions = {
            cid: {
                "floor": s.floor,
                "last_seen_ms": s.last_seen_ms,
                "results": [[seq, _result_to_json(r)] for seq, r in s.results.items()],
            }
            for cid, s in self._sessions.items()
        }
        meta = {
            "format": SNAPSHOT_FORMAT,
            "revision": self._revision,
            "cluster_time_ms": self._cluster_time_ms,
            "next_sweep_ms": self._next_sweep_ms,
            "expired_total": self.expired_total,
            "evicted_total": self.evicted_total,
            "max_memory": self.max_memory,
            "eviction_policy": self.eviction_policy,
            "notify_keyspace_events": self.notify_flags,
            "members": {k: list(v) for k, v in self._members.items()},
            "sessions": sessions,
        }
        return json.dumps(meta, separators=(",", ":")).encode()

    @classmethod
    def restore(cls, meta: bytes, items: Iterable[tuple[bytes, bytes]]) -> StateMachine:
        """Rebuild a state machine from export_meta() and export_items() output."""
        sm = cls()
        doc = json.loads(meta)
        decode = _DECODERS.get(doc.get("format", 1))
        if decode is None:  # checked first: a newer format may name its fields differently
            raise ValueError(
                f"the snapshot's state has format {doc.get('format')!r}; this build reads "
                f"formats 1 to {SNAPSHOT_FORMAT}: upgrade this node before it loads a "
                "snapshot written by a newer raftcache"
            )
        sm._revision = doc["revision"]
        sm._cluster_time_ms = doc["cluster_time_ms"]
        sm._next_sweep_ms = doc["next_sweep_ms"]
        sm.expired_total = doc["expired_total"]
        sm.evicted_total = doc.get("evicted_total", 0)
        sm.max_memory = doc.get("max_memory", 0)
        sm.eviction_policy = doc.get("eviction_policy", "noeviction")
        sm.set_notify_flags(doc.get("notify_keyspace_events", ""))
        sm._members = {k: Member(*v) for k, v in doc["members"].items()}
        for cid, s in doc["sessions"].items():
            results = {int(seq): _result_from_json(r) for seq, r in s["results"]}
            sm._sessions[cid] = _Session(results, s["floor"], s["last_seen_ms"])
        acc = 0
        data = sm._data
        for key, raw in items:
            key = bytes(key)
            entry = decode(raw)
            data[key] = entry
            acc += _entry_hash(key, entry)
            sm._memory += _entry_nbytes(key, entry)
            sm._index(key)
            if entry[_DEADLINE]:
                sm._ttl_keys += 1
        sm._digest_acc = acc % _DIGEST_MOD
        sm._expiry = [(e[_DEADLINE], k) for k, e in data.items() if e[_DEADLINE]]
        heapq.heapify(sm._expiry)
        return sm


def encode_cut_item(item: bytes | _Stored) -> bytes:
    """An export_cut() item as export_items() encodes it."""
    if isinstance(item, bytes):
        return item
    value = item[_VALUE]
    assert isinstance(value, bytes)
    return (
        _FLAGGED_HEADER.pack(item[_VERSION], item[_DEADLINE], tv.STRING_TAG, item[_FLAGS]) + value
    )


def _decode_entry_v1(raw: bytes) -> _Stored:
    version, deadline = _ENTRY_HEADER.unpack_from(raw)
    return (bytes(raw[_ENTRY_HEADER.size :]), version, deadline, 0)


def _decode_entry_v2(raw: bytes) -> _Stored:
    version, deadline, tag = _TYPED_HEADER.unpack_from(raw)
    return (tv.decode_value(tag, raw[_TYPED_HEADER.size :]), version, deadline, 0)


def _decode_entry_v3(raw: bytes) -> _Stored:
    version, deadline, tag, flags = _FLAGGED_HEADER.unpack_from(raw)
    return (tv.decode_value(tag, raw[_FLAGGED_HEADER.size :]), version, deadline, flags)


_DECODERS = {1: _decode_entry_v1, 2: _decode_entry_v2, 3: _decode_entry_v3}


def _wrong_type(key: bytes, value: bytes | Container, wanted: str, op: str) -> Failure:
    have = tv.TYPE_NAMES[tv.type_name(value)]
    return Failure(
        ErrorCode.WRONG_TYPE,
        f"WRONGTYPE: key {key[:64]!r} holds {have}, but {op} works on {tv.TYPE_NAMES[wanted]}: "
        "use a different key, or delete this one first",
    )


def _rank_range(start: int, stop: int, n: int) -> tuple[int, int]:
    """Redis's inclusive [start, stop] with negative indexes, as a clipped half-open range."""
    if start < 0:
        start += n
    if stop < 0:
        stop += n
    start = max(start, 0)
    stop = min(stop, n - 1)
    return (start, stop + 1) if start <= stop else (0, 0)


def _score_ranks(
    z: tv.ZSet, low: cache_pb2.ScoreBound, high: cache_pb2.ScoreBound
) -> tuple[int, int]:
    lo = z.bounds_rank(low.value, low.exclusive, upper=False)
    hi = z.bounds_rank(high.value, high.exclusive, upper=True)
    return lo, max(hi, lo)


def _copied(entry: _Stored | None) -> _Stored | None:
    if entry is None or isinstance(entry[_VALUE], bytes):
        return entry
    return (entry[_VALUE].copy(), entry[_VERSION], entry[_DEADLINE], entry[_FLAGS])


_COMPARE_OPS: dict[int, Callable[[Any, Any], bool]] = {
    cache_pb2.Compare.EQUAL: lambda a, b: a == b,
    cache_pb2.Compare.NOT_EQUAL: lambda a, b: a != b,
    cache_pb2.Compare.GREATER: lambda a, b: a > b,
    cache_pb2.Compare.LESS: lambda a, b: a < b,
}


def _key(body: Any) -> int:
    return len(body.key) + KEY_OVERHEAD


_GROWTH: dict[str, Callable[[Any], int]] = {
    # The most accounted bytes an op can add (a new key, new fields): the same bound in the
    # leader's eviction choice and in apply's limit check.
    "set": lambda b: _key(b) + len(b.value),
    "incr": lambda b: _key(b) + 20,
    "hset": lambda b: (
        _key(b) + sum(len(f.field) + len(f.value) + tv.Hash.OVERHEAD for f in b.fields)
    ),
    "hincrby": lambda b: _key(b) + len(b.field) + 20 + tv.Hash.OVERHEAD,
    "zadd": lambda b: _key(b) + sum(len(m.member) + tv.ZSet.OVERHEAD for m in b.members),
    "zincrby": lambda b: _key(b) + len(b.member) + tv.ZSet.OVERHEAD,
    "push": lambda b: _key(b) + sum(len(v) + tv.List.OVERHEAD for v in b.values),
    "sadd": lambda b: _key(b) + sum(len(m) + tv.Set.OVERHEAD for m in b.members),
}


def _call_growth(call: cache_pb2.RedisCall) -> int:
    """A Redis write adds at most its argument bytes, with a key's and an element's overhead
    for each (a bound for the eviction choice; the command itself reserves exactly)."""
    args = call.argv[1:]
    return sum(len(a) for a in args) + len(args) * (KEY_OVERHEAD + tv.ZSet.OVERHEAD)


def _data_growth(op: cache_pb2.DataOp) -> int:
    kind = op.WhichOneof("op") or ""
    if kind == "call":
        return _call_growth(op.call)
    grow = _GROWTH.get(kind)
    return grow(getattr(op, kind)) if grow is not None else 0


def op_growth(op: command_pb2.Op) -> int:
    """An upper bound of the accounted bytes `op` can add (0 for ops that only shrink)."""
    kind = op.WhichOneof("kind")
    if kind in ("set", "incr"):
        return _GROWTH[kind](getattr(op, kind))
    if kind == "mset":
        return sum(_GROWTH["set"](e) for e in op.mset.entries)
    if kind == "data":
        return _data_growth(op.data.op)
    if kind == "txn":
        branches = (*op.txn.success, *op.txn.failure)
        return sum(_data_growth(cmd.op) for cmd in branches)
    return 0


def plain_set_parts(argv: Sequence[bytes]) -> tuple[bytes, bytes, int, bool] | None:
    """(key, value, client flags, memcached) of `SET key value` with no options or of
    memcached's `set` with no CAS and no expiry (`raftcache.mc.store set key value flags 0
    ""`, valid flags), else None: the writes StateMachine._plain_set applies."""
    n = len(argv)
    if n == 3 and argv[0].lower() == b"set":
        return argv[1], argv[2], 0, False
    if (
        n == 7
        and argv[1] == b"set"
        and argv[5] == b"0"
        and not argv[6]
        and argv[0].lower() == STORE_COMMAND
        and (flags := client_flags(argv[4])) is not None
    ):
        return argv[2], argv[3], flags, True
    return None


SET_OK: Final = Value("reply", OK)
"""What a plain Redis SET answers when it succeeds (set_run_answers shares it)."""


def set_run_answers(result: Result, memcached: Sequence[bool]) -> list[Result]:
    """What each write of a set run (plain SETs proposed as one MSetOp, node/proposer.py)
    answers: what _plain_write answers for it alone (`memcached`: which were memcached's
    `set`). Each entry of an MSetOp gets the next version, in order."""
    if isinstance(result, MSetOk):
        if not any(memcached):  # Redis SETs only: one shared answer (a NamedTuple, immutable)
            return [SET_OK] * len(memcached)
        first = result.first
        return [Value("reply", [STORED, first + i] if mc else OK) for i, mc in enumerate(memcached)]
    if isinstance(result, Failure) and result.code is ErrorCode.OUT_OF_MEMORY:
        return [Value("reply", Error(OOM)) for _ in memcached]
    return [result for _ in memcached]


READ_OPS = frozenset(
    [
        "get",
        "hget",
        "hgetall",
        "hlen",
        "zscore",
        "zrank",
        "zrange",
        "zrangebyscore",
        "zcard",
        "zcount",
        "lrange",
        "llen",
        "smembers",
        "sismember",
        "scard",
        "ttl",
        "type",
    ]
)
"""DataOp kinds that only read: served with the request's consistency, never logged."""

_Handler = Callable[[StateMachine, Any, int, int], Result]
_HANDLERS: dict[str, _Handler] = {
    f.name: getattr(StateMachine, f"_op_{f.name}")
    for f in cache_pb2.DataOp.DESCRIPTOR.oneofs_by_name["op"].fields
    if f.name != "call"  # a Redis command: dispatched by _run through the command table
}


def _result_to_json(result: Result) -> list[object]:
    if isinstance(result, Failure):
        return ["Failure", result.code.value, result.message]
    if isinstance(result, Value) and result.kind == "reply":
        return ["Value", "reply", {"r": reply_to_proto(result.data).SerializeToString().hex()}]
    if isinstance(result, Value):
        return ["Value", result.kind, _data_to_json(result.data)]
    if isinstance(result, TxnOk):
        return ["TxnOk", result.succeeded, [_result_to_json(r) for r in result.results]]
    return [type(result).__name__, *result]


def _data_to_json(data: Any) -> Any:
    if isinstance(data, bytes):
        return {"b": data.hex()}
    if isinstance(data, tuple):
        return {"t": [_data_to_json(d) for d in data]}
    if isinstance(data, float) and not math.isfinite(data):
        return {"f": repr(data)}
    return data


def _data_from_json(doc: Any) -> Any:
    if isinstance(doc, dict):
        if "b" in doc:
            return bytes.fromhex(doc["b"])
        if "t" in doc:
            return tuple(_data_from_json(d) for d in doc["t"])
        if "r" in doc:
            return reply_from_proto(cache_pb2.Reply.FromString(bytes.fromhex(doc["r"])))
        return float(doc["f"])
    return doc


def _result_from_json(doc: list[Any]) -> Result:
    tag, *fields = doc
    if tag == "Failure":
        return Failure(ErrorCode(fields[0]), str(fields[1]))
    if tag == "Value":
        return Value(str(fields[0]), _data_from_json(fields[1]))
    if tag == "TxnOk":
        results = tuple(_result_from_json(r) for r in fields[1])
        return TxnOk(bool(fields[0]), results)  # type: ignore[arg-type]
    if tag == "EvictOk":
        return EvictOk(int(fields[0]))
    if tag == "MSetOk":
        return MSetOk(int(fields[0]), int(fields[1]))
    if tag == "SetOk":
        return SetOk(int(fields[0]))
    if tag == "DeleteOk":
        return DeleteOk(bool(fields[0]))
    if tag == "IncrOk":
        return IncrOk(int(fields[0]), int(fields[1]))
    if tag == "AnnounceOk":
        return AnnounceOk()
    raise ValueError(f"unknown result tag {tag!r} in snapshot")
