"""CLIENT: this node's Redis connections (names, CLIENT LIST lines, KILL) in Redis's format.

Connections are per node: CLIENT LIST on a node lists the clients connected to that node.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from raftcache.node.keyspace.args import parse_int
from raftcache.node.keyspace.reply import OK, SYNTAX, CommandError, Error, ReplyT
from raftcache.node.resp.admin import (
    REPLIED,
    bulk_map,
    container,
    facts,
    parse_timeout_ms,
    subcommand,
    verbatim,
)

if TYPE_CHECKING:
    from raftcache.node.resp.server import Connection

_BAD_NAME = "ERR Client names cannot contain spaces, newlines or special characters."
_TYPES = {
    b"normal": "normal",
    b"slave": "slave",
    b"replica": "slave",
    b"pubsub": "pubsub",
    b"master": "master",
}


@dataclass(frozen=True)
class ClientInfo:
    """One CLIENT LIST line's facts."""

    id: int
    addr: str
    laddr: str
    fd: int
    name: str
    age: int
    idle: int
    flags: str
    db: int
    sub: int
    psub: int
    multi: int
    omem: int
    events: str
    cmd: str
    resp: int
    lib_name: str = ""
    lib_ver: str = ""
    user: str = "default"

    @property
    def kind(self) -> str:
        """Redis's client type for TYPE filters: pubsub or normal (no replica connections)."""
        return "pubsub" if "P" in self.flags else "normal"


def client_line(c: ClientInfo) -> str:
    """Redis 7.2's CLIENT LIST line (7.0's fields plus lib-name and lib-ver)."""
    return (
        f"id={c.id} addr={c.addr} laddr={c.laddr} fd={c.fd} name={c.name} age={c.age} "
        f"idle={c.idle} flags={c.flags} db={c.db} sub={c.sub} psub={c.psub} ssub=0 "
        f"multi={c.multi} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=1024 rbp=0 obl=0 "
        f"oll=0 omem={c.omem} tot-mem={c.omem + 1024} events={c.events} cmd={c.cmd} "
        f"user={c.user} redir=-1 resp={c.resp} lib-name={c.lib_name} lib-ver={c.lib_ver}"
    )


def client_flags(
    pubsub: bool, multi: bool, closing: bool, readonly: bool, no_evict: bool, no_touch: bool
) -> str:
    """Redis's flag letters, in its order; N when none applies."""
    letters = [
        ("P", pubsub),
        ("x", multi),
        ("c", closing),
        ("r", readonly),
        ("e", no_evict),
        ("T", no_touch),
    ]
    return "".join(letter for letter, on in letters if on) or "N"


def info_of(conn: Connection, now: float) -> ClientInfo:
    extras = facts(conn).local.extras(conn)
    transport = conn.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    omem = transport.get_write_buffer_size() if transport is not None else 0
    sub = conn.sub
    flags = client_flags(
        pubsub=sub is not None,
        multi=conn.multi is not None,
        closing=conn._close_when_flushed,
        readonly=conn.readonly,
        no_evict=extras.no_evict,
        no_touch=extras.no_touch,
    )
    return ClientInfo(
        id=conn.id,
        addr=conn.addr,
        laddr=conn.laddr,
        fd=sock.fileno() if sock is not None else -1,
        name=_text(conn.name),
        age=int(now - conn.created),
        idle=int(now - conn.last_command),
        flags=flags,
        db=conn.db,
        sub=0 if sub is None else len(sub.channels),
        psub=0 if sub is None else len(sub.patterns),
        multi=-1 if conn.multi is None else len(conn.multi),
        omem=omem,
        events="rw" if omem else "r",
        cmd=_text(conn.last_name) or "NULL",
        resp=conn.proto,
        lib_name=_text(conn.lib_name),
        lib_ver=_text(conn.lib_ver),
        user=conn.user_name,
    )


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _lines(infos: Iterable[ClientInfo]) -> str:
    return "".join(client_line(c) + "\n" for c in infos)


def valid_attr(value: bytes) -> bool:
    """Redis's validateClientAttr: printable ASCII without spaces."""
    return all(33 <= b <= 126 for b in value)


# -- subcommands ---------------------------------------------------------------------------


@subcommand("client", "id")
def _id(conn: Connection, argv: list[bytes]) -> ReplyT:
    return conn.id


@subcommand("client", "info")
def _info(conn: Connection, argv: list[bytes]) -> ReplyT:
    return verbatim(conn, _lines([info_of(conn, time.time())]))


def _client_type(raw: bytes) -> str:
    kind = _TYPES.get(raw.lower())
    if kind is None:
        raise CommandError(f"ERR Unknown client type '{_text(raw)}'")
    return kind


@subcommand("client", "list")
def _list(conn: Connection, argv: list[bytes]) -> ReplyT:
    now = time.time()
    clients = conn.server.clients
    if len(argv) == 4 and argv[2].lower() == b"type":
        kind = _client_type(argv[3])
        infos = [info_of(c, now) for c in list(clients.values())]
        return verbatim(conn, _lines(c for c in infos if c.kind == kind))
    if len(argv) > 3 and argv[2].lower() == b"id":
        ids = [parse_int(raw, "ERR Invalid client ID") for raw in argv[3:]]
        chosen = [clients[i] for i in ids if i in clients]
        return verbatim(conn, _lines(info_of(c, now) for c in chosen))
    if len(argv) != 2:
        return Error(SYNTAX)
    return verbatim(conn, _lines(info_of(c, now) for c in list(clients.values())))


@subcommand("client", "setname")
def _setname(conn: Connection, argv: list[bytes]) -> ReplyT:
    if not valid_attr(argv[2]):
        return Error(_BAD_NAME)
    conn.name = argv[2]
    return OK


@subcommand("client", "getname")
def _getname(conn: Connection, argv: list[bytes]) -> ReplyT:
    return conn.name or None


@subcommand("client", "setinfo", 4)
def _setinfo(conn: Connection, argv: list[bytes]) -> ReplyT:
    attr, value = argv[2].lower(), argv[3]
    if attr not in (b"lib-name", b"lib-ver"):
        return Error(f"ERR Unrecognized option '{_text(argv[2])}'")
    if not valid_attr(value):
        return Error(f"ERR {_text(argv[2])} cannot contain spaces, newlines or special characters.")
    if attr == b"lib-name":
        conn.lib_name = value
    else:
        conn.lib_ver = value
    return OK


def _on_off(raw: bytes) -> bool:
    word = raw.lower()
    if word not in (b"on", b"off"):
        raise CommandError(SYNTAX)
    return word == b"on"


@subcommand("client", "no-evict")
def _no_evict(conn: Connection, argv: list[bytes]) -> ReplyT:
    facts(conn).local.extras(conn).no_evict = _on_off(argv[2])
    return OK


@subcommand("client", "no-touch", 3)
def _no_touch(conn: Connection, argv: list[bytes]) -> ReplyT:
    # Reads never touch keys for eviction through this front-end's stale path anyway; the
    # flag is remembered for CLIENT LIST.
    facts(conn).local.extras(conn).no_touch = _on_off(argv[2])
    return OK


@subcommand("client", "reply")
def _reply(conn: Connection, argv: list[bytes]) -> ReplyT:
    """ON answers OK; OFF silences every later reply, SKIP the next command's, and neither
    answers itself. Pub/sub pushes (subscribe confirmations, messages) still go out, as in
    Redis 7."""
    mode = argv[2].lower()
    if conn.multi is not None:  # queued commands run at once here: it would silence QUEUED
        return Error("ERR CLIENT REPLY inside MULTI is not supported: send it before MULTI")
    if mode == b"on":
        conn.reply_mode, conn.silent = 0, False
        return OK
    if mode == b"off":
        conn.reply_mode, conn.silent = 1, True
        return OK
    if mode == b"skip":
        if conn.reply_mode != 1:  # ignored while OFF, as in Redis
            conn.reply_mode = 2
        conn.silent = True
        return OK
    return Error(SYNTAX)


@subcommand("client", "pause")
def _pause(conn: Connection, argv: list[bytes]) -> ReplyT:
    if len(argv) == 4 and argv[3].lower() not in (b"write", b"all"):
        return Error("ERR CLIENT PAUSE mode must be WRITE or ALL")
    parse_timeout_ms(argv[2])
    # Nothing is paused: clients of the other nodes could not be paused anyway, and a
    # failover needs no pause in raftcache (Raft hands leadership over by itself).
    return OK


@subcommand("client", "unpause")
def _unpause(conn: Connection, argv: list[bytes]) -> ReplyT:
    return OK


@subcommand("client", "unblock")
def _unblock(conn: Connection, argv: list[bytes]) -> ReplyT:
    if len(argv) == 4 and argv[3].lower() not in (b"timeout", b"error"):
        return Error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
    target = conn.server.clients.get(parse_int(argv[2]))
    if target is None or target.blocked is None:
        return 0
    error = len(argv) == 4 and argv[3].lower() == b"error"
    target.unblock(Error("UNBLOCKED client unblocked via CLIENT UNBLOCK") if error else None)
    return 1


_NO_TRACKING = (
    "ERR CLIENT TRACKING is not supported by raftcache: there is no server-assisted "
    "client-side caching; keep client-side caches short-lived or use the gRPC Watch API"
)


@subcommand("client", "tracking")
def _tracking(conn: Connection, argv: list[bytes]) -> ReplyT:
    if argv[2].lower() == b"off":
        return OK
    return Error(_NO_TRACKING)


@subcommand("client", "caching")
def _caching(conn: Connection, argv: list[bytes]) -> ReplyT:
    return Error(
        "ERR CLIENT CACHING can be called only when the client is in tracking mode with "
        "OPTIN or OPTOUT mode enabled"
    )


@subcommand("client", "getredir")
def _getredir(conn: Connection, argv: list[bytes]) -> ReplyT:
    return -1


@subcommand("client", "trackinginfo")
def _trackinginfo(conn: Connection, argv: list[bytes]) -> ReplyT:
    return bulk_map(conn, [("flags", [b"off"]), ("redirect", -1), ("prefixes", [])])


# -- KILL ------------------------------------------------------------------------------------


@dataclass
class KillFilter:
    """CLIENT KILL's filters; None matches every client."""

    addr: str | None = None
    laddr: str | None = None
    kind: str | None = None
    client_id: int | None = None
    user: str | None = None
    skipme: bool = True

    def matches(self, info: ClientInfo, me: int) -> bool:
        return (
            (self.addr is None or info.addr == self.addr)
            and (self.laddr is None or info.laddr == self.laddr)
            and (self.kind is None or info.kind == self.kind)
            and (self.client_id is None or info.id == self.client_id)
            and (self.user is None or info.user == self.user)
            and not (self.skipme and info.id == me)
        )


def parse_kill(argv: list[bytes]) -> KillFilter:
    """The filter of `CLIENT KILL addr` or `CLIENT KILL <option> <value> ...`."""
    if len(argv) == 3:
        return KillFilter(addr=_text(argv[2]), skipme=False)
    if len(argv) < 4:
        raise CommandError(SYNTAX)
    out = KillFilter()
    options = argv[2:]
    if len(options) % 2:
        raise CommandError(SYNTAX)
    for option, value in zip(options[::2], options[1::2], strict=True):
        word = option.lower()
        if word == b"id":
            out.client_id = parse_int(value, "ERR client-id should be greater than 0")
            if out.client_id < 1:
                raise CommandError("ERR client-id should be greater than 0")
        elif word == b"type":
            out.kind = _client_type(value)
        elif word == b"addr":
            out.addr = _text(value)
        elif word == b"laddr":
            out.laddr = _text(value)
        elif word == b"user":
            out.user = _text(value)
        elif word == b"skipme" and value.lower() in (b"yes", b"no"):
            out.skipme = value.lower() == b"yes"
        else:
            raise CommandError(SYNTAX)
    return out


@subcommand("client", "kill")
def _kill(conn: Connection, argv: list[bytes]) -> object:
    wanted = parse_kill(argv)
    if wanted.user is not None and wanted.user not in conn.server.auth.acl().users:
        return Error(f"ERR No such user '{wanted.user}'")
    now = time.time()
    killed = 0
    close_me = False
    for other in list(conn.server.clients.values()):
        if not wanted.matches(info_of(other, now), conn.id):
            continue
        killed += 1
        if other is conn:
            close_me = True
        else:
            other.close()
    if len(argv) == 3:
        conn.reply(OK if killed else Error("ERR No such client"))
    else:
        conn.reply(killed)
    if close_me:  # closed once its reply is written, as Redis's CLIENT_CLOSE_AFTER_REPLY
        conn._closing = True
        conn._close_when_flushed = True
    return REPLIED


container("client")(
    [
        "CACHING (YES|NO)",
        "    Not supported by raftcache (no client-side caching).",
        "GETREDIR",
        "    Return the client ID we are redirecting to when tracking is enabled.",
        "GETNAME",
        "    Return the name of the current connection.",
        "ID",
        "    Return the ID of the current connection.",
        "INFO",
        "    Return information about the current client connection.",
        "KILL <ip:port>",
        "    Kill connection made from <ip:port>.",
        "KILL <option> <value> [<option> <value> [...]]",
        "    Kill connections. Options are:",
        "    * ADDR (<ip:port>|<unixsocket>:0)",
        "      Kill connections made from the specified address",
        "    * LADDR (<ip:port>|<unixsocket>:0)",
        "      Kill connections made to specified local address",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
        "      Kill connections by type.",
        "    * USER <username>",
        "      Kill connections authenticated by <username>.",
        "    * SKIPME (YES|NO)",
        "      Skip killing current connection (default: yes).",
        "LIST [options ...]",
        "    Return information about client connections. Options:",
        "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
        "      Return clients of specified type.",
        "UNPAUSE",
        "    Stop the current client pause, resuming traffic.",
        "PAUSE <timeout> [WRITE|ALL]",
        "    Accepted; raftcache does not pause clients.",
        "REPLY (ON|OFF|SKIP)",
        "    Control the replies sent to the current connection (only ON is supported).",
        "SETNAME <name>",
        "    Assign the name <name> to the current connection.",
        "SETINFO <option> <value>",
        "    Set client meta attr. Options are:",
        "    * LIB-NAME: the client lib name.",
        "    * LIB-VER: the client lib version.",
        "UNBLOCK <clientid> [TIMEOUT|ERROR]",
        "    Unblock the specified blocked client.",
        "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
        "         [OPTIN] [OPTOUT] [NOLOOP]",
        "    Not supported by raftcache (no client-side caching); OFF is accepted.",
        "TRACKINGINFO",
        "    Report tracking status for the current connection.",
        "NO-EVICT (ON|OFF)",
        "    Protect current client connection from eviction.",
        "NO-TOUCH (ON|OFF)",
        "    Will not touch LRU/LFU stats when this mode is on.",
    ]
)
