"""The pure state machine: every op, its edge cases, expiry, dedup, snapshots and members."""

from __future__ import annotations

import pytest
from raftcache.node.engine import call_op
from raftcache.node.keyspace.db import DB_PREFIX
from raftcache.node.keyspace.memcached import STORE_COMMAND
from raftcache.node.state_machine import (
    DEDUP_IDLE_MS,
    DEDUP_MAX_CLIENTS,
    DEDUP_RESULTS_PER_CLIENT,
    INT64_MAX,
    INT64_MIN,
    MAX_EXPIRIES_PER_COMMAND,
    DeleteOk,
    ErrorCode,
    Failure,
    IncrOk,
    Member,
    MSetOk,
    Result,
    SetOk,
    StateMachine,
)
from raftcache.v1 import cache_pb2, command_pb2

IF_ABSENT = 1
IF_PRESENT = 2

# ------------------------------------------------------------------ builders


def _rid(op: command_pb2.Op, rid: tuple[str, int] | None) -> command_pb2.Op:
    if rid is not None:
        op.request_id.client_id, op.request_id.seq = rid
    return op


def set_op(
    key: bytes,
    value: bytes = b"v",
    *,
    deadline: int = 0,
    condition: int = 0,
    expected: int | None = None,
    rid: tuple[str, int] | None = None,
) -> command_pb2.Op:
    op = command_pb2.Op()
    s = op.set
    s.key, s.value, s.deadline_ms, s.condition = key, value, deadline, condition
    if expected is not None:
        s.has_expected_version, s.expected_version = True, expected
    return _rid(op, rid)


def delete_op(key: bytes, *, rid: tuple[str, int] | None = None) -> command_pb2.Op:
    return _rid(command_pb2.Op(delete=command_pb2.DeleteOp(key=key)), rid)


def incr_op(
    key: bytes, delta: int, *, deadline: int = 0, rid: tuple[str, int] | None = None
) -> command_pb2.Op:
    op = command_pb2.Op(incr=command_pb2.IncrOp(key=key, delta=delta, deadline_ms=deadline))
    return _rid(op, rid)


def mset_op(
    *entries: tuple[bytes, bytes, int], rid: tuple[str, int] | None = None
) -> command_pb2.Op:
    sets = [command_pb2.SetOp(key=k, value=v, deadline_ms=d) for k, v, d in entries]
    return _rid(command_pb2.Op(mset=command_pb2.MSetOp(entries=sets)), rid)


def announce_op(
    node_id: str, raft_addr: str, client_addr: str, *, rid: tuple[str, int] | None = None
) -> command_pb2.Op:
    announce = command_pb2.AnnounceOp(node_id=node_id, raft_addr=raft_addr, client_addr=client_addr)
    return _rid(command_pb2.Op(announce=announce), rid)


def command(*ops: command_pb2.Op, now: int = 0) -> command_pb2.Command:
    return command_pb2.Command(format=1, now_ms=now, ops=list(ops))


def apply1(sm: StateMachine, op: command_pb2.Op, now: int = 0) -> Result:
    results = sm.apply(command(op, now=now))
    assert len(results) == 1
    return results[0]


def typed(result: Result) -> tuple[str, tuple[object, ...]]:
    """NamedTuples compare as plain tuples (SetOk(1) == DeleteOk(True)); compare the type too."""
    return type(result).__name__, tuple(result)


def value_of(sm: StateMachine, key: bytes, now: int = 0) -> bytes | None:
    entry = sm.get(key, now)
    return None if entry is None else entry.value


def assert_failure(result: Result, code: ErrorCode, *fragments: str) -> None:
    assert isinstance(result, Failure), result
    assert result.code is code
    for fragment in fragments:
        assert fragment in result.message


# ------------------------------------------------------------------ set / get


def test_set_then_get_returns_value_version_and_no_deadline() -> None:
    sm = StateMachine()
    assert typed(apply1(sm, set_op(b"k", b"hello"))) == ("SetOk", (1,))
    entry = sm.get(b"k", 0)
    assert entry is not None
    assert (entry.value, entry.version, entry.deadline_ms) == (b"hello", 1, 0)
    assert len(sm) == 1


def test_get_of_a_missing_key_is_none() -> None:
    assert StateMachine().get(b"nope", 0) is None


def test_overwrite_replaces_the_value_and_bumps_the_version() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k", b"one"))
    assert apply1(sm, set_op(b"k", b"two")) == SetOk(2)
    assert value_of(sm, b"k") == b"two"
    assert len(sm) == 1


def test_empty_value_is_stored() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k", b""))
    assert value_of(sm, b"k") == b""


def test_results_come_back_one_per_op_in_order() -> None:
    sm = StateMachine()
    results = sm.apply(command(set_op(b"a"), delete_op(b"a"), delete_op(b"a"), incr_op(b"c", 3)))
    assert [typed(r) for r in results] == [
        ("SetOk", (1,)),
        ("DeleteOk", (True,)),
        ("DeleteOk", (False,)),
        ("IncrOk", (3, 3)),
    ]


def test_an_op_without_a_kind_is_an_invalid_command_failure() -> None:
    sm = StateMachine()
    assert_failure(apply1(sm, command_pb2.Op()), ErrorCode.INVALID_COMMAND, "no known kind")
    assert sm.revision == 0


# ------------------------------------------------------------------ conditions


def test_if_absent_sets_a_missing_key() -> None:
    sm = StateMachine()
    assert apply1(sm, set_op(b"k", b"a", condition=IF_ABSENT)) == SetOk(1)
    assert value_of(sm, b"k") == b"a"


def test_if_absent_on_an_existing_key_fails_and_changes_nothing() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k", b"a"))
    digest = sm.digest()
    result = apply1(sm, set_op(b"k", b"b", condition=IF_ABSENT))
    assert_failure(result, ErrorCode.CONDITION_FAILED, "exists", "if-absent")
    assert value_of(sm, b"k") == b"a"
    assert sm.revision == 1
    assert sm.digest() == digest


def test_if_present_on_a_missing_key_fails_and_creates_nothing() -> None:
    sm = StateMachine()
    result = apply1(sm, set_op(b"k", b"b", condition=IF_PRESENT))
    assert_failure(result, ErrorCode.CONDITION_FAILED, "does not exist", "if-present")
    assert sm.get(b"k", 0) is None
    assert sm.revision == 0


def test_if_present_overwrites_an_existing_key() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k", b"a"))
    assert apply1(sm, set_op(b"k", b"b", condition=IF_PRESENT)) == SetOk(2)
    assert value_of(sm, b"k") == b"b"


def test_conditions_treat_an_expired_key_as_absent() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k", b"old", deadline=100), now=10)
    assert_failure(
        apply1(sm, set_op(b"k", b"x", condition=IF_ABSENT), now=99), ErrorCode.CONDITION_FAILED
    )
    assert_failure(
        apply1(sm, set_op(b"k", b"x", condition=IF_PRESENT), now=100), ErrorCode.CONDITION_FAILED
    )
    assert isinstance(apply1(sm, set_op(b"k", b"new", condition=IF_ABSENT), now=100), SetOk)
    assert value_of(sm, b"k") == b"new"


# ------------------------------------------------------------------ compare-and-set


def test_expected_version_zero_creates_a_missing_key() -> None:
    sm = StateMachine()
    assert apply1(sm, set_op(b"k", b"a", expected=0)) == SetOk(1)


def test_expected_version_zero_fails_when_the_key_exists() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k", b"a"))
    result = apply1(sm, set_op(b"k", b"b", expected=0))
    assert_failure(result, ErrorCode.CONDITION_FAILED, "expected version 0", "version is 1")
    assert value_of(sm, b"k") == b"a"


def test_matching_expected_version_writes_and_a_stale_one_fails() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"other"))
    first = apply1(sm, set_op(b"k", b"a"))
    assert first == SetOk(2)
    assert apply1(sm, set_op(b"k", b"b", expected=2)) == SetOk(3)
    stale = apply1(sm, set_op(b"k", b"c", expected=2))
    assert_failure(stale, ErrorCode.CONDITION_FAILED, "expected version 2", "version is 3")
    assert value_of(sm, b"k") == b"b"
    assert sm.revision == 3


def test_expected_version_of_a_missing_key_fails_unless_zero() -> None:
    sm = StateMachine()
    result = apply1(sm, set_op(b"k", b"a", expected=5))
    assert_failure(result, ErrorCode.CONDITION_FAILED, "expected version 5", "version is 0")
    assert sm.get(b"k", 0) is None


def test_cas_with_a_version_from_before_delete_and_recreate_fails() -> None:
    sm = StateMachine()
    old = apply1(sm, set_op(b"k", b"a"))
    assert isinstance(old, SetOk)
    apply1(sm, delete_op(b"k"))
    apply1(sm, set_op(b"k", b"b"))
    assert_failure(apply1(sm, set_op(b"k", b"c", expected=old.version)), ErrorCode.CONDITION_FAILED)
    assert value_of(sm, b"k") == b"b"


# ------------------------------------------------------------------ versions


def test_versions_strictly_increase_across_keys() -> None:
    sm = StateMachine()
    ops = [set_op(b"a"), set_op(b"b"), incr_op(b"c", 1), set_op(b"a"), mset_op((b"d", b"1", 0))]
    results = sm.apply(command(*ops))
    assert [typed(r) for r in results] == [
        ("SetOk", (1,)),
        ("SetOk", (2,)),
        ("IncrOk", (1, 3)),
        ("SetOk", (4,)),
        ("MSetOk", (5, 1)),
    ]
    assert sm.revision == 5


def test_delete_and_recreate_never_reuses_a_version() -> None:
    sm = StateMachine()
    assert apply1(sm, set_op(b"k")) == SetOk(1)
    assert typed(apply1(sm, delete_op(b"k"))) == ("DeleteOk", (True,))
    recreated = apply1(sm, set_op(b"k"))
    assert recreated == SetOk(3)
    entry = sm.get(b"k", 0)
    assert entry is not None and entry.version == 3


def test_failed_ops_do_not_consume_a_version() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k", b"text"))
    apply1(sm, set_op(b"k", condition=IF_ABSENT))
    apply1(sm, incr_op(b"k", 1))
    apply1(sm, delete_op(b"missing"))
    assert sm.revision == 1
    assert apply1(sm, set_op(b"j")) == SetOk(2)


# ------------------------------------------------------------------ delete


def test_delete_of_an_existing_key_removes_it() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k"))
    assert typed(apply1(sm, delete_op(b"k"))) == ("DeleteOk", (True,))
    assert sm.get(b"k", 0) is None
    assert len(sm) == 0
    assert sm.revision == 2


def test_delete_of_a_missing_key_reports_false_and_changes_nothing() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"other"))
    digest = sm.digest()
    assert typed(apply1(sm, delete_op(b"k"))) == ("DeleteOk", (False,))
    assert sm.revision == 1
    assert sm.digest() == digest


def test_delete_of_an_expired_key_reports_false() -> None:
    sm = StateMachine()
    # The expiry at the start of the command and the delete agree: the key is gone.
    apply1(sm, set_op(b"k", deadline=50), now=1)
    assert typed(apply1(sm, delete_op(b"k"), now=50)) == ("DeleteOk", (False,))
    assert len(sm) == 0


# ------------------------------------------------------------------ incr


def test_incr_of_a_missing_key_starts_at_zero() -> None:
    sm = StateMachine()
    assert typed(apply1(sm, incr_op(b"n", 5))) == ("IncrOk", (5, 1))
    assert value_of(sm, b"n") == b"5"


def test_incr_of_an_existing_integer() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"n", b"10"))
    assert apply1(sm, incr_op(b"n", 32)) == IncrOk(42, 2)
    assert value_of(sm, b"n") == b"42"


def test_incr_with_a_negative_delta_goes_below_zero_and_back() -> None:
    sm = StateMachine()
    assert apply1(sm, incr_op(b"n", -7)) == IncrOk(-7, 1)
    assert value_of(sm, b"n") == b"-7"
    assert apply1(sm, incr_op(b"n", 10)) == IncrOk(3, 2)


def test_incr_by_zero_reads_the_counter_without_writing() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"n", b"-12"))
    assert apply1(sm, incr_op(b"n", 0)) == IncrOk(-12, 1)
    assert sm.revision == 1
    assert apply1(sm, incr_op(b"missing", 0)) == IncrOk(0, 0)
    assert sm.get(b"missing", 0) is None and sm.revision == 1


@pytest.mark.parametrize(
    "value",
    [
        b"abc",
        b"1.5",
        b"",
        b" 1",
        b"1 ",
        b"+1",
        b"-",
        b"--5",
        b"1-",
        b"0x10",
        b"1_000",
        b"9223372036854775808",
        b"-9223372036854775809",
        b"123456789012345678901",
    ],
)
def test_incr_of_a_non_integer_value_fails_and_keeps_the_value(value: bytes) -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"n", value))
    result = apply1(sm, incr_op(b"n", 1))
    assert_failure(result, ErrorCode.NOT_AN_INTEGER, "not a decimal 64-bit integer")
    assert value_of(sm, b"n") == value
    assert sm.revision == 1


@pytest.mark.parametrize(
    ("start", "delta", "expected"),
    [
        (INT64_MAX - 1, 1, INT64_MAX),
        (INT64_MIN + 1, -1, INT64_MIN),
        (INT64_MAX, INT64_MIN, -1),
        (0, INT64_MIN, INT64_MIN),
        (-1, INT64_MAX, INT64_MAX - 1),
    ],
)
def test_incr_reaches_the_int64_bounds(start: int, delta: int, expected: int) -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"n", str(start).encode()))
    assert apply1(sm, incr_op(b"n", delta)) == IncrOk(expected, 2)
    assert value_of(sm, b"n") == str(expected).encode()


@pytest.mark.parametrize(
    ("start", "delta"),
    [
        (INT64_MAX, 1),
        (INT64_MIN, -1),
        (INT64_MAX, INT64_MAX),
        (INT64_MIN, INT64_MIN),
        (-2, INT64_MIN),
    ],
)
def test_incr_overflow_fails_and_keeps_the_value(start: int, delta: int) -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"n", str(start).encode()))
    result = apply1(sm, incr_op(b"n", delta))
    assert_failure(result, ErrorCode.OVERFLOW, "overflows a 64-bit integer", str(start))
    assert value_of(sm, b"n") == str(start).encode()
    assert sm.revision == 1


def test_incr_of_a_missing_key_gets_the_ops_deadline() -> None:
    sm = StateMachine()
    apply1(sm, incr_op(b"n", 1, deadline=500), now=100)
    entry = sm.get(b"n", 100)
    assert entry is not None and entry.deadline_ms == 500


def test_incr_keeps_an_existing_keys_deadline() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"n", b"1", deadline=1_000), now=100)
    apply1(sm, incr_op(b"n", 1, deadline=9_000), now=200)
    entry = sm.get(b"n", 200)
    assert entry is not None
    assert (entry.value, entry.deadline_ms) == (b"2", 1_000)
    sm.apply(command(now=1_000))
    assert sm.get(b"n", 1_000) is None


def test_incr_keeps_no_expiry_on_a_key_without_one() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"n", b"1"))
    apply1(sm, incr_op(b"n", 1, deadline=9_000), now=200)
    entry = sm.get(b"n", 200)
    assert entry is not None and entry.deadline_ms == 0


def test_incr_of_an_expired_key_starts_again_at_zero_with_the_new_deadline() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"n", b"41", deadline=100), now=1)
    # Revision 2 is the expiry itself (every change, expiry included, gets a revision).
    assert apply1(sm, incr_op(b"n", 1, deadline=300), now=150) == IncrOk(1, 3)
    entry = sm.get(b"n", 150)
    assert entry is not None and entry.deadline_ms == 300


# ------------------------------------------------------------------ mset


def test_mset_writes_every_entry_with_consecutive_versions() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"x"))
    result = apply1(sm, mset_op((b"a", b"1", 0), (b"b", b"2", 500), (b"c", b"3", 0)), now=10)
    assert typed(result) == ("MSetOk", (2, 3))
    assert isinstance(result, MSetOk) and result.versions == (2, 3, 4)
    for key, value, version, deadline in [
        (b"a", b"1", 2, 0),
        (b"b", b"2", 3, 500),
        (b"c", b"3", 4, 0),
    ]:
        entry = sm.get(key, 10)
        assert entry is not None
        assert (entry.value, entry.version, entry.deadline_ms) == (value, version, deadline)
    assert sm.revision == 4


def test_mset_with_a_repeated_key_keeps_the_last_value() -> None:
    sm = StateMachine()
    result = apply1(sm, mset_op((b"a", b"1", 0), (b"a", b"2", 0)))
    assert isinstance(result, MSetOk) and result.versions == (1, 2)
    entry = sm.get(b"a", 0)
    assert entry is not None and (entry.value, entry.version) == (b"2", 2)
    assert len(sm) == 1


def test_mset_versions_sit_between_its_neighbours_in_the_command() -> None:
    sm = StateMachine()
    results = sm.apply(command(set_op(b"a"), mset_op((b"b", b"", 0), (b"c", b"", 0)), set_op(b"d")))
    assert [typed(r) for r in results] == [
        ("SetOk", (1,)),
        ("MSetOk", (2, 2)),
        ("SetOk", (4,)),
    ]


# ------------------------------------------------------------------ ttl and the cluster clock


def test_a_key_is_hidden_at_its_deadline_before_expiry_removes_it() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k", b"v", deadline=100), now=10)
    entry = sm.get(b"k", 99)
    assert entry is not None and entry.deadline_ms == 100
    assert sm.get(b"k", 100) is None
    assert sm.get(b"k", 10_000) is None
    assert len(sm) == 1  # still stored: only a command removes it
    assert sm.expired_total == 0


def test_a_later_commands_clock_removes_expired_keys() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k", b"v", deadline=100), now=10)
    apply1(sm, set_op(b"forever"), now=10)
    sm.apply(command(now=99))
    assert len(sm) == 2
    sm.apply(command(now=100))
    assert len(sm) == 1
    assert sm.expired_total == 1
    assert sm.get(b"k", 0) is None
    assert sm.get(b"forever", 0) is not None
    assert sm.cluster_time_ms == 100


def test_expiry_changes_the_digest_and_takes_a_revision_of_its_own() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k", deadline=100), now=10)
    before = sm.digest()
    sm.apply(command(now=100))
    assert sm.digest() != before
    assert sm.revision == 2  # watchers see the expiry as a change with its own revision


def test_get_never_reads_time_earlier_than_the_cluster_clock() -> None:
    sm = StateMachine()
    sm.apply(command(now=500))
    apply1(sm, set_op(b"k", deadline=400))  # stamped by a leader whose clock was behind
    assert len(sm) == 1
    assert sm.get(b"k", 0) is None


def test_the_cluster_clock_never_goes_backwards() -> None:
    sm = StateMachine()
    sm.apply(command(now=1_000))
    apply1(sm, set_op(b"soon", deadline=800), now=500)
    apply1(sm, set_op(b"later", deadline=1_200), now=500)
    assert sm.cluster_time_ms == 1_000
    assert sm.get(b"soon", 500) is None
    assert sm.get(b"later", 500) is not None
    sm.apply(command(now=900))
    assert sm.cluster_time_ms == 1_000
    assert len(sm) == 1  # "soon" (800 <= 1000) is removed, "later" survives
    sm.apply(command(now=1_200))
    assert len(sm) == 0


def test_a_command_without_time_leaves_the_clock_alone() -> None:
    sm = StateMachine()
    sm.apply(command(now=700))
    sm.apply(command(set_op(b"k"), now=0))
    assert sm.cluster_time_ms == 700


def test_a_clock_tick_without_ops_does_not_change_the_digest() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k"), now=1)
    digest = sm.digest()
    assert sm.apply(command(now=999_999)) == []
    assert sm.digest() == digest


def test_expiry_removes_at_most_the_cap_per_command_and_the_rest_later() -> None:
    sm = StateMachine()
    extra = 5
    keys = [b"k%06d" % i for i in range(MAX_EXPIRIES_PER_COMMAND + extra)]
    apply1(sm, mset_op(*[(k, b"", 10) for k in keys]), now=1)
    # the leftovers stay stored but are already invisible to the ops of the same command
    result = apply1(sm, set_op(keys[-1], b"new", condition=IF_ABSENT), now=10)
    assert isinstance(result, SetOk)
    assert sm.expired_total == MAX_EXPIRIES_PER_COMMAND
    assert len(sm) == extra
    # ... and to reads
    assert all(sm.get(k, 0) is None for k in keys[:-1])
    assert value_of(sm, keys[-1]) == b"new"
    # a later command, even one without time, continues expiry at the cluster clock
    sm.apply(command(now=0))
    assert len(sm) == 1
    assert sm.expired_total == len(keys) - 1


def test_rewriting_a_key_with_a_later_deadline_postpones_its_expiry() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k", b"a", deadline=100), now=1)
    apply1(sm, set_op(b"k", b"b", deadline=300), now=2)
    sm.apply(command(now=100))
    assert value_of(sm, b"k", 100) == b"b"
    apply1(sm, set_op(b"k", b"c"), now=150)  # no deadline any more
    sm.apply(command(now=300))
    assert value_of(sm, b"k", 300) == b"c"
    assert sm.expired_total == 0


# ------------------------------------------------------------------ request-id dedup


def test_a_retry_returns_the_first_result_even_after_the_key_changed() -> None:
    sm = StateMachine()
    first = apply1(sm, incr_op(b"n", 1, rid=("c", 1)))
    assert first == IncrOk(1, 1)
    apply1(sm, set_op(b"n", b"100"))
    retry = apply1(sm, incr_op(b"n", 1, rid=("c", 1)))
    assert typed(retry) == typed(first)
    assert value_of(sm, b"n") == b"100"
    assert sm.revision == 2


def test_a_retry_in_the_same_command_applies_once() -> None:
    sm = StateMachine()
    op = incr_op(b"n", 5, rid=("c", 1))
    assert sm.apply(command(op, op)) == [IncrOk(5, 1), IncrOk(5, 1)]
    assert value_of(sm, b"n") == b"5"


def test_a_retry_with_different_content_still_gets_the_first_result() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k", b"a", rid=("c", 7)))
    assert apply1(sm, delete_op(b"k", rid=("c", 7))) == SetOk(1)
    assert value_of(sm, b"k") == b"a"


def test_a_failed_ops_failure_is_remembered() -> None:
    sm = StateMachine()
    apply1(sm, set_op(b"k", b"a"))
    failed = apply1(sm, set_op(b"k", b"b", condition=IF_ABSENT, rid=("c", 1)))
    assert_failure(failed, ErrorCode.CONDITION_FAILED)
    apply1(sm, delete_op(b"k"))
    # it would succeed now, but the retry gets the first outcome and writes nothing
    assert apply1(sm, set_op(b"k", b"b", condition=IF_ABSENT, rid=("c", 1))) == failed
    assert sm.get(b"k", 0) is None


def test_request_ids_of_different_clients_are_independent() -> None:
    sm = StateMachine()
    assert apply1(sm, incr_op(b"n", 1, rid=("alice", 1))) == IncrOk(1, 1)
    assert apply1(sm, incr_op(b"n", 1, rid=("bob", 1))) == IncrOk(2, 2)
    assert apply1(sm, incr_op(b"n", 1, rid=("alice", 2))) == IncrOk(3, 3)
    assert apply1(sm, incr_op(b"n", 1, rid=("bob", 1))) == IncrOk(2, 2)
    assert value_of(sm, b"n") == b"3"


def test_ops_without_a_request_id_are_never_deduplicated() -> None:
    sm = StateMachine()
    sm.apply(command(incr_op(b"n", 1), incr_op(b"n", 1)))
    assert value_of(sm, b"n") == b"2"


def test_a_seq_below_the_remembered_window_is_request_too_old() -> None:
    sm = StateMachine()
    window = DEDUP_RESULTS_PER_CLIENT
    ops = [incr_op(b"n", 1, rid=("c", seq)) for seq in range(1, window + 2)]
    sm.apply(command(*ops))
    assert value_of(sm, b"n") == str(window + 1).encode()
    too_old = apply1(sm, incr_op(b"n", 1, rid=("c", 1)))
    assert_failure(too_old, ErrorCode.REQUEST_TOO_OLD, "c/1", str(window), "outcome is unknown")
    assert value_of(sm, b"n") == str(window + 1).encode()
    # the oldest result still in the window is answered from memory
    assert apply1(sm, incr_op(b"n", 1, rid=("c", 2))) == IncrOk(2, 2)
    # new sequence numbers keep applying
    assert apply1(sm, incr_op(b"n", 1, rid=("c", window + 2))) == IncrOk(window + 2, window + 2)


def test_the_client_just_served_is_never_the_session_evicted() -> None:
    sm = StateMachine()
    # Every session is seen at the same cluster time, so eviction falls back to the client id;
    # "a" sorts first but must keep its just-stored result.
    fill = [set_op(b"k%05d" % i, rid=(f"c{i:05d}", 1)) for i in range(DEDUP_MAX_CLIENTS)]
    sm.apply(command(*fill, now=5))
    assert apply1(sm, incr_op(b"n", 1, rid=("a", 1)), now=5) == IncrOk(1, DEDUP_MAX_CLIENTS + 1)
    assert apply1(sm, incr_op(b"n", 1, rid=("a", 1)), now=5) == IncrOk(1, DEDUP_MAX_CLIENTS + 1)
    assert value_of(sm, b"n") == b"1"
    # the least recently seen other client ("c00000") was forgotten instead
    assert isinstance(apply1(sm, delete_op(b"k00000", rid=("c00000", 1)), now=5), DeleteOk)
    assert sm.get(b"k00000", 5) is None


def test_an_idle_session_is_forgotten_after_the_idle_time() -> None:
    sm = StateMachine()
    assert apply1(sm, incr_op(b"n", 1, rid=("c", 1)), now=1) == IncrOk(1, 1)
    sm.apply(command(now=DEDUP_IDLE_MS))
    assert apply1(sm, incr_op(b"n", 1, rid=("c", 1))) == IncrOk(1, 1)  # still remembered
    last_seen = sm.cluster_time_ms
    sm.apply(command(now=last_seen + DEDUP_IDLE_MS + 1))
    assert apply1(sm, incr_op(b"n", 1, rid=("c", 1))) == IncrOk(2, 2)  # forgotten: applies


# ------------------------------------------------------------------ members


def test_announce_records_members_and_a_reannounce_updates_them() -> None:
    sm = StateMachine()
    assert typed(apply1(sm, announce_op("n1", "127.0.0.1:7380", "127.0.0.1:6380"))) == (
        "AnnounceOk",
        (),
    )
    apply1(sm, announce_op("n2", "127.0.0.1:7381", "127.0.0.1:6381"))
    digest = sm.digest()
    apply1(sm, announce_op("n1", "127.0.0.1:7380", "10.0.0.1:6380"))
    assert sm.members == {
        "n1": Member("127.0.0.1:7380", "10.0.0.1:6380"),
        "n2": Member("127.0.0.1:7381", "127.0.0.1:6381"),
    }
    assert sm.digest() != digest
    assert sm.revision == 0  # members are not key writes


def test_members_returns_a_copy() -> None:
    sm = StateMachine()
    apply1(sm, announce_op("n1", "r", "c"))
    sm.members.clear()
    assert list(sm.members) == ["n1"]


# ------------------------------------------------------------------ digest


def test_replicas_applying_the_same_writes_have_the_same_digest() -> None:
    cmds = [
        command(set_op(b"a", b"1"), incr_op(b"b", 2, deadline=50), now=1),
        command(announce_op("n1", "r1", "c1"), delete_op(b"a"), now=20),
        command(now=50),
    ]
    one, two = StateMachine(), StateMachine()
    for cmd in cmds:
        one.apply(cmd)
        two.apply(cmd)
    assert one.digest() == two.digest()
    different = StateMachine()
    for cmd in cmds[:-1]:
        different.apply(cmd)
    assert different.digest() != one.digest()  # "b" not expired yet


def test_digest_depends_on_values() -> None:
    one, two = StateMachine(), StateMachine()
    apply1(one, set_op(b"k", b"a"))
    apply1(two, set_op(b"k", b"b"))
    assert one.digest() != two.digest()


def _mc_set(key: bytes, value: bytes, flags: int, exptime: int = 0) -> command_pb2.Op:
    return call_op([STORE_COMMAND, b"set", key, value, b"%d" % flags, b"%d" % exptime, b""], 0)


def test_the_running_digest_counts_flags_deadlines_and_overwrites_as_a_recount_does() -> None:
    # Writes keep the digest up to date entry by entry (_account, with a fast path for
    # strings); a restore recounts it from the entries (_entry_hash): they must agree.
    sm = StateMachine()
    sm.apply(command(_mc_set(b"f", b"v", 77), _mc_set(b"g", b"v", 1, exptime=100), now=10))
    sm.apply(command(_mc_set(b"f", b"w", 78), set_op(b"t", b"x", deadline=9_000), now=20))
    sm.apply(command(mset_op((b"t", b"y", 0), (b"m", b"z", 500)), now=30))  # overwrites
    sm.apply(command(call_op([b"RPUSH", b"l", b"a"], 0), call_op([b"SET", b"l", b"s"], 0), now=40))
    assert StateMachine.restore(sm.export_meta(), list(sm.export_items())).digest() == sm.digest()
    other = StateMachine()  # the same, but the last flags
    other.apply(command(_mc_set(b"f", b"v", 77), _mc_set(b"g", b"v", 1, exptime=100), now=10))
    other.apply(command(_mc_set(b"f", b"w", 79), set_op(b"t", b"x", deadline=9_000), now=20))
    other.apply(command(mset_op((b"t", b"y", 0), (b"m", b"z", 500)), now=30))
    other.apply(
        command(call_op([b"RPUSH", b"l", b"a"], 0), call_op([b"SET", b"l", b"s"], 0), now=40)
    )
    assert other.digest() != sm.digest()


# ------------------------------------------------------------------ snapshots


def _busy_state() -> tuple[StateMachine, list[tuple[command_pb2.Op, Result]]]:
    """A state with every kind of key, member and remembered result; returns (sm, rid'd ops)."""
    sm = StateMachine()
    rid_ops = [
        set_op(b"s", b"value", rid=("c1", 1)),
        set_op(b"s", b"x", condition=IF_ABSENT, rid=("c1", 2)),
        incr_op(b"n", -3, deadline=5_000, rid=("c1", 3)),
        delete_op(b"s", rid=("c2", 1)),
        mset_op((b"m1", b"1", 0), (b"m2", b"\x00\xff", 400), rid=("c2", 2)),
        announce_op("n1", "127.0.0.1:7380", "127.0.0.1:6380", rid=("c3", 1)),
    ]
    results = sm.apply(command(*rid_ops, now=100))
    sm.apply(command(set_op(b"plain", b"p"), set_op(b"ttl", b"t", deadline=300), now=200))
    sm.apply(command(set_op(b"gone", deadline=250), now=210))
    sm.apply(command(now=260))  # expires "gone"
    return sm, list(zip(rid_ops, results, strict=True))


def _snapshot(sm: StateMachine) -> StateMachine:
    return StateMachine.restore(sm.export_meta(), list(sm.export_items()))


def test_restore_gives_the_same_digest_reads_and_metadata() -> None:
    sm, _ = _busy_state()
    restored = _snapshot(sm)
    assert restored.digest() == sm.digest()
    assert set(restored.export_items()) == set(sm.export_items())
    assert restored.export_meta() == sm.export_meta()
    assert len(restored) == len(sm)
    assert restored.revision == sm.revision
    assert restored.cluster_time_ms == sm.cluster_time_ms == 260
    assert restored.expired_total == sm.expired_total == 1
    assert restored.members == sm.members
    for key in [b"s", b"n", b"m1", b"m2", b"plain", b"ttl", b"gone", b"absent"]:
        assert restored.get(key, 260) == sm.get(key, 260)


def test_dedup_still_answers_retries_after_restore() -> None:
    sm, rid_ops = _busy_state()
    restored = _snapshot(sm)
    for op, first in rid_ops:
        retry = apply1(restored, op)
        assert typed(retry) == typed(first)
    assert restored.digest() == sm.digest()
    assert restored.revision == sm.revision


def test_a_restored_replica_keeps_agreeing_with_the_original() -> None:
    sm, _ = _busy_state()
    restored = _snapshot(sm)
    later = [
        command(incr_op(b"n", 10, rid=("c1", 4)), set_op(b"m2", b"z", expected=0), now=300),
        command(now=400),  # expires "ttl" (300) and "m2" (400)
        command(incr_op(b"n", 10, rid=("c1", 4)), delete_op(b"plain"), now=5_000),
    ]
    for cmd in later:
        assert [typed(r) for r in restored.apply(cmd)] == [typed(r) for r in sm.apply(cmd)]
    assert restored.digest() == sm.digest()
    assert set(restored.export_items()) == set(sm.export_items())
    assert restored.expired_total == sm.expired_total == 4
    assert len(restored) == 1  # only "m1" is left


def test_restore_of_an_empty_state() -> None:
    restored = _snapshot(StateMachine())
    assert restored.digest() == StateMachine().digest()
    assert len(restored) == 0 and restored.revision == 0


def test_client_sessions_are_evicted_least_recently_used(monkeypatch: pytest.MonkeyPatch) -> None:
    import raftcache.node.state_machine as state_machine

    monkeypatch.setattr(state_machine, "DEDUP_MAX_CLIENTS", 3)
    sm = StateMachine()
    for client in ("a", "b", "c"):
        apply1(sm, incr_op(b"n", 1, rid=(client, 1)))
    apply1(sm, incr_op(b"n", 1, rid=("a", 2)))  # a is used again: b is now the oldest
    apply1(sm, incr_op(b"n", 1, rid=("d", 1)))  # over the limit: evicts b
    # a still remembers its first result; b's retry is treated as new (its session is gone).
    assert apply1(sm, incr_op(b"n", 1, rid=("a", 1))) == IncrOk(1, 1)
    retried = apply1(sm, incr_op(b"n", 1, rid=("b", 1)))
    assert isinstance(retried, IncrOk) and retried.value == 6  # a, b, c, a, d, then b again


# ------------------------------------------------------------------ scan


def _redis_set(sm: StateMachine, db: int, key: bytes) -> None:
    cmd = command_pb2.Command(now_ms=1)
    cmd.ops.add().data.op.call.CopyFrom(cache_pb2.RedisCall(argv=[b"SET", key, b"v"], db=db))
    sm.apply(cmd)


def _scan_all(sm: StateMachine, prefix: bytes = b"", db: int = 0) -> list[bytes]:
    found, cursor = sm.scan(0, prefix, 100, 1, db=db)
    while cursor:
        more, cursor = sm.scan(cursor, prefix, 100, 1, db=db)
        found += more
    return sorted(found)


def test_scan_of_the_grpc_keyspace_never_returns_keys_of_other_databases() -> None:
    sm = StateMachine()
    sm.apply(command(set_op(b"a"), set_op(b"ab"), set_op(b"b")))
    for db in (1, 7, 15):
        _redis_set(sm, db, b"a")
        _redis_set(sm, db, b"ax")
    assert _scan_all(sm) == [b"a", b"ab", b"b"]
    assert _scan_all(sm, b"a") == [b"a", b"ab"]
    assert _scan_all(sm, DB_PREFIX) == []  # not even by naming the internal prefix
    assert _scan_all(sm, db=7) == [DB_PREFIX + b"\x07a", DB_PREFIX + b"\x07ax"]
