"""The Lua libraries Redis embeds for scripts: cjson, cmsgpack and bit (LuaBitOp), in Python.

Each call returns (True, results...) or (False, message); the Lua wrappers in scripting's
boot chunk raise the message as a Lua error and charge the budget by the bytes handled. Every
function is a pure function of its arguments (tables are walked in `pairs` order, which is
the same on every replica for the same fresh state), so scripts stay deterministic. Settings
(cjson.encode_max_depth, ...) live in one `LuaLibs` per script run, as every run gets a fresh
Lua state.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import Any

from lupa import lua51

Result = tuple[Any, ...]
_MAX_NESTING = 16  # lua_cmsgpack's LUACMSGPACK_MAX_NESTING
ELEMENT_COST = 100
"""Lua instructions charged per value a library converts: about what converting one costs
here in Python time, so a script cannot stall its replica's Raft thread through cjson or
cmsgpack any longer than through Lua code."""


_MAX_ELEMENTS = 5_000_000 // ELEMENT_COST  # scripting.MAX_INSTRUCTIONS: one call stops there


class _OverBudget(Exception):
    """One library call converted more values than a whole script's budget allows."""


def _is_table(value: Any) -> bool:
    return bool(lua51.lua_type(value) == "table")


class LuaLibs:
    """The Python halves of cjson, cmsgpack and bit for one Lua state (`reset` before each
    script run: settings do not outlive a run)."""

    def __init__(self, table_from: Callable[..., Any]) -> None:
        self.table_from = table_from
        self.reset()

    def reset(self) -> None:
        self.encode_max_depth = 1000
        self.decode_max_depth = 1000
        self.invalid_numbers = False
        self.elements = 0  # values converted since the last call (charged to the budget)

    def functions(self) -> dict[bytes, Callable[..., Result]]:
        """name -> function returning (ok, instructions to charge, results... or message)."""
        return {
            name: self._costed(fn)
            for name, fn in (
                (b"json_encode", self.json_encode),
                (b"json_decode", self.json_decode),
                (b"json_setting", self.json_setting),
                (b"mp_pack", self.mp_pack),
                (b"mp_unpack", self.mp_unpack),
                (b"bit", self.bit),
            )
        }

    def tick(self) -> None:
        self.elements += 1
        if self.elements > _MAX_ELEMENTS:
            raise _OverBudget

    def _costed(self, fn: Callable[..., Result]) -> Callable[..., Result]:
        def call(*args: Any) -> Result:
            self.elements = 0
            try:
                ok, *rest = fn(*args)
            except _OverBudget:  # the charge below runs the script out of budget
                return (
                    False,
                    self.elements * ELEMENT_COST,
                    "script killed by the execution budget",
                )
            return (ok, self.elements * ELEMENT_COST, *rest)

        return call

    # -- cjson ------------------------------------------------------------------------------

    def json_setting(self, name: bytes, value: Any = None) -> Result:
        if name == b"encode_max_depth":
            if value is not None:
                self.encode_max_depth = int(value)
            return (True, self.encode_max_depth)
        if name == b"decode_max_depth":
            if value is not None:
                self.decode_max_depth = int(value)
            return (True, self.decode_max_depth)
        if name == b"encode_invalid_numbers":
            if value is not None:
                self.invalid_numbers = value is True or value in (b"on", b"allow")
            return (True, self.invalid_numbers)
        return (True, value)

    def json_encode(self, value: Any) -> Result:
        out: list[str] = []
        try:
            self._json(value, 0, out)
        except ValueError as exc:
            return (False, str(exc))
        return (True, "".join(out).encode("latin-1"))

    def _json(self, value: Any, depth: int, out: list[str]) -> None:
        self.tick()
        if value is None:
            out.append("null")
        elif value is True or value is False:
            out.append("true" if value else "false")
        elif isinstance(value, int | float):
            out.append(self._json_number(value))
        elif isinstance(value, bytes):
            out.append(_json_string(value))
        elif _is_table(value):
            depth += 1
            if depth > self.encode_max_depth:
                raise ValueError(f"Cannot serialise, excessive nesting ({depth})")
            self._json_table(value, depth, out)
        elif lua51.lua_type(value) == "userdata":  # cjson.null
            out.append("null")
        else:
            kind = lua51.lua_type(value) or type(value).__name__
            raise ValueError(f"Cannot serialise {kind}: type not supported")

    def _json_number(self, n: float) -> str:
        if isinstance(n, float) and (math.isnan(n) or math.isinf(n)):
            if not self.invalid_numbers:
                raise ValueError("Cannot serialise number: must not be NaN or Inf")
            return "nan" if math.isnan(n) else ("inf" if n > 0 else "-inf")
        return _g14(n)

    def _json_table(self, table: Any, depth: int, out: list[str]) -> None:
        items = list(table.items())
        size = _array_size(items)
        if size is not None and (size <= 10 or size <= 2 * len(items)):
            if not items:
                out.append("{}")
                return
            values = dict(items)
            out.append("[")
            for i in range(1, size + 1):
                if i > 1:
                    out.append(",")
                self._json(values.get(i), depth, out)
            out.append("]")
            return
        if size is not None:
            raise ValueError("Cannot serialise table: excessively sparse array")
        out.append("{")
        for i, (key, item) in enumerate(items):
            if i:
                out.append(",")
            if isinstance(key, bytes):
                out.append(_json_string(key))
            elif isinstance(key, int | float) and not isinstance(key, bool):
                out.append('"' + self._json_number(key) + '"')
            else:
                kind = "boolean" if isinstance(key, bool) else lua51.lua_type(key) or "value"
                raise ValueError(f"Cannot serialise {kind}: table key must be a number or string")
            out.append(":")
            self._json(item, depth, out)
        out.append("}")

    def json_decode(self, text: Any, null: Any) -> Result:
        if not isinstance(text, bytes):
            return (False, "bad argument #1 to 'decode' (string expected)")
        try:
            parsed = json.loads(
                text.decode("utf-8", "surrogateescape"), parse_constant=_json_constant
            )
        except (ValueError, RecursionError) as exc:
            return (False, f"Expected value but found invalid token: {exc}")
        try:
            return (True, self._to_lua(parsed, 0, null))
        except ValueError as exc:
            return (False, str(exc))

    def _to_lua(self, value: Any, depth: int, null: Any) -> Any:
        self.tick()
        if value is None:
            return null
        if isinstance(value, str):
            return _utf8(value)
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return float(value) if abs(value) >= 2**53 else value
        if isinstance(value, float):
            return value
        depth += 1
        if depth > self.decode_max_depth:
            raise ValueError(f"Found too many nested data structures ({depth})")
        if isinstance(value, list):
            return self.table_from([self._to_lua(v, depth, null) for v in value])
        return self.table_from({_utf8(k): self._to_lua(v, depth, null) for k, v in value.items()})

    # -- cmsgpack ---------------------------------------------------------------------------

    def mp_pack(self, *values: Any) -> Result:
        if not values:
            return (False, "MessagePack pack needs input.")
        out = bytearray()
        for value in values:
            _mp_encode(value, 0, out, self)
        return (True, bytes(out))

    def mp_unpack(self, data: Any, limit: Any = 0, offset: Any = 0, one: bool = False) -> Result:
        """unpack (limit 0: all values), unpack_one/unpack_limit (offset first)."""
        if not isinstance(data, bytes):
            return (False, "bad argument #1 to 'unpack' (string expected)")
        limit, offset = int(limit or 0), int(offset or 0)
        if offset < 0 or limit < 0:
            return (
                False,
                f"Invalid request to unpack with offset of {offset} and limit of {limit}.",
            )
        if offset > len(data):
            return (False, f"Start offset {offset} greater than input length {len(data)}.")
        decode_all = limit == 0 and not one
        wanted = len(data) if decode_all else limit
        pos = offset
        found: list[Any] = []
        try:
            while pos < len(data) and len(found) < wanted:
                value, pos = self._mp_decode(data, pos)
                found.append(value)
        except IndexError:
            return (False, "Missing bytes in input.")
        except ValueError:
            return (False, "Bad data format in input.")
        if decode_all:
            return (True, *found)
        return (True, -1 if pos >= len(data) else pos, *found)

    def _mp_decode(self, data: bytes, pos: int) -> tuple[Any, int]:
        self.tick()
        tag = data[pos]
        pos += 1
        if tag <= 0x7F:
            return tag, pos
        if tag >= 0xE0:
            return tag - 0x100, pos
        if 0xA0 <= tag <= 0xBF:
            return _take(data, pos, tag & 0x1F)
        if 0x90 <= tag <= 0x9F:
            return self._mp_array(data, pos, tag & 0x0F)
        if 0x80 <= tag <= 0x8F:
            return self._mp_map(data, pos, tag & 0x0F)
        simple = {0xC0: None, 0xC2: False, 0xC3: True}
        if tag in simple:
            return simple[tag], pos
        fixed = _MP_FIXED.get(tag)
        if fixed is not None:
            size = struct.calcsize(fixed)
            if pos + size > len(data):
                raise IndexError
            return struct.unpack_from(fixed, data, pos)[0], pos + size
        sized = _MP_SIZED.get(tag)
        if sized is None:
            raise ValueError(f"unknown type {tag:#x}")
        kind, fmt = sized
        width = struct.calcsize(fmt)
        if pos + width > len(data):
            raise IndexError
        (n,) = struct.unpack_from(fmt, data, pos)
        pos += width
        if kind == "str":
            return _take(data, pos, n)
        if kind == "array":
            return self._mp_array(data, pos, n)
        return self._mp_map(data, pos, n)

    def _mp_array(self, data: bytes, pos: int, n: int) -> tuple[Any, int]:
        items = []
        for _ in range(n):
            item, pos = self._mp_decode(data, pos)
            items.append(item)
        return self.table_from(items), pos

    def _mp_map(self, data: bytes, pos: int, n: int) -> tuple[Any, int]:
        pairs = {}
        for _ in range(n):
            key, pos = self._mp_decode(data, pos)
            value, pos = self._mp_decode(data, pos)
            if key is not None:
                pairs[key] = value
        return self.table_from(pairs), pos

    # -- bit (LuaBitOp) ---------------------------------------------------------------------

    def bit(self, name: bytes, *args: Any) -> Result:
        op = _BIT_OPS.get(name)
        if op is None:
            return (False, f"unknown bit operation {name!r}")
        for i, arg in enumerate(args, 1):
            if not isinstance(arg, int | float) or isinstance(arg, bool):
                got = "nil" if arg is None else lua51.lua_type(arg) or type(arg).__name__
                if isinstance(arg, bytes):
                    try:
                        float(arg)
                        continue
                    except ValueError:
                        got = "string"
                return (
                    False,
                    f"bad argument #{i} to '{name.decode()}' (number expected, got {got})",
                )
        try:
            return (True, op(*[_tobit(a) for a in args]))
        except TypeError:
            return (False, f"bad argument #1 to '{name.decode()}' (number expected, got no value)")


def _g14(n: float) -> str:
    """Lua's and cjson's %.14g."""
    if isinstance(n, int) and abs(n) < 10**14:
        return str(n)
    return f"{n:.14g}"


def _json_constant(name: str) -> float:
    raise ValueError(f"invalid number {name}")


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


_JSON_ESCAPES = {
    ord('"'): '\\"', ord("\\"): "\\\\", ord("/"): "\\/", 8: "\\b", 12: "\\f", 10: "\\n",
    13: "\\r", 9: "\\t",
}  # fmt: skip
for _c in range(32):
    _JSON_ESCAPES.setdefault(_c, f"\\u{_c:04x}")
_JSON_ESCAPES[127] = "\\u007f"


def _json_string(data: bytes) -> str:
    return '"' + data.decode("latin-1").translate(_JSON_ESCAPES) + '"'


def _array_size(items: list[tuple[Any, Any]]) -> int | None:
    """The largest key when every key is a positive integer, else None."""
    size = 0
    for key, _ in items:
        if not isinstance(key, int) or isinstance(key, bool) or key < 1:
            return None
        size = max(size, key)
    return size


# -- MessagePack encoding (lua_cmsgpack's choices of type) ---------------------------------------

_MP_FIXED = {
    0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
    0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q",
}  # fmt: skip
_MP_SIZED = {
    0xD9: ("str", ">B"), 0xDA: ("str", ">H"), 0xDB: ("str", ">I"),
    0xC4: ("str", ">B"), 0xC5: ("str", ">H"), 0xC6: ("str", ">I"),
    0xDC: ("array", ">H"), 0xDD: ("array", ">I"), 0xDE: ("map", ">H"), 0xDF: ("map", ">I"),
}  # fmt: skip


def _take(data: bytes, pos: int, n: int) -> tuple[bytes, int]:
    if pos + n > len(data):
        raise IndexError
    return data[pos : pos + n], pos + n


def _mp_encode(value: Any, level: int, out: bytearray, libs: LuaLibs) -> None:
    libs.tick()
    if value is True or value is False:
        out.append(0xC3 if value else 0xC2)
    elif isinstance(value, int) and -(2**63) <= value < 2**64:
        _mp_int(value, out)
    elif isinstance(value, int | float):
        _mp_double(float(value), out)
    elif isinstance(value, bytes):
        n = len(value)
        if n < 32:
            out.append(0xA0 | n)
        elif n <= 0xFF:
            out += b"\xd9" + struct.pack(">B", n)
        elif n <= 0xFFFF:
            out += b"\xda" + struct.pack(">H", n)
        else:
            out += b"\xdb" + struct.pack(">I", n)
        out += value
    elif _is_table(value) and level < _MAX_NESTING:
        _mp_table(value, level, out, libs)
    else:
        out.append(0xC0)


def _mp_int(n: int, out: bytearray) -> None:
    if n >= 0:
        for limit, tag, fmt in ((0xFF, 0xCC, ">B"), (0xFFFF, 0xCD, ">H"),
                                (0xFFFFFFFF, 0xCE, ">I")):  # fmt: skip
            if n <= 0x7F:
                out.append(n)
                return
            if n <= limit:
                out += bytes((tag,)) + struct.pack(fmt, n)
                return
        out += b"\xcf" + struct.pack(">Q", n)
        return
    if n >= -32:
        out.append(n & 0xFF)
    elif n >= -128:
        out += b"\xd0" + struct.pack(">b", n)
    elif n >= -32768:
        out += b"\xd1" + struct.pack(">h", n)
    elif n >= -(2**31):
        out += b"\xd2" + struct.pack(">i", n)
    else:
        out += b"\xd3" + struct.pack(">q", n)


def _mp_double(d: float, out: bytearray) -> None:
    try:
        single = struct.unpack(">f", struct.pack(">f", d))[0]
    except OverflowError:
        single = None
    if single == d:
        out += b"\xca" + struct.pack(">f", d)
    else:
        out += b"\xcb" + struct.pack(">d", d)


def _mp_table(table: Any, level: int, out: bytearray, libs: LuaLibs) -> None:
    items = list(table.items())
    size = _array_size(items)
    if size is not None and size == len(items):
        n = len(table)  # lua_objlen, as lua_cmsgpack encodes an array
        _mp_header(n, 0x90, 0xDC, 0xDD, out)
        values = dict(items)
        for i in range(1, n + 1):
            _mp_encode(values.get(i), level + 1, out, libs)
        return
    _mp_header(len(items), 0x80, 0xDE, 0xDF, out)
    for key, item in items:
        _mp_encode(key, level + 1, out, libs)
        _mp_encode(item, level + 1, out, libs)


def _mp_header(n: int, fix: int, tag16: int, tag32: int, out: bytearray) -> None:
    if n <= 15:
        out.append(fix | n)
    elif n <= 0xFFFF:
        out += bytes((tag16,)) + struct.pack(">H", n)
    else:
        out += bytes((tag32,)) + struct.pack(">I", n)


# -- LuaBitOp -------------------------------------------------------------------------------------


def _tobit(x: Any) -> int:
    """LuaBitOp's normalisation: round to nearest, wrap to a signed 32-bit integer."""
    value = float(x)
    if math.isnan(value) or math.isinf(value):
        return 0
    return _signed(round(value))


def _signed(n: int) -> int:
    n &= 0xFFFFFFFF
    return n - (1 << 32) if n & 0x80000000 else n


def _reduce(fn: Callable[[int, int], int]) -> Callable[..., int]:
    def op(first: int, *rest: int) -> int:
        out = first
        for n in rest:
            out = fn(out, n)
        return _signed(out)

    return op


def _tohex(x: int, n: int = 8) -> bytes:
    digits = "0123456789ABCDEF" if n < 0 else "0123456789abcdef"
    n = min(abs(n), 8) or 8
    x &= 0xFFFFFFFF
    return "".join(digits[(x >> (4 * i)) & 0xF] for i in reversed(range(n))).encode()


def _rol(x: int, n: int) -> int:
    n &= 31
    x &= 0xFFFFFFFF
    return _signed(x << n | x >> (32 - n))


def _ror(x: int, n: int) -> int:
    n &= 31
    x &= 0xFFFFFFFF
    return _signed(x >> n | x << (32 - n))


def _bswap(x: int) -> int:
    return _signed(int.from_bytes((x & 0xFFFFFFFF).to_bytes(4, "little"), "big"))


_BIT_OPS: dict[bytes, Callable[..., Any]] = {
    b"tobit": lambda x: x,
    b"tohex": _tohex,
    b"bnot": lambda x: _signed(~x),
    b"band": _reduce(lambda a, b: a & b),
    b"bor": _reduce(lambda a, b: a | b),
    b"bxor": _reduce(lambda a, b: a ^ b),
    b"lshift": lambda x, n: _signed(x << (n & 31)),
    b"rshift": lambda x, n: _signed((x & 0xFFFFFFFF) >> (n & 31)),
    b"arshift": lambda x, n: _signed(x >> (n & 31)),
    b"rol": _rol,
    b"ror": _ror,
    b"bswap": _bswap,
}
