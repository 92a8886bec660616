"""DUMP and RESTORE (node/keyspace/dump.py): Redis's serialization both ways, and every way a
RESTORE is refused without changing anything. Payloads from a real Redis 7.0 are checked in
tests/integration/test_redis_engine.py (test_dump_and_restore_move_keys_both_ways_...)."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from raftcache.node.keyspace import dump
from raftcache.node.keyspace.rdb import crc64, rdb_length
from raftcache.node.keyspace.reply import OK, Error

from tests.unit.redis_harness import Redis, unchanged


def framed(body: bytes, version: int = 10) -> bytes:
    """A payload with Redis's footer: the RDB version and the CRC64 of everything before."""
    body += struct.pack("<H", version)
    return body + struct.pack("<Q", crc64(body))


def test_every_type_round_trips_with_its_ttl() -> None:
    r = Redis()
    r("rpush", "l", "a", "b", "c")
    r("sadd", "s", "x", "y")
    r("hset", "h", "f", "v", "g", "w")
    r("zadd", "z", "1.5", "a", "-2", "b", "inf", "c")
    r("set", "k", "hello")
    for key in ("l", "s", "h", "z", "k"):
        assert r("restore", key + "2", "0", r("dump", key)) == OK
        assert r("type", key + "2") == r("type", key)
    assert r("lrange", "l2", "0", "-1") == [b"a", b"b", b"c"]
    assert sorted(r("smembers", "s2")) == [b"x", b"y"]  # type: ignore[type-var]
    assert r("hgetall", "h2") == r("hgetall", "h")
    assert r("zrange", "z2", "0", "-1", "withscores") == r("zrange", "z", "0", "-1", "withscores")
    assert r("restore", "t", "5000", r("dump", "k")) == OK
    assert r("pttl", "t") == 5000
    assert r("restore", "u", str(r.now_ms + 3000), r("dump", "k"), "absttl") == OK
    assert r("pttl", "u") == 3000
    assert r("dump", "missing") is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=40))
def test_lists_survive_dump_and_restore(items: list[bytes]) -> None:
    r = Redis()
    r("rpush", "l", *items)
    r("restore", "copy", "0", r("dump", "l"))
    assert r("lrange", "copy", "0", "-1") == items


def test_compact_encodings_redis_writes_are_read() -> None:
    # a listpack hash {a: 1, b: -300, c: "xyz"}: 7-bit uint, 13-bit int, 6-bit string
    entries = [b"\x81a\x02", b"\x01\x01", b"\x81b\x02", b"\xde\xd4\x02"]
    entries += [b"\x81c\x02", b"\x83xyz\x04"]
    blob = b"".join(entries)
    listpack = struct.pack("<IH", 6 + len(blob) + 1, 6) + blob + b"\xff"
    r = Redis()
    payload = framed(bytes((16,)) + bytes((len(listpack),)) + listpack)
    assert r("restore", "h", "0", payload) == OK
    assert r("hgetall", "h") == [b"a", b"1", b"b", b"-300", b"c", b"xyz"]
    # an intset of 16-bit members
    intset = struct.pack("<II3h", 2, 3, -5, 7, 300)
    assert r("restore", "s", "0", framed(bytes((11, len(intset))) + intset)) == OK
    assert sorted(map(int, r("smembers", "s"))) == [-5, 7, 300]  # type: ignore[arg-type]
    # an LZF-compressed string: a literal run, then a back reference repeating it
    lzf = b"\x03abcd" + bytes(((5 << 5) | 0, 3))  # copy 7 bytes from 4 back
    text = b"\x00" + b"\xc3" + bytes((len(lzf), 11)) + lzf
    assert r("restore", "k", "0", framed(text)) == OK
    assert r("get", "k") == b"abcdabcdabc"
    # integer-encoded strings
    assert r("restore", "i", "0", framed(b"\x00\xc1" + struct.pack("<h", -1234))) == OK
    assert r("get", "i") == b"-1234"


def listpack_of(*items: bytes) -> bytes:
    """A listpack of strings, each with the back-length Redis's lpEncodeBacklen gives it."""
    body = b""
    for item in items:
        n = len(item)
        if n < 64:
            entry = bytes((0x80 | n,)) + item
        elif n < 4096:
            entry = bytes((0xE0 | n >> 8, n & 0xFF)) + item
        else:
            entry = b"\xf0" + struct.pack("<I", n) + item
        size = len(entry)
        back = 1 if size <= 127 else 2 if size < 16383 else 3 if size < 2097151 else 4
        body += entry + b"\0" * back  # restore skips the back-length without reading it
    return struct.pack("<IH", 6 + len(body) + 1, len(items)) + body + b"\xff"


def test_listpack_back_lengths_at_redis_boundaries() -> None:
    """Entries whose encoded length is 127/128 and 16382/16383 bytes (5-byte header of a
    32-bit string): the back-length grows at Redis's thresholds, not at powers of two."""
    r = Redis()
    for n in (127 - 2, 128 - 2, 16382 - 5, 16383 - 5, 16384 - 5):
        item = b"x" * n
        blob = listpack_of(b"a", item)
        node = b"\x02" + rdb_length(len(blob)) + blob  # quicklist 2: one packed node
        assert r("restore", f"l{n}", "0", framed(b"\x12\x01" + node)) == OK, n
        assert r("lrange", f"l{n}", "0", "-1") == [b"a", item]


def test_refused_restores_change_nothing() -> None:
    r = Redis()
    r("set", "k", "v")
    good = r("dump", "k")
    assert isinstance(good, bytes)
    busy = unchanged(r, "restore", "k", "0", good)
    assert busy == Error("BUSYKEY Target key name already exists.")
    wrong = Error("ERR DUMP payload version or checksum are wrong")
    assert unchanged(r, "restore", "n", "0", good[:-1] + bytes([good[-1] ^ 1])) == wrong
    assert unchanged(r, "restore", "n", "0", framed(b"\x00\x01x", version=11)) == wrong
    assert unchanged(r, "restore", "n", "0", b"short") == wrong
    bad = Error("ERR Bad data format")
    assert unchanged(r, "restore", "n", "0", framed(b"\x00\x05abc")) == bad  # truncated
    assert unchanged(r, "restore", "n", "0", framed(b"\x00\x01xy")) == bad  # trailing byte
    assert unchanged(r, "restore", "n", "0", framed(b"\x01\x00")) == bad  # an empty list
    assert unchanged(r, "restore", "n", "0", framed(b"\x08\x00")) == bad  # no such type
    nan = b"\x05\x01\x01a" + struct.pack("<d", float("nan"))
    assert unchanged(r, "restore", "n", "0", framed(nan)) == bad
    assert unchanged(r, "restore", "n", "0", framed(b"\x10\x03\x00\x00\x00")) == bad
    # LZF that would expand past its declared size (or a size past 512 MiB) is refused
    bomb = b"\x02abc" + b"\xe0\xff\x00" * 100  # "abc", then 100 copies of 264 bytes
    assert (
        unchanged(
            r,
            "restore",
            "n",
            "0",
            framed(b"\x00\xc3" + rdb_length(len(bomb)) + rdb_length(10) + bomb),
        )
        == bad
    )
    huge = b"\x00\xc3\x05\x81" + struct.pack(">Q", 1 << 40) + b"\x00abcd"
    assert unchanged(r, "restore", "n", "0", framed(huge)) == bad
    stream = unchanged(r, "restore", "n", "0", framed(b"\x13\x00"))
    assert str(stream).startswith("ERR Bad data format: raftcache does not restore streams")
    assert unchanged(r, "restore", "n", "-1", good) == Error("ERR Invalid TTL value, must be >= 0")
    assert unchanged(r, "restore", "n", "0", good, "idletime", "-1") == Error(
        "ERR Invalid IDLETIME value, must be >= 0"
    )
    assert unchanged(r, "restore", "n", "0", good, "freq", "256") == Error(
        "ERR Invalid FREQ value, must be >= 0 and <= 255"
    )
    assert unchanged(r, "restore", "n", "0", good, "idletime", "1", "freq", "1") == Error(
        "ERR syntax error"
    )
    assert unchanged(r, "restore", "n", "0", good, "nope") == Error("ERR syntax error")
    assert r("exists", "n") == 0


def test_an_expired_absolute_ttl_only_deletes_the_replaced_key() -> None:
    r = Redis()
    r("set", "k", "v")
    payload = r("dump", "k")
    assert r("restore", "new", "1", payload, "absttl") == OK
    assert r("exists", "new") == 0
    assert r("restore", "k", "1", payload, "absttl", "replace") == OK
    assert r("exists", "k") == 0


def test_streams_are_not_dumped() -> None:
    r = Redis()
    r("xadd", "st", "1-1", "f", "v")
    assert str(r("dump", "st")).startswith("ERR DUMP of a stream is not supported")
    assert isinstance(dump.serialize(b"x"), bytes)
