"""Lua scripting (EVAL, EVALSHA, EVAL_RO, SCRIPT) over two replicas of the state machine."""

from __future__ import annotations

import hashlib
import threading

import pytest
from raftcache.node.keyspace import scripting
from raftcache.node.keyspace.reply import Bool, Error, Map, Status
from raftcache.node.state_machine import StateMachine, Value
from raftcache.v1 import command_pb2

from tests.unit.redis_harness import Redis, refused, unchanged


def sha(body: str) -> str:
    return hashlib.sha1(body.encode()).hexdigest()


def ev(r: Redis, body: str, *keys_and_args: object, numkeys: int = 0) -> object:
    return r("EVAL", body, numkeys, *keys_and_args)


# -- conversions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reply"),
    [
        ("return 'hello'", b"hello"),
        ("return 100.5", 100),
        ("return -3.9", -3),
        ("return 2^63", 2**63 - 1),
        ("return true", 1),
        ("return false", None),
        ("return nil", None),
        ("return {ok='fine'}", Status("fine")),
        ("return {err='ERR this is an error'}", Error("ERR this is an error")),
        ("return {err='MY_CODE custom'}", Error("MY_CODE custom")),
        ("return {1,2,3,'ciao',{1,2}}", [1, 2, 3, b"ciao", [1, 2]]),
        ("return {1,false,3}", [1, None, 3]),
        ("return {1,nil,3}", [1]),  # an array ends at the first nil, as in Redis
        ("return {{{{}}}}", [[[[]]]]),
        ("return _G", []),
        ("return function() end", None),
        ("local a = {} setmetatable(a, {__index=function() error('x') end}) return a", []),
        ("return redis.status_reply('MY_OK custom')", Status("MY_OK custom")),
        ("return redis.error_reply('MY_ERR_CODE custom msg')", Error("MY_ERR_CODE custom msg")),
        ("return redis.error_reply('')", Error("ERR ")),
        ("return redis.error_reply('-X y')", Error("X y")),
        ("return redis.sha1hex('')", b"da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("return redis.sha1hex('Pizza & Mandolino')", b"74822d82031af7493c20eefa13bd07ec4fada82f"),
        ("return 'hello' --trailing comment", b"hello"),
        ("return tostring(0/0) ~= nil", 1),
    ],
)
def test_lua_values_become_redis_replies(body: str, reply: object) -> None:
    assert ev(Redis(), body) == reply


def test_redis_replies_become_lua_values() -> None:
    r = Redis()
    r("SET", "x", "0")
    assert ev(r, "local v = redis.pcall('incr', KEYS[1]) return {type(v), v}", "x", numkeys=1) == [
        b"number",
        1,
    ]
    r("SET", "s", "myval")
    assert ev(r, "local v = redis.call('get', 's') return {type(v), v}") == [b"string", b"myval"]
    r("RPUSH", "l", "a", "b", "c")
    assert ev(r, "local v = redis.call('lrange', 'l', 0, -1) return {type(v), v[3], #v}") == [
        b"table",
        b"c",
        3,
    ]
    assert ev(r, "local v = redis.call('set', 'k', 'v') return {type(v), v['ok']}") == [
        b"table",
        b"OK",
    ]
    assert ev(r, "local v = redis.pcall('incr', 's') return {type(v), v['err']}") == [
        b"table",
        b"ERR value is not an integer or out of range",
    ]
    assert ev(r, "local v = redis.call('get', 'nope') return {type(v), v == false}") == [
        b"boolean",
        1,
    ]
    r("ZADD", "z", "1.5", "m")
    assert ev(r, "return redis.call('zscore', 'z', 'm')") == b"1.5"  # RESP2: a bulk string


def test_setresp_3_gives_maps_sets_doubles_and_booleans() -> None:
    r = Redis()
    r("HSET", "h", "f", "v")
    assert ev(r, "return redis.call('hgetall', 'h')") == [b"f", b"v"]
    got = ev(r, "redis.setresp(3) return redis.call('hgetall', 'h')")
    assert isinstance(got, Map) and got == [b"f", b"v"]
    r("ZADD", "z", "2.5", "m")
    assert ev(r, "redis.setresp(3) return redis.call('zscore', 'z', 'm')") == 2.5
    assert ev(r, "redis.setresp(3) return redis.call('zscore', 'z', 'm')['double']") == 2
    assert ev(r, "redis.setresp(3) return true") == Bool(True)
    assert ev(r, "return redis.setresp(4)").startswith("ERR RESP version must be 2 or 3.")  # type: ignore[union-attr]


def test_numbers_reach_commands_as_redis_formats_them() -> None:
    r = Redis()
    ev(r, "redis.call('set', 'a', 9007199254740991) redis.call('set', 'b', 0.1)")
    assert r("GET", "a") == b"9007199254740991"
    assert r("GET", "b") == b"0.10000000000000001"  # %.17g, as Redis 7.0
    assert ev(r, "return redis.call('set', 'c', {})").startswith(  # type: ignore[union-attr]
        "ERR Lua redis lib command arguments must be strings or integers"
    )


def test_keys_and_argv() -> None:
    r = Redis()
    assert ev(r, "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2]}", "a", "b", "c", "d", numkeys=2) == [
        b"a",
        b"b",
        b"c",
        b"d",
    ]
    assert ev(r, "return #ARGV", "x", "y", numkeys=0) == 2


# -- errors ------------------------------------------------------------------------------------


def test_bad_input_is_refused_before_the_log() -> None:
    assert refused("EVAL", "return 1", "-12") == "ERR Number of keys can't be negative"
    assert refused("EVAL", "return 1", "2", "a") == (
        "ERR Number of keys can't be greater than number of args"
    )
    assert refused("EVAL", "return 1", "x") == "ERR value is not an integer or out of range"
    assert refused("EVAL", "return +", "0").startswith(
        "ERR Error compiling script (new function): user_script:1:"
    )
    assert refused("SCRIPT", "LOAD", "return +").startswith("ERR Error compiling script")
    assert refused("EVAL", "#!python\nreturn 1", "0") == (
        "ERR Unexpected engine in script shebang: #!python"
    )
    assert refused("EVAL", "#!lua flags=bogus\nreturn 1", "0") == (
        "ERR Unexpected flag in script shebang: bogus"
    )
    assert refused("EVAL", "return 1", "1", "\x00rcdb\x01k").startswith("ERR keys starting with")
    assert refused("SCRIPT", "FLUSH", "LATER") == "ERR SCRIPT FLUSH only support SYNC|ASYNC option"
    assert refused("SCRIPT", "NOPE").startswith("ERR unknown subcommand or wrong number")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("return a", "ERR user_script:1: Script attempted to access nonexistent global variable 'a'"),  # noqa: E501
        ("a = 10", "ERR user_script:1: Attempt to modify a readonly table"),
        ("_G = {}", "ERR user_script:1: Attempt to modify a readonly table"),
        ("setmetatable(_G, {})", "ERR user_script:1: Attempt to modify a readonly table"),
        ("getmetatable(_G).__index = {}", "ERR user_script:1: Attempt to modify a readonly table"),
        ("redis.call = function() end", "ERR user_script:1: Attempt to modify a readonly table"),
        ("string.upper = nil", "ERR user_script:1: Attempt to modify a readonly table"),
        ("loadfile('x')", "ERR user_script:1: Script attempted to access nonexistent global"),
        ("print('x')", "ERR user_script:1: Script attempted to access nonexistent global"),
        ("os.time()", "ERR user_script:1: Script attempted to access nonexistent global"),
        ("io.open('x')", "ERR user_script:1: Script attempted to access nonexistent global"),
        ("debug.sethook()", "ERR user_script:1: Script attempted to access nonexistent global"),
        ("return loadstring(string.dump(function() return 1 end))()", "ERR user_script:1: attempt to call a nil value"),  # noqa: E501
        ("error('boom')", "ERR user_script:1: boom"),
        ("redis.call('nosuchcommand')", "ERR Unknown Redis command called from script"),
        ("redis.call('get', 'a', 'b')", "ERR Wrong number of args calling Redis command from script"),  # noqa: E501
        ("redis.call()", "ERR Please specify at least one argument for this redis lib call"),
        ("redis.call('blpop', 'x', 0)", "ERR This Redis command is not allowed from script"),
        ("redis.call('eval', 'return 1', 0)", "ERR This Redis command is not allowed from script"),
        ("redis.call('raftcache.versions', 'x')", "ERR This Redis command is not allowed from script"),  # noqa: E501
        ("redis.sha1hex()", "ERR wrong number of arguments"),
        ("redis.call('select', 99)", "ERR DB index is out of range"),
    ],
)  # fmt: skip
def test_script_errors_answer_redis_texts(body: str, error: str) -> None:
    got = ev(Redis(), body)
    assert isinstance(got, Error) and got.startswith(error), got


def test_an_uncaught_error_names_the_script_and_line() -> None:
    body = "local x = 1\nredis.call('incr', 'k')\nreturn x"
    r = Redis()
    r("SET", "k", "v")
    assert ev(r, body) == Error(
        f"ERR value is not an integer or out of range script: {sha(body)}, on @user_script:2."
    )


def test_a_failed_script_changes_nothing() -> None:
    r = Redis()
    r("SET", "k", "old")
    ev(r, "return 1")  # the script cache entry of the bodies below is the only change
    for body in [
        "redis.call('set', 'k', 'new') redis.call('del', 'k') redis.call('rpush', 'l', 1) error('x')",  # noqa: E501
        "redis.call('set', 'k', 'new') redis.call('incr', 'k')",
        "redis.call('set', 'k', 'new') redis.call('publish', 'c', 'm') return a",
        "redis.call('set', 'k', 'new') while true do end",
        "redis.call('set', 'k', 'new') local s, t = string.rep('x', 2^20), {} for i = 1, 1e9 do t[i] = s .. i end",  # noqa: E501
    ]:
        r("SCRIPT", "LOAD", body)
        r.sm.take_events(), r.twin.take_events()
        reply = unchanged(r, "EVALSHA", sha(body), 0)
        assert isinstance(reply, Error), body
        assert r.sm.take_events() == [] and r.twin.take_events() == []  # no change, no publish
    assert r("GET", "k") == b"old"
    assert r("EXISTS", "l") == 0


def test_the_budget_stops_a_script_on_every_replica_and_pcall_cannot_hide_it() -> None:
    r = Redis()
    r("SET", "k", "old")
    for body in [
        "while true do end",
        "local ok = pcall(function() while true do end end) redis.call('set', 'k', 'new')",
        "local co = coroutine.wrap(function() while true do end end) co()",
        "for i = 1, 1e9 do local s = string.rep('x', 1e6) end",  # C work is charged too
    ]:
        r("SCRIPT", "LOAD", body)
        got = unchanged(r, "EVALSHA", sha(body), 0)
        assert got == Error(
            scripting.BUDGET_EXHAUSTED.format(
                what="Lua instructions", limit=scripting.MAX_INSTRUCTIONS
            )
        )
    body = "redis.call('set', 'k', 'new') local s, t = string.rep('x', 2^20), {} for i = 1, 1000 do t[i] = s .. i end"  # noqa: E501
    r("SCRIPT", "LOAD", body)
    got = unchanged(r, "EVALSHA", sha(body), 0)
    assert isinstance(got, Error) and "Lua memory" in got
    assert r("GET", "k") == b"old"


def test_a_returned_error_reply_is_a_result_and_keeps_the_writes() -> None:
    r = Redis()
    assert ev(r, "redis.call('set', 'k', 'v') return redis.error_reply('NOPE no')") == Error(
        "NOPE no"
    )
    assert r("GET", "k") == b"v"
    assert ev(r, "redis.call('set', 'k', 'w') return redis.pcall('incr', 'k')") == Error(
        "ERR value is not an integer or out of range"
    )
    assert r("GET", "k") == b"w"


def test_a_script_commits_all_its_writes_at_once() -> None:
    r = Redis()
    body = """
        local current = redis.call('get', KEYS[1])
        if not current then return nil end
        if current > ARGV[1] then return redis.call('decr', KEYS[1]) end
        return redis.call('get', KEYS[1])
    """
    r("SET", "foo", "5")
    assert [ev(r, body, "foo", "2", numkeys=1) for _ in range(5)] == [4, 3, 2, b"2", b"2"]
    body = "for i = 1, 100 do redis.call('rpush', 'l', i) end return redis.call('llen', 'l')"
    assert ev(r, body) == 100


# -- determinism ---------------------------------------------------------------------------------


def test_randomness_comes_from_the_replicated_seed() -> None:
    r = Redis()  # the harness asserts both replicas answer the same and stay equal
    draws = set()
    for _ in range(5):
        draws.add(ev(r, "return tostring(math.random())"))
        r.advance(1)  # the seed is the revision and the leader's clock: "random now", as Redis 7
    assert len(draws) == 5
    seeded = "math.randomseed(ARGV[1]) return {tostring(math.random()), math.random(10), math.random(5, 6)}"  # noqa: E501
    a, b, c = (ev(r, seeded, n) for n in ("10", "10", "20"))
    assert a == b != c
    ev(r, "redis.call('set', 'r', math.random(1, 1000000))")
    assert r.sm.digest() == r.twin.digest()


def test_no_clock_but_the_leader_stamped_time() -> None:
    r = Redis(now_ms=1_700_000_123_456)
    assert ev(r, "return redis.call('time')") == [b"1700000123", b"456000"]
    assert isinstance(ev(r, "return os.clock()"), Error)


def test_tostring_shows_no_addresses() -> None:
    r = Redis()
    assert ev(r, "local a, b = {}, {} return {tostring(a), tostring(b), tostring(a)}") == [
        b"table: #1",
        b"table: #2",
        b"table: #1",
    ]


def test_select_inside_a_script_stays_inside() -> None:
    r = Redis()
    assert ev(r, "redis.call('select', 9) redis.call('set', 'k', 'nine') return 1") == 1
    assert r("GET", "k") is None
    assert r("GET", "k", db=9) == b"nine"


# -- EVALSHA, EVAL_RO, SCRIPT ------------------------------------------------------------------


def test_evalsha_after_eval_or_load_in_any_case() -> None:
    r = Redis()
    r("SET", "mykey", "myval")
    body = "return redis.call('get',KEYS[1])"
    assert ev(r, body, "mykey", numkeys=1) == b"myval"
    assert r("EVALSHA", sha(body), 1, "mykey") == b"myval"
    assert r("EVALSHA", sha(body).upper(), 1, "mykey") == b"myval"
    assert r("EVALSHA", "NotValidShaSUM", 0) == Error(scripting.NOSCRIPT)
    assert r("EVALSHA", "ffd632c7d33e571e9f24556ebed26c3479a87130", 0) == Error(scripting.NOSCRIPT)
    assert r("SCRIPT", "LOAD", "return 'loaded'") == b"b534286061d4b9e4026607613b95c06c06015ae8"
    assert r("EVALSHA", "b534286061d4b9e4026607613b95c06c06015ae8", 0) == b"loaded"
    assert r("SCRIPT", "EXISTS", sha(body), "a27e7e8a43702b7046d4f6a7ccf5b60cef6b9bda") == [1, 0]


def test_read_only_scripts_are_reads() -> None:
    r = Redis()
    r("SET", "foo", "bar")
    before = (r.sm.digest(), r.sm.revision)
    assert r("EVAL_RO", "return redis.call('get', KEYS[1])", 1, "foo") == b"bar"
    got = r("EVAL_RO", "redis.call('del', KEYS[1])", 1, "foo")
    assert isinstance(got, Error)
    assert got.startswith("ERR Write commands are not allowed from read-only scripts.")
    body = "return redis.call('get', 'foo')"
    r("SCRIPT", "LOAD", body)
    before = (r.sm.digest(), r.sm.revision)
    assert r("EVALSHA_RO", sha(body), 0) == b"bar"
    assert r("EVALSHA_RO", "ffd632c7d33e571e9f24556ebed26c3479a87130", 0) == Error(
        scripting.NOSCRIPT
    )
    assert (r.sm.digest(), r.sm.revision) == before
    # Redis 7's shebang flags: no-writes refuses writes in EVAL too; a script that may write
    # cannot run through EVAL_RO.
    got = ev(r, "#!lua flags=no-writes\nredis.call('set', 'x', 1)")
    assert isinstance(got, Error) and "read-only scripts" in got
    assert r("EVAL_RO", "#!lua\nreturn 1", 0) == Error(scripting.RO_FLAGGED)
    assert r("EVAL_RO", "#!lua flags=no-writes\nreturn 1", 0) == 1


def test_pcall_write_in_eval_ro_answers_redis_exact_text() -> None:
    r = Redis()
    got = r("EVAL_RO", "return redis.pcall('set', 'x', 1)['err']", 0)
    assert got == b"ERR Write commands are not allowed from read-only scripts."


def test_scripts_are_invisible_to_keyspace_commands_and_survive_flushall() -> None:
    r = Redis()
    r("SCRIPT", "LOAD", "return 1")
    r("SET", "k", "v")
    assert r("DBSIZE") == 1
    assert r("KEYS", "*") == [b"k"]
    cursor, seen = b"", []
    while cursor != b"0":
        cursor, found = r("SCAN", cursor or 0, "COUNT", 1000)  # type: ignore[misc]
        seen += found
    assert seen == [b"k"]
    assert r("RANDOMKEY") == b"k"
    assert r("FLUSHALL") == Status("OK")
    assert r("DBSIZE") == 0 and r("RANDOMKEY") is None
    assert r("SCRIPT", "EXISTS", sha("return 1")) == [1]
    assert r("SCRIPT", "FLUSH") == Status("OK")
    assert r("SCRIPT", "EXISTS", sha("return 1")) == [0]
    assert r("SCRIPT", "KILL") == Error("NOTBUSY No scripts in execution right now.")
    for n in range(3):
        r("SCRIPT", "LOAD", f"return {n}")
    r("SCRIPT", "FLUSH", "ASYNC")
    assert r.sm.db_size(scripting.SCRIPTS_DB) == 0


def test_loaded_scripts_survive_a_snapshot() -> None:
    r = Redis()
    body = "return redis.call('incr', KEYS[1])"
    r("SCRIPT", "LOAD", body)
    restored = StateMachine.restore(r.sm.export_meta(), r.sm.export_items())
    assert restored.digest() == r.sm.digest()
    command = command_pb2.Command(now_ms=r.now_ms)
    call = command.ops.add().data.op.call
    call.argv.extend([b"EVALSHA", sha(body).encode(), b"1", b"n"])
    assert restored.apply(command) == r.sm.apply(command) == [Value("reply", 1)]
    assert restored.digest() == r.sm.digest()


def test_a_script_inside_a_transaction_rolls_back_only_itself() -> None:
    sm, twin = StateMachine(), StateMachine()
    command = command_pb2.Command(now_ms=1000)
    txn = command.ops.add().txn
    for argv in (
        [b"SET", b"a", b"1"],
        [b"EVAL", b"redis.call('set', 'a', '2') redis.call('set', 'b', '2') error('x')", b"0"],
        [b"EVAL", b"redis.call('set', 'c', '3') return 1", b"0"],
    ):
        txn.success.add().op.call.argv.extend(argv)
    results = sm.apply(command)
    assert results == twin.apply(command) and sm.digest() == twin.digest()
    replies = [v.data for v in results[0].results]  # type: ignore[attr-defined]
    assert replies[0] == Status("OK") and isinstance(replies[1], Error) and replies[2] == 1
    assert sm.get(b"a", 1000).value == b"1"  # type: ignore[union-attr]
    assert sm.get(b"b", 1000) is None
    assert sm.get(b"c", 1000).value == b"3"  # type: ignore[union-attr]


def test_many_arguments_and_blocking_reads_from_a_script() -> None:
    r = Redis()
    body = "local a = {} for i = 1, 7999 do a[i] = i end return redis.call('rpush', 'l', unpack(a))"
    assert ev(r, body) == 7999
    assert r("LINDEX", "l", -1) == b"7999"
    assert ev(r, "return redis.pcall('xread', 'BLOCK', 0, 'STREAMS', 's', '$')") == Error(
        "ERR xread command is not allowed with BLOCK option from scripts"
    )


# -- one Lua state reused by consecutive scripts ----------------------------------------------


def _in_fresh_thread(sm: StateMachine, command: command_pb2.Command) -> object:
    """Apply on a new thread: its first script boots a fresh Lua state."""
    out: list[object] = []
    worker = threading.Thread(target=lambda: out.append(sm.apply(command)[0]))
    worker.start()
    worker.join()
    return out[0]


def _eval_command(body: str, *keys: str, now_ms: int = 1_000_000) -> command_pb2.Command:
    command = command_pb2.Command(now_ms=now_ms)
    call = command.ops.add().data.op.call
    call.argv.extend([b"EVAL", body.encode(), str(len(keys)).encode(), *(k.encode() for k in keys)])
    return command


def test_consecutive_scripts_reuse_one_lua_state() -> None:
    r = Redis()
    ev(r, "return redis.call('set', KEYS[1], ARGV[1])", "k", "v", numkeys=1)
    booted = scripting._BOOTS[0]
    for i in range(50):
        assert ev(r, "return redis.call('incr', KEYS[1])", "n", numkeys=1) == i + 1
    assert scripting._BOOTS[0] == booted


@pytest.mark.parametrize(
    ("attack", "probe", "expected"),
    [
        ("rawset(_G, 'leak', 1)", "return type(leak)", Error("nonexistent global variable 'leak'")),
        ("getmetatable(redis).__index.call = nil", "return redis.call('ping')", Status("PONG")),
        (
            "rawset(getmetatable(redis).__index, 'call', nil)",
            "return redis.call('ping')",
            Status("PONG"),
        ),
        ("getmetatable('').__index.upper = string.lower", "return ('a'):upper()", b"A"),
        ("rawset(getmetatable(''), '__index', {})", "return ('a'):upper()", b"A"),
        ("table.insert(cjson, 'x')", "return rawget(cjson, 1)", None),
        ("table.remove(getmetatable(_G))", "return redis.call('ping')", Status("PONG")),
        ("rawset(getmetatable(_G), '__index', {})", "return type(redis)", b"table"),
        ("setmetatable(getmetatable(bit), {})", "return bit.band(6, 3)", 2),
    ],
)
def test_a_script_cannot_leave_anything_behind_for_the_next(
    attack: str, probe: str, expected: object
) -> None:
    r = Redis()
    got = ev(r, attack)
    assert isinstance(got, Error) and "Attempt to modify a readonly table" in got, got
    got = ev(r, probe)
    if isinstance(expected, Error):
        assert isinstance(got, Error) and expected in got, got
    else:
        assert got == expected


def test_what_a_run_sets_starts_afresh_in_the_next() -> None:
    r = Redis()
    assert ev(r, "for i = 1, 5 do tostring({}) end return tostring({})") == b"table: #6"
    booted = scripting._BOOTS[0]
    assert ev(r, "return tostring({})") == b"table: #1"
    assert scripting._BOOTS[0] == booted  # cleared in the same state, not a new one
    ev(r, "cjson.encode_max_depth(1) return 1")
    assert ev(r, "return cjson.encode({{1}})") == b"[[1]]"
    ev(r, "collectgarbage('stop') collectgarbage('setpause', 1000) return 1")
    # the collector runs again: 200 MB of garbage fits the 64 MB budget
    body = "local s = string.rep('x', 1e6) for i = 1, 200 do local t = s .. i end return 1"
    assert ev(r, body) == 1


def test_a_state_that_kept_something_is_replaced_by_a_fresh_one() -> None:
    r = Redis()
    ev(r, "return 1")
    state = scripting._local.state
    kept = state.lua.table_from([1, 2, 3])  # a reference from outside: the heap stays larger
    booted = scripting._BOOTS[0]
    assert ev(r, "return 2") == 2
    assert scripting._BOOTS[0] == booted + 1
    assert scripting._local.state is not state
    del kept


def test_the_collector_runs_at_the_same_allocations_on_a_used_and_a_fresh_state() -> None:
    # Heap sizes sampled while garbage piles up: the same numbers on a state that ran other
    # scripts before (this thread's) and on a new one (a replica restored from a snapshot).
    sm, fresh = StateMachine(), StateMachine()
    for body in (
        "local t = {} for i = 1, 1e5 do t[i] = 'v' .. i end return #t",
        "return cjson.encode({a = {1, 2, {b = 'c'}}})",
        "local t = {} for i = 1, 300 do t[i] = {} end return 1",
    ):
        sm.apply(_eval_command(body))
    sample = (
        "local out = {} for i = 1, 60 do local x = string.rep('y', 50000 + i) .. i "
        "out[#out + 1] = math.floor(collectgarbage('count') * 1024) end return out"
    )
    used = sm.apply(_eval_command(sample))[0]
    new = _in_fresh_thread(fresh, _eval_command(sample))
    assert used == new
    assert len(set(used.data)) > 10  # type: ignore[attr-defined]  # the heap moved


def test_a_script_over_the_memory_budget_fails_alike_on_a_used_and_a_fresh_state() -> None:
    sm, fresh = StateMachine(), StateMachine()
    sm.apply(_eval_command("local t = {} for i = 1, 2e5 do t[i] = 'w' .. i end return 1"))
    # strings of distinct lengths (Lua 5.1 hashes a long string from a few of its bytes)
    body = "local s, t = string.rep('z', 1e5), {} for i = 1, 1e4 do t[i] = s .. ('y'):rep(i) end"
    used = sm.apply(_eval_command(body))[0]
    new = _in_fresh_thread(fresh, _eval_command(body))
    assert used == new
    assert "Lua memory" in str(used.data)  # type: ignore[attr-defined]


def test_lupa_s_python_table_and_python_objects_are_out_of_a_script_s_reach() -> None:
    r = Redis()
    got = ev(r, "return type(python)")
    assert isinstance(got, Error) and "nonexistent global variable 'python'" in got
    state = scripting._local.state
    # lupa's shared metatable of wrapped Python objects (its callbacks' too) stays hidden
    metatable_of = state.lua.eval("function(o) return getmetatable(o) end")
    assert metatable_of(object()) is False


@pytest.mark.parametrize(
    "body",
    [
        "local t = {} for i = 1, 3000 do t[i] = 'k' .. i end return #t",  # the string table
        "local s = '' for i = 1, 300 do s = s .. 'abcdefghij' end return #s",  # concat buffer
        "local t = {} for i = 1, 2000 do t['f' .. i] = i end return 1",  # a big table
    ],
)
def test_scripts_that_grow_the_state_s_tables_and_buffers_still_reuse_it(body: str) -> None:
    r = Redis()
    first = ev(r, body)
    booted = scripting._BOOTS[0]
    for _ in range(10):
        assert ev(r, body) == first
    assert scripting._BOOTS[0] == booted


def test_a_state_that_fails_to_settle_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    r = Redis()
    ev(r, "return 1")
    state = scripting._local.state

    def broken() -> None:
        raise scripting.lua51.LuaError("error in __gc metamethod")

    monkeypatch.setattr(state, "settle", broken)
    assert ev(r, "return redis.call('ping')") == Status("PONG")
    assert scripting._local.state is not state


def test_error_replies_carry_no_addresses() -> None:
    r = Redis()
    got = ev(r, "error(pcall)")
    assert isinstance(got, Error) and got.startswith("ERR function: #1 "), got
    assert ev(r, "return redis.sha1hex(1)") == hashlib.sha1(b"1").hexdigest().encode()
