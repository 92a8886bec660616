"""Redis string commands (see table.py for the handler contract)."""

from __future__ import annotations

from fractions import Fraction
from typing import Final

from raftcache.node.keyspace import longdouble
from raftcache.node.keyspace.args import INT64_MAX, INT64_MIN, parse_int, syntax
from raftcache.node.keyspace.db import KEY_OVERHEAD, Db
from raftcache.node.keyspace.reply import (
    EXPIRE_INVALID,
    NOT_FLOAT,
    OK,
    OVERFLOW,
    CommandError,
    Map,
    ReplyT,
    wrong_arity,
)
from raftcache.node.keyspace.table import command

MAX_STRING = 512 * 1024 * 1024  # proto-max-bulk-len
STRING_TOO_LONG: Final = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
OFFSET_RANGE: Final = "ERR offset is out of range"
INT_BYTES = 20  # the longest decimal 64-bit integer


class RawString(bytes):
    """A string Redis would hold with the "raw" encoding whatever its content: SETRANGE and
    APPEND edit a string in place. Only OBJECT ENCODING tells it from plain bytes."""

    __slots__ = ()


def plain(value: bytes | None) -> bytes | None:
    """A stored string as a reply: plain bytes (the RESP encoder dispatches on exact types)."""
    return value if value is None or type(value) is bytes else bytes(value)


def as_int(raw: bytes) -> int | None:
    """The 64-bit integer a string spells exactly (Redis's string2ll), or None."""
    try:
        return parse_int(raw)
    except CommandError:
        return None


# -- SET and GETEX options -----------------------------------------------------------

_TIMED = frozenset((b"EX", b"PX", b"EXAT", b"PXAT"))


def _flag_allowed(opt: bytes, flags: set[bytes], getex: bool) -> bool:
    """Whether a word without argument may join `flags` (Redis refuses the combination
    with a syntax error otherwise)."""
    timed = flags & _TIMED
    if opt in (b"NX", b"XX"):
        return not getex and not flags & ({b"NX", b"XX"} - {opt})
    if opt in (b"GET", b"KEEPTTL"):
        return not getex and not (opt == b"KEEPTTL" and timed)
    return opt == b"PERSIST" and getex and not timed


def parse_options(argv: list[bytes], getex: bool) -> tuple[frozenset[bytes], bytes]:
    """SET's (from argv[3]) or GETEX's (from argv[2]) option words, and the raw expire
    argument (b"" if none); the same combinations as Redis's parseExtendedStringArguments."""
    flags: set[bytes] = set()
    expire = b""
    j = 2 if getex else 3
    while j < len(argv):
        opt = argv[j].upper()
        if _flag_allowed(opt, flags, getex):
            flags.add(opt)
        elif (
            opt in _TIMED
            and j + 1 < len(argv)
            and not flags & {b"KEEPTTL", b"PERSIST"}
            and not (flags & _TIMED) - {opt}
        ):
            flags.add(opt)
            expire = argv[j + 1]
            j += 1
        else:
            raise syntax()
        j += 1
    return frozenset(flags), expire


def expire_at(raw: bytes, unit: bytes, name: str, now: int) -> int:
    """The absolute deadline (ms) of an EX/PX/EXAT/PXAT argument, checked as Redis does."""
    ms = parse_int(raw)
    seconds = unit in (b"EX", b"EXAT")
    if ms <= 0 or (seconds and ms > INT64_MAX // 1000):
        raise CommandError(EXPIRE_INVALID.format(name))
    if seconds:
        ms *= 1000
    if unit in (b"EX", b"PX"):
        ms += now
    if ms > INT64_MAX:
        raise CommandError(EXPIRE_INVALID.format(name))
    return ms


def _unit(flags: frozenset[bytes]) -> bytes:
    return next(iter(flags & _TIMED), b"")


def _check_set(argv: list[bytes]) -> None:
    flags, expire = parse_options(argv, getex=False)
    if expire:
        expire_at(expire, _unit(flags), "set", 0)


def _store(db: Db, key: bytes, value: bytes, deadline: int) -> None:
    """Set a string; a deadline already past deletes the key (Redis lets it expire)."""
    if deadline and deadline <= db.now:
        db.delete(key)
    else:
        db.set(key, value, deadline)


def _reserve_set(db: Db, key: bytes, value: bytes) -> None:
    db.reserve(len(key) + len(value) + KEY_OVERHEAD)


@command("set", -3, "write denyoom", group="string", check=_check_set)
def set_(db: Db, argv: list[bytes]) -> ReplyT:
    flags, expire = parse_options(argv, getex=False)
    key, value = argv[1], argv[2]
    deadline = expire_at(expire, _unit(flags), "set", db.now) if expire else 0
    get = b"GET" in flags
    old = plain(db.string(key)) if get else None  # WRONGTYPE before anything changes
    entry = db.entry(key)
    if (b"NX" in flags and entry is not None) or (b"XX" in flags and entry is None):
        return old
    _reserve_set(db, key, value)
    if b"KEEPTTL" in flags and entry is not None:
        deadline = entry[2]
    _store(db, key, value, deadline)
    return old if get else OK


@command("setnx", 3, "write denyoom fast", group="string")
def setnx(db: Db, argv: list[bytes]) -> ReplyT:
    if db.exists(argv[1]):
        return 0
    _reserve_set(db, argv[1], argv[2])
    db.set(argv[1], argv[2], 0)
    return 1


def _setex(unit: bytes, name: str) -> None:
    def check(argv: list[bytes]) -> None:
        expire_at(argv[2], unit, name, 0)

    @command(name, 4, "write denyoom", group="string", check=check)
    def handler(db: Db, argv: list[bytes]) -> ReplyT:
        deadline = expire_at(argv[2], unit, name, db.now)
        _reserve_set(db, argv[1], argv[3])
        db.set(argv[1], argv[3], deadline)
        return OK


_setex(b"EX", "setex")
_setex(b"PX", "psetex")


@command("get", 2, "readonly fast", group="string")
def get(db: Db, argv: list[bytes]) -> ReplyT:
    return plain(db.string(argv[1]))


@command("getset", 3, "write denyoom fast", group="string")
def getset(db: Db, argv: list[bytes]) -> ReplyT:
    old = plain(db.string(argv[1]))
    _reserve_set(db, argv[1], argv[2])
    db.set(argv[1], argv[2], 0)
    return old


@command("getdel", 2, "write fast", group="string")
def getdel(db: Db, argv: list[bytes]) -> ReplyT:
    old = plain(db.string(argv[1]))
    if old is not None:
        db.delete(argv[1])
    return old


def _check_getex(argv: list[bytes]) -> None:
    parse_options(argv, getex=True)


@command("getex", -2, "write fast", group="string", check=_check_getex)
def getex(db: Db, argv: list[bytes]) -> ReplyT:
    flags, expire = parse_options(argv, getex=True)
    key = argv[1]
    value = plain(db.string(key))
    if value is None:
        return None
    unit = _unit(flags)
    if expire:
        # Redis checks the time only for a key that exists (after its type).
        db.set_deadline(key, expire_at(expire, unit, "getex", db.now))
    elif b"PERSIST" in flags and db.deadline(key):
        db.set_deadline(key, 0)
    return value


@command("mget", -2, "readonly fast", keys=(1, -1, 1), group="string")
def mget(db: Db, argv: list[bytes]) -> ReplyT:
    out: list[ReplyT] = []
    for key in argv[1:]:
        entry = db.entry(key)
        out.append(plain(entry[0]) if entry is not None and isinstance(entry[0], bytes) else None)
    return out


def _check_pairs(argv: list[bytes]) -> None:
    if len(argv) % 2 == 0:
        raise CommandError(wrong_arity(argv[0].decode("utf-8", "replace")))


def _set_pairs(db: Db, argv: list[bytes]) -> None:
    pairs = list(zip(argv[1::2], argv[2::2], strict=True))
    db.reserve(sum(len(k) + len(v) + KEY_OVERHEAD for k, v in pairs))
    for key, value in pairs:
        db.set(key, value, 0)


@command("mset", -3, "write denyoom", keys=(1, -1, 2), group="string", check=_check_pairs)
def mset(db: Db, argv: list[bytes]) -> ReplyT:
    _check_pairs(argv)
    _set_pairs(db, argv)
    return OK


@command("msetnx", -3, "write denyoom", keys=(1, -1, 2), group="string", check=_check_pairs)
def msetnx(db: Db, argv: list[bytes]) -> ReplyT:
    _check_pairs(argv)
    if any(db.exists(key) for key in argv[1::2]):
        return 0
    _set_pairs(db, argv)
    return 1


# -- editing strings -------------------------------------------------------------------


def _check_length(size: int) -> None:
    if size > MAX_STRING:
        raise CommandError(STRING_TOO_LONG)


@command("append", 3, "write denyoom fast", group="string")
def append(db: Db, argv: list[bytes]) -> ReplyT:
    key, tail = argv[1], argv[2]
    old = db.string(key)
    if old is None:
        _reserve_set(db, key, tail)
        db.set(key, tail, 0)
        return len(tail)
    _check_length(len(old) + len(tail))
    db.reserve(len(tail))
    db.set(key, RawString(old + tail), db.deadline(key))
    return len(old) + len(tail)


@command("strlen", 2, "readonly fast", group="string")
def strlen(db: Db, argv: list[bytes]) -> ReplyT:
    value = db.string(argv[1])
    return 0 if value is None else len(value)


def _check_setrange(argv: list[bytes]) -> None:
    if parse_int(argv[2]) < 0:
        raise CommandError(OFFSET_RANGE)


@command("setrange", 4, "write denyoom", group="string", check=_check_setrange)
def setrange(db: Db, argv: list[bytes]) -> ReplyT:
    _check_setrange(argv)
    key, offset, patch = argv[1], parse_int(argv[2]), argv[3]
    old = db.string(key)
    if not patch:
        return 0 if old is None else len(old)
    _check_length(offset + len(patch))
    base = old or b""
    new = base[:offset].ljust(offset, b"\0") + patch + base[offset + len(patch) :]
    db.reserve(len(new) - len(base) + (0 if old is not None else len(key) + KEY_OVERHEAD))
    db.set(key, RawString(new), db.deadline(key))
    return len(new)


def _range(argv: list[bytes]) -> tuple[int, int]:
    return parse_int(argv[2]), parse_int(argv[3])


def _getrange(db: Db, argv: list[bytes]) -> ReplyT:
    start, end = _range(argv)
    value = db.string(argv[1]) or b""
    n = len(value)
    if start < 0 and end < 0 and start > end:
        return b""
    start = max(start + n if start < 0 else start, 0)
    end = min(max(end + n if end < 0 else end, 0), n - 1)
    return value[start : end + 1] if start <= end and n else b""


command("getrange", 4, "readonly", group="string")(_getrange)
command("substr", 4, "readonly", group="string")(_getrange)


# -- counters ----------------------------------------------------------------------------


def _incr(db: Db, key: bytes, delta: int) -> ReplyT:
    raw = db.string(key)
    value = 0 if raw is None else parse_int(raw)
    total = value + delta
    if not INT64_MIN <= total <= INT64_MAX:
        raise CommandError(OVERFLOW)
    db.reserve(INT_BYTES + (0 if raw is not None else len(key) + KEY_OVERHEAD))
    db.set(key, str(total).encode(), db.deadline(key))
    return total


DECREMENT_OVERFLOW: Final = "ERR decrement would overflow"


def _check_incrby(argv: list[bytes]) -> None:
    parse_int(argv[2])


def _check_decrby(argv: list[bytes]) -> None:
    if parse_int(argv[2]) == INT64_MIN:  # its negation does not fit
        raise CommandError(DECREMENT_OVERFLOW)


@command("incr", 2, "write denyoom fast", group="string")
def incr(db: Db, argv: list[bytes]) -> ReplyT:
    return _incr(db, argv[1], 1)


@command("decr", 2, "write denyoom fast", group="string")
def decr(db: Db, argv: list[bytes]) -> ReplyT:
    return _incr(db, argv[1], -1)


@command("incrby", 3, "write denyoom fast", group="string", check=_check_incrby)
def incrby(db: Db, argv: list[bytes]) -> ReplyT:
    return _incr(db, argv[1], parse_int(argv[2]))


@command("decrby", 3, "write denyoom fast", group="string", check=_check_decrby)
def decrby(db: Db, argv: list[bytes]) -> ReplyT:
    _check_decrby(argv)
    return _incr(db, argv[1], -parse_int(argv[2]))


NAN_OR_INFINITY: Final = "ERR increment would produce NaN or Infinity"


def _float(raw: bytes) -> longdouble.LongDouble:
    value = longdouble.parse(raw)
    if value is None:
        raise CommandError(NOT_FLOAT)
    return value


def _check_incrbyfloat(argv: list[bytes]) -> None:
    _float(argv[2])


@command("incrbyfloat", 3, "write denyoom fast", group="string", check=_check_incrbyfloat)
def incrbyfloat(db: Db, argv: list[bytes]) -> ReplyT:
    key = argv[1]
    raw = db.string(key)
    value = Fraction(0) if raw is None else _float(raw)
    total = longdouble.add(value, _float(argv[2]))
    if total is None:
        raise CommandError(NAN_OR_INFINITY)
    text = longdouble.format_human(total)
    db.reserve(len(text) + (0 if raw is not None else len(key) + KEY_OVERHEAD))
    db.set(key, text, db.deadline(key))
    return text


# -- LCS -------------------------------------------------------------------------------

LCS_NOT_STRINGS: Final = "ERR The specified keys must contain string values"
LCS_LEN_AND_IDX: Final = "ERR If you want both the length and indexes, please just use IDX."
LCS_TOO_BIG: Final = "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len"


def _lcs_rows(a: bytes, b: bytes, keep: bool) -> list[int]:
    """Bit-parallel LCS (Allison-Dix): row i has a 0 bit at j-1 where LCS(a[:i], b[:j])
    grows by one over LCS(a[:i], b[:j-1]). Only the last row unless `keep`."""
    mask = (1 << len(b)) - 1
    positions: dict[int, int] = {}
    for j, ch in enumerate(b):
        positions[ch] = positions.get(ch, 0) | (1 << j)
    v = mask
    rows = [v]
    for ch in a:
        u = v & positions.get(ch, 0)
        v = ((v + u) | (v - u)) & mask
        if keep:
            rows.append(v)
        else:
            rows[0] = v
    return rows


def _lcs_len(row: int, j: int) -> int:
    """LCS(a[:i], b[:j]) from row i."""
    return j - (row & ((1 << j) - 1)).bit_count()


def _lcs_matches(
    a: bytes, b: bytes, rows: list[int], min_len: int, with_len: bool
) -> tuple[bytes, list[ReplyT]]:
    """The LCS string and the IDX ranges, walking back exactly as Redis's lcsCommand."""
    alen = len(a)
    i, j = alen, len(b)
    out = bytearray()
    matches: list[ReplyT] = []
    a_start, a_end, b_start, b_end = alen, 0, 0, 0  # a_start == alen: no open range
    while i > 0 and j > 0:
        emit = False
        if a[i - 1] == b[j - 1]:
            out.append(a[i - 1])
            if a_start == alen:
                a_start = a_end = i - 1
                b_start = b_end = j - 1
            elif a_start == i and b_start == j:
                a_start -= 1
                b_start -= 1
            else:
                emit = True
            if a_start == 0 or b_start == 0:
                emit = True
            i, j = i - 1, j - 1
        else:
            if _lcs_len(rows[i - 1], j) > _lcs_len(rows[i], j - 1):
                i -= 1
            else:
                j -= 1
            if a_start != alen:
                emit = True
        if emit:
            length = a_end - a_start + 1
            if min_len == 0 or length >= min_len:
                match: list[ReplyT] = [[a_start, a_end], [b_start, b_end]]
                matches.append([*match, length] if with_len else match)
            a_start = alen
    return bytes(reversed(out)), matches


@command("lcs", -3, "readonly", keys=(1, 2, 1), group="string")
def lcs(db: Db, argv: list[bytes]) -> ReplyT:
    values = [db.entry(key) for key in argv[1:3]]
    if any(e is not None and not isinstance(e[0], bytes) for e in values):
        raise CommandError(LCS_NOT_STRINGS)
    a, b = (e[0] if e is not None and isinstance(e[0], bytes) else b"" for e in values)
    get_len = get_idx = with_len = False
    min_len = 0
    j = 3
    while j < len(argv):
        opt = argv[j].upper()
        if opt == b"IDX":
            get_idx = True
        elif opt == b"LEN":
            get_len = True
        elif opt == b"WITHMATCHLEN":
            with_len = True
        elif opt == b"MINMATCHLEN" and j + 1 < len(argv):
            min_len = max(parse_int(argv[j + 1]), 0)
            j += 1
        else:
            raise syntax()
        j += 1
    if get_len and get_idx:
        raise CommandError(LCS_LEN_AND_IDX)
    if (len(a) + 1) * (len(b) + 1) * 4 > MAX_STRING:
        raise CommandError(LCS_TOO_BIG)
    rows = _lcs_rows(a, b, keep=not get_len)
    if get_len:
        return _lcs_len(rows[-1], len(b))
    text, matches = _lcs_matches(a, b, rows, min_len, with_len)
    if get_idx:
        return Map([b"matches", matches, b"len", len(text)])
    return text
