"""The leader's eviction choice: which keys, how many, and only when the batch needs room."""

from __future__ import annotations

import random
import threading

import pytest
from raftcache.node.eviction import AccessTracker, Evictor
from raftcache.node.state_machine import KEY_OVERHEAD, StateMachine
from raftcache.v1 import command_pb2

VALUE = b"x" * 100
ENTRY = 2 + KEY_OVERHEAD + len(VALUE)  # a two-byte key
# Ten keys fit. A write is estimated from its encoded op (a few bytes over its entry): the
# 20 spare bytes keep one victim per write.
LIMIT = 10 * ENTRY + 20


def state(policy: str, max_memory: int, keys: int = 10, ttl_every: int = 0) -> StateMachine:
    sm = StateMachine()
    cmd = command_pb2.Command(now_ms=1000)
    for i in range(keys):
        op = cmd.ops.add()
        op.set.key, op.set.value = b"k%d" % i, VALUE
        if ttl_every and i % ttl_every == 0:
            op.set.deadline_ms = 100_000 - i  # later keys expire sooner
    config = cmd.ops.add().config
    config.max_memory, config.eviction_policy = max_memory, policy
    sm.apply(cmd)
    return sm


def evictor(sm: StateMachine, tracker: AccessTracker | None = None) -> Evictor:
    tracker = tracker or AccessTracker()
    tracker.follow(sm)
    return Evictor(lambda: sm, threading.Lock(), tracker, random.Random(3))


def write(key: bytes) -> command_pb2.Op:
    op = command_pb2.Op()
    op.set.key, op.set.value = key, VALUE
    return op


def test_nothing_is_evicted_below_the_limit_or_under_noeviction() -> None:
    roomy = state("allkeys-lru", 100 * ENTRY)
    assert evictor(roomy).prelude([write(b"n1")]) == []
    full = state("noeviction", LIMIT)
    assert evictor(full).prelude([write(b"n1")]) == []


def test_lru_evicts_the_least_recently_used_enough_for_the_batch() -> None:
    sm = state("allkeys-lru", LIMIT)
    tracker = AccessTracker()
    tracker.follow(sm)  # seeded in insertion order: k0 oldest
    tracker.touch(b"k0")  # a read makes k0 the most recent
    (op,) = evictor(sm, tracker).prelude([write(b"n1"), write(b"n2")])
    assert list(op.evict.keys) == [b"k1", b"k2"]
    assert sm.apply(command_pb2.Command(ops=[op, write(b"n1"), write(b"n2")]))
    assert sm.memory_used <= sm.max_memory


def test_volatile_ttl_evicts_the_soonest_deadline_and_never_a_key_without_one() -> None:
    sm = state("volatile-ttl", LIMIT, ttl_every=3)  # k0, k3, k6, k9 have TTLs
    (op,) = evictor(sm).prelude([write(b"n1")])
    assert list(op.evict.keys) == [b"k9"]
    no_ttl = state("volatile-lru", LIMIT)
    assert evictor(no_ttl).prelude([write(b"n1")]) == []


def test_lfu_evicts_the_least_used_of_the_oldest() -> None:
    sm = state("allkeys-lfu", LIMIT)
    tracker = AccessTracker()
    tracker.follow(sm)
    for _ in range(5):
        for key in (b"k0", b"k1", b"k3"):
            tracker.touch(key)
    (op,) = evictor(sm, tracker).prelude([write(b"n1")])
    assert list(op.evict.keys) == [b"k2"]


@pytest.mark.parametrize("policy", ["allkeys-random", "allkeys-lru"])
def test_random_and_an_empty_tracker_still_find_victims(policy: str) -> None:
    sm = state(policy, LIMIT)
    tracker = AccessTracker()  # never followed: like a leader that just took over
    ev = Evictor(lambda: sm, threading.Lock(), tracker, random.Random(1))
    (op,) = ev.prelude([write(b"n1")])
    assert len(op.evict.keys) == 1 and op.evict.keys[0].startswith(b"k")


def test_the_tracker_follows_applied_changes_only_while_a_tracked_policy_is_set() -> None:
    tracker = AccessTracker()
    sm = state("noeviction", 0, keys=2)
    tracker.follow(sm)
    tracker.touch(b"k0")
    assert len(tracker) == 0  # off: costs nothing
    sm = state("allkeys-lru", 10_000, keys=2)
    tracker.follow(sm)
    assert [k for k, _ in tracker.oldest(10)] == [b"k0", b"k1"]
    sm.take_events()
    cmd = command_pb2.Command(now_ms=2000)
    cmd.ops.add().delete.key = b"k0"
    cmd.ops.append(write(b"k2"))
    sm.apply(cmd)
    tracker.on_events(sm.take_events())
    assert [k for k, _ in tracker.oldest(10)] == [b"k1", b"k2"]
