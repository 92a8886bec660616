"""Redis hash commands (see table.py for the handler contract).

Fields keep their insertion order (a dict), as a Redis listpack does, so small hashes list,
scan and pick the way Redis lists them.
"""

from __future__ import annotations

from fractions import Fraction

from raftcache.node.keyspace import elements, longdouble
from raftcache.node.keyspace.args import INT64_MAX, INT64_MIN, parse_int, syntax
from raftcache.node.keyspace.db import KEY_OVERHEAD, Db
from raftcache.node.keyspace.glob import compile_glob
from raftcache.node.keyspace.reply import (
    NOT_FLOAT,
    OK,
    OVERFLOW,
    CommandError,
    Map,
    Pairs,
    ReplyT,
    wrong_arity,
)
from raftcache.node.keyspace.table import command
from raftcache.node.values import Hash

HASH_NOT_INTEGER = "ERR hash value is not an integer"
HASH_NOT_FLOAT = "ERR hash value is not a float"
NAN_OR_INFINITY = "ERR value is NaN or Infinity"
WOULD_BE_NAN = "ERR increment would produce NaN or Infinity"

LISTPACK_ENTRIES = 128  # Redis's hash-max-listpack-entries default
LISTPACK_VALUE = 64  # hash-max-listpack-value


def encoding(h: Hash) -> str:
    """What OBJECT ENCODING says in Redis 7.0 with the default limits (not sticky here)."""
    if len(h) <= LISTPACK_ENTRIES and all(
        len(f) <= LISTPACK_VALUE and len(v) <= LISTPACK_VALUE for f, v in h.fields.items()
    ):
        return "listpack"
    return "hashtable"


def _growth(key: bytes, h: Hash | None, pairs: list[tuple[bytes, bytes]]) -> int:
    """An upper bound of the bytes setting `pairs` adds."""
    total = 0 if h is not None else len(key) + KEY_OVERHEAD
    for field, value in pairs:
        old = None if h is None else h.fields.get(field)
        total += len(field) + len(value) + Hash.OVERHEAD if old is None else len(value) - len(old)
    return total


def _set(db: Db, key: bytes, h: Hash | None, pairs: list[tuple[bytes, bytes]]) -> int:
    """Set fields (after every check passed); returns how many were new."""
    db.reserve(_growth(key, h, pairs))
    c, entry = db.open(key, Hash)
    added = sum(c.set(field, value) for field, value in pairs)
    elements.prune(c)
    db.close(key, c, entry, True)
    return added


def _check_pairs(argv: list[bytes]) -> None:
    if len(argv) % 2:
        raise CommandError(wrong_arity(argv[0].decode("utf-8", "replace")))


@command("hset", -4, "write denyoom fast", group="hash", check=_check_pairs)
def hset(db: Db, argv: list[bytes]) -> ReplyT:
    _check_pairs(argv)
    h = db.typed(argv[1], Hash)
    return _set(db, argv[1], h, list(zip(argv[2::2], argv[3::2], strict=True)))


@command("hmset", -4, "write denyoom fast", group="hash", check=_check_pairs)
def hmset(db: Db, argv: list[bytes]) -> ReplyT:
    hset(db, argv)
    return OK


@command("hsetnx", 4, "write denyoom fast", group="hash")
def hsetnx(db: Db, argv: list[bytes]) -> ReplyT:
    key, field, value = argv[1:4]
    h = db.typed(key, Hash)
    if h is not None and field in h.fields:
        return 0
    return _set(db, key, h, [(field, value)])


@command("hget", 3, "readonly fast", group="hash")
def hget(db: Db, argv: list[bytes]) -> ReplyT:
    h = db.typed(argv[1], Hash)
    return None if h is None else h.fields.get(argv[2])


@command("hmget", -3, "readonly fast", group="hash")
def hmget(db: Db, argv: list[bytes]) -> ReplyT:
    h = db.typed(argv[1], Hash)
    fields = {} if h is None else h.fields
    return [fields.get(field) for field in argv[2:]]


@command("hgetall", 2, "readonly", group="hash")
def hgetall(db: Db, argv: list[bytes]) -> ReplyT:
    h = db.typed(argv[1], Hash)
    return Map(() if h is None else (b for kv in h.fields.items() for b in kv))


@command("hkeys", 2, "readonly", group="hash")
def hkeys(db: Db, argv: list[bytes]) -> ReplyT:
    h = db.typed(argv[1], Hash)
    return [] if h is None else list(h.fields)


@command("hvals", 2, "readonly", group="hash")
def hvals(db: Db, argv: list[bytes]) -> ReplyT:
    h = db.typed(argv[1], Hash)
    return [] if h is None else list(h.fields.values())


@command("hdel", -3, "write fast", group="hash")
def hdel(db: Db, argv: list[bytes]) -> ReplyT:
    key = argv[1]
    if db.typed(key, Hash) is None:
        return 0
    c, entry = db.open(key, Hash)
    deleted = sum(c.delete(field) for field in argv[2:])
    elements.prune(c)
    db.close(key, c, entry, deleted > 0)
    return deleted


@command("hexists", 3, "readonly fast", group="hash")
def hexists(db: Db, argv: list[bytes]) -> ReplyT:
    h = db.typed(argv[1], Hash)
    return int(h is not None and argv[2] in h.fields)


@command("hlen", 2, "readonly fast", group="hash")
def hlen(db: Db, argv: list[bytes]) -> ReplyT:
    h = db.typed(argv[1], Hash)
    return 0 if h is None else len(h)


@command("hstrlen", 3, "readonly fast", group="hash")
def hstrlen(db: Db, argv: list[bytes]) -> ReplyT:
    h = db.typed(argv[1], Hash)
    return 0 if h is None else len(h.fields.get(argv[2], b""))


def _check_hincrby(argv: list[bytes]) -> None:
    parse_int(argv[3])


@command("hincrby", 4, "write denyoom fast", group="hash", check=_check_hincrby)
def hincrby(db: Db, argv: list[bytes]) -> ReplyT:
    incr = parse_int(argv[3])
    key, field = argv[1], argv[2]
    h = db.typed(key, Hash)
    old = None if h is None else h.fields.get(field)
    value = 0 if old is None else parse_int(old, HASH_NOT_INTEGER)
    value += incr  # Python's ints do not wrap: check the 64-bit range afterwards
    if not INT64_MIN <= value <= INT64_MAX:
        raise CommandError(OVERFLOW)
    _set(db, key, h, [(field, b"%d" % value)])
    return value


def _float_increment(raw: bytes) -> Fraction:
    incr = longdouble.parse(raw)
    if incr is None:
        raise CommandError(NOT_FLOAT)
    if isinstance(incr, float):
        raise CommandError(NAN_OR_INFINITY)
    return incr


def _check_hincrbyfloat(argv: list[bytes]) -> None:
    _float_increment(argv[3])


@command("hincrbyfloat", 4, "write denyoom fast", group="hash", check=_check_hincrbyfloat)
def hincrbyfloat(db: Db, argv: list[bytes]) -> ReplyT:
    incr = _float_increment(argv[3])
    key, field = argv[1], argv[2]
    h = db.typed(key, Hash)
    old = None if h is None else h.fields.get(field)
    value = Fraction(0) if old is None else longdouble.parse(old)
    if value is None:
        raise CommandError(HASH_NOT_FLOAT)
    total = longdouble.add(value, incr)
    if total is None or isinstance(total, float):
        raise CommandError(WOULD_BE_NAN)
    text = longdouble.format_human(total)
    _set(db, key, h, [(field, text)])
    return text


def _items(h: Hash) -> list[tuple[bytes, bytes]]:
    return elements.derived(h, "items", lambda: list(h.fields.items()))


@command("hrandfield", -2, "readonly", group="hash")
def hrandfield(db: Db, argv: list[bytes]) -> ReplyT:
    if len(argv) == 2:
        h = db.typed(argv[1], Hash)
        if h is None:
            return None
        items = _items(h)
        return items[db.rng().randrange(len(items))][0]
    count = elements.random_count(argv[2])
    if len(argv) > 4 or (len(argv) == 4 and argv[3].lower() != b"withvalues"):
        raise syntax()
    with_values = len(argv) == 4
    elements.check_random(count, with_values)
    h = db.typed(argv[1], Hash)
    if h is None or count == 0:
        return []
    items = _items(h)
    if count < 0 or count == 1:
        picks = db.rng().choices(items, k=abs(count))
    elif count >= len(items):
        picks = items
    else:
        picks = db.rng().sample(items, count)
    if with_values:
        return Pairs([field, value] for field, value in picks)
    return [field for field, _ in picks]


@command("hscan", -3, "readonly", group="hash")
def hscan(db: Db, argv: list[bytes]) -> ReplyT:
    cursor = elements.parse_cursor(argv[2])
    h = db.typed(argv[1], Hash)
    if h is None:
        return elements.reply(0, [])
    count, pattern = elements.scan_options(argv, 3)
    if encoding(h) == "listpack":  # Redis answers a listpack whole
        fields, cursor = list(h.fields), 0
    else:
        fields, cursor = elements.page(h, h.fields.keys, cursor, count)
    match = None if pattern is None else compile_glob(pattern)
    out: list[bytes] = []
    for field in fields:
        if match is None or match(field):
            out += (field, h.fields[field])
    return elements.reply(cursor, out)
