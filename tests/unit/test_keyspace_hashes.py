"""Redis hash commands over the state machine (replies, RESP3 types, exact errors)."""

from __future__ import annotations

import pytest
from raftcache.node.keyspace import dispatch, elements, hashes
from raftcache.node.keyspace.reply import Error, Map, Pairs
from raftcache.node.resp.encoder import encoded
from raftcache.node.values import Hash

from tests.unit.redis_harness import Redis, stored, unchanged

WRONGTYPE = Error("WRONGTYPE Operation against a key holding the wrong kind of value")
NOT_INTEGER = Error("ERR value is not an integer or out of range")
SYNTAX = Error("ERR syntax error")


def test_hset_hget_hmset_hsetnx() -> None:
    r = Redis()
    assert r("HSET", "h", "a", "1", "b", "2") == 2
    assert r("HSET", "h", "a", "10", "c", "3") == 1  # a updated, c new
    assert r("HGET", "h", "a") == b"10"
    assert r("HGET", "h", "zz") is None
    assert r("HGET", "missing", "a") is None
    assert r("HMSET", "h", "d", "4", "a", "11") == "OK"
    assert r("HSETNX", "h", "a", "x") == 0
    assert r("HSETNX", "h", "e", "5") == 1
    assert r("HSETNX", "new", "f", "v") == 1
    assert r("HGETALL", "h") == [b"a", b"11", b"b", b"2", b"c", b"3", b"d", b"4", b"e", b"5"]
    assert r("HGETALL", "new") == [b"f", b"v"]
    assert r("HSET", "h", "", "") == 1  # empty field and value are fine
    assert r("HGET", "h", "") == b""


def test_hset_of_an_existing_value_still_counts_as_a_change() -> None:
    r = Redis()
    r("HSET", "h", "a", "1")
    version = r.sm._data[b"h"][1]
    assert r("HSET", "h", "a", "1") == 0
    assert r.sm._data[b"h"][1] > version  # WATCH sees HSET, as in Redis
    version = r.sm._data[b"h"][1]
    assert unchanged(r, "HSETNX", "h", "a", "2") == 0
    assert r.sm._data[b"h"][1] == version


def test_hset_and_hmset_need_field_value_pairs() -> None:
    r = Redis()
    r("HSET", "h", "a", "1")
    for args in (("HSET", "h", "b"), ("HSET", "h", "b", "2", "c")):
        assert unchanged(r, *args) == Error("ERR wrong number of arguments for 'hset' command")
    assert unchanged(r, "hmset", "h", "b", "2", "c") == Error(
        "ERR wrong number of arguments for 'hmset' command"
    )
    assert unchanged(r, "HSETNX", "h", "b") == Error(
        "ERR wrong number of arguments for 'hsetnx' command"
    )
    with pytest.raises(Exception, match="wrong number of arguments for 'hset'"):
        dispatch.validate([b"HSET", b"h", b"a", b"1", b"b"])  # refused before proposing
    assert r("HGETALL", "h") == [b"a", b"1"]


def test_hmget_hgetall_hkeys_hvals_and_their_reply_types() -> None:
    r = Redis()
    r("HSET", "h", "x", "1", "y", "2")
    assert r("HMGET", "h", "x", "nope", "y") == [b"1", None, b"2"]
    assert r("HMGET", "missing", "a", "b") == [None, None]
    got = r("HGETALL", "h")
    assert isinstance(got, Map) and got == [b"x", b"1", b"y", b"2"]
    empty = r("HGETALL", "missing")
    assert isinstance(empty, Map) and empty == []
    assert encoded(got, 3) == b"%2\r\n$1\r\nx\r\n$1\r\n1\r\n$1\r\ny\r\n$1\r\n2\r\n"
    assert encoded(got, 2) == b"*4\r\n$1\r\nx\r\n$1\r\n1\r\n$1\r\ny\r\n$1\r\n2\r\n"
    assert encoded(empty, 3) == b"%0\r\n"
    keys, vals = r("HKEYS", "h"), r("HVALS", "h")
    assert type(keys) is list and keys == [b"x", b"y"]
    assert type(vals) is list and vals == [b"1", b"2"]
    assert r("HKEYS", "missing") == [] and r("HVALS", "missing") == []


def test_hdel_hexists_hlen_hstrlen() -> None:
    r = Redis()
    r("HSET", "h", "a", "1", "b", "22", "c", "333")
    assert r("HEXISTS", "h", "a") == 1
    assert r("HEXISTS", "h", "z") == 0
    assert r("HEXISTS", "missing", "a") == 0
    assert r("HLEN", "h") == 3
    assert r("HLEN", "missing") == 0
    assert r("HSTRLEN", "h", "c") == 3
    assert r("HSTRLEN", "h", "z") == 0
    assert r("HSTRLEN", "missing", "z") == 0
    assert unchanged(r, "HDEL", "h", "z") == 0
    assert unchanged(r, "HDEL", "missing", "a") == 0
    assert r("HDEL", "h", "a", "a", "z") == 1
    assert r("HLEN", "h") == 2
    assert r("HDEL", "h", "b", "c", "d") == 2
    assert b"h" not in stored(r)  # the emptied hash is deleted
    assert r("HGETALL", "h") == []


def test_every_hash_command_refuses_another_type_and_changes_nothing() -> None:
    r = Redis()
    r("SET", "s", "x")
    calls = [
        ("HSET", "s", "a", "1"),
        ("HMSET", "s", "a", "1"),
        ("HSETNX", "s", "a", "1"),
        ("HGET", "s", "a"),
        ("HMGET", "s", "a"),
        ("HGETALL", "s"),
        ("HKEYS", "s"),
        ("HVALS", "s"),
        ("HDEL", "s", "a"),
        ("HEXISTS", "s", "a"),
        ("HLEN", "s"),
        ("HSTRLEN", "s", "a"),
        ("HINCRBY", "s", "a", 1),
        ("HINCRBYFLOAT", "s", "a", 1),
        ("HRANDFIELD", "s"),
        ("HRANDFIELD", "s", 0),
        ("HRANDFIELD", "s", 3, "WITHVALUES"),
        ("HSCAN", "s", 0),
    ]
    for call in calls:
        assert unchanged(r, *call) == WRONGTYPE, call
    assert r("GET", "s") == b"x"


def test_hincrby() -> None:
    r = Redis()
    assert r("HINCRBY", "h", "n", 5) == 5
    assert r("HINCRBY", "h", "n", -7) == -2
    assert r("HGET", "h", "n") == b"-2"
    r("HSET", "h", "big", 2**62)
    assert r("HINCRBY", "h", "big", 2**62 - 1) == 2**63 - 1
    assert r("HINCRBY", "h", "m", -(2**63)) == -(2**63)
    overflow = Error("ERR increment or decrement would overflow")
    assert unchanged(r, "HINCRBY", "h", "big", 1) == overflow
    assert unchanged(r, "HINCRBY", "h", "m", -1) == overflow
    for bad in (" 1", "1 ", "1.5", "abc", "", "01", str(2**63)):
        r("HSET", "h", "bad", bad)
        assert unchanged(r, "HINCRBY", "h", "bad", 1) == Error("ERR hash value is not an integer")
    for bad in ("x", "1.0", " 1", str(2**63), "-0"):
        assert unchanged(r, "HINCRBY", "h", "n", bad) == NOT_INTEGER
        assert unchanged(r, "HINCRBY", "fresh", "n", bad) == NOT_INTEGER
    assert b"fresh" not in stored(r)


def test_hincrbyfloat_adds_in_long_double_and_prints_like_redis() -> None:
    r = Redis()
    assert r("HINCRBYFLOAT", "h", "f", "10.5") == b"10.5"
    assert r("HINCRBYFLOAT", "h", "f", "0.1") == b"10.6"  # a double would print 10.59999..
    assert r("HGET", "h", "f") == b"10.6"
    assert r("HINCRBYFLOAT", "h", "f", "-10.6") == b"0"
    assert r("HINCRBYFLOAT", "h", "g", "5.0e3") == b"5000"
    r("HSET", "h", "i", 17179869184)
    assert r("HINCRBYFLOAT", "h", "i", 17179869184) == b"34359738368"
    assert r("HINCRBYFLOAT", "h", "j", "1e-20") == b"0"  # %.17Lf rounds it away


def test_hincrbyfloat_errors_change_nothing() -> None:
    r = Redis()
    r("HSET", "h", "f", "1", "text", "abc", "sp", " 11", "nul", "1\x002", "inf", "inf")
    r("HSET", "h", "huge", "1e4932")
    assert unchanged(r, "HINCRBYFLOAT", "h", "f", "abc") == Error("ERR value is not a valid float")
    assert unchanged(r, "HINCRBYFLOAT", "h", "f", "nan") == Error("ERR value is not a valid float")
    assert unchanged(r, "HINCRBYFLOAT", "h", "f", "inf") == Error("ERR value is NaN or Infinity")
    assert unchanged(r, "HINCRBYFLOAT", "h", "f", "-inf") == Error("ERR value is NaN or Infinity")
    for field in ("text", "sp", "nul"):
        assert unchanged(r, "HINCRBYFLOAT", "h", field, 1) == Error("ERR hash value is not a float")
    produce = Error("ERR increment would produce NaN or Infinity")
    assert unchanged(r, "HINCRBYFLOAT", "h", "inf", 1) == produce
    assert unchanged(r, "HINCRBYFLOAT", "h", "huge", "1e4932") == produce
    with pytest.raises(Exception, match="valid float"):
        dispatch.validate([b"HINCRBYFLOAT", b"h", b"f", b"x"])


def test_hrandfield_without_count() -> None:
    r = Redis()
    assert r("HRANDFIELD", "missing") is None
    r("HSET", "h", *[x for i in range(10) for x in (f"f{i}", i)])
    seen = {r("HRANDFIELD", "h") for _ in range(200)}
    assert seen == {f"f{i}".encode() for i in range(10)}  # reads differ call to call


def test_hrandfield_with_count() -> None:
    r = Redis()
    fields = {f"f{i}".encode(): str(i).encode() for i in range(10)}
    r("HSET", "h", *[x for kv in fields.items() for x in kv])
    assert r("HRANDFIELD", "h", 0) == []
    assert r("HRANDFIELD", "h", 0, "WITHVALUES") == []
    assert r("HRANDFIELD", "missing", 5) == []
    assert r("HRANDFIELD", "missing", 5, "withvalues") == []
    many = r("HRANDFIELD", "h", -1001)
    assert isinstance(many, list) and len(many) == 1001 and set(many) <= set(fields)
    assert set(many) == set(fields)
    one = r("HRANDFIELD", "h", 1)
    assert isinstance(one, list) and len(one) == 1 and one[0] in fields
    for size in (10, 20):
        got = r("HRANDFIELD", "h", size)
        assert isinstance(got, list) and sorted(got) == sorted(fields)
    for size in (8, 2):
        got = r("HRANDFIELD", "h", size)
        assert isinstance(got, list) and len(set(got)) == size and set(got) <= set(fields)
    pairs = r("HRANDFIELD", "h", -20, "WITHVALUES")
    assert isinstance(pairs, Pairs) and len(pairs) == 20
    assert all(fields[f] == v for f, v in pairs)
    pairs = r("HRANDFIELD", "h", 3, "withvalues")
    assert isinstance(pairs, Pairs) and len({f for f, _ in pairs}) == 3
    wire3, wire2 = encoded(pairs, 3), encoded(pairs, 2)
    assert wire3.startswith(b"*3\r\n*2\r\n") and wire2.startswith(b"*6\r\n$")


def test_hrandfield_bad_arguments() -> None:
    r = Redis()
    r("HSET", "h", "a", 1)
    assert r("HRANDFIELD", "h", "x") == NOT_INTEGER
    assert r("HRANDFIELD", "h", "x", "foo") == NOT_INTEGER  # the count is checked first
    assert r("HRANDFIELD", "h", 1, "foo") == SYNTAX
    assert r("HRANDFIELD", "h", 1, "WITHVALUES", "x") == SYNTAX
    assert r("HRANDFIELD", "h", -(2**63)) == Error(
        "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
    )
    out_of_range = Error("ERR value is out of range")
    assert r("HRANDFIELD", "h", -9223372036854770000, "WITHVALUES") == out_of_range
    assert r("HRANDFIELD", "h", 2**62, "WITHVALUES") == out_of_range
    assert r("HRANDFIELD", "h", 2**62) == [b"a"]  # positive: bounded by the hash
    assert r("HRANDFIELD", "h", -(elements.RANDOM_LIMIT + 1)) == Error(elements.TOO_MANY)
    assert len(r("HRANDFIELD", "h", -elements.RANDOM_LIMIT)) == elements.RANDOM_LIMIT


def test_hrandfield_inside_apply_is_deterministic() -> None:
    r = Redis()
    r("HSET", "h", *[x for i in range(50) for x in (f"f{i}", i)])
    # A read run as a write (MULTI, scripts) draws from the replicated seed.
    from raftcache.node.keyspace.db import Db

    a = Db(r.sm, 0, r.now_ms, write=True)
    b = Db(r.twin, 0, r.now_ms, write=True)
    for args in ([b"HRANDFIELD", b"h"], [b"HRANDFIELD", b"h", b"-30", b"WITHVALUES"]):
        assert dispatch.execute(a, args) == dispatch.execute(b, args)


def test_hscan_small_hash_is_answered_whole() -> None:
    r = Redis()
    assert r("HSCAN", "missing", 0) == [b"0", []]
    assert r("HSCAN", "missing", 0, "COUNT", 0) == [b"0", []]  # options unchecked, as Redis
    r("HSET", "h", "foo", 1, "fab", 2, "fiz", 3, "foobar", 10, 1, "a")
    assert r("HSCAN", "h", 0) == [
        b"0",
        [b"foo", b"1", b"fab", b"2", b"fiz", b"3", b"foobar", b"10", b"1", b"a"],
    ]
    assert r("HSCAN", "h", 0, "MATCH", "foo*", "COUNT", 10000) == [
        b"0",
        [b"foo", b"1", b"foobar", b"10"],
    ]
    assert r("HSCAN", "h", 0, "match", "*") == r("HSCAN", "h", 0)


def test_hscan_large_hash_pages_through_every_field() -> None:
    r = Redis()
    r("HSET", "h", *[x for i in range(1000) for x in (f"key:{i}", i)])
    assert hashes.encoding(r.sm._data[b"h"][0]) == "hashtable"
    cursor, seen, calls = b"0", [], 0
    while True:
        got = r("HSCAN", "h", cursor)
        assert isinstance(got, list)
        cursor, flat = got
        assert len(flat) <= 2 * 12
        seen += flat[::2]
        assert all(f == b"key:" + v for f, v in zip(flat[::2], flat[1::2], strict=True))
        calls += 1
        if cursor == b"0":
            break
    assert sorted(seen) == sorted(f"key:{i}".encode() for i in range(1000))
    assert 80 <= calls <= 110
    got = r("HSCAN", "h", 0, "COUNT", 2000, "MATCH", "key:99?")
    assert isinstance(got, list) and got[0] == b"0"
    assert sorted(got[1][::2]) == [f"key:99{i}".encode() for i in range(10)]


def test_hscan_returns_every_field_present_throughout_despite_writes() -> None:
    r = Redis()
    r("HSET", "h", *[x for i in range(300) for x in (f"stay{i}", i)])
    cursor, seen, step = b"0", set(), 0
    while True:
        got = r("HSCAN", "h", cursor, "COUNT", 7)
        assert isinstance(got, list)
        cursor = got[0]
        seen |= set(got[1][::2])
        step += 1
        r("HSET", "h", f"extra{step}", step)  # grow ...
        r("HDEL", "h", f"extra{step - 1}")  # ... and shrink while scanning
        if cursor == b"0":
            break
    assert {f"stay{i}".encode() for i in range(300)} <= seen


def test_hscan_bad_arguments() -> None:
    r = Redis()
    r("HSET", "h", "a", 1)
    invalid = Error("ERR invalid cursor")
    for cursor in ("x", " 1", "1 ", "18446744073709551616", "+"):
        assert r("HSCAN", "h", cursor) == invalid
    assert r("HSCAN", "h", "") == [b"0", [b"a", b"1"]]  # strtoul takes "" as 0
    assert r("HSCAN", "h", "-1") == [b"0", [b"a", b"1"]]
    assert r("HSCAN", "h", 0, "COUNT", 0) == SYNTAX
    assert r("HSCAN", "h", 0, "COUNT", "x") == NOT_INTEGER
    assert r("HSCAN", "h", 0, "COUNT") == SYNTAX
    assert r("HSCAN", "h", 0, "MATCH") == SYNTAX
    assert r("HSCAN", "h", 0, "TYPE", "string") == SYNTAX
    assert r("HSCAN", "s", "x") == invalid


def test_hash_writes_refused_over_max_memory_change_nothing() -> None:
    r = Redis()
    r("HSET", "h", "a", "1")
    for sm in (r.sm, r.twin):
        sm.max_memory = sm._memory + 100
    oom = Error("OOM command not allowed when used memory > 'maxmemory'.")
    assert unchanged(r, "HSET", "h", "b", "x" * 200) == oom
    assert unchanged(r, "HSETNX", "new", "b", "2") == oom
    assert unchanged(r, "HINCRBY", "other", "n", 1) == oom
    assert unchanged(r, "HINCRBYFLOAT", "h", "new", "1.5") == oom
    assert r("HDEL", "h", "a") == 1  # shrinking is always allowed


def test_hash_encoding_follows_redis_defaults() -> None:
    h = Hash()
    for i in range(128):
        h.set(b"f%d" % i, b"v")
    assert hashes.encoding(h) == "listpack"
    h.set(b"one-more", b"v")
    assert hashes.encoding(h) == "hashtable"
    small = Hash()
    small.set(b"f", b"x" * 64)
    assert hashes.encoding(small) == "listpack"
    small.set(b"g", b"x" * 65)
    assert hashes.encoding(small) == "hashtable"


def test_command_table_entries_match_redis() -> None:
    expected = {
        "hset": (-4, "write denyoom fast"),
        "hmset": (-4, "write denyoom fast"),
        "hsetnx": (4, "write denyoom fast"),
        "hget": (3, "readonly fast"),
        "hmget": (-3, "readonly fast"),
        "hgetall": (2, "readonly"),
        "hkeys": (2, "readonly"),
        "hvals": (2, "readonly"),
        "hdel": (-3, "write fast"),
        "hexists": (3, "readonly fast"),
        "hlen": (2, "readonly fast"),
        "hstrlen": (3, "readonly fast"),
        "hincrby": (4, "write denyoom fast"),
        "hincrbyfloat": (4, "write denyoom fast"),
        "hrandfield": (-2, "readonly"),
        "hscan": (-3, "readonly"),
    }
    for name, (arity, flags) in expected.items():
        spec = dispatch.COMMANDS[name.encode()]
        assert (spec.arity, spec.flags, spec.group) == (arity, frozenset(flags.split()), "hash")
        assert (spec.first_key, spec.last_key, spec.step) == (1, 1, 1)
