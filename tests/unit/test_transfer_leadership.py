"""Cluster.TransferLeadership: a transfer whose election fails is asked again.

A CI run (tests/integration/test_membership.py) saw the target of a transfer stand in
term 2 without a majority for an election timeout; the old leader's pre-vote then won term
3, and the RPC waited out its 5 s with leadership back where it started. The servicer now
asks again while its time lasts; it still reports a leader that is not the target, or no
move at all, as an unknown outcome.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from raftcache.consensus import Role
from raftcache.node import errors
from raftcache.node.servicers import ClusterServicer
from raftcache.v1 import cluster_pb2

from tests.unit.grpc_fakes import Aborted, FakeContext

SELF, TARGET, OTHER = "127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"


class ScriptedRaft:
    """Each transfer attempt ends with the next leader of `outcomes` (None: no leader)."""

    def __init__(self, outcomes: list[str | None]) -> None:
        self.outcomes = outcomes
        self.leader: str | None = SELF
        self.config = SimpleNamespace(self_addr=SELF)
        self.asked: list[str | None] = []

    def is_leader(self) -> bool:
        return self.leader == SELF

    def status(self) -> Any:
        role = Role.LEADER if self.is_leader() else Role.FOLLOWER
        return SimpleNamespace(members=(SELF, TARGET, OTHER), leader=self.leader, role=role)

    def transfer_leadership(self, target: str | None) -> None:
        self.asked.append(target)


class ScriptedProposer:
    """hand_over as the real one behaves: asks for the transfer, returns once this node no
    longer leads; the election then ends with the raft's next scripted leader."""

    def __init__(self, raft: ScriptedRaft) -> None:
        self.raft = raft
        self.hand_overs: list[float] = []

    async def hand_over(self, transfer: Any, seconds: float) -> None:
        self.hand_overs.append(seconds)
        transfer()
        raft = self.raft
        raft.leader = None  # the target's election is under way

        async def elected() -> None:
            await asyncio.sleep(0.05)
            raft.leader = raft.outcomes.pop(0) if raft.outcomes else SELF

        asyncio.get_running_loop().create_task(elected())


class StuckProposer(ScriptedProposer):
    """A target that never stands: hand_over asks every 250 ms for all its time, as the
    real one does while this node keeps leading."""

    async def hand_over(self, transfer: Any, seconds: float) -> None:
        self.hand_overs.append(seconds)
        deadline = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < deadline:
            transfer()
            await asyncio.sleep(0.25)


def transfer(
    raft: ScriptedRaft, timeout_s: float = 2.0, proposer_class: type = ScriptedProposer
) -> tuple[Any, FakeContext, list[float]]:
    view = SimpleNamespace(
        raft=raft,
        node_id="n1",
        replica=SimpleNamespace(members=dict),
        not_leader=lambda: errors.NotLeader("this node is not the leader", ""),
    )
    proposer = proposer_class(raft)
    servicer = ClusterServicer(view, None, proposer)  # type: ignore[arg-type]
    context = FakeContext()
    request = cluster_pb2.TransferLeadershipRequest(target=TARGET, timeout_s=timeout_s)

    async def run() -> Any:
        try:
            return await servicer.TransferLeadership(request, context)
        except Aborted:
            return None

    return asyncio.run(run()), context, proposer.hand_overs


def test_a_failed_transfer_election_is_asked_again_until_the_target_leads() -> None:
    raft = ScriptedRaft([SELF, SELF, TARGET])  # two elections come back here, the third moves
    response, context, hand_overs = transfer(raft)
    assert context.code is None, context.details
    assert response.leader_raft_addr == TARGET
    assert raft.asked == [TARGET, TARGET, TARGET]
    assert len(hand_overs) == 3 and hand_overs[0] > hand_overs[-1] > 0  # the time left


def test_leadership_that_never_moves_is_an_unknown_outcome_at_the_deadline() -> None:
    raft = ScriptedRaft([])  # every election comes back here
    response, context, _ = transfer(raft, timeout_s=0.5)
    assert response is None
    assert context.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert f"did not move to {TARGET}" in context.details  # its last election may be under way
    assert len(raft.asked) >= 3  # asked again while time was left, not once


@pytest.mark.parametrize("winner", [OTHER, None])
def test_leadership_that_went_elsewhere_is_not_asked_again(winner: str | None) -> None:
    raft = ScriptedRaft([winner] * 100)
    response, context, _ = transfer(raft, timeout_s=0.5)
    assert response is None
    assert context.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert raft.asked == [TARGET]  # this node no longer leads: nothing it can ask


def test_a_target_that_never_stands_is_an_unknown_outcome_after_one_long_attempt() -> None:
    raft = ScriptedRaft([])
    response, context, hand_overs = transfer(raft, timeout_s=0.6, proposer_class=StuckProposer)
    assert response is None
    assert context.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert f"now {SELF}" in context.details  # it still leads, and says so
    assert len(hand_overs) == 1 and len(raft.asked) >= 2  # asked on, within one hold
