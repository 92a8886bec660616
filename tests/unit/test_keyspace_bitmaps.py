"""Redis bitmap commands (SETBIT, GETBIT, BITCOUNT) over the state machine."""

from __future__ import annotations

import random

from raftcache.node.keyspace.reply import Error

from tests.unit.redis_harness import Redis

BAD_OFFSET = Error("ERR bit offset is not an integer or out of range")
BAD_BIT = Error("ERR bit is not an integer or out of range")
WRONGTYPE = Error("WRONGTYPE Operation against a key holding the wrong kind of value")


def test_setbit_grows_the_string_and_answers_the_previous_bit() -> None:
    r = Redis()
    assert r("SETBIT", "k", 1, 1) == 0
    assert r("GET", "k") == b"\x40"
    assert r("SETBIT", "k", 1, 1) == 1
    assert r("SETBIT", "k", 17, 1) == 0
    assert r("GET", "k") == b"\x40\x00\x40"
    assert r("SETBIT", "k", 1, 0) == 1
    assert r("GET", "k") == b"\x00\x00\x40"
    assert r("GETBIT", "k", 17) == 1
    assert r("GETBIT", "k", 1) == 0
    assert r("GETBIT", "k", 10_000) == 0
    assert r("GETBIT", "missing", 3) == 0
    r("SET", "n", "1")  # "1" is 0x31: bits 2, 3 and 7
    assert [r("GETBIT", "n", i) for i in range(8)] == [0, 0, 1, 1, 0, 0, 0, 1]


def test_setbit_keeps_the_ttl() -> None:
    r = Redis()
    r("SET", "k", "x", "PX", 5000)
    r("SETBIT", "k", 0, 1)
    assert 0 < int(r("PTTL", "k")) <= 5000  # type: ignore[arg-type]


def test_bitcount_bytes_and_bits_like_redis() -> None:
    r = Redis()
    r("SET", "s", "foobar")
    assert r("BITCOUNT", "s") == 26
    assert r("BITCOUNT", "s", 0, 0) == 4
    assert r("BITCOUNT", "s", 1, 1) == 6
    assert r("BITCOUNT", "s", 1, 1, "BYTE") == 6
    assert r("BITCOUNT", "s", 5, 30, "BIT") == 17
    assert r("BITCOUNT", "s", -2, -1) == 7
    assert r("BITCOUNT", "s", 4, 1) == 0
    assert r("BITCOUNT", "missing") == 0


def test_bitcount_agrees_with_a_reference_on_random_ranges() -> None:
    r = Redis()
    rng = random.Random(7)
    value = bytes(rng.randrange(256) for _ in range(40))
    r("SET", "v", value)
    bits = "".join(f"{b:08b}" for b in value)
    for _ in range(200):
        start, end = rng.randrange(-400, 400), rng.randrange(-400, 400)
        for unit, total, text in (("BYTE", 40, None), ("BIT", 320, bits)):
            s = max(start + total if start < 0 else start, 0)
            e = min(max(end + total if end < 0 else end, 0), total - 1)
            if s > e:
                want = 0
            elif text is None:
                want = sum(f"{b:08b}".count("1") for b in value[s : e + 1])
            else:
                want = text[s : e + 1].count("1")
            assert r("BITCOUNT", "v", start, end, unit) == want, (start, end, unit)


def test_bad_input_answers_redis_errors_and_changes_nothing() -> None:
    r = Redis()
    r("SET", "k", "a")
    r("HSET", "h", "f", "v")
    assert r("SETBIT", "k", -1, 1) == BAD_OFFSET
    assert r("SETBIT", "k", 4294967296, 1) == BAD_OFFSET
    assert r("SETBIT", "k", "x", 1) == BAD_OFFSET
    assert r("SETBIT", "k", 0, 2) == BAD_BIT
    assert r("SETBIT", "k", 0, -1) == BAD_BIT
    assert r("GETBIT", "k", -1) == BAD_OFFSET
    assert r("SETBIT", "h", 0, 1) == WRONGTYPE
    assert r("GETBIT", "h", 0) == WRONGTYPE
    assert r("BITCOUNT", "h") == WRONGTYPE
    assert r("BITCOUNT", "k", 0) == Error("ERR syntax error")
    assert r("BITCOUNT", "k", 0, 1, "WORD") == Error("ERR syntax error")
    assert r("BITCOUNT", "k", "a", 1) == Error("ERR value is not an integer or out of range")
    assert r("SETBIT", "k", 0) == Error("ERR wrong number of arguments for 'setbit' command")
    assert r("GET", "k") == b"a"
