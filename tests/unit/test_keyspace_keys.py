"""Redis key commands over the state machine (replies, RESP3 types, exact errors)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from raftcache.node import values as tv
from raftcache.node.keyspace import dispatch, keys
from raftcache.node.keyspace.db import Db, db_key
from raftcache.node.keyspace.glob import compile_glob
from raftcache.node.keyspace.reply import Error, ReplyT, Status
from raftcache.node.resp.encoder import encoded
from raftcache.node.state_machine import KEY_OVERHEAD, Change

from tests.unit.redis_harness import Redis, refused, unchanged

NOT_INTEGER = Error("ERR value is not an integer or out of range")
SYNTAX = Error("ERR syntax error")
SAME = Error("ERR source and destination objects are the same")
DB_RANGE = Error("ERR DB index is out of range")
NOW = 1_700_000_000_000  # cluster time is Unix time in ms


def sorted_keys(reply: ReplyT) -> list[bytes]:
    assert isinstance(reply, list) and all(isinstance(k, bytes) for k in reply)
    return sorted(reply)


def scan_all(r: Redis, *options: Any, db: int | None = None) -> list[bytes]:
    found: list[bytes] = []
    cursor = b"0"
    while True:
        reply = r("SCAN", cursor, *options, db=db)
        assert isinstance(reply, list)
        cursor, page = reply
        found.extend(page)
        if cursor == b"0":
            return found


# -- DEL, UNLINK, EXISTS, TOUCH, TYPE ----------------------------------------------------


@pytest.mark.parametrize("name", ["DEL", "UNLINK"])
def test_del_and_unlink_count_removed_keys(name: str) -> None:
    r = Redis()
    r("MSET", "a", "1", "b", "2", "c", "3")
    r("SET", "e", "x", "PX", 10)
    r.advance(10)
    assert r(name, "a", "b", "a", "nope", "e") == 2  # a duplicate or expired key counts once
    assert r("MGET", "a", "b", "c") == [None, None, b"3"]
    assert unchanged(r, name, "nope") == 0
    assert r(name) == Error(f"ERR wrong number of arguments for '{name.lower()}' command")


def test_delete_is_seen_by_the_change_stream() -> None:
    r = Redis()
    r("SET", "a", "1", db=2)
    r.sm.take_events()
    assert r("DEL", "a", db=2) == 1
    (event,) = r.sm.take_events()
    assert isinstance(event, Change) and (event.kind, event.key) == ("delete", db_key(2, b"a"))


@pytest.mark.parametrize("name", ["EXISTS", "TOUCH"])
def test_exists_and_touch_count_live_keys(name: str) -> None:
    r = Redis()
    r("SET", "a", "1")
    r("SET", "e", "x", "PX", 10)
    r("RPUSH", "l", "x")
    assert r(name, "a", "a", "l", "nope") == 3
    r.advance(10)
    assert r(name, "e") == 0
    assert r(name, "a", db=1) == 0


def test_type_answers_a_status() -> None:
    r = Redis()
    r("SET", "s", "v")
    r("RPUSH", "l", "v")
    assert r("TYPE", "s") == Status("string")
    assert isinstance(r("TYPE", "s"), Status)
    assert r("TYPE", "l") == "list"
    assert r("TYPE", "nope") == "none"
    assert encoded(r("TYPE", "s"), 3) == b"+string\r\n"


# -- EXPIRE family, TTL family, PERSIST --------------------------------------------------


def test_expire_sets_and_replaces_timeouts() -> None:
    r = Redis(NOW)
    r("SET", "x", "foobar")
    assert r("EXPIRE", "x", 5) == 1
    assert r("TTL", "x") == 5
    assert r("EXPIRE", "x", 10) == 1
    assert r("TTL", "x") == 10
    assert r("PEXPIRE", "x", 1500) == 1
    assert (r("PTTL", "x"), r("TTL", "x")) == (1500, 2)  # TTL rounds to the nearest second
    assert r("EXPIREAT", "x", NOW // 1000 + 15) == 1
    assert r("TTL", "x") == 15
    assert r("PEXPIREAT", "x", NOW + 2500) == 1
    assert (r("EXPIRETIME", "x"), r("PEXPIRETIME", "x")) == ((NOW + 3000) // 1000, NOW + 2500)
    r.advance(2500)
    assert (r("GET", "x"), r("EXISTS", "x"), r("TTL", "x")) == (None, 0, -2)


def test_expire_bumps_the_version_and_keeps_the_value() -> None:
    r = Redis(NOW)
    r("RPUSH", "l", "a", "b")
    before = r.sm._data[b"l"][1]
    assert r("EXPIRE", "l", 100) == 1
    assert r.sm._data[b"l"][1] > before  # WATCH sees it
    assert r("LRANGE", "l", 0, -1) == [b"a", b"b"]


def test_ttl_family_for_missing_and_persistent_keys() -> None:
    r = Redis(NOW)
    r("SET", "x", "hello")
    for name in ("TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"):
        assert r(name, "x") == -1
        assert r(name, "nope") == -2


@pytest.mark.parametrize(
    ("setup", "options", "reply", "ttl"),
    [
        ((100,), ("NX",), 0, 100),
        ((), ("NX",), 1, 200),
        ((100,), ("XX",), 1, 200),
        ((), ("XX",), 0, -1),
        ((100,), ("GT",), 1, 200),
        ((300,), ("GT",), 0, 300),
        ((), ("GT",), 0, -1),  # no TTL counts as infinite
        ((100,), ("LT",), 0, 100),
        ((300,), ("LT",), 1, 200),
        ((), ("LT",), 1, 200),
        ((300,), ("LT", "XX"), 1, 200),
        ((), ("LT", "XX"), 0, -1),
        ((300,), ("gt", "xx"), 0, 300),
    ],
)
def test_expire_conditions(
    setup: tuple[int, ...], options: tuple[str, ...], reply: int, ttl: int
) -> None:
    r = Redis(NOW)
    r("SET", "foo", "bar", *(("EX", *setup) if setup else ()))
    assert r("EXPIRE", "foo", 200, *options) == reply
    assert r("TTL", "foo") == ttl


def test_negative_or_past_expire_deletes_the_key() -> None:
    r = Redis(NOW)
    r("SET", "foo", "bar", "EX", 100)
    assert r("EXPIRE", "foo", -10, "LT") == 1
    assert r("TTL", "foo") == -2
    r("SET", "foo", "bar")
    assert r("EXPIRE", "foo", -10, "LT") == 1
    assert r("EXISTS", "foo") == 0
    r("SET", "foo", "bar")
    assert r("PEXPIREAT", "foo", -9223372036854770000) == 1
    assert r("EXISTS", "foo") == 0
    r("SET", "foo", "bar")
    assert r("PEXPIRE", "foo", 0) == 1
    assert r("EXISTS", "foo") == 0
    for name in ("EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT"):
        for option in ("NX", "XX", "GT", "LT"):
            assert unchanged(r, name, "none", 100, option) == 0


def test_pexpireat_far_in_the_future_works() -> None:
    r = Redis(NOW)
    r("SET", "foo", "bar")
    assert r("PEXPIREAT", "foo", 9223372036854770000) == 1
    assert r("PEXPIRETIME", "foo") == 9223372036854770000


def test_expire_errors_change_nothing() -> None:
    r = Redis(NOW)
    r("SET", "foo", "bar")
    gt_lt = "ERR GT and LT options at the same time are not compatible"
    nx_and = "ERR NX and XX, GT or LT options at the same time are not compatible"
    cases = [
        (("EXPIRE", "foo", 200, "LT", "GT"), gt_lt),
        (("EXPIRE", "foo", 200, "NX", "GT"), nx_and),
        (("EXPIRE", "foo", 200, "NX", "LT"), nx_and),
        (("EXPIRE", "foo", 200, "NX", "XX"), nx_and),
        (("EXPIRE", "foo", 200, "AB"), "ERR Unsupported option AB"),
        (("EXPIRE", "foo", 200, "XX", "ab"), "ERR Unsupported option ab"),
        (("EXPIRE", "foo", ""), "ERR value is not an integer or out of range"),
        (("EXPIRE", "foo", "9223372036854776"), "ERR invalid expire time in 'expire' command"),
        (("EXPIRE", "foo", "10000000000000000"), "ERR invalid expire time in 'expire' command"),
        (("EXPIRE", "foo", "18446744073709561"), "ERR invalid expire time in 'expire' command"),
        (("EXPIRE", "foo", "-9223372036854776"), "ERR invalid expire time in 'expire' command"),
        (("expireat", "foo", "-9999999999999999"), "ERR invalid expire time in 'expireat' command"),
        (("EXPIRE", "foo"), "ERR wrong number of arguments for 'expire' command"),
    ]  # fmt: skip
    for args, error in cases:
        assert refused(*args) == error, args
        assert unchanged(r, *args) == Error(error), args
    # Overflow once the base time is added is found at apply time.
    for args, name in [
        (("EXPIRE", "foo", (2**63 - 1 - NOW) // 1000 + 1), "expire"),
        (("PEXPIRE", "foo", 9223372036854770000), "pexpire"),
    ]:
        assert unchanged(r, *args) == Error(f"ERR invalid expire time in '{name}' command")
    assert r("TTL", "foo") == -1


def test_persist() -> None:
    r = Redis(NOW)
    r("SET", "x", "foo", "EX", 100)
    assert r("PERSIST", "x") == 1
    assert r("TTL", "x") == -1
    assert unchanged(r, "PERSIST", "x") == 0
    assert unchanged(r, "PERSIST", "nope") == 0


# -- KEYS, SCAN, RANDOMKEY, DBSIZE --------------------------------------------------------


def test_keys_with_patterns_per_database() -> None:
    r = Redis()
    for key in ("key_x", "key_y", "key_z", "foo_a", "foo_b", "foo_c"):
        r("SET", key, "hello")
    r("SET", "foo_db5", "v", db=5)
    assert sorted_keys(r("KEYS", "foo*")) == [b"foo_a", b"foo_b", b"foo_c"]
    assert len(sorted_keys(r("KEYS", "*"))) == 6
    assert r("KEYS", "*", db=5) == [b"foo_db5"]
    assert sorted_keys(r("KEYS", "key_[xz]")) == [b"key_x", b"key_z"]
    assert r("KEYS", "nothing*") == []
    assert r("DBSIZE") == 6
    assert r("DBSIZE", db=5) == 1


def test_keys_skips_expired_keys_and_handles_the_empty_key() -> None:
    r = Redis()
    r("SET", "", "empty")
    r("SET", "gone", "x", "PX", 5)
    r.advance(5)
    assert r("KEYS", "*") == [b""]  # a lone * matches every key, even the empty one
    assert r("KEYS", "?*") == []


def test_keys_nested_stars_do_not_backtrack_forever() -> None:
    r = Redis()
    r("SET", "a" * 40, 1)
    assert r("KEYS", "a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b") == []
    assert r("KEYS", "a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a") == [b"a" * 40]


def _stringmatch(p: bytes, s: bytes) -> bool:
    """A line-by-line port of Redis 7.0's stringmatchlen_impl, as the reference."""

    def signed(b: int) -> int:
        return b - 256 if b >= 128 else b

    skip = [False]

    def impl(pi: int, si: int) -> bool:
        pl, sl = len(p) - pi, len(s) - si
        while pl and sl:
            c = p[pi]
            if c == 0x2A:  # *
                while pl and pi + 1 < len(p) and p[pi + 1] == 0x2A:
                    pi, pl = pi + 1, pl - 1
                if pl == 1:
                    return True
                while sl:
                    if impl(pi + 1, si):
                        return True
                    if skip[0]:
                        return False
                    si, sl = si + 1, sl - 1
                skip[0] = True
                return False
            if c == 0x3F:  # ?
                si, sl = si + 1, sl - 1
            elif c == 0x5B:  # [
                pi, pl = pi + 1, pl - 1
                negate = pl > 0 and p[pi] == 0x5E
                if negate:
                    pi, pl = pi + 1, pl - 1
                hit = False
                while True:
                    cur = p[pi] if pl > 0 else 0
                    if cur == 0x5C and pl >= 2:
                        pi, pl = pi + 1, pl - 1
                        hit = hit or p[pi] == s[si]
                    elif cur == 0x5D and pl > 0:
                        break
                    elif pl == 0:
                        pi, pl = pi - 1, pl + 1
                        break
                    elif pl >= 3 and p[pi + 1] == 0x2D:
                        lo, hi = sorted((signed(p[pi]), signed(p[pi + 2])))
                        pi, pl = pi + 2, pl - 2
                        hit = hit or lo <= signed(s[si]) <= hi
                    else:
                        hit = hit or cur == s[si]
                    pi, pl = pi + 1, pl - 1
                if hit == negate:
                    return False
                si, sl = si + 1, sl - 1
            else:
                if c == 0x5C and pl >= 2:
                    pi, pl = pi + 1, pl - 1
                if p[pi] != s[si]:
                    return False
                si, sl = si + 1, sl - 1
            pi, pl = pi + 1, pl - 1
            if sl == 0:
                while pi < len(p) and p[pi] == 0x2A:
                    pi, pl = pi + 1, pl - 1
                break
        return pl == 0 and sl == 0

    return impl(0, 0)


def test_glob_matches_redis_stringmatchlen_on_random_patterns() -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    for _ in range(20_000):
        p = bytes(rng.choice(b"ab*?[]^-\\\xff\x80") for _ in range(rng.randrange(8)))
        s = bytes(rng.choice(b"ab[]^-\\*\xff\x80") for _ in range(rng.randrange(6)))
        assert compile_glob(p)(s) == _stringmatch(p, s), (seed, p, s)


@pytest.mark.parametrize(
    ("pattern", "string", "match"),
    [
        (b"h?llo", b"hello", True),
        (b"h*llo", b"heeeello", True),
        (b"h[ae]llo", b"hallo", True),
        (b"h[^e]llo", b"hello", False),
        (b"h[a-b]llo", b"hbllo", True),
        (b"h[b-a]llo", b"hallo", True),  # a reversed range
        (b"h\\*llo", b"h*llo", True),
        (b"h\\*llo", b"hello", False),
        (b"[abc", b"b", True),  # a class without ']' runs to the end
        (b"[a-]", b"]", True),  # the range a..']' (Redis reads it so)
        (b"*", b"", False),  # stringmatchlen never matches an empty string to '*'
        (b"", b"", True),
        (b"\\", b"\\", True),
    ],
)
def test_glob_quirks(pattern: bytes, string: bytes, match: bool) -> None:
    assert compile_glob(pattern)(string) is match


def test_scan_returns_every_key_of_the_database_once() -> None:
    r = Redis()
    names = [f"key:{i}".encode() for i in range(300)]
    for name in names:
        r("SET", name, "v")
    r("SET", "other", "v", db=4)
    assert sorted(scan_all(r, "COUNT", 50)) == sorted(names)
    assert scan_all(r, db=4) == [b"other"]
    assert sorted(scan_all(r, "MATCH", "key:1?")) == [f"key:{i}".encode() for i in range(10, 20)]


def test_scan_keeps_keys_present_throughout_despite_writes() -> None:
    r = Redis()
    for i in range(200):
        r("SET", f"stay:{i}", "v")
    seen: set[bytes] = set()
    cursor, step = b"0", 0
    while True:
        reply = r("SCAN", cursor, "COUNT", 20)
        assert isinstance(reply, list)
        cursor, page = reply
        seen.update(page)
        step += 1
        r("SET", f"new:{step}", "v")
        r("DEL", f"new:{step - 1}")
        if cursor == b"0":
            break
    assert {f"stay:{i}".encode() for i in range(200)} <= seen


def test_scan_type_filter_and_expired_keys() -> None:
    r = Redis()
    r("SET", "s", "v")
    r("RPUSH", "l", "v")
    r("SET", "gone", "v", "PX", 1)
    r.advance(1)
    assert scan_all(r, "TYPE", "LIST") == [b"l"]
    assert scan_all(r, "TYPE", "string") == [b"s"]
    assert scan_all(r, "TYPE", "nosuchtype") == []  # Redis 7.0 does not check the name
    assert sorted(scan_all(r, "MATCH", "*", "COUNT", 1000)) == [b"l", b"s"]


def test_scan_reply_shape_and_bad_input() -> None:
    r = Redis()
    r("SET", "k", "v")
    reply = r("SCAN", 0)
    assert isinstance(reply, list) and len(reply) == 2 and isinstance(reply[0], bytes)
    assert r("SCAN", "") == r("SCAN", 0)  # strtoul reads "" as 0
    assert r("SCAN", "99999999") == [b"0", []]  # past the last bucket: done
    assert r("SCAN", "-1") == [b"0", []]  # C wraps a negative cursor around
    invalid = Error("ERR invalid cursor")
    for cursor in ("x", " 1", "1 ", "1.5", "18446744073709551616", "+", "1" * 30):
        assert r("SCAN", cursor) == invalid, cursor
    assert r("SCAN", 0, "COUNT", 0) == SYNTAX
    assert r("SCAN", 0, "COUNT", "x") == NOT_INTEGER
    assert r("SCAN", 0, "COUNT") == SYNTAX
    assert r("SCAN", 0, "BOGUS", 1) == SYNTAX
    assert r("SCAN", "x", "BOGUS") == invalid  # the cursor is checked first
    assert r("SCAN") == Error("ERR wrong number of arguments for 'scan' command")


@pytest.mark.parametrize("small_store", [keys.SMALL_STORE, 0])  # listing, bucket walk
def test_randomkey(small_store: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "SMALL_STORE", small_store)
    r = Redis()
    assert r("RANDOMKEY") is None
    r("SET", "foo", "x")
    r("SET", "bar", "y")
    r("SET", "elsewhere", "z", db=9)
    seen = set()
    for _ in range(100):
        seen.add(r("RANDOMKEY"))
        r.advance(1)
    assert seen == {b"foo", b"bar"}
    assert r("RANDOMKEY", db=9) == b"elsewhere"
    r("DEL", "foo", "bar")
    assert r("RANDOMKEY") is None
    r("SET", "x", "v", "PX", 5)
    r.advance(5)
    assert r("RANDOMKEY") is None  # only expired keys left


@pytest.mark.parametrize("small_store", [keys.SMALL_STORE, 0])
def test_randomkey_is_the_same_on_every_replica(
    small_store: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keys, "SMALL_STORE", small_store)
    r = Redis()
    for i in range(50):
        r("SET", f"k{i}", "v")
    # MULTI/EXEC and scripts run it inside apply: both replicas must draw the same key.
    picks = [dispatch.execute(Db(sm, 0, r.now_ms, True), [b"RANDOMKEY"]) for sm in (r.sm, r.twin)]
    assert picks[0] == picks[1] is not None


# -- RENAME, RENAMENX, COPY, MOVE ---------------------------------------------------------


def test_rename() -> None:
    r = Redis(NOW)
    r("SET", "a", "hello")
    assert r("RENAME", "a", "b") == "OK"
    assert r("RENAME", "b", "c") == "OK"
    assert (r("GET", "c"), r("EXISTS", "a"), r("EXISTS", "b")) == (b"hello", 0, 0)
    r("SET", "d", "other", "EX", 100)
    assert r("RENAME", "c", "d") == "OK"  # overwrites, and does not inherit d's TTL
    assert (r("GET", "d"), r("TTL", "d")) == (b"hello", -1)
    r("SET", "v", "x", "EX", 100)
    r("RENAME", "v", "w")
    assert r("TTL", "w") == 100  # the TTL moves with the key
    assert r("RENAME", "w", "w") == "OK"
    r("RPUSH", "l", "1", "2")
    r("RENAME", "l", "l2")
    assert r("LRANGE", "l2", 0, -1) == [b"1", b"2"]


def test_renamenx() -> None:
    r = Redis()
    r("SET", "a", "foobar")
    assert r("RENAMENX", "a", "b") == 1
    assert (r("GET", "b"), r("EXISTS", "a")) == (b"foobar", 0)
    r("SET", "a", "foo")
    assert unchanged(r, "RENAMENX", "a", "b") == 0
    assert (r("GET", "a"), r("GET", "b")) == (b"foo", b"foobar")
    assert unchanged(r, "RENAMENX", "a", "a") == 0


def test_rename_of_a_missing_key_is_an_error() -> None:
    r = Redis()
    no_such_key = Error("ERR no such key")
    for name in ("RENAME", "RENAMENX"):
        assert unchanged(r, name, "nokey", "foobar") == no_such_key
        assert unchanged(r, name, "nokey", "nokey") == no_such_key
    r("SET", "e", "x", "PX", 5)
    r.advance(5)
    assert unchanged(r, "RENAME", "e", "f") == no_such_key


def test_copy_within_and_across_databases() -> None:
    r = Redis(NOW)
    r("SET", "mykey", "foobar", "EX", 100)
    assert r("COPY", "mykey", "mynewkey") == 1
    assert (r("GET", "mynewkey"), r("TTL", "mynewkey"), r("DBSIZE")) == (b"foobar", 100, 2)
    assert r("COPY", "mykey", "mynewkey", "DB", 10) == 1
    assert (r("GET", "mynewkey", db=10), r("DBSIZE", db=10)) == (b"foobar", 1)
    r("SET", "mykey2", "hello")
    assert unchanged(r, "COPY", "mykey2", "mynewkey", "DB", 10) == 0
    assert r("COPY", "mykey2", "mynewkey", "db", 10, "replace") == 1
    assert (r("GET", "mynewkey", db=10), r("TTL", "mynewkey", db=10)) == (b"hello", -1)
    assert r("COPY", "mykey", "mykey", "DB", 3) == 1  # the same name in another database
    assert unchanged(r, "COPY", "nope", "x") == 0


def test_copied_containers_are_independent() -> None:
    r = Redis()
    r("RPUSH", "l", "a", "b")
    assert r("COPY", "l", "l2") == 1
    r("RPUSH", "l2", "c")
    assert r("LRANGE", "l", 0, -1) == [b"a", b"b"]
    assert r("LRANGE", "l2", 0, -1) == [b"a", b"b", b"c"]
    r("DEL", "l")
    assert r("LRANGE", "l2", 0, -1) == [b"a", b"b", b"c"]


def test_copy_errors() -> None:
    r = Redis()
    r("SET", "k", "v")
    assert refused("COPY", "k", "n", "DB", "notanumber") == NOT_INTEGER
    assert unchanged(r, "COPY", "k", "n", "DB", "notanumber") == NOT_INTEGER
    assert unchanged(r, "COPY", "k", "n", "DB", 16) == DB_RANGE
    assert unchanged(r, "COPY", "k", "n", "DB", -1) == DB_RANGE
    assert unchanged(r, "COPY", "k", "n", "DB", 2**31) == NOT_INTEGER
    assert unchanged(r, "COPY", "k", "n", "DB") == SYNTAX
    assert unchanged(r, "COPY", "k", "n", "BOGUS") == SYNTAX
    assert unchanged(r, "COPY", "k", "k") == SAME
    assert unchanged(r, "COPY", "k", "k", "DB", 4, db=4) == SAME
    assert unchanged(r, "COPY", "nope", "nope") == SAME  # checked before the lookup


def test_move() -> None:
    r = Redis(NOW)
    r("SET", "mykey", "foobar", "EX", 100)
    assert r("MOVE", "mykey", 10) == 1
    assert (r("EXISTS", "mykey"), r("DBSIZE")) == (0, 0)
    assert (r("GET", "mykey", db=10), r("TTL", "mykey", db=10)) == (b"foobar", 100)
    r("SET", "mykey", "hello")
    assert unchanged(r, "MOVE", "mykey", 10) == 0  # exists in the target database
    assert unchanged(r, "MOVE", "nope", 10) == 0
    assert r("MOVE", "mykey", 0, db=10) == 0
    r("SET", "plain", "v")
    assert r("MOVE", "plain", 3) == 1
    assert r("TTL", "plain", db=3) == -1


def test_move_errors() -> None:
    r = Redis()
    r("SET", "k", "v")
    assert refused("MOVE", "k", "notanumber") == NOT_INTEGER
    assert unchanged(r, "MOVE", "k", "notanumber") == NOT_INTEGER
    assert unchanged(r, "MOVE", "k", 16) == DB_RANGE
    assert unchanged(r, "MOVE", "k", 0) == SAME
    assert unchanged(r, "MOVE", "k", 5, db=5) == SAME


# -- FLUSHDB, FLUSHALL ----------------------------------------------------------------------


def test_flushdb_empties_only_the_selected_database() -> None:
    r = Redis()
    r("MSET", "a", "1", "b", "2")
    r("SET", "c", "3", db=7)
    r("SET", "d", "4", db=8)
    r.sm.take_events()
    assert r("FLUSHDB", db=7) == "OK"
    assert (r("DBSIZE", db=7), r("DBSIZE", db=8), r("DBSIZE")) == (0, 1, 2)
    kinds = sorted((e.kind, e.key) for e in r.sm.take_events() if isinstance(e, Change))
    assert kinds == [("delete", db_key(7, b"c"))]
    assert r("FLUSHDB", "ASYNC") == "OK"
    assert (r("DBSIZE"), r("DBSIZE", db=8)) == (0, 1)
    assert r("FLUSHDB", "sync") == "OK"


def test_flushall_empties_every_database() -> None:
    r = Redis()
    r("SET", "a", "1")
    r("RPUSH", "l", "1", db=15)
    before = r.sm.revision
    assert r("FLUSHALL") == "OK"
    assert len(r.sm) == 0
    assert r.sm.revision == before + 2  # one change per key: WATCH and versions see each
    assert r("FLUSHALL", "ASYNC") == "OK"


def test_flush_syntax() -> None:
    r = Redis()
    r("SET", "a", "1")
    for name in ("FLUSHDB", "FLUSHALL"):
        assert refused(name, "LATER") == SYNTAX
        assert unchanged(r, name, "SYNC", "ASYNC") == SYNTAX
        assert unchanged(r, name, "NOW") == SYNTAX


# -- OBJECT, MEMORY -----------------------------------------------------------------------


def test_object_encoding_of_strings() -> None:
    r = Redis()
    cases = {"n": "12345", "neg": "-5", "big": "9" * 20, "short": "hello", "long": "x" * 45}
    for key, value in cases.items():
        r("SET", key, value)
    got = {key: r("OBJECT", "ENCODING", key) for key in cases}
    assert got == {
        "n": b"int",
        "neg": b"int",
        "big": b"embstr",  # over 64 bits
        "short": b"embstr",
        "long": b"raw",
    }
    r("SET", "e", "x" * 44)
    assert r("OBJECT", "ENCODING", "e") == b"embstr"
    r("INCR", "counter")
    assert r("OBJECT", "encoding", "counter") == b"int"
    assert r("OBJECT", "ENCODING", "nope") is None


def test_object_encoding_of_containers_follows_redis_thresholds() -> None:
    h = tv.Hash()
    h.set(b"f", b"v")
    assert keys.encoding(h) == "listpack"
    h.set(b"f", b"v" * 65)
    assert keys.encoding(h) == "hashtable"
    z = tv.ZSet()
    for i in range(128):
        z.set(b"m%d" % i, i)
    assert keys.encoding(z) == "listpack"
    z.set(b"one-more", 0)
    assert keys.encoding(z) == "skiplist"
    s = tv.Set()
    s.add(b"1")
    s.add(b"-2")
    assert keys.encoding(s) == "intset"
    s.add(b"a")
    assert keys.encoding(s) == "hashtable"
    r = Redis()
    r("RPUSH", "l", "a")
    assert r("OBJECT", "ENCODING", "l") == b"quicklist"


def test_object_refcount_freq_idletime() -> None:
    r = Redis()
    r("SET", "shared", "9999")
    r("SET", "big", "10000")
    r("RPUSH", "l", "a")
    assert r("OBJECT", "REFCOUNT", "shared") == 2147483647  # Redis shares 0..9999
    assert r("OBJECT", "REFCOUNT", "big") == 1
    assert r("OBJECT", "REFCOUNT", "l") == 1
    assert r("OBJECT", "REFCOUNT", "nope") is None
    assert r("OBJECT", "IDLETIME", "l") == 0
    assert r("OBJECT", "FREQ", "l") == Error(keys.LFU_NOT_SELECTED)
    for sm in (r.sm, r.twin):
        sm.max_memory, sm.eviction_policy = 1 << 30, "allkeys-lfu"
    assert r("OBJECT", "REFCOUNT", "shared") == 1  # no sharing under an LFU/LRU limit
    assert r("OBJECT", "FREQ", "l") == 5
    assert r("OBJECT", "IDLETIME", "l") == Error(keys.LFU_SELECTED)


def test_object_subcommand_errors_and_help() -> None:
    r = Redis()
    r("SET", "k", "v")
    assert r("OBJECT") == Error("ERR wrong number of arguments for 'object' command")
    assert r("object", "foo", "k") == Error("ERR unknown subcommand 'foo'. Try OBJECT HELP.")
    assert r("OBJECT", "ENCODING") == Error(
        "ERR wrong number of arguments for 'object|encoding' command"
    )
    assert r("OBJECT", "help", "x") == Error(
        "ERR wrong number of arguments for 'object|help' command"
    )
    help_ = r("object", "HELP")
    assert isinstance(help_, list) and all(isinstance(line, Status) for line in help_)
    assert help_[0] == "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert help_[-2:] == ["HELP", "    Prints this help."]
    assert len(help_) == 15


def test_memory_usage_is_the_accounted_size() -> None:
    r = Redis()
    r("SET", "k", "v" * 100)
    r("SET", "k", "w", db=3)
    assert r("MEMORY", "USAGE", "k") == r.sm.nbytes_of(b"k") == 1 + KEY_OVERHEAD + 100
    assert r("MEMORY", "usage", "k", db=3) == r.sm.nbytes_of(db_key(3, b"k"))
    assert r("MEMORY", "USAGE", "k", "SAMPLES", 0) == 1 + 360 + 100
    assert r("MEMORY", "USAGE", "nope") is None
    assert r("MEMORY", "USAGE", "k", "SAMPLES", -1) == SYNTAX
    assert r("MEMORY", "USAGE", "k", "SAMPLES", "x") == NOT_INTEGER
    assert r("MEMORY", "USAGE", "k", "SAMPLES") == SYNTAX
    assert r("MEMORY", "USAGE") == Error("ERR wrong number of arguments for 'memory|usage' command")
    assert r("MEMORY", "FOO") == Error("ERR unknown subcommand 'FOO'. Try MEMORY HELP.")
    assert r("MEMORY", "PURGE") == "OK"
    assert r("MEMORY", "DOCTOR") == keys.MEMORY_DOCTOR
    help_ = r("MEMORY", "HELP")
    assert isinstance(help_, list) and help_[0].startswith("MEMORY <subcommand>")


# -- the table --------------------------------------------------------------------------


def test_key_commands_follow_redis_command_table() -> None:
    table = {
        "del": (-2, "write", (1, -1, 1), "generic"),
        "unlink": (-2, "write fast", (1, -1, 1), "generic"),
        "exists": (-2, "readonly fast", (1, -1, 1), "generic"),
        "touch": (-2, "readonly fast", (1, -1, 1), "generic"),
        "type": (2, "readonly fast", (1, 1, 1), "generic"),
        "expire": (-3, "write fast", (1, 1, 1), "generic"),
        "pexpire": (-3, "write fast", (1, 1, 1), "generic"),
        "expireat": (-3, "write fast", (1, 1, 1), "generic"),
        "pexpireat": (-3, "write fast", (1, 1, 1), "generic"),
        "ttl": (2, "readonly fast", (1, 1, 1), "generic"),
        "pttl": (2, "readonly fast", (1, 1, 1), "generic"),
        "expiretime": (2, "readonly fast", (1, 1, 1), "generic"),
        "pexpiretime": (2, "readonly fast", (1, 1, 1), "generic"),
        "persist": (2, "write fast", (1, 1, 1), "generic"),
        "keys": (2, "readonly", (0, 0, 0), "generic"),
        "scan": (-2, "readonly", (0, 0, 0), "generic"),
        "randomkey": (1, "readonly", (0, 0, 0), "generic"),
        "rename": (3, "write", (1, 2, 1), "generic"),
        "renamenx": (3, "write fast", (1, 2, 1), "generic"),
        "copy": (-3, "write denyoom", (1, 2, 1), "generic"),
        "move": (3, "write fast", (1, 1, 1), "generic"),
        "object": (-2, "readonly", (2, 2, 1), "generic"),
        "memory": (-2, "readonly", (2, 2, 1), "server"),
        "dbsize": (1, "readonly fast", (0, 0, 0), "server"),
        "flushdb": (-1, "write", (0, 0, 0), "server"),
        "flushall": (-1, "write", (0, 0, 0), "server"),
    }
    for name, (arity, flags, positions, group) in table.items():
        spec = dispatch.COMMANDS[name.encode()]
        assert (spec.arity, spec.flags, spec.group) == (arity, frozenset(flags.split()), group)
        assert (spec.first_key, spec.last_key, spec.step) == positions, name
