"""ACL on the Redis port: SETUSER, DELUSER, GETUSER, LIST, USERS, WHOAMI, CAT, GENPASS,
DRYRUN, LOG, LOAD and SAVE, with Redis 7.0's replies and texts.

SETUSER and DELUSER change the replicated users (node/users.py); the reads answer from
this node's applied users. ACL LOG is this node's own record of refused commands and
failed authentications, as Redis keeps one per server.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from raftcache.node import acl, users
from raftcache.node.keyspace.args import parse_int
from raftcache.node.keyspace.reply import OK, Error, Map, ReplyT
from raftcache.node.resp.admin import awaited_reply, container, subcommand

if TYPE_CHECKING:
    from raftcache.node.resp.server import Connection

_NO_FILE = (
    "ERR This Redis instance is not configured to use an ACL file. You may want to specify "
    "users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a "
    "Redis configuration file set) in order to store users in the Redis configuration."
)


def _text(b: bytes) -> str:
    return b.decode("latin-1")


@subcommand("acl", "setuser")
def _setuser(conn: Connection, argv: list[bytes]) -> Any:
    name = _text(argv[2])
    try:
        acl.check_name(name)
    except acl.AclError as exc:
        return Error(exc.text)
    return awaited_reply(users.set_user(conn.engine, conn.server.auth, name, argv[3:]))


@subcommand("acl", "deluser")
def _deluser(conn: Connection, argv: list[bytes]) -> Any:
    names = [_text(a) for a in argv[2:]]
    return awaited_reply(users.delete_users(conn.engine, conn.server.auth, names))


@subcommand("acl", "getuser")
def _getuser(conn: Connection, argv: list[bytes]) -> ReplyT:
    got = users.get_user(conn.server.auth, _text(argv[2]))
    if not got.found:
        return None
    return Map(
        [
            b"flags",
            [f.encode() for f in got.flags],
            b"passwords",
            [p.encode() for p in got.passwords],
            b"commands",
            got.commands.encode(),
            b"keys",
            got.keys.encode("latin-1"),
            b"channels",
            got.channels.encode("latin-1"),
            b"selectors",
            [],
        ]
    )


@subcommand("acl", "list")
def _list(conn: Connection, argv: list[bytes]) -> ReplyT:
    return [line.encode("latin-1") for line in conn.server.auth.acl().text().splitlines()]


@subcommand("acl", "users")
def _users(conn: Connection, argv: list[bytes]) -> ReplyT:
    return [name.encode("latin-1") for name in sorted(conn.server.auth.acl().users)]


@subcommand("acl", "whoami")
def _whoami(conn: Connection, argv: list[bytes]) -> ReplyT:
    return conn.user_name.encode("latin-1")


@subcommand("acl", "cat")
def _cat(conn: Connection, argv: list[bytes]) -> ReplyT:
    if len(argv) == 2:
        return [c.encode() for c in acl.CATEGORY_ORDER]
    if len(argv) > 3:
        return Error("ERR wrong number of arguments for 'acl|cat' command")
    category = _text(argv[2]).lower()
    names = acl.universe().by_category.get(category)
    if names is None:
        return Error(f"ERR Unknown category '{_text(argv[2])}'")
    return [n.encode() for n in sorted(names)]


@subcommand("acl", "genpass")
def _genpass(conn: Connection, argv: list[bytes]) -> ReplyT:
    bits = 256
    if len(argv) > 2:
        bad = (
            "ERR ACL GENPASS argument must be the number of bits for the output password, "
            "a positive number up to 4096"
        )
        bits = parse_int(argv[2], bad)
        if not 0 < bits <= 4096:
            return Error(bad)
    return acl.genpass(bits).encode()


@subcommand("acl", "dryrun")
def _dryrun(conn: Connection, argv: list[bytes]) -> ReplyT:
    name = _text(argv[2])
    user = conn.server.auth.acl().users.get(name)
    if user is None:
        return Error(f"ERR User '{name}' not found")
    call = argv[3:]
    info = acl.universe().commands.get(acl.full_name(call))
    if info is None:
        return Error(f"ERR Command '{_text(call[0])}' not found")
    from raftcache.node.resp.introspection import all_commands, find

    doc = find(all_commands(), info.name)
    if doc is not None:
        n = len(call) - (1 if "|" in info.name else 0)
        if (doc.arity > 0 and n != doc.arity) or n < -doc.arity:
            return Error(f"ERR wrong number of arguments for '{info.name}' command")
    from raftcache.node.auth import channels_of

    denied = user.denial(call, channels_of(call))
    if denied is None:
        return OK
    return acl.dryrun_text(denied).encode("latin-1")


@subcommand("acl", "load")
def _load(conn: Connection, argv: list[bytes]) -> ReplyT:
    return Error(_NO_FILE)


@subcommand("acl", "save")
def _save(conn: Connection, argv: list[bytes]) -> ReplyT:
    return Error(_NO_FILE)


# -- ACL LOG ----------------------------------------------------------------------------------


@subcommand("acl", "log")
def _log(conn: Connection, argv: list[bytes]) -> ReplyT:
    log = conn.server.acl_log
    count = len(log.entries)
    if len(argv) == 3:
        if argv[2].lower() == b"reset":
            log.entries.clear()
            return OK
        count = parse_int(argv[2])
        if count < 0:
            return Error("ERR value is out of range, must be positive")
    elif len(argv) > 3:
        return Error("ERR syntax error")
    now = time.time()
    out: list[ReplyT] = []
    for entry in list(log.entries.values())[:count]:
        out.append(
            Map(
                [
                    b"count",
                    entry.count,
                    b"reason",
                    entry.reason.encode(),
                    b"context",
                    entry.context.encode(),
                    b"object",
                    entry.object.encode("latin-1"),
                    b"username",
                    entry.username.encode("latin-1"),
                    b"age-seconds",
                    round(now - entry.created, 3),
                    b"client-info",
                    entry.client_info.encode("latin-1"),
                    b"entry-id",
                    entry.entry_id,
                    b"timestamp-created",
                    int(entry.created * 1000),
                    b"timestamp-last-updated",
                    int(entry.updated * 1000),
                ]
            )
        )
    return out


container("acl")(
    [
        "CAT [<category>]",
        "    List all commands that belong to <category>, or all command categories",
        "    when no category is specified.",
        "DELUSER <username> [<username> ...]",
        "    Delete a list of users.",
        "DRYRUN <username> <command> [<arg> ...]",
        "    Returns whether the user can execute the given command without executing the command.",
        "GETUSER <username>",
        "    Get the user's details.",
        "GENPASS [<bits>]",
        "    Generate a secure 256-bit user password. The optional `bits` argument can",
        "    be used to specify a different size.",
        "LIST",
        "    Show users details in config file format.",
        "LOAD",
        "    Reload users from the ACL file.",
        "LOG [<count> | RESET]",
        "    Show the ACL log entries.",
        "SAVE",
        "    Save the current config to the ACL file.",
        "SETUSER <username> <attribute> [<attribute> ...]",
        "    Create or modify a user with the specified attributes.",
        "USERS",
        "    List all the registered usernames.",
        "WHOAMI",
        "    Return the current connection username.",
    ]
)
