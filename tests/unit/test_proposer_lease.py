"""Proposer.barrier under a leader lease (consensus/lease.py): answered on the next loop turn
without a log entry while the lease holds, no write is queued or in flight and nothing is
due to expire; otherwise through a barrier entry as before."""

from __future__ import annotations

import asyncio

from raftcache.consensus import Outcome
from raftcache.node.proposer import Proposer, ProposerConfig
from raftcache.v1 import command_pb2

from tests.unit.test_proposer_group_wait import _Consensus as _Recorder
from tests.unit.test_proposer_group_wait import _op as _write
from tests.unit.test_proposer_group_wait import _turns


class _Consensus(_Recorder):
    """Records proposals (the test commits them) and holds a lease while `lease`."""

    def __init__(self) -> None:
        super().__init__()
        self.lease = True

    def lease_read_ok(self) -> bool:
        return self.lease

    def commit_all(self) -> None:
        for ops, callback in self.proposals:
            callback(Outcome.APPLIED, [None] * ops)
        self.proposals.clear()


class _Clock:
    """Applied cluster time 1,000; a key expires at `deadline`."""

    cluster_time_ms = 1_000

    def __init__(self) -> None:
        self.deadline = float("inf")
        self.asked: list[int] = []

    def expiry_quiet(self, now_ms: int) -> bool:
        self.asked.append(now_ms)
        return self.deadline > max(now_ms, self.cluster_time_ms)


def _setup(wall_ms: int = 1_010) -> tuple[_Consensus, _Clock, Proposer]:
    consensus, clock = _Consensus(), _Clock()
    proposer = Proposer(consensus, clock, ProposerConfig(group_wait_s=0), now_ms=lambda: wall_ms)
    return consensus, clock, proposer


def test_under_the_lease_a_read_needs_no_entry_and_answers_next_turn() -> None:
    async def run() -> None:
        consensus, clock, proposer = _setup()
        read = asyncio.get_running_loop().create_future()
        proposer.barrier(read)
        assert not read.done()  # never inside the call: callers do not expect it
        await _turns()
        # the result is the clock the read may run at: the stamp a barrier would carry
        assert read.done() and read.result() == 1_010
        assert consensus.proposals == [] and proposer.lease_reads == 1
        assert clock.asked == [1_010]  # checked against the leader's clock

    asyncio.run(run())


def test_without_the_lease_a_barrier_entry_answers() -> None:
    async def run() -> None:
        consensus, _, proposer = _setup()
        consensus.lease = False
        read = asyncio.get_running_loop().create_future()
        proposer.barrier(read)
        await _turns()
        assert not read.done() and len(consensus.proposals) == 1
        consensus.commit_all()
        await _turns()
        assert read.done() and read.result() is None and proposer.lease_reads == 0

    asyncio.run(run())


def test_a_deadline_between_cluster_time_and_the_clock_takes_the_barrier() -> None:
    async def run() -> None:
        consensus, clock, proposer = _setup(wall_ms=1_010)
        clock.deadline = 1_005  # live at cluster time 1,000, expired at the clock's 1,010
        read = asyncio.get_running_loop().create_future()
        proposer.barrier(read)
        await _turns()
        assert not read.done() and len(consensus.proposals) == 1  # stamps 1,010 into the log
        consensus.commit_all()
        await _turns()
        assert read.done()
        clock.deadline = 1_015  # due later than the clock: a lease read answers the same
        other = asyncio.get_running_loop().create_future()
        proposer.barrier(other)
        await _turns()
        assert other.done() and consensus.proposals == [] and proposer.lease_reads == 1

    asyncio.run(run())


def test_a_read_never_passes_a_write_queued_or_proposed_before_it() -> None:
    async def run() -> None:
        consensus, _, proposer = _setup()
        loop = asyncio.get_running_loop()
        write = loop.create_future()
        proposer.submit(_write(), write)
        read = loop.create_future()
        proposer.barrier(read)  # queued behind the write (a Batch: [set k, get k])
        await _turns()
        assert not read.done() and len(consensus.proposals) == 1
        assert consensus.proposals[0][0] == 1  # the write, the read waiting on its entry
        # Proposed and not applied yet (a pop a push woke): a read still waits for it.
        other = loop.create_future()
        proposer.barrier(other)
        await _turns()
        assert not other.done()
        consensus.commit_all()
        await _turns()
        assert write.done() and read.done() and proposer.lease_reads == 0
        await _turns()
        consensus.commit_all()  # the barrier entry `other` waited for
        await _turns()
        assert other.done()
        # Nothing queued or in flight: the lease answers.
        again = loop.create_future()
        proposer.barrier(again)
        await _turns()
        assert again.done() and proposer.lease_reads == 1

    asyncio.run(run())


def test_an_entry_of_reads_only_in_flight_does_not_stop_the_lease() -> None:
    # Otherwise every read that found one in flight would wait for the next, and the reads
    # queued meanwhile would propose another: barrier entries without end under load.
    async def run() -> None:
        consensus, _, proposer = _setup()
        loop = asyncio.get_running_loop()
        consensus.lease = False
        first = loop.create_future()
        proposer.barrier(first)
        await _turns()
        assert len(consensus.proposals) == 1 and consensus.proposals[0][0] == 0
        consensus.lease = True
        second = loop.create_future()
        proposer.barrier(second)
        await _turns()
        assert second.done() and not first.done() and len(consensus.proposals) == 1

    asyncio.run(run())


def test_a_write_that_failed_or_timed_out_stops_holding_reads_back() -> None:
    async def run() -> None:
        consensus, _, proposer = _setup()
        loop = asyncio.get_running_loop()
        write = loop.create_future()
        proposer.submit(_write(), write)
        await _turns()
        _, callback = consensus.proposals.pop()
        callback(Outcome.NOT_APPLIED, "no leader")
        await _turns()
        assert write.exception() is not None
        read = loop.create_future()
        proposer.barrier(read)
        await _turns()
        assert read.done() and proposer.lease_reads == 1 and consensus.proposals == []

    asyncio.run(run())


def test_an_entry_carrying_only_evictions_counts_as_a_write() -> None:
    async def run() -> None:
        consensus, clock = _Consensus(), _Clock()
        evict = command_pb2.Op()
        evict.delete.key = b"victim"
        proposer = Proposer(
            consensus,
            clock,
            ProposerConfig(group_wait_s=0),
            now_ms=lambda: 1_010,
            prelude=lambda ops: [evict],  # the evictor puts a delete in front of every entry
        )
        loop = asyncio.get_running_loop()
        consensus.lease = False
        first = loop.create_future()
        proposer.barrier(first)  # an entry of no client write, but an eviction in front
        await _turns()
        assert [ops for ops, _ in consensus.proposals] == [1]
        consensus.lease = True
        second = loop.create_future()
        proposer.barrier(second)
        await _turns()
        assert not second.done()  # behind the eviction in flight
        consensus.commit_all()
        await _turns()
        assert first.done()

    asyncio.run(run())


def test_a_cluster_time_far_behind_the_clock_takes_the_barrier() -> None:
    # After a failover the applied cluster time is the old leader's last stamp: a TTL read
    # there would count from it. The barrier's entry stamps this leader's clock.
    async def run() -> None:
        consensus, clock, proposer = _setup(wall_ms=1_500)
        read = asyncio.get_running_loop().create_future()
        proposer.barrier(read)
        await _turns()
        assert not read.done() and len(consensus.proposals) == 1
        consensus.commit_all()
        clock.cluster_time_ms = 1_500  # what applying the barrier's stamp does
        await _turns()
        again = asyncio.get_running_loop().create_future()
        proposer.barrier(again)
        await _turns()
        assert read.done() and again.done() and proposer.lease_reads == 1

    asyncio.run(run())


def _moving_clock() -> tuple[list[int], _Consensus, _Clock, Proposer]:
    """_setup with a leader clock the test moves: wall[0] (ms)."""
    wall = [1_010]
    consensus, clock = _Consensus(), _Clock()
    proposer = Proposer(consensus, clock, ProposerConfig(group_wait_s=0), now_ms=lambda: wall[0])
    return wall, consensus, clock, proposer


def test_the_reads_of_one_turn_share_the_clock_the_first_was_checked_at() -> None:
    async def run() -> None:
        wall, _, clock, proposer = _moving_clock()
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        proposer.barrier(first)
        wall[0] = 1_012  # the clock moved on between the two reads of one turn
        proposer.barrier(second)
        assert clock.asked == [1_010]  # the second read did not check the clock again
        await _turns()
        assert first.result() == second.result() == 1_010 and proposer.lease_reads == 2
        # A new turn checks again, at the clock as it is then.
        third = loop.create_future()
        proposer.barrier(third)
        await _turns()
        assert third.result() == 1_012 and clock.asked == [1_010, 1_012]

    asyncio.run(run())


def test_a_shared_clock_still_needs_the_lease_and_ends_with_a_proposal() -> None:
    async def run() -> None:
        wall, consensus, clock, proposer = _moving_clock()
        loop = asyncio.get_running_loop()
        first = loop.create_future()
        proposer.barrier(first)
        consensus.lease = False  # lost within the turn: the next read takes the barrier
        lost = loop.create_future()
        proposer.barrier(lost)
        consensus.lease = True
        # A proposal (here a tick's empty entry) carries a later stamp: reads after it in
        # the same turn check the clock again, so none reads before a stamp in the log.
        wall[0] = 1_020
        proposer._propose([], [])
        clock.deadline = 1_015  # a key due between cluster time and the new clock
        after = loop.create_future()
        proposer.barrier(after)
        await _turns()
        assert first.result() == 1_010 and not lost.done() and not after.done()
        assert clock.asked == [1_010, 1_020] and proposer.lease_reads == 1

    asyncio.run(run())


def test_a_wall_clock_stepped_back_never_runs_a_later_read_earlier() -> None:
    async def run() -> None:
        wall, _, _, proposer = _moving_clock()
        loop = asyncio.get_running_loop()
        first = loop.create_future()
        proposer.barrier(first)
        await _turns()
        wall[0] = 1_004  # an NTP step back between two turns
        second = loop.create_future()
        proposer.barrier(second)
        await _turns()
        assert first.result() == 1_010 and second.result() == 1_010

    asyncio.run(run())


def test_a_clock_half_the_bound_behind_is_ticked_forward_while_reads_go_on() -> None:
    # Under a read load nothing else proposes: without this tick the cluster time fell
    # past the 50 ms bound every 50 ms, and the reads that found it so waited a Raft round
    # (a pipeline of 500 GETs on a slow host: 170 of them).
    async def run() -> None:
        wall, consensus, clock, proposer = _moving_clock()
        loop = asyncio.get_running_loop()
        wall[0] = 1_025  # 25 ms behind: half the bound, not more
        near = loop.create_future()
        proposer.barrier(near)
        await _turns()
        assert near.result() == 1_025 and consensus.proposals == []
        wall[0] = 1_030  # more than half: the read is answered and the clock is stamped
        reads = [loop.create_future() for _ in range(3)]
        for read in reads:
            proposer.barrier(read)
        await _turns()
        assert [r.result() for r in reads] == [1_030] * 3 and proposer.lease_reads == 4
        assert [ops for ops, _ in consensus.proposals] == [0]  # one tick, no ops
        # While it is in flight, reads go on under the lease and propose no second tick.
        wall[0] = 1_040
        during = loop.create_future()
        proposer.barrier(during)
        await _turns()
        assert during.result() == 1_040 and len(consensus.proposals) == 1
        consensus.commit_all()
        clock.cluster_time_ms = 1_030  # what applying the tick's stamp does
        await _turns()
        wall[0] = 1_050
        after = loop.create_future()
        proposer.barrier(after)
        await _turns()
        assert after.result() == 1_050 and consensus.proposals == []

    asyncio.run(run())


def test_no_clock_tick_while_held_for_a_transfer() -> None:
    async def run() -> None:
        wall, consensus, _, proposer = _moving_clock()
        proposer.hold(5.0)
        wall[0] = 1_040
        read = asyncio.get_running_loop().create_future()
        proposer.barrier(read)
        await _turns()
        assert read.result() == 1_040 and consensus.proposals == []
        proposer.release()

    asyncio.run(run())
