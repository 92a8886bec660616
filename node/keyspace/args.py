"""Argument parsing shared by the command modules, with Redis's exact error texts."""

from __future__ import annotations

import math

from raftcache.node.keyspace.reply import NOT_FLOAT, NOT_INTEGER, SYNTAX, CommandError

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def parse_int(raw: bytes, error: str = NOT_INTEGER) -> int:
    """A decimal 64-bit integer as Redis's string2ll accepts it (no spaces, no '+', no '-0')."""
    digits = raw[1:] if raw[:1] == b"-" else raw
    if (
        not digits
        or len(raw) > 20
        or not digits.isdigit()
        or (digits[:1] == b"0" and len(digits) > 1)
        or raw == b"-0"
    ):
        raise CommandError(error)
    value = int(raw)
    if not INT64_MIN <= value <= INT64_MAX:
        raise CommandError(error)
    return value


def parse_float(raw: bytes, error: str = NOT_FLOAT) -> float:
    """A double as Redis's strtold accepts it (inf and -inf allowed, NaN refused)."""
    text = raw.decode("ascii", "replace").strip()
    if not text or text != raw.decode("ascii", "replace") or "_" in text:
        raise CommandError(error)
    try:
        value = float(text)
    except ValueError:
        raise CommandError(error) from None
    if math.isnan(value):
        raise CommandError(error)
    return value


def format_float(value: float) -> bytes:
    """A double as Redis prints it (17 significant digits, shortest form, inf/-inf)."""
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if value == int(value) and abs(value) < 1e17:
        return str(int(value)).encode()
    return repr(value).encode()


def option(raw: bytes) -> bytes:
    """An option word, upper-cased for comparison."""
    return raw.upper()


def syntax() -> CommandError:
    return CommandError(SYNTAX)
