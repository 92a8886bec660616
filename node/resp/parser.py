"""RESP request parsing with hard limits (multibulk arrays and inline commands).

hiredis alone does not fit a server: it rejects inline commands, accepts nested
arrays, waits forever on a huge length header and is unusable after a protocol
error (../shared/ENGINES.md). This parser refuses what Redis refuses, with Redis's
texts, and never buffers more than one command's declared size.

The common case goes through hiredis all the same (`Parser.parse`): a read that holds
only whole commands, every one an array of bulk strings in Redis's canonical form and
within the limits. hiredis parses it in C; the result is kept only if re-encoding it
gives back exactly the bytes read (hiredis also accepts RESP3 and simple-string
elements, which Redis refuses in a request). Anything else (a partial command, inline
commands, a protocol error, a limit) is parsed by this module from the start of the
read, so errors and limits are exactly this parser's. In process, per command: 0.7-1.7
against 3.2-3.4 us (a pipelined SET, a lone GET). The check that the read was canonical
then cost more than hiredis: on 2026-12-07's slow host a read of 16 SETs of 100 bytes
took 2.4-2.9 us per SET, 0.46 of it in hiredis; with the headers taken from tables and
the huge-aggregate scan done by `bytes.translate` instead of a regex, 1.3-1.5 us (a lone
SET 3.4 -> 2.6, a lone GET 2.6 -> 2.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import hiredis

_AGGREGATE_CLASSES = bytes(
    ord("A") if c in b"*~%>|" else ord("D") if c in b"0123456789" else ord(".") for c in range(256)
)
_BIG_AGGREGATE = b"ADDDDD"
"""An aggregate header of 10,000 elements or more anywhere in a read (or bytes that look
like one inside a value), found as `_BIG_AGGREGATE in data.translate(_AGGREGATE_CLASSES)`:
such a read is not given to hiredis, which allocates an aggregate's list when it reads the
header. `*3000000000` made it allocate 3e9 slots and freeing them stalled the loop for
6.5 s; a command that large cannot be whole in one read anyway. (The regex
`[*~%>|][0-9]{5}` found the same a third as fast: 18 against 6 us for a read of 16 SETs of
100 bytes, on a slow host.)"""

_HEADERS = 1024
_ARRAY_HEADERS = tuple(b"*%d\r\n" % n for n in range(_HEADERS))
_BULK_HEADERS = tuple(b"$%d\r\n" % n for n in range(_HEADERS))
"""The canonical headers of arrays and bulk strings shorter than _HEADERS (`_fast`)."""


class ProtocolError(Exception):
    """The byte stream is not RESP: answer `-ERR Protocol error: ...` and close."""


@dataclass(frozen=True)
class ParserLimits:
    max_bulk_bytes: int = 512 << 20  # one argument (the node's value limit)
    max_multibulk: int = 1024 * 1024  # arguments per command
    max_inline_bytes: int = 64 * 1024  # an inline command, and a header line
    max_command_bytes: int = 1 << 30  # all arguments of one command (Redis's query buffer)


class Parser:
    """Feed bytes in; take complete commands (lists of arguments) out, in order."""

    __slots__ = ("_argv", "_buf", "_bytes", "_limits", "_pending", "_pos", "_reader", "error")

    def __init__(self, limits: ParserLimits) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._limits = limits
        self._argv: list[bytes] | None = None  # a multibulk command being read
        self._pending = 0  # its arguments still to read
        self._bytes = 0  # its argument bytes so far
        self._reader: hiredis.Reader | None = None  # the fast path's; None after a miss
        self.error: str | None = None

    def parse(self, data: bytes) -> list[list[bytes]]:
        """feed(data), then commands(): through hiredis when `data` is whole canonical
        commands and nothing is buffered, else through this module."""
        if (
            self._argv is None
            and self._pos >= len(self._buf)
            and data[:1] == b"*"
            and _BIG_AGGREGATE not in data.translate(_AGGREGATE_CLASSES)
        ):
            fast = self._fast(data)
            if fast is not None:
                return fast
        self.feed(data)
        return self.commands()

    def _fast(self, data: bytes) -> list[list[bytes]] | None:
        """The commands of `data` parsed by hiredis, or None where this module must parse it."""
        reader = self._reader
        if reader is None:
            reader = self._reader = hiredis.Reader()
        out: list[list[bytes]] = []
        try:
            reader.feed(data)
            while (argv := reader.gets()) is not False:
                out.append(argv)
        except hiredis.ProtocolError:
            self._reader = None  # unusable after an error
            return None
        if reader.has_data():
            self._reader = None  # a partial command: this module keeps it
            return None
        # The canonical bytes of what hiredis read, compared with what came: headers of the
        # common sizes from tables (formatting one costs more than the rest of a SET's check).
        limits = self._limits
        max_bulk, max_count = limits.max_bulk_bytes, limits.max_multibulk
        wire: list[bytes] = []
        add = wire.append
        commands: list[list[bytes]] = []
        for argv in out:
            if type(argv) is not list:
                return None
            count = len(argv)
            if count > max_count:
                return None
            add(_ARRAY_HEADERS[count] if count < _HEADERS else b"*%d\r\n" % count)
            size = 0
            for arg in argv:
                if type(arg) is not bytes:
                    return None
                length = len(arg)
                if length > max_bulk:
                    return None
                size += length
                add(_BULK_HEADERS[length] if length < _HEADERS else b"$%d\r\n" % length)
                add(arg)
                add(b"\r\n")
            if size > limits.max_command_bytes:
                return None
            if count:  # an empty array: Redis ignores it
                commands.append(argv)
        if b"".join(wire) != data:
            return None
        return commands

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def commands(self) -> list[list[bytes]]:
        """Every complete command buffered. After bad input, the commands before it are
        returned and `error` says what was wrong (the connection must then be closed)."""
        out: list[list[bytes]] = []
        try:
            self._parse(out)
        except ProtocolError as exc:
            self.error = str(exc)
        return out

    def _parse(self, out: list[list[bytes]]) -> None:
        buf = self._buf
        while True:
            if self._argv is None:
                if self._pos >= len(buf):
                    break
                if buf[self._pos] == 0x2A:  # '*'
                    if not self._start_multibulk(out):
                        break
                    continue
                argv = self._inline()
                if argv is None:
                    break
                if argv:
                    out.append(argv)
                continue
            if not self._bulks():
                break
            out.append(self._argv)
            self._argv = None

    def _line(self) -> int:
        """Index of the CR of the next CRLF after pos, or -1 (too long raises)."""
        end = self._buf.find(b"\r\n", self._pos)
        if end < 0 and len(self._buf) - self._pos > self._limits.max_inline_bytes:
            raise ProtocolError("too big mbulk count string")
        return end

    def _start_multibulk(self, out: list[list[bytes]]) -> bool:
        end = self._line()
        if end < 0:
            return False
        count = _length(self._buf[self._pos + 1 : end])
        if count is None or count > self._limits.max_multibulk:
            raise ProtocolError("invalid multibulk length")
        self._pos = end + 2
        if count <= 0:
            return True  # an empty or null array: Redis ignores it
        self._argv = []
        self._pending = count
        self._bytes = 0
        return True

    def _bulks(self) -> bool:
        buf = self._buf
        argv = self._argv
        assert argv is not None
        while self._pending:
            pos = self._pos
            if pos >= len(buf):
                return False
            if buf[pos] != 0x24:  # '$'
                got = chr(buf[pos])
                raise ProtocolError(f"expected '$', got '{got}'")
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if len(buf) - pos > self._limits.max_inline_bytes:
                    raise ProtocolError("too big bulk count string")
                return False
            size = _length(buf[pos + 1 : end])
            if size is None or size < 0 or size > self._limits.max_bulk_bytes:
                raise ProtocolError("invalid bulk length")
            if self._bytes + size > self._limits.max_command_bytes:
                raise ProtocolError(
                    f"a command of over {self._limits.max_command_bytes} bytes is more than "
                    "this node accepts at once"
                )
            start = end + 2
            if len(buf) < start + size + 2:
                return False
            argv.append(bytes(buf[start : start + size]))
            self._bytes += size  # counted once the whole bulk is here (a header is re-read)
            self._pos = start + size + 2
            self._pending -= 1
        return True

    def _inline(self) -> list[bytes] | None:
        end = self._buf.find(b"\n", self._pos)
        if end < 0:
            if len(self._buf) - self._pos > self._limits.max_inline_bytes:
                raise ProtocolError("too big inline request")
            return None
        line = bytes(self._buf[self._pos : end]).rstrip(b"\r")
        self._pos = end + 1
        return split_inline(line)


def _length(raw: bytearray) -> int | None:
    """A RESP length as Redis's string2ll reads it: digits with an optional minus sign
    (no spaces, no plus sign, no underscores, no leading zero: `03` and `-0` are not
    numbers to Redis)."""
    digits = raw[1:] if raw[:1] == b"-" else raw
    if not digits or not digits.isdigit() or len(raw) > 20:
        return None
    if digits[0] == 0x30 and (len(digits) > 1 or len(raw) > 1):  # '0'
        return None
    return int(raw)


def split_inline(line: bytes) -> list[bytes]:
    """An inline command's arguments, with redis-cli's quoting ("..." with escapes, '...')."""
    if b'"' not in line and b"'" not in line:
        return line.split()
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i : i + 1].isspace():
            i += 1
        if i >= n:
            return args
        current = bytearray()
        quote = line[i : i + 1] if line[i : i + 1] in (b'"', b"'") else b""
        if quote:
            i += 1
        while True:
            if i >= n:
                if quote:
                    raise ProtocolError("unbalanced quotes in request")
                break
            c = line[i : i + 1]
            if quote == b'"' and c == b"\\" and i + 1 < n:
                nxt = line[i + 1 : i + 2]
                hexpart = line[i + 2 : i + 4]
                if (
                    nxt == b"x"
                    and len(hexpart) == 2
                    and all(h in b"0123456789abcdefABCDEF" for h in hexpart)
                ):
                    current.append(int(hexpart, 16))
                    i += 4
                    continue
                current += {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"a": b"\a"}.get(
                    nxt, nxt
                )
                i += 2
                continue
            if quote == b"'" and c == b"\\" and line[i + 1 : i + 2] == b"'":
                current += b"'"
                i += 2
                continue
            if quote and c == quote:
                i += 1
                if i < n and not line[i : i + 1].isspace():
                    raise ProtocolError("unbalanced quotes in request")
                break
            if not quote and c.isspace():
                break
            current += c
            i += 1
        args.append(bytes(current))
