"""The one-attempt forms of the blocking pops (node/keyspace/blocking.py), what the
leader's blocker puts back when a client goes away mid-pop (node/blocking.py), and how a
relayed call's attempts take at most once under its request id (node/state_machine.py)."""

from __future__ import annotations

import pytest
from raftcache.node.blocking import _undo
from raftcache.node.engine import call_op
from raftcache.node.keyspace.blocking import parse_timeout, waits_on, with_timeout
from raftcache.node.keyspace.reply import NULL_ARRAY, CommandError
from raftcache.node.state_machine import StateMachine, Value
from raftcache.v1 import command_pb2

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


def _attempt(sm: StateMachine, argv: list[bytes], rid: tuple[str, int] | None = None) -> object:
    op = call_op(argv, 0)
    if rid is not None:
        op.request_id.client_id, op.request_id.seq = rid
    (result,) = sm.apply(command_pb2.Command(now_ms=1000, ops=[op]))
    assert isinstance(result, Value)
    return result.data


def test_a_relayed_call_takes_at_most_once_under_its_request_id() -> None:
    """Attempts of a relayed call share its request id: one that took nothing is forgotten
    (the call keeps trying), the one that took is answered again to a retry with that id (a
    follower sending the call to a new leader) instead of taking a second element."""
    sm = StateMachine()
    first = ("relay-f1", 7)
    assert _attempt(sm, [b"BRPOP", b"q", b"0"], first) is NULL_ARRAY
    _attempt(sm, [b"RPUSH", b"q", b"a", b"b"])
    assert _attempt(sm, [b"raftcache.woken", b"BRPOP", b"q", b"0"], first) == [b"q", b"b"]
    assert _attempt(sm, [b"BRPOP", b"q", b"0.001"], first) == [b"q", b"b"]  # the retry
    assert _attempt(sm, [b"LRANGE", b"q", b"0", b"-1"]) == [b"a"]
    # after a snapshot too, and an older call's id (calls take in any order) still takes
    sm = StateMachine.restore(sm.export_meta(), sm.export_items())  # type: ignore[arg-type]
    assert _attempt(sm, [b"BRPOP", b"q", b"0"], first) == [b"q", b"b"]
    assert _attempt(sm, [b"BLPOP", b"q", b"0"], ("relay-f1", 3)) == [b"q", b"a"]
    assert _attempt(sm, [b"BLMOVE", b"q", b"d", b"LEFT", b"LEFT", b"0"], ("relay-f1", 9)) is None


def test_putting_back_a_take_forgets_it_so_a_later_retry_takes_afresh() -> None:
    sm = StateMachine()
    rid = ("relay-f2", 1)
    _attempt(sm, [b"RPUSH", b"q", b"a", b"b"])
    assert _attempt(sm, [b"BLPOP", b"q", b"0"], rid) == [b"q", b"a"]
    # the check a follower makes when the client left: the take, without taking again
    assert _attempt(sm, [b"raftcache.taken", b"BLPOP", b"q", b"0"], rid) == [b"q", b"a"]
    assert _attempt(sm, [b"raftcache.unpop", b"LPUSH", b"q", b"a"], rid) == 2
    assert _attempt(sm, [b"raftcache.unpop", b"LPUSH", b"q", b"a"], rid) == 0  # done already
    assert _attempt(sm, [b"LRANGE", b"q", b"0", b"-1"]) == [b"a", b"b"]
    assert _attempt(sm, [b"raftcache.taken", b"BLPOP", b"q", b"0"], rid) is NULL_ARRAY
    assert _attempt(sm, [b"BLPOP", b"q", b"0"], rid) == [b"q", b"a"]  # not answered twice
    assert _attempt(sm, [b"LRANGE", b"q", b"0", b"-1"]) == [b"b"]
    assert _attempt(sm, [b"raftcache.taken", b"BLMOVE", b"x", b"y", b"LEFT", b"LEFT", b"0"]) is None
    err = _attempt(sm, [b"raftcache.unpop", b"DEL", b"q", b"b"], rid)
    assert str(err).startswith("ERR del does not put anything back")


def test_a_retried_call_waits_only_what_is_left_of_its_timeout() -> None:
    assert with_timeout([b"BLPOP", b"a", b"b", b"5"], 1.25) == [b"BLPOP", b"a", b"b", b"1.250"]
    assert with_timeout([b"BLMOVE", b"s", b"d", b"LEFT", b"LEFT", b"2"], 0) == [
        *[b"BLMOVE", b"s", b"d", b"LEFT", b"LEFT"],
        b"0.001",  # at least one attempt: never 0, which would mean forever
    ]
    assert with_timeout([b"BRPOPLPUSH", b"s", b"d", b"9"], 2)[3] == b"2.000"
    assert with_timeout([b"BZMPOP", b"9", b"1", b"z", b"MIN"], 2)[1] == b"2.000"
    xg = [b"XREADGROUP", b"GROUP", b"g", b"block", b"COUNT", b"2", b"BLOCK", b"5000"]
    xg += [b"NOACK", b"STREAMS", b"block", b">"]
    assert with_timeout(xg, 0.25) == [*xg[:7], b"250", *xg[8:]]
    assert with_timeout([b"XREAD", b"BLOCK", b"100", b"STREAMS", b"s", b"$"], 0)[2] == b"1"
