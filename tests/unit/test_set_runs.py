"""Set runs (node/DESIGN.md "Set runs"): the proposer puts two or more plain SETs queued one
after another into one MSetOp, and each write must still get exactly what it would have got
as its own op, with exactly the same state on every replica. Compared on twin replicas: one
fed by the real Proposer (grouping on), one applying every write as its own op."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from raftcache.consensus import Outcome
from raftcache.node import commands, errors
from raftcache.node.engine import call_op
from raftcache.node.eviction import AccessTracker, Evictor
from raftcache.node.keyspace import notify
from raftcache.node.keyspace.db import DB_PREFIX, KEY_OVERHEAD, RESERVED_KEY, db_key
from raftcache.node.keyspace.memcached import STORE_COMMAND, STORED
from raftcache.node.keyspace.reply import OK, OOM, Error
from raftcache.node.proposer import Proposer, ProposerConfig, QueuedCall, QueuedSets, Write
from raftcache.node.replica import Replica
from raftcache.node.state_machine import (
    ErrorCode,
    Failure,
    MSetOk,
    Published,
    Value,
    op_growth,
    plain_set_parts,
    set_run_answers,
)
from raftcache.v1 import command_pb2

NOW = 5_000


def _mc_set(key: bytes, value: bytes, flags: bytes = b"0", exptime: bytes = b"0") -> list[bytes]:
    return [STORE_COMMAND, b"set", key, value, flags, exptime, b""]


class _Applying:
    """A consensus that applies each entry to a real Replica at once."""

    def __init__(self, replica: Replica, outcome: Outcome = Outcome.APPLIED) -> None:
        self.replica = replica
        self.outcome = outcome
        self.entries: list[command_pb2.Command] = []

    def propose(self, data: bytes, callback: Callable[[Outcome, Any], None]) -> None:
        self.entries.append(commands.decode(data))
        if self.outcome is Outcome.APPLIED:
            callback(Outcome.APPLIED, self.replica.apply(data))
        else:
            callback(self.outcome, "test")

    def is_leader(self) -> bool:
        return True


def _through_proposer(
    replica: Replica,
    writes: list[Write],
    outcome: Outcome = Outcome.APPLIED,
    runs: bool = True,
) -> tuple[list[Any], command_pb2.Command]:
    """The writes submitted together (one entry) through the real Proposer with the real
    eviction prelude; set runs on or off. Their results (or errors) and the entry."""

    async def body() -> tuple[list[Any], command_pb2.Command]:
        consensus = _Applying(replica, outcome)
        evictor = Evictor(lambda: replica.state, replica.lock, AccessTracker())
        proposer = Proposer(
            consensus,
            replica,
            ProposerConfig(group_wait_s=0.0),
            now_ms=lambda: NOW,
            prelude=evictor.prelude,
            sets_fit=(lambda least, growth: replica.state.sets_fit(least, growth))
            if runs
            else None,
        )
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in writes]
        for write, future in zip(writes, futures, strict=True):
            proposer.submit(write, future, 64, 1)
        await asyncio.gather(*futures, return_exceptions=True)
        (entry,) = consensus.entries
        return [f.exception() or f.result() for f in futures], entry

    return asyncio.run(body())


def _one_by_one(replica: Replica, writes: list[Write]) -> list[Any]:
    """The same writes as one entry of one op each (the path before set runs)."""
    results, entry = _through_proposer(replica, writes, runs=False)
    assert "mset" not in _kinds(entry)
    return results


def _setup(replica: Replica, writes: list[QueuedCall]) -> None:
    command = command_pb2.Command(now_ms=NOW)
    command.ops.extend(call_op(list(w.argv), w.db, w.user) for w in writes)
    replica.apply(commands.encode(command))


def _state(replica: Replica) -> tuple[object, ...]:
    sm = replica.state
    events = replica.events  # type: ignore[attr-defined]
    return (sm.digest(), sm.memory_used, sm.revision, dict(sm._data), list(events))


def _replica() -> Replica:
    """A Replica that keeps every event it hands on (changes, published notifications)."""
    replica = Replica()
    replica.events = []  # type: ignore[attr-defined]
    replica.on_events = replica.events.extend  # type: ignore[attr-defined]
    return replica


def _kinds(entry: command_pb2.Command) -> list[str]:
    return [str(op.WhichOneof("kind")) for op in entry.ops]


def _twins(setup: list[QueuedCall] = ()) -> tuple[Replica, Replica]:  # type: ignore[assignment]
    grouped, single = _replica(), _replica()
    if setup:
        _setup(grouped, setup)
        _setup(single, setup)
    return grouped, single


SETUP = [
    QueuedCall([b"set", b"a", b"old", b"px", b"50000"], 0),  # a TTL the run must clear
    QueuedCall([b"hset", b"h", b"f", b"v"], 0),  # another type, replaced
    QueuedCall(_mc_set(b"m", b"v", flags=b"77"), 0),  # memcached flags, reset
]


def test_runs_of_plain_sets_answer_and_change_state_as_sets_one_by_one() -> None:
    writes = [
        QueuedCall([b"SET", b"a", b"1"], 0),
        QueuedCall([b"set", b"b", b"2"], 3),  # another database
        QueuedCall(_mc_set(b"m", b"3"), 0),
        QueuedCall([b"SET", b"a", b"4"], 0),  # the same key again: the last one stays
        QueuedCall([b"SET", b"h", b"5"], 0),  # replaces a hash
        QueuedCall([b"DEL", b"a"], 0),  # not a plain SET: ends the run
        QueuedCall([b"SET", b"d", b"6"], 0),  # a run of one: its own op
        QueuedCall([b"SET", b"e", b"7", b"EX", b"10"], 0),  # options: its own op
        QueuedCall(_mc_set(b"f", b"8", flags=b"5"), 0),  # memcached flags: its own op
        QueuedCall(_mc_set(b"g", b"9", exptime=b"100"), 0),  # an expiry: its own op
        QueuedCall([b"SET", DB_PREFIX + b"x", b"10"], 0),  # reserved: its own op, refused
        QueuedCall([b"SET", b"j", b"11"], 0, "bob"),  # a user's call: its own op
        QueuedCall(_mc_set(b"k", b"12"), 5),
        QueuedCall([b"SET", b"l", b"13"], 0),
    ]
    grouped, single = _twins(SETUP)
    results, entry = _through_proposer(grouped, writes)
    expected = _one_by_one(single, writes)
    assert results == expected
    assert _state(grouped) == _state(single)
    assert _kinds(entry) == ["mset"] + ["data"] * 7 + ["mset"]
    first, last = entry.ops[0].mset.entries, entry.ops[-1].mset.entries
    assert [(e.key, e.value) for e in first] == [
        (b"a", b"1"),
        (db_key(3, b"b"), b"2"),
        (b"m", b"3"),
        (b"a", b"4"),
        (b"h", b"5"),
    ]
    assert [(e.key, e.value, e.deadline_ms) for e in last] == [
        (db_key(5, b"k"), b"12", 0),
        (b"l", b"13", 0),
    ]
    # what the clients read back: OK, and memcached's STORED with the key's new version
    assert results[0] == Value("reply", OK)
    assert results[2] == Value("reply", [STORED, grouped.state._data[b"m"][1]])
    assert results[10] == Value("reply", Error(RESERVED_KEY))


def test_an_entry_of_plain_sets_only_is_one_mset() -> None:
    writes = [QueuedCall([b"SET", b"key:%d" % i, b"v" * 100], 0) for i in range(64)]
    grouped, single = _twins()
    results, entry = _through_proposer(grouped, writes)
    assert _kinds(entry) == ["mset"]
    assert results == _one_by_one(single, writes) == [Value("reply", OK)] * 64
    assert _state(grouped) == _state(single)


def _limit(replica: Replica, max_memory: int, policy: str = "noeviction") -> None:
    op = command_pb2.Op()
    op.config.max_memory = max_memory
    op.config.eviction_policy = policy
    command = command_pb2.Command(now_ms=NOW)
    command.ops.append(op)
    replica.apply(commands.encode(command))


def _bound(value_bytes: int) -> int:
    """What eviction and sets_fit count for one plain SET (a 2-byte key) as its own op."""
    return op_growth(call_op([b"SET", b"k0", b"v" * value_bytes], 0))


def test_sets_that_may_not_all_fit_go_one_by_one_so_only_the_last_is_refused() -> None:
    writes = [QueuedCall([b"SET", b"k%d" % i, b"v" * 100], 0) for i in range(4)]
    one = 2 + 100 + KEY_OVERHEAD
    grouped, single = _twins()
    for replica in (grouped, single):  # room for three of the four
        _limit(replica, replica.state.memory_used + 3 * one + one // 2)
    results, entry = _through_proposer(grouped, writes)
    assert _kinds(entry) == ["data"] * 4
    assert results == _one_by_one(single, writes)
    assert results[-1] == Value("reply", Error(OOM))
    assert results[:3] == [Value("reply", OK)] * 3
    assert _state(grouped) == _state(single)


def test_sets_that_fit_under_a_limit_still_form_a_run() -> None:
    writes = [QueuedCall([b"SET", b"k%d" % i, b"v" * 100], 0) for i in range(4)]
    grouped, single = _twins()
    for replica in (grouped, single):
        _limit(replica, replica.state.memory_used + 4 * _bound(100))
    results, entry = _through_proposer(grouped, writes)
    assert _kinds(entry) == ["mset"]
    assert results == _one_by_one(single, writes) == [Value("reply", OK)] * 4
    assert _state(grouped) == _state(single)


def test_no_runs_while_keyspace_notifications_are_on() -> None:
    writes = [QueuedCall([b"SET", b"k%d" % i, b"v"], 0) for i in range(3)]
    grouped, single = _twins()
    for replica in (grouped, single):
        replica.state.set_notify_flags(notify.normalize("KA"))
        assert replica.state.notify_on
    results, entry = _through_proposer(grouped, writes)
    assert _kinds(entry) == ["data"] * 3
    assert results == _one_by_one(single, writes)
    assert _state(grouped) == _state(single)  # the notifications published included


def test_a_run_that_fails_to_commit_fails_every_write_in_it() -> None:
    writes = [QueuedCall([b"SET", b"k%d" % i, b"v"], 0) for i in range(3)]
    results, entry = _through_proposer(_replica(), writes, Outcome.UNKNOWN)
    assert _kinds(entry) == ["mset"]
    assert all(isinstance(r, errors.OutcomeUnknown) for r in results)
    results, _ = _through_proposer(_replica(), writes, Outcome.NOT_APPLIED)
    assert all(isinstance(r, errors.NoLeader) for r in results)


def test_a_run_refused_whole_answers_each_write_as_sets_are_refused() -> None:
    full = Failure(ErrorCode.OUT_OF_MEMORY, "over --max-memory")
    assert set_run_answers(full, [False, True]) == [Value("reply", Error(OOM))] * 2
    other = Failure(ErrorCode.INVALID_COMMAND, "bug")
    assert set_run_answers(other, [False, False]) == [other, other]
    assert set_run_answers(MSetOk(7, 3), [False, True, True]) == [
        Value("reply", OK),
        Value("reply", [STORED, 8]),
        Value("reply", [STORED, 9]),
    ]


def test_plain_set_parts_takes_only_what_plain_set_applies() -> None:
    assert plain_set_parts([b"SET", b"k", b"v"]) == (b"k", b"v", 0, False)
    assert plain_set_parts(_mc_set(b"k", b"v", flags=b"9")) == (b"k", b"v", 9, True)
    for argv in (
        [b"SET", b"k", b"v", b"NX"],
        [b"SETNX", b"k", b"v"],
        _mc_set(b"k", b"v", exptime=b"5"),
        [STORE_COMMAND, b"set", b"k", b"v", b"0", b"0", b"12"],  # a CAS
        [STORE_COMMAND, b"add", b"k", b"v", b"0", b"0", b""],
        _mc_set(b"k", b"v", flags=b"4294967296"),  # over 32 bits: the table's error
    ):
        assert plain_set_parts(argv) is None, argv


def test_flags_and_the_reserved_prefix_break_a_run() -> None:
    writes = [
        QueuedCall([b"SET", b"a", b"1"], 0),
        QueuedCall(_mc_set(b"f", b"2", flags=b"5"), 0),  # MSetOp carries no flags
        QueuedCall([b"SET", DB_PREFIX + b"x", b"3"], 0),  # refused, not stored
        QueuedCall([b"SET", b"b", b"4"], 0),
    ]
    grouped, single = _twins()
    results, entry = _through_proposer(grouped, writes)
    assert _kinds(entry) == ["data"] * 4
    assert results == _one_by_one(single, writes)
    assert results[2] == Value("reply", Error(RESERVED_KEY))
    assert _state(grouped) == _state(single)
    assert grouped.state._data[b"f"][3] == 5


def test_other_writes_of_the_entry_count_against_the_limit() -> None:
    # After the EX write there is room for one plain SET and not two: as ops of their own
    # the first SET is stored and the second refused; as a run of two, MSetOp would refuse
    # both. The room is over what the two SETs alone are counted for, so only counting the
    # EX write's bound too keeps them out of a run.
    big = QueuedCall([b"SET", b"x", b"x" * 2000, b"EX", b"100"], 0)
    scratch = _replica()
    before = scratch.state.memory_used
    _setup(scratch, [big])
    taken = scratch.state.memory_used - before
    writes = [big, *(QueuedCall([b"SET", b"k%d" % i, b"v" * 100], 0) for i in range(2))]
    grouped, single = _twins()
    room = taken + 700  # one SET takes 2 + 100 + KEY_OVERHEAD = 462
    assert room >= 2 * _bound(100)
    for replica in (grouped, single):
        _limit(replica, replica.state.memory_used + room)
    results, entry = _through_proposer(grouped, writes)
    assert _kinds(entry) == ["data"] * 3
    assert results == _one_by_one(single, writes)
    assert results == [Value("reply", OK)] * 2 + [Value("reply", Error(OOM))]
    assert _state(grouped) == _state(single)


def test_an_entry_that_turns_notifications_on_forms_no_run() -> None:
    flags = call_op([notify.SET_FLAGS.encode(), notify.normalize("KA").encode()], 0)
    writes: list[Write] = [flags, *(QueuedCall([b"SET", b"k%d" % i, b"v"], 0) for i in range(3))]
    grouped, single = _twins()
    results, entry = _through_proposer(grouped, writes)
    assert _kinds(entry) == ["data"] * 4
    assert results == _one_by_one(single, writes)
    published = [e for e in grouped.events if type(e) is Published]  # type: ignore[attr-defined]
    assert len(published) == 3  # a keyspace `set` for each of the three (K, all classes)
    assert _state(grouped) == _state(single)


def test_an_entry_that_changes_the_limit_forms_no_run() -> None:
    config = command_pb2.Op()
    config.config.max_memory = 1 << 30
    config.config.eviction_policy = "noeviction"
    writes: list[Write] = [config, *(QueuedCall([b"SET", b"k%d" % i, b"v"], 0) for i in range(3))]
    grouped, single = _twins()
    results, entry = _through_proposer(grouped, writes)
    assert _kinds(entry) == ["config", "data", "data", "data"]
    assert results == _one_by_one(single, writes)
    assert _state(grouped) == _state(single)


class _Held(_Applying):
    """Holds each entry until release(), then applies them in log order."""

    def __init__(self, replica: Replica) -> None:
        super().__init__(replica)
        self.held: list[tuple[bytes, Callable[[Outcome, Any], None]]] = []
        self.everything_applied = True

    def propose(self, data: bytes, callback: Callable[[Outcome, Any], None]) -> None:
        self.entries.append(commands.decode(data))
        self.held.append((data, callback))

    def applied_everything(self) -> bool:
        return self.everything_applied

    def release(self) -> None:
        held, self.held = self.held, []
        self.everything_applied = True
        for data, callback in held:
            callback(Outcome.APPLIED, self.replica.apply(data))


def _behind_an_earlier_entry(
    replica: Replica, earlier: Write, writes: list[Write], inflight: int
) -> tuple[list[Any], command_pb2.Command]:
    """`earlier` proposed first and still unapplied when `writes` make the next entry: in
    flight on this proposer, not appended yet (`inflight` 2), or in the log from before (a
    new leader's first entry, `inflight` 1: the consensus reports it unapplied)."""

    async def body() -> tuple[list[Any], command_pb2.Command]:
        consensus = _Held(replica)
        proposer = Proposer(
            consensus,
            replica,
            ProposerConfig(group_wait_s=0.0, max_inflight=inflight),
            now_ms=lambda: NOW,
            sets_fit=lambda least, growth: replica.state.sets_fit(least, growth),
        )
        loop = asyncio.get_running_loop()
        if inflight > 1:
            proposer.submit(earlier, loop.create_future(), 64, 1)
            for _ in range(3):
                await asyncio.sleep(0)
            assert len(consensus.held) == 1
        else:
            consensus.everything_applied = False
            consensus.propose(commands.encode(command_pb2.Command(now_ms=NOW, ops=[earlier])),
                              lambda *_: None)  # fmt: skip
        futures = [loop.create_future() for _ in writes]
        for write, future in zip(writes, futures, strict=True):
            proposer.submit(write, future, 64, 1)
        for _ in range(3):
            await asyncio.sleep(0)
        consensus.release()
        await asyncio.gather(*futures, return_exceptions=True)
        return [f.exception() or f.result() for f in futures], consensus.entries[-1]

    return asyncio.run(body())


@pytest.mark.parametrize("inflight", [1, 2], ids=["unapplied-in-the-log", "in-flight"])
def test_no_run_behind_an_unapplied_entry_that_turns_notifications_on(inflight: int) -> None:
    flags = call_op([notify.SET_FLAGS.encode(), notify.normalize("KA").encode()], 0)
    writes: list[Write] = [QueuedCall([b"SET", b"k%d" % i, b"v"], 0) for i in range(3)]
    grouped, single = _twins()
    results, entry = _behind_an_earlier_entry(grouped, flags, writes, inflight)
    assert _kinds(entry) == ["data"] * 3
    _one_by_one(single, [flags])
    assert results == _one_by_one(single, writes) == [Value("reply", OK)] * 3
    published = [e for e in grouped.events if type(e) is Published]  # type: ignore[attr-defined]
    assert len(published) == 3  # each SET's keyspace `set`, as one op each publishes
    assert _state(grouped) == _state(single)


@pytest.mark.parametrize("inflight", [1, 2], ids=["unapplied-in-the-log", "in-flight"])
def test_no_run_behind_an_unapplied_entry_that_lowers_the_limit(inflight: int) -> None:
    writes: list[Write] = [QueuedCall([b"SET", b"k%d" % i, b"v" * 100], 0) for i in range(4)]
    grouped, single = _twins()
    limit = command_pb2.Op()  # room for three of the four, once applied
    limit.config.max_memory = grouped.state.memory_used + 3 * (2 + 100 + KEY_OVERHEAD) + 50
    limit.config.eviction_policy = "noeviction"
    results, entry = _behind_an_earlier_entry(grouped, limit, writes, inflight)
    assert _kinds(entry) == ["data"] * 4
    _one_by_one(single, [limit])
    assert results == _one_by_one(single, writes)
    assert results == [Value("reply", OK)] * 3 + [Value("reply", Error(OOM))]
    assert _state(grouped) == _state(single)


def test_a_run_never_changes_what_eviction_chooses() -> None:
    # volatile-ttl with five keys to evict, and room for the SETs only as a run would count
    # them: as ops of their own they need evictions, so no run forms
    setup = [QueuedCall([b"SET", b"t%d" % i, b"v" * 50, b"EX", b"100"], 0) for i in range(5)]
    writes = [QueuedCall([b"SET", b"k%d" % i, b"v" * 100], 0) for i in range(4)]
    grouped, single = _twins(setup)
    for replica in (grouped, single):
        used = replica.state.memory_used
        _limit(replica, used + 4 * (2 + 100 + KEY_OVERHEAD) + 10, "volatile-ttl")
    results, entry = _through_proposer(grouped, writes)
    assert _kinds(entry) == ["evict"] + ["data"] * 4
    assert results == _one_by_one(single, writes)
    assert grouped.state.evicted_total == single.state.evicted_total > 0
    assert _state(grouped) == _state(single)


def test_sets_fit_refuses_a_full_cache_without_the_entrys_bound() -> None:
    def not_asked() -> int:
        raise AssertionError("the whole entry's bound was computed")

    replica = _replica()
    sm = replica.state
    assert sm.sets_fit(10**9, not_asked)  # no limit: any run fits
    _limit(replica, sm.memory_used + 1000, "allkeys-lru")
    assert not sm.sets_fit(1001, not_asked)  # a full cache: refused at once
    assert sm.sets_fit(500, lambda: 1000)
    assert not sm.sets_fit(500, lambda: 1001)
    sm.set_notify_flags(notify.normalize("KA"))
    assert not sm.sets_fit(0, not_asked)


# -- a pipeline's SETs as one write (QueuedSets, node/DESIGN.md "Pipelined SETs as one write")


def _group(db: int, *pairs: tuple[bytes, bytes]) -> QueuedSets:
    argvs = [[b"SET", key, value] for key, value in pairs]
    return QueuedSets(argvs, db, sum(3 + len(k) + len(v) for k, v in pairs))


def _calls(writes: list[Write]) -> list[Write]:
    """The same writes with each group spelled out as one QueuedCall per SET."""
    out: list[Write] = []
    for w in writes:
        if isinstance(w, QueuedSets):
            out += [QueuedCall(argv, w.db) for argv in w.argvs]
        else:
            out.append(w)
    return out


def _regrouped(writes: list[Write], results: list[Any]) -> list[Any]:
    """Per-call results (of `_calls(writes)`) as each write of `writes` gets them."""
    out: list[Any] = []
    at = 0
    for w in writes:
        n = len(w.argvs) if isinstance(w, QueuedSets) else 0
        out.append(results[at : at + n] if n else results[at])
        at += n or 1
    assert at == len(results)
    return out


MIXED: list[Write] = [
    QueuedCall([b"SET", b"a", b"1"], 0),
    _group(0, (b"b", b"2"), (b"a", b"3"), (b"h", b"4")),  # continues the run; replaces a hash
    QueuedCall([b"DEL", b"b"], 0),  # ends it
    _group(3, (b"c", b"5"), (b"d", b"6")),  # another database: a run of its own
    QueuedCall(_mc_set(b"m", b"7"), 0),  # memcached's plain set joins it
    QueuedCall([b"INCR", b"n"], 0),
    _group(0, (b"e", b"8"), (b"f", b"9")),
]


def test_a_pipelines_sets_as_one_write_answer_and_change_state_as_sets_one_by_one() -> None:
    grouped, single = _twins(SETUP)
    results, entry = _through_proposer(grouped, MIXED)
    assert _kinds(entry) == ["mset", "data", "mset", "data", "mset"]
    assert [(e.key, e.value) for e in entry.ops[2].mset.entries] == [
        (db_key(3, b"c"), b"5"),
        (db_key(3, b"d"), b"6"),
        (b"m", b"7"),
    ]
    expected = _one_by_one(single, _calls(MIXED))
    assert results == _regrouped(MIXED, expected)
    assert results[1] == [Value("reply", OK)] * 3 and results[5] == Value("reply", 1)
    assert _state(grouped) == _state(single)


def test_without_runs_a_group_is_one_op_per_set_as_its_calls_would_be() -> None:
    grouped, single = _twins(SETUP)
    results, entry = _through_proposer(grouped, MIXED, runs=False)
    reference = [
        QueuedCall(list(w.argv), w.db).as_op() if isinstance(w, QueuedCall) else w
        for w in _calls(MIXED)
    ]
    assert list(entry.ops) == reference  # byte for byte what QueuedCall builds for each
    assert results == _regrouped(MIXED, _one_by_one(single, _calls(MIXED)))
    assert _state(grouped) == _state(single)


ONES: list[Write] = [
    _group(0, (b"x", b"1")),  # a lone SET alone in its entry's first run...
    QueuedCall([b"SET", b"y", b"2"], 0),  # ...joined by a SET dispatch queued
    _group(0, (b"z", b"3")),  # and by another lone one
    QueuedCall([b"INCR", b"n"], 0),
    _group(0, (b"w", b"4")),  # between other writes: no run, its one op
    QueuedCall([b"DEL", b"x"], 0),
]


@pytest.mark.parametrize("writes", [ONES, ONES[:1]], ids=["mixed", "alone"])
def test_groups_of_one_set_answer_and_change_state_as_the_set_alone(writes: list[Write]) -> None:
    """A lone SET queued as a group of one (an unpipelined client's, session 26): in a run
    with the SETs around it, or its one op where no run forms (alone in the entry too)."""
    grouped, single = _twins(SETUP)
    results, entry = _through_proposer(grouped, writes)
    kinds = ["mset", "data", "data", "data"] if len(writes) > 1 else ["data"]
    assert _kinds(entry) == kinds
    assert results == _regrouped(writes, _one_by_one(single, _calls(writes)))
    assert results[0] == [Value("reply", OK)]
    assert _state(grouped) == _state(single)


def test_a_group_that_may_not_all_fit_goes_one_by_one_so_only_the_last_is_refused() -> None:
    group = _group(0, *((b"k%d" % i, b"v" * 100) for i in range(4)))
    one = 2 + 100 + KEY_OVERHEAD
    grouped, single = _twins()
    for replica in (grouped, single):  # room for three of the four
        _limit(replica, replica.state.memory_used + 3 * one + one // 2)
    results, entry = _through_proposer(grouped, [group])
    assert _kinds(entry) == ["data"] * 4
    assert results == [[Value("reply", OK)] * 3 + [Value("reply", Error(OOM))]]
    assert results == _regrouped([group], _one_by_one(single, _calls([group])))
    assert _state(grouped) == _state(single)


@pytest.mark.parametrize("db", [0, 9])
def test_a_groups_least_bound_is_what_its_calls_add_up_to(db: int) -> None:
    pairs = [(b"key%d" % i, b"v" * (10 * i)) for i in range(5)]
    asked: list[int] = []

    def spy(replica: Replica) -> Callable[[int, Callable[[], int]], bool]:
        def fit(least: int, growth: Callable[[], int]) -> bool:
            asked.append(least)
            assert least <= growth()
            return replica.state.sets_fit(least, growth)

        return fit

    for writes in ([_group(db, *pairs)], _calls([_group(db, *pairs)])):
        replica = _replica()

        async def body(replica: Replica = replica, writes: list[Write] = writes) -> None:
            proposer = Proposer(
                _Applying(replica),
                replica,
                ProposerConfig(group_wait_s=0.0),
                now_ms=lambda: NOW,
                sets_fit=spy(replica),
            )
            futures = [asyncio.get_running_loop().create_future() for _ in writes]
            for write, future in zip(writes, futures, strict=True):
                proposer.submit(write, future)
            await asyncio.gather(*futures)

        asyncio.run(body())
    grouped_least, calls_least = asked
    assert (
        grouped_least
        == calls_least
        == sum(len(db_key(db, k)) + len(v) + KEY_OVERHEAD for k, v in pairs)
    )


def test_a_group_that_fails_to_commit_fails_as_one_write() -> None:
    group = _group(0, (b"a", b"1"), (b"b", b"2"))
    results, entry = _through_proposer(_replica(), [group], Outcome.UNKNOWN)
    assert _kinds(entry) == ["mset"]
    assert len(results) == 1 and isinstance(results[0], errors.OutcomeUnknown)


def _proposer(consensus: _Applying, runs: bool = True, **config: Any) -> Proposer:
    """A Proposer over `consensus` (and its replica), set runs on or off."""
    replica = consensus.replica
    return Proposer(
        consensus,
        replica,
        ProposerConfig(group_wait_s=0.0, **config),
        now_ms=lambda: NOW,
        sets_fit=(lambda least, growth: replica.state.sets_fit(least, growth)) if runs else None,
    )


def test_groups_weigh_their_sets_against_an_entrys_weight() -> None:
    async def body() -> list[command_pb2.Command]:
        consensus = _Applying(_replica())
        proposer = _proposer(consensus, max_batch_weight=5)
        groups = [_group(0, *((b"g%dk%d" % (g, i), b"v") for i in range(3))) for g in range(3)]
        futures = [asyncio.get_running_loop().create_future() for _ in groups]
        for group, future in zip(groups, futures, strict=True):
            proposer.submit(group, future)  # size and weight from the group itself
        assert all(r == [Value("reply", OK)] * 3 for r in await asyncio.gather(*futures))
        return consensus.entries

    entries = asyncio.run(body())
    # 3 SETs weigh 3: two groups (6) are over 5, so each goes in an entry of its own
    assert [len(e.ops[0].mset.entries) for e in entries] == [3, 3, 3]


def test_the_queue_limit_and_the_ops_counters_count_a_groups_sets() -> None:
    async def body() -> None:
        consensus = _Held(_replica())  # the first entry stays in flight: the rest queue
        proposer = _proposer(consensus, max_pending_ops=5)
        loop = asyncio.get_running_loop()
        first = loop.create_future()
        proposer.submit(_group(0, (b"a", b"1"), (b"b", b"2")), first)
        await asyncio.sleep(0)
        assert len(consensus.held) == 1
        proposer.submit(_group(0, (b"c", b"3"), (b"d", b"4"), (b"e", b"5")), loop.create_future())
        proposer.submit(_group(0, (b"f", b"6"), (b"g", b"7")), loop.create_future())
        assert proposer.pending()[0] == 5  # SETs queued, not writes
        with pytest.raises(errors.Overloaded):
            proposer.submit(QueuedCall([b"SET", b"h", b"8"], 0), loop.create_future())
        consensus.release()
        await first
        for _ in range(5):
            await asyncio.sleep(0)
        consensus.release()
        await asyncio.sleep(0)
        assert proposer.ops_proposed == 7  # SETs proposed, not writes

    asyncio.run(body())


@pytest.mark.parametrize("grouped", [True, False], ids=["a-group", "plain-writes"])
def test_an_entry_whose_results_do_not_match_its_writes_fails_them_all(grouped: bool) -> None:
    class _Short(_Applying):
        def propose(self, data: bytes, callback: Callable[[Outcome, Any], None]) -> None:
            self.entries.append(commands.decode(data))
            callback(Outcome.APPLIED, self.replica.apply(data)[:-1])  # one result lost

    async def body() -> list[Any]:
        proposer = _proposer(_Short(_replica()), runs=False)
        loop = asyncio.get_running_loop()
        first: Write = (
            _group(0, (b"a", b"1"), (b"b", b"2"))
            if grouped
            else QueuedCall([b"SET", b"a", b"1"], 0)
        )
        writes: list[Write] = [first, QueuedCall([b"INCR", b"n"], 0)]
        futures = [loop.create_future() for _ in writes]
        for write, future in zip(writes, futures, strict=True):
            proposer.submit(write, future)
        done = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 5)
        return list(done)

    results = asyncio.run(body())
    assert all(isinstance(r, errors.OutcomeUnknown) for r in results), results


def test_an_entrys_op_limit_counts_calls_and_a_larger_group_goes_alone() -> None:
    async def body() -> list[command_pb2.Command]:
        consensus = _Applying(_replica())
        proposer = _proposer(consensus, runs=False, max_batch_ops=3)
        writes: list[Write] = [
            QueuedCall([b"SET", b"a", b"1"], 0),
            _group(0, *((b"g%d" % i, b"v") for i in range(5))),  # over the limit alone
            _group(0, (b"h1", b"v"), (b"h2", b"v")),
            _group(0, (b"i1", b"v"), (b"i2", b"v")),
            QueuedCall([b"SET", b"j", b"1"], 0),
        ]
        futures = [asyncio.get_running_loop().create_future() for _ in writes]
        for write, future in zip(writes, futures, strict=True):
            proposer.submit(write, future)
        await asyncio.gather(*futures)
        assert proposer.pending()[0] == 0
        return consensus.entries

    entries = asyncio.run(body())
    assert [len(e.ops) for e in entries] == [1, 5, 2, 3]
