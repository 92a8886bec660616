"""Redis bitmap commands over strings: SETBIT, GETBIT, BITCOUNT (see table.py).

Bit 0 is the most significant bit of byte 0, as in Redis; a string grows with zero bytes
to hold the bit SETBIT sets.
"""

from __future__ import annotations

from raftcache.node.keyspace.args import parse_int
from raftcache.node.keyspace.db import KEY_OVERHEAD, Db
from raftcache.node.keyspace.reply import NOT_INTEGER, CommandError, ReplyT
from raftcache.node.keyspace.strings import RawString
from raftcache.node.keyspace.table import command

BAD_OFFSET = "ERR bit offset is not an integer or out of range"
BAD_BIT = "ERR bit is not an integer or out of range"
MAX_BIT_OFFSET = (512 << 20) * 8 - 1
"""A string holds at most 512 MB (Redis's proto-max-bulk-len), so bits 0..2^32-1."""


def _offset(raw: bytes) -> int:
    offset = parse_int(raw, BAD_OFFSET)
    if not 0 <= offset <= MAX_BIT_OFFSET:
        raise CommandError(BAD_OFFSET)
    return offset


def _check_setbit(argv: list[bytes]) -> None:
    _offset(argv[2])
    if argv[3] not in (b"0", b"1"):
        raise CommandError(BAD_BIT)


@command("setbit", 4, "write denyoom", group="bitmap", check=_check_setbit)
def setbit(db: Db, argv: list[bytes]) -> ReplyT:
    _check_setbit(argv)
    key, offset, on = argv[1], _offset(argv[2]), argv[3] == b"1"
    old = db.string(key)
    base = old or b""
    byte, mask = offset >> 3, 0x80 >> (offset & 7)
    previous = int(byte < len(base) and bool(base[byte] & mask))
    grown = max(byte + 1 - len(base), 0)
    db.reserve(grown + (0 if old is not None else len(key) + KEY_OVERHEAD))
    value = bytearray(base)
    value.extend(bytes(grown))
    value[byte] = value[byte] | mask if on else value[byte] & ~mask & 0xFF
    db.set(key, RawString(value), db.deadline(key))
    return previous


@command("getbit", 3, "readonly fast", group="bitmap")
def getbit(db: Db, argv: list[bytes]) -> ReplyT:
    offset = _offset(argv[2])
    value = db.string(argv[1]) or b""
    byte = offset >> 3
    return int(byte < len(value) and bool(value[byte] & (0x80 >> (offset & 7))))


@command("bitcount", -2, "readonly", group="bitmap")
def bitcount(db: Db, argv: list[bytes]) -> ReplyT:
    if len(argv) not in (2, 4, 5):
        raise CommandError("ERR syntax error")
    unit = b"BYTE"
    start = end = 0
    if len(argv) >= 4:
        start, end = parse_int(argv[2], NOT_INTEGER), parse_int(argv[3], NOT_INTEGER)
        if len(argv) == 5:
            unit = argv[4].upper()
            if unit not in (b"BYTE", b"BIT"):
                raise CommandError("ERR syntax error")
    value = db.string(argv[1])
    if not value:
        return 0
    if len(argv) == 2:
        return int.from_bytes(value, "big").bit_count()
    total = len(value) * (8 if unit == b"BIT" else 1)
    start, end = _clip(start, total), _clip(end, total)
    if end >= total:
        end = total - 1
    if start > end:
        return 0
    if unit == b"BYTE":
        return int.from_bytes(value[start : end + 1], "big").bit_count()
    bits = int.from_bytes(value, "big")
    width = end - start + 1
    return ((bits >> (total - 1 - end)) & ((1 << width) - 1)).bit_count()


def _clip(index: int, total: int) -> int:
    if index < 0:
        index += total
    return max(index, 0)
