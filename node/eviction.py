"""Eviction under --max-memory: the leader chooses victims, Raft replicates the choice.

Replicas never evict on their own (Redis replicas do not either): the leader puts an
EvictOp in front of a batch whose writes could take accounted memory over the limit,
so every replica removes the same keys at the same log position. Which keys follows
the replicated policy, using this node's `AccessTracker` (recency and frequency of
applied writes and of reads served here) or the state's own indexes (deadlines for
volatile-ttl, scan buckets for allkeys-random). See node/DESIGN.md.
"""

from __future__ import annotations

import collections
import random
import threading
from collections.abc import Callable, Iterable, Sequence

from raftcache.node.keyspace.db import DATABASES, key_db
from raftcache.node.state_machine import Change, Event, StateMachine, op_growth
from raftcache.v1 import command_pb2

MAX_VICTIMS_PER_BATCH = 10_000
LFU_SAMPLE = 16
"""LFU evicts the least used of this many least recently used keys (Redis samples too)."""

TRACKER_WINDOW = 2048
"""How many least recently used keys one choice looks at (then it falls back to random)."""

TRACKED_POLICIES = frozenset({"allkeys-lru", "volatile-lru", "allkeys-lfu"})


class AccessTracker:
    """Keys in least-recently-used order with a use count; thread-safe, node-local."""

    def __init__(self) -> None:
        self._order: collections.OrderedDict[bytes, int] = collections.OrderedDict()
        self._lock = threading.Lock()
        # Off unless the replicated policy needs recency/frequency: then it costs nothing.
        self.active = False

    def __len__(self) -> int:
        return len(self._order)

    def touch(self, key: bytes) -> None:
        if not self.active:
            return
        with self._lock:
            uses = self._order.pop(key, 0)
            self._order[key] = min(uses + 1, 255)

    def on_events(self, events: Iterable[Event]) -> None:
        """Applied changes: a set is a use, a removal forgets the key."""
        if not self.active:
            return
        with self._lock:
            order = self._order
            for event in events:
                if not isinstance(event, Change):
                    continue
                if event.kind == "set":
                    order[event.key] = min(order.pop(event.key, 0) + 1, 255)
                else:
                    order.pop(event.key, None)

    def oldest(self, limit: int) -> list[tuple[bytes, int]]:
        with self._lock:
            out = []
            for item in self._order.items():
                out.append(item)
                if len(out) >= limit:
                    break
            return out

    def follow(self, sm: StateMachine) -> None:
        """Track (or stop tracking) as the replicated limit and policy say."""
        active = bool(sm.max_memory) and sm.eviction_policy in TRACKED_POLICIES
        if active != self.active:
            with self._lock:
                # Seeded in the state's insertion order: close to write order, so the keys
                # written before tracking began are the least recently used.
                self._order = collections.OrderedDict.fromkeys(sm.keys() if active else (), 1)
            self.active = active


class Evictor:
    """Builds the EvictOp that makes room for a batch (leader only)."""

    def __init__(
        self,
        state: Callable[[], StateMachine],
        lock: threading.Lock,
        tracker: AccessTracker,
        rng: random.Random | None = None,
    ) -> None:
        self._state = state
        self._lock = lock
        self.tracker = tracker
        self._rng = rng or random.Random()

    def prelude(self, writes: Sequence[command_pb2.Op]) -> list[command_pb2.Op]:
        """An EvictOp freeing room for `writes` when they could pass the limit, else nothing."""
        sm = self._state()
        if not sm.max_memory or sm.eviction_policy == "noeviction":
            return []  # the common case, every batch: no lock taken
        with self._lock:
            sm = self._state()
            growth = sum(op_growth(op) for op in writes)
            needed = sm.memory_used + growth - sm.max_memory
            if needed <= 0:
                return []
            victims = self.choose(sm, needed)
        if not victims:
            return []
        op = command_pb2.Op()
        op.evict.keys.extend(victims)
        return [op]

    def choose(self, sm: StateMachine, needed: int) -> list[bytes]:
        """Keys whose removal frees at least `needed` accounted bytes (fewer if not enough)."""
        policy = sm.eviction_policy
        chosen: list[bytes] = []
        seen: set[bytes] = set()
        freed = 0
        for key in self._candidates(sm, policy):
            if key in seen:
                continue
            seen.add(key)
            size = sm.nbytes_of(key)
            if size is None or key_db(key)[0] >= DATABASES:  # loaded scripts are not a cache
                continue
            chosen.append(key)
            freed += size
            if freed >= needed or len(chosen) >= MAX_VICTIMS_PER_BATCH:
                break
        return chosen

    def _candidates(self, sm: StateMachine, policy: str) -> Iterable[bytes]:
        volatile = policy.startswith("volatile-")
        if policy == "volatile-ttl":
            for _, key in sorted(sm.keys_with_deadlines(MAX_VICTIMS_PER_BATCH)):
                yield key
            return
        if policy in TRACKED_POLICIES:
            yield from self._tracked(sm, policy, volatile)
        if volatile:
            return
        # allkeys-random, or a tracker that has not seen enough keys (a new leader).
        for _ in range(64):
            bucket = self._rng.randrange(1 << 16)
            yield from sm.random_keys(bucket, 64)

    def _tracked(self, sm: StateMachine, policy: str, volatile: bool) -> Iterable[bytes]:
        oldest = self.tracker.oldest(TRACKER_WINDOW)
        if volatile:
            oldest = [(k, n) for k, n in oldest if sm.deadline_of(k)]
        if policy == "allkeys-lfu":
            for start in range(0, len(oldest), LFU_SAMPLE):
                sample = oldest[start : start + LFU_SAMPLE]
                yield from (k for k, _ in sorted(sample, key=lambda kn: kn[1]))
            return
        yield from (k for k, _ in oldest)
