"""StateMachine._plain_set, the apply path of `SET key value` without the command table,
changes the state exactly as the table's SET does: compared on twin state machines after
every step (reply, digest, accounted memory, revision, change events, entries), over new
keys, overwrites of strings, of other types, of keys with a TTL or memcached flags, other
databases, the reserved prefix and --max-memory refusals."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from raftcache.node import commands
from raftcache.node.engine import call_op
from raftcache.node.keyspace import dispatch
from raftcache.node.keyspace.db import DB_PREFIX, RESERVED_KEY, Db
from raftcache.node.keyspace.reply import OK, OOM, Error, ReplyT, Status
from raftcache.node.replica import Replica
from raftcache.node.state_machine import Failure, StateMachine, Value
from raftcache.v1 import command_pb2

NOW = 1_000


def _apply(replica: Replica, *calls: tuple[int, list[bytes]]) -> list[ReplyT]:
    command = command_pb2.Command(now_ms=NOW)
    command.ops.extend(call_op(argv, db) for db, argv in calls)
    results = replica.apply(commands.encode(command))
    out = []
    for result in results:
        assert isinstance(result, Value)
        out.append(result.data)
    return out


def _table_set(sm: StateMachine, db: int, argv: list[bytes]) -> ReplyT:
    """The command table's SET, as _redis ran every SET before the fast path."""
    return dispatch.execute(Db(sm, db, NOW, True), argv)


def _not_the_table(db: Db, argv: list[bytes]) -> ReplyT:
    raise AssertionError(f"{argv!r} went through the command table")


def _state(replica: Replica) -> tuple[object, ...]:
    sm = replica.state
    return (sm.digest(), sm.memory_used, sm.revision, dict(sm._data))


SETUP: list[tuple[int, list[bytes]]] = [
    (0, [b"set", b"str", b"old", b"px", b"5000"]),  # a TTL the plain SET must clear
    (0, [b"hset", b"hash", b"f", b"v"]),  # another type, replaced
    (0, [b"raftcache.mc.store", b"set", b"mc", b"v", b"77", b"0", b""]),  # flags reset
    (2, [b"set", b"str", b"db2"]),
]

CASES: list[tuple[int, bytes, bytes]] = [
    (0, b"new", b"v"),
    (0, b"str", b"new"),
    (0, b"hash", b"now a string"),
    (0, b"mc", b"plain"),
    (2, b"str", b"db2 again"),
    (5, b"str", b"x" * 10_000),
    (0, DB_PREFIX + b"\x02str", b"through the prefix"),
    (0, b"", b"empty key"),
]


@pytest.fixture
def twins() -> tuple[Replica, Replica]:
    fast, slow = Replica(), Replica()
    for r in (fast, slow):
        _apply(r, *SETUP)
    slow.state.take_events()
    return fast, slow


def _compare(
    fast: Replica,
    slow: Replica,
    db: int,
    argv: list[bytes],
    expect: Callable[[ReplyT], bool],
    fast_path: bool = True,
) -> None:
    """Apply argv on `fast` (through apply, which takes the fast path when `fast_path`, and
    must not otherwise) and on `slow` through the table; both must end the same."""
    events: list[object] = []
    fast.on_events = events.extend
    table = dispatch.execute
    tabled: list[list[bytes]] = []

    def watched(db_: Db, argv_: list[bytes]) -> ReplyT:
        tabled.append(argv_)
        return table(db_, argv_)

    dispatch.execute = _not_the_table if fast_path else watched  # type: ignore[assignment]
    try:
        (reply,) = _apply(fast, (db, argv))
    finally:
        dispatch.execute = table  # type: ignore[assignment]
    assert tabled == ([] if fast_path else [argv])
    with slow.lock:
        slow_reply = _table_set(slow.state, db, argv)
    assert reply == slow_reply and expect(reply)
    assert events == slow.state.take_events()
    assert _state(fast) == _state(slow), argv


@pytest.mark.parametrize(("db", "key", "value"), CASES)
@pytest.mark.parametrize("name", [b"set", b"SET", b"sEt"])
def test_a_plain_set_changes_what_the_table_set_changes(
    twins: tuple[Replica, Replica], name: bytes, db: int, key: bytes, value: bytes
) -> None:
    fast, slow = twins
    refused = key[:5] == DB_PREFIX
    _compare(
        fast,
        slow,
        db,
        [name, key, value],
        lambda reply: reply == (Error(RESERVED_KEY) if refused else OK),
    )


def test_over_max_memory_both_refuse_with_oom_and_change_nothing(
    twins: tuple[Replica, Replica],
) -> None:
    fast, slow = twins
    for r in (fast, slow):
        r.state.max_memory = r.state.memory_used + 100  # room for nothing new
    before = _state(fast)
    _compare(fast, slow, 0, [b"set", b"big", b"x" * 1_000], lambda r: r == Error(OOM))
    assert _state(fast)[:3] == before[:3]


def test_sets_with_options_still_take_the_table() -> None:
    replica = Replica()
    _apply(replica, (0, [b"set", b"k", b"v"]))
    assert _apply(replica, (0, [b"set", b"k", b"w", b"NX"])) == [None]
    assert _apply(replica, (0, [b"set", b"k", b"w", b"GET"])) == [b"v"]
    assert _apply(replica, (0, [b"set", b"k"])) == [
        Error("ERR wrong number of arguments for 'set' command")
    ]


def _mc_set(key: bytes, value: bytes, flags: bytes = b"5", exptime: bytes = b"0", cas=b""):
    return [b"raftcache.mc.store", b"set", key, value, flags, exptime, cas]


@pytest.mark.parametrize(("db", "key", "value"), CASES)
@pytest.mark.parametrize("flags", [b"0", b"5", b"4294967295"])
def test_a_memcached_set_changes_what_the_table_store_changes(
    twins: tuple[Replica, Replica], db: int, key: bytes, value: bytes, flags: bytes
) -> None:
    fast, slow = twins
    refused = key[:5] == DB_PREFIX

    def expect(reply: ReplyT) -> bool:
        if refused:
            return reply == Error(RESERVED_KEY)
        assert isinstance(reply, list)
        return reply[0] == Status("STORED") and reply[1] == fast.state.revision

    _compare(fast, slow, db, _mc_set(key, value, flags), expect)
    if not refused:
        stored = fast.state.get(key if db == 0 else DB_PREFIX + bytes((db,)) + key, NOW)
        assert stored is not None and stored.flags == int(flags)


@pytest.mark.parametrize(
    "argv",
    [
        _mc_set(b"str", b"v", flags=b"4294967296"),  # over 32 bits: the table refuses it
        _mc_set(b"str", b"v", flags=b"007"),
        _mc_set(b"str", b"v", flags=b"-1"),
        _mc_set(b"str", b"v", flags=b""),
        _mc_set(b"str", b"v", exptime=b"100"),
        _mc_set(b"str", b"v", exptime=b"-1"),
        _mc_set(b"str", b"v", cas=b"1"),
        [b"raftcache.mc.store", b"add", b"new", b"v", b"0", b"0", b""],
        [b"raftcache.mc.store", b"append", b"mc", b"v", b"0", b"0", b""],
    ],
)
def test_other_memcached_stores_take_the_table(
    twins: tuple[Replica, Replica], argv: list[bytes]
) -> None:
    fast, slow = twins
    _compare(fast, slow, 0, argv, lambda reply: True, fast_path=False)


def test_a_memcached_set_over_max_memory_is_refused_as_the_table_refuses_it(
    twins: tuple[Replica, Replica],
) -> None:
    fast, slow = twins
    for r in (fast, slow):
        r.state.max_memory = r.state.memory_used + 100
    _compare(fast, slow, 0, _mc_set(b"big", b"x" * 1_000), lambda r: r == Error(OOM))


def test_a_plain_set_in_a_failed_transaction_is_rolled_back() -> None:
    # A Txn that mixes a Redis call with a typed op records each key before its first
    # change; the typed op's failure must undo the plain SET before it.
    replica = Replica()
    _apply(replica, (0, [b"set", b"str", b"old", b"px", b"5000"]))
    before = _state(replica)
    txn = command_pb2.Op()
    set_call = txn.txn.success.add().op.call
    set_call.argv.extend([b"set", b"str", b"new"])
    hset = txn.txn.success.add().op.hset  # a hash op on a string: WRONG_TYPE
    hset.key = b"str"
    hset.fields.add(field=b"f", value=b"v")
    command = command_pb2.Command(now_ms=NOW)
    command.ops.append(txn)
    (result,) = replica.apply(commands.encode(command))
    assert isinstance(result, Failure) and "transaction op 2" in result.message
    assert _state(replica) == before
    assert replica.state.get(b"str", NOW).value == b"old"


def test_a_plain_set_over_an_expired_unswept_key_matches_the_table(
    twins: tuple[Replica, Replica],
) -> None:
    fast, slow = twins
    for r in (fast, slow):  # "str" expired at 6,000 and stays unswept at 7,000
        r.state._cluster_time_ms = 7_000
        r.state._expiry.clear()  # as past MAX_EXPIRIES_PER_COMMAND: apply sweeps none
    _compare(fast, slow, 0, [b"set", b"str", b"after expiry"], lambda r: r == OK)
