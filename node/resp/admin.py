"""Server, introspection and topology commands of the Redis front-end: INFO, CONFIG, CLIENT,
COMMAND, CLUSTER, SENTINEL, TIME, WAIT, FUNCTION and the stubs tools expect.

These answer from this node's view (they are not in the replicated command table); each is
`handler(conn, argv)` that replies through `conn.reply(...)`, or returns a coroutine whose
result is the reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raftcache.node.keyspace.reply import Error, Status

if TYPE_CHECKING:
    from raftcache.node.config import NodeConfig
    from raftcache.node.resp.server import Connection
    from raftcache.node.servicers import NodeView

Handler = Callable[["Connection", list[bytes]], Any]
ADMIN: dict[bytes, Handler] = {}


@dataclass(frozen=True)
class NodeFacts:
    """What the admin commands read: this node's view, its config and its streams."""

    view: NodeView
    config: NodeConfig
    streams: Any


def admin(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ADMIN[name.encode()] = fn
        return fn

    return register


@admin("time")
def _time(conn: Connection, argv: list[bytes]) -> None:
    if len(argv) != 1:
        conn.reply(Error("ERR wrong number of arguments for 'time' command"))
        return
    now = time.time_ns() // 1000
    conn.reply([str(now // 1_000_000).encode(), str(now % 1_000_000).encode()])


@admin("lastsave")
def _lastsave(conn: Connection, argv: list[bytes]) -> None:
    conn.reply(int(conn.server.stats.started))


@admin("save")
def _save(conn: Connection, argv: list[bytes]) -> None:
    conn.reply(Status("OK"))
