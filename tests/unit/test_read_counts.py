"""Which key a read through Exec counts as used (node/responses.py, read_exec).

A follower forwards a client's linearizable Redis read to the leader's Exec as a call op.
The leader serves it, so its CacheHits/CacheMisses and its LRU/LFU tracker must count the
call's first key in the call's database: before, a call counted an empty key as a hit
whatever the reply (the eviction tracker was touched for key b"", never for the key read).
"""

from __future__ import annotations

from raftcache.node import commands
from raftcache.node.engine import call_op, set_call
from raftcache.node.keyspace.db import db_key
from raftcache.node.replica import Replica
from raftcache.node.requests import Limits
from raftcache.node.responses import read_exec
from raftcache.v1 import cache_pb2, command_pb2

NOW = 1_000


class _View:
    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.reads: list[tuple[bytes, bool]] = []

    def count_read(self, key: bytes, hit: bool) -> None:
        self.reads.append((key, hit))


def _view() -> _View:
    replica = Replica()
    command = command_pb2.Command(now_ms=NOW)
    command.ops.extend(
        [
            call_op([b"set", b"s", b"v"], 3),
            call_op([b"hset", b"h", b"f", b"v"], 0),
            call_op([b"set", b"m", b"v"], 0),
        ]
    )
    replica.apply(commands.encode(command))
    return _View(replica)


def _exec(view: _View, argv: list[bytes], db: int) -> cache_pb2.ExecResponse:
    request = cache_pb2.ExecRequest(consistency=cache_pb2.LINEARIZABLE)
    set_call(request.op, argv, db)
    return read_exec(view, request, Limits(), NOW)  # type: ignore[arg-type]


def test_a_redis_read_counts_its_first_key_in_its_database() -> None:
    view = _view()
    _exec(view, [b"get", b"s"], 3)
    _exec(view, [b"get", b"s"], 0)  # another database: missing there
    _exec(view, [b"hget", b"h", b"nofield"], 0)  # a nil reply, but the key exists: a hit
    _exec(view, [b"hget", b"s", b"f"], 3)  # WRONGTYPE: the key exists, a hit as in Redis
    _exec(view, [b"lrange", b"nolist", b"0", b"-1"], 0)
    assert view.reads == [
        (db_key(3, b"s"), True),
        (db_key(0, b"s"), False),
        (db_key(0, b"h"), True),
        (db_key(3, b"s"), True),
        (db_key(0, b"nolist"), False),
    ]


def test_a_keyless_redis_read_counts_nothing_and_a_get_op_counts_its_key() -> None:
    view = _view()
    _exec(view, [b"dbsize"], 0)
    _exec(view, [b"randomkey"], 3)
    assert view.reads == []
    request = cache_pb2.ExecRequest()
    request.op.get.key = b"missing"
    read_exec(view, request, Limits(), NOW)  # type: ignore[arg-type]
    assert view.reads == [(b"missing", False)]


def test_a_memcached_get_counts_every_key_and_only_strings_hit() -> None:
    """memcached's get through Exec (a follower's forwarded get of several keys) counts
    every key, as the leader's own memcached get does; a key of another type is a miss
    (memcached shows no hash)."""
    view = _view()
    _exec(view, [b"raftcache.mc.get", b"m", b"h", b"nokey"], 0)
    assert view.reads == [(b"m", True), (b"h", False), (b"nokey", False)]


def test_the_nodes_plumbing_reads_count_nothing() -> None:
    """WATCH's versions (raftcache.versions, forwarded by a follower) is no use of the key."""
    view = _view()
    _exec(view, [b"raftcache.versions", b"m", b"h"], 0)
    assert view.reads == []
