"""Redis string commands over the state machine."""

from __future__ import annotations

from raftcache.node.keyspace.reply import Error

from tests.unit.redis_harness import Redis


def test_set_get_with_expiry_and_databases() -> None:
    r = Redis()
    assert r("SET", "k", "v", "EX", 10) == "OK"
    assert r("GET", "k") == b"v"
    assert r("GET", "k", db=3) is None
    r.advance(10_000)
    assert r("GET", "k") is None


def test_set_bad_input_answers_redis_errors_and_changes_nothing() -> None:
    r = Redis()
    r("SET", "k", "v")
    assert r("SET", "k") == Error("ERR wrong number of arguments for 'set' command")
    assert r("SET", "k", "w", "EX", "x") == Error("ERR value is not an integer or out of range")
    assert r("SET", "k", "w", "EX", 0) == Error("ERR invalid expire time in 'set' command")
    assert r("SET", "k", "w", "NX", "XX") == Error("ERR syntax error")
    assert r("GET", "k") == b"v"
