"""Redis string commands over the state machine (replies, RESP3 types, exact errors)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from raftcache.node.keyspace import dispatch, longdouble, strings
from raftcache.node.keyspace.reply import Error, Map, ReplyT
from raftcache.node.resp.encoder import encoded

from tests.unit.redis_harness import Redis, refused, unchanged

WRONGTYPE = Error("WRONGTYPE Operation against a key holding the wrong kind of value")
NOT_INTEGER = Error("ERR value is not an integer or out of range")
NOT_FLOAT = Error("ERR value is not a valid float")
SYNTAX = Error("ERR syntax error")
NOW = 1_700_000_000_000  # cluster time is Unix time in ms


def version(r: Redis, key: bytes) -> int:
    return r.sm._data[key][1]


# -- SET and GET -----------------------------------------------------------------------


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
    assert r("SET", "k", "w", "EX", "x") == NOT_INTEGER
    assert r("SET", "k", "w", "EX", 0) == Error("ERR invalid expire time in 'set' command")
    assert r("SET", "k", "w", "NX", "XX") == SYNTAX
    assert r("GET", "k") == b"v"


@pytest.mark.parametrize(
    "options",
    [
        ("NX", "XX"),
        ("XX", "NX"),
        ("EX", "10", "PX", "10"),
        ("EX", "10", "KEEPTTL"),
        ("KEEPTTL", "PXAT", "10"),
        ("EXAT", "10", "EX", "10"),
        ("EX",),
        ("PERSIST",),
        ("BOGUS",),
        ("GET", "EX"),
    ],
)
def test_set_option_conflicts_are_syntax_errors(options: tuple[str, ...]) -> None:
    r = Redis()
    r("SET", "k", "v")
    assert refused("SET", "k", "w", *options) == SYNTAX
    assert unchanged(r, "SET", "k", "w", *options) == SYNTAX


@pytest.mark.parametrize(
    ("options", "reply", "ttl"),
    [
        (("NX", "NX"), None, 100),  # Redis accepts a repeated word
        (("GET", "GET"), b"v", -1),
        (("EX", "5", "EX", "7"), "OK", 7),  # the last value of the same option wins
        (("KEEPTTL", "KEEPTTL"), "OK", 100),
        (("xx", "px", "3000"), "OK", 3),  # case-insensitive
    ],
)
def test_set_repeated_options_are_accepted(
    options: tuple[str, ...], reply: ReplyT, ttl: int
) -> None:
    r = Redis(NOW)
    r("SET", "k", "v", "EX", 100)
    assert r("SET", "k", "w", *options) == reply
    assert r("TTL", "k") == ttl


def test_set_nx_xx_get_combinations() -> None:
    r = Redis()
    assert r("SET", "k", "a", "XX") is None
    assert r("GET", "k") is None
    assert r("SET", "k", "a", "XX", "GET") is None
    assert r("SET", "k", "a", "NX") == "OK"
    assert r("SET", "k", "b", "NX") is None
    assert r("SET", "k", "b", "NX", "GET") == b"a"  # Redis 7.0 allows NX with GET
    assert r("GET", "k") == b"a"
    assert r("SET", "k", "c", "XX", "GET") == b"a"
    assert r("SET", "k", "d", "GET") == b"c"
    assert r("SET", "new", "x", "GET") is None
    assert r("GET", "new") == b"x"


def test_set_get_against_another_type_is_wrongtype_and_changes_nothing() -> None:
    r = Redis()
    r("RPUSH", "l", "a")
    assert unchanged(r, "SET", "l", "v", "GET") == WRONGTYPE
    assert r("TYPE", "l") == "list"
    assert r("SET", "l", "v") == "OK"  # a plain SET replaces any type
    assert r("GET", "l") == b"v"


def test_set_expiry_options_and_keepttl() -> None:
    r = Redis(NOW)
    r("SET", "k", "v", "PX", 1500)
    assert r("PTTL", "k") == 1500
    r("SET", "k", "v", "EXAT", NOW // 1000 + 20)
    assert r("TTL", "k") == 20
    r("SET", "k", "v", "PXAT", NOW + 30_000)
    assert r("PEXPIRETIME", "k") == NOW + 30_000
    r("SET", "k", "w", "KEEPTTL")
    assert r("PEXPIRETIME", "k") == NOW + 30_000
    r("SET", "k", "w")
    assert r("TTL", "k") == -1  # a plain SET drops the TTL
    r("SET", "k", "v", "EX", 5, "XX")
    assert r("TTL", "k") == 5


def test_set_with_a_past_absolute_time_removes_the_key() -> None:
    r = Redis(NOW)
    r("SET", "k", "old")
    assert r("SET", "k", "v", "PXAT", NOW - 1, "GET") == b"old"
    assert r("EXISTS", "k") == 0
    assert r("SET", "k", "v", "EXAT", 1) == "OK"
    assert r("EXISTS", "k") == 0


@pytest.mark.parametrize(
    "args",
    [
        ("EX", "10000000000000000"),
        ("EX", "-9999999999999999"),
        ("EX", "0"),
        ("PX", "-1"),
        ("EXAT", "9223372036854776"),
        ("PX", "9223372036854775807"),  # overflows once now is added
    ],
)
def test_set_invalid_expire_times(args: tuple[str, ...]) -> None:
    r = Redis(NOW)
    r("SET", "k", "v")
    assert unchanged(r, "SET", "k", "w", *args) == Error("ERR invalid expire time in 'set' command")


def test_set_px_just_below_the_limit_is_accepted() -> None:
    r = Redis(NOW)
    assert r("SET", "k", "v", "PXAT", 2**63 - 1) == "OK"
    assert r("PEXPIRETIME", "k") == 2**63 - 1


def test_set_version_changes_on_every_write() -> None:
    r = Redis()
    r("SET", "k", "v")
    first = version(r, b"k")
    r("SET", "k", "v")
    assert version(r, b"k") > first
    v = version(r, b"k")
    assert unchanged(r, "SET", "k", "x", "NX") is None
    assert version(r, b"k") == v


def test_get_wrongtype_and_missing() -> None:
    r = Redis()
    r("RPUSH", "l", "a")
    assert r("GET", "l") == WRONGTYPE
    assert r("GET", "nope") is None
    assert r("SET", "e", "") == "OK"
    assert r("GET", "e") == b""


# -- SETNX, SETEX, PSETEX, GETSET, GETDEL ------------------------------------------------


def test_setnx() -> None:
    r = Redis()
    assert r("SETNX", "k", "a") == 1
    assert unchanged(r, "SETNX", "k", "b") == 0
    assert r("GET", "k") == b"a"
    r("SET", "x", "10", "PX", 5)
    r.advance(5)
    assert r("SETNX", "x", "20") == 1  # an expired key counts as missing
    assert r("GET", "x") == b"20"


def test_setex_and_psetex() -> None:
    r = Redis(NOW)
    assert r("SETEX", "k", 12, "v") == "OK"
    assert r("TTL", "k") == 12
    assert r("PSETEX", "p", 100, "v") == "OK"
    assert r("PTTL", "p") == 100
    r("RPUSH", "l", "a")
    assert r("SETEX", "l", 5, "v") == "OK"  # replaces any type
    for name in ("setex", "psetex"):
        error = Error(f"ERR invalid expire time in '{name}' command")
        assert refused(name, "k", -10, "v") == error
        assert unchanged(r, name.upper(), "k", 0, "v") == error
        assert unchanged(r, name, "k", "x", "v") == NOT_INTEGER
        assert r(name, "k", 1) == Error(f"ERR wrong number of arguments for '{name}' command")
    assert r("GET", "k") == b"v"


def test_getset_returns_the_old_value_and_drops_the_ttl() -> None:
    r = Redis()
    assert r("GETSET", "k", "a") is None
    r("EXPIRE", "k", 100)
    assert r("GETSET", "k", "b") == b"a"
    assert r("TTL", "k") == -1
    r("RPUSH", "l", "a")
    assert unchanged(r, "GETSET", "l", "v") == WRONGTYPE


def test_getdel() -> None:
    r = Redis()
    r("SET", "k", "v")
    assert r("GETDEL", "k") == b"v"
    assert r("EXISTS", "k") == 0
    assert unchanged(r, "GETDEL", "k") is None
    r("RPUSH", "l", "a")
    assert unchanged(r, "GETDEL", "l") == WRONGTYPE


# -- GETEX ------------------------------------------------------------------------------


def test_getex_options() -> None:
    r = Redis(NOW)
    r("SET", "k", "v")
    assert r("GETEX", "k", "EX", 10) == b"v"
    assert r("TTL", "k") == 10
    assert r("GETEX", "k", "px", 10_000) == b"v"
    assert r("PTTL", "k") == 10_000
    assert r("GETEX", "k", "EXAT", NOW // 1000 + 7) == b"v"
    assert r("TTL", "k") == 7
    assert r("GETEX", "k", "PXAT", NOW + 8000) == b"v"
    assert r("PTTL", "k") == 8000
    assert r("GETEX", "k", "PERSIST") == b"v"
    assert r("TTL", "k") == -1
    assert unchanged(r, "GETEX", "k", "PERSIST") == b"v"  # no TTL: nothing to change
    assert unchanged(r, "GETEX", "k") == b"v"


def test_getex_past_absolute_time_deletes_after_answering() -> None:
    r = Redis(NOW)
    r("SET", "k", "v")
    assert r("GETEX", "k", "PXAT", NOW - 5) == b"v"
    assert r("EXISTS", "k") == 0


def test_getex_errors() -> None:
    r = Redis(NOW)
    r("SET", "k", "v", "EX", 100)
    for options in (("KEEPTTL",), ("GET",), ("NX",), ("PERSIST", "EX", 1), ("EX",), ("x",)):
        assert refused("GETEX", "k", *options) == SYNTAX
        assert unchanged(r, "GETEX", "k", *options) == SYNTAX
    invalid = Error("ERR invalid expire time in 'getex' command")
    assert unchanged(r, "GETEX", "k", "EX", "10000000000000000") == invalid
    assert unchanged(r, "GETEX", "k", "EX", "-9999999999999999") == invalid
    assert unchanged(r, "GETEX", "k", "PX", 0) == invalid
    assert unchanged(r, "GETEX", "k", "EX", "ten") == NOT_INTEGER
    # As in Redis, the time is checked only for a string that exists.
    assert unchanged(r, "GETEX", "missing", "EX", "ten") is None
    r("RPUSH", "l", "a")
    assert unchanged(r, "GETEX", "l", "EX", "ten") == WRONGTYPE
    assert r("GETEX") == Error("ERR wrong number of arguments for 'getex' command")


# -- MGET, MSET, MSETNX -----------------------------------------------------------------


def test_mget_answers_nil_for_missing_and_other_types() -> None:
    r = Redis()
    r("SET", "a", "1")
    r("RPUSH", "l", "x")
    assert r("MGET", "a", "nope", "l", "a") == [b"1", None, None, b"1"]


def test_mset_and_msetnx() -> None:
    r = Redis()
    r("SET", "a", "old", "EX", 100)
    assert r("MSET", "a", "1", "b", "2", "a", "3") == "OK"
    assert r("MGET", "a", "b") == [b"3", b"2"]
    assert r("TTL", "a") == -1
    assert unchanged(r, "MSETNX", "c", "1", "a", "x") == 0
    assert r("EXISTS", "c") == 0
    assert r("MSETNX", "c", "1", "d", "2") == 1
    assert r("MSETNX", "e", "1", "e", "2") == 1  # the same new key twice: the last wins
    assert r("GET", "e") == b"2"
    assert r("MSETNX", "e", "3", "e", "4") == 0


def test_mset_odd_arguments_are_an_arity_error_named_after_the_command() -> None:
    r = Redis()
    for name in ("mset", "MSETNX"):
        error = f"ERR wrong number of arguments for '{name.lower()}' command"
        assert refused(name, "x", "10", "y", "foo bar", "z") == error
        assert unchanged(r, name, "x", "10", "y") == Error(error)
        assert r(name, "x") == Error(error)


# -- APPEND, STRLEN, GETRANGE, SETRANGE --------------------------------------------------


def test_append_creates_extends_and_keeps_the_ttl() -> None:
    r = Redis()
    assert r("APPEND", "k", "Hello") == 5
    assert r("OBJECT", "ENCODING", "k") == b"embstr"
    r("EXPIRE", "k", 100)
    assert r("APPEND", "k", " World") == 11
    assert r("GET", "k") == b"Hello World"
    assert r("TTL", "k") == 100
    assert r("OBJECT", "ENCODING", "k") == b"raw"  # Redis appends in place
    assert r("APPEND", "n", "12") == 2
    assert r("OBJECT", "ENCODING", "n") == b"int"
    r("RPUSH", "l", "a")
    assert unchanged(r, "APPEND", "l", "x") == WRONGTYPE


@pytest.mark.parametrize(
    "read",
    [
        ("GET", "k"),
        ("MGET", "k"),
        ("GETRANGE", "k", 0, -1),
        ("GETEX", "k", "PERSIST"),
        ("GETSET", "k", "x"),
        ("GETDEL", "k"),
        ("SET", "k", "x", "GET"),
    ],
)
def test_strings_edited_in_place_read_back_as_plain_bytes(read: tuple[Any, ...]) -> None:
    r = Redis()
    r("SET", "k", "ab")
    r("APPEND", "k", "cd")
    assert r("OBJECT", "ENCODING", "k") == b"raw"
    reply = r(*read)
    value = reply[0] if isinstance(reply, list) else reply
    assert type(value) is bytes and value == b"abcd"  # the RESP encoder wants exact types
    assert encoded(reply, 2).endswith(b"$4\r\nabcd\r\n")


def test_append_and_setrange_refuse_strings_over_the_size_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(strings, "MAX_STRING", 10)
    r = Redis()
    r("SET", "k", "12345")
    too_long = Error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    assert unchanged(r, "APPEND", "k", "678901") == too_long
    assert r("APPEND", "k", "67890") == 10
    assert unchanged(r, "SETRANGE", "k", 8, "abc") == too_long
    assert unchanged(r, "SETRANGE", "new", 10, "a") == too_long


def test_setrange_at_redis_scale_limits() -> None:
    r = Redis()
    too_long = Error("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    assert unchanged(r, "SETRANGE", "k", 512 * 1024 * 1024 - 4, "world") == too_long
    r("SET", "k", "hello")
    assert unchanged(r, "SETRANGE", "k", 512 * 1024 * 1024 - 4, "world") == too_long
    assert unchanged(r, "SETRANGE", "k", 9223372036854775807, "A") == too_long
    offset_range = Error("ERR offset is out of range")
    assert refused("SETRANGE", "k", -1, "world") == offset_range
    assert unchanged(r, "SETRANGE", "k", -1, "world") == offset_range
    assert unchanged(r, "SETRANGE", "k", "x", "world") == NOT_INTEGER


def test_strlen() -> None:
    r = Redis()
    assert r("STRLEN", "nope") == 0
    r("SET", "k", "hello")
    assert r("STRLEN", "k") == 5
    r("SET", "n", "-555")
    assert r("STRLEN", "n") == 4
    r("RPUSH", "l", "a")
    assert r("STRLEN", "l") == WRONGTYPE


def test_setrange_against_missing_string_and_integer_values() -> None:
    r = Redis()
    assert r("SETRANGE", "k", 0, "foo") == 3
    assert r("GET", "k") == b"foo"
    r("DEL", "k")
    assert unchanged(r, "SETRANGE", "k", 0, "") == 0
    assert r("EXISTS", "k") == 0
    assert r("SETRANGE", "k", 1, "foo") == 4
    assert r("GET", "k") == b"\x00foo"
    for start, patch, length, value in [
        (0, "b", 3, b"boo"),
        (0, "", 3, b"foo"),
        (1, "b", 3, b"fbo"),
        (4, "bar", 7, b"foo\x00bar"),
    ]:
        r("SET", "k", "foo")
        assert r("SETRANGE", "k", start, patch) == length
        assert r("GET", "k") == value
    r("SET", "n", "1234")
    assert r("OBJECT", "ENCODING", "n") == b"int"
    assert r("SETRANGE", "n", 0, "") == 4
    assert r("OBJECT", "ENCODING", "n") == b"int"  # nothing set: unchanged
    assert r("SETRANGE", "n", 0, "2") == 4
    assert r("OBJECT", "ENCODING", "n") == b"raw"
    assert r("GET", "n") == b"2234"
    r("SET", "n", "1234")
    assert r("SETRANGE", "n", 5, "2") == 6
    assert r("GET", "n") == b"1234\x002"
    r("RPUSH", "l", "a")
    assert unchanged(r, "SETRANGE", "l", 0, "bar") == WRONGTYPE


def test_setrange_keeps_the_ttl() -> None:
    r = Redis()
    r("SET", "k", "hello", "EX", 50)
    r("SETRANGE", "k", 0, "J")
    assert (r("GET", "k"), r("TTL", "k")) == (b"Jello", 50)


@pytest.mark.parametrize("name", ["GETRANGE", "SUBSTR"])
def test_getrange_and_substr(name: str) -> None:
    r = Redis()
    assert r(name, "nope", 0, -1) == b""
    r("SET", "k", "Hello World")
    for start, end, want in [
        (0, 3, b"Hell"),
        (0, -1, b"Hello World"),
        (-4, -1, b"orld"),
        (5, 3, b""),
        (5, 5000, b" World"),
        (-5000, 10000, b"Hello World"),
        (-1, -5, b""),
        (0, 4294967297, b"Hello World"),
    ]:
        assert r(name, "k", start, end) == want
    r("SET", "n", "1234")
    assert r(name, "n", -3, -1) == b"234"
    assert r(name, "n", 3, 5000) == b"4"
    r("SET", "e", "")
    assert r(name, "e", 0, -1) == b""
    assert r(name, "k", "x", 1) == NOT_INTEGER
    r("RPUSH", "l", "a")
    assert r(name, "l", 0, 1) == WRONGTYPE


def test_getrange_matches_tcl_string_range_on_random_input() -> None:
    rng = random.Random(5)
    r = Redis()
    for _ in range(200):
        value = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        r("SET", "bin", value)
        start, end = rng.randrange(-50, 50), rng.randrange(-50, 50)
        n = len(value)
        if start < 0 and end < 0 and start > end:
            want = b""
        else:
            s = max(start + n if start < 0 else start, 0)
            e = min(max(end + n if end < 0 else end, 0), n - 1)
            want = value[s : e + 1] if s <= e else b""
        assert r("GETRANGE", "bin", start, end) == want, (value, start, end)


# -- counters ---------------------------------------------------------------------------


def test_incr_decr_family() -> None:
    r = Redis()
    assert r("INCR", "n") == 1
    assert r("INCR", "n") == 2
    r("SET", "n", "100")
    assert r("INCR", "n") == 101
    r("SET", "n", "17179869184")
    assert r("INCRBY", "n", "17179869184") == 34359738368
    assert r("DECRBY", "n", "34359738369") == -1
    assert r("DECR", "n") == -2
    r("SET", "n", 5, "EX", 100)
    assert r("INCRBY", "n", -10) == -5
    assert r("TTL", "n") == 100  # counters keep the TTL
    assert r("OBJECT", "ENCODING", "n") == b"int"


@pytest.mark.parametrize("value", ["    11", "11    ", " 11 ", "1.5", "", "+1", "-0", "01", "abc"])
def test_incr_refuses_values_that_are_not_exact_integers(value: str) -> None:
    r = Redis()
    r("SET", "n", value)
    for args in (("INCR", "n"), ("DECR", "n"), ("INCRBY", "n", 2), ("DECRBY", "n", 2)):
        assert unchanged(r, *args) == NOT_INTEGER


def test_incr_overflow_and_bad_increments() -> None:
    r = Redis()
    overflow = Error("ERR increment or decrement would overflow")
    r("SET", "n", str(2**63 - 1))
    assert unchanged(r, "INCR", "n") == overflow
    r("SET", "n", str(-(2**63)))
    assert unchanged(r, "DECR", "n") == overflow
    assert unchanged(r, "INCRBY", "n", -1) == overflow
    r("SET", "x", 0)
    decrement = "ERR decrement would overflow"
    assert refused("DECRBY", "x", "-9223372036854775808") == decrement
    assert unchanged(r, "DECRBY", "x", "-9223372036854775808") == Error(decrement)
    assert refused("INCRBY", "x", "1.5") == NOT_INTEGER
    assert unchanged(r, "INCRBY", "x", "9223372036854775808") == NOT_INTEGER
    r("RPUSH", "l", "1")
    assert unchanged(r, "INCR", "l") == WRONGTYPE


def test_incrbyfloat() -> None:
    r = Redis()
    assert r("INCRBYFLOAT", "f", 1) == b"1"
    assert r("INCRBYFLOAT", "f", 0.25) == b"1.25"
    assert r("GET", "f") == b"1.25"
    r("SET", "f", "1.5", "EX", 100)
    assert r("INCRBYFLOAT", "f", "1.5") == b"3"
    assert r("TTL", "f") == 100
    r("SET", "f", "17179869184")
    assert r("INCRBYFLOAT", "f", "1.5") == b"17179869185.5"
    r("SET", "f", "1")
    assert r("INCRBYFLOAT", "f", "-1.1") == b"-0.1"
    r("SET", "f", "5.0e3")
    assert r("INCRBYFLOAT", "f", "2.0e2") == b"5200"
    r("DEL", "f")
    r("INCRBYFLOAT", "f", repr(1 / 41))
    assert r("INCRBYFLOAT", "f", repr(-1 / 41)) == b"0"  # no negative zero


def test_incrbyfloat_uses_extended_precision_like_redis_on_x86() -> None:
    r = Redis()
    r("INCRBYFLOAT", "f", "0.1")
    assert r("INCRBYFLOAT", "f", "0.2") == b"0.3"  # a double would say 0.30000000000000004
    r("SET", "f", "10.50")
    assert r("INCRBYFLOAT", "f", "0.1") == b"10.6"
    big = r("INCRBYFLOAT", "big", "1e400")  # beyond a double's range; every digit printed
    assert isinstance(big, bytes) and len(big) == 401
    assert big.startswith(b"10000000000000000000281880683947586514586453433629")


def test_incrbyfloat_errors() -> None:
    r = Redis()
    for value in ("    11", "11    ", " 11 ", "1\x002", "nan", "abc", ""):
        r("SET", "f", value)
        assert unchanged(r, "INCRBYFLOAT", "f", "1.0") == NOT_FLOAT
    r("SET", "f", "0")
    would = Error("ERR increment would produce NaN or Infinity")
    assert unchanged(r, "INCRBYFLOAT", "f", "+inf") == would
    r("SET", "f", "inf")
    assert unchanged(r, "INCRBYFLOAT", "f", "-inf") == would
    r("SET", "f", "1.18e4932")
    assert unchanged(r, "INCRBYFLOAT", "f", "1.18e4932") == would  # overflows
    for increment in ("nan", "1e5000", "1e-5000", " 1", "1 ", "0x", "1e", "abc"):
        assert refused("INCRBYFLOAT", "f", increment) == NOT_FLOAT
        assert unchanged(r, "INCRBYFLOAT", "f", increment) == NOT_FLOAT
    r("RPUSH", "l", "1")
    assert unchanged(r, "INCRBYFLOAT", "l", "1") == WRONGTYPE


@pytest.mark.parametrize(
    ("a", "b", "printed"),
    [  # Redis 7.0 on x86-64 (strtold, 80-bit addition, "%.17Lf")
        ("0.1", "0.2", "0.3"),
        ("10.50", "0.1", "10.6"),
        ("1", "-1.1", "-0.1"),
        ("3.0", "1e-18", "3"),
        ("1.5e-10", "0", "0.00000000015"),
        ("0x1p-2", "0", "0.25"),
        ("-0.0", "-0.0", "0"),
        ("123456789012345678901234567890", "0.5", "123456789012345678899921813504"),
        ("0.3333333333333333", "0", "0.3333333333333333"),
        ("2.5e-17", "0", "0.00000000000000002"),
        ("-2.5e-17", "0", "-0.00000000000000002"),
        ("-1e-20", "0", "0"),
        ("1.00000000000000001", "0", "1.00000000000000001"),
        ("9223372036854775807", "1", "9223372036854775808"),
        ("Infinity", "0", None),
    ],
)
def test_long_double_sums_print_like_glibc(a: str, b: str, printed: str | None) -> None:
    x, y = longdouble.parse(a.encode()), longdouble.parse(b.encode())
    assert x is not None and y is not None
    total = longdouble.add(x, y)
    assert (None if total is None else longdouble.format_human(total).decode()) == printed


def test_long_double_parse_limits() -> None:
    assert longdouble.parse(b"1e4932") is not None
    assert longdouble.parse(b"1.2e4932") is None  # overflow
    assert longdouble.parse(b"3.7e-4951") is not None  # the smallest subnormal
    assert longdouble.parse(b"1e-4952") is None  # underflows to zero
    assert longdouble.parse(b"0e999999999999") == 0
    assert longdouble.parse(b"1." + b"0" * 5117) == 1
    assert longdouble.parse(b"1." + b"0" * 5118) is None  # MAX_LONG_DOUBLE_CHARS
    assert longdouble.parse(b"0x1p16384") is None
    assert longdouble.parse(b"-INF") == float("-inf")
    assert longdouble.parse(b"nan(1)") is None


# -- LCS --------------------------------------------------------------------------------

RNA1 = (
    "CACCTTCCCAGGTAACAAACCAACCAACTTTCGATCTCTTGTAGATCTGTTCTCTAAACGAACTTTAAAATCTGTGTGGCTGTCAC"
    "TCGGCTGCATGCTTAGTGCACTCACGCAGTATAATTAATAACTAATTACTGTCGTTGACAGGACACGAGTAACTCGTCTATCTTCT"
    "GCAGGCTGCTTACGGTTTCGTCCGTGTTGCAGCCGATCATCAGCACATCTAGGTTTCGTCCGGGTGTG"
)
RNA2 = (
    "ATTAAAGGTTTATACCTTCCCAGGTAACAAACCAACCAACTTTCGATCTCTTGTAGATCTGTTCTCTAAACGAACTTTAAAATCTG"
    "TGTGGCTGTCACTCGGCTGCATGCTTAGTGCACTCACGCAGTATAATTAATAACTAATTACTGTCGTTGACAGGACACGAGTAACT"
    "CGTCTATCTTCTGCAGGCTGCTTACGGTTTCGTCCGTGTTGCAGCCGATCATCAGCACATCTAGGTTT"
)
RNA_LCS = RNA2[13:]


def test_lcs_redis_test_suite_cases() -> None:
    r = Redis()
    r("SET", "v1", RNA1)
    r("SET", "v2", RNA2)
    assert r("LCS", "v1", "v2") == RNA_LCS.encode()
    assert r("LCS", "v1", "v2", "LEN") == len(RNA_LCS)
    ranges = [
        [[238, 238], [239, 239], 1],
        [[236, 236], [238, 238], 1],
        [[229, 230], [236, 237], 2],
        [[224, 224], [235, 235], 1],
        [[1, 222], [13, 234], 222],
    ]
    idx = r("LCS", "v1", "v2", "IDX")
    assert idx == Map([b"matches", [m[:2] for m in ranges], b"len", 227])
    assert isinstance(idx, Map)
    assert encoded(idx, 3).startswith(b"%2\r\n$7\r\nmatches\r\n*5\r\n")
    assert r("LCS", "v1", "v2", "IDX", "WITHMATCHLEN") == [b"matches", ranges, b"len", 227]
    got = r("LCS", "v1", "v2", "idx", "withmatchlen", "minmatchlen", 5)
    assert got == [b"matches", [ranges[-1]], b"len", 227]


def test_lcs_missing_keys_and_errors() -> None:
    r = Redis()
    assert r("LCS", "a", "b") == b""
    assert r("LCS", "a", "b", "LEN") == 0
    assert r("LCS", "a", "b", "IDX") == [b"matches", [], b"len", 0]
    r("SET", "a", "ohmytext")
    r("SET", "b", "mynewtext")
    assert r("LCS", "a", "b") == b"mytext"
    assert r("LCS", "a", "b", "MINMATCHLEN", -3, "IDX", "WITHMATCHLEN") == [
        b"matches",
        [[[4, 7], [5, 8], 4], [[2, 3], [0, 1], 2]],
        b"len",
        6,
    ]
    assert r("LCS", "a", "b", "LEN", "IDX") == Error(
        "ERR If you want both the length and indexes, please just use IDX."
    )
    assert r("LCS", "a", "b", "BOGUS") == SYNTAX
    assert r("LCS", "a", "b", "MINMATCHLEN") == SYNTAX
    assert r("LCS", "a", "b", "MINMATCHLEN", "x") == NOT_INTEGER
    assert r("LCS", "a") == Error("ERR wrong number of arguments for 'lcs' command")
    r("RPUSH", "l", "x")
    assert r("LCS", "a", "l", "BOGUS") == Error("ERR The specified keys must contain string values")


def _lcs_reference(a: bytes, b: bytes) -> tuple[bytes, list[list[int]]]:
    """Redis's lcsCommand with its full DP table, for comparison."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    i, j, out, ranges = len(a), len(b), bytearray(), []
    start = a_end = b_start = b_end = len(a)
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            out.append(a[i - 1])
            if start == len(a):
                start, a_end, b_start, b_end = i - 1, i - 1, j - 1, j - 1
            elif start == i and b_start == j:
                start, b_start = start - 1, b_start - 1
            else:
                emit = True
            emit = emit or start == 0 or b_start == 0
            i, j = i - 1, j - 1
        else:
            if table[i - 1][j] > table[i][j - 1]:
                i -= 1
            else:
                j -= 1
            emit = start != len(a)
        if emit:
            ranges.append([start, a_end, b_start, b_end])
            start = len(a)
    return bytes(reversed(out)), ranges


def test_lcs_bit_parallel_table_agrees_with_the_plain_dp_table() -> None:
    rng = random.Random(11)
    r = Redis()
    for _ in range(150):
        a = bytes(rng.choice(b"ACGT") for _ in range(rng.randrange(30)))
        b = bytes(rng.choice(b"ACGT") for _ in range(rng.randrange(30)))
        r("MSET", "a", a, "b", b)
        text, ranges = _lcs_reference(a, b)
        assert r("LCS", "a", "b") == text
        got = r("LCS", "a", "b", "IDX")
        assert isinstance(got, list)
        assert got[1] == [[[s, e], [bs, be]] for s, e, bs, be in ranges], (a, b)
        assert got[3] == len(text)


def test_lcs_refuses_a_table_over_the_transient_memory_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(strings, "MAX_STRING", 1000)
    r = Redis()
    r("SET", "a", "x" * 14)
    r("SET", "b", "x" * 14)
    assert r("LCS", "a", "b", "LEN") == 14  # 15 * 15 cells of 4 bytes: 900
    r("SET", "b", "x" * 16)  # 15 * 17 * 4 = 1020
    assert r("LCS", "a", "b") == Error(
        "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len"
    )


# -- the table --------------------------------------------------------------------------


def test_string_commands_follow_redis_command_table() -> None:
    table = {
        "get": (2, "readonly fast", (1, 1, 1)),
        "set": (-3, "write denyoom", (1, 1, 1)),
        "setnx": (3, "write denyoom fast", (1, 1, 1)),
        "setex": (4, "write denyoom", (1, 1, 1)),
        "psetex": (4, "write denyoom", (1, 1, 1)),
        "getset": (3, "write denyoom fast", (1, 1, 1)),
        "getdel": (2, "write fast", (1, 1, 1)),
        "getex": (-2, "write fast", (1, 1, 1)),
        "mget": (-2, "readonly fast", (1, -1, 1)),
        "mset": (-3, "write denyoom", (1, -1, 2)),
        "msetnx": (-3, "write denyoom", (1, -1, 2)),
        "append": (3, "write denyoom fast", (1, 1, 1)),
        "strlen": (2, "readonly fast", (1, 1, 1)),
        "getrange": (4, "readonly", (1, 1, 1)),
        "substr": (4, "readonly", (1, 1, 1)),
        "setrange": (4, "write denyoom", (1, 1, 1)),
        "incr": (2, "write denyoom fast", (1, 1, 1)),
        "decr": (2, "write denyoom fast", (1, 1, 1)),
        "incrby": (3, "write denyoom fast", (1, 1, 1)),
        "decrby": (3, "write denyoom fast", (1, 1, 1)),
        "incrbyfloat": (3, "write denyoom fast", (1, 1, 1)),
        "lcs": (-3, "readonly", (1, 2, 1)),
    }
    for name, (arity, flags, keys) in table.items():
        spec = dispatch.COMMANDS[name.encode()]
        assert (spec.arity, spec.flags, spec.group) == (arity, frozenset(flags.split()), "string")
        assert (spec.first_key, spec.last_key, spec.step) == keys, name
    assert dispatch.COMMANDS[b"mset"].keys([b"mset", b"a", b"1", b"b", b"2"]) == [b"a", b"b"]


def test_keys_of_other_databases_cannot_be_reached_from_database_0() -> None:
    r = Redis()
    r("SET", "foo", "in-3", db=3)
    reserved = b"\x00rcdb\x03foo"
    error = Error(
        "ERR keys starting with \\x00rcdb are reserved for databases 1-15: use another key"
    )
    assert r("SET", reserved, "x") == error
    assert r("GET", reserved) == error
    assert r("GET", "foo", db=3) == b"in-3"
