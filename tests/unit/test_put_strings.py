"""`StateMachine._put_strings` (an MSetOp's inline loop) against `_put` one entry at a time.

The inline loop repeats `_put`'s and `_account`'s bookkeeping for its common case (no TTL
before or after, a string or no key before), so every replica's state after an MSetOp
must be what the same entries put one by one leave: data, versions, digest, memory, TTL
count, expiry heap, scan buckets, per-database counts and the change events, in order.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from raftcache.node.engine import call_op
from raftcache.node.keyspace.db import db_key
from raftcache.node.keyspace.memcached import STORE_COMMAND
from raftcache.node.state_machine import Failure, MSetOk, StateMachine
from raftcache.v1 import command_pb2

# Few keys, so that entries overwrite each other and the keys the setup wrote; some of
# them in a SELECTed database (their own per-database count), none of them internal. A key
# is (db, name): its stored key is db_key(db, name), what every op below writes.
KEYS = [(0, b"a"), (0, b"b"), (0, b"c"), (0, b"d"), (3, b"k"), (5, b"k")]

key = st.sampled_from(KEYS)
value = st.binary(max_size=12)
deadline = st.sampled_from([0, 0, 0, 5_000, 9_000])  # mostly none, as set runs are

# What the setup may leave under a key before the MSetOp: a string, a string with a TTL,
# a memcached item with flags (and maybe an expiry), a list (a container), or a deletion.
setup_op = st.one_of(
    st.tuples(st.just("set"), key, value, deadline),
    st.tuples(st.just("mc"), key, value, st.integers(0, 2**32 - 1), st.sampled_from([0, 100])),
    st.tuples(st.just("list"), key, value),
    st.tuples(st.just("del"), key),
)


def _op(spec: tuple[Any, ...]) -> command_pb2.Op:
    kind, (db, name) = spec[0], spec[1]
    op = command_pb2.Op()
    if kind == "set":
        op.set.key, op.set.value, op.set.deadline_ms = db_key(db, name), spec[2], spec[3]
    elif kind == "mc":
        _, _, v, flags, exptime = spec
        op.CopyFrom(
            call_op([STORE_COMMAND, b"set", name, v, b"%d" % flags, b"%d" % exptime, b""], db)
        )
    elif kind == "list":
        op.CopyFrom(call_op([b"RPUSH", name, spec[2] or b"x"], db))
    else:
        op.delete.key = db_key(db, name)
    return op


def _command(*ops: command_pb2.Op, now: int) -> command_pb2.Command:
    command = command_pb2.Command(now_ms=now)
    command.ops.extend(ops)
    return command


def _mset(entries: list[tuple[tuple[int, bytes], bytes, int]]) -> command_pb2.Op:
    op = command_pb2.Op()
    for (db, name), v, d in entries:
        op.mset.entries.add(key=db_key(db, name), value=v, deadline_ms=d)
    return op


class OneByOne(StateMachine):
    """The reference: every entry through `_put`, as MSetOp applied before the loop."""

    def _put_strings(self, entries: Any) -> None:
        for e in entries:
            self._put(e.key, e.value, e.deadline_ms)


def _state(sm: StateMachine) -> dict[str, Any]:
    return {
        "items": sorted(sm.export_items()),
        "data": dict(sm._data),
        "digest": sm.digest(),
        "memory": sm.memory_used,
        "ttl_keys": sm.ttl_keys,
        "revision": sm.revision,
        "expiry": sorted(sm._expiry),
        "buckets": dict(sm._buckets),
        "db_keys": dict(sm._db_keys),
    }


@settings(max_examples=300, deadline=None)
@given(
    setup=st.lists(setup_op, max_size=8),
    entries=st.lists(st.tuples(key, value, deadline), min_size=1, max_size=10),
)
def test_an_mset_leaves_what_its_entries_put_one_by_one_leave(
    setup: list[tuple[Any, ...]], entries: list[tuple[tuple[int, bytes], bytes, int]]
) -> None:
    fast, slow = StateMachine(), OneByOne()
    for sm in (fast, slow):
        for result in sm.apply(_command(*[_op(s) for s in setup], now=10)):
            # the setup wrote where it says (a WRONGTYPE on a list is fine; a refused key not)
            assert not isinstance(result, Failure) and "reserved" not in str(result), result
        sm.take_events()
    results = [sm.apply(_command(_mset(entries), now=20)) for sm in (fast, slow)]
    assert results[0] == results[1]
    (result,) = results[0]
    assert isinstance(result, MSetOk) and result.size == len(entries)
    assert fast.take_events() == slow.take_events()
    assert _state(fast) == _state(slow)
    # and a restore, which recounts the digest from the entries, agrees with the running one
    assert StateMachine.restore(fast.export_meta(), list(fast.export_items())).digest() == (
        fast.digest()
    )
    # the TTLs the entries set expire on both alike
    for sm in (fast, slow):
        sm.apply(_command(now=10_000))
    assert fast.take_events() == slow.take_events()
    assert _state(fast) == _state(slow)


def test_a_transaction_puts_entry_by_entry_so_that_it_can_be_undone() -> None:
    # Inside a transaction (_undo set), MSetOp keeps `_put`, which saves each key's old
    # entry: the inline loop does not. Checked by a state whose _undo is live.
    sm = StateMachine()
    sm.apply(_command(_op(("set", (0, b"a"), b"old", 0)), now=10))
    sm._undo = {}
    sm._mset(_mset([((0, b"a"), b"new", 0), ((0, b"b"), b"x", 0)]).mset, 20)
    assert sm._undo == {b"a": (b"old", 1, 0, 0), b"b": None}
