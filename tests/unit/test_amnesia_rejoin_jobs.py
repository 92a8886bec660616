"""The leader's side of an amnesia rejoin (consensus/raft.py `_Amnesia`): the intent is
recorded in the replicated state before the removal, so that a later leader re-adds a node
whose leader failed between the removal and the re-add (a CI run's fresh cluster never got
ready: its slow bootstrap member was removed and never re-added), and an operator's removal
is not undone.

The node and pysyncobj are fakes: each proposal and membership change is recorded and its
outcome given by the test, as the tick thread would deliver it."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from raftcache.consensus.raft import Outcome, Role, _Amnesia
from raftcache.node import commands
from raftcache.node.engine import call_op
from raftcache.node.errors import InvalidInput
from raftcache.node.keyspace import rejoin
from raftcache.node.replica import RejoinIntents, Replica
from raftcache.node.requests import Limits, check_call
from raftcache.node.state_machine import StateMachine
from raftcache.v1 import cache_pb2, command_pb2

from tests.unit.redis_harness import Redis

# NODE's Raft port answers (a leader re-adds only a pending node that is up); DEAD's does not:
# a socket bound but never listening refuses connections and keeps the port for the whole
# run (a port closed at collection time was taken by another listener minutes later in CI,
# and the "dead" node answered).
_LISTENER = socket.create_server(("127.0.0.1", 0))
NODE = f"127.0.0.1:{_LISTENER.getsockname()[1]}"
_BOUND = socket.socket()
_BOUND.bind(("127.0.0.1", 0))
DEAD = f"127.0.0.1:{_BOUND.getsockname()[1]}"
LEADER, OTHER = "127.0.0.1:7001", "127.0.0.1:7003"
T0 = time.monotonic()


@dataclass
class Intents:
    """consensus.RejoinIntents: proposals are ('pending'|'clear', address); applying one is
    the test's `apply`."""

    addresses: set[str] = field(default_factory=set)

    def pending(self) -> frozenset[str]:
        return frozenset(self.addresses)

    def command(self, address: str, pending: bool) -> bytes:
        return f"{'pending' if pending else 'clear'} {address}".encode()

    def apply(self, data: bytes) -> None:
        verb, address = data.decode().split()
        (self.addresses.add if verb == "pending" else self.addresses.discard)(address)


@dataclass
class FakeNode:
    members: tuple[str, ...] = (LEADER, NODE, OTHER)
    role: Role = Role.LEADER
    rejoin_intents: Intents | None = field(default_factory=Intents)
    calls: list[tuple[str, Any]] = field(default_factory=list)  # (what, callback)
    config: Any = field(
        default_factory=lambda: SimpleNamespace(
            identity_dir=None, self_addr=LEADER, read_replica=False, joining=False
        )
    )

    def status(self) -> Any:
        return SimpleNamespace(role=self.role, members=self.members)

    def propose(self, data: bytes, callback: Any) -> None:
        self.calls.append((data.decode(), callback))

    def change_membership(self, kind: str, address: str, callback: Any, **kw: Any) -> None:
        assert kw == {"operator": False}, "a rejoin's own removal must not clear its intent"
        self.calls.append((f"{kind} {address}", callback))

    def finish(self, expected: str, outcome: Outcome = Outcome.APPLIED) -> None:
        """The oldest outstanding call is `expected`; it completes with `outcome`."""
        what, callback = self.calls.pop(0)
        assert what == expected, (what, expected)
        if outcome is Outcome.APPLIED:
            if what.startswith(("pending", "clear")):
                assert self.rejoin_intents is not None
                self.rejoin_intents.apply(what.encode())
            elif what.startswith("remove"):
                self.members = tuple(m for m in self.members if m != what.split()[1])
            else:
                self.members = (*self.members, what.split()[1])
        callback(outcome, "")


@dataclass
class FakeSyncObj:
    raftCurrentTerm: int = 3
    raftCommitIndex: int = 40
    voting: bool = True
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._SyncObj__otherNodes = [SimpleNamespace(address=NODE), SimpleNamespace(address=OTHER)]
        self._SyncObj__transport = SimpleNamespace(
            send=lambda n, m: self.sent.append((n.address, m))
        )


def leader(node: FakeNode) -> tuple[_Amnesia, FakeSyncObj]:
    so = FakeSyncObj()
    return _Amnesia(node, so), so  # type: ignore[arg-type]


def ticks(amnesia: _Amnesia, at: float, n: int = 3) -> None:
    """`n` ticks `at` seconds after the test began (job times are monotonic times)."""
    for k in range(n):
        amnesia.tick(T0 + at + k * 0.01)


def swept(amnesia: _Amnesia, at: float) -> None:
    """A sweep at `at` probes the pending nodes; wait for the probes; sweep again."""
    ticks(amnesia, at, n=1)
    deadline = time.monotonic() + 3
    while amnesia._probing_now and time.monotonic() < deadline:
        time.sleep(0.01)
    ticks(amnesia, at + 1.1, n=1)


def test_the_intent_is_recorded_before_the_removal_and_cleared_after_the_re_add() -> None:
    node = FakeNode()
    amnesia, so = leader(node)
    so.on_rejoin_request(SimpleNamespace(address=NODE), "token-1")  # type: ignore[attr-defined]
    ticks(amnesia, 0.0)
    node.finish(f"pending {NODE}")
    ticks(amnesia, 0.1)
    node.finish(f"remove {NODE}")
    ticks(amnesia, 0.2)
    so.raftCommitIndex = 57
    node.finish(f"add {NODE}")
    assert so.sent == [(NODE, {"type": "rejoined", "index": 57})]
    ticks(amnesia, 0.3)
    node.finish(f"clear {NODE}")
    ticks(amnesia, 200.0)
    assert node.calls == [] and node.rejoin_intents is not None
    assert node.rejoin_intents.pending() == frozenset()


def test_a_new_leader_re_adds_a_pending_node_its_predecessor_removed() -> None:
    """The old leader recorded the intent and removed NODE, then failed."""
    node = FakeNode(members=(LEADER, OTHER), rejoin_intents=Intents({NODE}))
    amnesia, so = leader(node)
    swept(amnesia, 0.0)
    node.finish(f"add {NODE}")
    assert so.sent == [], "the node is told nothing: it asks again and is re-added once more"
    ticks(amnesia, 2.5)
    node.finish(f"clear {NODE}")
    # it asks this leader (a new token): the whole cycle once more, intent first
    so.on_rejoin_request(SimpleNamespace(address=NODE), "token-2")  # type: ignore[attr-defined]
    ticks(amnesia, 3.0)
    node.finish(f"pending {NODE}")


def test_a_pending_node_that_is_down_is_not_re_added() -> None:
    node = FakeNode(members=(LEADER, OTHER), rejoin_intents=Intents({DEAD}))
    amnesia, _ = leader(node)
    swept(amnesia, 0.0)
    swept(amnesia, 2.5)
    assert node.calls == [], "a dead node would cost the cluster a voter's fault tolerance"


def test_a_new_request_keeps_its_intent_against_an_older_jobs_clear() -> None:
    """A sweep's re-add is done; the node asks again before that job cleared the intent:
    the old job leaves the intent alone, and a removal always follows a recorded intent."""
    node = FakeNode(members=(LEADER, OTHER), rejoin_intents=Intents({NODE}))
    amnesia, so = leader(node)
    swept(amnesia, 0.0)
    node.finish(f"add {NODE}")
    so.on_rejoin_request(SimpleNamespace(address=NODE), "token-2")  # type: ignore[attr-defined]
    ticks(amnesia, 2.5, n=1)
    assert [what for what, _ in node.calls] == [f"pending {NODE}"], "no clear meanwhile"
    node.finish(f"pending {NODE}")
    assert node.rejoin_intents is not None
    node.rejoin_intents.addresses.clear()  # an intent lost anyhow before the removal
    ticks(amnesia, 4.0, n=1)
    assert [what for what, _ in node.calls] == [f"pending {NODE}"], "recorded again first"


def test_a_refused_re_add_is_retried_and_a_pending_voter_is_left_alone() -> None:
    node = FakeNode(members=(LEADER, OTHER), rejoin_intents=Intents({NODE, OTHER}))
    amnesia, _ = leader(node)
    swept(amnesia, 0.0)
    node.finish(f"add {NODE}", Outcome.NOT_APPLIED)  # a voter catching up, say
    ticks(amnesia, 1.5)
    assert node.calls == [], "retried after a pause, not every tick"
    ticks(amnesia, 2.2)
    node.finish(f"add {NODE}")  # OTHER is pending but a voter: nothing to re-add


def test_only_the_leader_acts_and_a_deposed_leader_drops_its_jobs() -> None:
    node = FakeNode(members=(LEADER, OTHER), rejoin_intents=Intents({NODE}), role=Role.FOLLOWER)
    amnesia, so = leader(node)
    ticks(amnesia, 0.0)
    assert node.calls == []
    node.role = Role.LEADER
    so.on_rejoin_request(SimpleNamespace(address=OTHER), "t")  # type: ignore[attr-defined]
    swept(amnesia, 1.0)
    assert sorted(what for what, _ in node.calls) == sorted([f"add {NODE}", f"pending {OTHER}"])
    node.role = Role.FOLLOWER
    node.calls.clear()
    ticks(amnesia, 10.0)
    assert node.calls == []


def test_forget_drops_the_job_an_operator_removal_overrides() -> None:
    node = FakeNode()
    amnesia, so = leader(node)
    so.on_rejoin_request(SimpleNamespace(address=NODE), "token-1")  # type: ignore[attr-defined]
    assert amnesia.forget(NODE) and not amnesia.forget(NODE)
    ticks(amnesia, 0.0)
    assert node.calls == []
    # until the operator's clear applies, the sweep keeps off the address
    node.members = (LEADER, OTHER)
    assert node.rejoin_intents is not None
    node.rejoin_intents.addresses.add(NODE)
    swept(amnesia, 1.0)
    assert node.calls == []


def test_without_intents_the_rejoin_starts_at_the_removal() -> None:
    node = FakeNode(rejoin_intents=None)
    amnesia, so = leader(node)
    so.on_rejoin_request(SimpleNamespace(address=NODE), "token-1")  # type: ignore[attr-defined]
    ticks(amnesia, 0.0)
    node.finish(f"remove {NODE}")
    ticks(amnesia, 0.1)
    node.finish(f"add {NODE}")
    assert so.sent == [(NODE, {"type": "rejoined", "index": 40})]


def test_the_pending_re_adds_are_replicated_state_hidden_from_clients() -> None:
    r = Redis()
    assert r("raftcache.rejoin.pending", NODE) == 1
    assert r("raftcache.rejoin.pending", NODE) == 0  # idempotent: a new leader may repeat it
    assert r("raftcache.rejoin.pending", OTHER) == 1
    assert rejoin.read_pending(r.sm) == {NODE, OTHER}
    assert r("DBSIZE") == 0 and r("KEYS", "*") == []  # an internal database
    r("FLUSHALL")
    restored = StateMachine.restore(r.sm.export_meta(), r.sm.export_items())  # a snapshot
    assert rejoin.read_pending(restored) == {NODE, OTHER}
    assert r("raftcache.rejoin.clear", NODE) == 1
    assert r("raftcache.rejoin.clear", NODE) == 0
    assert rejoin.read_pending(r.sm) == {OTHER}
    assert r("raftcache.rejoin.clear", OTHER) == 1
    assert rejoin.read_pending(r.sm) == frozenset()


@pytest.mark.parametrize("name", [b"raftcache.rejoin.pending", b"RAFTCACHE.REJOIN.CLEAR"])
def test_a_client_cannot_send_the_rejoin_plumbing(name: bytes) -> None:
    call = cache_pb2.RedisCall(argv=[name, NODE.encode()])
    with pytest.raises(InvalidInput, match="the nodes' own plumbing"):
        check_call(call, Limits())


def test_the_replica_encodes_intents_the_state_machine_applies() -> None:
    replica = Replica()
    intents = RejoinIntents(replica)
    replica.apply(intents.command(NODE, True))
    assert intents.pending() == {NODE}
    replica.apply(intents.command(NODE, False))
    assert intents.pending() == frozenset()


def test_a_pending_rejoin_is_not_counted_as_a_key() -> None:
    """Status.keys and raftcache_items count what clients stored: a pending rejoin made a
    wiped node's catch-up test read 601 keys for 600 until it was cleared (a CI run)."""
    replica = Replica()
    command = command_pb2.Command(now_ms=1_000)
    command.ops.extend([call_op([b"set", b"k", b"v"], 0), call_op([b"set", b"k", b"v"], 3)])
    replica.apply(commands.encode(command))
    replica.apply(RejoinIntents(replica).command(NODE, True))
    assert len(replica.state) == 3  # the record is stored (snapshots and digests carry it)
    assert replica.key_count() == 2
