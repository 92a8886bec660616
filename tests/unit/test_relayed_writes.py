"""A follower's relayed writes across a failover (node/engine.py `_relayed_write`): each
carries a request id of the node's own, a relay whose outcome is unknown is sent again
with the same id, and the state machine answers such a retry from memory and forgets what
the follower says it no longer needs (`done_below`). The integration test is
tests/integration/test_redis_failover.py (a leader SIGKILLed under writes through a
follower: no client error, every element once)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from raftcache.node import engine as engine_module
from raftcache.node import errors
from raftcache.node.engine import Engine, call_op
from raftcache.node.requests import Limits, exec_op
from raftcache.node.responses import reply_to_proto
from raftcache.node.state_machine import Failure, StateMachine, Value
from raftcache.v1 import cache_pb2, command_pb2


class Forwarder:
    """Answers each relay with the next scripted outcome (an exception or a reply)."""

    def __init__(self, *outcomes: Any) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[cache_pb2.RequestId] = []

    async def relay(self, _leader: str, method: str, request: Any, *_: Any) -> Any:
        rid = cache_pb2.RequestId()
        rid.CopyFrom(request.request_id)
        self.sent.append(rid)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        response = cache_pb2.ExecResponse()
        response.value.reply.CopyFrom(reply_to_proto(outcome))
        return response


class Proposer:
    """Not the leader until told; records what it is asked to propose."""

    def __init__(self) -> None:
        self.leading = False
        self.proposed: list[command_pb2.Op] = []

    def is_leader(self) -> bool:
        return self.leading

    async def write(self, op: command_pb2.Op) -> Value:
        self.proposed.append(op)
        return Value("reply", 9)


def follower(forwarder: Forwarder, proposer: Proposer | None = None) -> Engine:
    view = SimpleNamespace(not_leader=lambda: errors.NotLeader("not the leader", "10.0.0.1:7379"))
    engine = Engine(view, proposer or Proposer(), forwarder, 1.0, lambda _c: 0)  # type: ignore[arg-type]
    engine._timeout = 0.05  # how long a cancelled relay's id stays open
    return engine


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "_RETRY_PAUSE_S", 0.001)
    monkeypatch.setattr(engine_module, "NO_LEADER_WAIT_S", 0.2)
    monkeypatch.setattr(engine_module, "RELAY_WRITE_RETRY_S", 0.3)


def test_an_unknown_outcome_is_sent_again_under_the_same_id() -> None:
    forwarder = Forwarder(errors.OutcomeUnknown("the leader died"), errors.NoLeader("election"), 7)
    engine = follower(forwarder)

    async def run() -> None:
        assert await engine.write([b"INCR", b"n"], 0) == 7
        # the first attempt may still reach a leader: its id stays open a while
        assert list(engine._relays.pending) == [1]
        await asyncio.sleep(0.1)
        assert engine._relays.pending == {}
        forwarder.outcomes = [8]
        assert await engine.write([b"INCR", b"n"], 0) == 8
        assert engine._relays.pending == {}, "one answered attempt: closed at once"

    asyncio.run(run())
    assert len({(r.client_id, r.seq) for r in forwarder.sent[:3]}) == 1
    assert forwarder.sent[0].client_id.startswith("relay-") and forwarder.sent[0].seq == 1
    assert (forwarder.sent[3].seq, forwarder.sent[3].done_below) == (2, 2)


def test_without_a_leader_a_write_waits_briefly_and_later_ones_do_not() -> None:
    forwarder = Forwarder(*[errors.NoLeader("no leader")] * 100_000)
    engine = follower(forwarder)
    with pytest.raises(errors.NoLeader):
        asyncio.run(engine.write([b"SET", b"k", b"v"], 0))
    assert len(forwarder.sent) > 1  # it waited for an election
    forwarder.sent.clear()
    with pytest.raises(errors.NoLeader):  # the node has had no leader for a while: at once
        asyncio.run(engine.for_user("app").write([b"SET", b"k", b"v"], 0))
    assert len(forwarder.sent) == 1
    forwarder.outcomes = [5]
    assert asyncio.run(engine.write([b"INCR", b"n"], 0)) == 5  # a leader answers again
    assert engine._relays.leaderless_since is None


def test_a_node_that_became_leader_proposes_the_retry_under_the_same_id() -> None:
    proposer = Proposer()
    forwarder = Forwarder(errors.OutcomeUnknown("the leader died"))

    async def run() -> Any:
        engine = follower(forwarder, proposer)
        task = asyncio.create_task(engine.write([b"RPUSH", b"l", b"x"], 0))
        while not forwarder.sent:
            await asyncio.sleep(0)
        proposer.leading = True  # this node won the election
        return await task

    assert asyncio.run(run()) == 9
    (op,) = proposer.proposed
    first = forwarder.sent[0]
    assert (op.request_id.client_id, op.request_id.seq) == (first.client_id, first.seq)
    assert list(op.data.op.call.argv) == [b"RPUSH", b"l", b"x"]


def test_a_cancelled_relay_keeps_its_id_open_while_it_may_still_arrive() -> None:
    class Hanging(Forwarder):
        async def relay(self, *args: Any) -> Any:  # the leader never answers
            await asyncio.Event().wait()

    async def run() -> None:
        engine = follower(Hanging())
        task = asyncio.create_task(engine.write([b"INCR", b"n"], 0))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert list(engine._relays.pending) == [1], "done_below must not pass it yet"
        await asyncio.sleep(0.1)
        assert engine._relays.pending == {}

    asyncio.run(run())


def test_an_unknown_outcome_that_no_leader_resolves_is_reported_unknown() -> None:
    forwarder = Forwarder(errors.OutcomeUnknown("sent"), *[errors.NoLeader("no leader")] * 1000)
    with pytest.raises(errors.OutcomeUnknown, match="outcome unknown: the leader failed"):
        asyncio.run(follower(forwarder).write([b"RPUSH", b"l", b"x"], 0))


def test_a_forgotten_id_and_other_errors_are_not_retried() -> None:
    for error in (errors.RequestTooOld("forgotten"), errors.Overloaded("busy")):
        forwarder = Forwarder(error, 1)
        with pytest.raises(type(error)):
            asyncio.run(follower(forwarder).write([b"INCR", b"n"], 0))
        assert len(forwarder.sent) == 1


def test_each_id_names_the_oldest_write_still_waiting_across_users() -> None:
    engine = follower(Forwarder())
    first, second, third = (cache_pb2.RequestId() for _ in range(3))
    engine._relays.open(first)
    engine.for_user("app")._relays.open(second)  # one node, one client id and one count
    assert (first.seq, first.done_below, second.seq, second.done_below) == (1, 1, 2, 1)
    assert first.client_id == second.client_id
    engine._relays.pending.pop(1)
    engine._relays.open(third)
    assert (third.seq, third.done_below) == (3, 2)


def _incr(sm: StateMachine, seq: int, done_below: int = 0) -> Any:
    op = call_op([b"INCR", b"n"], 0)
    op.request_id.client_id, op.request_id.seq, op.request_id.done_below = "c", seq, done_below
    (result,) = sm.apply(command_pb2.Command(ops=[op], now_ms=1000))
    return result


def test_the_state_machine_answers_a_retry_and_forgets_what_is_done() -> None:
    sm = StateMachine()
    assert [_incr(sm, s).data for s in (1, 2, 3)] == [1, 2, 3]
    assert _incr(sm, 2).data == 2, "a retry is answered, not applied again"
    assert _incr(sm, 4, done_below=3).data == 4
    assert sorted(sm._sessions["c"].results) == [3, 4]
    assert _incr(sm, 3, done_below=3).data == 3  # still remembered
    assert _incr(sm, 5, done_below=5).data == 5
    session = sm._sessions["c"]
    assert sorted(session.results) == [5] and session.floor == 0
    restored = StateMachine.restore(sm.export_meta(), sm.export_items())
    assert sorted(restored._sessions["c"].results) == [5]
    assert _incr(restored, 5).data == 5 and sm.digest() == restored.digest()
    # the contract: below done_below a client sends nothing again; if it does, it applies
    # (as on a replica of an older build, which does not see done_below)
    assert _incr(sm, 2).data == 6


def test_the_size_cap_still_holds_without_done_below() -> None:
    sm = StateMachine()
    for s in range(1, 1030):
        _incr(sm, s)
    too_old = _incr(sm, 3)
    assert isinstance(too_old, Failure) and "older than" in too_old.message


def test_done_below_above_the_seq_is_refused() -> None:
    request = cache_pb2.ExecRequest(
        request_id=cache_pb2.RequestId(client_id="c", seq=3, done_below=4)
    )
    request.op.call.argv.extend([b"INCR", b"n"])
    with pytest.raises(errors.InvalidInput, match="done_below is 4, above its seq 3"):
        exec_op(request, Limits(), 0)
