"""Engine.read_get, RESP's GET without the command table, answers exactly what the table's
GET answers (read_local), on a real state machine: missing, live, expired at cluster time,
another type, other databases, and the reserved prefix that guards the other databases and
the nodes' own records (the forwarding key, the users)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from raftcache.node import commands
from raftcache.node.engine import Engine, call_op
from raftcache.node.keyspace.db import DB_PREFIX, RESERVED_KEY
from raftcache.node.keyspace.reply import Error
from raftcache.node.replica import Replica
from raftcache.v1 import command_pb2


def _apply(replica: Replica, now_ms: int, *calls: tuple[int, list[bytes]]) -> None:
    command = command_pb2.Command(now_ms=now_ms)
    command.ops.extend(call_op(argv, db) for db, argv in calls)
    replica.apply(commands.encode(command))


@pytest.fixture
def replica() -> Replica:
    r = Replica()
    _apply(
        r,
        1_000,
        (0, [b"set", b"s", b"v0"]),
        (3, [b"set", b"s", b"v3"]),
        (0, [b"rpush", b"l", b"x"]),
        (0, [b"set", b"soon", b"v", b"px", b"500"]),  # deadline 1,500
        (0, [b"set", b"big", b"x" * 1_000_000]),
    )
    return r


def _fast(replica: Replica, db: int, key: bytes) -> tuple[object, bool]:
    engine = SimpleNamespace(view=SimpleNamespace(replica=replica))
    return Engine.read_get(engine, db, key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("db", "key"),
    [
        (0, b"s"),
        (3, b"s"),
        (5, b"s"),
        (0, b"missing"),
        (0, b"l"),
        (0, b"soon"),
        (0, b"big"),
        (0, DB_PREFIX + b"\x03s"),  # db 3's key, seen from db 0
        (3, DB_PREFIX + b"\xfdforward-key"),
        (0, DB_PREFIX),
    ],
)
def test_the_fast_get_answers_what_the_command_table_answers(
    replica: Replica, db: int, key: bytes
) -> None:
    for cluster_time in (1_000, 2_000):  # "soon" live, then expired at cluster time
        if cluster_time == 2_000:
            _apply(replica, cluster_time)
        slow = replica.read_call([b"get", key], db, 0)
        reply, hit = _fast(replica, db, key)
        assert reply == slow, (db, key, cluster_time)
        exists = replica.state.get(key if db == 0 else DB_PREFIX + bytes((db,)) + key, 0)
        assert hit is (exists is not None and key[:5] != DB_PREFIX)


def test_reserved_keys_are_refused_not_read(replica: Replica) -> None:
    reply, hit = _fast(replica, 0, DB_PREFIX + b"\x03s")
    assert reply == Error(RESERVED_KEY) and hit is False  # not db 3's b"v3"
