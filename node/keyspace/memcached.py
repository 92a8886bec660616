"""Memcached's commands as table commands, so they travel the one write path (a Redis-style
call in the log) and apply identically on every replica.

The memcached front-end (node/memcached) parses text and meta commands into these calls;
keys are database 0's, the same keys Redis's GET and gRPC's Get see. An item is a string
with memcached's 32-bit client flags beside it (the state machine's entry keeps them; any
non-memcached write resets them to 0). The CAS token is the key's version, the same
per-key revision WATCH compares. Expiry times arrive as memcached's exptime (seconds, an
absolute Unix time above 30 days, negative = already expired) and are converted here with
the leader-stamped clock, so every replica computes the same deadline.

Replies are plain values the front-end renders: statuses as `Status` words (STORED,
NOT_STORED, EXISTS, NOT_FOUND, DELETED, TOUCHED), items as `[value, flags, cas, ttl_s]`
(ttl_s -1 = no expiry) or None for a miss.
"""

from __future__ import annotations

from raftcache.node.keyspace.args import parse_int
from raftcache.node.keyspace.db import KEY_OVERHEAD, Db
from raftcache.node.keyspace.reply import CommandError, ReplyT, Status
from raftcache.node.keyspace.table import command

RELATIVE_LIMIT_S = 60 * 60 * 24 * 30
"""memcached: an exptime above 30 days is an absolute Unix time."""
U64 = 1 << 64
FLAGS_LIMIT = 1 << 32
"""Client flags are 32-bit unsigned."""
GET_COMMAND = b"raftcache.mc.get"
"""The table command get, gets and mg read through."""
STORE_COMMAND = b"raftcache.mc.store"
"""The table command every storage command (set, add, cas, ms...) writes through."""
MODES = (b"set", b"add", b"replace", b"append", b"prepend")
NON_NUMERIC = "CLIENT_ERROR cannot increment or decrement non-numeric value"

STORED = Status("STORED")
NOT_STORED = Status("NOT_STORED")
EXISTS = Status("EXISTS")
NOT_FOUND = Status("NOT_FOUND")
DELETED = Status("DELETED")
TOUCHED = Status("TOUCHED")
EXPIRED = -1
"""A deadline meaning "already expired" (the item is not kept)."""


def deadline(exptime: int, now_ms: int) -> int:
    """memcached's exptime as a deadline in cluster ms: 0 none, EXPIRED already past."""
    if exptime == 0:
        return 0
    if exptime < 0:
        return EXPIRED
    if exptime > RELATIVE_LIMIT_S:
        at = exptime * 1000
        return at if at > now_ms else EXPIRED
    return now_ms + exptime * 1000


def _item(db: Db, key: bytes) -> tuple[bytes, int, int, int] | None:
    """(value, version, deadline, flags) of a live string; None when missing or when the
    key holds another type (memcached cannot show a Redis hash)."""
    entry = db.entry(key)
    if entry is None or not isinstance(entry[0], bytes):
        return None
    return entry  # type: ignore[return-value]


def _view(db: Db, item: tuple[bytes, int, int, int]) -> list[ReplyT]:
    return item_view(item, db.now)


def item_view(item: tuple[bytes, int, int, int], now_ms: int) -> list[ReplyT]:
    """A live item as get answers it at `now_ms`: [value, flags, cas, ttl_s] (ttl_s -1 =
    no expiry, rounded up as memcached does). Engine.read_mc_get shares it."""
    value, version, dl, flags = item
    ttl = -1 if not dl else max((dl - now_ms + 999) // 1000, 0)
    return [bytes(value), flags, version, ttl]


def _u64(raw: bytes, what: str) -> int:
    """An unsigned 64-bit decimal (memcached's CAS tokens, deltas and initial values)."""
    if not raw.isdigit() or len(raw) > 20 or int(raw) >= U64:
        raise CommandError(f"CLIENT_ERROR {what} out of range")
    return int(raw)


def _cas(raw: bytes) -> int | None:
    """A CAS argument: empty = no compare, else the version the key must have."""
    return None if not raw else _u64(raw, "cas")


def client_flags(raw: bytes) -> int | None:
    """A store's client flags as _check_store accepts them (a decimal below 2**32), else
    None (the table's check then says what is wrong)."""
    try:
        flags = parse_int(raw)
    except CommandError:
        return None
    return flags if 0 <= flags < FLAGS_LIMIT else None


def _check_store(argv: list[bytes]) -> None:
    if argv[1] not in MODES:
        raise CommandError(f"CLIENT_ERROR unknown store mode {argv[1]!r}")
    if not 0 <= parse_int(argv[4]) < FLAGS_LIMIT:
        raise CommandError("CLIENT_ERROR bad command line format")
    parse_int(argv[5])
    _cas(argv[6])


@command(
    "raftcache.mc.store",
    7,
    "write denyoom internal",
    keys=(2, 2, 1),
    group="memcached",
    check=_check_store,
)
def store(db: Db, argv: list[bytes]) -> ReplyT:
    """MODE KEY VALUE FLAGS EXPTIME CAS (CAS empty = no compare) -> [status, cas]."""
    _check_store(argv)
    mode, key, value = argv[1], argv[2], argv[3]
    flags, exptime, cas = int(argv[4]), int(argv[5]), _cas(argv[6])
    item = _item(db, key)
    entry = db.entry(key)
    exists = entry is not None
    if cas is not None:
        if entry is None:
            return [NOT_FOUND, 0]
        if entry[1] != cas:
            return [EXISTS, 0]
    if mode == b"add" and exists:
        return [NOT_STORED, 0]
    if mode in (b"replace", b"append", b"prepend") and not exists:
        return [NOT_STORED, 0]
    if mode in (b"append", b"prepend"):
        if item is None:  # another type: nothing to append to
            return [NOT_STORED, 0]
        # memcached keeps the item's flags and expiry on append/prepend
        old, _version, dl, flags = item
        value = old + value if mode == b"append" else value + old
        db.reserve(len(argv[3]))
        return [STORED, db.set(key, value, dl, flags)]
    dl = deadline(exptime, db.now)
    if dl == EXPIRED:
        if exists:
            db.delete(key)
        return [STORED, 0]
    db.reserve(len(key) + len(value) + KEY_OVERHEAD)
    return [STORED, db.set(key, value, dl, flags)]


@command("raftcache.mc.get", -2, "readonly fast internal", keys=(1, -1, 1), group="memcached")
def get(db: Db, argv: list[bytes]) -> ReplyT:
    """KEY... -> per key [value, flags, cas, ttl_s] or None."""
    out: list[ReplyT] = []
    for key in argv[1:]:
        item = _item(db, key)
        out.append(None if item is None else _view(db, item))
    return out


@command("raftcache.mc.gat", -3, "write fast internal", keys=(2, -1, 1), group="memcached")
def gat(db: Db, argv: list[bytes]) -> ReplyT:
    """EXPTIME KEY...: get and touch -> per key [value, flags, cas, ttl_s] or None."""
    dl = deadline(parse_int(argv[1]), db.now)
    out: list[ReplyT] = []
    for key in argv[2:]:
        item = _item(db, key)
        if item is None:
            out.append(None)
            continue
        view = _view(db, item)
        if dl == EXPIRED:
            db.delete(key)
            view[3] = 0
        else:
            db.set_deadline(key, dl)
            view[3] = -1 if not dl else (dl - db.now + 999) // 1000  # the new TTL, as memcached
        out.append(view)
    return out


@command("raftcache.mc.touch", 3, "write fast internal", group="memcached")
def touch(db: Db, argv: list[bytes]) -> ReplyT:
    """KEY EXPTIME -> TOUCHED or NOT_FOUND."""
    dl = deadline(parse_int(argv[2]), db.now)
    if _item(db, argv[1]) is None:
        return NOT_FOUND
    if dl == EXPIRED:
        db.delete(argv[1])
    else:
        db.set_deadline(argv[1], dl)
    return TOUCHED


def _check_cas_arg(argv: list[bytes]) -> None:
    _cas(argv[2])


@command("raftcache.mc.delete", 3, "write fast internal", group="memcached", check=_check_cas_arg)
def delete(db: Db, argv: list[bytes]) -> ReplyT:
    """KEY CAS (empty = no compare) -> DELETED, NOT_FOUND or EXISTS."""
    key, cas = argv[1], _cas(argv[2])
    entry = db.entry(key)
    if entry is None:
        return NOT_FOUND
    if cas is not None and entry[1] != cas:
        return EXISTS
    db.delete(key)
    return DELETED


def _check_arith(argv: list[bytes]) -> None:
    if argv[2] not in (b"incr", b"decr"):
        raise CommandError(f"CLIENT_ERROR unknown arithmetic mode {argv[2]!r}")
    _u64(argv[3], "delta")
    parse_int(argv[4])
    _u64(argv[5], "initial value")
    _cas(argv[6])


@command(
    "raftcache.mc.arith", 7, "write denyoom fast internal", group="memcached", check=_check_arith
)
def arith(db: Db, argv: list[bytes]) -> ReplyT:
    """KEY incr|decr DELTA VIVIFY_EXPTIME INITIAL CAS -> [status, value, cas]; status
    NOT_FOUND (a miss; created from INITIAL when VIVIFY_EXPTIME >= 0) or EXISTS (CAS)."""
    _check_arith(argv)
    key, incr, delta = argv[1], argv[2] == b"incr", int(argv[3])
    vivify, initial, cas = int(argv[4]), int(argv[5]), _cas(argv[6])
    entry = db.entry(key)
    if entry is None:
        if vivify < 0:
            return [NOT_FOUND, None, 0]
        dl = deadline(vivify, db.now)
        text = str(initial).encode()
        if dl == EXPIRED:
            return [STORED, text, 0]
        db.reserve(len(key) + len(text) + KEY_OVERHEAD)
        return [STORED, text, db.set(key, text, dl)]
    if cas is not None and entry[1] != cas:
        return [EXISTS, None, 0]
    value = entry[0]
    current = _number(value) if isinstance(value, bytes) else None
    if current is None:
        raise CommandError(NON_NUMERIC)
    total = (current + delta) % U64 if incr else max(current - delta, 0)
    text = str(total).encode()
    # memcached rewrites a number that got no longer in place, padded with spaces to the
    # item's length (`get` then shows the padding); a longer one becomes a new item
    stored = text.ljust(len(value)) if len(text) <= len(value) else text
    return [STORED, text, db.set(key, stored, entry[2], entry[3])]


def _number(value: bytes) -> int | None:
    """memcached's reading of a counter: decimal digits, trailing spaces allowed, < 2**64."""
    digits = value.rstrip(b" ")
    if not digits or len(digits) > 20 or not digits.isdigit():
        return None
    number = int(digits)
    return number if number < U64 else None


@command("raftcache.mc.flush", 2, "write internal", keys=(0, 0, 0), group="memcached")
def flush(db: Db, argv: list[bytes]) -> ReplyT:
    """DELAY_S: drop every key of database 0 now (0), or make every current key expire in
    DELAY_S seconds (memcached's `flush_all N`; keys written later are kept)."""
    delay = parse_int(argv[1])
    at = deadline(delay, db.now) if delay > 0 else EXPIRED
    for key in list(db.keys()):
        if at == EXPIRED:
            db.delete(key)
        else:
            current = db.deadline(key)
            if not current or current > at:
                db.set_deadline(key, at)
    return Status("OK")


# -- permissions ------------------------------------------------------------------------------

_ARITY = {
    STORE_COMMAND: 3,
    GET_COMMAND: 2,
    b"raftcache.mc.gat": 3,
    b"raftcache.mc.touch": 3,
    b"raftcache.mc.delete": 2,
    b"raftcache.mc.arith": 2,
    b"raftcache.mc.flush": 1,
}


def store_equivalent(key: bytes) -> list[bytes]:
    """The Redis call a store of `key` is checked as (any mode): SET. The memcached port's
    plain set, which goes as a SET, is checked with this too."""
    return [b"set", key, b""]


def redis_equivalents(argv: list[bytes]) -> list[list[bytes]] | None:
    """The Redis calls a memcached table call is checked as (node/acl.py), one per key, in
    database 0: store -> SET, get -> GET, gat -> GETEX, touch -> EXPIRE, delete -> DEL,
    arith -> INCRBY, flush -> FLUSHALL. None: not a memcached table call, or too short to
    name its keys (refused as its own command)."""
    name = argv[0].lower()
    if len(argv) < _ARITY.get(name, 1 << 30):
        return None
    if name == STORE_COMMAND:
        return [store_equivalent(argv[2])]
    if name == GET_COMMAND:
        return [[b"get", key] for key in argv[1:]]
    if name == b"raftcache.mc.gat":
        return [[b"getex", key] for key in argv[2:]]
    if name == b"raftcache.mc.touch":
        return [[b"expire", argv[1], argv[2]]]
    if name == b"raftcache.mc.delete":
        return [[b"del", argv[1]]]
    if name == b"raftcache.mc.arith":
        return [[b"incrby", argv[1], b"1"]]
    return [[b"flushall"]]
