"""Replies to RESP2 or RESP3 bytes (see node/keyspace/reply.py for the reply model)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from raftcache.node.keyspace.reply import (
    NULL_ARRAY,
    OK,
    Bool,
    Error,
    KeyedPairs,
    Map,
    Pairs,
    ReplyT,
    SetReply,
    Status,
)


class Raw(bytes):
    """A reply already encoded (a front-end command's reply inside an EXEC array)."""


def format_double(value: float) -> bytes:
    """Redis 7.0's %.17g for doubles (inf and -inf as Redis spells them)."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    return b"%.17g" % value


def encode(reply: ReplyT, proto: int, out: bytearray) -> None:
    """Append one reply in RESP `proto` (2 or 3) to out."""
    _encode(reply, proto, out)


def _encode(reply: Any, proto: int, out: bytearray) -> None:
    # Dispatch on the exact type first (the common replies), then on subclasses.
    cls = type(reply)
    if cls is bytes:
        out += b"$%d\r\n%b\r\n" % (len(reply), reply)
    elif cls is int:
        out += b":%d\r\n" % reply
    elif reply is None:
        out += b"_\r\n" if proto == 3 else b"$-1\r\n"
    elif cls is Status:
        out += b"+%b\r\n" % str(reply).encode()
    elif cls is Error:
        out += b"-%b\r\n" % str(reply).replace("\r", " ").replace("\n", " ").encode()
    elif cls is list:
        out += b"*%d\r\n" % len(reply)
        for item in reply:
            _encode(item, proto, out)
    elif reply is NULL_ARRAY:
        out += b"_\r\n" if proto == 3 else b"*-1\r\n"
    elif cls is float:
        text = format_double(reply)
        if proto == 3:
            out += b",%b\r\n" % text
        else:
            out += b"$%d\r\n%b\r\n" % (len(text), text)
    elif cls is Map:
        pairs = len(reply) // 2
        out += b"%%%d\r\n" % pairs if proto == 3 else b"*%d\r\n" % (2 * pairs)
        for item in reply:
            _encode(item, proto, out)
    elif cls is SetReply:
        out += b"~%d\r\n" % len(reply) if proto == 3 else b"*%d\r\n" % len(reply)
        for item in reply:
            _encode(item, proto, out)
    elif cls is Pairs:
        if proto == 3:
            out += b"*%d\r\n" % len(reply)
            for item in reply:
                _encode(list(item), proto, out)
        else:
            out += b"*%d\r\n" % (2 * len(reply))
            for item in reply:
                for part in item:
                    _encode(part, proto, out)
    elif cls is KeyedPairs:
        out += b"%%%d\r\n" % len(reply) if proto == 3 else b"*%d\r\n" % len(reply)
        for item in reply:
            if proto == 2:
                out += b"*2\r\n"
            for part in item:
                _encode(part, proto, out)
    elif cls is Bool:
        if proto == 3:
            out += b"#t\r\n" if reply else b"#f\r\n"
        else:
            out += b":1\r\n" if reply else b":0\r\n"
    elif cls is Raw:
        out += reply
    elif isinstance(reply, list):
        _encode(list(reply), proto, out)
    elif isinstance(reply, bytes):
        _encode(bytes(reply), proto, out)
    elif isinstance(reply, int):
        out += b":%d\r\n" % reply
    else:
        raise TypeError(f"not a reply: {reply!r}")


def encoded(reply: ReplyT, proto: int) -> bytes:
    if type(reply) is bytes:  # a GET's, and OK: the commonest replies, without a bytearray
        return b"$%d\r\n%b\r\n" % (len(reply), reply)
    if reply is OK:
        return b"+OK\r\n"
    out = bytearray()
    encode(reply, proto, out)
    return bytes(out)


def push(kind: bytes, items: Sequence[bytes | int | None], proto: int) -> bytes:
    """A pub/sub message or (un)subscribe confirmation: a push frame in RESP3."""
    out = bytearray(b">%d\r\n" % (len(items) + 1) if proto == 3 else b"*%d\r\n" % (len(items) + 1))
    out += b"$%d\r\n%b\r\n" % (len(kind), kind)
    for item in items:
        if isinstance(item, int):
            out += b":%d\r\n" % item
        elif item is None:
            out += b"_\r\n" if proto == 3 else b"$-1\r\n"
        else:
            out += b"$%d\r\n%b\r\n" % (len(item), item)
    return bytes(out)
