"""Cluster events: every automatic or operator-triggered action on the cluster is one
structured log line (`event=<Name>`, named like ElastiCache's events) and one count in
`raftcache_events_total{event=...}` (node/metrics.py).

Names: FailoverComplete (this node became leader), AddCacheNodeComplete and
RemoveCacheNodeComplete (a membership change this leader made committed),
CacheNodeReplaceComplete (an add that replaced a removed member), LeaderTransferComplete
(a transfer asked for on purpose: the old leader logs it), SnapshotComplete (a Raft
snapshot was written), BackupComplete (a backup stream ended), RestoreComplete (a new
cluster was seeded from a backup). Each is logged once, by the node that did it.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

import structlog

_log = structlog.get_logger("raftcache.events")

NAMES = (
    "FailoverComplete",
    "AddCacheNodeComplete",
    "RemoveCacheNodeComplete",
    "CacheNodeReplaceComplete",
    "LeaderTransferComplete",
    "SnapshotComplete",
    "BackupComplete",
    "RestoreComplete",
)

_lock = threading.Lock()
_counts: collections.Counter[str] = collections.Counter(dict.fromkeys(NAMES, 0))


def emit(name: str, **fields: Any) -> None:
    """Log `name` as one event line and count it (any thread)."""
    with _lock:
        _counts[name] += 1
    _log.info(name, event_name=name, **fields)


def counts() -> dict[str, int]:
    """Events emitted by this process so far, by name (every known name, 0 included)."""
    with _lock:
        return dict(_counts)
