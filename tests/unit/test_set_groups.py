"""Pipelined SETs as one write (node/DESIGN.md "Pipelined SETs as one write"): plain
`SET key value` calls read in a row on one RESP connection go to the proposer as one
QueuedSets with one reply slot. Each must answer, count and order exactly as it would
through dispatch; anything dispatch would treat differently must not be grouped."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from raftcache.node import acl, errors
from raftcache.node.keyspace.db import DB_PREFIX, RESERVED_KEY
from raftcache.node.keyspace.reply import OK, OOM, Error
from raftcache.node.resp.admin import ADMIN
from raftcache.node.resp.server import MAX_SET_GROUP
from raftcache.node.state_machine import SET_OK, Value

from tests.unit.resp_fakes import FakeEngine, FakeStreams, cmd, connect, settle


def _sets(*keys: bytes, name: bytes = b"SET") -> bytes:
    return b"".join(cmd(name, key, b"v" + key) for key in keys)


def test_sets_in_a_row_go_as_one_write_and_every_reply_keeps_its_place() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(
            _sets(b"a", b"b")
            + cmd(b"GET", b"a")
            + _sets(b"c", b"d", name=b"set")
            + _sets(b"e", name=b"SeT")  # not spelled as clients send it: dispatch's path
            + _sets(b"f")  # a group of one (the lone SET's path too)
        )
        assert engine.groups == [2]  # the GET waits for them, the rest for the GET
        assert engine.log == ["submit a", "submit b"]
        engine.commit()  # the SETs, then the GET's barrier and the run after it
        await settle()
        assert engine.groups == [2, 2, 1]  # "SeT" went through dispatch
        assert engine.log[2:] == ["barrier", "submit c", "submit d", "submit e", "submit f"]
        engine.commit()
        await settle()
        assert bytes(transport.out) == b"+OK\r\n+OK\r\n$2\r\nva\r\n" + b"+OK\r\n" * 4
        assert engine.data[b"f"] == b"vf"

    asyncio.run(run())


def test_a_group_counts_each_set_as_dispatch_counts_it() -> None:
    """Five SETs counted alike whichever way they went: one pipelined group, five lone SETs
    (groups of one), or five through dispatch (spelled `Set`, which only dispatch takes)."""

    async def counts(way: str) -> tuple[object, ...]:
        engine = FakeEngine()
        conn, _ = connect(engine)
        keys = [b"k%d" % i for i in range(5)]
        if way == "pipelined":
            conn.data_received(_sets(*keys))
        else:
            for key in keys:
                conn.data_received(_sets(key, name=b"SET" if way == "lone" else b"Set"))
        assert engine.groups == {"pipelined": [5], "lone": [1] * 5, "dispatch": []}[way]
        engine.commit()
        await settle()
        stats = conn.server.stats
        cell = conn.server.commands.by_name[b"set"]
        latency = cell.latency
        return (
            stats.commands_processed,
            dict(stats.calls),
            cell.calls,
            sum(latency.counts),
            latency.sum_ns > 0,
            conn.last_name,
        )

    assert (
        asyncio.run(counts("pipelined"))
        == asyncio.run(counts("lone"))
        == asyncio.run(counts("dispatch"))
        == (
            5,
            {b"set": 5},
            5,
            5,
            True,
            b"set",
        )
    )


def test_one_failed_set_of_a_group_answers_its_own_error_in_its_place() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(_sets(b"a", b"b", b"c"))
        ((_, waiter),) = engine.writes_
        waiter.set_result([SET_OK, Value("reply", Error(OOM)), Value("reply", OK)])
        await settle()
        assert bytes(transport.out) == b"+OK\r\n-" + OOM.encode() + b"\r\n+OK\r\n"
        assert conn.server.stats.error_replies == 1
        assert conn.server.commands.by_name[b"set"].errors == 1
        assert sum(conn.server.commands.by_name[b"set"].latency.counts) == 3

    asyncio.run(run())


def test_a_group_that_fails_to_commit_answers_every_set_with_the_error() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(_sets(b"a", b"b") + cmd(b"PING"))
        ((_, waiter),) = engine.writes_
        waiter.set_exception(errors.OutcomeUnknown("the entry timed out"))
        await settle()
        lines = bytes(transport.out).split(b"\r\n")
        assert [line[:9] for line in lines] == [b"-UNKNOWN ", b"-UNKNOWN ", b"+PONG", b""]
        assert conn.server.stats.error_replies == 2

    asyncio.run(run())


def test_what_dispatch_treats_differently_is_never_grouped() -> None:
    async def replies(setup: bytes, tail: bytes = b"", **conn_attrs: object) -> bytes:
        engine = FakeEngine()
        conn, transport = connect(engine, streams=FakeStreams(), admin=ADMIN)
        conn.data_received(setup)
        await settle()
        for name, value in conn_attrs.items():
            setattr(conn, name, value)
        start = len(transport.out)
        conn.data_received(_sets(b"a", b"b") + tail)
        engine.commit()
        await settle()
        assert engine.groups == [], setup
        return bytes(transport.out[start:])

    async def run() -> None:
        # inside MULTI: queued, then EXEC runs them
        queued = await replies(cmd(b"MULTI"), cmd(b"EXEC"))
        assert queued == b"+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n+OK\r\n"
        # MULTI in the same read as the SETs
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(cmd(b"MULTI") + _sets(b"a", b"b", b"c") + cmd(b"EXEC"))
        await settle()
        assert engine.groups == []
        assert bytes(transport.out) == b"+OK\r\n" + b"+QUEUED\r\n" * 3 + b"*3\r\n" + b"+OK\r\n" * 3
        # CLIENT REPLY OFF: nothing answered
        assert await replies(cmd(b"CLIENT", b"REPLY", b"OFF")) == b""
        # SKIP silences the first SET only
        assert await replies(cmd(b"CLIENT", b"REPLY", b"SKIP")) == b"+OK\r\n"
        # subscribed (RESP2): refused one by one
        refused = await replies(cmd(b"SUBSCRIBE", b"ch"))
        assert refused.count(b"-ERR Can't execute 'set'") == 2
        # keys over --max-key-bytes: refused by dispatch's check
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.server.max_key_bytes = 1
        conn.data_received(_sets(b"a", b"bb", b"c"))
        # "bb" goes through dispatch, which refuses it; "a" and "c" each as a lone SET
        assert engine.groups == [1, 1] and engine.log == ["submit a", "submit c"]
        engine.commit()
        await settle()
        assert bytes(transport.out).count(b"-ERR a key is over the limit") == 1
        # a reserved key: dispatch's path, which refuses it
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(_sets(DB_PREFIX + b"x", DB_PREFIX + b"y"))
        await settle()
        assert engine.groups == [] and engine.submitted == []
        assert bytes(transport.out).count(RESERVED_KEY.encode()) == 2

    asyncio.run(run())


def test_a_restricted_user_groups_the_sets_its_rules_allow_and_is_refused_the_rest() -> None:
    async def run() -> None:
        async def as_user(rules: list[str], data: bytes) -> tuple[FakeEngine, bytes, Any]:
            engine = FakeEngine()
            conn, transport = connect(engine)
            conn.data_received(cmd(b"PING"))  # takes the node's users (the default user)
            await settle()
            start = len(transport.out)
            conn.authenticated(acl.with_rules(None, "app", ["on", "nopass", *rules]))
            conn.describe = lambda: "id=1"  # type: ignore[method-assign]  # ACL LOG's line
            assert not conn.user.unrestricted  # type: ignore[union-attr]
            conn.data_received(data)
            engine.commit()
            await settle()
            return engine, bytes(transport.out[start:]), conn

        # may SET every key, yet restricted: each SET's key is checked, and all three go
        # as one write
        engine, out, _ = await as_user(["~*", "+set"], _sets(b"a1", b"b1", b"a2"))
        assert engine.groups == [3] and out == b"+OK\r\n" * 3
        # keys outside its pattern are refused in order; the others go as groups
        engine, out, conn = await as_user(["~a*", "+set"], _sets(b"a1", b"b1", b"a2", b"a3"))
        assert engine.log == ["submit a1", "submit a2", "submit a3"]
        assert engine.groups == [1, 2]  # a1 alone (b1 refused after it), then a2 + a3
        noperm = b"-" + acl.NOPERM_KEY.encode() + b"\r\n"
        assert out == b"+OK\r\n" + noperm + b"+OK\r\n+OK\r\n"
        assert [e.object for e in conn.server.acl_log.entries.values()] == ["b1"]
        # the first SET refused: nothing is grouped with it
        engine, out, _ = await as_user(["~a*", "+set"], _sets(b"b1", b"a1"))
        assert engine.log == ["submit a1"] and out == noperm + b"+OK\r\n"
        # no SET at all: every one refused by dispatch, nothing proposed
        engine, out, _ = await as_user(["~*", "+get"], _sets(b"a1", b"a2"))
        assert engine.submitted == [] and out.count(b"-NOPERM") == 2

    asyncio.run(run())


def test_a_follower_forwards_a_group_in_one_request() -> None:
    async def run() -> None:
        engine = FakeEngine()
        engine.leader = False
        conn, transport = connect(engine)
        conn.data_received(cmd(b"SET", b"x", b"1", b"EX", b"9") + _sets(b"a", b"b", b"c"))
        await settle()
        assert engine.forwarded == [
            [([b"SET", b"x", b"1", b"EX", b"9"], 0)]
            + [([b"SET", k, b"v" + k], 0) for k in (b"a", b"b", b"c")]
        ]
        engine.forwards[0].set_result(None)
        await settle()
        assert bytes(transport.out) == b"+OK\r\n" * 4

    asyncio.run(run())


def test_a_group_is_at_most_max_set_group_sets_and_the_forwarded_bytes() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(_sets(*(b"k%d" % i for i in range(2 * MAX_SET_GROUP + 5))))
        assert engine.groups == [MAX_SET_GROUP, MAX_SET_GROUP, 5]
        big = b"v" * (3 << 20)  # two of these are over MAX_FORWARD_BYTES (4 MiB)
        conn.data_received(b"".join(cmd(b"SET", b"b%d" % i, big) for i in range(4)))
        assert engine.groups[3:] == [1] * 4  # each alone: two are over MAX_FORWARD_BYTES
        # one over the bytes alone (a 4 MiB value, --max-value-bytes' default), then two
        conn.data_received(cmd(b"SET", b"huge", b"v" * (4 << 20)) + _sets(b"x", b"y"))
        assert engine.groups[7:] == [1, 2]
        assert len(engine.submitted) == 2 * MAX_SET_GROUP + 5 + 4 + 3
        engine.commit()
        await settle()
        assert bytes(transport.out) == b"+OK\r\n" * (2 * MAX_SET_GROUP + 12)

    asyncio.run(run())


def test_a_follower_answers_each_forwarded_set_of_a_group_with_its_own_reply() -> None:
    async def run() -> None:
        engine = FakeEngine()
        engine.leader = False
        unknown = Error("UNKNOWN outcome unknown: the leader changed")
        engine.forward_replies = [OK, Error(OOM), unknown, OK]
        conn, transport = connect(engine)
        conn.data_received(_sets(b"a", b"b", b"c", b"d"))
        await settle()
        engine.forwards[0].set_result(None)
        await settle()
        assert bytes(transport.out) == (
            b"+OK\r\n-" + OOM.encode() + b"\r\n-" + unknown.encode() + b"\r\n+OK\r\n"
        )
        assert conn.server.stats.error_replies == 2
        assert conn.server.commands.by_name[b"set"].errors == 2

    asyncio.run(run())


def test_a_group_goes_to_the_connections_database() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, _ = connect(engine)
        conn.data_received(cmd(b"SELECT", b"3") + _sets(b"a", b"b") + cmd(b"SELECT", b"0"))
        conn.data_received(_sets(b"c", b"d"))
        assert engine.groups == [2, 2]
        assert [db for _, db in engine.submitted] == [3, 3, 0, 0]

    asyncio.run(run())


def test_a_refused_group_answers_every_set_and_leaves_nothing_owed() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        engine.commit_index = 5
        conn.data_received(_sets(b"a", b"b"))
        engine.commit()
        await settle()
        assert conn.last_write_index == 5  # WAIT waits for the group's entry
        engine.commit_index = 9
        engine.refuse = errors.Overloaded("20000 writes are already queued on this node")
        conn.data_received(_sets(b"c", b"d", b"e"))
        await settle()
        out = bytes(transport.out).split(b"\r\n")
        assert out[:2] == [b"+OK", b"+OK"]
        assert [line.split(b" ")[0] for line in out[2:5]] == [b"-TRYAGAIN"] * 3
        assert conn.server.stats.error_replies == 3
        assert conn._grouped == 0 and conn._pending_bytes == 0 and not conn._slots
        assert conn.last_write_index == 5  # nothing of the refused group was sent

    asyncio.run(run())


def test_sets_behind_a_failed_auths_penalty_go_one_by_one_after_it() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(cmd(b"PING"))
        await settle()
        conn._holding = True  # a failed AUTH's penalty is running
        conn.data_received(_sets(b"a", b"b"))
        assert engine.submitted == [] and len(conn._held) == 2
        conn._end_hold()
        await settle()
        assert engine.log == ["submit a", "submit b"]  # one by one, behind the penalty
        engine.commit()
        await settle()
        assert bytes(transport.out) == b"+PONG\r\n+OK\r\n+OK\r\n"

    asyncio.run(run())


def test_a_protocol_error_after_a_group_answers_the_group_first() -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, transport = connect(engine)
        conn.data_received(_sets(b"a", b"b") + b"*1\r\n$x\r\n")
        assert engine.groups == [2]
        engine.commit()
        await settle()
        assert bytes(transport.out).startswith(b"+OK\r\n+OK\r\n-ERR Protocol error: ")
        assert transport.closed

    asyncio.run(run())


USERS = "user default on nopass ~* &* +@all\nuser app on nopass ~* &* +@all"


@pytest.mark.parametrize(
    "tail",
    [cmd(b"SET", b"b", b"2"), cmd(b"GET", b"b"), cmd(b"INCR", b"n")],
    ids=["set", "get", "incr"],
)
@pytest.mark.parametrize("first", [cmd(b"SET", b"a", b"1"), cmd(b"PING")], ids=["set", "ping"])
def test_nothing_runs_after_a_held_set_finds_its_user_deleted(first: bytes, tail: bytes) -> None:
    async def run() -> None:
        engine = FakeEngine()
        conn, _ = connect(engine)
        stored = [USERS.encode()]
        conn.server.auth._read_stored = lambda: (stored[0], None)  # type: ignore[method-assign]
        conn.users_changed(conn.server.auth.acl(), close_at_once=False)
        conn.authenticated(conn.server.auth.acl().users["app"])
        assert conn.user is not None and conn.user.unrestricted
        stored[0] = b"user default on nopass ~* &* +@all"  # ACL DELUSER app, applied
        conn.data_received(first + tail)
        await settle()
        assert conn._closing
        assert engine.submitted == [] and engine.log == []  # no write, no read barrier

    asyncio.run(run())
