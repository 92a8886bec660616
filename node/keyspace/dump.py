"""DUMP and RESTORE with Redis's serialization (RDB 10), so keys move between Redis and raftcache.

DUMP writes plain RDB types (string, list, set, hash, ZSET_2) under RDB version 9, so Redis 5.0
and later RESTORE them, each followed by the version and the CRC64 footer. RESTORE reads those
and the compact encodings Redis 7.0 itself dumps (integer and LZF strings, ziplists,
listpacks, intsets, quicklists), so `redis-cli --raw DUMP` on a Redis server RESTOREs here.
Streams and module values are not read or written: their error says what to do instead.

RESTORE runs inside the state machine like any write: the payload is parsed the same way on
every replica (a pure function of its bytes), and a payload that does not parse changes nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from raftcache.node import values as tv
from raftcache.node.keyspace.args import parse_int, syntax
from raftcache.node.keyspace.db import KEY_OVERHEAD, Db
from raftcache.node.keyspace.rdb import (
    RDB_VERSION,
    BadPayload,
    Reader,
    crc64,
    rdb_length,
    rdb_string,
)
from raftcache.node.keyspace.reply import OK, CommandError, ReplyT
from raftcache.node.keyspace.table import command
from raftcache.node.values import Hash, List, Set, ZSet

BAD_FORMAT = "ERR Bad data format"
BAD_FOOTER = "ERR DUMP payload version or checksum are wrong"
BUSYKEY = "BUSYKEY Target key name already exists."

# RDB object types (Redis 7.0 rdb.h)
_STRING, _LIST, _SET, _ZSET, _HASH, _ZSET_2 = 0, 1, 2, 3, 4, 5
_HASH_ZIPMAP, _LIST_ZIPLIST, _SET_INTSET, _ZSET_ZIPLIST, _HASH_ZIPLIST = 9, 10, 11, 12, 13
_LIST_QUICKLIST, _HASH_LISTPACK, _ZSET_LISTPACK, _LIST_QUICKLIST_2 = 14, 16, 17, 18
_STREAMS = (15, 19)
_MODULES = (6, 7)


_DUMP_VERSION = 9
"""The RDB version DUMP writes: Redis 5.0 to 6.2's, which those read as well as 7.x (whose
RESTORE takes any version up to its own, 10); the types written all exist in it."""

_INT64_MAX = 2**63 - 1


# -- writing --------------------------------------------------------------------------------


def _double(score: float) -> bytes:
    return struct.pack("<d", score)


def serialize(value: bytes | tv.Container) -> bytes:
    """DUMP's payload of a stored value."""
    if isinstance(value, bytes):
        body = bytes((_STRING,)) + rdb_string(value)
    elif isinstance(value, List):
        body = bytes((_LIST,)) + rdb_length(len(value)) + b"".join(map(rdb_string, value.items))
    elif isinstance(value, Set):
        members = sorted(value.members)  # any order is valid; sorted is the same everywhere
        body = bytes((_SET,)) + rdb_length(len(members)) + b"".join(map(rdb_string, members))
    elif isinstance(value, Hash):
        pairs = b"".join(rdb_string(f) + rdb_string(v) for f, v in value.fields.items())
        body = bytes((_HASH,)) + rdb_length(len(value)) + pairs
    elif isinstance(value, ZSet):
        # Redis writes a skiplist from its tail, so loading inserts at the head: highest first
        scored = sorted(((s, m) for m, s in value.scores.items()), reverse=True)
        items = b"".join(rdb_string(m) + _double(s) for s, m in scored)
        body = bytes((_ZSET_2,)) + rdb_length(len(scored)) + items
    else:
        raise CommandError(
            f"ERR DUMP of a {value.TYPE} is not supported by raftcache: copy it with "
            "XRANGE and XADD"
        )
    body += struct.pack("<H", _DUMP_VERSION)
    return body + struct.pack("<Q", crc64(body))


# -- reading --------------------------------------------------------------------------------


def _ziplist(blob: bytes) -> list[bytes]:
    """The entries of a ziplist (Redis <= 6.2's compact lists, hashes and sorted sets)."""
    if len(blob) < 11 or blob[-1] != 0xFF:
        raise BadPayload()
    out: list[bytes] = []
    i, end = 10, len(blob) - 1
    while i < end:
        i += 5 if blob[i] == 0xFE else 1  # the previous entry's length
        if i >= end:
            raise BadPayload()
        enc = blob[i]
        kind = enc >> 6
        if kind == 0:
            n, i = enc & 0x3F, i + 1
        elif kind == 1:
            n, i = (enc & 0x3F) << 8 | blob[i + 1], i + 2
        elif enc == 0x80:
            n, i = struct.unpack_from(">I", blob, i + 1)[0], i + 5
        else:
            i += 1
            if enc == 0xC0:
                value, size = struct.unpack_from("<h", blob, i)[0], 2
            elif enc == 0xD0:
                value, size = struct.unpack_from("<i", blob, i)[0], 4
            elif enc == 0xE0:
                value, size = struct.unpack_from("<q", blob, i)[0], 8
            elif enc == 0xF0:
                value, size = int.from_bytes(blob[i : i + 3], "little", signed=True), 3
            elif enc == 0xFE:
                value, size = struct.unpack_from("<b", blob, i)[0], 1
            elif 0xF1 <= enc <= 0xFD:
                value, size = (enc & 0x0F) - 1, 0
            else:
                raise BadPayload()
            out.append(str(value).encode())
            i += size
            continue
        if i + n > end:
            raise BadPayload()
        out.append(blob[i : i + n])
        i += n
    return out


def _listpack(blob: bytes) -> list[bytes]:
    """The entries of a listpack (Redis 7's compact encoding)."""
    if len(blob) < 7 or blob[-1] != 0xFF:
        raise BadPayload()
    out: list[bytes] = []
    i, end = 6, len(blob) - 1
    while i < end:
        start = i
        enc = blob[i]
        value: bytes | int
        if enc < 0x80:
            value, i = enc, i + 1
        elif enc >> 6 == 2:
            n = enc & 0x3F
            value, i = blob[i + 1 : i + 1 + n], i + 1 + n
        elif enc >> 5 == 6:
            raw = (enc & 0x1F) << 8 | blob[i + 1]
            value, i = raw - (1 << 13) if raw >= 1 << 12 else raw, i + 2
        elif enc >> 4 == 0xE:
            n = (enc & 0x0F) << 8 | blob[i + 1]
            value, i = blob[i + 2 : i + 2 + n], i + 2 + n
        elif enc == 0xF0:
            n = struct.unpack_from("<I", blob, i + 1)[0]
            value, i = blob[i + 5 : i + 5 + n], i + 5 + n
        elif enc in (0xF1, 0xF2, 0xF3, 0xF4):
            size = {0xF1: 2, 0xF2: 3, 0xF3: 4, 0xF4: 8}[enc]
            value = int.from_bytes(blob[i + 1 : i + 1 + size], "little", signed=True)
            i += 1 + size
        else:
            raise BadPayload()
        if i > end:
            raise BadPayload()
        entry = i - start  # its back-length, sized as lpEncodeBacklen does
        i += (
            1
            if entry <= 127
            else 2
            if entry < 16383
            else 3
            if entry < 2097151
            else 4
            if entry < 268435455
            else 5
        )
        out.append(value if isinstance(value, bytes) else str(value).encode())
    if i != end:
        raise BadPayload()
    return out


def _intset(blob: bytes) -> list[bytes]:
    if len(blob) < 8:
        raise BadPayload()
    width, n = struct.unpack_from("<II", blob)
    fmt = {2: "h", 4: "i", 8: "q"}.get(width)
    if fmt is None or len(blob) != 8 + width * n:
        raise BadPayload()
    return [str(v).encode() for v in struct.unpack_from(f"<{n}{fmt}", blob, 8)]


def _pairs(items: list[bytes]) -> list[tuple[bytes, bytes]]:
    if len(items) % 2:
        raise BadPayload()
    return list(zip(items[::2], items[1::2], strict=True))


def _score(raw: bytes) -> float:
    try:
        return float(raw)
    except ValueError:
        raise BadPayload() from None


def _list_of(items: list[bytes]) -> List:
    out = List()
    for item in items:
        out.push(item, right=True)
    return out


def _set_of(items: list[bytes]) -> Set:
    out = Set()
    for item in items:
        if not out.add(item):  # a duplicate member: Redis refuses the payload too
            raise BadPayload()
    return out


def _hash_of(pairs: list[tuple[bytes, bytes]]) -> Hash:
    out = Hash()
    for field, value in pairs:
        if not out.set(field, value):
            raise BadPayload()
    return out


def _zset_of(scored: list[tuple[bytes, float]]) -> ZSet:
    out = ZSet()
    for member, score in scored:
        if score != score or not out.set(member, score):  # NaN, or a duplicate member
            raise BadPayload()
    return out


def _quicklist(r: Reader, version: int) -> List:
    items: list[bytes] = []
    for _ in range(r.count()):
        container = r.count() if version == 2 else 2
        blob = r.string()
        if container == 1:  # PLAIN: one large element
            items.append(blob)
        elif container == 2:
            items += _listpack(blob) if version == 2 else _ziplist(blob)
        else:
            raise BadPayload()
    return _list_of(items)


_COMPACT: dict[int, Callable[[bytes], tv.Container]] = {
    _LIST_ZIPLIST: lambda b: _list_of(_ziplist(b)),
    _SET_INTSET: lambda b: _set_of(_intset(b)),
    _ZSET_ZIPLIST: lambda b: _zset_of([(m, _score(s)) for m, s in _pairs(_ziplist(b))]),
    _HASH_ZIPLIST: lambda b: _hash_of(_pairs(_ziplist(b))),
    _HASH_LISTPACK: lambda b: _hash_of(_pairs(_listpack(b))),
    _ZSET_LISTPACK: lambda b: _zset_of([(m, _score(s)) for m, s in _pairs(_listpack(b))]),
}


def deserialize(payload: bytes) -> bytes | tv.Container:
    """A DUMP payload's value; CommandError with Redis's texts when it is not one."""
    if len(payload) < 10:
        raise CommandError(BAD_FOOTER)
    body, footer = payload[:-10], payload[-10:]
    version, crc = struct.unpack("<HQ", footer)
    if version > RDB_VERSION or crc64(payload[:-8]) != crc:
        raise CommandError(BAD_FOOTER)
    r = Reader(body)
    try:
        kind = r.byte()
        if kind in _STREAMS:
            raise CommandError(
                f"{BAD_FORMAT}: raftcache does not restore streams; copy the stream with "
                "XRANGE and XADD"
            )
        if kind in _MODULES or kind == _HASH_ZIPMAP:
            raise CommandError(f"{BAD_FORMAT}: RDB type {kind} is not supported by raftcache")
        value: bytes | tv.Container
        if kind == _STRING:
            value = r.string()
        elif kind == _LIST:
            value = _list_of([r.string() for _ in range(r.count())])
        elif kind == _SET:
            value = _set_of([r.string() for _ in range(r.count())])
        elif kind == _HASH:
            value = _hash_of([(r.string(), r.string()) for _ in range(r.count())])
        elif kind in (_ZSET, _ZSET_2):
            scored = []
            for _ in range(r.count()):
                member = r.string()
                score = struct.unpack("<d", r.take(8))[0] if kind == _ZSET_2 else r.ascii_double()
                scored.append((member, score))
            value = _zset_of(scored)
        elif kind in (_LIST_QUICKLIST, _LIST_QUICKLIST_2):
            value = _quicklist(r, 2 if kind == _LIST_QUICKLIST_2 else 1)
        elif kind in _COMPACT:
            value = _COMPACT[kind](r.string())
        else:
            raise BadPayload()
    except (BadPayload, struct.error, IndexError):
        raise CommandError(BAD_FORMAT) from None
    if r.pos != len(body) or (not isinstance(value, bytes) and not len(value)):
        raise CommandError(BAD_FORMAT)  # trailing bytes, or an empty container
    return value


# -- the commands -----------------------------------------------------------------------------


@command("dump", 2, "readonly", keys=(1, 1, 1), group="generic")
def dump(db: Db, argv: list[bytes]) -> ReplyT:
    entry = db.entry(argv[1])
    return None if entry is None else serialize(entry[0])


def _restore_options(argv: list[bytes]) -> tuple[bool, bool]:
    """(replace, absttl); IDLETIME and FREQ are checked as Redis does and otherwise unused
    (raftcache keeps its own access statistics)."""
    replace = absttl = False
    idle = freq = False
    j = 4
    while j < len(argv):
        opt, more = argv[j].lower(), len(argv) - j - 1
        if opt == b"replace":
            replace = True
        elif opt == b"absttl":
            absttl = True
        elif opt == b"idletime" and more and not freq:
            if parse_int(argv[j + 1]) < 0:
                raise CommandError("ERR Invalid IDLETIME value, must be >= 0")
            idle, j = True, j + 1
        elif opt == b"freq" and more and not idle:
            if not 0 <= parse_int(argv[j + 1]) <= 255:
                raise CommandError("ERR Invalid FREQ value, must be >= 0 and <= 255")
            freq, j = True, j + 1
        else:
            raise syntax()
        j += 1
    return replace, absttl


@command("restore", -4, "write denyoom", keys=(1, 1, 1), group="generic")
def restore(db: Db, argv: list[bytes]) -> ReplyT:
    key = argv[1]
    replace, absttl = _restore_options(argv)
    if not replace and db.exists(key):
        raise CommandError(BUSYKEY)
    ttl = parse_int(argv[2])
    if ttl < 0:
        raise CommandError("ERR Invalid TTL value, must be >= 0")
    if not absttl and ttl > _INT64_MAX - db.now:
        raise CommandError("ERR invalid expire time in 'restore' command")
    value = deserialize(argv[3])
    deadline = 0 if not ttl else ttl if absttl else db.now + ttl
    if deadline and deadline <= db.now:  # already expired: only the replaced key goes
        if replace:
            db.delete(key)
        return OK
    db.reserve(len(key) + KEY_OVERHEAD + tv.value_nbytes(value))
    db.set(key, value, deadline)  # replaces a key of any type (REPLACE was checked above)
    return OK
