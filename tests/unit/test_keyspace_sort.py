"""SORT and SORT_RO (node/keyspace/sort.py), on two replicas whose digests must agree;
expected replies checked against Redis 7.0.15's behaviour."""

from __future__ import annotations

from raftcache.node.keyspace.reply import Error

from tests.unit.redis_harness import Redis, refused, unchanged


def test_numeric_alpha_desc_and_limit() -> None:
    r = Redis()
    r("RPUSH", "l", "3", "10", "1", "2")
    assert unchanged(r, "SORT", "l") == [b"1", b"2", b"3", b"10"]
    assert unchanged(r, "SORT", "l", "DESC") == [b"10", b"3", b"2", b"1"]
    assert unchanged(r, "SORT", "l", "ALPHA") == [b"1", b"10", b"2", b"3"]
    assert unchanged(r, "SORT", "l", "LIMIT", 1, 2) == [b"2", b"3"]
    assert unchanged(r, "SORT", "l", "LIMIT", -5, -1) == [b"1", b"2", b"3", b"10"]
    assert r("SORT_RO", "l", "DESC", "LIMIT", 0, 1) == [b"10"]
    assert unchanged(r, "SORT", "missing") == []


def test_sets_and_sorted_sets_and_ties_break_on_the_element() -> None:
    r = Redis()
    r("SADD", "s", "b", "a", "c")
    assert r("SORT", "s", "ALPHA") == [b"a", b"b", b"c"]
    r("ZADD", "z", 1, "x", 2, "y", 3, "w")
    assert r("SORT", "z", "BY", "nosort") == [b"x", b"y", b"w"]  # zset order kept
    r("RPUSH", "t", "b", "a", "c")
    r("MSET", "w_a", "1", "w_b", "1", "w_c", "0")
    assert r("SORT", "t", "BY", "w_*") == [b"c", b"a", b"b"]  # a and b tie: by element


def test_by_and_get_patterns_with_hash_fields() -> None:
    r = Redis()
    r("RPUSH", "ids", "1", "2", "3")
    r("HSET", "user_1", "name", "carol", "age", "30")
    r("HSET", "user_2", "name", "alice", "age", "20")
    r("HSET", "user_3", "name", "bob", "age", "25")
    r("SET", "nick_1", "c")
    assert r("SORT", "ids", "BY", "user_*->age") == [b"2", b"3", b"1"]
    assert r("SORT", "ids", "BY", "user_*->name", "ALPHA", "GET", "user_*->name") == [
        b"alice",
        b"bob",
        b"carol",
    ]
    assert r("SORT", "ids", "GET", "#", "GET", "nick_*") == [b"1", b"c", b"2", None, b"3", None]


def test_store_replaces_the_destination_with_a_list() -> None:
    r = Redis()
    r("RPUSH", "l", "2", "1")
    r("SET", "dst", "old string")
    assert r("SORT", "l", "STORE", "dst") == 2
    assert r("LRANGE", "dst", 0, -1) == [b"1", b"2"]
    assert r("SORT", "missing", "STORE", "dst") == 0
    assert r("EXISTS", "dst") == 0  # an empty result deletes the destination


def test_errors() -> None:
    r = Redis()
    r("RPUSH", "l", "1", "x")
    assert unchanged(r, "SORT", "l") == Error(
        "ERR One or more scores can't be converted into double"
    )
    r("SET", "s", "v")
    assert str(unchanged(r, "SORT", "s")).startswith("WRONGTYPE")
    assert refused("SORT", "l", "LIMIT", "a", "1") == "ERR value is not an integer or out of range"
    assert refused("SORT", "l", "FROB") == "ERR syntax error"
    assert refused("SORT_RO", "l", "STORE", "d") == "ERR syntax error"
