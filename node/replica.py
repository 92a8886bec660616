"""The node's replicated state: decodes log entries, applies them under a lock, serves reads.

This is where the pure StateMachine meets threads: entries are applied on the
consensus tick thread, reads come from the asyncio thread; one short lock keeps
a multi-key write (MSet) from being seen half applied.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence

from raftcache.node import commands
from raftcache.node.state_machine import Entry, Member, Result, StateMachine


class Replica:
    """Implements consensus.ReplicatedState around a StateMachine."""

    def __init__(self) -> None:
        self._sm = StateMachine()
        self._lock = threading.Lock()
        self.last_apply_monotonic = 0.0
        self.applied_entries = 0

    # -- consensus side (tick thread) --------------------------------------

    def apply(self, data: bytes) -> list[Result]:
        command = commands.decode(data)  # CommandDecodeError stops the node
        with self._lock:
            results = self._sm.apply(command)
        self.applied_entries += 1
        self.last_apply_monotonic = time.monotonic()
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

    # -- read side (asyncio thread) ----------------------------------------

    def get(self, key: bytes, now_ms: int) -> Entry | None:
        with self._lock:
            return self._sm.get(key, now_ms)

    def get_many(self, keys: Sequence[bytes], now_ms: int) -> list[Entry | None]:
        with self._lock:
            return [self._sm.get(k, now_ms) for k in keys]

    @property
    def cluster_time_ms(self) -> int:
        return self._sm.cluster_time_ms

    def members(self) -> dict[str, Member]:
        with self._lock:
            return self._sm.members

    def digest(self) -> str:
        with self._lock:
            return self._sm.digest()

    def key_count(self) -> int:
        return len(self._sm)
