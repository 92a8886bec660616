"""memcached's commands in the replicated command table (node/keyspace/memcached.py), run
on two replicas whose digests must agree."""

from __future__ import annotations

from raftcache.node.keyspace.reply import Error, Status
from raftcache.node.state_machine import StateMachine

from tests.unit.redis_harness import Redis, refused, unchanged

NOW = 1_000_000  # the harness's cluster clock, ms


def store(r: Redis, mode: str, key: str, value: str, flags: int = 0, exp: int = 0, cas: str = ""):
    return r("raftcache.mc.store", mode, key, value, flags, exp, cas)


def item(r: Redis, key: str):
    got = r("raftcache.mc.get", key)
    assert isinstance(got, list)
    return got[0]


def test_set_keeps_flags_and_get_returns_them_with_the_version_as_cas() -> None:
    r = Redis()
    status, cas = store(r, "set", "k", "hello", flags=0xDEADBEEF)
    assert status == Status("STORED") and cas == r.sm.revision
    assert item(r, "k") == [b"hello", 0xDEADBEEF, cas, -1]
    assert r("GET", "k") == b"hello"  # the same key as Redis's
    r("SET", "k", "redis")  # any other write resets the flags
    assert item(r, "k")[1] == 0


def test_add_replace_append_prepend() -> None:
    r = Redis()
    assert store(r, "replace", "k", "x")[0] == Status("NOT_STORED")
    assert store(r, "append", "k", "x")[0] == Status("NOT_STORED")
    assert store(r, "add", "k", "a", flags=7, exp=100)[0] == Status("STORED")
    assert store(r, "add", "k", "b")[0] == Status("NOT_STORED")
    # append/prepend keep the flags and the expiry, whatever they are sent with
    assert store(r, "append", "k", "z", flags=1, exp=5)[0] == Status("STORED")
    assert store(r, "prepend", "k", "<")[0] == Status("STORED")
    value, flags, _cas, ttl = item(r, "k")
    assert (value, flags, ttl) == (b"<az", 7, 100)
    assert store(r, "replace", "k", "new", flags=3)[0] == Status("STORED")
    assert item(r, "k")[:2] == [b"new", 3]


def test_cas_compares_the_version() -> None:
    r = Redis()
    assert store(r, "set", "k", "v", cas="5") == [Status("NOT_FOUND"), 0]
    _, cas = store(r, "set", "k", "v")
    assert unchanged(r, "raftcache.mc.store", "set", "k", "w", 0, 0, cas + 1) == [
        Status("EXISTS"),
        0,
    ]
    status, new = store(r, "set", "k", "w", cas=str(cas))
    assert status == Status("STORED") and new > cas
    r("SET", "k", "redis-write")  # a Redis write bumps the version too
    assert store(r, "set", "k", "x", cas=str(new))[0] == Status("EXISTS")


def test_expiry_rules_relative_absolute_negative() -> None:
    now = 1_800_000_000_000  # a Unix time in ms: cluster time is the leader's wall clock
    r = Redis(now_ms=now)
    store(r, "set", "rel", "v", exp=10)
    assert r("PTTL", "rel") == 10_000
    absolute = now // 1000 + 40 * 86400  # above 30 days: a Unix time
    store(r, "set", "abs", "v", exp=absolute)
    assert r("PTTL", "abs") == absolute * 1000 - now
    store(r, "set", "old", "v")
    # an absolute time in the past and a negative exptime both mean "already expired"
    assert store(r, "set", "old", "v", exp=31 * 86400) == [Status("STORED"), 0]
    assert item(r, "old") is None
    store(r, "set", "neg", "v")
    assert store(r, "set", "neg", "v", exp=-1) == [Status("STORED"), 0]
    assert r("EXISTS", "neg") == 0
    r.advance(10_000)
    assert item(r, "rel") is None


def test_touch_and_gat_keep_flags() -> None:
    r = Redis()
    assert r("raftcache.mc.touch", "k", 10) == Status("NOT_FOUND")
    store(r, "set", "k", "v", flags=9)
    assert r("raftcache.mc.touch", "k", 10) == Status("TOUCHED")
    assert r("PTTL", "k") == 10_000
    got = r("raftcache.mc.gat", 0, "k", "missing")
    assert isinstance(got, list) and got[1] is None
    assert got[0][:2] == [b"v", 9]
    assert r("PTTL", "k") == -1 and item(r, "k")[1] == 9
    assert got[0][3] == -1  # the TTL reported is the new one (mg T30 t answers t30)
    assert r("raftcache.mc.gat", 30, "k")[0][3] == 30
    r("raftcache.mc.gat", -1, "k")
    assert item(r, "k") is None


def test_delete_with_and_without_cas() -> None:
    r = Redis()
    assert r("raftcache.mc.delete", "k", "") == Status("NOT_FOUND")
    _, cas = store(r, "set", "k", "v")
    assert unchanged(r, "raftcache.mc.delete", "k", cas + 1) == Status("EXISTS")
    assert r("raftcache.mc.delete", "k", cas) == Status("DELETED")
    assert r("EXISTS", "k") == 0


def test_incr_wraps_decr_floors_and_non_numbers_are_refused() -> None:
    r = Redis()
    assert r("raftcache.mc.arith", "n", "incr", 1, -1, 0, "") == [Status("NOT_FOUND"), None, 0]
    store(r, "set", "n", str(2**64 - 2), flags=4, exp=50)
    status, value, _ = r("raftcache.mc.arith", "n", "incr", 3, -1, 0, "")
    assert (status, value) == (Status("STORED"), b"1")  # wrapped at 2**64
    assert item(r, "n")[1] == 4 and r("PTTL", "n") == 50_000  # flags and expiry kept
    assert r("raftcache.mc.arith", "n", "decr", 10, -1, 0, "")[1] == b"0"
    store(r, "set", "pad", "10  ")  # memcached reads trailing spaces as padding
    assert r("raftcache.mc.arith", "pad", "decr", 1, -1, 0, "")[1] == b"9"
    # a shorter result is stored padded to the old length, as memcached's in-place rewrite
    assert item(r, "pad")[0] == b"9   "
    assert r("raftcache.mc.arith", "pad", "incr", 99991, -1, 0, "")[1] == b"100000"
    assert item(r, "pad")[0] == b"100000"  # longer: a new item, no padding
    # the whole unsigned 64-bit range is a valid delta
    assert r("raftcache.mc.arith", "pad", "incr", 2**64 - 1, -1, 0, "")[1] == b"99999"
    store(r, "set", "s", "abc")
    err = unchanged(r, "raftcache.mc.arith", "s", "incr", 1, -1, 0, "")
    assert err == Error("CLIENT_ERROR cannot increment or decrement non-numeric value")
    store(r, "set", "big", str(2**64))
    assert isinstance(r("raftcache.mc.arith", "big", "incr", 1, -1, 0, ""), Error)


def test_arith_vivifies_and_compares_cas() -> None:
    r = Redis()
    assert r("raftcache.mc.arith", "n", "incr", 5, 0, 42, "")[:2] == [Status("STORED"), b"42"]
    _, value, cas = r("raftcache.mc.arith", "n", "incr", 5, 0, 42, "")
    assert value == b"47"
    assert r("raftcache.mc.arith", "n", "incr", 1, -1, 0, cas + 1)[0] == Status("EXISTS")
    assert r("raftcache.mc.arith", "n", "incr", 1, -1, 0, cas)[1] == b"48"


def test_another_type_is_invisible_to_get_and_not_appendable() -> None:
    r = Redis()
    r("HSET", "h", "f", "v")
    assert item(r, "h") is None
    assert store(r, "append", "h", "x")[0] == Status("NOT_STORED")
    assert store(r, "add", "h", "x")[0] == Status("NOT_STORED")
    assert store(r, "set", "h", "x")[0] == Status("STORED")  # set replaces any type
    assert r("TYPE", "h") == Status("string")


def test_flush_now_and_delayed() -> None:
    r = Redis()
    store(r, "set", "a", "1")
    store(r, "set", "b", "2", exp=100)
    r("SET", "other-db", "x", db=1)
    r("raftcache.mc.flush", 10)
    assert r("PTTL", "a") == 10_000 and r("PTTL", "b") == 10_000
    r.advance(10_000)
    assert r("DBSIZE") == 0
    assert r("EXISTS", "other-db", db=1) == 1  # memcached's keys are database 0's
    store(r, "set", "c", "3")
    r("raftcache.mc.flush", 0)
    assert r("DBSIZE") == 0


def test_bad_arguments_are_refused_before_proposing() -> None:
    assert refused("raftcache.mc.store", "upsert", "k", "v", 0, 0, "").startswith(
        "CLIENT_ERROR unknown store mode"
    )
    assert refused("raftcache.mc.store", "set", "k", "v", 2**32, 0, "") == (
        "CLIENT_ERROR bad command line format"
    )
    assert refused("raftcache.mc.arith", "k", "incr", -1, -1, 0, "") == (
        "CLIENT_ERROR delta out of range"
    )
    assert refused("raftcache.mc.delete", "k", "x") == "CLIENT_ERROR cas out of range"


def test_flags_survive_a_snapshot() -> None:
    r = Redis()
    store(r, "set", "k", "v", flags=123456, exp=60)
    restored = StateMachine.restore(r.sm.export_meta(), r.sm.export_items())
    assert restored.digest() == r.sm.digest()
    assert restored.get(b"k", NOW).flags == 123456  # type: ignore[union-attr]
