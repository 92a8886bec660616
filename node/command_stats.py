"""Per-protocol command counters for the metrics endpoint: plain ints on the hot path.

A front-end looks up its command's `CommandStats` once per command (one dict lookup by
name), counts the call, and the pipeline (node/pipeline.py) observes the reply's latency
into it when the reply settles. Nothing here touches prometheus_client: node/metrics.py
reads these at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable

from raftcache.consensus.durations import Durations

FAILURE_CODES = frozenset({"CLUSTERDOWN", "TRYAGAIN", "UNKNOWN", "SERVER_ERROR"})
"""First words of error replies that are the cluster's failure, not the client's (no
leader, overloaded, outcome unknown, memcached's SERVER_ERROR): what a failed-requests
alert counts. WRONGTYPE, syntax errors and the like are errors, not failures."""

MAX_NAMES = 1024
"""Distinct command names remembered per protocol; the rest count as family "unknown"."""


class CommandStats:
    """One (protocol, family, type) cell: calls, error replies, failures and latency."""

    __slots__ = ("calls", "errors", "failures", "family", "kind", "latency")

    def __init__(self, family: str, kind: str) -> None:
        self.family = family
        self.kind = kind  # "read", "write" or "other" (ElastiCache's get-/set-type commands)
        self.calls = 0
        self.errors = 0
        self.failures = 0
        self.latency = Durations()

    def count_error(self, text: str) -> None:
        """An error reply (rare: the classification may cost a split)."""
        self.errors += 1
        if text.split(" ", 1)[0] in FAILURE_CODES or text.startswith("ERR internal error"):
            self.failures += 1


class ProtocolStats:
    """A protocol's cells, by command name (`for_name`) and by (family, type)."""

    def __init__(self, protocol: str, classify: Callable[[bytes], tuple[str, str]]) -> None:
        self.protocol = protocol
        self._classify = classify
        self.by_name: dict[bytes, CommandStats] = {}
        self.cells: dict[tuple[str, str], CommandStats] = {}
        self.unknown = self._cell("unknown", "other")

    def for_name(self, name: bytes) -> CommandStats:
        """The cell counting command `name` (lower case); the hot path's one lookup."""
        stats = self.by_name.get(name)
        if stats is None:
            if len(self.by_name) >= MAX_NAMES:
                return self.unknown
            stats = self.by_name[name] = self._cell(*self._classify(name))
        return stats

    def _cell(self, family: str, kind: str) -> CommandStats:
        cell = self.cells.get((family, kind))
        if cell is None:
            cell = self.cells[(family, kind)] = CommandStats(family, kind)
        return cell
