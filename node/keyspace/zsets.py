"""Redis sorted set commands (see table.py for the handler contract).

Scores parse as Redis parses them (C's strtod: inf, -inf, hex floats; NaN refused), and
-0.0 is stored as 0.0 (values.canonical_score). Blocking pops (BZPOPMIN, BZPOPMAX, BZMPOP)
need a waiting client, so they live in the front-end and end in `zpop` here.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from raftcache.node import values as tv
from raftcache.node.keyspace import elements
from raftcache.node.keyspace.args import parse_int, syntax
from raftcache.node.keyspace.db import KEY_OVERHEAD, Db
from raftcache.node.keyspace.glob import compile_glob
from raftcache.node.keyspace.lists import (
    parse_mpop,
    positive,
    span,
)
from raftcache.node.keyspace.reply import (
    NOT_FLOAT,
    NULL_ARRAY,
    WRONGTYPE,
    CommandError,
    Pairs,
    ReplyT,
)
from raftcache.node.keyspace.table import Checker, Handler, command
from raftcache.node.values import ZSet, canonical_score

Pair = tuple[float, bytes]  # (score, member), the order of ZSet.order

NAN_SCORE = "ERR resulting score is not a number (NaN)"
XX_NX = "ERR XX and NX options at the same time are not compatible"
GT_LT_NX = "ERR GT, LT, and/or NX options at the same time are not compatible"
INCR_PAIR = "ERR INCR option supports a single increment-element pair"
NOT_FLOAT_RANGE = "ERR min or max is not a float"
NOT_LEX_RANGE = "ERR min or max not valid string range item"
LIMIT_RANK = "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX"
WITHSCORES_LEX = "ERR syntax error, WITHSCORES not supported in combination with BYLEX"
WEIGHT_NOT_FLOAT = "ERR weight value is not a float"
LIMIT_NEGATIVE = "ERR LIMIT can't be negative"
OUT_OF_RANGE = "ERR value is out of range"
LONG_MAX = 2**63 - 1
RANDOM_REPLY_MAX = 1_000_000
"""ZRANDMEMBER with a negative count answers at most this many elements (Redis has no cap
but its client output buffer limit; a replicated node must not build a reply without end)."""
LISTPACK_ENTRIES, LISTPACK_VALUE = 128, 64  # zset-max-listpack-entries/-value defaults


def _zcommand(
    name: str,
    arity: int,
    flags: str,
    keys: tuple[int, int, int] = (1, 1, 1),
    check: Checker | None = None,
) -> Callable[[Handler], Handler]:
    return command(name, arity, flags, keys=keys, group="sorted-set", check=check)


# -- parsing scores and ranges ------------------------------------------------

_SPACE = b" \t\n\v\f\r"
_STRTOD = re.compile(
    rb"([+-]?)(?:0x((?:[0-9a-f]+\.?[0-9a-f]*|\.[0-9a-f]+)(?:p[+-]?[0-9]+)?)"
    rb"|((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)"
    rb"|(inf(?:inity)?)|(nan(?:\([0-9a-z_]*\))?))",
    re.IGNORECASE,
)


def strtod(s: bytes) -> tuple[float, int, bool]:
    """C's strtod: (value, bytes used (0: no number), out of range to +-inf or to zero)."""
    start = len(s) - len(s.lstrip(_SPACE))
    m = _STRTOD.match(s, start)
    if m is None:
        return 0.0, 0, False
    sign = -1.0 if m.group(1) == b"-" else 1.0
    hexa, decimal, inf, nan = m.group(2, 3, 4, 5)
    if inf:
        return sign * math.inf, m.end(), False
    if nan:
        return math.nan, m.end(), False
    if hexa is not None:
        mantissa = re.split(rb"[pP]", hexa)[0]
        try:
            value = float.fromhex(hexa.decode())
        except OverflowError:
            return sign * math.inf, m.end(), True
    else:
        mantissa = re.split(rb"[eE]", decimal)[0]
        value = float(decimal)
    nonzero = mantissa.strip(b"0.") != b""
    return sign * value, m.end(), math.isinf(value) or (value == 0 and nonzero)


def parse_score(raw: bytes, error: str = NOT_FLOAT) -> float:
    """A double as Redis's string2d accepts it (no spaces, no overflow, no NaN)."""
    value, used, out_of_range = strtod(raw)
    if not raw or raw[0] in _SPACE or used != len(raw) or out_of_range or math.isnan(value):
        raise CommandError(error)
    return value


class ScoreRange(NamedTuple):
    lo: float
    lo_ex: bool
    hi: float
    hi_ex: bool

    def empty(self) -> bool:
        return self.lo > self.hi or (self.lo == self.hi and (self.lo_ex or self.hi_ex))

    def ranks(self, z: ZSet) -> tuple[int, int]:
        """The ranks [lo, hi) of the members inside the range."""
        if self.empty():
            return 0, 0
        return z.bounds_rank(self.lo, self.lo_ex, False), z.bounds_rank(self.hi, self.hi_ex, True)


def _score_bound(raw: bytes) -> tuple[float, bool]:
    text = raw.split(b"\0", 1)[0]  # Redis hands strtod a C string
    exclusive = text[:1] == b"("
    if exclusive:
        text = text[1:]
    value, used, _ = strtod(text)
    if used != len(text) or math.isnan(value):
        raise CommandError(NOT_FLOAT_RANGE)
    return value, exclusive


def parse_score_range(lo: bytes, hi: bytes) -> ScoreRange:
    return ScoreRange(*_score_bound(lo), *_score_bound(hi))


class LexBound(NamedTuple):
    kind: int  # -1: "-" (below everything), 0: a string, 1: "+" (above everything)
    value: bytes
    exclusive: bool


def _lex_bound(raw: bytes) -> LexBound:
    head, rest = raw[:1], raw[1:]
    if head in (b"-", b"+") and rest[:1] in (b"", b"\0"):
        return LexBound(-1 if head == b"-" else 1, b"", True)
    if head in (b"(", b"["):
        return LexBound(0, rest, head == b"(")
    raise CommandError(NOT_LEX_RANGE)


def _lex_cmp(a: LexBound, b: LexBound) -> int:
    """Redis's sdscmplex over range ends."""
    if a.kind == b.kind and a.value == b.value:
        return 0
    if a.kind == -1 or b.kind == 1:
        return -1
    if a.kind == 1 or b.kind == -1:
        return 1
    return (a.value > b.value) - (a.value < b.value)


class LexRange(NamedTuple):
    lo: LexBound
    hi: LexBound

    def above_min(self, member: bytes) -> bool:
        lo = self.lo
        if lo.kind:
            return lo.kind < 0
        return member > lo.value if lo.exclusive else member >= lo.value

    def below_max(self, member: bytes) -> bool:
        hi = self.hi
        if hi.kind:
            return hi.kind > 0
        return member < hi.value if hi.exclusive else member <= hi.value

    def empty(self) -> bool:
        cmp = _lex_cmp(self.lo, self.hi)
        return cmp > 0 or (cmp == 0 and (self.lo.exclusive or self.hi.exclusive))

    def select(self, z: ZSet, rev: bool, offset: int, limit: int) -> list[Pair]:
        """The members inside the range after LIMIT, in reply order.

        Lex ranges assume equal scores; with mixed scores Redis answers whatever its walk
        meets. A small set (a listpack in Redis) is walked exactly as Redis walks one; a
        large one is searched by bisection, as valid as Redis's skiplist search."""
        if self.empty() or not len(z):
            return []
        if len(z) > LISTPACK_ENTRIES:
            lo = z.order.first_where(lambda p: self.above_min(p[1]))
            hi = max(lo, z.order.first_where(lambda p: not self.below_max(p[1])))
            return _pairs(z, *_window(lo, hi, rev, offset, limit), rev)
        pairs = list(z.order)
        if not (self.above_min(pairs[-1][1]) and self.below_max(pairs[0][1])):
            return []  # zzlIsInLexRange
        enter, stay = self.above_min, self.below_max
        if rev:
            pairs.reverse()
            enter, stay = stay, enter
        start = next((i for i, p in enumerate(pairs) if enter(p[1])), len(pairs))
        if start == len(pairs) or not stay(pairs[start][1]) or offset < 0:
            return []
        out: list[Pair] = []
        for pair in pairs[start + offset :]:
            if limit == 0 or not stay(pair[1]):
                break
            out.append(pair)
            limit -= 1
        return out


def parse_lex_range(lo: bytes, hi: bytes) -> LexRange:
    return LexRange(_lex_bound(lo), _lex_bound(hi))


def _window(lo: int, hi: int, rev: bool, offset: int, limit: int) -> tuple[int, int]:
    """Ranks left of [lo, hi) after LIMIT offset count, counted from hi when rev."""
    if offset < 0 or offset >= hi - lo:  # Redis walks a negative offset off the end
        return 0, 0
    take = hi - lo - offset if limit < 0 else min(limit, hi - lo - offset)
    if rev:
        return hi - offset - take, hi - offset
    return lo + offset, lo + offset + take


def _pairs(z: ZSet, lo: int, hi: int, rev: bool) -> list[Pair]:
    pairs = z.order.slice(lo, hi)
    if rev:
        pairs.reverse()
    return pairs


def _reply(pairs: Iterable[Pair], withscores: bool) -> ReplyT:
    if withscores:
        return Pairs([[member, score] for score, member in pairs])
    return [member for _, member in pairs]


def _growth(db: Db, key: bytes, z: ZSet) -> int:
    """Accounted bytes storing z at key may add (the old value there goes)."""
    entry = db.entry(key)
    if entry is None:
        return z.nbytes + len(key) + KEY_OVERHEAD
    return z.nbytes - tv.value_nbytes(entry[0])


def store(db: Db, key: bytes, z: ZSet) -> int:
    """Replace key with z (no TTL, as Redis's setKey), or delete it when z is empty."""
    if not len(z):
        db.delete(key)
        return 0
    db.reserve(_growth(db, key, z))
    db.set(key, z, 0)
    return len(z)


def _zset_of(pairs: Iterable[Pair]) -> ZSet:
    z = ZSet()
    for score, member in pairs:
        z.set(member, score)
    return z


# -- ZADD, ZINCRBY, ZREM -------------------------------------------------------


class ZAddArgs(NamedTuple):
    nx: bool
    xx: bool
    gt: bool
    lt: bool
    ch: bool
    incr: bool
    pairs: list[Pair]


_ZADD_FLAGS = (b"NX", b"XX", b"CH", b"INCR", b"GT", b"LT")


def parse_zadd(argv: list[bytes]) -> ZAddArgs:
    flags: set[bytes] = set()
    i = 2
    while i < len(argv) and argv[i].upper() in _ZADD_FLAGS:
        flags.add(argv[i].upper())
        i += 1
    rest = argv[i:]
    if not rest or len(rest) % 2:
        raise syntax()
    nx, xx, gt, lt = (f in flags for f in (b"NX", b"XX", b"GT", b"LT"))
    if nx and xx:
        raise CommandError(XX_NX)
    if (gt and nx) or (lt and nx) or (gt and lt):
        raise CommandError(GT_LT_NX)
    incr = b"INCR" in flags
    if incr and len(rest) > 2:
        raise CommandError(INCR_PAIR)
    pairs = [(parse_score(rest[j]), rest[j + 1]) for j in range(0, len(rest), 2)]
    return ZAddArgs(nx, xx, gt, lt, b"CH" in flags, incr, pairs)


def _check_zadd(argv: list[bytes]) -> None:
    parse_zadd(argv)


def zadd_apply(db: Db, key: bytes, args: ZAddArgs) -> ReplyT:
    """ZADD with parsed arguments (ZINCRBY is ZADD INCR)."""
    z = db.typed(key, ZSet)
    if z is None and args.xx:
        return None if args.incr else 0
    if args.incr and z is not None and not args.nx:
        current = z.scores.get(args.pairs[0][1])
        if current is not None and math.isnan(current + args.pairs[0][0]):
            raise CommandError(NAN_SCORE)
    scores = {} if z is None or args.xx else z.scores
    new = set() if args.xx else {m for _, m in args.pairs if m not in scores}
    db.reserve(
        sum(len(m) + ZSet.OVERHEAD for m in new) + (len(key) + KEY_OVERHEAD if z is None else 0)
    )
    c, entry = db.open(key, ZSet)
    added = updated = processed = 0
    score = 0.0
    for score, member in args.pairs:
        current = c.scores.get(member)
        if current is None:
            if args.xx:
                continue
            c.set(member, score)
            added += 1
        else:
            if args.nx:
                continue
            if args.incr:
                score += current
            if (args.lt and score >= current) or (args.gt and score <= current):
                continue
            if score != current:
                c.set(member, score)
                updated += 1
        processed += 1
    db.close(key, c, entry, bool(added or updated))
    if args.incr:
        return canonical_score(score) if processed else None
    return added + updated if args.ch else added


@_zcommand("zadd", -4, "write denyoom fast", check=_check_zadd)
def zadd(db: Db, argv: list[bytes]) -> ReplyT:
    return zadd_apply(db, argv[1], parse_zadd(argv))


def _check_zincrby(argv: list[bytes]) -> None:
    parse_score(argv[2])


@_zcommand("zincrby", 4, "write denyoom fast", check=_check_zincrby)
def zincrby(db: Db, argv: list[bytes]) -> ReplyT:
    args = ZAddArgs(False, False, False, False, False, True, [(parse_score(argv[2]), argv[3])])
    return zadd_apply(db, argv[1], args)


@_zcommand("zrem", -3, "write fast")
def zrem(db: Db, argv: list[bytes]) -> ReplyT:
    key = argv[1]
    z = db.typed(key, ZSet)
    if z is None:
        return 0
    c, entry = db.open(key, ZSet)
    removed = sum(c.remove(member) for member in argv[2:])
    db.close(key, c, entry, bool(removed))
    return removed


# -- single-member reads -------------------------------------------------------


@_zcommand("zscore", 3, "readonly fast")
def zscore(db: Db, argv: list[bytes]) -> ReplyT:
    z = db.typed(argv[1], ZSet)
    return None if z is None else z.scores.get(argv[2])


@_zcommand("zmscore", -3, "readonly fast")
def zmscore(db: Db, argv: list[bytes]) -> ReplyT:
    z = db.typed(argv[1], ZSet)
    scores: Mapping[bytes, float] = {} if z is None else z.scores
    return [scores.get(member) for member in argv[2:]]


def _rank(db: Db, argv: list[bytes], rev: bool) -> ReplyT:
    z = db.typed(argv[1], ZSet)
    if z is None:
        return None
    score = z.scores.get(argv[2])
    if score is None:
        return None
    rank = z.order.rank((score, argv[2]))
    return len(z) - 1 - rank if rev else rank


@_zcommand("zrank", 3, "readonly fast")
def zrank(db: Db, argv: list[bytes]) -> ReplyT:
    return _rank(db, argv, rev=False)


@_zcommand("zrevrank", 3, "readonly fast")
def zrevrank(db: Db, argv: list[bytes]) -> ReplyT:
    return _rank(db, argv, rev=True)


@_zcommand("zcard", 2, "readonly fast")
def zcard(db: Db, argv: list[bytes]) -> ReplyT:
    z = db.typed(argv[1], ZSet)
    return 0 if z is None else len(z)


@_zcommand("zcount", 4, "readonly fast")
def zcount(db: Db, argv: list[bytes]) -> ReplyT:
    bounds = parse_score_range(argv[2], argv[3])
    z = db.typed(argv[1], ZSet)
    if z is None:
        return 0
    lo, hi = bounds.ranks(z)
    return max(hi - lo, 0)


@_zcommand("zlexcount", 4, "readonly fast")
def zlexcount(db: Db, argv: list[bytes]) -> ReplyT:
    bounds = parse_lex_range(argv[2], argv[3])
    z = db.typed(argv[1], ZSet)
    if z is None:
        return 0
    return len(bounds.select(z, False, 0, -1))


# -- ZRANGE and its family -----------------------------------------------------

RANK, SCORE, LEX = "rank", "score", "lex"


class RangeQuery(NamedTuple):
    key: bytes
    by: str
    rev: bool
    withscores: bool
    offset: int
    limit: int  # -1: no LIMIT
    bounds: tuple[int, int] | ScoreRange | LexRange


def parse_range(
    argv: list[bytes], at: int, store: bool, by: str | None, rev: bool | None
) -> RangeQuery:
    """<key> <min> <max> [BYSCORE|BYLEX] [REV] [WITHSCORES] [LIMIT offset count] from at;
    `by` and `rev` are fixed by the legacy commands (None: chosen by the options)."""
    withscores, offset, limit = False, 0, -1
    j = at + 3
    while j < len(argv):
        word = argv[j].upper()
        if not store and word == b"WITHSCORES":
            withscores = True
        elif word == b"LIMIT" and len(argv) - j - 1 >= 2:
            offset, limit = parse_int(argv[j + 1]), parse_int(argv[j + 2])
            j += 2
        elif rev is None and word == b"REV":
            rev = True
        elif by is None and word in (b"BYLEX", b"BYSCORE"):
            by = LEX if word == b"BYLEX" else SCORE
        else:
            raise syntax()
        j += 1
    by = by or RANK
    rev = bool(rev)
    if limit != -1 and by == RANK:
        raise CommandError(LIMIT_RANK)
    if withscores and by == LEX:
        raise CommandError(WITHSCORES_LEX)
    lo, hi = argv[at + 1], argv[at + 2]
    if rev and by != RANK:
        lo, hi = hi, lo  # given as max min
    bounds: tuple[int, int] | ScoreRange | LexRange
    if by == RANK:
        bounds = (parse_int(lo), parse_int(hi))
    elif by == SCORE:
        bounds = parse_score_range(lo, hi)
    else:
        bounds = parse_lex_range(lo, hi)
    return RangeQuery(argv[at], by, rev, withscores, offset, limit, bounds)


def select(z: ZSet, q: RangeQuery) -> list[Pair]:
    """The pairs a range query picks, in reply order."""
    if not isinstance(q.bounds, (ScoreRange, LexRange)):  # both are tuples too
        lo, hi = span(q.bounds[0], q.bounds[1], len(z))
        if q.rev:
            lo, hi = len(z) - hi, len(z) - lo
        return _pairs(z, lo, hi, q.rev)
    if isinstance(q.bounds, LexRange):
        return q.bounds.select(z, q.rev, q.offset, q.limit)
    lo, hi = q.bounds.ranks(z)
    return _pairs(z, *_window(lo, hi, q.rev, q.offset, q.limit), q.rev)


def _range(db: Db, q: RangeQuery) -> ReplyT:
    z = db.typed(q.key, ZSet)
    if z is None:
        return []
    return _reply(select(z, q), q.withscores)


@_zcommand("zrange", -4, "readonly")
def zrange(db: Db, argv: list[bytes]) -> ReplyT:
    return _range(db, parse_range(argv, 1, False, None, None))


@_zcommand("zrevrange", -4, "readonly")
def zrevrange(db: Db, argv: list[bytes]) -> ReplyT:
    return _range(db, parse_range(argv, 1, False, RANK, True))


@_zcommand("zrangebyscore", -4, "readonly")
def zrangebyscore(db: Db, argv: list[bytes]) -> ReplyT:
    return _range(db, parse_range(argv, 1, False, SCORE, False))


@_zcommand("zrevrangebyscore", -4, "readonly")
def zrevrangebyscore(db: Db, argv: list[bytes]) -> ReplyT:
    return _range(db, parse_range(argv, 1, False, SCORE, True))


@_zcommand("zrangebylex", -4, "readonly")
def zrangebylex(db: Db, argv: list[bytes]) -> ReplyT:
    return _range(db, parse_range(argv, 1, False, LEX, False))


@_zcommand("zrevrangebylex", -4, "readonly")
def zrevrangebylex(db: Db, argv: list[bytes]) -> ReplyT:
    return _range(db, parse_range(argv, 1, False, LEX, True))


def _check_zrangestore(argv: list[bytes]) -> None:
    parse_range(argv, 2, True, None, None)


@_zcommand("zrangestore", -5, "write denyoom", keys=(1, 2, 1), check=_check_zrangestore)
def zrangestore(db: Db, argv: list[bytes]) -> ReplyT:
    q = parse_range(argv, 2, True, None, None)
    z = db.typed(q.key, ZSet)
    return store(db, argv[1], _zset_of([] if z is None else select(z, q)))


# -- removing ranges and popping ----------------------------------------------


def _remove_pairs(db: Db, key: bytes, pairs: list[Pair]) -> int:
    c, entry = db.open(key, ZSet)
    for _, member in pairs:
        c.remove(member)
    db.close(key, c, entry, bool(pairs))
    return len(pairs)


def _remrange_bounds(argv: list[bytes]) -> tuple[int, int] | ScoreRange | LexRange:
    name = argv[0].lower()
    if name == b"zremrangebyrank":
        return parse_int(argv[2]), parse_int(argv[3])
    if name == b"zremrangebyscore":
        return parse_score_range(argv[2], argv[3])
    return parse_lex_range(argv[2], argv[3])


def _check_remrange(argv: list[bytes]) -> None:
    _remrange_bounds(argv)


def _remrange(db: Db, argv: list[bytes]) -> ReplyT:
    bounds = _remrange_bounds(argv)
    z = db.typed(argv[1], ZSet)
    if z is None:
        return 0
    q = RangeQuery(argv[1], "", False, False, 0, -1, bounds)
    return _remove_pairs(db, argv[1], select(z, q))


for _name in ("zremrangebyrank", "zremrangebyscore", "zremrangebylex"):
    _zcommand(_name, 4, "write", check=_check_remrange)(_remrange)


def zpop(db: Db, key: bytes, high: bool, count: int) -> list[Pair]:
    """Pop up to count lowest (highest) pairs of an existing sorted set."""
    z = db.typed(key, ZSet)
    assert z is not None
    n = min(count, len(z))
    pairs = _pairs(z, len(z) - n, len(z), True) if high else _pairs(z, 0, n, False)
    _remove_pairs(db, key, pairs)
    return pairs


def _zpop_count(argv: list[bytes]) -> int | None:
    if len(argv) > 3:
        raise syntax()
    return positive(argv[2]) if len(argv) == 3 else None


def _check_zpop(argv: list[bytes]) -> None:
    _zpop_count(argv)


def _zpopminmax(db: Db, argv: list[bytes]) -> ReplyT:
    count = _zpop_count(argv)
    if db.typed(argv[1], ZSet) is None or count == 0:
        return []
    pairs = zpop(db, argv[1], argv[0].lower() == b"zpopmax", 1 if count is None else count)
    if count is None:  # a flat [member, score] in both protocols
        return [pairs[0][1], pairs[0][0]]
    return _reply(pairs, True)


for _name in ("zpopmin", "zpopmax"):
    _zcommand(_name, -2, "write fast", check=_check_zpop)(_zpopminmax)


def parse_zmpop(argv: list[bytes], numkeys_at: int = 1) -> tuple[list[bytes], bool, int]:
    """(keys, max, count) of ZMPOP (numkeys_at = 2 for BZMPOP's timeout)."""
    return parse_mpop(argv, numkeys_at, (b"MIN", b"MAX"))


def _check_zmpop(argv: list[bytes]) -> None:
    parse_zmpop(argv)


def zmpop_keys(db: Db, keys: list[bytes], high: bool, count: int) -> ReplyT:
    """[key, [[member, score], ...]] from the first non-empty sorted set, or NULL_ARRAY."""
    for key in keys:
        if db.typed(key, ZSet) is not None:
            return [key, [[m, s] for s, m in zpop(db, key, high, count)]]
    return NULL_ARRAY


@_zcommand("zmpop", -4, "write movablekeys", keys=(0, 0, 0), check=_check_zmpop)
def zmpop(db: Db, argv: list[bytes]) -> ReplyT:
    return zmpop_keys(db, *parse_zmpop(argv))


# -- ZRANDMEMBER ---------------------------------------------------------------


@_zcommand("zrandmember", -2, "readonly")
def zrandmember(db: Db, argv: list[bytes]) -> ReplyT:
    if len(argv) == 2:
        z = db.typed(argv[1], ZSet)
        if z is None:
            return None
        return z.order.slice(i := db.rng(b"zrandmember").randrange(len(z)), i + 1)[0][1]
    count = parse_int(argv[2])
    if count < -LONG_MAX:
        raise CommandError(f"{OUT_OF_RANGE}, value must between {-LONG_MAX} and {LONG_MAX}")
    if len(argv) > 4 or (len(argv) == 4 and argv[3].upper() != b"WITHSCORES"):
        raise syntax()
    withscores = len(argv) == 4
    if withscores and not -LONG_MAX // 2 <= count <= LONG_MAX // 2:
        raise CommandError(OUT_OF_RANGE)
    z = db.typed(argv[1], ZSet)
    if z is None or count == 0:
        return []
    rng = db.rng(b"zrandmember" + argv[2])
    if -count > RANDOM_REPLY_MAX:
        raise CommandError(OUT_OF_RANGE)
    members = [m for _, m in z.order]
    if count < 0:
        picked = [members[rng.randrange(len(members))] for _ in range(-count)]
    elif count >= len(z):
        picked = members[::-1]  # Redis walks a sorted set from its tail here
    else:
        picked = rng.sample(members, count)
    return _reply(((z.scores[m], m) for m in picked), withscores)


# -- ZUNION, ZINTER, ZDIFF and their STORE forms ---------------------------------

UNION, INTER, DIFF = "union", "inter", "diff"


class SetOp(NamedTuple):
    keys: list[bytes]
    weights: list[float]
    aggregate: bytes  # SUM, MIN or MAX
    withscores: bool
    limit: int  # ZINTERCARD's LIMIT (0: none)


def numkeys(argv: list[bytes], at: int) -> int:
    """ZUNION-style numkeys: at least 1 and no more than the arguments that follow."""
    n = parse_int(argv[at])
    if n < 1:
        name = argv[0].decode("utf-8", "replace").lower()
        raise CommandError(f"ERR at least 1 input key is needed for '{name}' command")
    if n > len(argv) - (at + 1):
        raise syntax()
    return n


def parse_setop(argv: list[bytes], at: int, op: str, store: bool, card: bool) -> SetOp:
    n = numkeys(argv, at)
    weights, aggregate, withscores, limit = [1.0] * n, b"SUM", False, 0
    j = at + 1 + n
    while j < len(argv):
        remaining = len(argv) - j
        word = argv[j].upper()
        if op != DIFF and not card and remaining >= n + 1 and word == b"WEIGHTS":
            weights = [parse_score(w, WEIGHT_NOT_FLOAT) for w in argv[j + 1 : j + 1 + n]]
            j += n + 1
        elif op != DIFF and not card and remaining >= 2 and word == b"AGGREGATE":
            aggregate = argv[j + 1].upper()
            if aggregate not in (b"SUM", b"MIN", b"MAX"):
                raise syntax()
            j += 2
        elif not store and not card and word == b"WITHSCORES":
            withscores = True
            j += 1
        elif card and remaining >= 2 and word == b"LIMIT":
            limit = positive(argv[j + 1], LIMIT_NEGATIVE)
            j += 2
        else:
            raise syntax()
    return SetOp(argv[at + 1 : at + 1 + n], weights, aggregate, withscores, limit)


def _source(db: Db, key: bytes) -> Mapping[bytes, float]:
    """A sorted set's scores, or a set's members with score 1; WRONGTYPE for other types."""
    entry = db.entry(key)
    if entry is None:
        return {}
    value = entry[0]
    if isinstance(value, ZSet):
        return value.scores
    if isinstance(value, tv.Set):
        return dict.fromkeys(value.members, 1.0)
    raise CommandError(WRONGTYPE)


def _aggregate(how: bytes, target: float, value: float) -> float:
    if how == b"SUM":
        total = target + value
        return 0.0 if math.isnan(total) else total  # inf + -inf counts as 0, as in Redis
    if how == b"MIN":
        return value if value < target else target
    return value if value > target else target


def _weighted(score: float, weight: float) -> float:
    value = score * weight
    return 0.0 if math.isnan(value) else value


def combine(sources: list[Mapping[bytes, float]], args: SetOp, op: str) -> dict[bytes, float]:
    """Redis's zunionInterDiffGenericCommand over the inputs: member -> score."""
    if op == DIFF:
        first, rest = sources[0], sources[1:]
        return {m: s for m, s in first.items() if not any(m in other for other in rest)}
    inputs = sorted(zip(sources, args.weights, strict=True), key=lambda sw: len(sw[0]))
    out: dict[bytes, float] = {}
    if op == INTER:
        first, weight = inputs[0]
        for member, score in first.items():
            total = _weighted(score, weight)
            for other, w in inputs[1:]:
                value = other.get(member)
                if value is None:
                    break
                total = _aggregate(args.aggregate, total, value * w)
            else:
                out[member] = total
                if args.limit and len(out) >= args.limit:
                    break
        return out
    for source, weight in inputs:
        for member, score in source.items():
            value = _weighted(score, weight)
            old = out.get(member)
            out[member] = value if old is None else _aggregate(args.aggregate, old, value)
    return out


def _setop(db: Db, argv: list[bytes], op: str, dst: bytes | None, card: bool = False) -> ReplyT:
    at = 1 if dst is None else 2
    n = numkeys(argv, at)
    # Redis checks the inputs' types before it reads the options.
    sources = [_source(db, key) for key in argv[at + 1 : at + 1 + n]]
    args = parse_setop(argv, at, op, dst is not None, card)
    scores = combine(sources, args, op)
    if card:
        return len(scores)
    result = _zset_of((s, m) for m, s in scores.items())
    if dst is not None:
        return store(db, dst, result)
    return _reply(result.order, args.withscores)


def _check_setop_store(argv: list[bytes]) -> None:
    # Only numkeys: Redis checks the inputs' types before the options, so an option error
    # found here could hide the WRONGTYPE that Redis answers (the handler refuses it).
    numkeys(argv, 2)


_STORE_FLAGS = "write denyoom movablekeys"
_READ_FLAGS = "readonly movablekeys"


@_zcommand("zunionstore", -4, _STORE_FLAGS, check=_check_setop_store)
def zunionstore(db: Db, argv: list[bytes]) -> ReplyT:
    return _setop(db, argv, UNION, argv[1])


@_zcommand("zinterstore", -4, _STORE_FLAGS, check=_check_setop_store)
def zinterstore(db: Db, argv: list[bytes]) -> ReplyT:
    return _setop(db, argv, INTER, argv[1])


@_zcommand("zdiffstore", -4, _STORE_FLAGS, check=_check_setop_store)
def zdiffstore(db: Db, argv: list[bytes]) -> ReplyT:
    return _setop(db, argv, DIFF, argv[1])


@_zcommand("zunion", -3, _READ_FLAGS, keys=(0, 0, 0))
def zunion(db: Db, argv: list[bytes]) -> ReplyT:
    return _setop(db, argv, UNION, None)


@_zcommand("zinter", -3, _READ_FLAGS, keys=(0, 0, 0))
def zinter(db: Db, argv: list[bytes]) -> ReplyT:
    return _setop(db, argv, INTER, None)


@_zcommand("zdiff", -3, _READ_FLAGS, keys=(0, 0, 0))
def zdiff(db: Db, argv: list[bytes]) -> ReplyT:
    return _setop(db, argv, DIFF, None)


@_zcommand("zintercard", -3, _READ_FLAGS, keys=(0, 0, 0))
def zintercard(db: Db, argv: list[bytes]) -> ReplyT:
    return _setop(db, argv, INTER, None, card=True)


# -- ZSCAN ---------------------------------------------------------------------


def _scan_hash(member: bytes) -> int:
    """Where a member sits in ZSCAN's cursor space (1 .. 2**64-1, the same on every node)."""
    return int.from_bytes(hashlib.blake2b(member, digest_size=8).digest(), "big") or 1


def _score_text(score: float, small: bool) -> bytes:
    """A score as ZSCAN prints it: a listpack's d2string when small, else "%.17Lg"."""
    if math.isinf(score):
        return b"inf" if score > 0 else b"-inf"
    if small and score == int(score) and abs(score) <= 2**62:
        return b"%d" % int(score)
    return b"%.17g" % score


@_zcommand("zscan", -3, "readonly")
def zscan(db: Db, argv: list[bytes]) -> ReplyT:
    cursor = elements.parse_cursor(argv[2])
    z = db.typed(argv[1], ZSet)
    if z is None:
        return [b"0", []]
    count, pattern = 10, None
    i = 3
    while i < len(argv):
        word = argv[i].upper()
        if word == b"COUNT" and i + 1 < len(argv):
            count = parse_int(argv[i + 1])
            if count < 1:
                raise syntax()
        elif word == b"MATCH" and i + 1 < len(argv):
            pattern = None if argv[i + 1] == b"*" else argv[i + 1]
        else:
            raise syntax()
        i += 2
    small = len(z) <= LISTPACK_ENTRIES and all(len(m) <= LISTPACK_VALUE for m in z.scores)
    if small:  # Redis answers a listpack whole, in order, with cursor 0
        pairs, cursor = list(z.order), 0
    else:
        ahead = ((h, m) for m in z.scores if (h := _scan_hash(m)) >= cursor)
        batch = heapq.nsmallest(count + 1, ahead)
        cursor = batch[count][0] if len(batch) > count else 0
        pairs = [(z.scores[m], m) for _, m in batch[:count]]
    matches = compile_glob(pattern) if pattern is not None else None
    flat: list[ReplyT] = []
    for score, member in pairs:
        if matches is None or matches(member):
            flat += [member, _score_text(score, small)]
    return [b"%d" % cursor, flat]
