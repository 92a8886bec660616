"""Redis list commands (see table.py for the handler contract).

The blocking variants (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP) need a waiting client,
so they live in the front-end; the pops they end with are the handlers here.
"""

from __future__ import annotations

from itertools import islice

from raftcache.node.keyspace.args import INT64_MIN, parse_int, syntax
from raftcache.node.keyspace.db import KEY_OVERHEAD, Db
from raftcache.node.keyspace.reply import (
    INDEX_RANGE,
    NO_SUCH_KEY,
    NULL_ARRAY,
    OK,
    CommandError,
    ReplyT,
    wrong_arity,
)
from raftcache.node.keyspace.table import command
from raftcache.node.values import List

MUST_BE_POSITIVE = "ERR value is out of range, must be positive"
RANK_ZERO = (
    "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... "
    "or use negative to start from the end of the list"
)
COUNT_NEGATIVE = "ERR COUNT can't be negative"
MAXLEN_NEGATIVE = "ERR MAXLEN can't be negative"
NUMKEYS_POSITIVE = "ERR numkeys should be greater than 0"
COUNT_POSITIVE = "ERR count should be greater than 0"


def positive(raw: bytes, error: str = MUST_BE_POSITIVE) -> int:
    """Redis's getPositiveLongFromObjectOrReply: 0..LONG_MAX, one error text for all faults."""
    value = parse_int(raw, error)
    if value < 0:
        raise CommandError(error)
    return value


def at_least_one(raw: bytes, error: str) -> int:
    """Redis's getRangeLongFromObjectOrReply(1, LONG_MAX) with its own error text."""
    value = parse_int(raw, error)
    if value < 1:
        raise CommandError(error)
    return value


def either(raw: bytes, first: bytes, second: bytes) -> bool:
    """One of two words, in any case (True: `second`); any other is a syntax error."""
    word = raw.upper()
    if word not in (first, second):
        raise syntax()
    return word == second


def side(raw: bytes) -> bool:
    """LEFT or RIGHT (True: right, the tail)."""
    return either(raw, b"LEFT", b"RIGHT")


def span(start: int, end: int, length: int) -> tuple[int, int]:
    """Redis's start/end indexes (negative from the tail) as a slice [lo, hi); empty lo >= hi."""
    if start < 0:
        start += length
    if end < 0:
        end += length
    start = max(start, 0)
    if start > end or start >= length:
        return 0, 0
    return start, min(end, length - 1) + 1


def growth(key: bytes, new_key: bool, items: list[bytes]) -> int:
    return sum(len(v) + List.OVERHEAD for v in items) + (len(key) + KEY_OVERHEAD if new_key else 0)


# -- push ---------------------------------------------------------------------


def _push(db: Db, argv: list[bytes], right: bool, only_existing: bool) -> ReplyT:
    key, items = argv[1], argv[2:]
    lst = db.typed(key, List)
    if lst is None and only_existing:
        return 0
    db.reserve(growth(key, lst is None, items))
    c, entry = db.open(key, List)
    for item in items:
        c.push(item, right)
    db.close(key, c, entry, True)
    return len(c)


@command("lpush", -3, "write denyoom fast", group="list")
def lpush(db: Db, argv: list[bytes]) -> ReplyT:
    return _push(db, argv, right=False, only_existing=False)


@command("rpush", -3, "write denyoom fast", group="list")
def rpush(db: Db, argv: list[bytes]) -> ReplyT:
    return _push(db, argv, right=True, only_existing=False)


@command("lpushx", -3, "write denyoom fast", group="list")
def lpushx(db: Db, argv: list[bytes]) -> ReplyT:
    return _push(db, argv, right=False, only_existing=True)


@command("rpushx", -3, "write denyoom fast", group="list")
def rpushx(db: Db, argv: list[bytes]) -> ReplyT:
    return _push(db, argv, right=True, only_existing=True)


# -- pop ----------------------------------------------------------------------


def pop_count(argv: list[bytes]) -> int | None:
    """The optional count of LPOP/RPOP (None: a single pop answering one bulk string)."""
    if len(argv) > 3:
        raise CommandError(wrong_arity(argv[0].decode("utf-8", "replace")))
    return positive(argv[2]) if len(argv) == 3 else None


def pop_items(db: Db, key: bytes, right: bool, count: int) -> list[bytes]:
    """Pop up to `count` elements of an existing list (deleting it when emptied)."""
    c, entry = db.open(key, List)
    items = [c.pop(right) for _ in range(min(count, len(c)))]
    db.close(key, c, entry, bool(items))
    return items


def _check_pop(argv: list[bytes]) -> None:
    pop_count(argv)


def _pop(db: Db, argv: list[bytes], right: bool) -> ReplyT:
    count = pop_count(argv)
    key = argv[1]
    if db.typed(key, List) is None:
        return None if count is None else NULL_ARRAY
    if count is None:
        return pop_items(db, key, right, 1)[0]
    return pop_items(db, key, right, count) if count else []


@command("lpop", -2, "write fast", group="list", check=_check_pop)
def lpop(db: Db, argv: list[bytes]) -> ReplyT:
    return _pop(db, argv, right=False)


@command("rpop", -2, "write fast", group="list", check=_check_pop)
def rpop(db: Db, argv: list[bytes]) -> ReplyT:
    return _pop(db, argv, right=True)


def parse_mpop(
    argv: list[bytes], numkeys_at: int, ends: tuple[bytes, bytes]
) -> tuple[list[bytes], bool, int]:
    """(keys, second end?, count) of `numkeys key... END [COUNT count]`, END one of `ends`:
    LMPOP's and ZMPOP's arguments from argv[numkeys_at] on."""
    numkeys = at_least_one(argv[numkeys_at], NUMKEYS_POSITIVE)
    where = numkeys_at + numkeys + 1
    if where >= len(argv):
        raise syntax()
    second = either(argv[where], *ends)
    count = -1
    i = where + 1
    while i < len(argv):
        if count == -1 and argv[i].upper() == b"COUNT" and i + 1 < len(argv):
            count = at_least_one(argv[i + 1], COUNT_POSITIVE)
            i += 2
        else:
            raise syntax()
    return argv[numkeys_at + 1 : where], second, max(count, 1)


def parse_lmpop(argv: list[bytes], numkeys_at: int = 1) -> tuple[list[bytes], bool, int]:
    """(keys, right, count) of LMPOP (numkeys_at = 2 for BLMPOP's timeout)."""
    return parse_mpop(argv, numkeys_at, (b"LEFT", b"RIGHT"))


def _check_lmpop(argv: list[bytes]) -> None:
    parse_lmpop(argv)


def mpop(db: Db, keys: list[bytes], right: bool, count: int) -> ReplyT:
    """[key, [elements]] from the first non-empty list of keys, or NULL_ARRAY."""
    for key in keys:
        if db.typed(key, List) is not None:
            return [key, pop_items(db, key, right, count)]
    return NULL_ARRAY


@command("lmpop", -4, "write movablekeys", keys=(0, 0, 0), group="list", check=_check_lmpop)
def lmpop(db: Db, argv: list[bytes]) -> ReplyT:
    return mpop(db, *parse_lmpop(argv))


# -- reading ------------------------------------------------------------------


@command("llen", 2, "readonly fast", group="list")
def llen(db: Db, argv: list[bytes]) -> ReplyT:
    lst = db.typed(argv[1], List)
    return 0 if lst is None else len(lst)


@command("lrange", 4, "readonly", group="list")
def lrange(db: Db, argv: list[bytes]) -> ReplyT:
    start, end = parse_int(argv[2]), parse_int(argv[3])
    lst = db.typed(argv[1], List)
    if lst is None:
        return []
    n = len(lst)
    lo, hi = span(start, end, n)
    if lo > n - hi:  # nearer the tail: walk from there
        return list(islice(reversed(lst.items), n - hi, n - lo))[::-1]
    return list(islice(lst.items, lo, hi))


@command("lindex", 3, "readonly", group="list")
def lindex(db: Db, argv: list[bytes]) -> ReplyT:
    lst = db.typed(argv[1], List)
    if lst is None:
        return None
    index = parse_int(argv[2])
    if index < 0:
        index += len(lst)
    return lst.items[index] if 0 <= index < len(lst) else None


@command("lpos", -3, "readonly", group="list")
def lpos(db: Db, argv: list[bytes]) -> ReplyT:
    rank, count, maxlen = 1, -1, 0  # count -1: no COUNT option (answer one index)
    i = 3
    while i < len(argv):
        word = argv[i].upper()
        if i + 1 >= len(argv) or word not in (b"RANK", b"COUNT", b"MAXLEN"):
            raise syntax()
        if word == b"RANK":
            rank = parse_int(argv[i + 1])
            if rank == 0:
                raise CommandError(RANK_ZERO)
        elif word == b"COUNT":
            count = positive(argv[i + 1], COUNT_NEGATIVE)
        else:
            maxlen = positive(argv[i + 1], MAXLEN_NEGATIVE)
        i += 2
    lst = db.typed(argv[1], List)
    if lst is None:
        return [] if count != -1 else None
    found = _matches(lst, argv[2], rank, count, maxlen)
    if count != -1:
        return found
    return found[0] if found else None


def _matches(lst: List, element: bytes, rank: int, count: int, maxlen: int) -> list[int]:
    n = len(lst)
    backwards = rank < 0
    skip = abs(rank) - 1
    scanned = reversed(lst.items) if backwards else iter(lst.items)
    limit = n if maxlen == 0 else min(maxlen, n)
    out: list[int] = []
    want = 1 if count == -1 else (count or n)
    if rank == INT64_MIN:  # Redis 7.0 negates it into itself: every match, from the tail
        skip, want = 0, 1 if count == -1 else n
    for i, item in enumerate(islice(scanned, limit)):
        if item != element:
            continue
        if skip:
            skip -= 1
            continue
        out.append(n - 1 - i if backwards else i)
        if len(out) >= want:
            break
    return out


# -- changing in place --------------------------------------------------------


@command("lset", 4, "write denyoom", group="list")
def lset(db: Db, argv: list[bytes]) -> ReplyT:
    key, value = argv[1], argv[3]
    lst = db.typed(key, List)
    if lst is None:
        raise CommandError(NO_SUCH_KEY)
    index = parse_int(argv[2])  # after the key (Redis answers "no such key" first)
    if index < 0:
        index += len(lst)
    if not 0 <= index < len(lst):
        raise CommandError(INDEX_RANGE)
    db.reserve(len(value) - len(lst.items[index]))
    c, entry = db.open(key, List)
    c.set(index, value)
    db.close(key, c, entry, True)
    return OK


def _check_lrem(argv: list[bytes]) -> None:
    parse_int(argv[2])


@command("lrem", 4, "write", group="list", check=_check_lrem)
def lrem(db: Db, argv: list[bytes]) -> ReplyT:
    key, element = argv[1], argv[3]
    count = parse_int(argv[2])
    lst = db.typed(key, List)
    if lst is None:
        return 0
    items = list(lst.items)
    if count < 0:
        items.reverse()
    limit = abs(count) or len(items)
    kept: list[bytes] = []
    removed = 0
    for item in items:
        if item == element and removed < limit:
            removed += 1
        else:
            kept.append(item)
    if not removed:
        return 0
    if count < 0:
        kept.reverse()
    c, entry = db.open(key, List)
    c.assign(kept)
    db.close(key, c, entry, True)
    return removed


def _check_range(argv: list[bytes]) -> None:
    parse_int(argv[2])
    parse_int(argv[3])


@command("ltrim", 4, "write", group="list", check=_check_range)
def ltrim(db: Db, argv: list[bytes]) -> ReplyT:
    key = argv[1]
    start, end = parse_int(argv[2]), parse_int(argv[3])
    lst = db.typed(key, List)
    if lst is None:
        return OK
    n = len(lst)
    lo, hi = span(start, end, n)
    if lo >= hi:
        db.delete(key)
        return OK
    c, entry = db.open(key, List)
    if hi - lo < lo + n - hi:  # fewer elements kept than dropped: rebuild from them
        c.assign(list(islice(c.items, lo, hi)))
    else:
        for _ in range(lo):
            c.pop(right=False)
        for _ in range(n - hi):
            c.pop(right=True)
    db.close(key, c, entry, True)  # Redis signals the key even when nothing was trimmed
    return OK


def _check_linsert(argv: list[bytes]) -> None:
    either(argv[2], b"BEFORE", b"AFTER")


@command("linsert", 5, "write denyoom", group="list", check=_check_linsert)
def linsert(db: Db, argv: list[bytes]) -> ReplyT:
    key, pivot, element = argv[1], argv[3], argv[4]
    after = either(argv[2], b"BEFORE", b"AFTER")
    lst = db.typed(key, List)
    if lst is None:
        return 0
    try:
        index = lst.items.index(pivot)
    except ValueError:
        return -1
    db.reserve(growth(key, False, [element]))
    c, entry = db.open(key, List)
    c.insert(index + after, element)
    db.close(key, c, entry, True)
    return len(c)


# -- moving between lists -----------------------------------------------------


def move(db: Db, source: bytes, destination: bytes, right_from: bool, right_to: bool) -> ReplyT:
    """Pop from source and push onto destination: the element, or None if source is empty."""
    src = db.typed(source, List)
    if src is None:
        return None
    dst = db.typed(destination, List)  # WRONGTYPE before anything moves
    element = src.items[-1] if right_from else src.items[0]
    if source != destination:
        db.reserve(growth(destination, dst is None, [element]))
    c, entry = db.open(source, List)
    c.pop(right_from)
    if source == destination:
        c.push(element, right_to)
        db.close(source, c, entry, True)
        return element
    d, dentry = db.open(destination, List)
    d.push(element, right_to)
    db.close(destination, d, dentry, True)
    db.close(source, c, entry, True)
    return element


def _check_lmove(argv: list[bytes]) -> None:
    side(argv[3])
    side(argv[4])


@command("lmove", 5, "write denyoom", keys=(1, 2, 1), group="list", check=_check_lmove)
def lmove(db: Db, argv: list[bytes]) -> ReplyT:
    return move(db, argv[1], argv[2], side(argv[3]), side(argv[4]))


@command("rpoplpush", 3, "write denyoom", keys=(1, 2, 1), group="list")
def rpoplpush(db: Db, argv: list[bytes]) -> ReplyT:
    return move(db, argv[1], argv[2], True, False)
