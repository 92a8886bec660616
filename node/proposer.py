"""The leader's proposer: group commit for writes and batched read barriers.

Client writes queue here; whenever fewer than `max_inflight` batches are
waiting for Raft, everything queued is packed into ONE Command (one log entry),
stamped with the leader's clock. LINEARIZABLE reads wait for the next entry
proposed after they arrived to be applied (a write batch or, when there are no
writes, an empty barrier entry): one entry per batch of reads, never per read.
While the previous entry carried several ops (concurrent callers), the next waits up
to `group_wait_s` after it for as many ops to queue: each entry costs the leader far
more than each op, and without the wait gRPC callers trickle in a few at a time.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from raftcache.consensus import Outcome
from raftcache.consensus.durations import Durations
from raftcache.node import commands, errors
from raftcache.node.keyspace.db import DB_PREFIX, KEY_OVERHEAD, db_key
from raftcache.node.keyspace.notify import SET_FLAGS
from raftcache.node.state_machine import Result, op_growth, plain_set_parts, set_run_answers
from raftcache.v1 import command_pb2

_log = structlog.get_logger("raftcache.proposer")


class Waiter(Protocol):
    """What a queued write or read waits with: an asyncio.Future, or a `Callback`."""

    def done(self) -> bool: ...

    def set_result(self, result: Any, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


class Callback:
    """A Waiter that calls `fn(result, error)` at once on the loop, with no extra loop turn
    (a front-end answering thousands of commands per batch saves a callback per command)."""

    __slots__ = ("_done", "fn")

    def __init__(self, fn: Callable[[Any, BaseException | None], None]) -> None:
        self.fn = fn
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        self._call(result, None)

    def set_exception(self, exception: BaseException, /) -> None:
        self._call(None, exception)

    def _call(self, result: Any, error: BaseException | None) -> None:
        if self._done:
            return
        self._done = True
        try:
            self.fn(result, error)
        except Exception:  # one caller's bug must not keep the rest of a batch waiting
            _log.exception("a proposal's callback failed")


class Consensus(Protocol):
    def propose(self, data: bytes, callback: Callable[[Outcome, Any], None]) -> None: ...

    def is_leader(self) -> bool: ...


class Clock(Protocol):
    @property
    def cluster_time_ms(self) -> int: ...


SCRIPT_WEIGHT = 64
"""What a Lua script or function call weighs against max_batch_weight: a short one costs
~0.15 ms to apply on every replica (0.2-0.5 ms when each run booted its own Lua state; a
long one up to its instruction budget) against ~0.02 ms for a SET, and an entry is applied
on the Raft thread in one go: 10,000 pipelined EVALs in a few entries stalled heartbeats
past the election timeout (leader changes in the Redis suite's scripting unit)."""
_HEAVY = frozenset(
    (b"eval", b"evalsha", b"eval_ro", b"evalsha_ro", b"fcall", b"fcall_ro", b"function")
)


class QueuedCall:
    """A Redis command queued for the next entry and built there, in place: building an
    Op and copying it into the Command (`ops.extend` copies) cost a SET ~1 us more on the
    leader (node/DESIGN.md, "What a Redis command costs"). It becomes exactly
    `engine.call_op(argv, db, user)` as of when it is proposed: `argv` (bytes) must not
    change after submit."""

    __slots__ = ("argv", "built", "db", "user")

    def __init__(self, argv: Sequence[bytes], db: int, user: str = "") -> None:
        self.argv = argv
        self.db = db
        self.user = user
        self.built: command_pb2.Op | None = None  # as_op()'s, once asked (then reused)

    def build(self, op: command_pb2.Op) -> None:
        """Fill `op` (empty) with this call."""
        call = op.data.op.call
        call.argv.extend(self.argv)
        call.db = self.db
        if self.user:
            call.user = self.user

    def as_op(self) -> command_pb2.Op:
        """The op on its own (built once: measuring a queue over an entry's limits asks)."""
        if self.built is None:
            self.built = command_pb2.Op()
            self.build(self.built)
        return self.built


class QueuedSets:
    """Plain `SET key value` calls of one connection's read (one or more, db `db`, no
    user), queued as ONE write whose result is the list of their results: a pipelined
    SET costs the front-end one slot, callback and queue item per pipeline read instead of
    one each (node/DESIGN.md "Pipelined SETs as one write"). In the entry they are what
    each call alone would be: a set run (one MSetOp) when runs may form, else one op per
    call, byte for byte QueuedCall's."""

    __slots__ = ("argvs", "built", "db", "size")

    def __init__(self, argvs: list[list[bytes]], db: int, size: int) -> None:
        self.argvs = argvs
        self.db = db
        self.size = size  # their argument bytes
        self.built: list[command_pb2.Op] | None = None  # as_ops()'s, once asked

    def as_ops(self) -> list[command_pb2.Op]:
        """The op of each call (a queue over an entry's limits, a bound under --max-memory),
        built once."""
        if self.built is None:
            self.built = [QueuedCall(argv, self.db).as_op() for argv in self.argvs]
        return self.built


def calls_of(write: Write) -> int:
    """How many client calls `write` carries (a QueuedSets: its SETs; else one): what the
    queue's and an entry's op limits and the ops counters count."""
    return len(write.argvs) if type(write) is QueuedSets else 1


_SET_NOTIFY_FLAGS = SET_FLAGS.encode()

Write = command_pb2.Op | QueuedCall | QueuedSets
"""What the proposer queues: a built op, a Redis call it builds in the entry, or a
pipeline's plain SETs (one write, one result each)."""


def _as_op(write: command_pb2.Op | QueuedCall) -> command_pb2.Op:
    return write.as_op() if isinstance(write, QueuedCall) else write


def _ops_of(write: Write) -> list[command_pb2.Op]:
    """The ops `write` puts in an entry when no set run forms."""
    return write.as_ops() if isinstance(write, QueuedSets) else [_as_op(write)]


def write_size(write: Write) -> int:
    """The bytes `write` adds to an entry (max_batch_bytes)."""
    return sum(op.ByteSize() for op in _ops_of(write))


def op_weight(op: Write) -> int:
    """An op's apply cost in max_batch_weight units (a transaction: its calls' sum)."""
    if isinstance(op, QueuedCall):
        return call_weight(op.argv)
    if isinstance(op, QueuedSets):
        return len(op.argvs)
    kind = op.WhichOneof("kind")
    if kind == "data":
        return _call_weight(op.data.op)
    if kind == "txn":
        return max(1, sum(_call_weight(c.op) for c in op.txn.success))
    return 1


def _call_weight(data_op: Any) -> int:
    return call_weight(data_op.call.argv)


def call_weight(argv: Sequence[bytes]) -> int:
    """A Redis command's op_weight, from its argv."""
    return SCRIPT_WEIGHT if argv and argv[0].lower() in _HEAVY else 1


@dataclass(frozen=True)
class ProposerConfig:
    max_inflight: int = 1
    max_batch_ops: int = 4096
    max_batch_bytes: int = 16 << 20
    max_batch_weight: int = 4096  # apply cost per entry: an op weighs 1, a script SCRIPT_WEIGHT
    max_pending_ops: int = 20_000
    max_pending_bytes: int = 256 << 20
    commit_timeout_s: float = 5.0
    tick_interval_s: float = 0.1
    group_wait_s: float = 0.01  # 0: propose whatever is queued at once
    # A lease read runs at the applied cluster time; it may trail this leader's clock by at
    # most this, else the read takes the barrier, whose entry stamps the clock (TTLs read
    # right, and after a failover the new leader's first reads bring the clock forward).
    lease_clock_lag_ms: int = 50


@dataclass
class _Batch:
    writes: list[tuple[Write, Waiter]]
    reads: list[Waiter]
    done: bool = False
    prelude: int = 0  # ops put in front of the writes (an eviction), whose results nobody awaits
    started: float = 0.0  # monotonic time it was proposed
    # Set runs (_build): per op after the prelude, None when it answers one write, else
    # which writes of its run were memcached's `set`. None: no runs, one op per write.
    shape: list[list[bool] | None] | None = None
    grouped: bool = False  # a write is a QueuedSets: results are regrouped per write


def _add(ops: Any, op: Write) -> int:
    """Append one write's ops to an entry's ops (a QueuedCall built in place); returns how
    many."""
    if type(op) is QueuedCall and op.built is None:
        op.build(ops.add())
    elif isinstance(op, QueuedSets):
        for argv in op.argvs:
            QueuedCall(argv, op.db).build(ops.add())
        return len(op.argvs)
    else:
        ops.append(_as_op(op))
    return 1


def _changes_settings(op: command_pb2.Op) -> bool:
    """Whether an op changes what a set run's answers depend on: the memory limit and
    policy (ConfigOp) or keyspace notifications (CONFIG SET's internal call)."""
    kind: str | None = op.WhichOneof("kind")
    if kind != "data":
        return kind == "config"
    # CONFIG SET is refused inside MULTI and scripts cannot reach internal commands: the
    # flags' call is always an op of its own, never in a transaction
    data = op.data.op
    return bool(data.WhichOneof("op") == "call" and data.call.argv[:1] == [_SET_NOTIFY_FLAGS])


def _unfold(results: Sequence[Result], shape: list[list[bool] | None]) -> list[Result]:
    """One result per call, from an entry's per-op results and its shape (_build)."""
    out: list[Result] = []
    for result, run in zip(results, shape, strict=True):
        if run is None:
            out.append(result)
        else:
            out.extend(set_run_answers(result, run))
    return out


def _regroup(results: Sequence[Result], writes: list[tuple[Write, Waiter]]) -> list[Any]:
    """One result per write from one per call: a QueuedSets gets the list of its calls'."""
    out: list[Any] = []
    at = 0
    for op, _ in writes:
        if type(op) is QueuedSets:
            n = len(op.argvs)
            out.append(results[at : at + n])
            at += n
        else:
            out.append(results[at])
            at += 1
    if at != len(results):
        raise ValueError(f"an entry answered {len(results)} calls, its writes made {at}")
    return out


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def skewed_wall_clock() -> Callable[[], int]:
    """wall_clock_ms, shifted for chaos tests only (chaos/DESIGN.md "Clock skew"):
    RAFTCACHE_TEST_CLOCK_OFFSET_MS adds a fixed offset; RAFTCACHE_TEST_CLOCK_OFFSET_FILE names
    a file holding the offset in ms, re-read at most every 50 ms so a nemesis can move it."""
    fixed = int(os.environ.get("RAFTCACHE_TEST_CLOCK_OFFSET_MS") or 0)
    path = os.environ.get("RAFTCACHE_TEST_CLOCK_OFFSET_FILE") or ""
    if not path:
        return (lambda: wall_clock_ms() + fixed) if fixed else wall_clock_ms
    offset, next_read = fixed, 0.0

    def skewed() -> int:
        nonlocal offset, next_read
        if time.monotonic() >= next_read:
            next_read = time.monotonic() + 0.05
            try:
                with open(path, encoding="ascii") as f:
                    offset = int(f.read().strip() or 0)
            except (OSError, ValueError):
                pass  # keep the last offset read
        return wall_clock_ms() + offset

    return skewed


class Proposer:
    """Runs on the asyncio loop; consensus callbacks are handed back to it thread-safely."""

    def __init__(
        self,
        consensus: Consensus,
        clock: Clock,
        config: ProposerConfig,
        now_ms: Callable[[], int] | None = None,
        prelude: Callable[[Sequence[command_pb2.Op]], list[command_pb2.Op]] | None = None,
        sets_fit: Callable[[int, Callable[[], int]], bool] | None = None,
    ) -> None:
        self._prelude = prelude
        self._sets_fit = sets_fit  # StateMachine.sets_fit; None: no set runs (_build)
        self._consensus = consensus
        self._clock = clock
        self._config = config
        self._wall_ms = now_ms or skewed_wall_clock()  # unskewed unless a test says
        self._loop = asyncio.get_running_loop()
        self._writes: list[tuple[Write, Waiter]] = []
        self._write_calls = 0  # the calls in _writes (calls_of each)
        self._write_bytes = 0
        self._write_weight = 0
        self._reads: list[Waiter] = []
        self._inflight = 0
        self._writing = 0  # in-flight batches that carry writes (not only reads or a tick)
        self._flush_scheduled = False
        self._last_stamp = 0
        self._last_proposal = 0.0
        self._held_until = 0.0  # hold(): no new entries before this (a leadership transfer)
        self._last_size = 0  # ops (writes and reads) in the last entry that carried any
        self._wait_timer: asyncio.TimerHandle | None = None
        # Lease reads (consensus/lease.py): both sides must offer them (test fakes do not).
        lease = getattr(consensus, "lease_read_ok", None)
        quiet = getattr(clock, "expiry_quiet", None)
        # (lease_read_ok, expiry_quiet), or None when either side lacks its half
        self._lease: tuple[Callable[[], bool], Callable[[int], bool]] | None = (
            (lease, quiet) if lease is not None and quiet is not None else None
        )
        # Set runs need the settings `sets_fit` reads to be those their entry meets at
        # apply: every entry in the log applied (test fakes apply each entry at once).
        self._applied_everything: Callable[[], bool] = getattr(
            consensus, "applied_everything", lambda: True
        )
        # Reads the lease answers on the next loop turn, with the clock they were checked at.
        self._leased: list[tuple[Waiter, int]] = []
        self._clock_tick_scheduled = False  # _tick_for_reads is due on the next loop turn
        # The clock the first of them was checked at: later reads of the same turn share it
        # while nothing is proposed or completed meanwhile (barrier()); 0 = check again.
        self._lease_clock = 0
        self.lease_reads = 0  # linearizable reads answered under the lease (no log entry)
        self.batches_proposed = 0
        self.ops_proposed = 0
        self.set_run_writes = 0  # plain SETs proposed inside set runs (metrics)
        self.batches_failed = 0  # not applied, or outcome unknown (metrics)
        self.commit_durations = Durations()  # proposed to applied here (metrics)

    def now_ms(self) -> int:
        """The leader's clock: wall time, never behind cluster time or a previous stamp."""
        now = max(self._wall_ms(), self._clock.cluster_time_ms, self._last_stamp)
        self._last_stamp = now
        return now

    def is_leader(self) -> bool:
        return self._consensus.is_leader()

    def lease_holds(self) -> bool:
        """This leader's read lease holds and it has applied everything committed: its
        applied state holds every write acknowledged by any leader (consensus/lease.py)."""
        return self._lease is not None and self._lease[0]()

    def pending(self) -> tuple[int, int, int]:
        """(queued write calls, waiting reads, batches waiting for Raft), for metrics."""
        return self._write_calls, len(self._reads), self._inflight

    async def write(self, op: command_pb2.Op) -> Result:
        """Replicate one op; returns the state machine's result for it."""
        future: asyncio.Future[Result] = self._loop.create_future()
        self.submit(op, future)
        return await future

    def submit(self, op: Write, waiter: Waiter, size: int = 0, weight: int = 0) -> None:
        """Queue one op (or a QueuedCall) now, in call order; `waiter` gets its result. `size`
        and `weight`: the op's bytes and op_weight if the caller knows them (ByteSize and
        reading the op's argv back cost microseconds: call_weight(argv) is the caller's
        cheap way)."""
        if (
            self._write_calls >= self._config.max_pending_ops
            or self._write_bytes >= self._config.max_pending_bytes
        ):
            raise errors.Overloaded(
                f"{self._write_calls} writes are already queued on this node; retry shortly"
            )
        self._writes.append((op, waiter))
        self._write_calls += calls_of(op)
        self._write_bytes += size or write_size(op)
        self._write_weight += weight or op_weight(op)
        self._schedule_flush()

    async def read_barrier(self) -> None:
        """Return once everything committed before this call is applied on this leader."""
        future: asyncio.Future[None] = self._loop.create_future()
        self.barrier(future)
        await future

    def barrier(self, waiter: Waiter) -> None:
        """Complete `waiter` once everything committed before this call is applied here,
        and every write this node queued or proposed before it. Its result is None, or
        under the lease the clock the read may run at (`_answer_leased`).

        Under a leader lease (consensus/lease.py) that holds now, with no write queued or in
        flight here (entries of reads only, or the clock's ticks, do not count: reads that
        waited for one would keep the next one coming), an applied cluster time at most
        lease_clock_lag_ms behind this leader's clock and nothing due to expire between the
        two, it already is: the waiter completes on the next loop turn without a log entry
        (never inside this call, which callers do not expect). The reads of one loop turn
        share the clock the first was checked at (each still checks the lease): no entry
        was proposed or completed between them, so no key's deadline can have come
        between that clock and the cluster time, and no later clock was shown to anyone.
        Otherwise an entry proposed after this call is the proof. A read never
        passes a write proposed here before it, as with the barrier alone: a Batch's reads
        see its own writes, and a read after a push sees the pops of the blocked clients it
        woke (Redis serves them inside the push; blocking.py proposes them before the push
        is answered: Replica.apply hands the push's events to the loop before pysyncobj
        calls the push's callback, both through call_soon_threadsafe, so the pops are
        submitted before the push's reply goes out)."""
        lease = self._lease
        if (
            lease is not None
            and not self._writes
            and not self._writing
            and lease[0]()
            and (now := self._lease_clock or self._clock_fresh_and_quiet(lease[1]))
        ):
            if not self._leased:
                self._loop.call_soon(self._answer_leased)
            self._leased.append((waiter, now))
            self._lease_clock = now
            return
        if len(self._reads) >= self._config.max_pending_ops:
            raise errors.Overloaded(
                f"{len(self._reads)} linearizable reads are already waiting on this node; "
                "retry shortly"
            )
        self._reads.append(waiter)
        self._schedule_flush()

    def _clock_fresh_and_quiet(self, quiet: Callable[[int], bool]) -> int:
        """The stamp a barrier entry would carry now, if the applied cluster time is within
        lease_clock_lag_ms of it and no key's deadline lies between the two; else 0. A clock
        given out counts as a stamp: a wall clock stepped back never makes a later read run
        earlier (its TTLs longer) than one already answered."""
        now = max(self._wall_ms(), self._last_stamp)
        lag = now - self._clock.cluster_time_ms
        bound = self._config.lease_clock_lag_ms
        if lag <= bound and quiet(now):
            self._last_stamp = now
            if lag > bound // 2 and not self._inflight and not self._clock_tick_scheduled:
                self._clock_tick_scheduled = True
                self._loop.call_soon(self._tick_for_reads)
            return now
        return 0

    def _tick_for_reads(self) -> None:
        """Leased reads found the applied cluster time more than half the bound behind:
        stamp the clock into the log now, so that it is fresh again before the bound is
        reached. Reads do not wait for it (a tick is not a write, `barrier`); without it,
        under a read load the clock fell behind every 50 ms and the reads that found it so
        took the barrier, each batch of them waiting a Raft round."""
        self._clock_tick_scheduled = False
        if (
            not self._inflight
            and time.monotonic() >= self._held_until
            and self._consensus.is_leader()
        ):
            self._propose([], [])

    def _answer_leased(self) -> None:
        """A leased read's result is the time it may read at (a barrier's is None): the
        stamp its barrier entry would have carried, so TTLs and idle times read as they
        would after that entry. No key expires between it and the applied cluster time
        (checked), and it is at most lease_clock_lag_ms past a committed stamp: a new
        leader's clock can never be more than that behind what a client was shown."""
        leased, self._leased = self._leased, []
        self._lease_clock = 0
        self.lease_reads += len(leased)
        for waiter, now in leased:
            if not waiter.done():
                waiter.set_result(now)

    def hold(self, seconds: float) -> None:
        """Propose nothing new for up to `seconds` (writes and reads queue meanwhile): a
        leadership transfer needs its target to hold the leader's last entry, which never
        happens while entries keep coming (Raft thesis 3.10: the leader stops taking
        requests during a transfer). release() ends it early."""
        self._held_until = time.monotonic() + seconds
        self._loop.call_later(seconds, self._schedule_flush)

    def release(self) -> None:
        """End hold(): queued calls are proposed (or, if leadership moved, refused as
        NoLeader, which clients retry on the new leader)."""
        self._held_until = 0.0
        self._schedule_flush()

    async def hand_over(
        self,
        transfer: Callable[[], object],
        seconds: float,
        alone: Callable[[], bool] = lambda: False,
    ) -> None:
        """Move leadership away: propose nothing new (hold) and call `transfer` (pysyncobj's
        transferLeadership, which refuses while no connected follower holds the last entry
        and sends TimeoutNow only once) every 250 ms until this node no longer leads,
        `alone()` says no follower is there to take over, or `seconds` pass; then release."""
        deadline = time.monotonic() + seconds
        next_ask = 0.0
        self.hold(seconds)
        try:
            while self._consensus.is_leader() and not alone() and time.monotonic() < deadline:
                if time.monotonic() >= next_ask:
                    transfer()
                    next_ask = time.monotonic() + 0.25
                await asyncio.sleep(0.02)
        finally:
            self.release()

    async def run_ticks(self) -> None:
        """Propose an empty command whenever nothing was proposed for a tick interval.

        Each one advances the replicated cluster clock (expiring keys) and tells
        followers how fresh they are.
        """
        interval = self._config.tick_interval_s
        while True:
            await asyncio.sleep(interval / 2)
            idle = time.monotonic() - self._last_proposal >= interval
            held = time.monotonic() < self._held_until
            if (
                idle
                and not held
                and self._consensus.is_leader()
                and self._inflight < self._config.max_inflight
            ):
                self._propose([], [])

    # ------------------------------------------------------------------ internals

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if time.monotonic() < self._held_until:
            return
        while (self._writes or self._reads) and self._inflight < self._config.max_inflight:
            if not self._consensus.is_leader():
                self._fail_pending(
                    errors.NoLeader("this node lost leadership; retry on the leader")
                )
                return
            if self._wait_for_more():
                return
            writes = self._take_writes()
            reads, self._reads = self._reads, []
            self._last_size = len(writes) + len(reads)
            self._propose(writes, reads)

    def _wait_for_more(self) -> bool:
        """True while the next entry should wait for the callers of the last one: it carried
        several ops, fewer are queued now, and `group_wait_s` since it has not passed. A lone
        caller (one op per entry) never waits; every submit re-checks, so the entry goes as
        soon as enough ops are queued."""
        queued = len(self._writes) + len(self._reads)
        if self._last_size < 2 or queued >= self._last_size:
            return False
        wait = self._last_proposal + self._config.group_wait_s - time.monotonic()
        if wait <= 0:
            return False
        if self._wait_timer is None:
            self._wait_timer = self._loop.call_later(wait, self._waited)
        return True

    def _waited(self) -> None:
        self._wait_timer = None
        self._flush()

    def _take_writes(self) -> list[tuple[Write, Waiter]]:
        """The writes of the next entry: at most max_batch_ops, max_batch_bytes and
        max_batch_weight (a single op over a limit goes alone)."""
        config = self._config
        limit_ops, limit_bytes = config.max_batch_ops, config.max_batch_bytes
        if (
            self._write_calls <= limit_ops
            and self._write_bytes <= limit_bytes
            and self._write_weight <= config.max_batch_weight
        ):
            taken, self._writes = self._writes, []
            self._write_calls = self._write_bytes = self._write_weight = 0
            return taken
        calls = 0
        size = 0
        weight = 0
        count = 0
        for op, _ in self._writes[:limit_ops]:
            calls += calls_of(op)
            size += write_size(op)
            weight += op_weight(op)
            if count and (
                calls > limit_ops or size > limit_bytes or weight > config.max_batch_weight
            ):
                break
            count += 1
        taken, self._writes = self._writes[:count], self._writes[count:]
        self._write_calls = sum(calls_of(op) for op, _ in self._writes)
        self._write_bytes = sum(write_size(op) for op, _ in self._writes)
        self._write_weight = sum(op_weight(op) for op, _ in self._writes)
        return taken

    def _propose(
        self,
        writes: list[tuple[Write, Waiter]],
        reads: list[Waiter],
    ) -> None:
        command = command_pb2.Command(now_ms=self.now_ms())
        ops = command.ops
        try:
            shape, grouped = self._build(ops, writes)
        except Exception as bug:  # a call that cannot be built fails its entry, not the loop
            _log.exception("building an entry failed")
            for _, waiter in writes:
                if not waiter.done():
                    waiter.set_exception(bug)
            if reads:
                self._propose([], reads)
            return
        prelude = self._prelude(ops) if self._prelude is not None else []
        if prelude:  # an eviction goes first: rare (a memory limit, a full cache)
            command = command_pb2.Command(now_ms=command.now_ms)
            command.ops.extend(prelude)
            command.ops.extend(ops)
        batch = _Batch(writes, reads, prelude=len(prelude), shape=shape, grouped=grouped)
        self._lease_clock = 0  # a new stamp: reads after it check the clock again
        self._inflight += 1
        if command.ops:
            self._writing += 1
        self._last_proposal = batch.started = time.monotonic()
        self.batches_proposed += 1
        self.ops_proposed += sum(calls_of(op) for op, _ in writes)
        timeout = self._loop.call_later(
            self._config.commit_timeout_s, self._complete, batch, Outcome.UNKNOWN, "timeout"
        )

        def on_done(outcome: Outcome, result: Any) -> None:  # tick thread
            self._loop.call_soon_threadsafe(self._complete, batch, outcome, result, timeout)

        self._consensus.propose(commands.encode(command), on_done)

    def _build(
        self, ops: Any, writes: list[tuple[Write, Waiter]]
    ) -> tuple[list[list[bool] | None] | None, bool]:
        """Add the writes' ops to the entry. A run of two or more plain SETs (Redis `SET key
        value`, memcached's `set` with flags 0, no expiry, no CAS; queued one after another,
        or a QueuedSets) becomes one MSetOp, which every replica applies in one loop (~3 us
        less per SET on each, node/DESIGN.md "Set runs"), while `sets_fit` says it answers
        exactly as the SETs one by one would. Returns the entry's shape for `_unfold` (None
        when every call is one op) and whether a write is a QueuedSets (`_regroup`)."""
        runs = (
            self._set_runs(writes)
            # none in flight here (max_inflight above 1), none queued in the consensus or
            # left to apply in its log (one given up as unknown, a new leader's first
            # entries): an earlier entry could change the limit, the policy or
            # notifications, or fill the cache, before this one applies
            if self._sets_fit is not None and not self._inflight and self._applied_everything()
            else []
        )
        grouped = any(type(op) is QueuedSets for op, _ in writes)
        if not runs:
            for op, _ in writes:
                _add(ops, op)
            return None, grouped
        shape: list[list[bool] | None] = []
        at = 0
        for start, end, items in runs:
            for op, _ in writes[at:start]:
                shape.extend([None] * _add(ops, op))
            entries = ops.add().mset.entries
            for key, value, _ in items:
                entries.add(key=key, value=value)
            shape.append([memcached for _, _, memcached in items])
            self.set_run_writes += len(items)
            at = end
        for op, _ in writes[at:]:
            shape.extend([None] * _add(ops, op))
        return shape, grouped

    def _set_runs(
        self, writes: list[tuple[Write, Waiter]]
    ) -> list[tuple[int, int, list[tuple[bytes, bytes, bool]]]]:
        """(first write, end write, [(stored key, value, memcached)...]) of each run of two
        or more plain SETs in `writes`, or none: when the entry also changes a setting their
        answers depend on (the memory limit, keyspace notifications), or when `sets_fit`
        says they might not answer as they would one by one."""
        runs: list[tuple[int, int, list[tuple[bytes, bytes, bool]]]] = []
        run: list[tuple[bytes, bytes, bool]] = []
        first = 0  # the run's first write
        least = 0  # the plain SETs' bound as MSetOp counts it: a full cache is refused at once
        for i, (op, _) in enumerate(writes):
            if type(op) is QueuedSets:
                if not run:
                    first = i
                # plain SETs of unreserved keys (the front-end checked); `size` counts 3 bytes
                # of `SET` per call, a stored key has the db's prefix beyond db 0
                db, n = op.db, len(op.argvs)
                if db:
                    run += [(db_key(db, argv[1]), argv[2], False) for argv in op.argvs]
                else:
                    run += [(argv[1], argv[2], False) for argv in op.argvs]
                least += op.size + n * (KEY_OVERHEAD - 3 + (len(db_key(db, b"")) if db else 0))
                continue
            parts = plain_set_parts(op.argv) if type(op) is QueuedCall and not op.user else None
            if parts is not None and not parts[2] and parts[0][:5] != DB_PREFIX:
                if not run:
                    first = i
                key = db_key(op.db, parts[0])  # type: ignore[union-attr]
                run.append((key, parts[1], parts[3]))
                least += len(key) + len(parts[1]) + KEY_OVERHEAD
                continue
            if len(run) > 1:
                runs.append((first, i, run))
            run = []
        if len(run) > 1:
            runs.append((first, len(writes), run))
        if not runs or any(
            _changes_settings(op)  # a client's command is a QueuedCall, never CONFIG SET
            for op, _ in writes
            if not isinstance(op, (QueuedCall, QueuedSets))
        ):
            return []
        # Under a limit, the whole entry's bound (each write's, as one op each would be
        # counted: eviction's and apply's) must fit, so that no write of it, before or
        # after a run, is refused or evicts for it either way.
        if not self._sets_fit(  # type: ignore[misc]
            least,
            lambda: sum(op_growth(op) for write, _ in writes for op in _ops_of(write)),
        ):
            return []
        return runs

    def _complete(
        self,
        batch: _Batch,
        outcome: Outcome,
        result: Any,
        timeout: asyncio.TimerHandle | None = None,
    ) -> None:
        if timeout is not None:
            timeout.cancel()
        if batch.done:
            return
        batch.done = True
        self._lease_clock = 0  # the state changed: reads after it check the clock again
        self._inflight -= 1
        if batch.writes or batch.prelude:
            self._writing -= 1
        if outcome is Outcome.APPLIED:
            self.commit_durations.observe(time.monotonic() - batch.started)
            results = result[batch.prelude :]
            try:
                if batch.shape is not None:
                    results = _unfold(results, batch.shape)
                if batch.grouped:
                    results = _regroup(results, batch.writes)
                if len(results) != len(batch.writes):
                    raise ValueError(f"{len(results)} results for {len(batch.writes)} writes")
            except Exception as bug:  # every waiter must answer, not hang with the batch
                _log.exception("an entry's results do not match its writes")
                self._fail_batch(batch, Outcome.UNKNOWN, f"internal error: {bug}")
                self._schedule_flush()
                return
            for (_, future), op_result in zip(batch.writes, results, strict=True):
                if not future.done():
                    future.set_result(op_result)
            for read in batch.reads:
                if not read.done():
                    read.set_result(None)
        else:
            self._fail_batch(batch, outcome, result)
        self._schedule_flush()

    def _fail_batch(self, batch: _Batch, outcome: Outcome, reason: Any) -> None:
        self.batches_failed += 1
        if outcome is Outcome.NOT_APPLIED:
            write_error: errors.CacheError = errors.NoLeader(
                f"the write was not replicated (no leader, reason {reason}); it is safe to retry"
            )
        else:
            write_error = errors.OutcomeUnknown(
                f"the write may or may not have been applied ({reason}); "
                "retry with the same request id to find out"
            )
        read_error = errors.NoLeader(
            f"could not confirm leadership for a linearizable read ({reason}); retry"
        )
        for _, future in batch.writes:
            if not future.done():
                future.set_exception(write_error)
        for read in batch.reads:
            if not read.done():
                read.set_exception(read_error)

    def _fail_pending(self, error: errors.CacheError) -> None:
        writes, self._writes, self._write_bytes = self._writes, [], 0
        self._write_calls = self._write_weight = 0
        reads, self._reads = self._reads, []
        for _, future in writes:
            if not future.done():
                future.set_exception(error)
        for read in reads:
            if not read.done():
                read.set_exception(error)
