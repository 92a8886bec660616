"""Redis set commands (see table.py for the handler contract).

A Python set iterates in an order that changes from process to process (hash seeds), so a
pick that replicas must agree on (SPOP) indexes the members in byte order, a list cached
beside the set and kept up to date by the changes made here. Small all-integer sets list
in numeric order, as a Redis intset does.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable

from raftcache.node.keyspace import elements
from raftcache.node.keyspace.args import INT64_MAX, INT64_MIN, parse_int, syntax
from raftcache.node.keyspace.db import KEY_OVERHEAD, Db
from raftcache.node.keyspace.glob import compile_glob
from raftcache.node.keyspace.reply import CommandError, ReplyT, SetReply
from raftcache.node.keyspace.table import command
from raftcache.node.values import Set

NUMKEYS = "ERR numkeys should be greater than 0"
TOO_MANY_KEYS = "ERR Number of keys can't be greater than number of args"
LIMIT_NEGATIVE = "ERR LIMIT can't be negative"
NOT_POSITIVE = "ERR value is out of range, must be positive"

INTSET_ENTRIES = 512  # Redis's set-max-intset-entries default
_INTEGER = re.compile(rb"-?[1-9][0-9]{0,18}|0")
_SORTED = "sorted"
_KEEP = 64
"""At most this many changes are applied to the cached sorted list; more drop it."""


def _integer(member: bytes) -> bool:
    return _INTEGER.fullmatch(member) is not None and INT64_MIN <= int(member) <= INT64_MAX


def _intset(members: Iterable[bytes], size: int) -> list[bytes] | None:
    """The members in numeric order when Redis 7.0 would hold them in an intset."""
    if size > INTSET_ENTRIES:
        return None
    listed = list(members)
    if not all(map(_integer, listed)):
        return None
    return sorted(listed, key=int)


def encoding(s: Set) -> str:
    """What OBJECT ENCODING says in Redis 7.0 with the default limits (not sticky here)."""
    return "hashtable" if _intset(s.members, len(s)) is None else "intset"


def _listed(members: set[bytes]) -> list[bytes]:
    """Members in the order Redis would list them (numeric for an intset)."""
    ordered = _intset(members, len(members))
    return list(members) if ordered is None else ordered


def _sorted(s: Set) -> list[bytes]:
    """The members in byte order (shared: do not change it outside _add and _remove)."""
    return elements.derived(s, _SORTED, lambda: sorted(s.members))


def _add(s: Set, members: Iterable[bytes]) -> int:
    ordered: list[bytes] | None = elements.fresh(s, _SORTED)
    added = [m for m in members if s.add(m)]
    elements.prune(s)
    if ordered is not None and len(added) <= _KEEP:
        for m in added:
            bisect.insort(ordered, m)
        elements.restamp(s, _SORTED, ordered)
    return len(added)


def _remove(s: Set, members: Iterable[bytes]) -> int:
    ordered: list[bytes] | None = elements.fresh(s, _SORTED)
    removed = [m for m in members if s.remove(m)]
    elements.prune(s)
    if ordered is not None:
        if len(removed) <= _KEEP:
            for m in removed:
                del ordered[bisect.bisect_left(ordered, m)]
        else:
            gone = set(removed)
            ordered = [m for m in ordered if m not in gone]
        elements.restamp(s, _SORTED, ordered)
    return len(removed)


def _growth(members: Iterable[bytes]) -> int:
    return sum(len(m) + Set.OVERHEAD for m in members)


@command("sadd", -3, "write denyoom fast", group="set")
def sadd(db: Db, argv: list[bytes]) -> ReplyT:
    key = argv[1]
    s = db.typed(key, Set)
    new = [m for m in dict.fromkeys(argv[2:]) if s is None or m not in s.members]
    if not new:
        return 0
    db.reserve(_growth(new) + (len(key) + KEY_OVERHEAD if s is None else 0))
    c, entry = db.open(key, Set)
    added = _add(c, new)
    db.close(key, c, entry, added > 0)
    return added


@command("srem", -3, "write fast", group="set")
def srem(db: Db, argv: list[bytes]) -> ReplyT:
    key = argv[1]
    if db.typed(key, Set) is None:
        return 0
    c, entry = db.open(key, Set)
    removed = _remove(c, argv[2:])
    db.close(key, c, entry, removed > 0)
    return removed


@command("smembers", 2, "readonly", group="set")
def smembers(db: Db, argv: list[bytes]) -> ReplyT:
    s = db.typed(argv[1], Set)
    return SetReply([] if s is None else _listed(s.members))


@command("sismember", 3, "readonly fast", group="set")
def sismember(db: Db, argv: list[bytes]) -> ReplyT:
    s = db.typed(argv[1], Set)
    return int(s is not None and argv[2] in s.members)


@command("smismember", -3, "readonly fast", group="set")
def smismember(db: Db, argv: list[bytes]) -> ReplyT:
    s = db.typed(argv[1], Set)
    members = set() if s is None else s.members
    return [int(m in members) for m in argv[2:]]


@command("scard", 2, "readonly fast", group="set")
def scard(db: Db, argv: list[bytes]) -> ReplyT:
    s = db.typed(argv[1], Set)
    return 0 if s is None else len(s)


def _positive(raw: bytes) -> int:
    count = parse_int(raw, NOT_POSITIVE)  # Redis gives this text for a non-integer too
    if count < 0:
        raise CommandError(NOT_POSITIVE)
    return count


def _check_spop(argv: list[bytes]) -> None:
    if len(argv) > 3:
        raise syntax()
    if len(argv) == 3:
        _positive(argv[2])


@command("spop", -2, "write fast", group="set", check=_check_spop)
def spop(db: Db, argv: list[bytes]) -> ReplyT:
    _check_spop(argv)
    key = argv[1]
    count = _positive(argv[2]) if len(argv) == 3 else None
    s = db.typed(key, Set)
    if s is None or count == 0:
        return None if count is None else SetReply()
    if count is not None and count >= len(s):
        everything = _listed(s.members)
        db.delete(key)
        return SetReply(everything)
    ordered = _sorted(s)
    rng = db.rng()
    if count is None:
        picks = [ordered[rng.randrange(len(ordered))]]
    else:
        picks = [ordered[i] for i in rng.sample(range(len(ordered)), count)]
    c, entry = db.open(key, Set)
    _remove(c, picks)
    db.close(key, c, entry, True)
    return picks[0] if count is None else SetReply(picks)


@command("srandmember", -2, "readonly", group="set")
def srandmember(db: Db, argv: list[bytes]) -> ReplyT:
    if len(argv) > 3:
        raise syntax()
    if len(argv) == 2:
        s = db.typed(argv[1], Set)
        if s is None:
            return None
        ordered = _sorted(s)
        return ordered[db.rng().randrange(len(ordered))]
    count = elements.random_count(argv[2])
    elements.check_random(count, False)
    s = db.typed(argv[1], Set)
    if s is None or count == 0:
        return []
    if count >= len(s):
        return _listed(s.members)
    ordered = _sorted(s)
    if count < 0 or count == 1:
        return db.rng().choices(ordered, k=abs(count))
    return db.rng().sample(ordered, count)


@command("smove", 4, "write fast", group="set", keys=(1, 2, 1))
def smove(db: Db, argv: list[bytes]) -> ReplyT:
    src, dst, member = argv[1:4]
    source = db.typed(src, Set)
    if source is None:
        return 0
    target = db.typed(dst, Set)
    if src == dst or member not in source.members:
        return int(member in source.members)
    new = target is None or member not in target.members
    if new:
        db.reserve(_growth([member]) + (len(dst) + KEY_OVERHEAD if target is None else 0))
    c, entry = db.open(src, Set)
    _remove(c, [member])
    db.close(src, c, entry, True)
    c, entry = db.open(dst, Set)
    _add(c, [member])
    db.close(dst, c, entry, new)
    return 1


# -- algebra ------------------------------------------------------------------------------


def _sets(db: Db, keys: list[bytes]) -> list[Set | None]:
    """The sets at keys (None for a missing key); WRONGTYPE if any holds another type."""
    return [db.typed(key, Set) for key in keys]


def _inter(sets: list[Set | None]) -> set[bytes]:
    present = [s for s in sets if s is not None]
    if len(present) < len(sets):
        return set()  # a missing key is an empty set
    smallest, *rest = sorted(present, key=len)
    return smallest.members.intersection(*(s.members for s in rest))


def _union(sets: list[Set | None]) -> set[bytes]:
    return set().union(*(s.members for s in sets if s is not None))


def _diff(sets: list[Set | None]) -> set[bytes]:
    first, *rest = sets
    if first is None:
        return set()
    out = set(first.members)
    for s in rest:
        if s is not None:
            out -= s.members
            if not out:
                break
    return out


def _store(db: Db, dst: bytes, members: set[bytes]) -> int:
    """Replace dst, whatever it held, by a set of `members` (deleted when empty)."""
    if not members:
        db.delete(dst)
        return 0
    db.reserve(len(dst) + KEY_OVERHEAD + _growth(members))
    s = Set()
    for member in members:
        s.add(member)
    db.set(dst, s, 0)
    return len(s)


@command("sinter", -2, "readonly", keys=(1, -1, 1), group="set")
def sinter(db: Db, argv: list[bytes]) -> ReplyT:
    return SetReply(_listed(_inter(_sets(db, argv[1:]))))


@command("sunion", -2, "readonly", keys=(1, -1, 1), group="set")
def sunion(db: Db, argv: list[bytes]) -> ReplyT:
    return SetReply(_listed(_union(_sets(db, argv[1:]))))


@command("sdiff", -2, "readonly", keys=(1, -1, 1), group="set")
def sdiff(db: Db, argv: list[bytes]) -> ReplyT:
    return SetReply(_listed(_diff(_sets(db, argv[1:]))))


@command("sinterstore", -3, "write denyoom", keys=(1, -1, 1), group="set")
def sinterstore(db: Db, argv: list[bytes]) -> ReplyT:
    return _store(db, argv[1], _inter(_sets(db, argv[2:])))


@command("sunionstore", -3, "write denyoom", keys=(1, -1, 1), group="set")
def sunionstore(db: Db, argv: list[bytes]) -> ReplyT:
    return _store(db, argv[1], _union(_sets(db, argv[2:])))


@command("sdiffstore", -3, "write denyoom", keys=(1, -1, 1), group="set")
def sdiffstore(db: Db, argv: list[bytes]) -> ReplyT:
    return _store(db, argv[1], _diff(_sets(db, argv[2:])))


def _sintercard_args(argv: list[bytes]) -> tuple[int, int]:
    """(numkeys, limit) of SINTERCARD numkeys key [key ...] [LIMIT limit]; 0 = no limit."""
    numkeys = parse_int(argv[1], NUMKEYS)
    if numkeys < 1:
        raise CommandError(NUMKEYS)
    if numkeys > len(argv) - 2:
        raise CommandError(TOO_MANY_KEYS)
    limit = 0
    i = 2 + numkeys
    while i < len(argv):
        if argv[i].lower() == b"limit" and i + 1 < len(argv):
            i += 1
            limit = parse_int(argv[i], LIMIT_NEGATIVE)
            if limit < 0:
                raise CommandError(LIMIT_NEGATIVE)
        else:
            raise syntax()
        i += 1
    return numkeys, limit


@command("sintercard", -3, "readonly movablekeys", keys=(0, 0, 0), group="set")
def sintercard(db: Db, argv: list[bytes]) -> ReplyT:
    numkeys, limit = _sintercard_args(argv)
    sets = _sets(db, argv[2 : 2 + numkeys])
    present = [s for s in sets if s is not None]
    if len(present) < len(sets):
        return 0
    smallest, *rest = sorted(present, key=len)
    if not limit:
        return len(smallest.members.intersection(*(s.members for s in rest)))
    found = 0
    for member in smallest.members:
        if all(member in s.members for s in rest):
            found += 1
            if found >= limit:
                break
    return found


@command("sscan", -3, "readonly", group="set")
def sscan(db: Db, argv: list[bytes]) -> ReplyT:
    cursor = elements.parse_cursor(argv[2])
    s = db.typed(argv[1], Set)
    if s is None:
        return elements.reply(0, [])
    count, pattern = elements.scan_options(argv, 3)
    members = _intset(s.members, len(s))
    if members is not None:  # Redis answers an intset whole
        cursor = 0
    else:
        members, cursor = elements.page(s, lambda: s.members, cursor, count)
    if pattern is not None:
        match = compile_glob(pattern)
        members = [m for m in members if match(m)]
    return elements.reply(cursor, members)
