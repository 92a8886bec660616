"""Cluster.AddMember/RemoveMember: how the outcome of a membership change is reported.

Refused -> FAILED_PRECONDITION with the reason; the node lost leadership meanwhile ->
UNAVAILABLE (NotLeader); the outcome unknown (LEADER_CHANGED, DISCARDED, no answer) ->
DEADLINE_EXCEEDED saying it is unknown, with the membership as it now looks: never success.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from raftcache.consensus import Outcome
from raftcache.node import errors
from raftcache.node.servicers import ClusterServicer
from raftcache.v1 import cluster_pb2

from tests.unit.grpc_fakes import Aborted, FakeContext


class FakeRaft:
    def __init__(self, outcome: Outcome, detail: str, *, still_leader: bool = True) -> None:
        self.outcome, self.detail = outcome, detail
        self.leader = True
        self.still_leader = still_leader
        self.config = SimpleNamespace(self_addr="127.0.0.1:7001")
        self.asked: list[tuple[str, str]] = []

    def is_leader(self) -> bool:
        return self.leader

    def status(self) -> Any:
        return SimpleNamespace(members=("127.0.0.1:7001", "127.0.0.1:7002"), commit_index=9)

    def member_health(self) -> list[Any]:
        return []

    def pending_change(self) -> str:
        return ""

    def change_membership(self, kind: str, address: str, callback: Any) -> None:
        self.asked.append((kind, address))
        self.leader = self.still_leader

        # as pysyncobj would: from the tick thread
        threading.Thread(target=callback, args=(self.outcome, self.detail)).start()


def servicer(raft: FakeRaft) -> ClusterServicer:
    view = SimpleNamespace(
        raft=raft,
        node_id="n1",
        advertise="127.0.0.1:6001",
        replica=SimpleNamespace(members=dict),
        not_leader=lambda: errors.NotLeader("this node is not the leader", "127.0.0.1:6002"),
    )
    return ClusterServicer(view, None, None)  # type: ignore[arg-type]


def add(raft: FakeRaft) -> FakeContext:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    context = FakeContext()

    async def run() -> None:
        with pytest.raises(Aborted):
            await servicer(raft).AddMember(cluster_pb2.AddMemberRequest(raft_addr=address), context)

    try:
        asyncio.run(run())
    finally:
        listener.close()
    assert raft.asked == [("add", address)]
    return context


@pytest.mark.parametrize("reason", ["LEADER_CHANGED", "DISCARDED", "NOT_LEADER"])
def test_an_unknown_outcome_is_reported_as_unknown_with_the_membership(reason: str) -> None:
    context = add(FakeRaft(Outcome.UNKNOWN, reason))
    assert context.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "is unknown" in context.details and reason in context.details
    assert "127.0.0.1:7001, 127.0.0.1:7002" in context.details  # what it looks like now
    assert "member list" in context.details


def test_a_refusal_says_why() -> None:
    context = add(FakeRaft(Outcome.NOT_APPLIED, "another membership change is in progress"))
    assert context.code == grpc.StatusCode.FAILED_PRECONDITION
    assert context.details == "refused: another membership change is in progress"


def test_not_appended_after_losing_leadership_points_to_the_leader() -> None:
    context = add(FakeRaft(Outcome.NOT_APPLIED, "this node is not the leader", still_leader=False))
    assert context.code == grpc.StatusCode.UNAVAILABLE
