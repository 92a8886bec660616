"""Redis's glob patterns (KEYS, SCAN MATCH) with exactly the semantics of its stringmatchlen.

`*` any run, `?` one byte, `[abc]`, `[^a-z]`, backslash escapes. Quirks kept on purpose: a
class missing its `]` runs to the end of the pattern, `[a-]` is the range a..`]`, ranges
compare bytes as signed chars (as C's `char` on x86), and an empty string matches only the
empty pattern (callers treat a lone `*` as "everything", as Redis does).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

_STAR, _ANY, _BACKSLASH, _OPEN, _CLOSE, _CARET, _DASH = b"*?\\[]^-"


def _signed(b: int) -> int:
    return b - 256 if b >= 128 else b


def _parse_class(pattern: bytes, i: int) -> tuple[frozenset[int], int]:
    """The bytes a class matches (its body starts at i) and the index after it."""
    n = len(pattern)
    negate = i < n and pattern[i] == _CARET
    if negate:
        i += 1
    allowed: set[int] = set()
    while True:
        if i >= n:  # no ']': the class runs to the end of the pattern
            break
        c = pattern[i]
        if c == _BACKSLASH and n - i >= 2:
            i += 1
            allowed.add(pattern[i])
        elif c == _CLOSE:
            i += 1
            break
        elif n - i >= 3 and pattern[i + 1] == _DASH:
            lo, hi = sorted((_signed(c), _signed(pattern[i + 2])))
            allowed.update(b for b in range(256) if lo <= _signed(b) <= hi)
            i += 2
        else:
            allowed.add(c)
        i += 1
    return frozenset(set(range(256)) - allowed if negate else allowed), i


def _class_regex(allowed: frozenset[int]) -> bytes:
    if not allowed:
        return b"(?!)"
    if len(allowed) == 256:
        return b"."
    parts: list[bytes] = []
    run: list[int] = []
    for b in sorted(allowed):
        if run and b == run[-1] + 1:
            run.append(b)
            continue
        if run:
            parts.append(_range(run))
        run = [b]
    parts.append(_range(run))
    return b"[" + b"".join(parts) + b"]"


def _range(run: list[int]) -> bytes:
    if len(run) == 1:
        return b"\\x%02x" % run[0]
    return b"\\x%02x-\\x%02x" % (run[0], run[-1])


def _segments(pattern: bytes) -> list[list[bytes]]:
    """Single-byte regexes, split at each '*' (so every segment has a fixed length)."""
    segments: list[list[bytes]] = [[]]
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == _STAR:
            segments.append([])
            i += 1
        elif c == _ANY:
            segments[-1].append(b".")
            i += 1
        elif c == _OPEN:
            allowed, i = _parse_class(pattern, i + 1)
            segments[-1].append(_class_regex(allowed))
        else:
            if c == _BACKSLASH and i + 1 < n:
                i += 1
            segments[-1].append(b"\\x%02x" % pattern[i])
            i += 1
    return segments


@lru_cache(maxsize=256)
def compile_glob(pattern: bytes) -> Callable[[bytes], bool]:
    """A matcher: does a whole string match the pattern?"""
    head, *middle = _segments(pattern)
    body = b"".join(head)
    if middle:
        *inner, last = middle
        # Between stars each segment has a fixed length, so its leftmost occurrence is
        # always a valid choice: atomic groups forbid backtracking into it (no blow-up on
        # patterns like a*a*a*a*b).
        body += b"".join(b"(?>.*?" + b"".join(seg) + b")" for seg in inner if seg)
        body += b".*" + b"".join(last)
    match = re.compile(b"(?s:" + body + rb")\Z").match
    empty = not pattern

    def matches(string: bytes) -> bool:
        if not string:
            return empty
        return match(string) is not None

    return matches
