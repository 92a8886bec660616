"""What the container commands share: element scans (HSCAN, SSCAN, ZSCAN), the count of
random picks (HRANDFIELD, SRANDMEMBER, ZRANDMEMBER) and views derived from a container.

Redis's scan cursor walks hash table buckets; ours walks members in the order of a fixed
64-bit hash of each member, and a cursor is the hash to continue from. Every member present
for the whole scan is therefore returned at least once whatever is added or removed in
between (a member may come twice only if it was removed and added back), and every replica
answers alike. A derived view (that order, a sorted list) is cached on the container while
its content hash `acc` and its size are unchanged, so a scan without writes in between costs
O(log n + COUNT) per call instead of a sort.
"""

from __future__ import annotations

import bisect
import re
import zlib
from array import array
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple, TypeVar

from raftcache.node.keyspace.args import INT64_MAX, parse_int, syntax
from raftcache.node.keyspace.reply import CommandError, ReplyT
from raftcache.node.values import Container

T = TypeVar("T")

INVALID_CURSOR = "ERR invalid cursor"
DEFAULT_COUNT = 10

_ATTR = "_keyspace_derived"
_CURSOR = re.compile(rb"([+-]?)(\d+)")
_ULONG = 1 << 64


def parse_cursor(raw: bytes) -> int:
    """A cursor as Redis's strtoul accepts it: "-1" wraps, "" is 0, spaces are refused."""
    raw = raw.split(b"\0", 1)[0]  # strtoul stops at a NUL, and Redis accepts that
    if not raw:
        return 0
    m = _CURSOR.fullmatch(raw)
    if m is None or int(m[2]) >= _ULONG:
        raise CommandError(INVALID_CURSOR)
    value = int(m[2])
    return (_ULONG - value) % _ULONG if m[1] == b"-" else value


def scan_options(argv: list[bytes], start: int) -> tuple[int, bytes | None]:
    """COUNT and MATCH of an element scan from argv[start] on: (count, pattern or None)."""
    count, pattern = DEFAULT_COUNT, None
    i = start
    while i < len(argv):
        word, more = argv[i].lower(), len(argv) - i
        if word == b"count" and more >= 2:
            count = parse_int(argv[i + 1])
            if count < 1:
                raise syntax()
        elif word == b"match" and more >= 2:
            pattern = None if argv[i + 1] == b"*" else argv[i + 1]  # "*" matches everything
        else:
            raise syntax()
        i += 2
    return count, pattern


def reply(cursor: int, items: list[bytes]) -> list[ReplyT]:
    """A scan's reply: the next cursor (a bulk string) and the elements."""
    return [b"%d" % cursor, list(items)]


# -- random picks ---------------------------------------------------------------------------

COUNT_RANGE = f"ERR value is out of range, value must between {-INT64_MAX} and {INT64_MAX}"
OUT_OF_RANGE = "ERR value is out of range"
RANDOM_LIMIT = 1_000_000
"""Most elements one call with a negative count returns. Redis has no limit, but here the
call may run inside apply (MULTI, scripts), where it must not exhaust memory."""
TOO_MANY = f"ERR value is out of range, at most {RANDOM_LIMIT} repeated random elements"


def random_count(raw: bytes) -> int:
    """The count of HRANDFIELD/SRANDMEMBER/ZRANDMEMBER: -LONG_MAX..LONG_MAX, as in Redis."""
    count = parse_int(raw)
    if count < -INT64_MAX:
        raise CommandError(COUNT_RANGE)
    return count


def check_random(count: int, with_values: bool) -> None:
    """The checks after the syntax: WITHVALUES halves the range; the repeat limit."""
    if with_values and not -(INT64_MAX // 2) <= count <= INT64_MAX // 2:
        raise CommandError(OUT_OF_RANGE)
    if count < -RANDOM_LIMIT:
        raise CommandError(TOO_MANY)


# -- views derived from a container's content ---------------------------------------------


def _stamp(c: Container) -> tuple[int, int]:
    return c.acc, len(c)


def derived(c: Container, name: str, build: Callable[[], T]) -> T:
    """`build()`'s result, cached on the container until its content changes."""
    cache: dict[str, tuple[tuple[int, int], Any]] = c.__dict__.setdefault(_ATTR, {})
    got = cache.get(name)
    if got is not None and got[0] == _stamp(c):
        return got[1]  # type: ignore[no-any-return]
    value = build()
    cache[name] = (_stamp(c), value)
    return value


def fresh(c: Container, name: str) -> Any:
    """The cached view `name` if it is still up to date, else None."""
    got = c.__dict__.get(_ATTR, {}).get(name)
    return got[1] if got is not None and got[0] == _stamp(c) else None


def prune(c: Container) -> None:
    """Drop the views a change made stale (they may hold removed members alive)."""
    cache = c.__dict__.get(_ATTR)
    if cache:
        stamp = _stamp(c)
        for name in [n for n, (s, _) in cache.items() if s != stamp]:
            del cache[name]


def restamp(c: Container, name: str, value: object | None) -> None:
    """Record `value` as up to date for the container's current content (None: forget)."""
    cache: dict[str, tuple[tuple[int, int], Any]] = c.__dict__.setdefault(_ATTR, {})
    if value is None:
        cache.pop(name, None)
    else:
        cache[name] = (_stamp(c), value)


# -- the scan order -----------------------------------------------------------------------


def position(member: bytes) -> int:
    """Where a member sits in the scan order (the same in every process, unlike hash())."""
    return zlib.crc32(member) << 32 | zlib.adler32(member)


class Order(NamedTuple):
    positions: array[int]  # ascending
    members: list[bytes]


def page(
    c: Container, members: Callable[[], Iterable[bytes]], cursor: int, count: int
) -> tuple[list[bytes], int]:
    """About `count` members from `cursor` on in the scan order, and the next cursor (0 =
    done). Members sharing a position always come in the same page."""

    def build() -> Order:
        ordered = sorted(members(), key=lambda m: (position(m), m))
        return Order(array("Q", map(position, ordered)), ordered)

    order = derived(c, "scan-order", build)
    n = len(order.members)
    i = bisect.bisect_left(order.positions, cursor)
    j = min(i + count, n)
    while 0 < j < n and order.positions[j] == order.positions[j - 1]:
        j += 1
    return order.members[i:j], (order.positions[j] if j < n else 0)
