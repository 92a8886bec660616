"""Redis string commands (see table.py for the handler contract)."""

from __future__ import annotations

from typing import NamedTuple

from raftcache.node.keyspace.args import parse_int, syntax
from raftcache.node.keyspace.db import Db
from raftcache.node.keyspace.reply import EXPIRE_INVALID, OK, CommandError, ReplyT
from raftcache.node.keyspace.table import command

KEY_OVERHEAD = 352  # state_machine.KEY_OVERHEAD (imported there from nowhere else)


class SetArgs(NamedTuple):
    condition: bytes  # b"", b"NX" or b"XX"
    get: bool
    unit: bytes  # b"", b"EX", b"PX", b"EXAT", b"PXAT", b"KEEPTTL"
    amount: int


def parse_set(argv: list[bytes]) -> SetArgs:
    condition, get, unit, amount = b"", False, b"", 0
    i = 3
    while i < len(argv):
        word = argv[i].upper()
        if word in (b"NX", b"XX") and not condition:
            condition = word
        elif word == b"GET" and not get:
            get = True
        elif word == b"KEEPTTL" and not unit:
            unit = word
        elif word in (b"EX", b"PX", b"EXAT", b"PXAT") and not unit and i + 1 < len(argv):
            unit = word
            i += 1
            amount = parse_int(argv[i])
            if amount <= 0 or amount > (2**63 - 1) // 1000:
                raise CommandError(EXPIRE_INVALID.format("set"))
        else:
            raise syntax()
        i += 1
    return SetArgs(condition, get, unit, amount)


def deadline_of(db: Db, unit: bytes, amount: int, keep: int) -> int:
    """The absolute deadline (cluster ms) for a SET-like expiry option; 0 = none."""
    if unit == b"EX":
        return db.now + amount * 1000
    if unit == b"PX":
        return db.now + amount
    if unit == b"EXAT":
        return amount * 1000
    if unit == b"PXAT":
        return amount
    if unit == b"KEEPTTL":
        return keep
    return 0


def _check_set(argv: list[bytes]) -> None:
    parse_set(argv)


@command("set", -3, "write denyoom", group="string", check=_check_set)
def set_(db: Db, argv: list[bytes]) -> ReplyT:
    args = parse_set(argv)
    key, value = argv[1], argv[2]
    entry = db.entry(key)
    old = None
    if args.get:
        old = db.string(key)  # WRONGTYPE before anything changes
    if (args.condition == b"NX" and entry is not None) or (
        args.condition == b"XX" and entry is None
    ):
        return old if args.get else None
    db.reserve(len(key) + len(value) + KEY_OVERHEAD)
    deadline = deadline_of(db, args.unit, args.amount, 0 if entry is None else entry[2])
    if deadline and deadline <= db.now:
        db.delete(key)  # an absolute time in the past: Redis deletes (and replies OK)
    else:
        db.set(key, value, deadline)
    return old if args.get else OK


@command("get", 2, "readonly fast", group="string")
def get(db: Db, argv: list[bytes]) -> ReplyT:
    return db.string(argv[1])
