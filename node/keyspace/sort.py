"""SORT and SORT_RO with Redis 7.0's arguments, ordering and errors.

SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
[STORE destination] sorts a list, set or sorted set's elements (numerically unless
ALPHA), by the element or by weights read through BY (`weight_*`, or `obj_*->field` of a
hash), and answers them or the GET patterns' values (`#` is the element). Equal weights
fall back to comparing the elements' bytes, as Redis does, so the order is total and every
replica stores the same list. A BY pattern without `*` skips sorting (SORT ... BY nosort).
"""

from __future__ import annotations

import functools
import math

from raftcache.node.keyspace.args import parse_int, syntax
from raftcache.node.keyspace.db import KEY_OVERHEAD, Db
from raftcache.node.keyspace.reply import CommandError, ReplyT
from raftcache.node.keyspace.table import command
from raftcache.node.values import Hash, List, Set, ZSet

NOT_DOUBLE = "ERR One or more scores can't be converted into double"


class _Args:
    __slots__ = ("alpha", "by", "count", "desc", "gets", "offset", "store")

    def __init__(self) -> None:
        self.by: bytes | None = None
        self.offset = 0
        self.count = -1
        self.gets: list[bytes] = []
        self.desc = False
        self.alpha = False
        self.store: bytes | None = None


def _parse(argv: list[bytes], read_only: bool) -> _Args:
    a = _Args()
    i = 2
    while i < len(argv):
        opt = argv[i].lower()
        left = len(argv) - i - 1
        if opt == b"asc":
            a.desc = False
        elif opt == b"desc":
            a.desc = True
        elif opt == b"alpha":
            a.alpha = True
        elif opt == b"limit" and left >= 2:
            a.offset = parse_int(argv[i + 1])
            a.count = parse_int(argv[i + 2])
            i += 2
        elif opt == b"store" and left >= 1 and not read_only:
            a.store = argv[i + 1]
            i += 1
        elif opt == b"by" and left >= 1:
            a.by = argv[i + 1]
            i += 1
        elif opt == b"get" and left >= 1:
            a.gets.append(argv[i + 1])
            i += 1
        else:
            raise syntax()
        i += 1
    return a


def _lookup(db: Db, pattern: bytes, element: bytes) -> bytes | None:
    """A BY/GET pattern's value for one element: `#` is the element; the first `*` takes
    the element; `key->field` reads a hash field; missing -> None."""
    if pattern == b"#":
        return element
    star = pattern.find(b"*")
    if star < 0:
        return None
    arrow = pattern.find(b"->", star + 1)
    field = None
    if arrow >= 0 and arrow + 2 < len(pattern):
        field = pattern[arrow + 2 :]
        pattern = pattern[:arrow]
    key = pattern[:star] + element + pattern[star + 1 :]
    entry = db.entry(key)
    if entry is None:
        return None
    value = entry[0]
    if field is not None:
        return value.fields.get(field) if isinstance(value, Hash) else None
    return value if isinstance(value, bytes) else None


def _elements(db: Db, key: bytes) -> list[bytes]:
    entry = db.entry(key)
    if entry is None:
        return []
    value = entry[0]
    if isinstance(value, List):
        return list(value.items)
    if isinstance(value, Set):
        return sorted(value.members)  # a set has no order of its own: start from a fixed one
    if isinstance(value, ZSet):
        return [member for _score, member in value.order]
    raise CommandError("WRONGTYPE Operation against a key holding the wrong kind of value")


def _score(raw: bytes | None) -> float:
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise CommandError(NOT_DOUBLE) from None
    if math.isnan(value):
        raise CommandError(NOT_DOUBLE)
    return value


def _sort(db: Db, argv: list[bytes], read_only: bool) -> ReplyT:
    a = _parse(argv, read_only)
    items = _elements(db, argv[1])
    dont_sort = a.by is not None and b"*" not in a.by
    if not dont_sort:
        weights: list[tuple[object, bytes]]
        if a.alpha:
            source = [(_lookup(db, a.by, e) if a.by else e) for e in items]
            weights = list(zip(source, items, strict=True))

            def compare(x: tuple[object, bytes], y: tuple[object, bytes]) -> int:
                wx, wy = x[0], y[0]
                if wx is None or wy is None:  # a missing weight sorts first
                    cmp = (wx is not None) - (wy is not None)
                else:
                    cmp = (wx > wy) - (wx < wy)  # type: ignore[operator]
                if not cmp:
                    cmp = (x[1] > y[1]) - (x[1] < y[1])
                return cmp

        else:
            weights = [(_score(_lookup(db, a.by, e) if a.by else e), e) for e in items]

            def compare(x: tuple[object, bytes], y: tuple[object, bytes]) -> int:
                wx, wy = x[0], y[0]
                cmp = (wx > wy) - (wx < wy)  # type: ignore[operator]
                return cmp if cmp else (x[1] > y[1]) - (x[1] < y[1])

        weights.sort(key=functools.cmp_to_key(compare), reverse=a.desc)
        items = [e for _w, e in weights]
    start = max(a.offset, 0)
    end = len(items) if a.count < 0 else start + a.count
    items = items[start:end]
    if a.gets:
        out: list[bytes | None] = [_lookup(db, g, e) for e in items for g in a.gets]
    else:
        out = list(items)
    if a.store is None:
        return list(out)
    values = [b"" if v is None else v for v in out]
    if not values:
        db.delete(a.store)
        return 0
    db.reserve(len(a.store) + KEY_OVERHEAD + sum(len(v) + List.OVERHEAD for v in values))
    db.delete(a.store)
    lst, entry = db.open(a.store, List)
    for v in values:
        lst.push(v, True)
    db.close(a.store, lst, entry, True)
    return len(values)


def _check_sort(argv: list[bytes]) -> None:
    _parse(argv, read_only=False)


def _check_sort_ro(argv: list[bytes]) -> None:
    _parse(argv, read_only=True)


@command("sort", -2, "write denyoom movablekeys", group="generic", check=_check_sort)
def sort(db: Db, argv: list[bytes]) -> ReplyT:
    return _sort(db, argv, read_only=False)


@command("sort_ro", -2, "readonly movablekeys", group="generic", check=_check_sort_ro)
def sort_ro(db: Db, argv: list[bytes]) -> ReplyT:
    return _sort(db, argv, read_only=True)
