"""Run Redis commands against state machines the way a node does, for unit tests.

Writes go through `apply` on two replicas (their digests must stay equal: handlers are
deterministic); read-only commands go through `read`, as a node serves them.
"""

from __future__ import annotations

from typing import Any

import pytest
from raftcache.node.keyspace import dispatch
from raftcache.node.keyspace.reply import CommandError, ReplyT
from raftcache.node.state_machine import StateMachine, Value
from raftcache.v1 import cache_pb2, command_pb2


def _argv(args: tuple[Any, ...]) -> list[bytes]:
    return [a if isinstance(a, bytes) else str(a).encode() for a in args]


class Redis:
    def __init__(self, now_ms: int = 1_000_000) -> None:
        self.sm = StateMachine()
        self.twin = StateMachine()
        self.now_ms = now_ms
        self.db = 0

    def advance(self, ms: int) -> None:
        """Move cluster time on (an empty tick command expires due keys)."""
        self.now_ms += ms
        for sm in (self.sm, self.twin):
            sm.apply(command_pb2.Command(now_ms=self.now_ms))

    def __call__(self, *args: Any, db: int | None = None) -> ReplyT:
        argv = _argv(args)
        call = cache_pb2.RedisCall(argv=argv, db=self.db if db is None else db)
        if not dispatch.is_write(argv):
            result = self.sm.read(cache_pb2.DataOp(call=call), self.now_ms)
            assert isinstance(result, Value) and result.kind == "reply", result
            return result.data
        command = command_pb2.Command(now_ms=self.now_ms)
        command.ops.add().data.op.call.CopyFrom(call)
        result, twin = self.sm.apply(command)[0], self.twin.apply(command)[0]
        assert result == twin, f"replicas answered differently: {result} != {twin}"
        assert self.sm.digest() == self.twin.digest(), f"replicas diverged after {argv}"
        assert isinstance(result, Value) and result.kind == "reply", result
        return result.data


def unchanged(r: Redis, *args: Any, db: int | None = None) -> ReplyT:
    """Run a command that must change nothing (same digest, same revision)."""
    before = (r.sm.digest(), r.sm.revision)
    reply = r(*args, db=db)
    assert (r.sm.digest(), r.sm.revision) == before, args
    return reply


def refused(*argv: Any) -> str:
    """The error `validate` raises before a write is proposed."""
    with pytest.raises(CommandError) as exc:
        dispatch.validate(_argv(argv))
    return exc.value.text


def stored(r: Redis) -> list[bytes]:
    """The keys the state machine holds, as stored (databases 1-15 under their prefix)."""
    return list(r.sm.keys())
