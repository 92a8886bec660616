"""Redis keys commands (see table.py for the handler contract)."""

from __future__ import annotations

from typing import Final

from raftcache.node import values as tv
from raftcache.node.keyspace import elements
from raftcache.node.keyspace.args import INT64_MAX, INT64_MIN, parse_int, syntax
from raftcache.node.keyspace.db import DATABASES, KEY_OVERHEAD, Db, key_db
from raftcache.node.keyspace.glob import compile_glob
from raftcache.node.keyspace.reply import (
    EXPIRE_INVALID,
    NO_SUCH_KEY,
    NOT_INTEGER,
    OK,
    CommandError,
    ReplyT,
    Status,
    wrong_arity,
)
from raftcache.node.keyspace.strings import RawString, as_int
from raftcache.node.keyspace.table import command
from raftcache.node.values import type_name

SAME_OBJECT: Final = "ERR source and destination objects are the same"
DB_RANGE: Final = "ERR DB index is out of range"
NX_AND_OTHERS: Final = "ERR NX and XX, GT or LT options at the same time are not compatible"
GT_AND_LT: Final = "ERR GT and LT options at the same time are not compatible"
LFU_NOT_SELECTED: Final = (
    "ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please note "
    "that when switching between policies at runtime LRU and LFU data will take some time "
    "to adjust."
)
LFU_SELECTED: Final = (
    "ERR An LFU maxmemory policy is selected, idle time not tracked. Please note that when "
    "switching between policies at runtime LRU and LFU data will take some time to adjust."
)
INT32_MAX = 2**31 - 1


def _db_index(raw: bytes) -> int:
    """A target database as MOVE and COPY take it (a C int, then 0-15)."""
    n = parse_int(raw)
    if not -INT32_MAX - 1 <= n <= INT32_MAX:
        raise CommandError(NOT_INTEGER)
    if not 0 <= n < DATABASES:
        raise CommandError(DB_RANGE)
    return n


def _other(db: Db, n: int) -> Db:
    return db if n == db.db else Db(db.sm, n, db.now, db.write)


# -- existence and deletion ----------------------------------------------------------


def _delete(db: Db, argv: list[bytes]) -> ReplyT:
    return sum(db.delete(key) for key in argv[1:])


command("del", -2, "write", keys=(1, -1, 1))(_delete)
command("unlink", -2, "write fast", keys=(1, -1, 1))(_delete)


def _count(db: Db, argv: list[bytes]) -> ReplyT:
    return sum(db.exists(key) for key in argv[1:])


command("exists", -2, "readonly fast", keys=(1, -1, 1))(_count)
command("touch", -2, "readonly fast", keys=(1, -1, 1))(_count)


@command("type", 2, "readonly fast")
def type_(db: Db, argv: list[bytes]) -> ReplyT:
    entry = db.entry(argv[1])
    return Status("none" if entry is None else type_name(entry[0]))


@command("dbsize", 1, "readonly fast", keys=(0, 0, 0), group="server")
def dbsize(db: Db, argv: list[bytes]) -> ReplyT:
    return db.size()


def _check_flush(argv: list[bytes]) -> None:
    if len(argv) > 2 or (len(argv) == 2 and argv[1].upper() not in (b"SYNC", b"ASYNC")):
        raise syntax()


def _flush(db: Db, only: int | None) -> None:
    """Delete every stored key (of one database, or all 16): each a normal delete. Internal
    databases (loaded Lua scripts) stay, as Redis keeps its script cache on FLUSHALL."""
    dbs: dict[int, Db] = {}
    for internal in list(db.sm.keys()):
        n, key = key_db(internal)
        if (only is None and n < DATABASES) or n == only:
            target = dbs.get(n)
            if target is None:
                target = dbs[n] = _other(db, n)
            target.delete(key)


@command("flushdb", -1, "write", keys=(0, 0, 0), group="server", check=_check_flush)
def flushdb(db: Db, argv: list[bytes]) -> ReplyT:
    _check_flush(argv)
    _flush(db, db.db)
    return OK


@command("flushall", -1, "write", keys=(0, 0, 0), group="server", check=_check_flush)
def flushall(db: Db, argv: list[bytes]) -> ReplyT:
    _check_flush(argv)
    _flush(db, None)
    return OK


# -- expiry ----------------------------------------------------------------------------

_EXPIRE_FLAGS = (b"NX", b"XX", b"GT", b"LT")


def _expire_flags(argv: list[bytes]) -> frozenset[bytes]:
    flags: set[bytes] = set()
    for raw in argv[3:]:
        opt = raw.upper()
        if opt not in _EXPIRE_FLAGS:
            raise CommandError(f"ERR Unsupported option {raw.decode('utf-8', 'replace')}")
        flags.add(opt)
    if b"NX" in flags and flags & {b"XX", b"GT", b"LT"}:
        raise CommandError(NX_AND_OTHERS)
    if {b"GT", b"LT"} <= flags:
        raise CommandError(GT_AND_LT)
    return frozenset(flags)


def _when(argv: list[bytes], seconds: bool, base: int) -> int:
    """The absolute deadline (ms) an EXPIRE-like command asks for (may be in the past)."""
    name = argv[0].decode("utf-8", "replace").lower()
    when = parse_int(argv[2])
    if seconds:
        # C's LLONG_MIN / 1000 truncates toward zero.
        if when > INT64_MAX // 1000 or when < -(-INT64_MIN // 1000):
            raise CommandError(EXPIRE_INVALID.format(name))
        when *= 1000
    if when > INT64_MAX - base:
        raise CommandError(EXPIRE_INVALID.format(name))
    return when + base


def _expire(name: str, seconds: bool, relative: bool) -> None:
    def check(argv: list[bytes]) -> None:
        _expire_flags(argv)
        _when(argv, seconds, 0)

    @command(name, -3, "write fast", check=check)
    def handler(db: Db, argv: list[bytes]) -> ReplyT:
        flags = _expire_flags(argv)
        when = _when(argv, seconds, db.now if relative else 0)
        entry = db.entry(argv[1])
        if entry is None:
            return 0
        current = entry[2] or None  # None: no expiry, an infinite TTL
        if (
            (b"NX" in flags and current is not None)
            or (b"XX" in flags and current is None)
            or (b"GT" in flags and (current is None or when <= current))
            or (b"LT" in flags and current is not None and when >= current)
        ):
            return 0
        if when <= db.now:
            db.delete(argv[1])
        else:
            db.set_deadline(argv[1], when)
        return 1


_expire("expire", seconds=True, relative=True)
_expire("pexpire", seconds=False, relative=True)
_expire("expireat", seconds=True, relative=False)
_expire("pexpireat", seconds=False, relative=False)


def _ttl(name: str, ms: bool, absolute: bool) -> None:
    @command(name, 2, "readonly fast")
    def handler(db: Db, argv: list[bytes]) -> ReplyT:
        entry = db.entry(argv[1])
        if entry is None:
            return -2
        if not entry[2]:
            return -1
        ttl = max(entry[2] if absolute else entry[2] - db.now, 0)
        return ttl if ms else (ttl + 500) // 1000


_ttl("ttl", ms=False, absolute=False)
_ttl("pttl", ms=True, absolute=False)
_ttl("expiretime", ms=False, absolute=True)
_ttl("pexpiretime", ms=True, absolute=True)


@command("persist", 2, "write fast")
def persist(db: Db, argv: list[bytes]) -> ReplyT:
    if not db.deadline(argv[1]):
        return 0
    db.set_deadline(argv[1], 0)
    return 1


# -- listing ---------------------------------------------------------------------------


@command("keys", 2, "readonly", keys=(0, 0, 0))
def keys(db: Db, argv: list[bytes]) -> ReplyT:
    pattern, live = argv[1], db.keys()
    if pattern == b"*":
        return list(live)
    match = compile_glob(pattern)
    return [key for key in live if match(key)]


def parse_cursor(raw: bytes) -> int:
    """SCAN's cursor: an element scan's, except that a NUL anywhere is refused."""
    if b"\0" in raw:
        raise CommandError(elements.INVALID_CURSOR)
    return elements.parse_cursor(raw)


def _scan_options(argv: list[bytes]) -> tuple[int, bytes, bytes | None]:
    count, pattern, kind = 10, b"*", None
    i = 2
    while i < len(argv):
        opt = argv[i].upper()
        if i + 1 >= len(argv) or opt not in (b"COUNT", b"MATCH", b"TYPE"):
            raise syntax()
        if opt == b"COUNT":
            count = parse_int(argv[i + 1])
            if count < 1:
                raise syntax()
        elif opt == b"MATCH":
            pattern = argv[i + 1]
        else:
            kind = argv[i + 1].lower()
        i += 2
    return count, pattern, kind


@command("scan", -2, "readonly", keys=(0, 0, 0))
def scan(db: Db, argv: list[bytes]) -> ReplyT:
    """Whole scan buckets of the state machine; the cursor is the next bucket number."""
    cursor = parse_cursor(argv[1])
    count, pattern, kind = _scan_options(argv)
    found, after = db.sm.scan(cursor, b"", count, db.now, db=db.db)
    match = None if pattern == b"*" else compile_glob(pattern)
    out: list[ReplyT] = []
    for internal in found:
        key = key_db(internal)[1]
        if match is not None and not match(key):
            continue
        if kind is not None:
            entry = db.entry(key)
            if entry is None or type_name(entry[0]).encode() != kind:
                continue
        out.append(key)
    return [str(after).encode(), out]


SMALL_STORE = 4096


@command("randomkey", 1, "readonly", keys=(0, 0, 0))
def randomkey(db: Db, argv: list[bytes]) -> ReplyT:
    """A key from a random scan bucket (db.rng: the same on every replica)."""
    from raftcache.node.state_machine import SCAN_BUCKETS  # a cycle at import time

    if not db.size():
        return None
    rng = db.rng(b"randomkey")
    if len(db.sm) <= SMALL_STORE:  # sparse buckets: listing the keys is cheaper than walking
        live = list(db.keys())
        return rng.choice(live) if live else None
    start = cursor = rng.randrange(SCAN_BUCKETS)
    wrapped = False
    while True:
        found, cursor = db.sm.scan(cursor, b"", 1, db.now, db=db.db)
        if found:
            return key_db(rng.choice(found))[1]
        if cursor == 0:
            if wrapped:
                return None
            wrapped = True
        elif wrapped and cursor > start:
            return None


# -- renaming, copying, moving -----------------------------------------------------------


def _rename(db: Db, argv: list[bytes], nx: bool) -> ReplyT:
    src, dst = argv[1], argv[2]
    entry = db.entry(src)
    if entry is None:
        raise CommandError(NO_SUCH_KEY)
    if src == dst:
        return 0 if nx else OK
    if nx and db.exists(dst):
        return 0
    db.set(dst, entry[0], entry[2])
    db.delete(src)
    return 1 if nx else OK


@command("rename", 3, "write", keys=(1, 2, 1))
def rename(db: Db, argv: list[bytes]) -> ReplyT:
    return _rename(db, argv, nx=False)


@command("renamenx", 3, "write fast", keys=(1, 2, 1))
def renamenx(db: Db, argv: list[bytes]) -> ReplyT:
    return _rename(db, argv, nx=True)


def _copy_options(argv: list[bytes]) -> tuple[int | None, bool]:
    target, replace = None, False
    j = 3
    while j < len(argv):
        opt = argv[j].upper()
        if opt == b"REPLACE":
            replace = True
        elif opt == b"DB" and j + 1 < len(argv):
            target = _db_index(argv[j + 1])
            j += 1
        else:
            raise syntax()
        j += 1
    return target, replace


def _check_copy(argv: list[bytes]) -> None:
    _copy_options(argv)


@command("copy", -3, "write denyoom", keys=(1, 2, 1), check=_check_copy)
def copy(db: Db, argv: list[bytes]) -> ReplyT:
    target, replace = _copy_options(argv)
    dst_db = _other(db, db.db if target is None else target)
    src, dst = argv[1], argv[2]
    if dst_db is db and src == dst:
        raise CommandError(SAME_OBJECT)
    entry = db.entry(src)
    if entry is None:
        return 0
    if dst_db.exists(dst) and not replace:
        return 0
    value = entry[0]
    db.reserve(len(dst) + KEY_OVERHEAD + tv.value_nbytes(value))
    dst_db.set(dst, value if isinstance(value, bytes) else value.copy(), entry[2])
    return 1


def _check_move(argv: list[bytes]) -> None:
    _db_index(argv[2])


@command("move", 3, "write fast", check=_check_move)
def move(db: Db, argv: list[bytes]) -> ReplyT:
    dst_db = _other(db, _db_index(argv[2]))
    if dst_db is db:
        raise CommandError(SAME_OBJECT)
    key = argv[1]
    entry = db.entry(key)
    if entry is None or dst_db.exists(key):
        return 0
    dst_db.set(key, entry[0], entry[2])
    db.delete(key)
    return 1


# -- OBJECT and MEMORY -------------------------------------------------------------------

SHARED_INTEGERS = 10_000  # Redis shares the objects of 0..9999
SHARED_REFCOUNT = 2**31 - 1
EMBSTR_LIMIT = 44
LFU_INIT_VAL = 5
# Redis 7.0's default conversion thresholds (redis.conf).
HASH_MAX_LISTPACK_ENTRIES = 512
HASH_MAX_LISTPACK_VALUE = 64
ZSET_MAX_LISTPACK_ENTRIES = 128
ZSET_MAX_LISTPACK_VALUE = 64
SET_MAX_INTSET_ENTRIES = 512


def encoding(value: bytes | tv.Container) -> str:
    """The encoding Redis 7.0 would give the value (by content, with default thresholds)."""
    if isinstance(value, bytes):
        if isinstance(value, RawString):
            return "raw"
        if len(value) <= 20 and as_int(value) is not None:
            return "int"
        return "embstr" if len(value) <= EMBSTR_LIMIT else "raw"
    if isinstance(value, tv.Hash):
        small = len(value) <= HASH_MAX_LISTPACK_ENTRIES and all(
            len(f) <= HASH_MAX_LISTPACK_VALUE and len(v) <= HASH_MAX_LISTPACK_VALUE
            for f, v in value.fields.items()
        )
        return "listpack" if small else "hashtable"
    if isinstance(value, tv.ZSet):
        small = len(value) <= ZSET_MAX_LISTPACK_ENTRIES and all(
            len(m) <= ZSET_MAX_LISTPACK_VALUE for m in value.scores
        )
        return "listpack" if small else "skiplist"
    if isinstance(value, tv.Set):
        ints = len(value) <= SET_MAX_INTSET_ENTRIES and all(
            as_int(m) is not None for m in value.members
        )
        return "intset" if ints else "hashtable"
    if isinstance(value, tv.List):
        return "quicklist"  # Redis 7.0 keeps every list in a quicklist
    if isinstance(value, tv.Stream):
        return "stream"
    return "unknown"


def _refcount(db: Db, value: bytes | tv.Container) -> int:
    """Redis shares small integer strings unless an LRU/LFU policy with a limit forbids it."""
    shared_ok = not db.sm.max_memory or not db.sm.eviction_policy.endswith(("lru", "lfu"))
    if isinstance(value, bytes) and not isinstance(value, RawString) and shared_ok:
        number = as_int(value)
        if number is not None and 0 <= number < SHARED_INTEGERS:
            return SHARED_REFCOUNT
    return 1


OBJECT_HELP: Final = (
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
)
MEMORY_HELP: Final = (
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
)
MEMORY_DOCTOR: Final = (
    b"Hi Sam, I can't find any memory issue in your instance. "
    b"I can only account for what occurs on this base.\n"
)


def _help(argv: list[bytes], lines: tuple[str, ...]) -> ReplyT:
    name = argv[0].decode("utf-8", "replace").upper()
    head = f"{name} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    return [Status(line) for line in (head, *lines, "HELP", "    Prints this help.")]


def _subcommand(argv: list[bytes], arities: dict[bytes, int]) -> bytes:
    """The lower-cased subcommand, checked like Redis's container commands."""
    sub = argv[1].lower()
    arity = arities.get(sub)
    if arity is None:
        name = argv[1].decode("utf-8", "replace")[:128].replace("\r", " ").replace("\n", " ")
        container = argv[0].decode("utf-8", "replace").upper()
        raise CommandError(f"ERR unknown subcommand '{name}'. Try {container} HELP.")
    if (arity > 0 and len(argv) != arity) or len(argv) < -arity:
        parent = argv[0].decode("utf-8", "replace").lower()
        raise CommandError(wrong_arity(f"{parent}|{sub.decode('utf-8', 'replace')}"))
    return sub


_OBJECT_ARITIES = {b"help": 2, b"encoding": 3, b"freq": 3, b"idletime": 3, b"refcount": 3}


@command("object", -2, "readonly", keys=(2, 2, 1))
def object_(db: Db, argv: list[bytes]) -> ReplyT:
    sub = _subcommand(argv, _OBJECT_ARITIES)
    if sub == b"help":
        return _help(argv, OBJECT_HELP)
    entry = db.entry(argv[2])
    if entry is None:
        return None
    lfu = db.sm.eviction_policy.endswith("lfu")
    if sub == b"encoding":
        return encoding(entry[0]).encode()
    if sub == b"refcount":
        return _refcount(db, entry[0])
    if sub == b"freq":
        if not lfu:
            raise CommandError(LFU_NOT_SELECTED)
        return LFU_INIT_VAL  # access frequency is not tracked: every key looks new
    if lfu:
        raise CommandError(LFU_SELECTED)
    return 0  # idle time is not tracked (reads are not replicated)


_MEMORY_ARITIES = {
    b"help": 2,
    b"usage": -3,
    b"doctor": 2,
    b"malloc-stats": 2,
    b"purge": 2,
    b"stats": 2,
}


def _memory_usage(db: Db, argv: list[bytes]) -> ReplyT:
    j = 3
    while j < len(argv):
        if argv[j].upper() != b"SAMPLES" or j + 1 >= len(argv):
            raise syntax()
        if parse_int(argv[j + 1]) < 0:
            raise syntax()
        j += 2
    if not db.exists(argv[2]):
        return None
    return db.sm.nbytes_of(db.k(argv[2]))


@command("memory", -2, "readonly", keys=(2, 2, 1), group="server")
def memory(db: Db, argv: list[bytes]) -> ReplyT:
    sub = _subcommand(argv, _MEMORY_ARITIES)
    if sub == b"help":
        return _help(argv, MEMORY_HELP)
    if sub == b"usage":
        return _memory_usage(db, argv)
    if sub == b"doctor":
        return MEMORY_DOCTOR
    if sub == b"malloc-stats":
        return b"Stats not supported for the current allocator"
    if sub == b"purge":
        return OK
    raise CommandError("ERR MEMORY STATS is not supported: see INFO memory")
