"""The one command table: name -> arity, flags, key positions, handler.

Handlers are plain functions `handler(db, argv) -> reply` grouped by value type
(strings.py, keys.py, hashes.py, lists.py, sets.py, zsets.py). A handler checks its
arguments and the key's type before it changes anything and raises `CommandError` for
bad input, so a failed command changes nothing. `check(argv)`, where given, validates the
syntax of a write before it is proposed (bad input then never enters the log); arity is
checked by `lookup` for every command.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from raftcache.node.keyspace.db import DB_PREFIX, RESERVED_KEY
from raftcache.node.keyspace.reply import CommandError, ReplyT, unknown_command, wrong_arity

if TYPE_CHECKING:
    from raftcache.node.keyspace.db import Db

Handler = Callable[["Db", list[bytes]], ReplyT]
Checker = Callable[[list[bytes]], None]


@dataclass(frozen=True)
class Spec:
    name: str  # lower case
    arity: int  # Redis's convention: n = exactly n words (name included), -n = at least n
    flags: frozenset[str]  # "write", "readonly", "fast", "denyoom", "random", ...
    first_key: int
    last_key: int
    step: int
    group: str  # string, generic, hash, list, set, sorted-set, ...
    handler: Handler
    check: Checker | None = None
    write: bool = field(init=False)  # "write" in flags (every dispatch reads it: a field)

    def __post_init__(self) -> None:
        object.__setattr__(self, "write", "write" in self.flags)

    def keys(self, argv: list[bytes]) -> list[bytes]:
        """The key arguments of a call (for WATCH-like bookkeeping and COMMAND GETKEYS)."""
        first = self.first_key
        if first <= 0:
            return []
        if self.last_key == first:  # one key (GET, SET, INCR...): the commonest shape
            return argv[first : first + 1]
        last = self.last_key if self.last_key >= 0 else len(argv) + self.last_key
        return argv[self.first_key : last + 1 : self.step]


COMMANDS: Final[dict[bytes, Spec]] = {}


def command(
    name: str,
    arity: int,
    flags: str = "",
    keys: tuple[int, int, int] = (1, 1, 1),
    group: str = "generic",
    check: Checker | None = None,
) -> Callable[[Handler], Handler]:
    """Register a handler under `name` (see Spec for the fields)."""

    def register(handler: Handler) -> Handler:
        spec = Spec(name, arity, frozenset(flags.split()), *keys, group, handler, check)
        COMMANDS[name.encode()] = spec
        return handler

    return register


def lookup(argv: list[bytes]) -> Spec:
    """The spec of a call; raises CommandError for an unknown command or a wrong arity."""
    spec = COMMANDS.get(argv[0].lower()) if argv else None
    if spec is None:
        raise CommandError(unknown_command(argv))
    n = len(argv)
    if (spec.arity > 0 and n != spec.arity) or (spec.arity < 0 and n < -spec.arity):
        raise CommandError(wrong_arity(spec.name))
    return spec


def validate(argv: list[bytes]) -> Spec:
    """Everything that can be checked without the state: name, arity, syntax."""
    spec = lookup(argv)
    if spec.first_key > 0:
        for key in spec.keys(argv):
            if key.startswith(DB_PREFIX):
                raise CommandError(RESERVED_KEY)
    if spec.check is not None:
        spec.check(argv)
    return spec
