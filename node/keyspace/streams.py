"""Redis stream commands (see table.py for the handler contract), with Redis 7.0.15's replies
and error texts.

Ids are `ms << 64 | seq` ints (values.Stream). `*` takes the leader-stamped `db.now`, never
below the last id's millisecond, so every replica assigns the same ids and they only grow
even if the leader's clock steps back. Delivery times, idle times and consumers' seen times
use the same clock. XREADGROUP, XCLAIM and XAUTOCLAIM change the pending entries lists, so
they are writes (replicated); XREAD, XRANGE, XPENDING and XINFO are reads.

BLOCK: these handlers are one attempt (data now, else the null reply, as Redis answers
inside MULTI); the waiting is the leader's (node/blocking.py parks the client, resolves `$`
to the stream's last id and repeats the attempt whenever a stream it waits on changes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from raftcache.node.keyspace.args import INT64_MAX, parse_int, syntax
from raftcache.node.keyspace.db import KEY_OVERHEAD, Db
from raftcache.node.keyspace.keys import _help, _subcommand
from raftcache.node.keyspace.reply import (
    NO_SUCH_KEY,
    NULL_ARRAY,
    OK,
    CommandError,
    KeyedPairs,
    Map,
    ReplyT,
    wrong_arity,
)
from raftcache.node.keyspace.table import Checker, Handler, command
from raftcache.node.values import (
    MAX_ID,
    NODE_MAX_ENTRIES,
    Group,
    Stream,
    id_ms,
    id_text,
    make_id,
)

INVALID_ID: Final = "ERR Invalid stream ID specified as stream command argument"
ID_ZERO: Final = "ERR The ID specified in XADD must be greater than 0-0"
ID_TOO_SMALL: Final = (
    "ERR The ID specified in XADD is equal or smaller than the target stream top item"
)
EXHAUSTED: Final = "ERR The stream has exhausted the last possible ID, unable to add more items"
BOTH_STRATEGIES: Final = (
    "ERR syntax error, MAXLEN and MINID options at the same time are not compatible"
)
MAXLEN_NEGATIVE: Final = "ERR The MAXLEN argument must be >= 0."
LIMIT_NEGATIVE: Final = "ERR The LIMIT argument must be >= 0."
LIMIT_NO_STRATEGY: Final = (
    "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
)
XTRIM_NO_STRATEGY: Final = "ERR syntax error, XTRIM must be called with a trimming strategy"
LIMIT_NOT_APPROX: Final = "ERR syntax error, LIMIT cannot be used without the special ~ option"
BAD_START: Final = "ERR invalid start ID for the interval"
BAD_END: Final = "ERR invalid end ID for the interval"
UNBALANCED: Final = (
    "ERR Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified."
)
GROUP_ONLY_XREADGROUP: Final = (
    "ERR The GROUP option is only supported by XREADGROUP. You called XREAD instead."
)
NOACK_ONLY_XREADGROUP: Final = (
    "ERR The NOACK option is only supported by XREADGROUP. You called XREAD instead."
)
MISSING_GROUP: Final = "ERR Missing GROUP option for XREADGROUP"
DOLLAR_IN_XREADGROUP: Final = (
    "ERR The $ ID is meaningless in the context of XREADGROUP: you want to read the history "
    "of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ "
    "ID would just return an empty result set."
)
GT_IN_XREAD: Final = (
    "ERR The > ID can be specified only when calling XREADGROUP using the GROUP <group> "
    "<consumer> option."
)
TIMEOUT_NOT_INTEGER: Final = "ERR timeout is not an integer or out of range"
TIMEOUT_NEGATIVE: Final = "ERR timeout is negative"
ENTRIESREAD_RANGE: Final = "ERR value for ENTRIESREAD must be positive or -1"
XGROUP_NEEDS_KEY: Final = (
    "ERR The XGROUP subcommand requires the key to exist. Note that for CREATE you may want "
    "to use the MKSTREAM option to create an empty stream automatically."
)
BUSYGROUP: Final = "BUSYGROUP Consumer Group name already exists"
ENTRIES_ADDED_NEGATIVE: Final = "ERR entries_added must be positive"
SETID_BELOW_DELETED: Final = (
    "ERR The ID specified in XSETID is smaller than the provided max_deleted_entry_id"
)
SETID_BELOW_TOP: Final = "ERR The ID specified in XSETID is smaller than the target stream top item"
SETID_BELOW_LENGTH: Final = (
    "ERR The entries_added specified in XSETID is smaller than the target stream length"
)
AUTOCLAIM_COUNT: Final = "ERR COUNT must be > 0"

_SEQ_MAX = (1 << 64) - 1
_ULL = re.compile(rb"[ \t\n\v\f\r]*\+?(\d+)")
_APPROX_LIMIT = 100 * NODE_MAX_ENTRIES  # Redis: 100 nodes' worth of entries per trim


def _stream_command(
    name: str,
    arity: int,
    flags: str,
    keys: tuple[int, int, int] = (1, 1, 1),
    check: Checker | None = None,
) -> Callable[[Handler], Handler]:
    return command(name, arity, flags, keys=keys, group="stream", check=check)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


# -- ids ----------------------------------------------------------------------------------


def _ull(raw: bytes) -> int | None:
    """Redis's string2ull: a decimal 0..2^64-1 (strtoull also takes spaces and '+')."""
    m = _ULL.fullmatch(raw)
    if m is None:
        return None
    value = int(m[1])
    return value if value <= _SEQ_MAX else None


def parse_id(
    raw: bytes, missing_seq: int = 0, strict: bool = False, seq_star: bool = False
) -> tuple[int, bool]:
    """(id, whether the sequence was given) of `ms-seq`, `ms`, `-`, `+` (not when strict) or,
    with seq_star, `ms-*` (Redis's streamGenericParseIDOrReply)."""
    if len(raw) > 127 or (strict and raw in (b"-", b"+")):
        raise CommandError(INVALID_ID)
    if raw == b"-":
        return 0, True
    if raw == b"+":
        return MAX_ID, True
    ms_raw, dash, seq_raw = raw.partition(b"-")
    ms = _ull(ms_raw)
    if ms is None:
        raise CommandError(INVALID_ID)
    if not dash:
        return make_id(ms, missing_seq), True
    if seq_star and seq_raw == b"*":
        return make_id(ms, 0), False
    seq = _ull(seq_raw)
    if seq is None:
        raise CommandError(INVALID_ID)
    return make_id(ms, seq), True


def strict_id(raw: bytes) -> int:
    return parse_id(raw, strict=True)[0]


def interval(raw: bytes, missing_seq: int, start: bool) -> int:
    """A range bound: `(id` is exclusive (the next id up for a start, down for an end)."""
    if len(raw) > 1 and raw[:1] == b"(":
        sid = parse_id(raw[1:], missing_seq, strict=True)[0]
        if start:
            if sid == MAX_ID:
                raise CommandError(BAD_START)
            return sid + 1
        if sid == 0:
            raise CommandError(BAD_END)
        return sid - 1
    return parse_id(raw, missing_seq)[0]


def _count(raw: bytes) -> int:
    """A COUNT argument: any 64-bit integer, negative read as 0."""
    return max(parse_int(raw), 0)


# -- replies ------------------------------------------------------------------------------


def entry_reply(s: Stream, sid: int) -> list[ReplyT]:
    return [id_text(sid), list(s.entries[sid])]


def _entries(s: Stream, ids: list[int]) -> list[ReplyT]:
    return [entry_reply(s, sid) for sid in ids]


def _stream(db: Db, key: bytes) -> Stream | None:
    return db.typed(key, Stream)


def _subcommand_syntax(argv: list[bytes]) -> CommandError:
    """Redis's addReplySubcommandSyntaxError."""
    return CommandError(
        f"ERR unknown subcommand or wrong number of arguments for '{_text(argv[1])[:128]}'. "
        f"Try {_text(argv[0]).upper()} HELP."
    )


def _nogroup(key: bytes, group: bytes, suffix: str = "") -> CommandError:
    return CommandError(
        f"NOGROUP No such key '{_text(key)}' or consumer group '{_text(group)}'{suffix}"
    )


def _no_such_group(key: bytes, group: bytes) -> CommandError:
    return CommandError(
        f"NOGROUP No such consumer group '{_text(group)}' for key name '{_text(key)}'"
    )


# -- XADD, XTRIM --------------------------------------------------------------------------


@dataclass
class TrimArgs:
    maxlen: int | None = None  # MAXLEN's threshold
    minid: int | None = None  # MINID's threshold
    approx: bool = False
    limit: int = 0  # 0: unlimited
    nomkstream: bool = False
    sid: int | None = None  # XADD's explicit id (None: `*`)
    seq_given: bool = True
    idpos: int = 0

    @property
    def trims(self) -> bool:
        return self.maxlen is not None or self.minid is not None


def parse_add_or_trim(argv: list[bytes], xadd: bool) -> TrimArgs:
    """XADD's and XTRIM's options (Redis's streamParseAddOrTrimArgsOrReply)."""
    a = TrimArgs()
    limit_given = False
    i = 2
    while i < len(argv):
        more = len(argv) - 1 - i
        opt = argv[i].lower()
        if xadd and argv[i] == b"*":
            break
        if opt in (b"maxlen", b"minid") and more:
            if a.trims:
                raise CommandError(BOTH_STRATEGIES)
            a.approx = False
            if more >= 2 and argv[i + 1] in (b"~", b"="):
                a.approx = argv[i + 1] == b"~"
                i += 1
            if opt == b"maxlen":
                a.maxlen = parse_int(argv[i + 1])
                if a.maxlen < 0:
                    raise CommandError(MAXLEN_NEGATIVE)
            else:
                a.minid = strict_id(argv[i + 1])
            i += 1
        elif opt == b"limit" and more:
            a.limit = parse_int(argv[i + 1])
            if a.limit < 0:
                raise CommandError(LIMIT_NEGATIVE)
            limit_given = True
            i += 1
        elif xadd and opt == b"nomkstream":
            a.nomkstream = True
        elif xadd:
            a.sid, a.seq_given = parse_id(argv[i], strict=True, seq_star=True)
            break
        else:
            raise syntax()
        i += 1
    a.idpos = i
    if a.limit and not a.trims:
        raise CommandError(LIMIT_NO_STRATEGY)
    if not xadd and not a.trims:
        raise CommandError(XTRIM_NO_STRATEGY)
    if limit_given:
        if not a.approx:
            raise CommandError(LIMIT_NOT_APPROX)
    else:
        a.limit = _APPROX_LIMIT if a.approx else 0
    return a


def _parse_xadd(argv: list[bytes]) -> TrimArgs:
    a = parse_add_or_trim(argv, xadd=True)
    fields = len(argv) - a.idpos - 1
    if fields < 2 or fields % 2:
        raise CommandError(wrong_arity("xadd"))
    if a.sid == 0 and a.seq_given:
        raise CommandError(ID_ZERO)
    return a


def _check_xadd(argv: list[bytes]) -> None:
    _parse_xadd(argv)


def _next_id(s: Stream | None, a: TrimArgs, now: int) -> int:
    """The id XADD gives its entry, or CommandError (Redis's streamAppendItem)."""
    last = 0 if s is None else s.last_id
    if last == MAX_ID:
        raise CommandError(EXHAUSTED)
    if a.sid is None:
        ms = max(now, 0)
        sid = make_id(ms, 0) if ms > id_ms(last) else last + 1
    elif a.seq_given:
        sid = a.sid
    elif id_ms(a.sid) == id_ms(last):
        if last & _SEQ_MAX == _SEQ_MAX:
            raise CommandError(ID_TOO_SMALL)
        sid = last + 1
    else:
        sid = a.sid
    if sid <= last:
        raise CommandError(ID_TOO_SMALL)
    return sid


def _trim(s: Stream, a: TrimArgs) -> int:
    return s.trim(a.maxlen, a.minid or 0, a.approx, a.limit)


@_stream_command("xadd", -5, "write denyoom fast", check=_check_xadd)
def xadd(db: Db, argv: list[bytes]) -> ReplyT:
    a = _parse_xadd(argv)
    key = argv[1]
    s = _stream(db, key)
    if s is None and a.nomkstream:
        return None
    sid = _next_id(s, a, db.now)
    fields = tuple(argv[a.idpos + 1 :])
    db.reserve(Stream.entry_size(fields) + (len(key) + KEY_OVERHEAD if s is None else 0))
    c, entry = db.open(key, Stream)
    c.append(sid, fields)
    trimmed = _trim(c, a) if a.trims else 0
    db.close(key, c, entry, True)
    db.notify("t", "xadd", key)
    if trimmed:
        db.notify("t", "xtrim", key)
    return id_text(sid)


def _check_xtrim(argv: list[bytes]) -> None:
    parse_add_or_trim(argv, xadd=False)


@_stream_command("xtrim", -4, "write", check=_check_xtrim)
def xtrim(db: Db, argv: list[bytes]) -> ReplyT:
    a = parse_add_or_trim(argv, xadd=False)
    key = argv[1]
    if _stream(db, key) is None:
        return 0
    c, entry = db.open(key, Stream)
    deleted = _trim(c, a)
    db.close(key, c, entry, bool(deleted))
    if deleted:
        db.notify("t", "xtrim", key)
    return deleted


@_stream_command("xdel", -3, "write fast")
def xdel(db: Db, argv: list[bytes]) -> ReplyT:
    key = argv[1]
    if _stream(db, key) is None:
        return 0
    ids = [strict_id(raw) for raw in argv[2:]]
    c, entry = db.open(key, Stream)
    deleted = sum(c.delete(sid) for sid in ids)
    db.close(key, c, entry, bool(deleted))
    if deleted:
        db.notify("t", "xdel", key)
    return deleted


@_stream_command("xlen", 2, "readonly fast")
def xlen(db: Db, argv: list[bytes]) -> ReplyT:
    s = _stream(db, argv[1])
    return 0 if s is None else len(s)


# -- XRANGE, XREVRANGE --------------------------------------------------------------------


def _range(db: Db, argv: list[bytes], rev: bool) -> ReplyT:
    start_raw, end_raw = (argv[3], argv[2]) if rev else (argv[2], argv[3])
    start = interval(start_raw, 0, start=True)
    end = interval(end_raw, _SEQ_MAX, start=False)
    count = -1
    i = 4
    while i < len(argv):
        if argv[i].lower() == b"count" and i + 1 < len(argv):
            count = _count(argv[i + 1])
            i += 2
        else:
            raise syntax()
    s = _stream(db, argv[1])
    if s is None:
        return []
    if count == 0:
        return NULL_ARRAY
    return _entries(s, s.range(start, end, max(count, 0), rev))


@_stream_command("xrange", -4, "readonly")
def xrange(db: Db, argv: list[bytes]) -> ReplyT:
    return _range(db, argv, rev=False)


@_stream_command("xrevrange", -4, "readonly")
def xrevrange(db: Db, argv: list[bytes]) -> ReplyT:
    return _range(db, argv, rev=True)


# -- XREAD, XREADGROUP --------------------------------------------------------------------


@dataclass
class ReadArgs:
    count: int = 0  # 0: no limit
    block: int | None = None  # BLOCK's timeout in ms
    group: bytes | None = None
    consumer: bytes = b""
    noack: bool = False
    keys: list[bytes] | None = None
    ids: list[bytes] | None = None


def parse_read(argv: list[bytes]) -> ReadArgs:
    """XREAD's and XREADGROUP's options up to STREAMS (the ids are parsed against the state)."""
    group_cmd = argv[0].lower() == b"xreadgroup"
    a = ReadArgs()
    i = 1
    while i < len(argv):
        more = len(argv) - i - 1
        opt = argv[i].lower()
        if opt == b"block" and more:
            a.block = parse_int(argv[i + 1], TIMEOUT_NOT_INTEGER)
            if a.block < 0:
                raise CommandError(TIMEOUT_NEGATIVE)
            i += 1
        elif opt == b"count" and more:
            a.count = _count(argv[i + 1])
            i += 1
        elif opt == b"streams" and more:
            rest = argv[i + 1 :]
            if len(rest) % 2:
                raise CommandError(UNBALANCED)
            half = len(rest) // 2
            a.keys, a.ids = rest[:half], rest[half:]
            break
        elif opt == b"group" and more >= 2:
            if not group_cmd:
                raise CommandError(GROUP_ONLY_XREADGROUP)
            a.group, a.consumer = argv[i + 1], argv[i + 2]
            i += 2
        elif opt == b"noack":
            if not group_cmd:
                raise CommandError(NOACK_ONLY_XREADGROUP)
            a.noack = True
        else:
            raise syntax()
        i += 1
    if a.keys is None:
        raise syntax()
    if group_cmd and a.group is None:
        raise CommandError(MISSING_GROUP)
    return a


def _check_read(argv: list[bytes]) -> None:
    parse_read(argv)


def _answer(argv: list[bytes], a: ReadArgs, served: list[ReplyT]) -> ReplyT:
    if served:
        return KeyedPairs(served)
    return NULL_ARRAY  # with BLOCK: the front-end parks the client (node/blocking.py)


def _last_valid_id(s: Stream) -> int:
    return s.ids[-1] if s.ids else 0


@_stream_command("xread", -4, "readonly movablekeys", keys=(0, 0, 0), check=_check_read)
def xread(db: Db, argv: list[bytes]) -> ReplyT:
    a = parse_read(argv)
    assert a.keys is not None and a.ids is not None
    after: list[tuple[bytes, Stream | None, int]] = []
    for key, raw in zip(a.keys, a.ids, strict=True):
        s = _stream(db, key)
        if raw == b"$":
            after.append((key, s, 0 if s is None else s.last_id))
        elif raw == b">":
            raise CommandError(GT_IN_XREAD)
        else:
            after.append((key, s, strict_id(raw)))
    served: list[ReplyT] = []
    for key, s, gt in after:
        if s is not None and s.ids and _last_valid_id(s) > gt:
            served.append([key, _entries(s, s.range(gt + 1, MAX_ID, a.count))])
    return _answer(argv, a, served)


def _has_tombstones(s: Stream, start: int, end: int = MAX_ID) -> bool:
    """Redis's streamRangeHasTombstones: whether a deleted entry may lie in [start, end]."""
    if not s.ids or not s.max_deleted or s.first_id > s.max_deleted:
        return False
    return start <= s.max_deleted <= end


def estimate_read(s: Stream, sid: int) -> int:
    """Redis's streamEstimateDistanceFromFirstEverEntry (-1: cannot tell)."""
    if not s.entries_added:
        return 0
    if not s.ids and sid <= s.last_id:
        return s.entries_added
    if sid == s.last_id:
        return s.entries_added
    if sid > s.last_id:
        return -1
    if not s.max_deleted or s.max_deleted < s.first_id:
        if sid < s.first_id:
            return s.entries_added - len(s)
        if sid == s.first_id:
            return s.entries_added - len(s) + 1
    return -1


def lag(s: Stream, g: Group) -> int | None:
    """Redis's streamReplyWithCGLag (None: unknown)."""
    if not s.entries_added:
        return 0
    if g.entries_read != -1 and not _has_tombstones(s, g.last_id):
        return s.entries_added - g.entries_read
    read = estimate_read(s, g.last_id)
    return None if read == -1 else s.entries_added - read


def _deliver_new(
    s: Stream, name: bytes, consumer: bytes, ids: list[int], now: int, noack: bool
) -> list[ReplyT]:
    """Serve entries past the group's last id (Redis's streamReplyWithRange with a group)."""
    g = s.groups[name]
    out: list[ReplyT] = []
    for sid in ids:
        if sid > g.last_id:
            if g.entries_read != -1 and not _has_tombstones(s, sid):
                read = g.entries_read + 1
            elif s.entries_added:
                read = estimate_read(s, sid)
            else:
                read = g.entries_read
            s.set_group(name, sid, read)
        out.append(entry_reply(s, sid))
        if not noack:
            s.set_nack(name, sid, consumer, now, 1)
    return out


def _deliver_history(
    s: Stream, name: bytes, consumer: bytes, start: int, count: int, now: int
) -> list[ReplyT]:
    """A consumer's own pending entries from `start` (Redis's ...FromConsumerPEL)."""
    pel = s.groups[name].consumers[consumer].pel
    ids = sorted(sid for sid in pel if sid >= start)
    out: list[ReplyT] = []
    for sid in ids[:count] if count else ids:
        if sid in s.entries:
            n = pel[sid]
            s.set_nack(name, sid, consumer, now, n.count + 1)
            out.append(entry_reply(s, sid))
        else:
            out.append([id_text(sid), NULL_ARRAY])
    return out


@_stream_command("xreadgroup", -7, "write movablekeys", keys=(0, 0, 0), check=_check_read)
def xreadgroup(db: Db, argv: list[bytes]) -> ReplyT:
    a = parse_read(argv)
    assert a.keys is not None and a.ids is not None and a.group is not None
    group, consumer = a.group, a.consumer
    plan: list[tuple[bytes, int | None]] = []  # (key, history start or None for ">")
    for key, raw in zip(a.keys, a.ids, strict=True):
        s = _stream(db, key)
        if s is None or group not in s.groups:
            raise _nogroup(key, group, " in XREADGROUP with GROUP option")
        if raw == b"$":
            raise CommandError(DOLLAR_IN_XREADGROUP)
        if raw == b">":
            plan.append((key, None))
        else:
            sid = strict_id(raw)
            plan.append((key, (sid + 1) % (MAX_ID + 1)))  # Redis wraps the maximum to 0-0
    todo: list[tuple[bytes, int | None, list[int]]] = []
    growth = 0
    for key, start in plan:
        s = _stream(db, key)
        assert s is not None
        g = s.groups[group]
        new: list[int] = []
        if start is None:
            if not s.ids or _last_valid_id(s) <= g.last_id:
                continue
            new = s.range(g.last_id + 1, MAX_ID, a.count)
            growth += 0 if a.noack else len(new) * Stream.NACK_OVERHEAD
        todo.append((key, start, new))
        if consumer not in g.consumers:
            growth += Stream.CONSUMER_OVERHEAD + len(consumer)
    if not todo:
        return _answer(argv, a, [])
    db.reserve(growth)
    served: list[ReplyT] = []
    for key, start, new in todo:
        c, entry = db.open(key, Stream)
        if consumer in c.groups[group].consumers:
            c.seen(group, consumer, db.now)
        else:
            c.add_consumer(group, consumer, db.now)
            db.notify("t", "xgroup-createconsumer", key)
        if start is None:
            got = _deliver_new(c, group, consumer, new, db.now, a.noack)
        else:
            got = _deliver_history(c, group, consumer, start, a.count, db.now)
        db.close(key, c, entry, True)
        served.append([key, got])
    return KeyedPairs(served)


# -- XACK, XPENDING, XCLAIM, XAUTOCLAIM -----------------------------------------------------


@_stream_command("xack", -4, "write fast")
def xack(db: Db, argv: list[bytes]) -> ReplyT:
    key, group = argv[1], argv[2]
    s = _stream(db, key)
    if s is None or group not in s.groups:
        return 0
    ids = [strict_id(raw) for raw in argv[3:]]
    if not any(sid in s.groups[group].pel for sid in ids):
        return 0
    c, entry = db.open(key, Stream)
    acked = sum(c.drop_nack(group, sid) for sid in ids)
    db.close(key, c, entry, True)
    return acked


def _pending_summary(s: Stream, g: Group) -> ReplyT:
    if not g.pel:
        return [0, None, None, NULL_ARRAY]
    ids = g.pel.keys()
    owners = [[name, b"%d" % len(c.pel)] for name, c in sorted(g.consumers.items()) if c.pel]
    return [len(g.pel), id_text(min(ids)), id_text(max(ids)), owners]


@_stream_command("xpending", -3, "readonly")
def xpending(db: Db, argv: list[bytes]) -> ReplyT:
    key, group = argv[1], argv[2]
    n = len(argv)
    if n != 3 and not 6 <= n <= 9:
        raise syntax()
    min_idle = 0
    start = end = count = 0
    consumer: bytes | None = None
    if n >= 6:
        at = 3
        if argv[3].lower() == b"idle":
            min_idle = parse_int(argv[4])
            if n < 8:
                raise syntax()
            at = 5
        count = _count(argv[at + 2])
        start = interval(argv[at], 0, start=True)
        end = interval(argv[at + 1], _SEQ_MAX, start=False)
        if at + 3 < n:
            consumer = argv[at + 3]
    s = _stream(db, key)
    if s is None or group not in s.groups:
        raise _nogroup(key, group)
    g = s.groups[group]
    if n == 3:
        return _pending_summary(s, g)
    if consumer is not None:
        owner = g.consumers.get(consumer)
        if owner is None:
            return []
        pel = owner.pel
    else:
        pel = g.pel
    out: list[ReplyT] = []
    for sid in sorted(pel):
        if len(out) >= count or sid > end:
            break
        if sid < start:
            continue
        nack = pel[sid]
        idle = db.now - nack.time
        if min_idle and idle < min_idle:
            continue
        out.append([id_text(sid), nack.consumer, max(idle, 0), nack.count])
    return out


def _claim(s: Stream, group: bytes, consumer: bytes, sid: int, time: int, count: int) -> None:
    """Give a pending entry to `consumer` (created if needed)."""
    if consumer not in s.groups[group].consumers:
        s.add_consumer(group, consumer, time)
    s.set_nack(group, sid, consumer, time, count)


@_stream_command("xclaim", -6, "write fast")
def xclaim(db: Db, argv: list[bytes]) -> ReplyT:
    key, group, consumer = argv[1], argv[2], argv[3]
    s = _stream(db, key)
    if s is None or group not in s.groups:
        raise _nogroup(key, group)
    min_idle = max(parse_int(argv[4], "ERR Invalid min-idle-time argument for XCLAIM"), 0)
    ids: list[int] = []
    j = 5
    while j < len(argv):
        try:
            ids.append(strict_id(argv[j]))
        except CommandError:
            break
        j += 1
    now = db.now
    delivery: int | None = None
    retry = -1
    force = justid = False
    last_id = 0
    while j < len(argv):
        more = len(argv) - 1 - j
        opt = argv[j].lower()
        if opt == b"force":
            force = True
        elif opt == b"justid":
            justid = True
        elif opt == b"idle" and more:
            j += 1
            delivery = now - parse_int(argv[j], "ERR Invalid IDLE option argument for XCLAIM")
        elif opt == b"time" and more:
            j += 1
            delivery = parse_int(argv[j], "ERR Invalid TIME option argument for XCLAIM")
        elif opt == b"retrycount" and more:
            j += 1
            retry = parse_int(argv[j], "ERR Invalid RETRYCOUNT option argument for XCLAIM")
        elif opt == b"lastid" and more:
            j += 1
            last_id = strict_id(argv[j])
        else:
            raise CommandError(f"ERR Unrecognized XCLAIM option '{_text(argv[j])}'")
        j += 1
    if delivery is None or delivery < 0 or delivery > now:
        delivery = now
    g = s.groups[group]
    known = consumer in g.consumers
    growth = 0 if known else Stream.CONSUMER_OVERHEAD + len(consumer)
    if force:
        growth += sum(Stream.NACK_OVERHEAD for sid in ids if sid not in g.pel)
    db.reserve(growth)
    c, entry = db.open(key, Stream)
    changed = False
    if last_id > g.last_id:
        c.set_group(group, last_id, g.entries_read)
        changed = True
    out: list[ReplyT] = []
    for sid in ids:
        nack = g.pel.get(sid)
        if sid not in c.entries:
            if nack is not None:
                c.drop_nack(group, sid)
                changed = True
            continue
        if nack is None and not force:
            continue
        if nack is not None and min_idle and now - nack.time < min_idle:
            continue
        if consumer in g.consumers:
            c.seen(group, consumer, now)
        times = 1 if nack is None else nack.count  # FORCE: Redis's new NACK counts 1
        if retry >= 0:
            times = retry
        elif not justid:
            times += 1
        _claim(c, group, consumer, sid, delivery, times)
        out.append(id_text(sid) if justid else entry_reply(c, sid))
        changed = True
    db.close(key, c, entry, changed)
    if not known and consumer in c.groups[group].consumers:
        db.notify("t", "xgroup-createconsumer", key)
    return out


def _check_xautoclaim(argv: list[bytes]) -> None:
    _parse_autoclaim(argv)


def _parse_autoclaim(argv: list[bytes]) -> tuple[int, int, int, bool]:
    """(min idle, start, count, justid) of XAUTOCLAIM."""
    min_idle = max(parse_int(argv[4], "ERR Invalid min-idle-time argument for XAUTOCLAIM"), 0)
    start = interval(argv[5], 0, start=True)
    count, justid = 100, False
    j = 6
    while j < len(argv):
        more = len(argv) - 1 - j
        opt = argv[j].lower()
        if opt == b"count" and more:
            count = parse_int(argv[j + 1], AUTOCLAIM_COUNT)
            if not 1 <= count <= INT64_MAX // 10:
                raise CommandError(AUTOCLAIM_COUNT)
            j += 1
        elif opt == b"justid":
            justid = True
        else:
            raise syntax()
        j += 1
    return min_idle, start, count, justid


@_stream_command("xautoclaim", -6, "write fast", check=_check_xautoclaim)
def xautoclaim(db: Db, argv: list[bytes]) -> ReplyT:
    min_idle, start, count, justid = _parse_autoclaim(argv)
    key, group, consumer = argv[1], argv[2], argv[3]
    s = _stream(db, key)
    if s is None or group not in s.groups:
        raise _nogroup(key, group)
    g = s.groups[group]
    now = db.now
    pending = sorted(sid for sid in g.pel if sid >= start)
    attempts = count * 10
    claimed: list[int] = []
    deleted: list[int] = []
    i = 0
    while attempts and count and i < len(pending):
        attempts -= 1
        sid = pending[i]
        i += 1
        if sid not in s.entries:
            deleted.append(sid)
            count -= 1
            continue
        if min_idle and now - g.pel[sid].time < min_idle:
            continue
        claimed.append(sid)
        count -= 1
    next_id = pending[i] if i < len(pending) else 0
    if claimed or deleted:
        known = consumer in g.consumers
        growth = 0 if known else Stream.CONSUMER_OVERHEAD + len(consumer)
        db.reserve(growth if claimed else 0)
        c, entry = db.open(key, Stream)
        for sid in deleted:
            c.drop_nack(group, sid)
        if claimed and consumer in g.consumers:
            c.seen(group, consumer, now)
        for sid in claimed:
            _claim(c, group, consumer, sid, now, g.pel[sid].count + (0 if justid else 1))
        db.close(key, c, entry, True)
        if not known and consumer in c.groups[group].consumers:
            db.notify("t", "xgroup-createconsumer", key)
    entries: list[ReplyT] = (
        [id_text(sid) for sid in claimed] if justid else [entry_reply(s, sid) for sid in claimed]
    )
    return [id_text(next_id), entries, [id_text(sid) for sid in deleted]]


# -- XGROUP, XSETID -----------------------------------------------------------------------

XGROUP_HELP: Final = (
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
)
XINFO_HELP: Final = (
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
)
_XGROUP_ARITIES = {
    b"help": 2,
    b"create": -5,
    b"setid": -5,
    b"destroy": 4,
    b"createconsumer": 5,
    b"delconsumer": 5,
}
_XINFO_ARITIES = {b"help": 2, b"consumers": 4, b"groups": 3, b"stream": -3}


def _parse_xgroup(argv: list[bytes]) -> tuple[bytes, bool, int]:
    """(subcommand, MKSTREAM, ENTRIESREAD or -1) of XGROUP."""
    sub = _subcommand(argv, _XGROUP_ARITIES)
    mkstream, entries_read = False, -1
    i = 5
    while len(argv) >= 4 and i < len(argv):
        if sub == b"create" and argv[i].lower() == b"mkstream":
            mkstream = True
            i += 1
        elif (
            sub in (b"create", b"setid") and argv[i].lower() == b"entriesread" and i + 1 < len(argv)
        ):
            entries_read = parse_int(argv[i + 1])
            if entries_read < -1:
                raise CommandError(ENTRIESREAD_RANGE)
            i += 2
        else:
            raise _subcommand_syntax(argv)
    if (sub == b"create" and len(argv) > 8) or (sub == b"setid" and len(argv) not in (5, 7)):
        raise _subcommand_syntax(argv)
    return sub, mkstream, entries_read


def _check_xgroup(argv: list[bytes]) -> None:
    _parse_xgroup(argv)


@_stream_command("xgroup", -2, "write denyoom", keys=(2, 2, 1), check=_check_xgroup)
def xgroup(db: Db, argv: list[bytes]) -> ReplyT:
    sub, mkstream, entries_read = _parse_xgroup(argv)
    if sub == b"help":
        return _help(argv, XGROUP_HELP)
    key, name = argv[2], argv[3]
    s = _stream(db, key)
    if s is None and not mkstream:
        raise CommandError(XGROUP_NEEDS_KEY)
    if (
        s is not None
        and name not in s.groups
        and sub in (b"setid", b"createconsumer", b"delconsumer")
    ):
        raise _no_such_group(key, name)
    if sub == b"create":
        start = strict_id(argv[4]) if argv[4] != b"$" else 0 if s is None else s.last_id
        if s is not None and name in s.groups:
            raise CommandError(BUSYGROUP)
        db.reserve(
            Stream.GROUP_OVERHEAD + len(name) + (len(key) + KEY_OVERHEAD if s is None else 0)
        )
        c, entry = db.open(key, Stream)
        c.add_group(name, start, entries_read)
        db.close(key, c, entry, True)
        db.notify("t", "xgroup-create", key)
        return OK
    assert s is not None
    if sub == b"setid":
        start = s.last_id if argv[4] == b"$" else parse_id(argv[4])[0]
        c, entry = db.open(key, Stream)
        c.set_group(name, start, entries_read)
        db.close(key, c, entry, True)
        db.notify("t", "xgroup-setid", key)
        return OK
    if sub == b"destroy":
        if name not in s.groups:
            return 0
        c, entry = db.open(key, Stream)
        c.drop_group(name)
        db.close(key, c, entry, True)
        db.notify("t", "xgroup-destroy", key)
        return 1
    who = argv[4]
    known = who in s.groups[name].consumers
    if sub == b"createconsumer":
        if known:
            return 0
        db.reserve(Stream.CONSUMER_OVERHEAD + len(who))
        c, entry = db.open(key, Stream)
        c.add_consumer(name, who, db.now)
        db.close(key, c, entry, True)
        db.notify("t", "xgroup-createconsumer", key)
        return 1
    if not known:  # delconsumer
        return 0
    c, entry = db.open(key, Stream)
    pending = c.drop_consumer(name, who)
    db.close(key, c, entry, True)
    db.notify("t", "xgroup-delconsumer", key)
    return pending


def _parse_xsetid(argv: list[bytes]) -> tuple[int, int, int]:
    """(last id, entries added or -1, max deleted id) of XSETID."""
    sid = strict_id(argv[2])
    added, max_deleted = -1, 0
    i = 3
    while i < len(argv):
        more = len(argv) - 1 - i
        opt = argv[i].lower()
        if opt == b"entriesadded" and more:
            added = parse_int(argv[i + 1])
            if added < 0:
                raise CommandError(ENTRIES_ADDED_NEGATIVE)
        elif opt == b"maxdeletedid" and more:
            max_deleted = strict_id(argv[i + 1])
            if sid < max_deleted:
                raise CommandError(SETID_BELOW_DELETED)
        else:
            raise syntax()
        i += 2
    return sid, added, max_deleted


def _check_xsetid(argv: list[bytes]) -> None:
    _parse_xsetid(argv)


@_stream_command("xsetid", -3, "write denyoom fast", check=_check_xsetid)
def xsetid(db: Db, argv: list[bytes]) -> ReplyT:
    sid, added, max_deleted = _parse_xsetid(argv)
    key = argv[1]
    s = _stream(db, key)
    if s is None:
        raise CommandError(NO_SUCH_KEY)
    if s.ids:
        if sid < _last_valid_id(s):
            raise CommandError(SETID_BELOW_TOP)
        if added != -1 and len(s) > added:
            raise CommandError(SETID_BELOW_LENGTH)
    c, entry = db.open(key, Stream)
    c.set_meta(
        sid,
        c.entries_added if added == -1 else added,
        max_deleted if max_deleted else c.max_deleted,
    )
    db.close(key, c, entry, True)
    db.notify("t", "xsetid", key)
    return OK


# -- XINFO --------------------------------------------------------------------------------


def _rax_nodes(s: Stream) -> int:
    """radix-tree-nodes: Redis's rax node count has no equivalent here; a rax of n keys of
    16 bytes sharing prefixes takes about that many nodes, so this reports n + 1."""
    return len(s.node_starts) + 1


def _head(s: Stream) -> list[ReplyT]:
    return [
        b"length", len(s),
        b"radix-tree-keys", len(s.node_starts),
        b"radix-tree-nodes", _rax_nodes(s),
        b"last-generated-id", id_text(s.last_id),
        b"max-deleted-entry-id", id_text(s.max_deleted),
        b"entries-added", s.entries_added,
        b"recorded-first-entry-id", id_text(s.first_id),
    ]  # fmt: skip


def _group_pel(g: Group, count: int) -> list[ReplyT]:
    ids = sorted(g.pel)
    return [
        [id_text(sid), g.pel[sid].consumer, g.pel[sid].time, g.pel[sid].count]
        for sid in (ids[:count] if count else ids)
    ]


def _full_groups(s: Stream, count: int) -> list[ReplyT]:
    out: list[ReplyT] = []
    for name, g in sorted(s.groups.items()):
        consumers: list[ReplyT] = []
        for cname, c in sorted(g.consumers.items()):
            ids = sorted(c.pel)
            pending = [
                [id_text(sid), c.pel[sid].time, c.pel[sid].count]
                for sid in (ids[:count] if count else ids)
            ]
            consumers.append(
                Map(
                    [
                        b"name",
                        cname,
                        b"seen-time",
                        c.seen,
                        b"pel-count",
                        len(c.pel),
                        b"pending",
                        pending,
                    ]
                )
            )
        out.append(
            Map(
                [
                    b"name",
                    name,
                    b"last-delivered-id",
                    id_text(g.last_id),
                    b"entries-read",
                    None if g.entries_read == -1 else g.entries_read,
                    b"lag",
                    lag(s, g),
                    b"pel-count",
                    len(g.pel),
                    b"pending",
                    _group_pel(g, count),
                    b"consumers",
                    consumers,
                ]
            )
        )
    return out


def _xinfo_stream(s: Stream, argv: list[bytes]) -> ReplyT:
    opts = argv[3:]
    if not opts:
        first = s.ids[:1]
        last = s.ids[-1:]
        return Map([
            *_head(s),
            b"groups", len(s.groups),
            b"first-entry", entry_reply(s, first[0]) if first else None,
            b"last-entry", entry_reply(s, last[0]) if last else None,
        ])  # fmt: skip
    if len(opts) not in (1, 3) or opts[0].lower() != b"full":
        raise _subcommand_syntax(argv)
    count = 10
    if len(opts) == 3:
        if opts[1].lower() != b"count":
            raise _subcommand_syntax(argv)
        count = parse_int(opts[2])
        if count < 0:
            count = 10
    ids = s.ids[:count] if count else s.ids
    return Map([*_head(s), b"entries", _entries(s, ids), b"groups", _full_groups(s, count)])


@_stream_command("xinfo", -2, "readonly", keys=(2, 2, 1))
def xinfo(db: Db, argv: list[bytes]) -> ReplyT:
    sub = _subcommand(argv, _XINFO_ARITIES)
    if sub == b"help":
        return _help(argv, XINFO_HELP)
    key = argv[2]
    s = _stream(db, key)
    if s is None:
        raise CommandError(NO_SUCH_KEY)
    if sub == b"stream":
        return _xinfo_stream(s, argv)
    if sub == b"groups":
        return [
            Map(
                [
                    b"name",
                    name,
                    b"consumers",
                    len(g.consumers),
                    b"pending",
                    len(g.pel),
                    b"last-delivered-id",
                    id_text(g.last_id),
                    b"entries-read",
                    None if g.entries_read == -1 else g.entries_read,
                    b"lag",
                    lag(s, g),
                ]
            )
            for name, g in sorted(s.groups.items())
        ]
    g = s.groups.get(argv[3])
    if g is None:
        raise _no_such_group(key, argv[3])
    return [
        Map([b"name", name, b"pending", len(c.pel), b"idle", max(db.now - c.seen, 0)])
        for name, c in sorted(g.consumers.items())
    ]
