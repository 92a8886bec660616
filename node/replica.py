"""The node's replicated state: decodes log entries, applies them under a lock, serves reads.

This is where the pure StateMachine meets threads: entries are applied on the
consensus tick thread, reads come from the asyncio thread; one short lock keeps
a multi-key write (MSet) from being seen half applied.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from raftcache.node import commands
from raftcache.node.keyspace import rejoin
from raftcache.node.keyspace.reply import ReplyT
from raftcache.node.state_machine import Entry, Event, Member, Result, StateMachine
from raftcache.v1 import cache_pb2, command_pb2


class CacheStats(NamedTuple):
    """Replicated cache metrics (equal on every replica at the same applied index)."""

    evictions: int
    expired_keys: int
    memory_used: int
    max_memory: int
    eviction_policy: str


class Replica:
    """Implements consensus.ReplicatedState around a StateMachine."""

    def __init__(self) -> None:
        self._sm = StateMachine()
        self._lock = threading.Lock()
        self.last_apply_monotonic = 0.0
        self.applied_entries = 0
        # Called on the tick thread after each apply with that command's events (key changes
        # and published messages), outside the lock. Must hand them off, never block.
        self.on_events: Callable[[list[Event]], None] | None = None
        # Called on the tick thread after a snapshot replaced the state, with its revision:
        # watchers cannot resume across it.
        self.on_restored: Callable[[int], None] | None = None

    # -- consensus side (tick thread) --------------------------------------

    def apply(self, data: bytes) -> list[Result]:
        command = commands.decode(data)  # CommandDecodeError stops the node
        with self._lock:
            results = self._sm.apply(command)
            events = self._sm.take_events()
        self.applied_entries += 1
        self.last_apply_monotonic = time.monotonic()
        if events and self.on_events is not None:
            self.on_events(events)
        return results

    def snapshot_meta(self) -> bytes:
        return self._sm.export_meta()

    def snapshot_items(self) -> Iterable[tuple[bytes, bytes]]:
        return self._sm.export_items()

    def restore(self, meta: bytes, items: Iterable[tuple[bytes, bytes]]) -> None:
        restored = StateMachine.restore(meta, items)
        with self._lock:
            self._sm = restored
        self.last_apply_monotonic = time.monotonic()
        if self.on_restored is not None:
            self.on_restored(restored.revision)

    # -- read side (asyncio thread) ----------------------------------------

    def get(self, key: bytes, now_ms: int) -> Entry | None:
        with self._lock:
            return self._sm.get(key, now_ms)

    def get_many(self, keys: Sequence[bytes], now_ms: int) -> list[Entry | None]:
        with self._lock:
            return [self._sm.get(k, now_ms) for k in keys]

    def read(self, op: cache_pb2.DataOp, now_ms: int) -> Result:
        with self._lock:
            return self._sm.read(op, now_ms)

    def read_call(self, argv: list[bytes], db: int, now_ms: int, user: str = "") -> ReplyT:
        with self._lock:
            return self._sm.read_call(argv, db, now_ms, user)

    def scan(self, cursor: int, prefix: bytes, count: int, now_ms: int) -> tuple[list[bytes], int]:
        with self._lock:
            return self._sm.scan(cursor, prefix, count, now_ms)

    def stats(self) -> CacheStats:
        sm = self._sm
        return CacheStats(
            evictions=sm.evicted_total,
            expired_keys=sm.expired_total,
            memory_used=sm.memory_used,
            max_memory=sm.max_memory,
            eviction_policy=sm.eviction_policy,
        )

    @property
    def state(self) -> StateMachine:
        """The state machine itself, for the leader's eviction choice (read it, never change it)."""
        return self._sm

    @property
    def lock(self) -> threading.Lock:
        """Held while applying; hold it to read `state` consistently."""
        return self._lock

    @property
    def revision(self) -> int:
        """The cluster-wide revision of the last applied change."""
        return self._sm.revision

    @property
    def cluster_time_ms(self) -> int:
        return self._sm.cluster_time_ms

    def expiry_quiet(self, now_ms: int) -> bool:
        """No key can expire between the applied cluster time and `now_ms`: a read at
        cluster time answers what a read stamped `now_ms` would (Proposer.barrier's lease
        path). Conservative: any deadline at or before `now_ms` in the lazily pruned heap
        says no."""
        return self._sm.next_deadline_ms() > max(now_ms, self._sm.cluster_time_ms)

    def members(self) -> dict[str, Member]:
        with self._lock:
            return self._sm.members

    def digest(self) -> str:
        with self._lock:
            return self._sm.digest()

    def key_count(self) -> int:
        """The keys clients stored (Status.keys, raftcache_items): not the internal records
        (a pending rejoin counted as a key until it was cleared). Under the lock: the tick
        thread may add a database's first key meanwhile."""
        with self._lock:
            return self._sm.user_key_count()


class RejoinIntents:
    """consensus.RejoinIntents over a Replica: the pending amnesia re-adds live in the
    replicated state (node/keyspace/rejoin.py), read on the tick thread, where they are
    applied."""

    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    def pending(self) -> frozenset[str]:
        return rejoin.read_pending(self._replica.state)

    def command(self, address: str, pending: bool) -> bytes:
        op = command_pb2.Op()
        name = rejoin.PENDING if pending else rejoin.CLEAR
        op.data.op.call.argv.extend([name, address.encode("latin-1")])
        return commands.encode(command_pb2.Command(ops=[op]))
