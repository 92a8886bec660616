"""The leader's parked blocking calls (node/blocking.py Blocker) against a fake engine: which
attempts it proposes, and when."""

from __future__ import annotations

import asyncio
from typing import Any

from raftcache.node.blocking import Blocker
from raftcache.node.keyspace.reply import NULL_ARRAY
from raftcache.node.state_machine import Value


class FakeEngine:
    """A leader whose proposer records what it is given; `keys` are the keys it holds."""

    def __init__(self, keys: set[bytes] = frozenset(), lease: bool = True) -> None:  # type: ignore[assignment]
        self.keys = set(keys)
        self.lease = lease
        self.submitted: list[tuple[list[bytes], str, Any]] = []

    def is_leader(self) -> bool:
        return True

    def lease_holds(self) -> bool:
        return self.lease

    def holds_any(self, db: int, keys: list[bytes]) -> bool:
        return any(k in self.keys for k in keys)

    def live(self, keys: list[bytes]) -> list[bool]:
        return [k in self.keys for k in keys]

    def submit(self, op: Any, waiter: Any, size: int = 0, weight: int = 0) -> None:
        call = op.data.op.call
        self.submitted.append((list(call.argv), op.request_id.client_id, waiter))


def attempts(engine: FakeEngine) -> list[list[bytes]]:
    return [argv for argv, _, _ in engine.submitted]


async def _parked(engine: FakeEngine, argv: list[bytes], rid: Any = None) -> Blocker:
    blocker = Blocker(engine)  # type: ignore[arg-type]
    blocker.start(argv, 0, rid)
    return blocker


def _popping(engine: FakeEngine, clients: int) -> Blocker:
    """A blocker with `clients` BRPOPs on q parked."""
    blocker = Blocker(engine)  # type: ignore[arg-type]
    for _ in range(clients):
        blocker.start([b"BRPOP", b"q", b"0"], 0)
    return blocker


def test_a_pop_on_missing_keys_parks_without_an_attempt_and_a_push_wakes_it_in_its_entry() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        blocker = await _parked(engine, [b"BRPOP", b"q", b"0"])
        assert attempts(engine) == []  # nothing to take: parked at once
        assert blocker.blocking_keys == 1
        blocker.wrote([b"LPUSH", b"other", b"x"], 0)
        blocker.wrote([b"LPUSH", b"q", b"x"], 1)  # another database's q
        assert attempts(engine) == []
        blocker.wrote([b"LPUSH", b"q", b"x"], 0)  # queued just before: same entry, after it
        assert attempts(engine) == [[b"raftcache.woken", b"BRPOP", b"q", b"0"]]
        # the attempt took the element: the call is answered and leaves
        engine.submitted[0][2].set_result(Value("reply", [b"q", b"x"]))
        assert blocker.blocking_keys == 0

    asyncio.run(scenario())


def test_a_pop_whose_key_exists_or_that_is_relayed_or_a_stream_read_tries_at_once() -> None:
    async def scenario() -> None:
        held = FakeEngine({b"q"})
        await _parked(held, [b"BLPOP", b"q", b"0"])
        assert attempts(held) == [[b"BLPOP", b"q", b"0"]]  # WRONGTYPE or data: the attempt says
        relayed = FakeEngine()
        await _parked(relayed, [b"BRPOP", b"q", b"0"], ("relay-x", 7))
        # a retried relay's first attempt collects what an earlier leader took for its id
        assert [(argv, rid) for argv, rid, _ in relayed.submitted] == [
            ([b"BRPOP", b"q", b"0"], "relay-x")
        ]
        # a leader without its lease may not have applied what an earlier leader acknowledged
        unsure = FakeEngine(lease=False)
        await _parked(unsure, [b"BRPOP", b"q", b"0"])
        assert attempts(unsure) == [[b"BRPOP", b"q", b"0"]]
        reserved = FakeEngine()
        await _parked(reserved, [b"BLMPOP", b"0", b"1", b"\x00rcdb\x03k", b"LEFT"])
        assert len(attempts(reserved)) == 1  # the attempt answers the reserved-key error
        group = FakeEngine()
        await _parked(group, [b"XREADGROUP", b"GROUP", b"g", b"c", b"BLOCK", b"0", b"STREAMS",
                              b"s", b">"])  # fmt: skip
        assert len(attempts(group)) == 1  # a missing stream is NOGROUP, which the attempt answers

    asyncio.run(scenario())


def test_a_waiter_whose_attempt_is_in_flight_tries_again_after_it() -> None:
    async def scenario() -> None:
        engine = FakeEngine({b"q"})
        blocker = await _parked(engine, [b"BRPOP", b"q", b"0"])
        blocker.wrote([b"LPUSH", b"q", b"x"], 0)
        assert len(attempts(engine)) == 1  # no second attempt while the first is in flight
        blocker._changed({b"q"})  # the push applied (its change event; database 0)
        engine.submitted[0][2].set_result(Value("reply", NULL_ARRAY))  # it found nothing
        assert attempts(engine)[1] == [b"raftcache.woken", b"BRPOP", b"q", b"0"]

    asyncio.run(scenario())


def test_only_writes_that_can_feed_a_pop_wake_waiters_and_only_as_many_as_they_feed() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        blocker = _popping(engine, 5)
        assert attempts(engine) == []
        for argv in ([b"RPOP", b"q"], [b"DEL", b"q"], [b"LLEN", b"q"], [b"SET", b"q", b"v"]):
            blocker.wrote(argv, 0)  # nothing to take after them: no attempt
        assert attempts(engine) == []
        blocker.wrote([b"LPUSH", b"q", b"a", b"b"], 0)  # two elements: the two oldest waiters
        assert len(attempts(engine)) == 2
        blocker.wrote([b"RPUSH", b"q", b"c"], 0)  # the next idle one (two are in flight)
        assert len(attempts(engine)) == 3
        blocker.wrote([b"ZADD", b"q", b"1", b"m"], 0)  # one pair: one more
        assert len(attempts(engine)) == 4

    asyncio.run(scenario())


def test_a_change_to_a_key_that_is_gone_again_wakes_no_pop_but_still_wakes_stream_reads() -> None:
    async def scenario() -> None:
        engine = FakeEngine()
        blocker = _popping(engine, 3)
        blocker.wrote([b"LPUSH", b"q", b"job"], 0)  # the oldest waiter's attempt rides along
        assert len(attempts(engine)) == 1
        blocker._changed({b"q"})  # applied; the job was taken: q is gone again
        assert len(attempts(engine)) == 1  # no herd of attempts that would find nothing
        engine.keys.add(b"q")  # a change that left something (pushed by another path)
        blocker._changed({b"q"})
        assert len(attempts(engine)) == 3  # the two idle waiters try, oldest first
        group = FakeEngine()
        reader = Blocker(group)  # type: ignore[arg-type]
        reader.start(
            [b"XREADGROUP", b"GROUP", b"g", b"c", b"BLOCK", b"0", b"STREAMS", b"s", b">"], 0
        )
        group.submitted[0][2].set_result(Value("reply", NULL_ARRAY))  # nothing yet: parked
        reader._changed({b"s"})  # the stream was deleted: the read must learn it
        assert len(attempts(group)) == 2

    asyncio.run(scenario())
