"""Redis's blocking pops as table commands: what one attempt does.

BLPOP and friends are logged and applied as ordinary writes: each handler pops from the
first of its keys that has data, exactly as Redis does when the command does not have to
wait (inside MULTI, or when a key already has data), and answers Redis's "timed out"
reply otherwise. The waiting itself is the leader's business (node/blocking.py): it parks
the client and proposes one of these attempts whenever a key it waits on changes.
"""

from __future__ import annotations

import math

from raftcache.node.keyspace import table
from raftcache.node.keyspace.db import Db
from raftcache.node.keyspace.lists import move, parse_lmpop, pop_items, side
from raftcache.node.keyspace.reply import NULL_ARRAY, CommandError, ReplyT
from raftcache.node.keyspace.streams import parse_read
from raftcache.node.keyspace.table import command
from raftcache.node.keyspace.zsets import parse_zmpop, zmpop_keys, zpop
from raftcache.node.values import List, Stream, ZSet, id_text

TIMEOUT_NOT_FLOAT = "ERR timeout is not a float or out of range"
TIMEOUT_NEGATIVE = "ERR timeout is negative"
_MAX_TIMEOUT_S = 2**53 / 1000  # Redis: the timeout in ms must fit a long long


def parse_timeout(raw: bytes) -> float:
    """A blocking command's timeout in seconds (0 = forever), with Redis 7.0's errors."""
    try:
        value = float(raw)
    except ValueError:
        raise CommandError(TIMEOUT_NOT_FLOAT) from None
    if math.isnan(value) or math.isinf(value) or value > _MAX_TIMEOUT_S:
        raise CommandError(TIMEOUT_NOT_FLOAT)
    if value < 0:
        raise CommandError(TIMEOUT_NEGATIVE)
    return value


def is_blocking(argv: list[bytes], name: bytes = b"") -> bool:
    """Whether a call may wait: the blocking pops always, XREAD/XREADGROUP with BLOCK.
    `name`: argv[0] in lower case, if the caller has it."""
    name = name or argv[0].lower()
    if name in BLOCKING:
        return True
    return name in STREAM_READS and any(a.lower() == b"block" for a in argv[1:])


def waits_on(argv: list[bytes]) -> tuple[list[bytes], float, ReplyT]:
    """(keys it waits on, timeout in s, the reply when it times out) of a blocking call;
    CommandError for bad arguments (checked before anything is proposed)."""
    name = argv[0].lower()
    if name in STREAM_READS:
        a = parse_read(argv)
        assert a.keys is not None
        return a.keys, (a.block or 0) / 1000, NULL_ARRAY
    if name in (b"blpop", b"brpop", b"bzpopmin", b"bzpopmax"):
        return argv[1:-1], parse_timeout(argv[-1]), NULL_ARRAY
    if name == b"brpoplpush":
        return [argv[1]], parse_timeout(argv[3]), None
    if name == b"blmove":
        side(argv[3])
        side(argv[4])
        return [argv[1]], parse_timeout(argv[5]), None
    if name == b"blmpop":
        timeout = parse_timeout(argv[1])
        return parse_lmpop(argv, 2)[0], timeout, NULL_ARRAY
    if name == b"bzmpop":
        timeout = parse_timeout(argv[1])
        return parse_zmpop(argv, 2)[0], timeout, NULL_ARRAY
    raise CommandError(f"ERR {name.decode('utf-8', 'replace')} is not a blocking command")


BLOCKING = frozenset(
    (b"blpop", b"brpop", b"brpoplpush", b"blmove", b"blmpop", b"bzpopmin", b"bzpopmax", b"bzmpop")
)
STREAM_READS = frozenset((b"xread", b"xreadgroup"))
UNPOP = b"raftcache.unpop"
TAKEN = b"raftcache.taken"
TAKING = BLOCKING | {b"raftcache.woken", b"xreadgroup", UNPOP, TAKEN}
"""The commands of a blocked call's attempts (and its check and undo): under the call's
request id, the state machine remembers the first attempt that took something and answers
it to any later attempt with that id (StateMachine._take_once)."""


def with_timeout(argv: list[bytes], seconds: float) -> list[bytes]:
    """A blocking call with its timeout replaced by `seconds` (> 0; at least 1 ms), for a
    relayed call sent again to a new leader with only what is left of its own timeout."""
    name = argv[0].lower()
    if name in STREAM_READS:
        out = list(argv)
        i = 4 if name == b"xreadgroup" else 1  # past GROUP group consumer
        while i < len(argv) - 1 and argv[i].lower() != b"streams":
            if argv[i].lower() == b"block":
                out[i + 1] = str(max(1, int(seconds * 1000))).encode()
            i += 1 if argv[i].lower() == b"noack" else 2
        return out
    text = f"{max(seconds, 0.001):.3f}".encode()
    at = {b"brpoplpush": 3, b"blmove": 5, b"blmpop": 1, b"bzmpop": 1}.get(name, len(argv) - 1)
    return [*argv[:at], text, *argv[at + 1 :]]


def resolve_dollar(argv: list[bytes], last_ids: list[bytes]) -> list[bytes]:
    """XREAD ... STREAMS keys ids with each `$` replaced by its stream's last id when the
    call arrived (so later attempts wait for entries after it, as Redis does)."""
    at = len(argv) - len(last_ids)
    return argv[:at] + [
        last if raw == b"$" else raw for raw, last in zip(argv[at:], last_ids, strict=True)
    ]


@command("raftcache.streams.lastids", -2, "readonly internal", keys=(1, -1, 1), group="stream")
def last_ids(db: Db, argv: list[bytes]) -> ReplyT:
    """Each stream's last id as text (0-0 when missing): what `$` means right now."""
    out: list[ReplyT] = []
    for key in argv[1:]:
        s = db.typed(key, Stream)
        out.append(id_text(0 if s is None else s.last_id))
    return out


def _check(argv: list[bytes]) -> None:
    waits_on(argv)


def _first_pop(db: Db, keys: list[bytes], right: bool) -> ReplyT:
    for key in keys:
        if db.typed(key, List) is not None:
            return [key, pop_items(db, key, right, 1)[0]]
    return NULL_ARRAY


@command("blpop", -3, "write blocking", keys=(1, -2, 1), group="list", check=_check)
def blpop(db: Db, argv: list[bytes]) -> ReplyT:
    return _first_pop(db, argv[1:-1], right=False)


@command("brpop", -3, "write blocking", keys=(1, -2, 1), group="list", check=_check)
def brpop(db: Db, argv: list[bytes]) -> ReplyT:
    return _first_pop(db, argv[1:-1], right=True)


@command("brpoplpush", 4, "write denyoom blocking", keys=(1, 2, 1), group="list", check=_check)
def brpoplpush(db: Db, argv: list[bytes]) -> ReplyT:
    return move(db, argv[1], argv[2], True, False)


@command("blmove", 6, "write denyoom blocking", keys=(1, 2, 1), group="list", check=_check)
def blmove(db: Db, argv: list[bytes]) -> ReplyT:
    return move(db, argv[1], argv[2], side(argv[3]), side(argv[4]))


@command("blmpop", -5, "write blocking movablekeys", keys=(0, 0, 0), group="list", check=_check)
def blmpop(db: Db, argv: list[bytes]) -> ReplyT:
    keys, right, count = parse_lmpop(argv, 2)
    for key in keys:
        if db.typed(key, List) is not None:
            return [key, pop_items(db, key, right, count)]
    return NULL_ARRAY


def _bzpop(db: Db, argv: list[bytes]) -> ReplyT:
    high = argv[0].lower() == b"bzpopmax"
    for key in argv[1:-1]:
        if db.typed(key, ZSet) is not None:
            score, member = zpop(db, key, high, 1)[0]
            return [key, member, score]
    return NULL_ARRAY


for _name in ("bzpopmin", "bzpopmax"):
    command(_name, -3, "write fast blocking", keys=(1, -2, 1), group="sorted-set", check=_check)(
        _bzpop
    )


@command(
    "bzmpop", -5, "write blocking movablekeys", keys=(0, 0, 0), group="sorted-set", check=_check
)
def bzmpop(db: Db, argv: list[bytes]) -> ReplyT:
    return zmpop_keys(db, *parse_zmpop(argv, 2))


def _ready(db: Db, keys: list[bytes], cls: type[List] | type[ZSet]) -> list[bytes]:
    """The keys that hold a `cls` now (a key of another type is not ready: it is skipped)."""
    ready = []
    for key in keys:
        entry = db.entry(key)
        if entry is not None and isinstance(entry[0], cls):
            ready.append(key)
    return ready


@command("raftcache.woken", -3, "write denyoom internal", keys=(0, 0, 0), group="list")
def woken(db: Db, argv: list[bytes]) -> ReplyT:
    """A blocked call's attempt after a wake-up (node/blocking.py): as the call itself, but
    a key that holds another type is not ready and is skipped rather than answered with
    WRONGTYPE (Redis serves a woken client only from keys that are ready); a move's
    destination of another type still answers WRONGTYPE."""
    call = argv[1:]
    name = call[0].lower()
    if name in (b"blpop", b"brpop"):
        return _first_pop(db, _ready(db, call[1:-1], List), right=name == b"brpop")
    if name in (b"bzpopmin", b"bzpopmax"):
        return _bzpop(db, [name, *_ready(db, call[1:-1], ZSet), call[-1]])
    if name in (b"brpoplpush", b"blmove"):
        if not _ready(db, [call[1]], List):
            return None
        return brpoplpush(db, call) if name == b"brpoplpush" else blmove(db, call)
    if name == b"blmpop":
        keys, right, count = parse_lmpop(call, 2)
        ready = _ready(db, keys, List)
        return NULL_ARRAY if not ready else [ready[0], pop_items(db, ready[0], right, count)]
    if name == b"bzmpop":
        keys, high, count = parse_zmpop(call, 2)
        return zmpop_keys(db, _ready(db, keys, ZSet), high, count)
    raise CommandError(f"ERR {name.decode('utf-8', 'replace')} is not a blocking pop")


@command(TAKEN.decode(), -3, "write internal", keys=(0, 0, 0), group="list")
def taken(db: Db, argv: list[bytes]) -> ReplyT:
    """What the blocked call argv[1:] took, without trying to take anything: under the
    call's request id the state machine answers the remembered take; this handler runs
    when there is none and answers the call's timeout reply (node/blocking.py asks when the
    client of a relayed call went away, to put back what nobody will receive)."""
    return waits_on(argv[1:])[2]


@command(UNPOP.decode(), -4, "write internal", keys=(0, 0, 0), group="list")
def unpop(db: Db, argv: list[bytes]) -> ReplyT:
    """Put back what a blocked call's attempt took after its client went away
    (node/blocking.py): argv[1:] is the LPUSH, RPUSH or ZADD that undoes it. Under the call's
    request id, the state machine runs it only while the take is remembered, and forgets it
    in the same apply: a retry of the call with that id then takes afresh, and a second
    undo of the same take does nothing."""
    call = argv[1:]
    name = call[0].lower()
    if name not in (b"lpush", b"rpush", b"zadd"):
        raise CommandError(f"ERR {name.decode('utf-8', 'replace')} does not put anything back")
    return table.COMMANDS[name].handler(db, call)
