"""Read what Redis's `runtest` prints for one unit into passes, failures, skips and aborts.

runtest's lines (tests/test_helper.tcl, 7.0.15): `[ok]: NAME (N ms)`, `[err]: NAME in FILE`
followed by the assertion or error text, `[skip]: NAME` (skip file, --skiptest, --only),
`[ignore]: NAME: WHY` for a test refused by its tags and `[ignore]: WHY` for a whole refused
block, `[exception]: ...` when a Tcl error escapes a test (the unit stops there),
`[TIMEOUT]: ...` with `sockN => (IN PROGRESS) NAME` when nothing happened for --timeout
seconds, and `[1/1 done]: unit/x (N seconds)`. After "The End" it repeats the failures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STATUS = re.compile(r"^\[(ok|err|skip|ignore|exception|TIMEOUT|ready)\]: ?(.*)$")
_DONE = re.compile(r"^\[\d+/\d+ done\]: (\S+)")
_OK_ELAPSED = re.compile(r" \(\d+ ms\)$")
_ERR_WHERE = re.compile(r"^(.*) in tests/\S+\.tcl$")
_IN_PROGRESS = re.compile(r"=> \(IN PROGRESS\) (.*)$")
# Why runtest refuses a test or block by its tags (tags_acceptable in tests/support/server.tcl).
_IGNORE_WHY = re.compile(
    r"(Tag: \S+ denied|Tag: none of the tags allowed|Not supported on external server"
    r"|Not supported on singledb|Not supported in cluster mode|Not supported in tls mode"
    r"|large memory flag not provided)$"
)


@dataclass
class Failure:
    name: str
    message: str  # the first line of what the test reported
    detail: str = ""  # everything it reported (assertion, reply, Tcl stack)


@dataclass
class Ignored:
    name: str | None  # None: a whole start_server/tags block was refused, names unknown
    why: str


@dataclass
class UnitResult:
    unit: str
    passed: list[str] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    ignored: list[Ignored] = field(default_factory=list)
    aborted: str | None = None  # why the unit stopped early (exception, timeout, harness)
    hung_test: str | None = None  # the test in progress when runtest timed out
    done: bool = False  # runtest reported the unit finished

    @property
    def started(self) -> bool:
        """Whether any test ran (an abort before it means the suite could not start)."""
        return bool(self.passed or self.failed)


def parse(unit: str, output: str) -> UnitResult:
    """The outcome of one `runtest --single unit` run from its stdout and stderr."""
    result = UnitResult(unit)
    lines = _ANSI.sub("", output).splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.strip() == "The End":
            break
        if _DONE.match(line):
            result.done = True
            continue
        match = _STATUS.match(line)
        if match is None:
            continue
        status, data = match.groups()
        body, i = _continuation(lines, i)
        if status == "ok":
            result.passed.append(_OK_ELAPSED.sub("", data))
        elif status == "skip":
            result.skipped.append(data)
        elif status == "ignore":
            result.ignored.append(_ignored(data))
        elif status == "err":
            result.failed.append(_failure(data, body))
        elif status == "exception":
            result.aborted = "\n".join([data, *body]).strip()
        elif status == "TIMEOUT":
            result.hung_test = next(
                (m.group(1) for b in body if (m := _IN_PROGRESS.search(b))), None
            )
            result.aborted = f"runtest timed out in test {result.hung_test!r}"
    return result


def _continuation(lines: list[str], i: int) -> tuple[list[str], int]:
    """The lines after a status line that belong to it (an error's text, a state report)."""
    body: list[str] = []
    while i < len(lines):
        line = lines[i]
        if _STATUS.match(line) or _DONE.match(line) or line.strip() == "The End":
            break
        if line.startswith("Testing unit/"):
            break
        body.append(line)
        i += 1
    while body and not body[-1].strip():
        body.pop()
    return body, i


def _ignored(data: str) -> Ignored:
    match = _IGNORE_WHY.search(data)
    if match is None:
        return Ignored(data, "unknown")
    name = data[: match.start()].removesuffix(": ")
    return Ignored(name or None, match.group(1))


def _failure(first: str, body: list[str]) -> Failure:
    where = _ERR_WHERE.match(first)
    if where is None:  # an error in a start_server body outside any test (with --durable)
        return Failure("(outside a test)", first, "\n".join([first, *body]))
    first = next((b for b in body if b.strip()), "")
    # With --durable, a Tcl error (an error reply, a closed socket) is reported with its first
    # 10 characters cut off (the length of "assertion:"), then $::errorInfo, whose first line is
    # the whole message: prefer that.
    whole = next((b for b in body[1:] if len(b) == len(first) + 10 and b.endswith(first)), None)
    return Failure(where.group(1), (whole or first).strip(), "\n".join(body))
