"""The one-attempt forms of the blocking pops (node/keyspace/blocking.py) and what the
leader's blocker puts back when a client goes away mid-pop (node/blocking.py)."""

from __future__ import annotations

import pytest
from raftcache.node.blocking import _undo
from raftcache.node.keyspace.blocking import parse_timeout, waits_on
from raftcache.node.keyspace.reply import NULL_ARRAY, CommandError

from tests.unit.redis_harness import Redis, refused, unchanged


def test_an_attempt_pops_from_the_first_key_with_data_or_answers_the_timeout_reply() -> None:
    r = Redis()
    assert unchanged(r, "BLPOP", "a", "b", 0) is NULL_ARRAY
    r("RPUSH", "b", "1", "2")
    assert r("BLPOP", "a", "b", 0) == [b"b", b"1"]
    assert r("BRPOP", "a", "b", "0.5") == [b"b", b"2"]
    assert r("EXISTS", "b") == 0  # emptied lists are deleted
    assert unchanged(r, "BRPOPLPUSH", "src", "dst", 0) is None
    r("RPUSH", "src", "x")
    assert r("BLMOVE", "src", "dst", "RIGHT", "LEFT", 0) == b"x"
    r("RPUSH", "m", "1", "2", "3")
    assert r("BLMPOP", 0, 2, "none", "m", "LEFT", "COUNT", 2) == [b"m", [b"1", b"2"]]
    r("ZADD", "z", 1, "a", 2, "b")
    assert r("BZPOPMAX", "nz", "z", 0) == [b"z", b"b", 2.0]
    assert r("BZMPOP", 0, 1, "z", "MIN") == [b"z", [[b"a", 1.0]]]
    assert unchanged(r, "BZPOPMIN", "z", 0) is NULL_ARRAY


def test_wrongtype_is_answered_not_waited_on() -> None:
    r = Redis()
    r("SET", "s", "v")
    assert str(unchanged(r, "BLPOP", "s", 0)).startswith("WRONGTYPE")


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"-1", "ERR timeout is negative"),
        (b"abc", "ERR timeout is not a float or out of range"),
        (b"nan", "ERR timeout is not a float or out of range"),
        (b"inf", "ERR timeout is not a float or out of range"),
        (b"1e300", "ERR timeout is not a float or out of range"),
    ],
)
def test_bad_timeouts(raw: bytes, error: str) -> None:
    with pytest.raises(CommandError) as exc:
        parse_timeout(raw)
    assert exc.value.text == error
    assert refused("BLPOP", "k", raw) == error  # refused before anything is proposed


def test_what_each_call_waits_on() -> None:
    assert waits_on([b"BLPOP", b"a", b"b", b"1.5"]) == ([b"a", b"b"], 1.5, NULL_ARRAY)
    assert waits_on([b"blmove", b"s", b"d", b"LEFT", b"RIGHT", b"0"]) == ([b"s"], 0.0, None)
    assert waits_on([b"BLMPOP", b"2", b"2", b"x", b"y", b"RIGHT"])[:2] == ([b"x", b"y"], 2.0)
    assert waits_on([b"BZMPOP", b"0", b"1", b"z", b"MAX"])[0] == [b"z"]
    assert refused("BLMOVE", "a", "b", "UP", "LEFT", 0) == "ERR syntax error"


def test_a_pop_whose_client_left_is_put_back_where_it_came_from() -> None:
    r = Redis()
    r("RPUSH", "l", "a", "b", "c")
    popped = r("BLPOP", "l", 0)
    r(*_undo([b"BLPOP", b"l", b"0"], popped))  # type: ignore[arg-type]
    assert r("LRANGE", "l", 0, -1) == [b"a", b"b", b"c"]
    popped = r("BLMPOP", 0, 1, "l", "RIGHT", "COUNT", 2)
    r(*_undo([b"BLMPOP", b"0", b"1", b"l", b"RIGHT", b"COUNT", b"2"], popped))  # type: ignore[arg-type]
    assert r("LRANGE", "l", 0, -1) == [b"a", b"b", b"c"]
    r("ZADD", "z", "1.5", "m", "2", "n")
    popped = r("BZPOPMIN", "z", 0)
    r(*_undo([b"BZPOPMIN", b"z", b"0"], popped))  # type: ignore[arg-type]
    popped = r("BZMPOP", 0, 1, "z", "MAX", "COUNT", 2)
    r(*_undo([b"BZMPOP", b"0", b"1", b"z", b"MAX", b"COUNT", b"2"], popped))  # type: ignore[arg-type]
    assert r("ZRANGE", "z", 0, -1, "WITHSCORES") == [[b"m", 1.5], [b"n", 2.0]]
    assert _undo([b"BLMOVE", b"s", b"d", b"LEFT", b"LEFT", b"0"], b"x") is None  # moved: kept


def test_a_wake_up_skips_keys_of_another_type_but_not_a_bad_destination() -> None:
    r = Redis()
    r("SET", "s", "string")
    r("RPUSH", "l", "x")
    # the call itself answers WRONGTYPE for its first key; a wake-up skips it
    assert str(unchanged(r, "BLPOP", "s", "l", 0)).startswith("WRONGTYPE")
    assert r("raftcache.woken", "BLPOP", "s", "l", 0) == [b"l", b"x"]
    assert unchanged(r, "raftcache.woken", "BRPOP", "s", 0) is NULL_ARRAY
    assert unchanged(r, "raftcache.woken", "BRPOPLPUSH", "s", "d", 0) is None
    r("RPUSH", "src", "y")
    err = unchanged(r, "raftcache.woken", "BRPOPLPUSH", "src", "s", 0)
    assert str(err).startswith("WRONGTYPE")  # the destination: answered, nothing moved
    r("ZADD", "z", 1, "m")
    assert r("raftcache.woken", "BZPOPMIN", "s", "z", 0) == [b"z", b"m", 1.0]
    r("RPUSH", "m", "1", "2")
    assert r("raftcache.woken", "BLMPOP", 0, 2, "s", "m", "LEFT") == [b"m", [b"1"]]
    r("ZADD", "z2", 2, "n")
    assert r("raftcache.woken", "BZMPOP", 0, 2, "s", "z2", "MIN") == [b"z2", [[b"n", 2.0]]]
