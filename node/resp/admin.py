"""Server, introspection and topology commands of the Redis front-end: INFO, CONFIG, CLIENT,
COMMAND, CLUSTER, SENTINEL, TIME, WAIT and the stubs tools expect.

These answer from this node's view (they are not in the replicated command table). A
handler is `handler(conn, argv)` and returns its reply, or a coroutine whose result is the
reply, or REPLIED when it queued its reply itself. Container commands (CLIENT, CONFIG, ...)
check their subcommand's arity the way Redis 7.0 does, with Redis's texts. The topic
modules (info, settings, introspection, topology) register their commands here when
imported; this module imports them at its end, so `ADMIN` is complete once it is imported.

Node-local state that Redis keeps per server (CONFIG SET values, client flags, the peak
of accounted memory) lives in `NodeLocal`, one per node, in `NodeFacts.local`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from raftcache.node.keyspace.args import parse_int
from raftcache.node.keyspace.reply import (
    OK,
    SYNTAX,
    CommandError,
    Error,
    Map,
    ReplyT,
    SetReply,
    Status,
    wrong_arity,
)
from raftcache.node.resp import encoder
from raftcache.node.resp.redis_meta import META

if TYPE_CHECKING:
    from raftcache.node.config import NodeConfig
    from raftcache.node.resp.server import Connection
    from raftcache.node.servicers import NodeView

Handler = Callable[["Connection", list[bytes]], Any]
ADMIN: dict[bytes, Handler] = {}
"""Every front-end command of this module and the topic modules, by lower-case name."""


class _Replied:
    def __repr__(self) -> str:
        return "REPLIED"


REPLIED: Final = _Replied()
"""Returned by a handler that queued its reply itself (conn.reply or conn.run)."""

SUBCOMMANDS: dict[bytes, dict[bytes, tuple[int, Handler]]] = {}
"""Container command -> subcommand -> (arity, handler), for dispatch and COMMAND."""
ARITIES: dict[bytes, int] = {}
"""Top-level arity of every admin command (Redis's convention), for COMMAND."""


@dataclass
class ClientExtras:
    """Per-connection state only admin commands use (CLIENT NO-EVICT, NO-TOUCH)."""

    no_evict: bool = False
    no_touch: bool = False


@dataclass
class NodeLocal:
    """What Redis keeps per server and raftcache per node: never replicated."""

    started: float = field(default_factory=time.time)
    settings: dict[str, str] = field(default_factory=dict)  # CONFIG SET values, by name
    clients: dict[int, ClientExtras] = field(default_factory=dict)
    peak_memory: int = 0
    run_id: str = field(default_factory=lambda: os.urandom(20).hex())
    stats_reset: float = field(default_factory=time.time)

    def extras(self, conn: Connection) -> ClientExtras:
        """conn's extras, created on first use; entries of closed connections are dropped."""
        extras = self.clients.get(conn.id)
        if extras is None:
            live = conn.server.clients
            for gone in [cid for cid in self.clients if cid not in live]:
                del self.clients[gone]
            extras = self.clients[conn.id] = ClientExtras()
        return extras


@dataclass(frozen=True)
class NodeFacts:
    """What the admin commands read: this node's view, its config and its streams."""

    view: NodeView
    config: NodeConfig
    streams: Any
    local: NodeLocal = field(default_factory=NodeLocal)


# -- registration --------------------------------------------------------------------------


def _meta_arity(fullname: str, arity: int | None) -> int:
    if arity is not None:
        return arity
    return int(META[fullname]["arity"])


def admin(name: str, arity: int | None = None) -> Callable[[Handler], Handler]:
    """Register a top-level command; its arity is Redis 7.0's unless given."""

    def register(fn: Handler) -> Handler:
        n = _meta_arity(name, arity)
        ARITIES[name.encode()] = n

        def checked(conn: Connection, argv: list[bytes]) -> Any:
            if not arity_ok(argv, n):
                return _answer(conn, Error(wrong_arity(name)))
            return _answer(conn, _call(fn, conn, argv))

        ADMIN[name.encode()] = checked
        return fn

    return register


def subcommand(parent: str, name: str, arity: int | None = None) -> Callable[[Handler], Handler]:
    """Register `PARENT NAME`; the parent answers unknown subcommands and wrong arities."""

    def register(fn: Handler) -> Handler:
        fullname = f"{parent}|{name}"
        n = _meta_arity(fullname, arity)
        SUBCOMMANDS.setdefault(parent.encode(), {})[name.encode()] = (n, fn)
        return fn

    return register


def container(
    name: str, bare: Handler | None = None, arity: int | None = None
) -> Callable[[list[str]], None]:
    """Register container command `name`; HELP answers with the given lines. `bare` answers
    the command without a subcommand (COMMAND)."""

    def with_help(lines: list[str]) -> None:
        upper = name.upper()

        def help_(conn: Connection, argv: list[bytes]) -> ReplyT:
            return help_reply(upper, lines)

        subcommand(name, "help", 2)(help_)

        def dispatch(conn: Connection, argv: list[bytes]) -> Any:
            if len(argv) == 1 and bare is not None:
                return bare(conn, argv)
            subs = SUBCOMMANDS[name.encode()]
            sub = argv[1].lower()
            entry = subs.get(sub)
            if entry is None:
                shown = argv[1].decode("utf-8", "replace")[:128]
                return Error(f"ERR unknown subcommand '{shown}'. Try {upper} HELP.")
            n, fn = entry
            fullname = f"{name}|{sub.decode()}"
            if not arity_ok(argv, n):
                return Error(wrong_arity(fullname))
            conn.last_name = fullname.encode()
            return fn(conn, argv)

        admin(name, arity)(dispatch)

    return with_help


def arity_ok(argv: Sequence[bytes], arity: int) -> bool:
    return len(argv) == arity if arity > 0 else len(argv) >= -arity


def _call(fn: Handler, conn: Connection, argv: list[bytes]) -> Any:
    try:
        return fn(conn, argv)
    except CommandError as exc:
        return Error(exc.text)


def _answer(conn: Connection, result: Any) -> Any:
    """Queue a handler's reply; a coroutine goes back to the server, which awaits it."""
    if result is REPLIED or asyncio.iscoroutine(result):
        return None if result is REPLIED else result
    conn.reply(result)
    return None


# -- reply helpers -------------------------------------------------------------------------


def awaited_reply(change: Coroutine[Any, Any, ReplyT]) -> Coroutine[Any, Any, ReplyT]:
    """A replicated change run in the connection's order; domain errors become their reply."""

    async def run() -> ReplyT:
        from raftcache.node import errors
        from raftcache.node.resp.errors import error_reply

        try:
            return await change
        except errors.CacheError as exc:
            return error_reply(exc)
        except CommandError as exc:
            return Error(exc.text)

    return run()


def help_reply(command: str, lines: list[str]) -> ReplyT:
    """Redis's addReplyHelp: a header, the lines, then HELP."""
    header = f"{command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    return [Status(line) for line in [header, *lines, "HELP", "    Prints this help."]]


def verbatim(conn: Connection, text: str) -> ReplyT:
    """A verbatim "txt" string in RESP3, a bulk string in RESP2 (INFO, CLIENT LIST, ...)."""
    data = text.encode()
    if conn.proto == 3:
        return encoder.Raw(b"=%d\r\ntxt:%b\r\n" % (len(data) + 4, data))
    return data


def bulk_map(conn: Connection, pairs: Sequence[tuple[str, ReplyT]]) -> ReplyT:
    """A map of text keys (a flat array in RESP2)."""
    return Map([x for key, value in pairs for x in (key.encode(), value)])


def parse_timeout_ms(raw: bytes) -> int:
    """Redis's getTimeoutFromObjectOrReply in milliseconds: a non-negative integer."""
    value = parse_int(raw, "ERR timeout is not an integer or out of range")
    if value < 0:
        raise CommandError("ERR timeout is negative")
    return value


def facts(conn: Connection) -> NodeFacts:
    node = conn.server.info
    assert isinstance(node, NodeFacts)
    return node


def stable_id(*parts: str) -> str:
    """A 40-hex id that the same parts always give (cluster node ids, replication ids)."""
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()


# -- small server commands -----------------------------------------------------------------


@admin("time")
def _time(conn: Connection, argv: list[bytes]) -> ReplyT:
    now = time.time_ns() // 1000
    return [str(now // 1_000_000).encode(), str(now % 1_000_000).encode()]


@admin("lastsave")
def _lastsave(conn: Connection, argv: list[bytes]) -> ReplyT:
    # Every acknowledged write is in the Raft journal: the data set is always "saved".
    return int(time.time())


@admin("save")
def _save(conn: Connection, argv: list[bytes]) -> ReplyT:
    return OK


@admin("bgsave")
def _bgsave(conn: Connection, argv: list[bytes]) -> ReplyT:
    if len(argv) > 2 or (len(argv) == 2 and argv[1].upper() != b"SCHEDULE"):
        return Error(SYNTAX)
    return Status("Background saving started")


@admin("bgrewriteaof")
def _bgrewriteaof(conn: Connection, argv: list[bytes]) -> ReplyT:
    return Status("Background append only file rewriting started")


@admin("shutdown")
def _shutdown(conn: Connection, argv: list[bytes]) -> ReplyT:
    return Error(
        "ERR SHUTDOWN is refused: a raftcache node is stopped by its process manager "
        "(SIGTERM hands leadership over first), not by a client"
    )


@admin("monitor")
def _monitor(conn: Connection, argv: list[bytes]) -> ReplyT:
    return Error(
        "ERR MONITOR is not supported by raftcache: follow the node's logs (--log-level debug) "
        "or watch keys through the gRPC Watch API instead"
    )


@admin("swapdb")
def _swapdb(conn: Connection, argv: list[bytes]) -> ReplyT:
    for raw, what in ((argv[1], "first"), (argv[2], "second")):
        try:
            index = parse_int(raw)
        except CommandError:
            return Error(f"ERR invalid {what} DB index")
        if not 0 <= index < 16:
            return Error("ERR DB index is out of range")
    return Error(
        "ERR SWAPDB is not supported by raftcache: copy the keys you need (COPY key dst DB n) "
        "or point the client at the other database"
    )


@admin("asking")
def _asking(conn: Connection, argv: list[bytes]) -> ReplyT:
    return OK  # one shard: every slot is always here, nothing migrates


# -- DEBUG ---------------------------------------------------------------------------------

_DEBUG_HELP = [
    "DIGEST",
    "    Output a hex signature representing the current DB content.",
    "JMAP",
    "    Accepted; does nothing.",
    "LOG <message>",
    "    Accepted; does nothing.",
    "PROTOCOL <type>",
    "    Reply with a test value of the specified type. <type> can be: string,",
    "    integer, double, bignum, null, array, set, map, attrib, push, verbatim,",
    "    true, false.",
    "QUICKLIST-PACKED-THRESHOLD <size>",
    "    Accepted; raftcache has no quicklists.",
    "RELOAD [option ...]",
    "    Accepted; the data set lives in the Raft log and snapshots, there is nothing to reload.",
    "SET-ACTIVE-EXPIRE <0|1>",
    "    Accepted; expiry follows the replicated cluster clock and cannot be paused.",
    "SLEEP <seconds>",
    "    Answer after <seconds> (decimals allowed); other clients are not stopped.",
    "CHANGE-REPL-ID",
    "    Accepted; does nothing.",
]

_PROTOCOL_ERROR = (
    "ERR Wrong protocol type name. Please use one of the following: "
    "string|integer|double|bignum|null|array|set|map|attrib|push|verbatim|true|false"
)


def _debug_protocol(conn: Connection, name: bytes) -> ReplyT:
    resp3 = conn.proto == 3
    fixed: dict[bytes, ReplyT] = {
        b"string": b"Hello World",
        b"integer": 12345,
        b"double": 3.141,
        b"null": None,
        b"array": [0, 1, 2],
        b"set": SetReply([0, 1, 2]),
        b"verbatim": verbatim(conn, "This is a verbatim\nstring"),
    }
    if name in fixed:
        return fixed[name]
    bignum = b"1234567999999999999999999999999999999"
    if name == b"bignum":
        return encoder.Raw(b"(%b\r\n" % bignum) if resp3 else bignum
    if name == b"map":
        if resp3:
            return encoder.Raw(b"%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n")
        return Map([0, 0, 1, 1, 2, 0])
    if name in (b"true", b"false"):
        if resp3:
            return encoder.Raw(b"#t\r\n" if name == b"true" else b"#f\r\n")
        return int(name == b"true")
    follow = b"Some real reply following the attribute"
    if name == b"attrib":
        if not resp3:
            return follow
        attrib = b"|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n"
        return encoder.Raw(attrib + b"$%d\r\n%b\r\n" % (len(follow), follow))
    if name == b"push":
        if not resp3:
            return Error("ERR RESP2 is not supported by this command")
        text = b"Some real reply following the push reply"
        push = b">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n"
        return encoder.Raw(push + b"$%d\r\n%b\r\n" % (len(text), text))
    return Error(_PROTOCOL_ERROR)


async def _sleep(seconds: float) -> ReplyT:
    await asyncio.sleep(seconds)
    return OK


def _debug_sleep(conn: Connection, raw: bytes) -> Any:
    try:
        seconds = max(float(raw), 0.0)
    except ValueError:
        seconds = 0.0  # strtod: no number reads as 0
    if conn.multi is not None or seconds == 0:
        return OK
    return _sleep(min(seconds, 3600.0))


def _debug_digest(conn: Connection) -> ReplyT:
    digest = facts(conn).view.replica.digest()
    return Status(hashlib.sha1(digest.encode()).hexdigest())


_DEBUG_ACCEPTED = {
    b"jmap": 2,
    b"log": 3,
    b"quicklist-packed-threshold": 3,
    b"set-active-expire": 3,
    b"change-repl-id": 2,
    b"set-skip-checksum-validation": 3,
    b"aof-flush-sleep": 3,
    b"pause-cron": 3,
    b"replybuffer": 4,
    b"set-disable-deny-scripts": 3,
    b"stringmatch-len": -2,
}


@admin("debug")
def _debug(conn: Connection, argv: list[bytes]) -> Any:
    sub = argv[1].lower()
    n = len(argv)
    if sub == b"help" and n == 2:
        return help_reply("DEBUG", _DEBUG_HELP)
    if sub == b"sleep" and n == 3:
        return _debug_sleep(conn, argv[2])
    if sub == b"protocol" and n == 3:
        return _debug_protocol(conn, argv[2].lower())
    if sub == b"digest" and n == 2:
        return _debug_digest(conn)
    if sub == b"reload":
        return OK  # the data set is the Raft log: a reload changes nothing
    if sub in _DEBUG_ACCEPTED and arity_ok(argv, _DEBUG_ACCEPTED[sub]):
        return OK
    shown = argv[1].decode("utf-8", "replace")[:128]
    return Error(
        f"ERR unknown subcommand or wrong number of arguments for '{shown}'. Try DEBUG HELP."
    )


# -- SLOWLOG, LATENCY ------------------------------------------------------------------------


@subcommand("slowlog", "get")
def _slowlog_get(conn: Connection, argv: list[bytes]) -> ReplyT:
    if len(argv) == 3:
        count = parse_int(argv[2], "ERR count should be greater than or equal to -1")
        if count < -1:
            return Error("ERR count should be greater than or equal to -1")
    return []  # commands are not timed per call (raftcache's latency is the Raft commit)


@subcommand("slowlog", "len")
def _slowlog_len(conn: Connection, argv: list[bytes]) -> ReplyT:
    return 0


@subcommand("slowlog", "reset")
def _slowlog_reset(conn: Connection, argv: list[bytes]) -> ReplyT:
    return OK


container("slowlog")(
    [
        "GET [<count>]",
        "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
        "    Entries are made of:",
        "    id, timestamp, time in microseconds, arguments array, client IP and port,",
        "    client name",
        "LEN",
        "    Return the length of the slowlog.",
        "RESET",
        "    Reset the slowlog.",
    ]
)


@subcommand("latency", "doctor")
def _latency_doctor(conn: Connection, argv: list[bytes]) -> ReplyT:
    return verbatim(
        conn,
        "Dave, no latency spike was observed during the lifetime of this Redis instance, "
        "not in the slightest bit. I honestly think you ought to sleep tonight.\n",
    )


@subcommand("latency", "latest")
def _latency_latest(conn: Connection, argv: list[bytes]) -> ReplyT:
    return []


@subcommand("latency", "history")
def _latency_history(conn: Connection, argv: list[bytes]) -> ReplyT:
    return []


@subcommand("latency", "reset")
def _latency_reset(conn: Connection, argv: list[bytes]) -> ReplyT:
    return 0


@subcommand("latency", "graph")
def _latency_graph(conn: Connection, argv: list[bytes]) -> ReplyT:
    event = argv[2].decode("utf-8", "replace")
    return Error(f"ERR No samples available for event '{event}'")


@subcommand("latency", "histogram")
def _latency_histogram(conn: Connection, argv: list[bytes]) -> ReplyT:
    return Map([])


container("latency")(
    [
        "DOCTOR",
        "    Return a human readable latency analysis report.",
        "GRAPH <event>",
        "    Return an ASCII latency graph for the <event> class.",
        "HISTORY <event>",
        "    Return time-latency samples for the <event> class.",
        "LATEST",
        "    Return the latest latency samples for all events.",
        "RESET [<event> ...]",
        "    Reset latency data of one or more <event> classes.",
        "    (default: reset all data for all event classes)",
        "HISTOGRAM [COMMAND ...]",
        "    Return a cumulative distribution of latencies in the format of a histogram for the "
        "specified command names.",
        "    If no commands are specified then all histograms are replied.",
    ]
)

# The topic modules register their commands through the decorators above.
from raftcache.node.resp import (  # noqa: E402, F401
    acl_commands,
    clients,
    info,
    introspection,
    settings,
    topology,
)
