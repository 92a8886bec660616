"""Redis's long double arithmetic (INCRBYFLOAT, HINCRBYFLOAT), exactly and on every platform.

Redis parses with strtold, adds in x87 80-bit extended precision (64-bit significand) and
prints with "%.17Lf" minus trailing zeros. Replicas may run on different CPUs, so this is
done with exact rationals rounded the way the FPU rounds (to nearest, ties to even): the
same digits as Redis on x86-64, identical on every replica.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

MAX_CHARS = 5 * 1024  # MAX_LONG_DOUBLE_CHARS: longer input is refused, as in string2ld

_MANTISSA_BITS = 64
_MIN_QUANTUM = -16445  # exponent of the smallest subnormal
_OVERFLOW = 1 << 16384
_DECIMAL = re.compile(rb"([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?\Z")
_HEX = re.compile(rb"([+-]?)0[xX]([0-9a-fA-F]*)(?:\.([0-9a-fA-F]*))?(?:[pP]([+-]?\d+))?\Z")
_INFINITY = re.compile(rb"([+-]?)(?:inf|infinity)\Z", re.IGNORECASE)
_CHUNK = 1000  # decimal digits converted at once (CPython limits one str<->int conversion)

LongDouble = Fraction | float
"""An exact finite value (Fraction) or +-inf (float)."""


def _int(digits: bytes) -> int:
    value = 0
    for i in range(0, len(digits), _CHUNK):
        part = digits[i : i + _CHUNK]
        value = value * 10 ** len(part) + int(part)
    return value


def _decimal(n: int) -> str:
    """str(n) for a non-negative int of any size."""
    if n < 10**_CHUNK:
        return str(n)
    high, low = divmod(n, 10**_CHUNK)
    return _decimal(high) + str(low).rjust(_CHUNK, "0")


def _exponent(raw: bytes | None) -> int | None:
    """The exponent's value, or None when it is too large to matter (|e| > 10**9)."""
    if not raw:
        return 0
    sign = -1 if raw[:1] == b"-" else 1
    digits = raw.lstrip(b"+-").lstrip(b"0") or b"0"
    return None if len(digits) > 9 else sign * int(digits)


def round_extended(x: Fraction) -> LongDouble:
    """x rounded to the nearest 80-bit extended value (ties to even); +-inf on overflow."""
    if not x:
        return Fraction(0)
    n, d = abs(x.numerator), x.denominator
    e = n.bit_length() - d.bit_length()  # 2**e <= n/d < 2**(e+2)
    if (n << max(-e, 0)) < (d << max(e, 0)):
        e -= 1
    q = max(e - (_MANTISSA_BITS - 1), _MIN_QUANTUM)
    m = round(Fraction(n << max(-q, 0), d << max(q, 0)))  # Fraction rounds ties to even
    value = Fraction(m << max(q, 0), 1 << max(-q, 0))
    if value >= _OVERFLOW:
        return math.inf if x > 0 else -math.inf
    return value if x > 0 else -value


def parse(raw: bytes) -> LongDouble | None:
    """A number as Redis's string2ld accepts it, or None (no spaces, no NaN, no overflow)."""
    if not raw or len(raw) >= MAX_CHARS:
        return None
    if m := _INFINITY.match(raw):
        return -math.inf if m[1] == b"-" else math.inf
    if m := _HEX.match(raw):
        whole, frac, base, shift = m[2], m[3] or b"", 16, 4
    elif m := _DECIMAL.match(raw):
        whole, frac, base, shift = m[2], m[3] or b"", 10, 0
    else:
        return None
    if not whole and not frac:
        return None
    digits = (whole + frac).lstrip(b"0")
    if not digits:
        return Fraction(0)
    exponent = _exponent(m[4])
    if exponent is None:
        return None  # overflows, or underflows to zero: strtold's ERANGE
    if base == 16:
        exponent -= shift * len(frac)
        magnitude = shift * len(digits) + exponent  # 2**(magnitude-4) <= value < 2**magnitude
        if magnitude > 16388 or magnitude < -16450:
            return None
        value = int(digits, 16) * Fraction(2) ** exponent
    else:
        exponent -= len(frac)
        magnitude = len(digits) + exponent  # 10**(magnitude-1) <= value < 10**magnitude
        if magnitude > 4934 or magnitude < -4955:
            return None
        value = _int(digits) * Fraction(10) ** exponent
    result = round_extended(-value if m[1] == b"-" else value)
    if isinstance(result, float) or not result:
        return None
    return result


def add(a: LongDouble, b: LongDouble) -> Fraction | None:
    """a + b in extended precision; None when the sum is NaN or infinite."""
    if isinstance(a, float) or isinstance(b, float):
        return None  # an infinite operand gives inf or NaN: both refused
    result = round_extended(a + b)
    return None if isinstance(result, float) else result


def format_human(value: Fraction) -> bytes:
    """ "%.17Lf" without trailing zeros (nor a trailing dot); -0 prints as 0."""
    scaled = round(abs(value) * 10**17)  # ties to even, like glibc's exact printf
    text = _decimal(scaled).rjust(18, "0")
    whole, frac = text[:-17], text[-17:].rstrip("0")
    out = whole + ("." + frac if frac else "")
    if value < 0 and out != "0":
        out = "-" + out
    return out.encode()
