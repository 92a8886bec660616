"""Redis's RDB serialization, the parts DUMP/RESTORE and FUNCTION DUMP/RESTORE share: lengths,
strings (raw, integer-encoded, LZF-compressed), LZF itself, and the CRC64 of the footer."""

from __future__ import annotations

import struct
from typing import Final

RDB_VERSION: Final = 10
"""Redis 7.0's RDB version: a payload of a newer one is refused."""


class BadPayload(Exception):
    """The bytes are not the RDB object they should be (callers answer with Redis's text)."""


def _crc64_table() -> list[int]:
    poly, table = 0x95AC9329AC4BC9B5, []  # Redis's crc64 (Jones), reflected
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE: Final = _crc64_table()


def crc64(data: bytes) -> int:
    crc, table = 0, _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def rdb_length(n: int) -> bytes:
    """RDB's length encoding (rdbSaveLen)."""
    if n < 1 << 6:
        return bytes((n,))
    if n < 1 << 14:
        return bytes((0x40 | n >> 8, n & 0xFF))
    if n < 1 << 32:
        return b"\x80" + struct.pack(">I", n)
    return b"\x81" + struct.pack(">Q", n)


def rdb_string(data: bytes) -> bytes:
    """An RDB string, stored raw (Redis reads raw, integer-encoded and LZF strings alike)."""
    return rdb_length(len(data)) + data


class Reader:
    """Reads RDB objects' parts in order; BadPayload when the bytes run out or do not parse."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise BadPayload()
        out, self.pos = self.data[self.pos : end], end
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def length(self) -> tuple[int, bool]:
        """(length, encoded): rdbLoadLenByRef."""
        first = self.byte()
        kind = first >> 6
        if kind == 0:
            return first & 0x3F, False
        if kind == 1:
            return (first & 0x3F) << 8 | self.byte(), False
        if kind == 3:
            return first & 0x3F, True
        if first == 0x80:
            return struct.unpack(">I", self.take(4))[0], False
        if first == 0x81:
            return struct.unpack(">Q", self.take(8))[0], False
        raise BadPayload()

    def count(self) -> int:
        n, encoded = self.length()
        if encoded:
            raise BadPayload()
        return n

    def string(self) -> bytes:
        n, encoded = self.length()
        if not encoded:
            return self.take(n)
        if n == 0:
            return str(struct.unpack("<b", self.take(1))[0]).encode()
        if n == 1:
            return str(struct.unpack("<h", self.take(2))[0]).encode()
        if n == 2:
            return str(struct.unpack("<i", self.take(4))[0]).encode()
        if n == 3:
            compressed, size = self.count(), self.count()
            return lzf(self.take(compressed), size)
        raise BadPayload()

    def ascii_double(self) -> float:
        n = self.byte()
        if n == 253:
            return float("nan")
        if n == 254:
            return float("inf")
        if n == 255:
            return float("-inf")
        try:
            return float(self.take(n))
        except ValueError:
            raise BadPayload() from None


MAX_STRING = 512 << 20
"""The longest string a payload may declare (Redis's proto-max-bulk-len default): LZF expands
up to 132 times, so a small payload must not make every replica allocate without bound."""


def lzf(data: bytes, size: int) -> bytes:
    """LZF decompression (liblzf's lzf_d.c), as Redis compresses long strings; never past the
    declared size."""
    if size > MAX_STRING:
        raise BadPayload()
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        ctrl = data[i]
        i += 1
        if ctrl < 32:  # a literal run of ctrl + 1 bytes
            end = i + ctrl + 1
            if end > n or len(out) + ctrl + 1 > size:
                raise BadPayload()
            out += data[i:end]
            i = end
            continue
        length = ctrl >> 5
        if length == 7:
            if i >= n:
                raise BadPayload()
            length += data[i]
            i += 1
        if i >= n:
            raise BadPayload()
        ref = len(out) - ((ctrl & 0x1F) << 8) - data[i] - 1
        i += 1
        if ref < 0:
            raise BadPayload()
        length += 2
        if len(out) + length > size:
            raise BadPayload()
        distance = len(out) - ref
        if distance >= length:
            out += out[ref : ref + length]
        else:  # the copy overlaps what it writes: the last `distance` bytes, repeated
            pattern = bytes(out[ref:])
            out += (pattern * (length // distance + 1))[:length]
    if len(out) != size:
        raise BadPayload()
    return bytes(out)
