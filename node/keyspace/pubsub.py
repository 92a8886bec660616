"""PUBLISH as a table command, so MULTI/EXEC (and gRPC's Exec) can carry it.

Outside a transaction the RESP front-end replicates a PublishOp instead (request-id dedup,
and the reply counts the leader's receivers); inside EXEC the front-end fills in the
receivers on the serving node.
"""

from __future__ import annotations

from raftcache.node.keyspace.db import Db
from raftcache.node.keyspace.reply import ReplyT
from raftcache.node.keyspace.table import command


@command(
    "publish", 3, "pubsub loading stale fast may-replicate write", keys=(0, 0, 0), group="pubsub"
)
def publish(db: Db, argv: list[bytes]) -> ReplyT:
    db.sm.emit_published(argv[1], argv[2])
    return 0


@command("raftcache.versions", -2, "readonly fast internal", keys=(1, -1, 1), group="generic")
def versions(db: Db, argv: list[bytes]) -> ReplyT:
    """Each key's version (0 = missing): WATCH reads them like any linearizable read."""
    out: list[ReplyT] = []
    for key in argv[1:]:
        entry = db.entry(key)
        out.append(0 if entry is None else entry[1])
    return out
