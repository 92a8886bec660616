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

    def __init__(self, keys: set[bytes] = frozenset()) -> None:  # type: ignore[assignment]
        self.keys = set(keys)
        self.submitted: list[tuple[list[bytes], str, Any]] = []

    def is_leader(self) -> bool:
        return True

    def has_key(self, db: int, key: bytes) -> bool:
        return key in self.keys

    def submit(self, op: Any, waiter: Any, size: int = 0, weight: int = 0) -> None:
        call = op.data.op.call
        self.submitted.append((list(call.argv), op.request_id.client_id, waiter))


def attempts(engine: FakeEngine) -> list[list[bytes]]:
    return [argv for argv, _, _ in engine.submitted]


async def _parked(engine: FakeEngine, argv: list[bytes], rid: Any = None) -> Blocker:
    blocker = Blocker(engine)  # type: ignore[arg-type]
    blocker.start(argv, 0, rid)
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
        engine.submitted[0][2].set_result(Value("reply", NULL_ARRAY))  # it found nothing
        assert attempts(engine)[1] == [b"raftcache.woken", b"BRPOP", b"q", b"0"]

    asyncio.run(scenario())
