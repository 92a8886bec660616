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
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from raftcache.v1 import command_pb2

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

MAX_EXPIRIES_PER_COMMAND = 10_000
"""Keys removed by one command at most; the rest follow with later commands (reads hide them)."""

DEDUP_RESULTS_PER_CLIENT = 1024
"""Results remembered per client for request-id deduplication."""

DEDUP_MAX_CLIENTS = 10_000
DEDUP_IDLE_MS = 3_600_000
"""A client session unused for this long (cluster time) is forgotten."""

_SWEEP_EVERY_MS = 60_000
_DIGEST_MOD = 1 << 128
_ENTRY_HEADER = struct.Struct(">Qq")  # version, deadline_ms
_HASH_HEADER = struct.Struct(">IQq")  # key length, version, deadline_ms


class ErrorCode(enum.Enum):
    """Domain failures the state machine answers with; mapped to gRPC codes in status_codes."""

    CONDITION_FAILED = "condition_failed"
    NOT_AN_INTEGER = "not_an_integer"
    OVERFLOW = "overflow"
    REQUEST_TOO_OLD = "request_too_old"
    INVALID_COMMAND = "invalid_command"


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


class Failure(NamedTuple):
    code: ErrorCode
    message: str


Result = SetOk | DeleteOk | IncrOk | MSetOk | AnnounceOk | Failure


_Stored = tuple[bytes, int, int]
"""How entries are kept: a plain tuple (value, version, deadline_ms). CPython's GC stops
tracking tuples of untracked objects, so a million keys cost a full collection ~1 ms;
as NamedTuples they stay tracked and a full collection takes ~100 ms (measured), which
stalls the Raft tick thread."""
_VALUE: Final = 0
_VERSION: Final = 1
_DEADLINE: Final = 2


class Entry(NamedTuple):
    """A stored value; deadline_ms 0 means no expiry."""

    value: bytes
    version: int
    deadline_ms: int


class Member(NamedTuple):
    raft_addr: str
    client_addr: str


@dataclass
class _Session:
    """Recent results of one client's non-idempotent ops, keyed by sequence number."""

    results: dict[int, Result] = field(default_factory=dict)
    floor: int = 0  # a seq <= floor that is not in results was forgotten (or never seen)
    last_seen_ms: int = 0


def _entry_hash(key: bytes, entry: _Stored) -> int:
    header = _HASH_HEADER.pack(len(key), entry[_VERSION], entry[_DEADLINE])
    digest = hashlib.blake2b(header + key + entry[_VALUE], digest_size=16).digest()
    return int.from_bytes(digest, "big")


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
        self.expired_total = 0

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
        return [self._apply_op(op, now) for op in command.ops]

    def _apply_op(self, op: command_pb2.Op, now: int) -> Result:
        if not op.HasField("request_id"):
            return self._dispatch(op, now)
        rid = op.request_id
        # Sessions are kept in least-recently-used order (re-inserted on every use), so
        # evicting one is O(1); the order is part of the replicated state and snapshot.
        session = self._sessions.pop(rid.client_id, None) or _Session()
        self._sessions[rid.client_id] = session
        session.last_seen_ms = now
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

    def _dispatch(self, op: command_pb2.Op, now: int) -> Result:
        kind = op.WhichOneof("kind")
        if kind == "set":
            return self._set(op.set, now)
        if kind == "delete":
            return self._delete(op.delete.key, now)
        if kind == "incr":
            return self._incr(op.incr, now)
        if kind == "mset":
            versions = [self._store(e.key, e.value, e.deadline_ms) for e in op.mset.entries]
            return MSetOk(versions[0], len(versions)) if versions else MSetOk(0, 0)
        if kind == "announce":
            a = op.announce
            self._members[a.node_id] = Member(a.raft_addr, a.client_addr)
            return AnnounceOk()
        return Failure(ErrorCode.INVALID_COMMAND, f"op has no known kind ({kind!r})")

    def _live(self, key: bytes, now: int) -> _Stored | None:
        entry = self._data.get(key)
        if entry is None or (entry[_DEADLINE] and entry[_DEADLINE] <= now):
            return None
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
        return SetOk(self._store(op.key, op.value, op.deadline_ms))

    def _incr(self, op: command_pb2.IncrOp, now: int) -> Result:
        current = self._live(op.key, now)
        if current is None:
            base, deadline = 0, op.deadline_ms
        else:
            parsed = _parse_int(current[_VALUE])
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
        return IncrOk(total, self._store(op.key, str(total).encode(), deadline))

    def _delete(self, key: bytes, now: int) -> Result:
        existed = self._live(key, now) is not None
        if key in self._data:
            self._remove(key)
        if existed:
            self._revision += 1
        return DeleteOk(existed)

    def _store(self, key: bytes, value: bytes, deadline_ms: int) -> int:
        self._revision += 1
        old = self._data.get(key)
        if old is not None:
            self._digest_acc -= _entry_hash(key, old)
            if old[_DEADLINE]:
                self._ttl_keys -= 1
        entry = (value, self._revision, deadline_ms)
        self._data[key] = entry
        self._digest_acc = (self._digest_acc + _entry_hash(key, entry)) % _DIGEST_MOD
        if deadline_ms:
            self._ttl_keys += 1
            heapq.heappush(self._expiry, (deadline_ms, key))
            if len(self._expiry) > 2 * self._ttl_keys + 1024:
                self._rebuild_expiry()
        return self._revision

    def _remove(self, key: bytes) -> None:
        old = self._data.pop(key)
        self._digest_acc = (self._digest_acc - _entry_hash(key, old)) % _DIGEST_MOD
        if old[_DEADLINE]:
            self._ttl_keys -= 1

    def _expire(self, now: int) -> None:
        heap = self._expiry
        removed = 0
        while heap and heap[0][0] <= now and removed < MAX_EXPIRIES_PER_COMMAND:
            deadline, key = heapq.heappop(heap)
            entry = self._data.get(key)
            if entry is not None and entry[_DEADLINE] == deadline:
                self._remove(key)
                removed += 1
        self.expired_total += removed

    def _rebuild_expiry(self) -> None:
        """Drop stale heap entries (keys rewritten or removed) without scanning all keys."""
        data = self._data
        live = {(d, k) for d, k in self._expiry if (e := data.get(k)) and e[_DEADLINE] == d}
        self._expiry = list(live)
        heapq.heapify(self._expiry)  # pop order is the tuples' total order: deterministic

    def _sweep_sessions(self, now: int) -> None:
        idle = [cid for cid, s in self._sessions.items() if now - s.last_seen_ms > DEDUP_IDLE_MS]
        for cid in idle:
            del self._sessions[cid]

    # ----------------------------------------------------------------- reads

    def get(self, key: bytes, now_ms: int) -> Entry | None:
        """The live entry for key, hiding one whose deadline is at or before now_ms."""
        entry = self._live(key, max(now_ms, self._cluster_time_ms))
        return None if entry is None else Entry(*entry)

    @property
    def cluster_time_ms(self) -> int:
        return self._cluster_time_ms

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def members(self) -> dict[str, Member]:
        return dict(self._members)

    def __len__(self) -> int:
        return len(self._data)

    def digest(self) -> str:
        """Hash of the content: keys, values, versions, deadlines, members, revision.

        The cluster clock is left out so that idle clock ticks do not change it:
        replicas that applied the same writes show the same digest.
        """
        h = hashlib.blake2b(digest_size=16)
        h.update(self._digest_acc.to_bytes(16, "big"))
        h.update(struct.pack(">Q", self._revision))
        for node_id in sorted(self._members):
            m = self._members[node_id]
            h.update(f"{node_id}\0{m.raft_addr}\0{m.client_addr}\0".encode())
        return h.hexdigest()

    # ------------------------------------------------------------- snapshots

    def export_items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every stored key with its encoded entry, for a snapshot."""
        pack = _ENTRY_HEADER.pack
        for key, entry in self._data.items():
            yield key, pack(entry[_VERSION], entry[_DEADLINE]) + entry[_VALUE]

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
            "revision": self._revision,
            "cluster_time_ms": self._cluster_time_ms,
            "next_sweep_ms": self._next_sweep_ms,
            "expired_total": self.expired_total,
            "members": {k: list(v) for k, v in self._members.items()},
            "sessions": sessions,
        }
        return json.dumps(meta, separators=(",", ":")).encode()

    @classmethod
    def restore(cls, meta: bytes, items: Iterable[tuple[bytes, bytes]]) -> StateMachine:
        """Rebuild a state machine from export_meta() and export_items() output."""
        sm = cls()
        doc = json.loads(meta)
        sm._revision = doc["revision"]
        sm._cluster_time_ms = doc["cluster_time_ms"]
        sm._next_sweep_ms = doc["next_sweep_ms"]
        sm.expired_total = doc["expired_total"]
        sm._members = {k: Member(*v) for k, v in doc["members"].items()}
        for cid, s in doc["sessions"].items():
            results = {int(seq): _result_from_json(r) for seq, r in s["results"]}
            sm._sessions[cid] = _Session(results, s["floor"], s["last_seen_ms"])
        unpack = _ENTRY_HEADER.unpack_from
        acc = 0
        data = sm._data
        for key, raw in items:
            version, deadline = unpack(raw)
            entry = (bytes(raw[_ENTRY_HEADER.size :]), version, deadline)
            data[bytes(key)] = entry
            acc += _entry_hash(key, entry)
            if deadline:
                sm._ttl_keys += 1
        sm._digest_acc = acc % _DIGEST_MOD
        sm._expiry = [(e[_DEADLINE], k) for k, e in data.items() if e[_DEADLINE]]
        heapq.heapify(sm._expiry)
        return sm


def _result_to_json(result: Result) -> list[object]:
    if isinstance(result, Failure):
        return ["Failure", result.code.value, result.message]
    return [type(result).__name__, *result]


def _result_from_json(doc: list[Any]) -> Result:
    tag, *fields = doc
    if tag == "Failure":
        return Failure(ErrorCode(fields[0]), str(fields[1]))
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
