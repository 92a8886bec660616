"""Redis stream commands over the state machine (two replicas, equal digests)."""

from __future__ import annotations

from typing import Any

import pytest
from raftcache.node.keyspace import dispatch
from raftcache.node.keyspace.reply import NULL_ARRAY, Error, KeyedPairs, Map, from_proto, to_proto
from raftcache.node.resp.encoder import encoded
from raftcache.node.state_machine import StateMachine
from raftcache.node.values import Container, Stream

from tests.unit.redis_harness import Redis, refused, unchanged

WRONGTYPE = Error("WRONGTYPE Operation against a key holding the wrong kind of value")
SYNTAX = Error("ERR syntax error")
NOT_INTEGER = Error("ERR value is not an integer or out of range")
INVALID_ID = Error("ERR Invalid stream ID specified as stream command argument")
TOO_SMALL = Error(
    "ERR The ID specified in XADD is equal or smaller than the target stream top item"
)


def accounted(r: Redis) -> None:
    """Every container's size and hash match a fresh copy's (incremental upkeep is right)."""
    for value, *_ in r.sm._data.values():
        if isinstance(value, Container):
            fresh = type(value).decode(value.encode())  # type: ignore[attr-defined]
            assert (fresh.nbytes, fresh.acc) == (value.nbytes, value.acc)
            assert fresh == value


def filled(n: int = 3, key: str = "s") -> Redis:
    r = Redis()
    for i in range(1, n + 1):
        r("XADD", key, f"{i}-0", "f", f"v{i}")
    return r


def ids(reply: Any) -> list[bytes]:
    return [e[0] for e in reply]


# -- XADD ---------------------------------------------------------------------------------


def test_xadd_ids_come_from_the_replicated_clock_and_never_go_back() -> None:
    r = Redis(now_ms=5000)
    assert r("XADD", "s", "*", "a", "1") == b"5000-0"
    assert r("XADD", "s", "*", "a", "2") == b"5000-1"  # same millisecond: next sequence
    r.now_ms = 4000  # a leader whose clock is behind the stream's last id
    assert r("XADD", "s", "*", "a", "3") == b"5000-2"
    r.now_ms = 7000
    assert r("XADD", "s", "*", "a", "4") == b"7000-0"
    assert r("XADD", "s", "7000-*", "a", "5") == b"7000-1"
    assert r("XADD", "s", "8000-*", "a", "6") == b"8000-0"
    assert r("XADD", "s", "9000", "a", "7") == b"9000-0"  # a missing sequence is 0
    assert r("XLEN", "s") == 7
    assert r("TYPE", "s") == "stream"
    assert r("OBJECT", "ENCODING", "s") == b"stream"
    accounted(r)


def test_xadd_errors_change_nothing() -> None:
    r = filled(2)
    assert unchanged(r, "XADD", "s", "2-0", "f", "v") == TOO_SMALL
    assert unchanged(r, "XADD", "s", "1-5", "f", "v") == TOO_SMALL
    assert unchanged(r, "XADD", "s", "1-*", "f", "v") == TOO_SMALL
    assert refused("XADD", "s", "0-0", "f", "v") == (
        "ERR The ID specified in XADD must be greater than 0-0"
    )
    assert refused("XADD", "s", "abc", "f", "v") == INVALID_ID
    assert refused("XADD", "s", "1-x", "f", "v") == INVALID_ID
    assert refused("XADD", "s", "-", "f", "v") == INVALID_ID
    assert refused("XADD", "s", "*", "f") == "ERR wrong number of arguments for 'xadd' command"
    assert refused("XADD", "s", "*", "f", "v", "g") == (
        "ERR wrong number of arguments for 'xadd' command"
    )
    assert refused("XADD", "s", "MAXLEN", "-1", "*", "f", "v") == (
        "ERR The MAXLEN argument must be >= 0."
    )
    assert refused("XADD", "s", "MAXLEN", "x", "*", "f", "v") == NOT_INTEGER
    assert refused("XADD", "s", "MAXLEN", "1", "MINID", "1", "*", "f", "v") == (
        "ERR syntax error, MAXLEN and MINID options at the same time are not compatible"
    )
    assert refused("XADD", "s", "LIMIT", "5", "*", "f", "v") == (
        "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
    )
    assert refused("XADD", "s", "MAXLEN", "5", "LIMIT", "5", "*", "f", "v") == (
        "ERR syntax error, LIMIT cannot be used without the special ~ option"
    )
    assert refused("XADD", "s", "MAXLEN", "~", "5", "LIMIT", "-1", "*", "f", "v") == (
        "ERR The LIMIT argument must be >= 0."
    )
    r("SET", "str", "x")
    assert unchanged(r, "XADD", "str", "*", "f", "v") == WRONGTYPE


def test_xadd_nomkstream_and_exhausted_ids() -> None:
    r = Redis()
    assert unchanged(r, "XADD", "s", "NOMKSTREAM", "*", "f", "v") is None
    assert r("EXISTS", "s") == 0
    assert r("XADD", "s", "18446744073709551615-18446744073709551615", "f", "v") == (
        b"18446744073709551615-18446744073709551615"
    )
    assert unchanged(r, "XADD", "s", "*", "f", "v") == Error(
        "ERR The stream has exhausted the last possible ID, unable to add more items"
    )
    assert r("XADD", "s", "NOMKSTREAM", "MAXLEN", "0", "*", "f", "v") == Error(
        "ERR The stream has exhausted the last possible ID, unable to add more items"
    )


def test_trimming_exact_and_approximate() -> None:
    r = Redis()
    for i in range(1, 1001):
        r("XADD", "s", "MAXLEN", "=", "5", f"{i}-0", "f", "v")
    assert r("XLEN", "s") == 5
    assert ids(r("XRANGE", "s", "-", "+")) == [b"%d-0" % i for i in range(996, 1001)]
    r("DEL", "s")
    for i in range(1, 1001):
        r("XADD", "s", "MAXLEN", "~", "555", f"{i}-0", "f", "v")
    assert r("XLEN", "s") == 600  # whole nodes of 100 only, as Redis
    assert r("XTRIM", "s", "MAXLEN", "~", "444") == 100
    assert r("XLEN", "s") == 500
    assert r("XTRIM", "s", "MAXLEN", "450") == 50
    assert r("XTRIM", "s", "MINID", "600") == 49  # exact: every entry below 600-0
    assert r("XRANGE", "s", "-", "+", "COUNT", "1")[0][0] == b"600-0"
    assert r("XTRIM", "s", "MINID", "~", "750") == 101  # 600 and the node 601..700
    assert r("XTRIM", "s", "MINID", "~", "799") == 0  # the head node holds 701..800
    assert r("XTRIM", "s", "MAXLEN", "~", "0", "LIMIT", "99") == 0  # a node is 100
    assert r("XTRIM", "s", "MAXLEN", "0") == 300
    assert r("XLEN", "s") == 0
    assert r("EXISTS", "s") == 1  # an emptied stream stays
    assert r("XTRIM", "missing", "MAXLEN", "0") == 0
    assert refused("XTRIM", "s", "LIMIT", "0") == (
        "ERR syntax error, XTRIM must be called with a trimming strategy"
    )
    assert refused("XTRIM", "s", "MAXLEN", "1", "junk") == SYNTAX
    accounted(r)


def test_xadd_with_trim_keeps_limit() -> None:
    r = Redis()
    for i in range(1, 4):
        r("XADD", "s", f"{i}-0", "x", "v")
    r("XADD", "s", "MAXLEN", "~", "0", "LIMIT", "1", "*", "x", "v")
    assert r("XLEN", "s") == 4


# -- reading ------------------------------------------------------------------------------


def test_xrange_and_xrevrange() -> None:
    r = filled(5)
    assert r("XRANGE", "s", "-", "+") == [[b"%d-0" % i, [b"f", b"v%d" % i]] for i in range(1, 6)]
    assert ids(r("XRANGE", "s", "2", "4")) == [b"2-0", b"3-0", b"4-0"]
    assert ids(r("XRANGE", "s", "(2-0", "(4-0")) == [b"3-0"]
    assert ids(r("XRANGE", "s", "-", "+", "COUNT", "2")) == [b"1-0", b"2-0"]
    assert ids(r("XREVRANGE", "s", "+", "-", "COUNT", "2")) == [b"5-0", b"4-0"]
    assert ids(r("XREVRANGE", "s", "(5-0", "(3-0")) == [b"4-0"]
    assert ids(r("XREVRANGE", "s", "(5", "(3")) == [b"5-0", b"4-0"]  # (5 is before 5-MAX
    assert r("XRANGE", "s", "-", "+", "COUNT", "0") is NULL_ARRAY
    assert r("XRANGE", "s", "-", "+", "COUNT", "-3") is NULL_ARRAY
    assert r("XRANGE", "missing", "-", "+") == []
    assert r("XRANGE", "s", "4", "2") == []
    assert r("XRANGE", "s", "(-", "+") == INVALID_ID
    assert r("XRANGE", "s", "(18446744073709551615-18446744073709551615", "+") == Error(
        "ERR invalid start ID for the interval"
    )
    assert r("XRANGE", "s", "-", "(0-0") == Error("ERR invalid end ID for the interval")
    assert r("XRANGE", "s", "-", "+", "COUNT") == SYNTAX
    assert r("XRANGE", "s", "-", "+", "COUNT", "x") == NOT_INTEGER
    r("SET", "str", "x")
    assert r("XRANGE", "str", "-", "+") == WRONGTYPE
    assert r("XLEN", "str") == WRONGTYPE
    assert r("XLEN", "missing") == 0


def test_xread() -> None:
    r = filled(3)
    r("XADD", "t", "1-0", "g", "w")
    assert r("XREAD", "STREAMS", "s", "t", "1-0", "0") == KeyedPairs(
        [
            [b"s", [[b"2-0", [b"f", b"v2"]], [b"3-0", [b"f", b"v3"]]]],
            [b"t", [[b"1-0", [b"g", b"w"]]]],
        ]
    )
    assert r("XREAD", "COUNT", "1", "STREAMS", "s", "0") == KeyedPairs(
        [[b"s", [[b"1-0", [b"f", b"v1"]]]]]
    )
    assert r("XREAD", "STREAMS", "s", "$") is NULL_ARRAY
    assert r("XREAD", "STREAMS", "missing", "0") is NULL_ARRAY
    # BLOCK: one attempt here (data now, else the null reply as inside MULTI); the waiting
    # is the leader's (node/blocking.py, tests/integration/test_redis_blocking.py)
    assert r("XREAD", "BLOCK", "0", "STREAMS", "s", "2") == KeyedPairs(
        [[b"s", [[b"3-0", [b"f", b"v3"]]]]]
    )
    assert r("XREAD", "BLOCK", "100", "STREAMS", "s", "$") is NULL_ARRAY
    assert r("XREAD", "STREAMS", "s", "t", "0") == Error(
        "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."
    )
    assert r("XREAD", "GROUP", "g", "c", "STREAMS", "s", "0") == Error(
        "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead."
    )
    assert r("XREAD", "NOACK", "STREAMS", "s", "0") == Error(
        "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead."
    )
    assert r("XREAD", "STREAMS", "s", ">").startswith("ERR The > ID can be specified only")
    assert r("XREAD", "BLOCK", "-1", "STREAMS", "s", "0") == Error("ERR timeout is negative")
    assert r("XREAD", "BLOCK", "x", "STREAMS", "s", "0") == Error(
        "ERR timeout is not an integer or out of range"
    )
    assert r("XREAD", "COUNT", "1", "s", "0") == SYNTAX


def test_keyed_reply_shapes_in_resp2_resp3_and_protobuf() -> None:
    reply = KeyedPairs([[b"s", [[b"1-0", [b"f", b"v"]]]]])
    assert (
        encoded(reply, 2)
        == b"*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    )
    assert (
        encoded(reply, 3)
        == b"%1\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"
    )
    back = from_proto(to_proto(reply))
    assert type(back) is KeyedPairs and back == reply


# -- consumer groups ----------------------------------------------------------------------


def test_xgroup_create_setid_destroy_and_consumers() -> None:
    r = filled(3)
    assert r("XGROUP", "CREATE", "s", "g", "$") == "OK"
    assert unchanged(r, "XGROUP", "CREATE", "s", "g", "0") == Error(
        "BUSYGROUP Consumer Group name already exists"
    )
    assert r("XGROUP", "CREATE", "new", "g", "$") == Error(
        "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may "
        "want to use the MKSTREAM option to create an empty stream automatically."
    )
    assert r("XGROUP", "CREATE", "new", "g", "$", "MKSTREAM", "ENTRIESREAD", "0") == "OK"
    assert r("XLEN", "new") == 0
    assert r("XGROUP", "CREATECONSUMER", "s", "g", "c1") == 1
    assert r("XGROUP", "CREATECONSUMER", "s", "g", "c1") == 0
    assert r("XGROUP", "CREATECONSUMER", "s", "nope", "c1") == Error(
        "NOGROUP No such consumer group 'nope' for key name 's'"
    )
    assert r("XGROUP", "SETID", "s", "g", "0") == "OK"
    assert r("XINFO", "GROUPS", "s")[0] == Map(
        [
            b"name",
            b"g",
            b"consumers",
            1,
            b"pending",
            0,
            b"last-delivered-id",
            b"0-0",
            b"entries-read",
            None,
            b"lag",
            3,
        ]
    )
    assert r("XGROUP", "SETID", "s", "g", "2-0", "ENTRIESREAD", "2") == "OK"
    assert r("XINFO", "GROUPS", "s")[0][-1] == 1  # lag
    assert r("XGROUP", "DELCONSUMER", "s", "g", "c1") == 0
    assert r("XGROUP", "DELCONSUMER", "s", "g", "c1") == 0
    assert r("XGROUP", "DESTROY", "s", "g") == 1
    assert r("XGROUP", "DESTROY", "s", "g") == 0
    assert refused("XGROUP", "CREATE", "s", "g", "$", "ENTRIESREAD", "-2") == (
        "ERR value for ENTRIESREAD must be positive or -1"
    )
    assert refused("XGROUP", "SETID", "s", "g", "$", "MKSTREAM") == (
        "ERR unknown subcommand or wrong number of arguments for 'SETID'. Try XGROUP HELP."
    )
    assert refused("XGROUP", "FOO", "s") == "ERR unknown subcommand 'FOO'. Try XGROUP HELP."
    assert refused("XGROUP", "DESTROY", "s") == (
        "ERR wrong number of arguments for 'xgroup|destroy' command"
    )
    assert r("XGROUP", "HELP")[0].startswith("XGROUP <subcommand>")
    r("SET", "str", "x")
    assert r("XGROUP", "CREATE", "str", "g", "$") == WRONGTYPE
    accounted(r)


def test_xreadgroup_delivers_tracks_pending_and_acks() -> None:
    r = filled(3)
    r("XGROUP", "CREATE", "s", "g", "0")
    got = r("XREADGROUP", "GROUP", "g", "alice", "COUNT", "2", "STREAMS", "s", ">")
    assert got == KeyedPairs([[b"s", [[b"1-0", [b"f", b"v1"]], [b"2-0", [b"f", b"v2"]]]]])
    r.advance(50)
    got = r("XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", ">")
    assert got == KeyedPairs([[b"s", [[b"3-0", [b"f", b"v3"]]]]])
    assert r("XREADGROUP", "GROUP", "g", "bob", "STREAMS", "s", ">") is NULL_ARRAY
    assert r("XPENDING", "s", "g") == [3, b"1-0", b"3-0", [[b"alice", b"2"], [b"bob", b"1"]]]
    r.advance(10)
    assert r("XPENDING", "s", "g", "-", "+", "10") == [
        [b"1-0", b"alice", 60, 1],
        [b"2-0", b"alice", 60, 1],
        [b"3-0", b"bob", 10, 1],
    ]
    assert r("XPENDING", "s", "g", "IDLE", "20", "-", "+", "10") == [
        [b"1-0", b"alice", 60, 1],
        [b"2-0", b"alice", 60, 1],
    ]
    assert r("XPENDING", "s", "g", "(1-0", "+", "10", "alice") == [[b"2-0", b"alice", 60, 1]]
    assert r("XPENDING", "s", "g", "-", "+", "10", "nobody") == []
    # history: the consumer's own pending entries, delivery count bumped
    got = r("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", "0")
    assert got == KeyedPairs([[b"s", [[b"1-0", [b"f", b"v1"]], [b"2-0", [b"f", b"v2"]]]]])
    assert r("XPENDING", "s", "g", "-", "+", "1") == [[b"1-0", b"alice", 0, 2]]
    r("XDEL", "s", "2-0")
    got = r("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", "1-0")
    assert got == KeyedPairs([[b"s", [[b"2-0", NULL_ARRAY]]]])
    assert r("XACK", "s", "g", "1-0", "2-0", "9-0") == 2
    assert r("XACK", "s", "g", "1-0") == 0
    assert r("XACK", "s", "nope", "1-0") == 0
    assert r("XACK", "missing", "g", "1-0") == 0
    assert r("XACK", "s", "g", "bad") == INVALID_ID
    assert r("XPENDING", "s", "g") == [1, b"3-0", b"3-0", [[b"bob", b"1"]]]
    r("XADD", "s", "4-0", "f", "v4")
    assert r("XREADGROUP", "GROUP", "g", "carol", "NOACK", "STREAMS", "s", ">") == KeyedPairs(
        [[b"s", [[b"4-0", [b"f", b"v4"]]]]]
    )
    assert r("XPENDING", "s", "g")[0] == 1
    accounted(r)


def test_xreadgroup_errors() -> None:
    r = filled(1)
    r("XGROUP", "CREATE", "s", "g", "0")
    assert r("XREADGROUP", "GROUP", "nope", "c", "STREAMS", "s", ">") == Error(
        "NOGROUP No such key 's' or consumer group 'nope' in XREADGROUP with GROUP option"
    )
    assert r("XREADGROUP", "GROUP", "g", "c", "STREAMS", "missing", ">") == Error(
        "NOGROUP No such key 'missing' or consumer group 'g' in XREADGROUP with GROUP option"
    )
    assert r("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", "$").startswith(
        "ERR The $ ID is meaningless"
    )
    assert refused("XREADGROUP", "COUNT", "1", "STREAMS", "s", "t", ">", ">") == (
        "ERR Missing GROUP option for XREADGROUP"
    )
    r("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">")
    got = unchanged(r, "XREADGROUP", "GROUP", "g", "c", "BLOCK", "10", "STREAMS", "s", ">")
    assert got is NULL_ARRAY
    got = r("XREADGROUP", "GROUP", "g", "c", "BLOCK", "10", "STREAMS", "s", "0")
    assert got == KeyedPairs([[b"s", [[b"1-0", [b"f", b"v1"]]]]])  # history never blocks


def test_entries_read_and_lag_follow_redis() -> None:
    r = filled(5)
    r("XGROUP", "CREATE", "s", "g", "0")
    r("XREADGROUP", "GROUP", "g", "c", "COUNT", "2", "STREAMS", "s", ">")
    info = r("XINFO", "GROUPS", "s")[0]
    assert info[info.index(b"entries-read") + 1] == 2
    assert info[info.index(b"lag") + 1] == 3
    r("XDEL", "s", "4-0")  # a tombstone ahead of the group: lag unknown
    info = r("XINFO", "GROUPS", "s")[0]
    assert info[info.index(b"lag") + 1] is None
    r("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">")
    info = r("XINFO", "GROUPS", "s")[0]
    assert info[info.index(b"entries-read") + 1] == 5
    assert info[info.index(b"lag") + 1] == 0


def test_xclaim() -> None:
    r = filled(3)
    r("XGROUP", "CREATE", "s", "g", "0")
    r("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", ">")
    r.advance(100)
    assert r("XCLAIM", "s", "g", "bob", "200", "1-0") == []  # not idle long enough
    assert r("XCLAIM", "s", "g", "bob", "50", "1-0", "2-0") == [
        [b"1-0", [b"f", b"v1"]],
        [b"2-0", [b"f", b"v2"]],
    ]
    assert r("XPENDING", "s", "g", "-", "+", "10", "bob") == [
        [b"1-0", b"bob", 0, 2],
        [b"2-0", b"bob", 0, 2],
    ]
    assert r(
        "XCLAIM", "s", "g", "carol", "0", "1-0", "IDLE", "500", "RETRYCOUNT", "7", "JUSTID"
    ) == [b"1-0"]
    assert r("XPENDING", "s", "g", "-", "+", "1") == [[b"1-0", b"carol", 500, 7]]
    assert r("XCLAIM", "s", "g", "dave", "0", "9-0") == []  # not pending, no FORCE
    r("XADD", "s", "9-0", "f", "v9")
    assert r("XCLAIM", "s", "g", "dave", "0", "9-0", "FORCE", "LASTID", "9-0") == [
        [b"9-0", [b"f", b"v9"]]
    ]
    assert r("XPENDING", "s", "g", "9", "9", "1") == [[b"9-0", b"dave", 0, 2]]
    info = r("XINFO", "GROUPS", "s")[0]
    assert info[info.index(b"last-delivered-id") + 1] == b"9-0"
    r("XDEL", "s", "2-0")  # a claimed entry that no longer exists leaves the PEL
    assert r("XCLAIM", "s", "g", "dave", "0", "2-0") == []
    assert r("XPENDING", "s", "g")[0] == 3
    assert r("XCLAIM", "s", "g", "dave", "x", "1-0") == Error(
        "ERR Invalid min-idle-time argument for XCLAIM"
    )
    assert r("XCLAIM", "s", "g", "dave", "0", "1-0", "BOGUS") == Error(
        "ERR Unrecognized XCLAIM option 'BOGUS'"
    )
    assert r("XCLAIM", "s", "g", "dave", "0", "1-0", "IDLE", "x") == Error(
        "ERR Invalid IDLE option argument for XCLAIM"
    )
    assert r("XCLAIM", "s", "nope", "dave", "0", "1-0") == Error(
        "NOGROUP No such key 's' or consumer group 'nope'"
    )
    accounted(r)


def test_xautoclaim() -> None:
    r = filled(5)
    r("XGROUP", "CREATE", "s", "g", "0")
    r("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", ">")
    r.advance(100)
    got = r("XAUTOCLAIM", "s", "g", "bob", "50", "0", "COUNT", "2")
    assert got == [b"3-0", [[b"1-0", [b"f", b"v1"]], [b"2-0", [b"f", b"v2"]]], []]
    r("XDEL", "s", "3-0")
    got = r("XAUTOCLAIM", "s", "g", "bob", "50", "3-0", "COUNT", "5", "JUSTID")
    assert got == [b"0-0", [b"4-0", b"5-0"], [b"3-0"]]
    assert r("XPENDING", "s", "g") == [4, b"1-0", b"5-0", [[b"bob", b"4"]]]
    assert refused("XAUTOCLAIM", "s", "g", "bob", "50", "0", "COUNT", "0") == (
        "ERR COUNT must be > 0"
    )
    assert refused("XAUTOCLAIM", "s", "g", "bob", "x", "0") == (
        "ERR Invalid min-idle-time argument for XAUTOCLAIM"
    )
    assert r("XAUTOCLAIM", "missing", "g", "bob", "50", "0") == Error(
        "NOGROUP No such key 'missing' or consumer group 'g'"
    )
    accounted(r)


def test_xdel_and_xsetid() -> None:
    r = filled(3)
    assert r("XDEL", "s", "2-0", "2-0", "7-0") == 1
    assert r("XDEL", "missing", "1-0") == 0
    assert r("XDEL", "s", "x") == INVALID_ID
    info = r("XINFO", "STREAM", "s")
    assert info[info.index(b"max-deleted-entry-id") + 1] == b"2-0"
    assert r("XSETID", "s", "2-0") == Error(
        "ERR The ID specified in XSETID is smaller than the target stream top item"
    )
    assert r("XSETID", "s", "5-0", "ENTRIESADDED", "1") == Error(
        "ERR The entries_added specified in XSETID is smaller than the target stream length"
    )
    assert refused("XSETID", "s", "5-0", "MAXDELETEDID", "6-0") == (
        "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id"
    )
    assert (
        refused("XSETID", "s", "5-0", "ENTRIESADDED", "-1") == "ERR entries_added must be positive"
    )
    assert r("XSETID", "s", "5-0", "ENTRIESADDED", "10", "MAXDELETEDID", "4-0") == "OK"
    info = r("XINFO", "STREAM", "s")
    assert info[info.index(b"last-generated-id") + 1] == b"5-0"
    assert info[info.index(b"entries-added") + 1] == 10
    assert info[info.index(b"max-deleted-entry-id") + 1] == b"4-0"
    assert r("XADD", "s", "5-0", "f", "v") == TOO_SMALL
    assert r("XSETID", "missing", "5-0") == Error("ERR no such key")
    r("XDEL", "s", "1-0", "3-0")
    assert r("XLEN", "s") == 0
    assert r("EXISTS", "s") == 1
    accounted(r)


def test_xinfo() -> None:
    r = filled(2)
    r("XGROUP", "CREATE", "s", "g", "0")
    r("XREADGROUP", "GROUP", "g", "alice", "COUNT", "1", "STREAMS", "s", ">")
    r.advance(30)
    assert r("XINFO", "STREAM", "s") == Map(
        [
            b"length",
            2,
            b"radix-tree-keys",
            1,
            b"radix-tree-nodes",
            2,
            b"last-generated-id",
            b"2-0",
            b"max-deleted-entry-id",
            b"0-0",
            b"entries-added",
            2,
            b"recorded-first-entry-id",
            b"1-0",
            b"groups",
            1,
            b"first-entry",
            [b"1-0", [b"f", b"v1"]],
            b"last-entry",
            [b"2-0", [b"f", b"v2"]],
        ]
    )
    full = r("XINFO", "STREAM", "s", "FULL", "COUNT", "1")
    assert isinstance(full, Map)
    assert full[full.index(b"entries") + 1] == [[b"1-0", [b"f", b"v1"]]]
    (group,) = full[full.index(b"groups") + 1]
    assert group[group.index(b"pending") + 1] == [[b"1-0", b"alice", 1_000_000, 1]]
    (consumer,) = group[group.index(b"consumers") + 1]
    assert consumer == Map(
        [
            b"name",
            b"alice",
            b"seen-time",
            1_000_000,
            b"pel-count",
            1,
            b"pending",
            [[b"1-0", 1_000_000, 1]],
        ]
    )
    assert r("XINFO", "CONSUMERS", "s", "g") == [
        Map([b"name", b"alice", b"pending", 1, b"idle", 30])
    ]
    assert r("XINFO", "CONSUMERS", "s", "nope") == Error(
        "NOGROUP No such consumer group 'nope' for key name 's'"
    )
    assert r("XINFO", "STREAM", "missing") == Error("ERR no such key")
    assert r("XINFO", "STREAM", "s", "FULL", "BAD", "1") == Error(
        "ERR unknown subcommand or wrong number of arguments for 'STREAM'. Try XINFO HELP."
    )
    assert r("XINFO", "GROUPS", "s", "x") == Error(
        "ERR wrong number of arguments for 'xinfo|groups' command"
    )
    assert r("XINFO", "HELP")[0].startswith("XINFO <subcommand>")
    r("SET", "str", "x")
    assert r("XINFO", "STREAM", "str") == WRONGTYPE


# -- replication, snapshots, memory -------------------------------------------------------


def test_snapshot_round_trip_keeps_groups_pending_and_digest() -> None:
    r = filled(250)
    r("XDEL", "s", "7-0")
    r("XGROUP", "CREATE", "s", "g", "0", "ENTRIESREAD", "0")
    r("XGROUP", "CREATE", "s", "h", "$")
    r("XREADGROUP", "GROUP", "g", "alice", "COUNT", "5", "STREAMS", "s", ">")
    r("XREADGROUP", "GROUP", "g", "bob", "COUNT", "5", "STREAMS", "s", ">")
    r("XGROUP", "CREATECONSUMER", "s", "h", "idle")
    r("XGROUP", "CREATE", "e", "g", "$", "MKSTREAM")
    restored = StateMachine.restore(r.sm.export_meta(), list(r.sm.export_items()))
    assert restored.digest() == r.sm.digest()
    assert restored._data[b"s"][0] == r.sm._data[b"s"][0]
    assert restored._data[b"e"][0] == r.sm._data[b"e"][0]
    assert restored.memory_used == r.sm.memory_used
    # the restored replica keeps answering like the original (same nodes for ~ trimming)
    r.twin = restored
    r("XTRIM", "s", "MAXLEN", "~", "120")
    assert r("XLEN", "s") == 150
    r("XREADGROUP", "GROUP", "g", "alice", "STREAMS", "s", "0")


def test_a_change_to_a_group_changes_the_digest() -> None:
    r = filled(2)
    r("XGROUP", "CREATE", "s", "g", "0")
    before = r.sm.digest()
    r("XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "s", ">")
    after_read = r.sm.digest()
    assert after_read != before
    r.advance(5)
    r("XCLAIM", "s", "g", "c", "0", "1-0")  # only the delivery time and count change
    assert r.sm.digest() != after_read


def test_memory_is_accounted_and_limited() -> None:
    r = Redis()
    r("XADD", "s", "1-0", "field", "value")
    stream = r.sm._data[b"s"][0]
    assert isinstance(stream, Stream)
    assert stream.nbytes == Stream.OVERHEAD + 10 + 2 * Stream.FIELD_OVERHEAD
    used = r.sm.memory_used
    for sm in (r.sm, r.twin):
        sm.max_memory = used + 100
    oom = Error("OOM command not allowed when used memory > 'maxmemory'.")
    assert unchanged(r, "XADD", "s", "*", "f", "x" * 200) == oom
    assert unchanged(r, "XGROUP", "CREATE", "s", "g", "0") == oom
    for sm in (r.sm, r.twin):
        sm.max_memory = used + Stream.GROUP_OVERHEAD + 10
    assert r("XGROUP", "CREATE", "s", "g", "0") == "OK"
    assert unchanged(r, "XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">") == oom
    assert r("XTRIM", "s", "MAXLEN", "0") == 1  # shrinking always passes
    accounted(r)


def test_command_table_entries() -> None:
    assert dispatch.COMMANDS[b"xadd"].flags == {"write", "denyoom", "fast"}
    assert dispatch.is_write([b"xreadgroup"])  # it changes the pending entries list
    assert dispatch.is_write([b"xclaim"]) and dispatch.is_write([b"xautoclaim"])
    for read in (b"xread", b"xrange", b"xrevrange", b"xlen", b"xpending", b"xinfo"):
        assert not dispatch.is_write([read]), read
    assert dispatch.COMMANDS[b"xgroup"].keys([b"xgroup", b"create", b"k", b"g", b"$"]) == [b"k"]


@pytest.mark.parametrize(
    "argv",
    [
        ("XADD", "s"),
        ("XRANGE", "s", "-"),
        ("XREADGROUP", "GROUP", "g", "c", "STREAMS", "s"),
        ("XCLAIM", "s", "g", "c", "0"),
        ("XPENDING", "s"),
    ],
)
def test_arity(argv: tuple[str, ...]) -> None:
    assert refused(*argv) == f"ERR wrong number of arguments for '{argv[0].lower()}' command"
