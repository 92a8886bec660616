# ruff: noqa: E501  (tables of Lua snippets and Redis error texts read best unwrapped)
"""Redis 7 functions (FUNCTION, FCALL, FCALL_RO) and the Lua libraries (cjson, cmsgpack, bit)
over two replicas of the state machine."""

from __future__ import annotations

import pytest
from raftcache.node.keyspace import functions, rdb
from raftcache.node.keyspace.reply import Error, Status

from tests.unit.redis_harness import Redis, refused, unchanged


def lib(name: str, fn: str, body: str) -> str:
    return (
        f"#!lua name={name}\nredis.register_function('{fn}', function(KEYS, ARGV)\n {body} \nend)"
    )


def ro_lib(name: str, fn: str, body: str) -> str:
    return (
        f"#!lua name={name}\nredis.register_function{{function_name='{fn}', "
        f"callback=function(KEYS, ARGV)\n {body} \nend, flags={{'no-writes'}}}}"
    )


@pytest.fixture
def r() -> Redis:
    return Redis()


def test_load_fcall_list_delete(r: Redis) -> None:
    assert (
        r("FUNCTION", "LOAD", lib("test", "test", "return redis.call('set', KEYS[1], ARGV[1])"))
        == b"test"
    )
    assert r("FCALL", "TEST", 1, "x", "v") == Status("OK") and r("GET", "x") == b"v"
    assert r("FUNCTION", "LIST") == [
        [b"library_name", b"test", b"engine", b"LUA", b"functions",
         [[b"name", b"test", b"description", None, b"flags", []]]]
    ]  # fmt: skip
    assert r("DBSIZE") == 1 and r("KEYS", "*") == [b"x"]  # the library is not a key
    assert r("FUNCTION", "STATS") == [
        b"running_script", None, b"engines", [b"LUA", [b"libraries_count", 1, b"functions_count", 1]]
    ]  # fmt: skip
    assert r("FUNCTION", "DELETE", "test") == Status("OK")
    assert r("FUNCTION", "DELETE", "test") == Error("ERR Library not found")
    assert r("FCALL", "test", 0) == Error("ERR Function not found")


def test_load_errors(r: Redis) -> None:
    r("FUNCTION", "LOAD", lib("test", "test", "return 1"))
    assert r("FUNCTION", "LOAD", lib("TEST", "t2", "return 1")) == Error(
        "ERR Library 'TEST' already exists"
    )
    assert r("FUNCTION", "LOAD", "REPLACE", lib("test", "t2", "return 2")) == b"test"
    assert r("FCALL", "t2", 0) == 2 and r("FCALL", "test", 0) == Error("ERR Function not found")
    cases = {
        "return 1": "ERR Missing library metadata",
        "#!lua name=a": "ERR Invalid library metadata",
        "#!lua\nreturn": "ERR Library name was not given",
        "#!lua name=a name=b\n": "ERR Invalid metadata value, name argument was given multiple times",
        "#!lua name=a foo=bar\n": "ERR Invalid metadata value given: foo=bar",
        "#! name=a\n": "ERR Engine '' not found",
        "#!lua name=bad\\0name\n": functions._BAD_NAME,
        "#!lua name=a\nreturn 1": "ERR No functions registered",
    }
    for code, text in cases.items():
        assert unchanged(r, "FUNCTION", "LOAD", code) == Error(text), code
    bad = unchanged(r, "FUNCTION", "LOAD", "REPLACE", lib("test", "t", "bad script"))
    assert str(bad).startswith("ERR Error compiling function: user_function:3:")
    assert r("FCALL", "t2", 0) == 2  # a failed REPLACE keeps the old library
    collide = unchanged(r, "FUNCTION", "LOAD", lib("other", "t2", "return 3"))
    assert collide == Error("ERR Function t2 already exists")
    assert refused("FUNCTION", "LOAD", "foo", "bar", "x") == "ERR Unknown option given: foo"
    assert refused("FUNCTION", "LOAD") == (
        "ERR unknown subcommand or wrong number of arguments for 'load'. Try FUNCTION HELP."
    )
    assert refused("FUNCTION", "nope") == "ERR unknown subcommand 'nope'. Try FUNCTION HELP."
    assert r("FUNCTION", "KILL") == Error("NOTBUSY No scripts in execution right now.")
    assert isinstance(r("FUNCTION", "HELP"), list)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ("redis.register_function()", "wrong number of arguments to redis.register_function"),
        ("redis.register_function('f')", "calling redis.register_function with a single argument"),
        ("redis.register_function(1, 2, 3)", "wrong number of arguments to redis.register_function"),
        ("redis.register_function({}, function() end)", "first argument to redis.register_function must be a string"),
        ("redis.register_function('f', 'x')", "second argument to redis.register_function must be a function"),
        ("redis.register_function('a-b', function() end)", "Library names can only contain"),
        ("redis.register_function('f', function() end) redis.register_function('F', function() end)",
         "Function already exists in the library"),
        ("redis.register_function{function_name=1, callback=function() end, flags='x'}",
         "flags argument to redis.register_function must be a table"),
        ("redis.register_function{function_name='f', callback=function() end, flags={'bad'}}", "unknown flag given"),
        ("redis.register_function{function_name='f', callback='x'}", "callback argument given to redis.register_function must be a function"),
        ("redis.register_function{function_name='f', description={}, callback=function() end}",
         "description argument given to redis.register_function must be a string"),
        ("redis.register_function{function_name='f', foo=1, callback=function() end}", "unknown argument given"),
        ("redis.register_function{callback=function() end}", "must get a function name argument"),
        ("redis.register_function{function_name='f'}", "must get a callback argument"),
        ("math.random()", "nonexistent global variable 'math'"),
        ("redis.call('ping')", "nonexistent global variable 'call'"),
        ("redis.setresp(3)", "nonexistent global variable 'setresp'"),
        ("a = 1", "Attempt to modify a readonly table"),
        ("mt = getmetatable(_G)", "nonexistent global variable 'getmetatable'"),
        ("local a = 1 while true do a = a + 1 end", "FUNCTION LOAD timeout"),
    ],
)  # fmt: skip
def test_registration_errors(r: Redis, body: str, text: str) -> None:
    reply = unchanged(r, "FUNCTION", "LOAD", f"#!lua name=lib\n{body}")
    assert isinstance(reply, Error) and text in str(reply), reply


def test_function_context(r: Redis) -> None:
    r("FUNCTION", "LOAD", "#!lua name=lib\n"
      "local lib = redis\n"
      "redis.register_function('f1', function() lib.math = math end)\n"
      "redis.register_function('f2', function() lib.register_function('x', function() end) end)\n"
      "redis.register_function('f3', function() return redis.register_function('x', function() end) end)\n"
      "redis.register_function('f4', function(keys, args) return {keys[1], args[1], redis.call('ping')} end)")  # fmt: skip
    assert "Attempt to modify a readonly table" in str(r("FCALL", "f1", 0))
    assert "can only be called on FUNCTION LOAD command" in str(r("FCALL", "f2", 0))
    assert "attempt to call field 'register_function' (a nil value)" in str(r("FCALL", "f3", 0))
    assert r("FCALL", "f4", 1, "k", "a") == [b"k", b"a", Status("PONG")]


def test_fcall_arguments_and_read_only(r: Redis) -> None:
    r("FUNCTION", "LOAD", lib("w", "w", "return redis.call('set', 'x', '1')"))
    r("FUNCTION", "LOAD", ro_lib("ro", "ro", "return redis.call('get', 'x')"))
    r("FUNCTION", "LOAD", ro_lib("rw", "rw", "return redis.call('set', 'x', '2')"))
    assert refused("FCALL", "w", "bad") == "ERR Bad number of keys provided"
    assert (
        refused("FCALL", "w", 10, "k") == "ERR Number of keys can't be greater than number of args"
    )
    assert refused("FCALL", "w", -1, "k") == "ERR Number of keys can't be negative"
    assert r("FCALL_RO", "w", 0) == Error(
        "ERR Can not execute a script with write flag using *_ro command."
    )
    r("FCALL", "w", 0)
    assert r("FCALL_RO", "ro", 0) == b"1"
    assert "Write commands are not allowed from read-only scripts" in str(r("FCALL", "rw", 0))
    listed = r("FUNCTION", "LIST", "LIBRARYNAME", "r*", "WITHCODE")
    assert [item[1] for item in listed] == [b"ro", b"rw"]  # type: ignore[index]
    assert listed[0][5][0][5] == [Status("no-writes")]  # type: ignore[index]
    assert listed[0][7].startswith(b"#!lua name=ro")  # type: ignore[index]
    assert refused("FUNCTION", "LIST", "bad") == "ERR Unknown argument bad"
    assert refused("FUNCTION", "LIST", "LIBRARYNAME") == "ERR library name argument was not given"
    assert refused("FUNCTION", "LIST", "WITHCODE", "WITHCODE") == "ERR Unknown argument WITHCODE"


def test_failed_function_rolls_back(r: Redis) -> None:
    r("FUNCTION", "LOAD", lib("l", "f", "redis.call('set', 'a', '1') error('boom')"))
    reply = unchanged(r, "FCALL", "f", 0)
    assert isinstance(reply, Error) and "boom" in str(reply) and "script: f" in str(reply)
    assert r("EXISTS", "a") == 0


def test_flush_dump_restore(r: Redis) -> None:
    r("FUNCTION", "LOAD", lib("test", "test", "return 'hello'"))
    r("SET", "k", "v")
    r("FLUSHALL")
    assert r("FCALL", "test", 0) == b"hello"  # FLUSHALL keeps libraries, as in Redis
    dump = r("FUNCTION", "DUMP")
    assert isinstance(dump, bytes)
    assert r("FUNCTION", "FLUSH", "ASYNC") == Status("OK") and r("FUNCTION", "LIST") == []
    assert r("FUNCTION", "RESTORE", dump) == Status("OK")
    assert r("FCALL", "test", 0) == b"hello"
    assert r("FUNCTION", "RESTORE", dump) == Error("ERR Library test already exists")
    assert r("FUNCTION", "RESTORE", dump, "REPLACE") == Status("OK")
    assert r("FUNCTION", "RESTORE", dump, "FLUSH") == Status("OK")
    assert r("FUNCTION", "RESTORE", b"bad payload") == Error(
        "ERR DUMP payload version or checksum are wrong"
    )
    assert refused("FUNCTION", "RESTORE", dump, "nope") == (
        "ERR Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE."
    )
    assert (
        refused("FUNCTION", "FLUSH", "lazy") == "ERR FUNCTION FLUSH only supports SYNC|ASYNC option"
    )
    assert functions.dump([]) == b"\x0a\x00\x5d\x9b\x5c\x40\x0f\x7f\xa2\xda"  # Redis 7.0.15's


def test_restore_reads_lzf_payloads() -> None:
    # a literal run of 3 bytes then a back reference of 4 bytes at distance 3: "abcabca"
    assert rdb.lzf(b"\x02abc\x40\x02", 7) == b"abcabca"


def test_library_survives_snapshot_and_replays_identically(r: Redis) -> None:
    r("FUNCTION", "LOAD", lib("test", "test", "return redis.call('incr', KEYS[1])"))
    functions._described.clear()
    functions._parsed.clear()
    assert r("FCALL", "test", 1, "n") == 1  # libraries re-described from the stored code


# -- cjson, cmsgpack, bit ---------------------------------------------------------------------


def ev(r: Redis, body: str) -> object:
    return r("EVAL", body, 0)


def test_cjson(r: Redis) -> None:
    assert ev(
        r, "return table.concat(cjson.decode('[0.0, -5e3, -1, 0.3e-3, 1023.2, 0e10]'), ' ')"
    ) == (b"0 -5000 -1 0.0003 1023.2 0")
    assert ev(r, "return cjson.encode({1, 'a/b', {x=true}})") == b'[1,"a\\/b",{"x":true}]'
    assert ev(r, "return cjson.encode(cjson.decode('{\"a\":null}'))") == b'{"a":null}'
    assert ev(r, "return cjson.decode('{\"a\":null}').a == cjson.null") == 1
    assert "table key must be a number or string" in str(ev(r, "return cjson.encode({[true]=1})"))
    assert "excessive nesting" in str(ev(r, "cjson.encode_max_depth(1) return cjson.encode({{}})"))
    assert "NaN or Inf" in str(ev(r, "return cjson.encode({0/0})"))
    assert ev(r, "cjson.encode_invalid_numbers(true) return cjson.encode({1/0})") == b"[inf]"
    assert "Attempt to modify a readonly table" in str(ev(r, "cjson.encode = nil"))


def test_cmsgpack(r: Redis) -> None:
    hexed = "local h = '' for i = 1, #e do h = h .. string.format('%02x', string.byte(e, i)) end return h"
    assert ev(r, f"local e = cmsgpack.pack(0.1) {hexed}") == b"cb3fb999999999999a"
    assert ev(r, f"local e = cmsgpack.pack(-1099511627776) {hexed}") == b"d3ffffff0000000000"
    assert ev(r, f"local e = cmsgpack.pack({{1, 'a'}}, true, nil) {hexed}") == b"9201a161c3c0"
    assert ev(
        r, "local o, v = cmsgpack.unpack_limit(cmsgpack.pack('a', 'b'), 1, 0) return {o, v}"
    ) == [2, b"a"]
    assert ev(r, "local o, v = cmsgpack.unpack_one(cmsgpack.pack('a'), 0) return {o, v}") == [
        -1,
        b"a",
    ]
    assert ev(r, "return cmsgpack.unpack(cmsgpack.pack({a={1,2}})).a[2]") == 2
    assert "Missing bytes in input." in str(ev(r, "return cmsgpack.unpack('\\217')"))
    # a pack too large for the budget fails the script instead of stalling the replica
    big = "local t = {} for i = 1, 60000 do t[i] = i end return #cmsgpack.pack(t)"
    assert "execution budget" in str(r("EVAL", big, 0))


def test_bit(r: Redis) -> None:
    body = (
        "return {bit.tobit(2^32 + 1), bit.band(7, 3), bit.bor(1, 2, 4), bit.bxor(1, 3), "
        "bit.bnot(0), bit.lshift(1, 31), bit.rshift(-1, 28), bit.arshift(-16, 2), "
        "bit.rol(1, 33), bit.ror(1, 1), bit.bswap(1), bit.tohex(255), bit.tohex(-1, -4)}"
    )
    assert ev(r, body) == [
        1, 3, 7, 2, -1, -2147483648, 15, -4, 2, -2147483648, 16777216, b"000000ff", b"FFFF"
    ]  # fmt: skip
    assert "number expected" in str(ev(r, "return bit.band('x')"))
