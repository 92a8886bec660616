"""Keyspace notifications: Redis's `notify-keyspace-events`, published by every node.

Redis publishes `__keyspace@<db>__:<key>` (message: the event) and `__keyevent@<db>__:<event>`
(message: the key) when a command changes a key, if the event's class is enabled. Here the
setting is replicated state (CONFIG SET proposes `raftcache.notify-keyspace-events`), and the
events are derived while an entry is applied, from the key changes the state machine records
anyway (`Change`: set, delete, expire, evict, and whether a set created the key). Every node
applies every entry, so a subscriber on any node receives the same events, in log order,
from the entry that enabled them on. Nothing here changes stored state: events are
`Published` messages, like PUBLISH's.

- A Redis command's changes are named by `EVENTS` (the command's event on the keys it
  changed; the command's event and then `del` when it emptied a container, as Redis does),
  its arguments where they choose (LMOVE's ends, ZADD INCR, SET EX). Nested commands (Lua's
  redis.call, EXEC's calls) name their own changes; the enclosing command adds nothing.
- Changes outside a Redis command (expiry sweeps, evictions, gRPC and memcached writes): a
  string written is `set`, a deletion `del`, typed gRPC writes other than strings nothing.
- `expired` (x), `evicted` (e) and `new` (n) are named by the change itself, whatever ran.
- Key-miss events (m) are refused: misses happen on reads, which never pass through the log.
- Stream commands name their events in their handlers (`Db.notify`): a stream's change does
  not tell XGROUP CREATECONSUMER from an XREADGROUP that created its consumer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from raftcache.node.keyspace.blocking import UNPOP
from raftcache.node.keyspace.db import DATABASES, Db, key_db
from raftcache.node.keyspace.lists import parse_lmpop
from raftcache.node.keyspace.reply import OK, CommandError, ReplyT
from raftcache.node.keyspace.table import Spec, command
from raftcache.node.keyspace.zsets import parse_zmpop

if TYPE_CHECKING:
    from raftcache.node.state_machine import Published, StateMachine

SET_FLAGS = "raftcache.notify-keyspace-events"
"""The internal command CONFIG SET notify-keyspace-events proposes (argv[1]: the flags)."""

ALL = "g$lshzxetd"
"""The classes `A` stands for (Redis's NOTIFY_ALL: not new-key and key-miss events)."""
CLASSES = ALL + "n"


class BadFlags(ValueError):
    """Flags CONFIG SET refuses; the message is the reason Redis (or raftcache) gives."""


def normalize(text: str) -> str:
    """The classes and channel kinds `text` turns on, as the replicated setting: each letter
    once, in the order of "g$lshzxetdnKE" (`A` spelled out). Redis's errors for bad letters."""
    if any(c not in "Ag$lshzxeKEtmdn" for c in text):
        raise BadFlags("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")
    if "m" in text:
        raise BadFlags(
            "key-miss events (m) are not published by raftcache: a miss happens on a read, "
            "which no node replicates; leave out m"
        )
    chosen = set(text) | set(ALL) if "A" in text else set(text)
    return "".join(c for c in CLASSES + "KE" if c in chosen)


def display(flags: str) -> str:
    """CONFIG GET's form of the setting (Redis's keyspaceEventsFlagsToString: `A` for all of
    g$lshzxetd, and then n is not shown although it stays on)."""
    out = "A" if set(ALL) <= set(flags) else "".join(c for c in CLASSES if c in flags)
    return out + "".join(c for c in "KE" if c in flags)


# -- what each command's changes are called ----------------------------------------------

# (class, event) pairs for one changed key: rule(argv, key, kind) where kind is "set" (the
# key was written) or "delete" (the command removed it).
Rule = Callable[[list[bytes], bytes, str], list[tuple[str, str]]]


def _simple(cls: str, event: str) -> Rule:
    """The command's event; when it emptied (deleted) the key, that event and then `del`."""
    on_set = [(cls, event)]
    on_delete = [(cls, event), ("g", "del")]
    return lambda argv, key, kind: on_set if kind == "set" else on_delete


def _store(cls: str, event: str) -> Rule:
    """A STORE command: its event on the destination, `del` if the result was empty."""
    on_set = [(cls, event)]
    on_delete = [("g", "del")]
    return lambda argv, key, kind: on_set if kind == "set" else on_delete


def _has(options: list[bytes], *words: bytes) -> bool:
    return any(a.lower() in words for a in options)


def _set_rule(argv: list[bytes], key: bytes, kind: str) -> list[tuple[str, str]]:
    if kind != "set":
        return [("g", "del")]
    name = argv[0].lower()
    if name in (b"setex", b"psetex") or (
        name == b"set" and _has(argv[3:], b"ex", b"px", b"exat", b"pxat")
    ):
        return [("$", "set"), ("g", "expire")]
    return [("$", "set")]


def _expire_rule(argv: list[bytes], key: bytes, kind: str) -> list[tuple[str, str]]:
    return [("g", "expire")] if kind == "set" else [("g", "del")]


def _getex_rule(argv: list[bytes], key: bytes, kind: str) -> list[tuple[str, str]]:
    if kind != "set":
        return [("g", "del")]
    return [("g", "persist")] if _has(argv[2:], b"persist") else [("g", "expire")]


def _two_keys(source: Rule, destination: Rule, push_first: bool = False) -> Rule:
    """Commands that take from argv[1] and put into argv[2] (both, when they are one key)."""

    def rule(argv: list[bytes], key: bytes, kind: str) -> list[tuple[str, str]]:
        taken = source(argv, key, kind) if key == argv[1] else []
        put = destination(argv, key, kind) if key == argv[2] else []
        return put + taken if push_first else taken + put

    return rule


def _end(argv: list[bytes], index: int) -> str:
    return "l" if argv[index].lower() == b"left" else "r"


def _lmove(argv: list[bytes], key: bytes, kind: str) -> list[tuple[str, str]]:
    out = [("l", f"{_end(argv, 4)}push")] if key == argv[2] else []
    if key == argv[1]:
        out += _simple("l", f"{_end(argv, 3)}pop")(argv, key, kind)
    return out


def _lmpop(numkeys_at: int) -> Rule:
    """LMPOP (BLMPOP: numkeys after the timeout): the end named after the keys."""

    def rule(argv: list[bytes], key: bytes, kind: str) -> list[tuple[str, str]]:
        right = parse_lmpop(argv, numkeys_at)[1]
        return _simple("l", "rpop" if right else "lpop")(argv, key, kind)

    return rule


def _zmpop(numkeys_at: int) -> Rule:
    def rule(argv: list[bytes], key: bytes, kind: str) -> list[tuple[str, str]]:
        high = parse_zmpop(argv, numkeys_at)[1]
        return _simple("z", "zpopmax" if high else "zpopmin")(argv, key, kind)

    return rule


_ZADD_OPTIONS = (b"nx", b"xx", b"gt", b"lt", b"ch", b"incr")


def _zadd(argv: list[bytes], key: bytes, kind: str) -> list[tuple[str, str]]:
    incr = False
    for arg in argv[2:]:  # the options come before the first score
        word = arg.lower()
        if word not in _ZADD_OPTIONS:
            break
        incr = incr or word == b"incr"
    return [("z", "zincr" if incr else "zadd")]


def _rename(argv: list[bytes], key: bytes, kind: str) -> list[tuple[str, str]]:
    if key == argv[1] and kind == "delete":
        return [("g", "rename_from")]
    return [("g", "rename_to")] if key == argv[2] else []


def _copy(argv: list[bytes], key: bytes, kind: str) -> list[tuple[str, str]]:
    return [("g", "copy_to")] if key == argv[2] and kind == "set" else []


def _sort(argv: list[bytes], key: bytes, kind: str) -> list[tuple[str, str]]:
    return [("l", "sortstore")] if kind == "set" else [("g", "del")]


def _nothing(argv: list[bytes], key: bytes, kind: str) -> list[tuple[str, str]]:
    return []


_BY_HANDLER = b"raftcache.named-by-handler"
"""publish()'s name for changes whose command names its own events (no rule: only new,
expired and evicted)."""


EVENTS: dict[bytes, Rule] = {
    # strings
    **{n: _set_rule for n in (b"set", b"setnx", b"setex", b"psetex", b"getset", b"mset")},
    b"msetnx": _set_rule,
    b"append": _simple("$", "append"),
    b"setrange": _simple("$", "setrange"),
    **{n: _simple("$", "incrby") for n in (b"incr", b"decr", b"incrby", b"decrby")},
    b"incrbyfloat": _simple("$", "incrbyfloat"),
    b"setbit": _simple("$", "setbit"),
    b"bitfield": _simple("$", "setbit"),
    b"bitop": _store("$", "set"),
    b"getdel": lambda argv, key, kind: [("g", "del")],
    b"getex": _getex_rule,
    # keys
    b"del": lambda argv, key, kind: [("g", "del")],
    b"unlink": lambda argv, key, kind: [("g", "del")],
    **{n: _expire_rule for n in (b"expire", b"pexpire", b"expireat", b"pexpireat")},
    b"persist": lambda argv, key, kind: [("g", "persist")],
    b"rename": _rename,
    b"renamenx": _rename,
    b"copy": _copy,
    b"move": lambda argv, key, kind: [("g", "move_from" if kind == "delete" else "move_to")],
    b"restore": lambda argv, key, kind: [("g", "restore" if kind == "set" else "del")],
    b"sort": _sort,
    b"flushdb": _nothing,  # Redis names no key when a database is emptied
    b"flushall": _nothing,
    # lists
    b"lpush": _simple("l", "lpush"),
    b"lpushx": _simple("l", "lpush"),
    b"rpush": _simple("l", "rpush"),
    b"rpushx": _simple("l", "rpush"),
    b"lpop": _simple("l", "lpop"),
    b"blpop": _simple("l", "lpop"),
    b"rpop": _simple("l", "rpop"),
    b"brpop": _simple("l", "rpop"),
    b"linsert": _simple("l", "linsert"),
    b"lset": _simple("l", "lset"),
    b"lrem": _simple("l", "lrem"),
    b"ltrim": _simple("l", "ltrim"),
    b"rpoplpush": _two_keys(_simple("l", "rpop"), _simple("l", "lpush"), push_first=True),
    b"brpoplpush": _two_keys(_simple("l", "rpop"), _simple("l", "lpush"), push_first=True),
    b"lmove": _lmove,
    b"blmove": _lmove,
    b"lmpop": _lmpop(1),
    b"blmpop": _lmpop(2),
    # hashes
    **{n: _simple("h", "hset") for n in (b"hset", b"hsetnx", b"hmset")},
    b"hincrby": _simple("h", "hincrby"),
    b"hincrbyfloat": _simple("h", "hincrbyfloat"),
    b"hdel": _simple("h", "hdel"),
    # sets
    b"sadd": _simple("s", "sadd"),
    b"srem": _simple("s", "srem"),
    b"spop": _simple("s", "spop"),
    b"smove": _two_keys(_simple("s", "srem"), _simple("s", "sadd")),
    b"sinterstore": _store("s", "sinterstore"),
    b"sunionstore": _store("s", "sunionstore"),
    b"sdiffstore": _store("s", "sdiffstore"),
    # sorted sets
    b"zadd": _zadd,
    b"zincrby": _simple("z", "zincr"),
    b"zrem": _simple("z", "zrem"),
    b"zremrangebyscore": _simple("z", "zremrangebyscore"),
    b"zremrangebyrank": _simple("z", "zremrangebyrank"),
    b"zremrangebylex": _simple("z", "zremrangebylex"),
    b"zpopmin": _simple("z", "zpopmin"),
    b"bzpopmin": _simple("z", "zpopmin"),
    b"zpopmax": _simple("z", "zpopmax"),
    b"bzpopmax": _simple("z", "zpopmax"),
    b"zmpop": _zmpop(1),
    b"bzmpop": _zmpop(2),
    b"zunionstore": _store("z", "zunionstore"),
    b"zinterstore": _store("z", "zinterstore"),
    b"zdiffstore": _store("z", "zdiffstore"),
    b"zrangestore": _store("z", "zrangestore"),
    # streams: named by their handlers (Db.notify), beyond `new`
    **{
        n: _nothing
        for n in (b"xadd", b"xtrim", b"xdel", b"xgroup", b"xsetid", b"xreadgroup", b"xclaim")
    },
    b"xautoclaim": _nothing,
    b"xack": _nothing,
    _BY_HANDLER: _nothing,
}


# Commands whose destination Redis deletes and adds again (dbDelete + dbAdd): `new` even when
# the key existed.
_REPLACING = frozenset((b"rename", b"renamenx", b"copy", b"restore", b"move"))

# RENAME and MOVE notify in dbAdd's order: an expiry met while looking the destination up,
# then the destination's `new`, then the command's own events.
_BEFORE_ADD = {"expired": 0, "evicted": 0, "new": 1}

# Internal commands that run the Redis command in argv[1:] (node/keyspace/blocking.py).
_WRAPPERS = (b"raftcache.woken", UNPOP)


# Commands whose keys Redis notifies in an order of its own (the key changes here come in the
# order the handler made them): argv -> the keys, first notified first.
_ORDER: dict[bytes, Callable[[list[bytes]], list[bytes]]] = {
    b"rename": lambda argv: [argv[1], argv[2]],
    b"renamenx": lambda argv: [argv[1], argv[2]],
    b"smove": lambda argv: [argv[1], argv[2]],
    **{
        n: lambda argv: [argv[2], argv[1]]  # the push, then the pop
        for n in (b"lmove", b"blmove", b"rpoplpush", b"brpoplpush")
    },
}


def _generic(argv: list[bytes], key: bytes, kind: str, string: bool) -> list[tuple[str, str]]:
    """A change no rule names (gRPC and memcached writes, internal commands)."""
    if kind == "delete":
        return [("g", "del")]
    return [("$", "set")] if string else []


# -- publishing ---------------------------------------------------------------------------


def named_by_handler(sm: StateMachine, db: int, key: bytes, event: bytes) -> None:
    """An event a handler names itself (Db.notify): after the `new`, `expired` and `evicted`
    of the changes so far, as Redis's dbAdd publishes `new` before the command's event."""
    publish(sm, _BY_HANDLER, [], 0)
    if db < DATABASES:
        sm._events.extend(notice(sm, db, key, event))
        sm._notified = len(sm._events)


def notice(sm: StateMachine, db: int, key: bytes, event: bytes) -> list[Published]:
    """The messages of one event on one key: keyspace first, then keyevent (as Redis)."""
    from raftcache.node.state_machine import Published

    out = []
    if sm.notify_keyspace:
        out.append(Published(b"__keyspace@%d__:%b" % (db, key), event))
    if sm.notify_keyevent:
        out.append(Published(b"__keyevent@%d__:%b" % (db, event), key))
    return out


def publish(sm: StateMachine, name: bytes | None, argv: list[bytes], start: int) -> None:
    """Publish the notifications of the changes recorded since event `start` (those not yet
    notified) as one command `name` (None: no Redis command) made them."""
    from raftcache.node.state_machine import Change

    events = sm._events
    begin = max(start, sm._notified)
    end = len(events)
    if begin >= end:
        return
    classes = sm.notify_classes
    if name in _WRAPPERS:  # a blocked call's attempt, or the push that undoes one
        name, argv = argv[1].lower(), argv[1:]
    rule = EVENTS.get(name) if name is not None else None
    replaces = name in _REPLACING
    named_keys: list[tuple[int, bytes, str, list[tuple[str, str]]]] = []
    for event in events[begin:end]:
        if type(event) is not Change:
            continue
        db, key = key_db(event.key)
        if db >= DATABASES:  # the nodes' own records (users, scripts, functions)
            continue
        kind = event.kind
        if kind == "expire":
            named = [("x", "expired")]
        elif kind == "evict":
            named = [("e", "evicted")]
        else:
            created = event.created or (replaces and kind == "set")
            named = [("n", "new")] if created else []
            if rule is not None:
                named += rule(argv, key, kind)
            elif kind in ("set", "delete"):
                named += _generic(argv, key, kind, event.type == "string")
        named_keys.append((db, key, kind, named))
    order = _ORDER.get(name) if name is not None else None
    if order is not None and len(named_keys) > 1:
        first = order(argv)
        named_keys.sort(key=lambda item: first.index(item[1]) if item[1] in first else 2)
    elif name == b"move":  # the same key in two databases: the source's first
        named_keys.sort(key=lambda item: item[2] != "delete")
    pairs = [(db, key, cls, what) for db, key, _, named in named_keys for cls, what in named]
    if name in (b"rename", b"renamenx", b"move"):  # Redis adds the destination first
        pairs.sort(key=lambda p: _BEFORE_ADD.get(p[3], 2))
    out: list[Published] = []
    for db, key, cls, what in pairs:
        if cls in classes:
            out += notice(sm, db, key, what.encode())
    events.extend(out)
    sm._notified = len(events)


def run_command(spec: Spec, db: Db, argv: list[bytes]) -> ReplyT:
    """A validated command's handler, then the notifications of what it changed (only while
    they are on; Lua's redis.call and EXEC's calls come through here one by one)."""
    sm = db.sm
    if not spec.write or not sm.notify_on:
        return spec.handler(db, argv)
    start = len(sm._events)
    reply = spec.handler(db, argv)
    publish(sm, spec.name.encode(), argv, start)
    return reply


@command(SET_FLAGS, 2, "write internal", keys=(0, 0, 0), group="server")
def set_flags(db: Db, argv: list[bytes]) -> ReplyT:
    """Replicated `notify-keyspace-events`: every node publishes from this entry on."""
    try:
        flags = normalize(argv[1].decode("latin-1"))
    except BadFlags as exc:
        raise CommandError(f"ERR {exc}") from None
    db.sm.set_notify_flags(flags)
    return OK
