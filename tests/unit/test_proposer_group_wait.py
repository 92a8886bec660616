"""The proposer's group-commit wait: after an entry that carried several ops, the next entry
waits (up to group_wait_s) for as many ops; a lone caller never waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from raftcache.consensus import Outcome
from raftcache.node import commands
from raftcache.node.proposer import Proposer, ProposerConfig
from raftcache.v1 import command_pb2


class _Consensus:
    """Records proposals; the test commits them."""

    def __init__(self) -> None:
        self.proposals: list[tuple[int, Callable[[Outcome, Any], None]]] = []

    def propose(self, data: bytes, callback: Callable[[Outcome, Any], None]) -> None:
        self.proposals.append((len(commands.decode(data).ops), callback))

    def is_leader(self) -> bool:
        return True

    def commit_last(self) -> None:
        ops, callback = self.proposals[-1]
        callback(Outcome.APPLIED, [None] * ops)


class _Clock:
    cluster_time_ms = 0


def _op() -> command_pb2.Op:
    op = command_pb2.Op()
    op.set.key, op.set.value = b"k", b"v"
    return op


async def _turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def _proposer(consensus: _Consensus, wait_s: float) -> Proposer:
    return Proposer(consensus, _Clock(), ProposerConfig(group_wait_s=wait_s))


def test_a_lone_caller_never_waits() -> None:
    async def run() -> None:
        consensus = _Consensus()
        proposer = _proposer(consensus, wait_s=60.0)
        for i in range(3):
            write = asyncio.ensure_future(proposer.write(_op()))
            await _turns()
            assert len(consensus.proposals) == i + 1
            consensus.commit_last()
            await write

    asyncio.run(run())


def test_after_a_shared_entry_the_next_waits_for_as_many_ops() -> None:
    async def run() -> None:
        consensus = _Consensus()
        proposer = _proposer(consensus, wait_s=60.0)
        first = [asyncio.ensure_future(proposer.write(_op())) for _ in range(3)]
        await _turns()
        assert [ops for ops, _ in consensus.proposals] == [3]
        consensus.commit_last()
        await asyncio.gather(*first)
        second = [asyncio.ensure_future(proposer.write(_op())) for _ in range(2)]
        await _turns()
        assert len(consensus.proposals) == 1  # waiting for a third op
        second.append(asyncio.ensure_future(proposer.write(_op())))
        await _turns()
        assert [ops for ops, _ in consensus.proposals] == [3, 3]
        consensus.commit_last()
        await asyncio.gather(*second)

    asyncio.run(run())


def test_the_wait_ends_after_group_wait_s() -> None:
    async def run() -> None:
        consensus = _Consensus()
        proposer = _proposer(consensus, wait_s=0.05)
        first = [asyncio.ensure_future(proposer.write(_op())) for _ in range(4)]
        await _turns()
        consensus.commit_last()
        await asyncio.gather(*first)
        lone = asyncio.ensure_future(proposer.write(_op()))
        await _turns()
        assert len(consensus.proposals) == 1
        await asyncio.sleep(0.1)
        assert [ops for ops, _ in consensus.proposals] == [4, 1]
        consensus.commit_last()
        await lone
        # That entry carried one op: the next lone caller goes at once.
        again = asyncio.ensure_future(proposer.write(_op()))
        await _turns()
        assert len(consensus.proposals) == 3
        consensus.commit_last()
        await again

    asyncio.run(run())


def test_zero_turns_the_wait_off() -> None:
    async def run() -> None:
        consensus = _Consensus()
        proposer = _proposer(consensus, wait_s=0.0)
        first = [asyncio.ensure_future(proposer.write(_op())) for _ in range(4)]
        await _turns()
        consensus.commit_last()
        await asyncio.gather(*first)
        lone = asyncio.ensure_future(proposer.write(_op()))
        await _turns()
        assert [ops for ops, _ in consensus.proposals] == [4, 1]
        consensus.commit_last()
        await lone

    asyncio.run(run())
