"""The tests we skip in Redis's suite, each with the reason (tests/compat/redis-skip.txt).

Format: an entry is a test name, or `/REGEX` matched against test names (runtest's own
rule: search_pattern_list in tests/support/test.tcl). The comment lines directly above a
group of entries give their reason; a blank line ends the group. An entry without a reason
is an error: every skip must say why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SKIP_FILE = Path(__file__).with_name("redis-skip.txt")

# Why runtest itself refuses tests by tag (redis_suite.RUNTEST_FLAGS).
TAG_REASONS = {
    "Tag: needs:repl denied": "attaches a replica with SYNC/PSYNC: raftcache replicates by Raft",
    "Tag: needs:debug denied": "uses DEBUG or OBJECT internals (RELOAD, SLEEP, digests, ...)",
    "Tag: needs:config-maxmemory denied": (
        "sets maxmemory with CONFIG SET: raftcache's limit is the leader's --max-memory flag,"
        " replicated, and CONFIG SET maxmemory is refused by design"
    ),
    "Not supported on external server": "runtest runs it only on a server it starts itself",
    "Not supported on singledb": "needs a second database; the suite runs with --singledb",
    "large memory flag not provided": "needs over 100 MB (runtest --large-memory)",
}


class SkipListError(ValueError):
    """The skip file is malformed; the message names the line."""


@dataclass(frozen=True)
class Skip:
    pattern: str
    reason: str
    line: int

    def matches(self, name: str) -> bool:
        if self.pattern.startswith("/"):
            return re.search(self.pattern[1:], name) is not None
        return self.pattern == name


def load(path: Path = SKIP_FILE) -> list[Skip]:
    """Every entry of the skip file with its reason."""
    skips: list[Skip] = []
    reason: list[str] = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.rstrip()
        if not line.strip():
            reason = []
        elif line.startswith("#"):
            reason.append(line.lstrip("#").strip())
        elif not reason:
            raise SkipListError(f"{path}:{number}: {line!r} has no reason comment above it")
        else:
            if line.startswith("/"):
                try:
                    re.compile(line[1:])
                except re.error as exc:
                    raise SkipListError(f"{path}:{number}: bad regex {line!r}: {exc}") from exc
            skips.append(Skip(line, " ".join(r for r in reason if r), number))
    return skips


def write_runtest_file(skips: list[Skip], dest: Path) -> Path:
    """The entries alone, one a line, as runtest's --skipfile reads them."""
    dest.write_text("".join(f"{s.pattern}\n" for s in skips))
    return dest


def reason_for(name: str, skips: list[Skip]) -> str:
    """Why test `name` was skipped: the first matching entry's reason."""
    return next((s.reason for s in skips if s.matches(name)), "skipped by a --skiptest flag")
