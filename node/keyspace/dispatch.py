"""Runs a Redis command through the command table (imports every command module)."""

from __future__ import annotations

from raftcache.node.keyspace import (  # noqa: F401  (each module registers its commands)
    acl,
    bitmaps,
    blocking,
    dump,
    functions,
    hashes,
    keys,
    lists,
    memcached,
    notify,
    pubsub,
    rejoin,
    scripting,
    sets,
    sort,
    streams,
    strings,
    zsets,
)
from raftcache.node.keyspace.db import Db
from raftcache.node.keyspace.notify import run_command
from raftcache.node.keyspace.reply import CommandError, Error, ReplyT
from raftcache.node.keyspace.table import COMMANDS, Spec, lookup, validate

__all__ = ["COMMANDS", "Spec", "execute", "is_write", "lookup", "run_command", "validate"]


def execute(db: Db, argv: list[bytes]) -> ReplyT:
    """The reply of one command; bad input and type errors are error replies, nothing changed."""
    try:
        spec = validate(argv)
        if spec.write and not db.write:
            return Error(f"ERR '{spec.name}' changes data: it cannot run as a read")
        return run_command(spec, db, argv)
    except CommandError as exc:
        return Error(exc.text)


def is_write(argv: list[bytes]) -> bool:
    """Whether a command is replicated (unknown commands count as writes: apply answers them)."""
    spec = COMMANDS.get(argv[0].lower()) if argv else None
    return spec is None or spec.write
