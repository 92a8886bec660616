"""Engine.read_mc_get, memcached's get/gets/mg without the command table, answers exactly
what the table's `raftcache.mc.get` answers (read_local) on a real state machine: hits with
flags and CAS, TTLs as memcached counts them, keys expired at cluster time or at a leased
read's later clock, other types, several keys, and the reserved prefix."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from raftcache.node import commands
from raftcache.node.engine import Engine, call_op
from raftcache.node.keyspace.db import DB_PREFIX, RESERVED_KEY
from raftcache.node.keyspace.reply import Error
from raftcache.node.replica import Replica
from raftcache.v1 import command_pb2

MC_GET = b"raftcache.mc.get"


def _apply(replica: Replica, now_ms: int, *argvs: list[bytes]) -> None:
    command = command_pb2.Command(now_ms=now_ms)
    command.ops.extend(call_op(argv, 0) for argv in argvs)
    replica.apply(commands.encode(command))


def _store(key: bytes, value: bytes, flags: int, exptime: int) -> list[bytes]:
    return [
        b"raftcache.mc.store",
        b"set",
        key,
        value,
        str(flags).encode(),
        str(exptime).encode(),
        b"",
    ]


@pytest.fixture
def replica() -> Replica:
    r = Replica()
    _apply(
        r,
        1_000_000,
        _store(b"plain", b"v", 0, 0),
        _store(b"flagged", b"w", 4_294_967_295, 0),
        _store(b"ttl", b"t", 3, 100),  # deadline 1,100,000
        _store(b"soon", b"s", 0, 2),  # deadline 1,002,000
        [b"set", b"redis", b"r", b"px", b"1500"],  # deadline 1,001,500: a TTL of 2 s
        [b"hset", b"hash", b"f", b"v"],
        [b"set", b"big", b"x" * 1_000_000],
        _store(b"appended", b"a", 9, 0),
        [b"append", b"appended", b"bc"],  # stored as the table's growable string
    )
    return r


def _fast(replica: Replica, keys: list[bytes], now_ms: int) -> object:
    engine = SimpleNamespace(view=SimpleNamespace(replica=replica))
    return Engine.read_mc_get(engine, keys, now_ms)  # type: ignore[arg-type]


KEYS = [
    [b"plain"],
    [b"flagged"],
    [b"ttl"],
    [b"soon"],
    [b"redis"],
    [b"hash"],
    [b"missing"],
    [b"big"],
    [b"appended"],
    [b"plain", b"missing", b"flagged", b"hash", b"ttl", b"plain"],
    [DB_PREFIX + b"\x03s"],
    [b"plain", DB_PREFIX + b"\x03s"],
]


@pytest.mark.parametrize("keys", KEYS)
def test_the_fast_get_answers_what_the_table_answers(replica: Replica, keys: list[bytes]) -> None:
    # now_ms 0 reads at cluster time (stale reads, barriers); later ones are leased reads'
    # clocks; 1,002,000 is past "soon", then the cluster time itself moves past it.
    for now_ms in (0, 1_000_400, 1_002_000):
        slow = replica.read_call([MC_GET, *keys], 0, now_ms)
        assert _fast(replica, keys, now_ms) == slow, (keys, now_ms)
    _apply(replica, 1_050_000)
    for now_ms in (0, 1_060_000):
        slow = replica.read_call([MC_GET, *keys], 0, now_ms)
        assert _fast(replica, keys, now_ms) == slow, (keys, now_ms)


def test_what_the_fast_get_answers(replica: Replica) -> None:
    got = _fast(replica, [b"flagged", b"ttl", b"hash", b"missing", b"redis"], 1_000_400)
    assert got == [
        [b"w", 4_294_967_295, 2, -1],
        [b"t", 3, 3, 100],  # 99.6 s left: memcached rounds up
        None,  # a Redis hash is not a memcached item
        None,
        [b"r", 0, 5, 2],
    ]
    assert _fast(replica, [b"plain", DB_PREFIX + b"\x03s"], 0) == Error(RESERVED_KEY)
