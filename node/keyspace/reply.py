"""Redis replies as plain Python values, and their protobuf form (raftcache.v1.Reply).

bytes = bulk string, int = integer, None = null bulk, list = array, float = double;
`Status`, `Error`, `Map`, `SetReply`, `Pairs`, `Bool` and `NULL_ARRAY` carry the other RESP
types. A float answers a double: RESP3 sends it as one, RESP2 as a bulk string in Redis
7.0's "%.17g" form (ZSCORE); commands that answer a formatted number in both protocols
(INCRBYFLOAT) return bytes instead.
"""

from __future__ import annotations

from typing import Any, Final, Union

from raftcache.v1 import cache_pb2


class Status(str):
    """A simple string reply (+OK)."""


class Error(str):
    """An error reply; the text starts with its code (ERR, WRONGTYPE, ...)."""


class Map(list):  # type: ignore[type-arg]
    """A map reply: [key, value, key, value, ...] (RESP2 sees the flat array)."""


class SetReply(list):  # type: ignore[type-arg]
    """A set reply (RESP2 sees an array)."""


class Pairs(list):  # type: ignore[type-arg]
    """Two-element arrays ([member, score], ...): nested in RESP3, flattened in RESP2, as
    Redis answers WITHSCORES. Each item is a list of two replies."""


class KeyedPairs(list):  # type: ignore[type-arg]
    """[[key, value], ...]: a map in RESP3, those two-element arrays in RESP2 (XREAD's
    reply). Each item is a list of two replies."""


class Bool(int):
    """A RESP3 boolean (RESP2 sees 1 or 0)."""


class _NullArray:
    def __repr__(self) -> str:
        return "NULL_ARRAY"


NULL_ARRAY: Final = _NullArray()
OK: Final = Status("OK")
QUEUED: Final = Status("QUEUED")

ReplyT = Union[bytes, int, float, None, list[Any], Status, Error, _NullArray]  # noqa: UP007
"""Any reply; lists hold replies."""


class CommandError(Exception):
    """Raised by a handler before it changes anything: the command answers this error."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


# Redis 7.0's exact texts, which clients and Redis's own test suite match on.
WRONGTYPE: Final = "WRONGTYPE Operation against a key holding the wrong kind of value"
SYNTAX: Final = "ERR syntax error"
NOT_INTEGER: Final = "ERR value is not an integer or out of range"
NOT_FLOAT: Final = "ERR value is not a valid float"
OVERFLOW: Final = "ERR increment or decrement would overflow"
NO_SUCH_KEY: Final = "ERR no such key"
INDEX_RANGE: Final = "ERR index out of range"
EXPIRE_INVALID: Final = "ERR invalid expire time in '{}' command"
OOM: Final = "OOM command not allowed when used memory > 'maxmemory'."


def wrong_arity(name: str) -> str:
    return f"ERR wrong number of arguments for '{name.lower()}' command"


def unknown_command(argv: list[bytes]) -> str:
    name = argv[0].decode("utf-8", "replace") if argv else ""
    args = " ".join(f"'{a.decode('utf-8', 'replace')[:128]}'" for a in argv[1:21])
    return f"ERR unknown command '{name[:128]}', with args beginning with: {args}" + (
        " " if args else ""
    )


def to_proto(reply: ReplyT, out: cache_pb2.Reply | None = None) -> cache_pb2.Reply:
    """The protobuf form of a reply (for gRPC's Exec and forwarding)."""
    out = cache_pb2.Reply() if out is None else out
    if reply is None:
        out.null = True
    elif reply is NULL_ARRAY:
        out.null_array = True
    elif isinstance(reply, bytes):
        out.bulk = reply
    elif isinstance(reply, Error):
        out.error = str(reply)
    elif isinstance(reply, Status):
        out.status = str(reply)
    elif isinstance(reply, Bool):
        out.boolean = bool(reply)
    elif isinstance(reply, int):
        out.int = reply
    elif isinstance(reply, float):
        out.double = reply
    elif isinstance(reply, list):
        field = _LIST_FIELDS.get(type(reply), "array")
        items = getattr(out, field)
        items.SetInParent()
        for item in reply:
            to_proto(item, items.items.add())
    else:
        raise TypeError(f"not a reply: {reply!r}")
    return out


_LIST_FIELDS: dict[type, str] = {
    Map: "map",
    SetReply: "set",
    Pairs: "pairs",
    KeyedPairs: "keyed",
}


def from_proto(msg: cache_pb2.Reply) -> ReplyT:
    """The Python form of a protobuf reply."""
    kind = msg.WhichOneof("kind")
    if kind == "bulk":
        return bytes(msg.bulk)
    if kind == "int":
        return int(msg.int)
    if kind == "status":
        return Status(msg.status)
    if kind == "error":
        return Error(msg.error)
    if kind == "null_array":
        return NULL_ARRAY
    if kind == "double":
        return float(msg.double)
    if kind == "boolean":
        return Bool(msg.boolean)
    if kind in _LIST_CLASSES:
        cls = _LIST_CLASSES[kind]
        return cls(from_proto(item) for item in getattr(msg, kind).items)
    return None


_LIST_CLASSES: dict[str, type[list[Any]]] = {
    "array": list,
    **{v: k for k, v in _LIST_FIELDS.items()},
}
