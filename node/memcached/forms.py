"""How memcached replies look: each command's reply form renders the table command's
reply (node/keyspace/memcached.py) as memcached text or meta protocol bytes.

A form is kept in the command's reply slot (node/pipeline.py) and rendered when the reply
arrives, on whichever node answered. Error replies of any origin become one memcached
line: `CLIENT_ERROR ...` and `SERVER_ERROR ...` pass through; anything else (no leader,
outcome unknown, over memory) is a `SERVER_ERROR` with the reason.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from raftcache.node.keyspace.reply import OK, Error, ReplyT, Status

if TYPE_CHECKING:
    from raftcache.node.memcached.server import McStats

END = b"END\r\n"


_ERROR_WORDS = {"CLUSTERDOWN": "unavailable: ", "TRYAGAIN": "busy: "}


def error_line(text: str) -> bytes:
    """One memcached error line for an error reply's text."""
    if text.startswith(("CLIENT_ERROR ", "SERVER_ERROR ")):
        line = text
    else:
        code, _, rest = text.partition(" ")
        if code == "OOM":
            line = "SERVER_ERROR out of memory storing object"
        else:
            # The words after the code say what happened; a stable first word says whether
            # a write may have been applied: "unavailable:"/"busy:" never, "outcome
            # unknown:" maybe (the UNKNOWN text starts so already).
            line = f"SERVER_ERROR {_ERROR_WORDS.get(code, '')}{rest or code}"
    return line.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace") + b"\r\n"


class Form:
    """A reply form; `noreply` suppresses every reply, errors included, as memcached does (a
    client that sent noreply reads nothing, so any line would put it out of step)."""

    __slots__ = ("noreply",)

    def __init__(self, noreply: bool = False) -> None:
        self.noreply = noreply

    def render(self, reply: ReplyT, stats: McStats) -> bytes:
        if self.noreply:
            return b""
        if isinstance(reply, Error):
            return error_line(str(reply))
        return self.body(reply, stats)

    def body(self, reply: ReplyT, stats: McStats) -> bytes:
        raise NotImplementedError


class StatusForm(Form):
    """The reply is a status word (DELETED, TOUCHED, OK...), or [status, cas] for stores."""

    __slots__ = ("counter",)

    def __init__(self, noreply: bool, counter: str = "") -> None:
        super().__init__(noreply)
        self.counter = counter  # e.g. "touch": counts touch_hits / touch_misses

    def render(self, reply: ReplyT, stats: McStats) -> bytes:
        word = reply[0] if isinstance(reply, list) else reply
        if self.counter and isinstance(word, Status):
            stats.count_hit(self.counter, word != "NOT_FOUND", word == "EXISTS")
        return super().render(reply, stats)

    def body(self, reply: ReplyT, stats: McStats) -> bytes:
        word = reply[0] if isinstance(reply, list) else reply
        return str(word).encode() + b"\r\n"


class StoredForm(StatusForm):
    """A text `set` that went as a plain SET (McConnection._text_set): the SET's OK is
    memcached's STORED; an error renders as any store's."""

    __slots__ = ()

    def body(self, reply: ReplyT, stats: McStats) -> bytes:
        return b"STORED\r\n" if reply == OK else super().body(reply, stats)


STORED_FORM = StoredForm(False)
"""The one StoredForm (it holds no state)."""


class ArithForm(Form):
    """incr/decr: the new value, or NOT_FOUND."""

    __slots__ = ("op",)

    def __init__(self, noreply: bool, op: str) -> None:
        super().__init__(noreply)
        self.op = op

    def render(self, reply: ReplyT, stats: McStats) -> bytes:
        if isinstance(reply, list):
            stats.count_hit(self.op, reply[0] != "NOT_FOUND")
        return super().render(reply, stats)

    def body(self, reply: ReplyT, stats: McStats) -> bytes:
        assert isinstance(reply, list)
        if reply[0] == "NOT_FOUND":
            return b"NOT_FOUND\r\n"
        value = reply[1]
        assert isinstance(value, bytes)
        return value + b"\r\n"


class GetForm(Form):
    """get/gets/gat/gats: a VALUE block per hit, then END."""

    __slots__ = ("cas", "keys", "touch")

    def __init__(self, keys: list[bytes], cas: bool, touch: bool) -> None:
        super().__init__(False)
        self.keys = keys
        self.cas = cas
        self.touch = touch

    def body(self, reply: ReplyT, stats: McStats) -> bytes:
        assert isinstance(reply, list)
        out: list[bytes] = []
        for key, item in zip(self.keys, reply, strict=True):
            if item is None:
                continue
            value, flags, cas = item[0], item[1], item[2]
            if self.cas:
                out.append(b"VALUE %b %d %d %d\r\n%b\r\n" % (key, flags, len(value), cas, value))
            else:
                out.append(b"VALUE %b %d %d\r\n%b\r\n" % (key, flags, len(value), value))
        op = "touch" if self.touch else "get"  # counted as count_hit counts, per key
        if out:
            stats.add(op + "_hits", len(out))
        if len(out) < len(self.keys):
            stats.add(op + "_misses", len(self.keys) - len(out))
        out.append(END)
        return b"".join(out)


class MetaForm(Form):
    """A meta command's reply: a two-letter code, then the flags asked for, in the order
    asked (k, O, c, f, s, t, b...), then the value for VA."""

    __slots__ = ("base64", "key", "kind", "opaque", "quiet", "returns", "value")

    def __init__(
        self,
        kind: str,
        key: bytes,
        returns: list[str],
        opaque: bytes | None,
        quiet: bool,
        value: bool,
        base64: bool,
    ) -> None:
        super().__init__(False)
        self.kind = kind  # "mg", "ms", "md", "ma"
        self.key = key
        self.returns = returns
        self.opaque = opaque
        self.quiet = quiet
        self.value = value
        self.base64 = base64

    def _flags(self, item: list[ReplyT] | None) -> bytes:
        parts: list[bytes] = []
        for flag in self.returns:
            if flag == "k":  # a base64 key comes back encoded, followed by the b flag
                key = base64.b64encode(self.key) + b" b" if self.base64 else self.key
                parts.append(b"k" + key)
            elif flag == "O":
                parts.append(b"O" + (self.opaque or b""))
            elif item is not None:
                if flag == "c":
                    parts.append(b"c%d" % item[2])  # type: ignore[str-format]
                elif flag == "f":
                    parts.append(b"f%d" % item[1])  # type: ignore[str-format]
                elif flag == "s":
                    parts.append(b"s%d" % len(item[0]))  # type: ignore[arg-type]
                elif flag == "t":
                    parts.append(b"t%d" % item[3])  # type: ignore[str-format]
        return b"".join(b" " + p for p in parts)

    def body(self, reply: ReplyT, stats: McStats) -> bytes:
        if self.kind == "mg":
            assert isinstance(reply, list)
            item = reply[0]
            stats.count_hit("get", item is not None)
            if item is None:
                return b"" if self.quiet else b"EN" + self._flags(None) + b"\r\n"
            assert isinstance(item, list)
            if self.value:
                data = item[0]
                assert isinstance(data, bytes)
                return b"VA %d%b\r\n%b\r\n" % (len(data), self._flags(item), data)
            return b"HD" + self._flags(item) + b"\r\n"
        if self.kind == "ma":
            assert isinstance(reply, list)
            stats.count_hit("incr", reply[0] != "NOT_FOUND")
            code = _META_CODES[str(reply[0])]
            if code != b"HD":
                return code + self._flags(None) + b"\r\n"
            if self.quiet:  # q hides ma's successes (HD and VA), as memcached 1.6.18
                return b""
            number = reply[1]
            assert isinstance(number, bytes)
            # t is not known after an arithmetic op without a read: report -1 like a new item
            counted: list[ReplyT] = [number, 0, reply[2], -1]
            if self.value:
                return b"VA %d%b\r\n%b\r\n" % (len(number), self._flags(counted), number)
            return b"HD" + self._flags(counted) + b"\r\n"
        # ms, md: a status (and for ms the new cas); q hides HD only
        word = reply[0] if isinstance(reply, list) else reply
        code = _META_CODES[str(word)]
        cas = reply[1] if isinstance(reply, list) else 0
        if self.quiet and code == b"HD":
            return b""
        return code + self._flags([b"", 0, cas, -1]) + b"\r\n"


_META_CODES = {
    "STORED": b"HD",
    "DELETED": b"HD",
    "TOUCHED": b"HD",
    "NOT_STORED": b"NS",
    "EXISTS": b"EX",
    "NOT_FOUND": b"NF",
}
