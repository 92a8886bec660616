"""Property: replicas fed the same commands agree, even one restored from a snapshot midway.

Commands are generated as plain specs (below) so that hypothesis shrinks them well and prints
a readable falsifying list, plus a @reproduce_failure blob, when this fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import NamedTuple
from unittest import mock

from hypothesis import given, note, settings
from hypothesis import strategies as st
from raftcache.node import commands, state_machine
from raftcache.node.state_machine import (
    EVICTION_POLICIES,
    INT64_MAX,
    INT64_MIN,
    Result,
    StateMachine,
)
from raftcache.v1 import cache_pb2, command_pb2

KEYS = [b"a", b"b", b"c"]
VALUES = [b"", b"0", b"7", b"-3", b"x", b"--5", b"9223372036854775807", b"-9223372036854775808"]
DELTAS = [0, 1, -1, 5, INT64_MAX, INT64_MIN]
# c1 dominates so that one client often overflows its window; the others cause evictions.
CLIENTS = ["c1", "c1", "c1", "c2", "c3"]
# Clock steps in ms: standing still, small and large moves, and a leader whose clock is behind.
CLOCK_STEPS = [0, 1, 5, 20, 100, -10, -200]
START_MS = 1_000

# Small bounds so that short sequences reach them: window overflow, client eviction, the
# expiry cap and the idle-session sweep all happen in many examples.
SMALL_BOUNDS = {
    "DEDUP_RESULTS_PER_CLIENT": 3,
    "DEDUP_MAX_CLIENTS": 2,
    "MAX_EXPIRIES_PER_COMMAND": 2,
    "DEDUP_IDLE_MS": 150,
    "_SWEEP_EVERY_MS": 40,
}

Rid = tuple[str, int] | None


class Set(NamedTuple):
    key: bytes
    value: bytes
    ttl: int | None  # relative to the command's clock; may already be past
    condition: int
    expected: int | None
    rid: Rid


class Delete(NamedTuple):
    key: bytes
    rid: Rid


class Incr(NamedTuple):
    key: bytes
    delta: int
    ttl: int | None
    rid: Rid


class MSet(NamedTuple):
    entries: list[tuple[bytes, bytes, int | None]]
    rid: Rid


class Announce(NamedTuple):
    node: str
    client_port: int
    rid: Rid


class Data(NamedTuple):
    """A typed-value op (or a string op in DataOp form); ttl for set/expire."""

    op: cache_pb2.DataOp
    ttl: int | None
    rid: Rid


class Txn(NamedTuple):
    compares: list[cache_pb2.Compare]
    success: list[cache_pb2.DataOp]
    failure: list[cache_pb2.DataOp]
    rid: Rid


class Evict(NamedTuple):
    keys: list[bytes]
    rid: Rid


class Config(NamedTuple):
    max_memory: int
    policy: str
    rid: Rid


class Resend(NamedTuple):
    """A verbatim copy of an earlier op (index modulo the ops so far): a client's retry."""

    nth: int


OpSpec = Set | Delete | Incr | MSet | Announce | Data | Txn | Evict | Config | Resend


class Cmd(NamedTuple):
    clock_step: int
    stamped: bool  # False: the command carries no time (now_ms = 0)
    ops: list[OpSpec]


rids = st.one_of(st.none(), st.tuples(st.sampled_from(CLIENTS), st.integers(1, 6)))
keys = st.sampled_from(KEYS)
values = st.sampled_from(VALUES)
ttls = st.one_of(st.none(), st.integers(-20, 150))
FIELDS = [b"f", b"g"]
SCORES = [0.0, -0.0, 1.5, -2.0, float("inf"), float("-inf")]
fields = st.sampled_from(FIELDS)
scores = st.sampled_from(SCORES)
ends = st.sampled_from([cache_pb2.LEFT, cache_pb2.RIGHT])
small = st.integers(-4, 4)
bounds = st.builds(cache_pb2.ScoreBound, value=scores, exclusive=st.booleans())


def _d(name: str, **kwargs: object) -> st.SearchStrategy[cache_pb2.DataOp]:
    """A DataOp with its `name` field built from the keyword strategies."""
    body = getattr(cache_pb2, _DATA_TYPES[name])
    return st.builds(lambda b: cache_pb2.DataOp(**{name: b}), st.builds(body, key=keys, **kwargs))


_DATA_TYPES = {
    f.name: f.message_type.name for f in cache_pb2.DataOp.DESCRIPTOR.oneofs_by_name["op"].fields
}
field_values = st.builds(cache_pb2.FieldValue, field=fields, value=values)
scored = st.builds(cache_pb2.ScoredMember, member=fields, score=scores)
data_ops = st.one_of(
    _d("get"),
    _d("set", value=values),
    _d("delete"),
    _d("incr", delta=st.sampled_from(DELTAS)),
    _d("hset", fields=st.lists(field_values, min_size=1, max_size=2)),
    _d("hget", field=fields),
    _d("hgetall"),
    _d("hdel", fields=st.lists(fields, min_size=1, max_size=2)),
    _d("hincrby", field=fields, delta=st.sampled_from(DELTAS)),
    _d("zadd", members=st.lists(scored, min_size=1, max_size=2)),
    _d("zincrby", member=fields, delta=scores),
    _d("zrank", member=fields, reverse=st.booleans()),
    _d("zrange", start=small, stop=small, reverse=st.booleans()),
    _d(
        "zrangebyscore",
        min=bounds,
        max=bounds,
        reverse=st.booleans(),
        offset=st.integers(0, 2),
        limit=st.integers(0, 2),
    ),
    _d("zcount", min=bounds, max=bounds),
    _d("zrem", members=st.lists(fields, min_size=1, max_size=2)),
    _d("push", values=st.lists(values, min_size=1, max_size=3), end=ends),
    _d("pop", count=st.integers(0, 3), end=ends),
    _d("lrange", start=small, stop=small),
    _d("sadd", members=st.lists(values, min_size=1, max_size=3)),
    _d("srem", members=st.lists(values, min_size=1, max_size=2)),
    _d("smembers"),
    _d("expire", ttl_ms=st.integers(1, 150)),
    _d("persist"),
    _d("ttl"),
    _d("type"),
)
compares = st.one_of(
    st.builds(cache_pb2.Compare, key=keys, op=st.sampled_from([0, 1]), exists=st.booleans()),
    st.builds(cache_pb2.Compare, key=keys, op=st.integers(0, 3), version=st.integers(0, 12)),
    st.builds(cache_pb2.Compare, key=keys, op=st.integers(0, 3), value=values),
)
op_specs = st.one_of(
    st.builds(
        Set,
        keys,
        values,
        ttls,
        st.sampled_from([0, 1, 2]),
        st.one_of(st.none(), st.integers(0, 12)),
        rids,
    ),
    st.builds(Delete, keys, rids),
    st.builds(Incr, keys, st.sampled_from(DELTAS), ttls, rids),
    st.builds(MSet, st.lists(st.tuples(keys, values, ttls), min_size=1, max_size=3), rids),
    st.builds(Announce, st.sampled_from(["n1", "n2"]), st.sampled_from([6380, 6390]), rids),
    st.builds(Data, data_ops, ttls, rids),
    st.builds(Data, data_ops, ttls, rids),
    st.builds(
        Txn,
        st.lists(compares, max_size=2),
        st.lists(data_ops, max_size=3),
        st.lists(data_ops, max_size=2),
        rids,
    ),
    st.builds(Evict, st.lists(keys, max_size=2), rids),
    st.builds(Config, st.sampled_from([0, 150, 400]), st.sampled_from(EVICTION_POLICIES), rids),
    st.builds(Resend, st.integers(0, 50)),
)
cmd_specs = st.lists(
    st.builds(Cmd, st.sampled_from(CLOCK_STEPS), st.booleans(), st.lists(op_specs, max_size=4)),
    min_size=1,
    max_size=30,
)


def _deadline(now: int, ttl: int | None) -> int:
    return 0 if ttl is None else max(1, now + ttl)


def _op(spec: OpSpec, now: int) -> command_pb2.Op:
    op = command_pb2.Op()
    if isinstance(spec, Set):
        s = op.set
        s.key, s.value, s.deadline_ms = spec.key, spec.value, _deadline(now, spec.ttl)
        s.condition = spec.condition
        if spec.expected is not None:
            s.has_expected_version, s.expected_version = True, spec.expected
    elif isinstance(spec, Delete):
        op.delete.key = spec.key
    elif isinstance(spec, Incr):
        op.incr.key, op.incr.delta = spec.key, spec.delta
        op.incr.deadline_ms = _deadline(now, spec.ttl)
    elif isinstance(spec, MSet):
        for key, value, ttl in spec.entries:
            op.mset.entries.add(key=key, value=value, deadline_ms=_deadline(now, ttl))
    elif isinstance(spec, Data):
        _data(op.data, spec.op, now, spec.ttl)
    elif isinstance(spec, Txn):
        op.txn.compares.extend(spec.compares)
        for data_op in spec.success:
            _data(op.txn.success.add(), data_op, now, 50)
        for data_op in spec.failure:
            _data(op.txn.failure.add(), data_op, now, None)
    elif isinstance(spec, Evict):
        op.evict.keys.extend(spec.keys)
    elif isinstance(spec, Config):
        op.config.max_memory, op.config.eviction_policy = spec.max_memory, spec.policy
    elif isinstance(spec, Announce):
        a = op.announce
        a.node_id, a.raft_addr = spec.node, f"{spec.node}:7380"
        a.client_addr = f"{spec.node}:{spec.client_port}"
    if not isinstance(spec, Resend) and spec.rid is not None:
        op.request_id.client_id, op.request_id.seq = spec.rid
    return op


def _data(cmd: command_pb2.DataCmd, data_op: cache_pb2.DataOp, now: int, ttl: int | None) -> None:
    cmd.op.CopyFrom(data_op)
    kind = data_op.WhichOneof("op")
    if kind == "expire":
        cmd.deadline_ms = now + data_op.expire.ttl_ms
    elif kind == "set":
        cmd.deadline_ms = _deadline(now, ttl)


def build(specs: Sequence[Cmd]) -> list[command_pb2.Command]:
    """Turn specs into commands: a leader clock that moves (sometimes backwards), deadlines
    stamped from it, and resends copied from the ops already built."""
    clock = START_MS
    built: list[command_pb2.Op] = []
    out = []
    for spec in specs:
        clock = max(1, clock + spec.clock_step)
        cmd = command_pb2.Command(now_ms=clock if spec.stamped else 0)
        for op_spec in spec.ops:
            if isinstance(op_spec, Resend):
                if built:
                    cmd.ops.append(built[op_spec.nth % len(built)])
                continue
            op = _op(op_spec, clock)
            built.append(op)
            cmd.ops.append(op)
        out.append(cmd)
    return out


@contextmanager
def small_bounds() -> Iterator[None]:
    with ExitStack() as stack:
        for name, value in SMALL_BOUNDS.items():
            stack.enter_context(mock.patch.object(state_machine, name, value))
        yield


def typed(results: list[Result]) -> list[tuple[str, tuple[object, ...]]]:
    """NamedTuples compare as plain tuples (SetOk(1) == DeleteOk(True)); compare the type too."""
    return [(type(r).__name__, tuple(r)) for r in results]


def replicate(command: command_pb2.Command) -> command_pb2.Command:
    """The command as another replica reads it: through the log codec."""
    copy = command_pb2.Command()
    copy.CopyFrom(command)
    return commands.decode(commands.encode(copy))


def snapshot_restore(sm: StateMachine) -> StateMachine:
    return StateMachine.restore(sm.export_meta(), list(sm.export_items()))


@settings(max_examples=500, deadline=None, print_blob=True)
@given(specs=cmd_specs, data=st.data())
def test_replicas_agree_with_a_snapshot_restore_midway(
    specs: list[Cmd], data: st.DataObject
) -> None:
    cmds = build(specs)
    cut = data.draw(st.integers(0, len(cmds)), label="snapshot before command")
    with small_bounds():
        one, two = StateMachine(), StateMachine()
        for i, command in enumerate(cmds):
            if i == cut:
                two = snapshot_restore(two)
            got_one = typed(one.apply(command))
            got_two = typed(two.apply(replicate(command)))
            assert got_one == got_two, f"results differ at command {i}"
        if cut == len(cmds):
            two = snapshot_restore(two)

    note(f"final digest {one.digest()}, {len(one)} keys, revision {one.revision}")
    assert one.digest() == two.digest()
    assert set(one.export_items()) == set(two.export_items())
    assert json.loads(one.export_meta()) == json.loads(two.export_meta())
    assert one.members == two.members
    now = one.cluster_time_ms
    assert two.cluster_time_ms == now
    for key in KEYS:
        assert one.get(key, now) == two.get(key, now)
    assert one.memory_used == two.memory_used
    assert one.take_events() == two.take_events() or cut > 0  # a restore starts a new outbox


def test_the_small_bounds_take_effect() -> None:
    # If the state machine stopped reading these module globals at call time, the property
    # above would silently exercise only the default (large) bounds.
    incrs = [Incr(b"n", 1, None, ("c", seq)) for seq in range(1, 5)]
    fill = MSet([(key, b"", 9) for key in KEYS], None)
    cmds = build([Cmd(0, True, [*incrs, fill]), Cmd(10, True, [incrs[0]])])
    with small_bounds():
        sm = StateMachine()
        sm.apply(cmds[0])
        (too_old,) = sm.apply(cmds[1])
    assert isinstance(too_old, state_machine.Failure)
    assert too_old.code is state_machine.ErrorCode.REQUEST_TOO_OLD
    assert sm.expired_total == SMALL_BOUNDS["MAX_EXPIRIES_PER_COMMAND"]
