"""Redis list commands over the state machine."""

from __future__ import annotations

from typing import Any

import pytest
from raftcache.node.keyspace import dispatch
from raftcache.node.keyspace.reply import NULL_ARRAY, Error
from raftcache.node.values import Container

from tests.unit.redis_harness import Redis

WRONGTYPE = Error("WRONGTYPE Operation against a key holding the wrong kind of value")
NOT_INTEGER = Error("ERR value is not an integer or out of range")
SYNTAX = Error("ERR syntax error")
POSITIVE = Error("ERR value is out of range, must be positive")


def accounted(r: Redis) -> None:
    """Every container's size and hash match a fresh copy's (incremental upkeep is right)."""
    for value, *_ in r.sm._data.values():
        if isinstance(value, Container):
            fresh = type(value).decode(value.encode())  # type: ignore[attr-defined]
            assert (fresh.nbytes, fresh.acc) == (value.nbytes, value.acc)


def absent(r: Redis, key: str) -> bool:
    return key.encode() not in r.sm._data and key.encode() not in r.twin._data


def lst(r: Redis, key: str = "l") -> Any:
    return r("LRANGE", key, 0, -1)


def with_list(*items: str) -> Redis:
    r = Redis()
    if items:
        r("RPUSH", "l", *items)
    return r


def test_push_and_pushx() -> None:
    r = Redis()
    assert r("LPUSH", "l", "a", "b") == 2
    assert r("RPUSH", "l", "c", "d") == 4
    assert lst(r) == [b"b", b"a", b"c", b"d"]
    assert r("LPUSHX", "l", "x") == 5
    assert r("RPUSHX", "l", "y", "z") == 7
    assert lst(r) == [b"x", b"b", b"a", b"c", b"d", b"y", b"z"]
    assert r("LPUSHX", "none", "x") == 0
    assert r("RPUSHX", "none", "x") == 0
    assert absent(r, "none")
    accounted(r)


def test_push_onto_another_type_is_refused() -> None:
    r = Redis()
    r("SET", "s", "v")
    for cmd in ("LPUSH", "RPUSH", "LPUSHX", "RPUSHX"):
        assert r(cmd, "s", "x") == WRONGTYPE
    assert r("GET", "s") == b"v"
    assert r("LPUSH", "l") == Error("ERR wrong number of arguments for 'lpush' command")


def test_pop_single_and_with_count() -> None:
    r = with_list("a", "b", "c", "d", "e")
    assert r("LPOP", "l") == b"a"
    assert r("RPOP", "l") == b"e"
    assert r("LPOP", "l", 0) == []
    assert r("RPOP", "l", 2) == [b"d", b"c"]
    assert r("LPOP", "l", 10) == [b"b"]
    assert r("LLEN", "l") == 0
    assert absent(r, "l")  # an emptied list is deleted
    assert r("LPOP", "l") is None
    assert r("RPOP", "l", 3) is NULL_ARRAY
    assert r("LPOP", "l", 0) is NULL_ARRAY  # the key lookup comes before count 0
    accounted(r)


def test_pop_bad_input() -> None:
    r = with_list("a", "b")
    r("SET", "s", "v")
    assert r("LPOP", "l", -1) == POSITIVE
    assert r("RPOP", "l", "x") == POSITIVE
    assert r("LPOP", "l", 1, 1) == Error("ERR wrong number of arguments for 'lpop' command")
    assert r("RPOP", "l", 2, 2) == Error("ERR wrong number of arguments for 'rpop' command")
    assert r("LPOP", "s") == WRONGTYPE
    assert r("RPOP", "s", 0) == WRONGTYPE
    assert r("LPOP", "s", -1) == POSITIVE  # the count is parsed before the key's type
    assert lst(r) == [b"a", b"b"]


def test_pop_checks_count_before_proposing() -> None:
    with pytest.raises(Exception, match="must be positive"):
        dispatch.validate([b"LPOP", b"l", b"-1"])
    with pytest.raises(Exception, match="wrong number"):
        dispatch.validate([b"RPOP", b"l", b"1", b"2"])


def test_lmpop() -> None:
    r = with_list("a", "b", "c")
    assert r("LMPOP", 2, "none", "l", "LEFT") == [b"l", [b"a"]]
    assert r("LMPOP", 1, "l", "RIGHT", "COUNT", 5) == [b"l", [b"c", b"b"]]
    assert r("LMPOP", 2, "l", "none", "left", "count", 1) is NULL_ARRAY
    r("SET", "s", "v")
    r("RPUSH", "l", "x")
    assert r("LMPOP", 2, "s", "l", "LEFT") == WRONGTYPE
    assert r("LMPOP", 2, "l", "s", "LEFT") == [b"l", [b"x"]]  # s is never looked at


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((0, "l", "LEFT"), "ERR numkeys should be greater than 0"),
        (("a", "l", "LEFT"), "ERR numkeys should be greater than 0"),
        ((-1, "l", "RIGHT"), "ERR numkeys should be greater than 0"),
        ((1, "l", "bad_where"), "ERR syntax error"),
        ((1, "l", "LEFT", "bar"), "ERR syntax error"),
        ((1, "l", "RIGHT", "LEFT"), "ERR syntax error"),
        ((1, "l", "COUNT"), "ERR syntax error"),
        ((1, "l", "LEFT", "COUNT", 1, "COUNT", 2), "ERR syntax error"),
        ((2, "l", "m", "bad"), "ERR syntax error"),
        ((5, "l", "LEFT"), "ERR syntax error"),
        ((1, "l", "LEFT", "COUNT", 0), "ERR count should be greater than 0"),
        ((1, "l", "RIGHT", "COUNT", "a"), "ERR count should be greater than 0"),
        ((1, "l", "LEFT", "COUNT", -1), "ERR count should be greater than 0"),
    ],
)
def test_lmpop_bad_input(args: tuple[Any, ...], error: str) -> None:
    r = with_list("a")
    assert r("LMPOP", *args) == Error(error)
    assert lst(r) == [b"a"]


def test_llen_lindex() -> None:
    r = with_list("a", "b", "c")
    assert r("LLEN", "l") == 3
    assert r("LLEN", "none") == 0
    assert r("LINDEX", "l", 0) == b"a"
    assert r("LINDEX", "l", -1) == b"c"
    assert r("LINDEX", "l", -3) == b"a"
    assert r("LINDEX", "l", 3) is None
    assert r("LINDEX", "l", -4) is None
    assert r("LINDEX", "none", "x") is None  # a missing key answers before the index
    assert r("LINDEX", "l", "x") == NOT_INTEGER
    r("SET", "s", "v")
    assert r("LLEN", "s") == WRONGTYPE
    assert r("LINDEX", "s", 0) == WRONGTYPE


@pytest.mark.parametrize(
    ("start", "stop", "want"),
    [
        (0, -1, "abcde"),
        (1, 3, "bcd"),
        (-2, -1, "de"),
        (-100, 1, "ab"),
        (3, 100, "de"),
        (6, 2, ""),
        (0, -6, ""),
        (1, 0, ""),
        (-1, -2, ""),
        (5, 10, ""),
    ],
)
def test_lrange(start: int, stop: int, want: str) -> None:
    r = with_list(*"abcde")
    assert r("LRANGE", "l", start, stop) == [c.encode() for c in want]


def test_lrange_bad_input_and_missing_key() -> None:
    r = with_list("a")
    assert r("LRANGE", "none", 0, 1) == []
    assert r("LRANGE", "l", "x", 1) == NOT_INTEGER
    assert r("LRANGE", "none", 0, "99999999999999999999") == NOT_INTEGER
    r("SET", "s", "v")
    assert r("LRANGE", "s", 0, -1) == WRONGTYPE


def test_lset() -> None:
    r = with_list("a", "b", "c")
    assert r("LSET", "l", 1, "B") == "OK"
    assert r("LSET", "l", -1, "C") == "OK"
    assert lst(r) == [b"a", b"B", b"C"]
    accounted(r)
    assert r("LSET", "l", 3, "x") == Error("ERR index out of range")
    assert r("LSET", "l", -4, "x") == Error("ERR index out of range")
    assert r("LSET", "none", 0, "x") == Error("ERR no such key")
    assert r("LSET", "none", "bad", "x") == Error("ERR no such key")  # key before index
    assert r("LSET", "l", "bad", "x") == NOT_INTEGER
    r("SET", "s", "v")
    assert r("LSET", "s", 0, "x") == WRONGTYPE
    assert lst(r) == [b"a", b"B", b"C"]


def test_lset_bumps_the_version_even_for_the_same_value() -> None:
    r = with_list("a")
    before = r.sm._data[b"l"][1]
    r("LSET", "l", 0, "a")
    assert r.sm._data[b"l"][1] > before


@pytest.mark.parametrize(
    ("count", "removed", "left"),
    [(0, 3, "bcd"), (1, 1, "bacad"), (2, 2, "bcad"), (-1, 1, "abacd"), (-2, 2, "abcd")],
)
def test_lrem(count: int, removed: int, left: str) -> None:
    r = with_list(*"abacad")
    assert r("LREM", "l", count, "a") == removed
    assert lst(r) == [c.encode() for c in left]
    accounted(r)


def test_lrem_edges() -> None:
    r = with_list("a", "a")
    assert r("LREM", "l", 0, "z") == 0
    assert r("LREM", "none", 0, "a") == 0
    assert r("LREM", "l", "x", "a") == NOT_INTEGER
    assert r("LREM", "l", 0, "a") == 2
    assert absent(r, "l")
    r("SET", "s", "v")
    assert r("LREM", "s", 0, "a") == WRONGTYPE


@pytest.mark.parametrize(
    ("start", "stop", "left"),
    [
        (0, -1, "abcde"),
        (1, -2, "bcd"),
        (0, 0, "a"),
        (-1, -1, "e"),
        (3, 100, "de"),
        (-100, 1, "ab"),
        (2, 3, "cd"),
    ],
)
def test_ltrim(start: int, stop: int, left: str) -> None:
    r = with_list(*"abcde")
    assert r("LTRIM", "l", start, stop) == "OK"
    assert lst(r) == [c.encode() for c in left]
    accounted(r)


@pytest.mark.parametrize(("start", "stop"), [(5, 10), (2, 1), (0, -6), (-1, -2)])
def test_ltrim_to_nothing_deletes_the_key(start: int, stop: int) -> None:
    r = with_list(*"abcde")
    assert r("LTRIM", "l", start, stop) == "OK"
    assert absent(r, "l")


def test_ltrim_bad_input() -> None:
    r = with_list("a")
    assert r("LTRIM", "none", 0, 1) == "OK"
    assert r("LTRIM", "l", "x", 1) == NOT_INTEGER
    assert r("LTRIM", "none", 0, "x") == NOT_INTEGER
    r("SET", "s", "v")
    assert r("LTRIM", "s", 0, 1) == WRONGTYPE
    assert lst(r) == [b"a"]


def test_linsert() -> None:
    r = with_list(*"abcd")
    assert r("LINSERT", "l", "BEFORE", "a", "0") == 5
    assert r("LINSERT", "l", "after", "d", "9") == 6
    assert r("LINSERT", "l", "AFTER", "b", "x") == 7
    assert r("LINSERT", "l", "before", "c", "y") == 8
    assert lst(r) == [b"0", b"a", b"b", b"x", b"y", b"c", b"d", b"9"]
    accounted(r)
    assert r("LINSERT", "l", "BEFORE", "zz", "q") == -1
    assert r("LINSERT", "none", "BEFORE", "a", "q") == 0
    assert r("LINSERT", "l", "MIDDLE", "a", "q") == SYNTAX
    assert r("LINSERT", "none", "MIDDLE", "a", "q") == SYNTAX  # syntax before the key
    r("SET", "s", "v")
    assert r("LINSERT", "s", "BEFORE", "a", "q") == WRONGTYPE
    assert r("LLEN", "l") == 8


def test_list_edits_keep_accounting_on_long_lists() -> None:
    r = Redis()
    r("RPUSH", "l", *[str(i) for i in range(200)])
    r("LPUSH", "l", "x", "y")
    for pivot in ("0", "50", "150", "199", "y"):
        r("LINSERT", "l", "BEFORE", pivot, "p")
        r("LINSERT", "l", "AFTER", pivot, "q")
    r("LSET", "l", 100, "set")
    r("LREM", "l", 2, "p")
    r("LREM", "l", -2, "q")
    r("LTRIM", "l", 3, -5)
    r("LTRIM", "l", 90, 95)
    accounted(r)
    assert len(lst(r)) == 6


def test_lpos() -> None:
    r = with_list(*"abcdabcd")
    assert r("LPOS", "l", "b") == 1
    assert r("LPOS", "l", "z") is None
    assert r("LPOS", "l", "b", "RANK", 2) == 5
    assert r("LPOS", "l", "b", "RANK", -1) == 5
    assert r("LPOS", "l", "b", "RANK", -2) == 1
    assert r("LPOS", "l", "b", "RANK", 3) is None
    assert r("LPOS", "l", "b", "COUNT", 0) == [1, 5]
    assert r("LPOS", "l", "b", "COUNT", 1) == [1]
    assert r("LPOS", "l", "b", "COUNT", 0, "RANK", -1) == [5, 1]
    assert r("LPOS", "l", "b", "COUNT", 0, "RANK", 2) == [5]
    assert r("LPOS", "l", "z", "COUNT", 0) == []
    assert r("LPOS", "l", "b", "MAXLEN", 1) is None
    assert r("LPOS", "l", "b", "MAXLEN", 2) == 1
    assert r("LPOS", "l", "b", "COUNT", 0, "MAXLEN", 5) == [1]
    assert r("LPOS", "l", "c", "RANK", -1, "MAXLEN", 1) is None
    assert r("LPOS", "l", "c", "RANK", -1, "MAXLEN", 2) == 6
    assert r("LPOS", "none", "a") is None
    least = "-9223372036854775808"  # Redis 7.0 negates it into itself (checked on 7.0.15)
    assert r("LPOS", "l", "b", "RANK", least) == 5
    assert r("LPOS", "l", "b", "RANK", least, "COUNT", 1) == [5, 1]
    assert r("LPOS", "none", "a", "COUNT", 1) == []


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ("RANK", 0),
            "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second"
            " ... or use negative to start from the end of the list",
        ),
        (("RANK", "x"), "ERR value is not an integer or out of range"),
        (("COUNT", -1), "ERR COUNT can't be negative"),
        (("COUNT", "x"), "ERR COUNT can't be negative"),
        (("MAXLEN", -1), "ERR MAXLEN can't be negative"),
        (("RANK",), "ERR syntax error"),
        (("FOO", 1), "ERR syntax error"),
    ],
)
def test_lpos_bad_input(args: tuple[Any, ...], error: str) -> None:
    r = with_list("a")
    assert r("LPOS", "l", "a", *args) == Error(error)
    assert r("LPOS", "none", "a", *args) == Error(error)  # options before the key


def test_lpos_wrong_type() -> None:
    r = Redis()
    r("SET", "s", "v")
    assert r("LPOS", "s", "a") == WRONGTYPE


def test_lmove_and_rpoplpush() -> None:
    r = with_list(*"abc")
    assert r("RPOPLPUSH", "l", "m") == b"c"
    assert lst(r, "m") == [b"c"]
    assert r("LMOVE", "l", "m", "LEFT", "RIGHT") == b"a"
    assert lst(r, "m") == [b"c", b"a"]
    assert r("LMOVE", "l", "m", "left", "left") == b"b"
    assert absent(r, "l")
    assert lst(r, "m") == [b"b", b"c", b"a"]
    assert r("LMOVE", "none", "m", "LEFT", "RIGHT") is None
    assert r("RPOPLPUSH", "none", "m") is None
    accounted(r)


def test_same_key_rotation() -> None:
    r = with_list(*"abc")
    assert r("RPOPLPUSH", "l", "l") == b"c"
    assert lst(r) == [b"c", b"a", b"b"]
    assert r("LMOVE", "l", "l", "LEFT", "RIGHT") == b"c"
    assert lst(r) == [b"a", b"b", b"c"]
    assert r("LMOVE", "l", "l", "RIGHT", "RIGHT") == b"c"
    assert lst(r) == [b"a", b"b", b"c"]
    r2 = with_list("only")
    assert r2("RPOPLPUSH", "l", "l") == b"only"
    assert lst(r2) == [b"only"]
    accounted(r)


def test_lmove_errors_change_nothing() -> None:
    r = with_list("a")
    r("SET", "s", "v")
    assert r("LMOVE", "l", "m", "UP", "LEFT") == SYNTAX
    assert r("LMOVE", "l", "m", "LEFT", "DOWN") == SYNTAX
    assert r("LMOVE", "l", "s", "LEFT", "LEFT") == WRONGTYPE
    assert r("RPOPLPUSH", "l", "s") == WRONGTYPE
    assert r("RPOPLPUSH", "s", "l") == WRONGTYPE
    assert r("RPOPLPUSH", "none", "s") is None  # an empty source never looks at dst
    assert lst(r) == [b"a"]
    assert r("GET", "s") == b"v"


def test_list_commands_in_other_databases() -> None:
    r = Redis()
    r("RPUSH", "l", "a", db=2)
    assert r("LLEN", "l") == 0
    assert r("LRANGE", "l", 0, -1, db=2) == [b"a"]
    assert r("RPOPLPUSH", "l", "m", db=2) == b"a"
    assert r("LRANGE", "m", 0, -1, db=2) == [b"a"]


def test_oom_refuses_growth_and_changes_nothing() -> None:
    r = with_list("a")
    for sm in (r.sm, r.twin):
        sm.max_memory = sm._memory + 100
    oom = Error("OOM command not allowed when used memory > 'maxmemory'.")
    assert r("RPUSH", "l", "x" * 200) == oom
    assert r("LINSERT", "l", "BEFORE", "a", "x" * 200) == oom
    assert r("LSET", "l", 0, "x" * 200) == oom
    assert r("RPOPLPUSH", "l", "new-key") == oom
    assert lst(r) == [b"a"]
    assert r("LSET", "l", 0, "b") == "OK"  # no growth
    assert r("RPOPLPUSH", "l", "l") == b"b"  # a rotation adds nothing


def test_command_table_entries() -> None:
    spec = dispatch.COMMANDS[b"lmove"]
    assert (spec.arity, spec.first_key, spec.last_key, spec.step) == (5, 1, 2, 1)
    assert spec.flags == {"write", "denyoom"}
    assert spec.keys([b"lmove", b"a", b"b", b"LEFT", b"LEFT"]) == [b"a", b"b"]
    assert dispatch.COMMANDS[b"lpush"].flags == {"write", "denyoom", "fast"}
    assert dispatch.COMMANDS[b"lrange"].flags == {"readonly"}
    assert dispatch.COMMANDS[b"lpop"].arity == -2
    for blocking in (b"blpop", b"brpop", b"blmove", b"brpoplpush", b"blmpop"):
        assert "blocking" in dispatch.COMMANDS[blocking].flags  # parked by node/blocking.py


def test_changes_keep_the_ttl() -> None:
    r = with_list("a", "b")
    r("EXPIRE", "l", 100)
    r("LINSERT", "l", "BEFORE", "a", "x")
    r("LSET", "l", 0, "y")
    r("RPOPLPUSH", "l", "l")
    r("LREM", "l", 1, "a")
    assert r("TTL", "l") == 100
    assert lst(r) == [b"b", b"y"]
