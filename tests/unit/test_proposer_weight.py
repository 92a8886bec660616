"""The proposer's apply-cost cap: an entry carries at most max_batch_weight of work, a Lua
script or function call weighing SCRIPT_WEIGHT and any other op 1, so a pipeline of scripts
cannot make one entry whose apply stalls the Raft thread past the election timeout."""

from __future__ import annotations

import asyncio

from raftcache.node.engine import call_op
from raftcache.node.proposer import SCRIPT_WEIGHT, ProposerConfig, op_weight
from raftcache.v1 import command_pb2

from tests.unit.test_proposer_group_wait import _Clock, _Consensus, _op, _turns


def _script() -> command_pb2.Op:
    return call_op([b"EVAL", b"return 1", b"0"], 0)


def test_weights() -> None:
    assert op_weight(_op()) == 1
    assert op_weight(call_op([b"SET", b"k", b"v"], 0)) == 1
    for name in (b"eval", b"EVALSHA", b"fcall", b"FCALL_RO", b"function"):
        assert op_weight(call_op([name, b"x", b"0"], 0)) == SCRIPT_WEIGHT
    txn = command_pb2.Op()
    for argv in ([b"EVAL", b"return 1", b"0"], [b"SET", b"k", b"v"]):
        call = txn.txn.success.add().op.call
        call.argv.extend(argv)
    assert op_weight(txn) == SCRIPT_WEIGHT + 1


def test_a_pipeline_of_scripts_is_cut_into_entries_of_bounded_weight() -> None:
    from raftcache.node.proposer import Proposer

    async def run() -> None:
        consensus = _Consensus()
        config = ProposerConfig(group_wait_s=0.0, max_batch_weight=4 * SCRIPT_WEIGHT)
        proposer = Proposer(consensus, _Clock(), config)
        writes = [asyncio.ensure_future(proposer.write(_script())) for _ in range(10)]
        writes += [asyncio.ensure_future(proposer.write(_op())) for _ in range(3)]
        await _turns()
        for _ in range(5):
            if all(w.done() for w in writes):
                break
            consensus.commit_last()
            await _turns()
        await asyncio.gather(*writes)
        sizes = [ops for ops, _ in consensus.proposals]
        # 4 scripts, 4 scripts, then 2 scripts with the 3 plain ops (2*64 + 3 <= 256)
        assert sizes == [4, 4, 5]

    asyncio.run(run())


def test_one_op_heavier_than_the_cap_still_goes_alone() -> None:
    from raftcache.node.proposer import Proposer

    async def run() -> None:
        consensus = _Consensus()
        config = ProposerConfig(group_wait_s=0.0, max_batch_weight=10)
        proposer = Proposer(consensus, _Clock(), config)
        writes = [asyncio.ensure_future(proposer.write(_script())) for _ in range(2)]
        await _turns()
        assert [ops for ops, _ in consensus.proposals] == [1]
        consensus.commit_last()
        await _turns()
        assert [ops for ops, _ in consensus.proposals] == [1, 1]
        consensus.commit_last()
        await asyncio.gather(*writes)

    asyncio.run(run())
