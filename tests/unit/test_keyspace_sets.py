"""Redis set commands over the state machine (replies, RESP3 types, exact errors)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest
from raftcache.node.keyspace import dispatch, elements, sets
from raftcache.node.keyspace.db import Db
from raftcache.node.keyspace.reply import Error, ReplyT, SetReply
from raftcache.node.resp.encoder import encoded
from raftcache.node.values import Set

from tests.unit.redis_harness import Redis, stored, unchanged

WRONGTYPE = Error("WRONGTYPE Operation against a key holding the wrong kind of value")
NOT_INTEGER = Error("ERR value is not an integer or out of range")
SYNTAX = Error("ERR syntax error")


def members(reply: ReplyT) -> list[bytes]:
    assert isinstance(reply, list)
    return sorted(reply)


def test_sadd_scard_sismember_smismember_smembers() -> None:
    r = Redis()
    assert r("SADD", "s", "a", "b", "a") == 2
    assert r("SADD", "s", "b", "c") == 1
    assert unchanged(r, "SADD", "s", "a") == 0
    assert r("SCARD", "s") == 3
    assert r("SCARD", "missing") == 0
    assert r("SISMEMBER", "s", "a") == 1
    assert r("SISMEMBER", "s", "z") == 0
    assert r("SISMEMBER", "missing", "z") == 0
    assert r("SMISMEMBER", "s", "a", "z", "c") == [1, 0, 1]
    assert r("SMISMEMBER", "missing", "a", "b") == [0, 0]
    got = r("SMEMBERS", "s")
    assert isinstance(got, SetReply) and sorted(got) == [b"a", b"b", b"c"]
    empty = r("SMEMBERS", "missing")
    assert isinstance(empty, SetReply) and empty == []
    assert encoded(empty, 3) == b"~0\r\n" and encoded(empty, 2) == b"*0\r\n"
    assert encoded(got, 3).startswith(b"~3\r\n")


def test_small_integer_sets_list_in_numeric_order_like_an_intset() -> None:
    r = Redis()
    r("SADD", "i", 10, -3, 2, 100)
    assert r("SMEMBERS", "i") == [b"-3", b"2", b"10", b"100"]
    assert r("SSCAN", "i", 0) == [b"0", [b"-3", b"2", b"10", b"100"]]
    assert r("SUNION", "i", "missing") == [b"-3", b"2", b"10", b"100"]
    s = Set()
    for m in (b"1", b"2"):
        s.add(m)
    assert sets.encoding(s) == "intset"
    s.add(b"01")  # not a canonical integer: Redis stores it as a string
    assert sets.encoding(s) == "hashtable"
    big = Set()
    for i in range(513):
        big.add(b"%d" % i)
    assert sets.encoding(big) == "hashtable"
    assert sets.encoding(Set()) == "intset"


def test_srem() -> None:
    r = Redis()
    r("SADD", "s", 1, 2, 3)
    assert unchanged(r, "SREM", "s", 4) == 0
    assert unchanged(r, "SREM", "missing", 1) == 0
    assert r("SREM", "s", 1, 1, 5) == 1
    assert r("SREM", "s", 1, 2, 3, 4, 5, 6) == 2
    assert b"s" not in stored(r)


def test_every_set_command_refuses_another_type_and_changes_nothing() -> None:
    r = Redis()
    r("SET", "str", "x")
    r("SADD", "s", "a")
    calls = [
        ("SADD", "str", "a"),
        ("SREM", "str", "a"),
        ("SMEMBERS", "str"),
        ("SISMEMBER", "str", "a"),
        ("SMISMEMBER", "str", "a"),
        ("SCARD", "str"),
        ("SPOP", "str"),
        ("SPOP", "str", 0),
        ("SRANDMEMBER", "str"),
        ("SRANDMEMBER", "str", 0),
        ("SMOVE", "str", "s", "a"),
        ("SMOVE", "s", "str", "a"),
        ("SINTER", "s", "str"),
        ("SINTER", "missing", "str"),  # every key is checked, even after an empty one
        ("SUNION", "s", "str"),
        ("SDIFF", "missing", "str"),
        ("SINTERSTORE", "d", "s", "str"),
        ("SUNIONSTORE", "d", "s", "str"),
        ("SDIFFSTORE", "d", "s", "str"),
        ("SINTERCARD", 2, "s", "str"),
        ("SINTERCARD", 2, "str", "missing"),
        ("SSCAN", "str", 0),
    ]
    for call in calls:
        assert unchanged(r, *call) == WRONGTYPE, call
    assert r("GET", "str") == b"x"
    assert unchanged(r, "SMOVE", "missing", "str", "a") == 0  # a missing source wins


def test_spop() -> None:
    r = Redis()
    assert unchanged(r, "SPOP", "missing") is None
    assert unchanged(r, "SPOP", "missing", 3) == []
    r("SADD", "s", "a", "b", "c")
    popped = [r("SPOP", "s") for _ in range(3)]
    assert sorted(popped) == [b"a", b"b", b"c"]
    assert b"s" not in stored(r)
    letters = [chr(c).encode() for c in range(ord("a"), ord("z") + 1)]
    r("SADD", "s", *letters)
    got: list[bytes] = []
    for count in (11, 9, 0, 4, 1, 0, 1, 0):
        reply = r("SPOP", "s", count)
        assert isinstance(reply, SetReply) and len(reply) == count
        got += reply
    assert sorted(got) == letters and b"s" not in stored(r)


def test_spop_with_count_paths() -> None:
    r = Redis()
    content = [str(i).encode() for i in range(1, 21)]
    r("SADD", "s", *content)
    assert sorted(r("SPOP", "s", 30), key=int) == content
    assert b"s" not in stored(r)
    for count in (2, 18):
        r("SADD", "s", *content)
        popped = members(r("SPOP", "s", count))
        assert len(popped) == count and r("SCARD", "s") == 20 - count
        assert sorted(popped + members(r("SMEMBERS", "s"))) == sorted(content)
        r("SPOP", "s", 100)


def test_spop_bad_arguments() -> None:
    r = Redis()
    r("SADD", "s", "a")
    positive = Error("ERR value is out of range, must be positive")
    assert unchanged(r, "SPOP", "s", -1) == positive
    assert unchanged(r, "SPOP", "s", "x") == positive  # Redis's text for a non-integer too
    assert unchanged(r, "SPOP", "s", 1, 2) == SYNTAX
    with pytest.raises(Exception, match="syntax error"):
        dispatch.validate([b"SPOP", b"s", b"1", b"2"])
    with pytest.raises(Exception, match="must be positive"):
        dispatch.validate([b"SPOP", b"s", b"-1"])


def test_spop_is_uniform_enough() -> None:
    r = Redis()
    counts: Counter[bytes] = Counter()
    for _ in range(300):
        r("SADD", "s", *[str(i) for i in range(10)])
        counts[r("SPOP", "s")] += 1
    assert set(counts) == {str(i).encode() for i in range(10)}
    assert max(counts.values()) < 60


_SPOP_SCRIPT = """
from tests.unit.redis_harness import Redis
r = Redis()
r("SADD", "s", *[f"m{i}" for i in range(500)])
out = [r("SPOP", "s"), r("SPOP", "s", 7), r("SPOP", "s", 300)]
r("SADD", "s", "late1", "late2")
out += [r("SPOP", "s"), r("SRANDMEMBER", "s", 5), r("SMEMBERS", "s")]
print(repr([sorted(x) if isinstance(x, list) else x for x in out]), r.sm.digest())
"""


def test_spop_picks_the_same_members_in_processes_with_different_hash_seeds() -> None:
    def run(seed: str) -> str:
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run(
            [sys.executable, "-c", _SPOP_SCRIPT],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        )
        return done.stdout

    assert run("1") == run("2")  # the same replies and the same digest


def test_srandmember() -> None:
    r = Redis()
    assert r("SRANDMEMBER", "missing") is None
    assert r("SRANDMEMBER", "missing", 5) == []
    r("SADD", "s", "a", "b", "c")
    seen = {r("SRANDMEMBER", "s") for _ in range(100)}
    assert seen == {b"a", b"b", b"c"}  # reads differ call to call
    assert r("SRANDMEMBER", "s", 0) == []
    assert members(r("SRANDMEMBER", "s", 3)) == [b"a", b"b", b"c"]
    assert members(r("SRANDMEMBER", "s", 100)) == [b"a", b"b", b"c"]
    two = members(r("SRANDMEMBER", "s", 2))
    assert len(set(two)) == 2 and set(two) <= {b"a", b"b", b"c"}
    many = r("SRANDMEMBER", "s", -1000)
    assert type(many) is list and len(many) == 1000
    assert max(Counter(many).values()) < 420
    assert r("SCARD", "s") == 3


def test_srandmember_bad_arguments() -> None:
    r = Redis()
    r("SADD", "s", "a")
    assert r("SRANDMEMBER", "s", "x") == NOT_INTEGER
    assert r("SRANDMEMBER", "s", 1, 2) == SYNTAX
    assert r("SRANDMEMBER", "s", "x", 2) == SYNTAX  # the argument count comes first
    assert r("SRANDMEMBER", "s", -(2**63)) == Error(
        "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807"
    )
    assert r("SRANDMEMBER", "s", -(elements.RANDOM_LIMIT + 1)) == Error(elements.TOO_MANY)


def test_srandmember_inside_apply_is_deterministic() -> None:
    r = Redis()
    r("SADD", "s", *[f"m{i}" for i in range(50)])
    a, b = Db(r.sm, 0, r.now_ms, write=True), Db(r.twin, 0, r.now_ms, write=True)
    for args in ([b"SRANDMEMBER", b"s"], [b"SRANDMEMBER", b"s", b"-9"]):
        assert dispatch.execute(a, args) == dispatch.execute(b, args)


def test_smove() -> None:
    r = Redis()
    r("SADD", "src", "a", "b", "1")
    r("SADD", "dst", "2", "3")
    assert r("SMOVE", "src", "dst", "a") == 1
    assert members(r("SMEMBERS", "src")) == [b"1", b"b"]
    assert members(r("SMEMBERS", "dst")) == [b"2", b"3", b"a"]
    assert unchanged(r, "SMOVE", "src", "dst", "zz") == 0
    assert unchanged(r, "SMOVE", "missing", "dst", "a") == 0
    assert unchanged(r, "SMOVE", "src", "src", "b") == 1
    assert unchanged(r, "SMOVE", "src", "src", "zz") == 0
    assert r("SMOVE", "src", "new", "b") == 1
    assert r("SMEMBERS", "new") == [b"b"]
    r("SADD", "dst", "1")
    version = r.sm._data[b"dst"][1]
    assert r("SMOVE", "src", "dst", "1") == 1  # already there: only the source changes
    assert r.sm._data[b"dst"][1] == version
    assert b"src" not in stored(r)


def test_sinter_sunion_sdiff() -> None:
    r = Redis()
    r("SADD", "a", *range(200))
    r("SADD", "b", *range(195, 395))
    r("SADD", "c", 199, 195, 1000, 2000)
    got = r("SINTER", "a", "b")
    assert isinstance(got, SetReply) and sorted(got, key=int) == [
        b"%d" % i for i in range(195, 200)
    ]
    assert sorted(r("SINTER", "a", "b", "c"), key=int) == [b"195", b"199"]
    assert r("SINTER", "a", "missing") == []
    assert isinstance(r("SINTER", "a", "missing"), SetReply)
    union = r("SUNION", "a", "b", "missing")
    assert isinstance(union, SetReply) and sorted(union, key=int) == [b"%d" % i for i in range(395)]
    assert sorted(r("SDIFF", "a", "b", "c"), key=int) == [b"%d" % i for i in range(195)]
    assert r("SDIFF", "missing", "a") == []
    assert r("SDIFF", "a", "a") == []
    assert sorted(r("SDIFF", "c", "missing"), key=int) == [b"195", b"199", b"1000", b"2000"]
    assert len(r("SINTER", "a", "a", "a")) == 200
    assert len(r("SUNION", "a", "a")) == 200


def test_store_commands_overwrite_any_type_and_delete_on_empty() -> None:
    r = Redis()
    r("SADD", "a", 1, 2, 3)
    r("SADD", "b", 2, 3, 4)
    r("SET", "dst", "string")
    assert r("SINTERSTORE", "dst", "a", "b") == 2
    assert members(r("SMEMBERS", "dst")) == [b"2", b"3"]
    assert r("SUNIONSTORE", "dst", "a", "b") == 4
    assert members(r("SMEMBERS", "dst")) == [b"1", b"2", b"3", b"4"]
    assert r("SDIFFSTORE", "dst", "a", "b") == 1
    assert r("SMEMBERS", "dst") == [b"1"]
    assert r("SUNIONSTORE", "a", "a", "b") == 4  # the destination may be a source
    r("SET", "dst", "string")
    assert r("SINTERSTORE", "dst", "a", "missing") == 0
    assert b"dst" not in stored(r)
    r("HSET", "dst", "f", "v")
    assert r("SDIFFSTORE", "dst", "a", "a") == 0
    assert b"dst" not in stored(r)
    assert r("SUNIONSTORE", "dst", "missing") == 0
    assert unchanged(r, "SINTERSTORE", "nothing", "missing") == 0


def test_store_drops_the_destination_ttl() -> None:
    r = Redis()
    r("SADD", "a", 1)
    r("SET", "dst", "x", "EX", 100)
    assert r("SUNIONSTORE", "dst", "a") == 1
    assert r.sm._data[b"dst"][2] == 0


def test_sintercard() -> None:
    r = Redis()
    r("SADD", "a", *range(200))
    r("SADD", "b", *range(195, 395))
    r("SADD", "c", 199, 195, 1000, 2000)
    assert r("SINTERCARD", 2, "a", "b") == 5
    assert r("SINTERCARD", 2, "a", "b", "LIMIT", 0) == 5
    assert r("SINTERCARD", 2, "a", "b", "limit", 3) == 3
    assert r("SINTERCARD", 2, "a", "b", "LIMIT", 10) == 5
    assert r("SINTERCARD", 3, "a", "b", "c") == 2
    assert r("SINTERCARD", 1, "a") == 200
    assert r("SINTERCARD", 1, "missing") == 0
    assert r("SINTERCARD", 1, "missing", "LIMIT", 10) == 0
    assert r("SINTERCARD", 2, "a", "b", "LIMIT", 1, "LIMIT", 4) == 4


def test_sintercard_bad_arguments() -> None:
    r = Redis()
    r("SADD", "s", "a")
    assert r("SINTERCARD") == Error("ERR wrong number of arguments for 'sintercard' command")
    assert r("SINTERCARD", 1) == Error("ERR wrong number of arguments for 'sintercard' command")
    numkeys = Error("ERR numkeys should be greater than 0")
    for bad in (0, -1, "a", "1.5"):
        assert r("SINTERCARD", bad, "s") == numkeys
    too_many = Error("ERR Number of keys can't be greater than number of args")
    assert r("SINTERCARD", 2, "s") == too_many
    assert r("SINTERCARD", 3, "s", "t") == too_many
    assert r("SINTERCARD", 1, "s", "t") == SYNTAX
    assert r("SINTERCARD", 1, "s", "LIMIT") == SYNTAX
    negative = Error("ERR LIMIT can't be negative")
    assert r("SINTERCARD", 1, "s", "LIMIT", -1) == negative
    assert r("SINTERCARD", 1, "s", "LIMIT", "a") == negative


def test_sscan() -> None:
    r = Redis()
    assert r("SSCAN", "missing", 0) == [b"0", []]
    r("SADD", "s", *[f"ele:{i}" for i in range(100)])
    cursor, seen = b"0", []
    while True:
        got = r("SSCAN", "s", cursor)
        assert isinstance(got, list)
        cursor, page = got
        seen += page
        if cursor == b"0":
            break
    assert sorted(seen) == sorted(f"ele:{i}".encode() for i in range(100))
    r("SADD", "p", "foo", "fab", "fiz", "foobar", 1, 2, 3, 4)
    assert members(r("SSCAN", "p", 0, "MATCH", "foo*", "COUNT", 10000)[1]) == [
        b"foo",
        b"foobar",
    ]
    r("SADD", "mixed", 1, "a")
    assert r("SSCAN", "mixed", 0, "MATCH", "*a*", "COUNT", 100)[1] == [b"a"]
    assert r("SSCAN", "mixed", 0, "MATCH", "*1*", "COUNT", 100)[1] == [b"1"]


def test_sscan_returns_every_member_present_throughout_despite_writes() -> None:
    for k in range(20):
        r = Redis()
        r("SADD", "set", "x")
        numele = 101 + k * 37
        r("SADD", "set", *range(numele))
        remove = [str(j) for j in range(100, numele)]
        cursor, found, iteration = b"0", set(), 0
        while not (cursor == b"0" and iteration):
            got = r("SSCAN", "set", cursor)
            assert isinstance(got, list)
            cursor = got[0]
            found |= set(got[1])
            iteration += 1
            if iteration == 1 + k % 5:
                r("SREM", "set", *remove)
        assert {b"%d" % j for j in range(100)} <= found


def test_sscan_bad_arguments() -> None:
    r = Redis()
    r("SADD", "s", "a")
    assert r("SSCAN", "s", "x") == Error("ERR invalid cursor")
    assert r("SSCAN", "s", 0, "COUNT", 0) == SYNTAX
    assert r("SSCAN", "s", 0, "COUNT", "x") == NOT_INTEGER
    assert r("SSCAN", "s", 0, "FOO", "bar") == SYNTAX


def test_set_writes_refused_over_max_memory_change_nothing() -> None:
    r = Redis()
    r("SADD", "a", "1", "2")
    r("SADD", "b", "x" * 300)
    for sm in (r.sm, r.twin):
        sm.max_memory = sm._memory + 100
    oom = Error("OOM command not allowed when used memory > 'maxmemory'.")
    assert unchanged(r, "SADD", "a", "y" * 200) == oom
    assert unchanged(r, "SADD", "new", "y") == oom
    assert unchanged(r, "SUNIONSTORE", "d", "a", "b") == oom
    assert unchanged(r, "SMOVE", "b", "new", "x" * 300) == oom
    assert r("SADD", "a", "1") == 0  # nothing to add: no memory needed
    assert r("SPOP", "a") in (b"1", b"2")  # shrinking is always allowed


def test_sorted_view_follows_changes() -> None:
    r = Redis()
    r("SADD", "s", *[f"m{i:03}" for i in range(200)])
    for i in range(50):  # SPOP keeps the cached order in step with adds and removes
        r("SADD", "s", f"n{i}")
        r("SPOP", "s")
        r("SREM", "s", f"m{i:03}")
        s = r.sm._data[b"s"][0]
        assert isinstance(s, Set)
        ordered = elements.fresh(s, "sorted")
        assert ordered is None or ordered == sorted(s.members)


def test_command_table_entries_match_redis() -> None:
    expected = {
        "sadd": (-3, "write denyoom fast", (1, 1, 1)),
        "srem": (-3, "write fast", (1, 1, 1)),
        "smembers": (2, "readonly", (1, 1, 1)),
        "sismember": (3, "readonly fast", (1, 1, 1)),
        "smismember": (-3, "readonly fast", (1, 1, 1)),
        "scard": (2, "readonly fast", (1, 1, 1)),
        "spop": (-2, "write fast", (1, 1, 1)),
        "srandmember": (-2, "readonly", (1, 1, 1)),
        "smove": (4, "write fast", (1, 2, 1)),
        "sinter": (-2, "readonly", (1, -1, 1)),
        "sunion": (-2, "readonly", (1, -1, 1)),
        "sdiff": (-2, "readonly", (1, -1, 1)),
        "sinterstore": (-3, "write denyoom", (1, -1, 1)),
        "sunionstore": (-3, "write denyoom", (1, -1, 1)),
        "sdiffstore": (-3, "write denyoom", (1, -1, 1)),
        "sintercard": (-3, "readonly movablekeys", (0, 0, 0)),
        "sscan": (-3, "readonly", (1, 1, 1)),
    }
    for name, (arity, flags, keys) in expected.items():
        spec = dispatch.COMMANDS[name.encode()]
        assert (spec.arity, spec.flags, spec.group) == (arity, frozenset(flags.split()), "set")
        assert (spec.first_key, spec.last_key, spec.step) == keys
    spec = dispatch.COMMANDS[b"sdiffstore"]
    assert spec.keys([b"sdiffstore", b"d", b"a", b"b"]) == [b"d", b"a", b"b"]
