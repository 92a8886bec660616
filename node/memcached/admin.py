"""memcached's `stats` (general, settings, items, slabs) and ElastiCache's auto discovery
(`config get cluster`), answered from this node's counters and replicated state."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from raftcache.node.servicers import NodeView

if TYPE_CHECKING:
    from raftcache.node.memcached.server import McServer

VERSION = "1.6.18"
"""The memcached version we answer as (Debian 12's)."""

_COUNTERS = (
    "cmd_get",
    "cmd_set",
    "cmd_flush",
    "cmd_touch",
    "get_hits",
    "get_misses",
    "get_expired",
    "get_flushed",
    "delete_misses",
    "delete_hits",
    "incr_misses",
    "incr_hits",
    "decr_misses",
    "decr_hits",
    "cas_misses",
    "cas_hits",
    "cas_badval",
    "touch_hits",
    "touch_misses",
    "auth_cmds",
    "auth_errors",
)


@dataclass
class Discovery:
    """`config get cluster`'s version: bumped whenever the member list or the leader this
    node sees changes (never below the Raft term, so it also grows across restarts)."""

    version: int = 0
    seen: tuple[object, ...] = field(default_factory=tuple)
    body: bytes = b""  # the answer for `seen`: names are resolved once per change, not per call

    def current(self, view: NodeView) -> bytes:
        """The `config get cluster` body (version line, then the members) for now."""
        status = view.raft.status()
        members = view.replica.members()
        nodes = sorted((node_id, m.memcached_addr) for node_id, m in members.items())
        seen = (status.leader, tuple(nodes))
        if seen != self.seen:
            self.seen = seen
            self.version = max(self.version + 1, status.term)
            entries = " ".join(_node_entry(addr) for _, addr in nodes if addr)
            self.body = f"{self.version}\n{entries}\n".encode()
        return self.body


def config_get_cluster(server: McServer) -> bytes:
    """ElastiCache's auto discovery answer: the version, then every member's host|ip|port."""
    body = server.discovery.current(server.engine.view)
    return b"CONFIG cluster 0 %d\r\n%b\r\nEND\r\n" % (len(body), body)


def _node_entry(addr: str) -> str:
    host, _, port = addr.rpartition(":")
    host = host.strip("[]")
    try:
        ip = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0]
    except OSError:
        ip = ""
    return f"{host}|{ip}|{port}"


def stats_reply(server: McServer, args: list[bytes]) -> bytes:
    """`stats`, `stats settings`, `stats items`, `stats slabs`, `stats conns`, `stats reset`."""
    if not args:
        lines = _general(server)
    elif args == [b"settings"]:
        lines = _settings(server)
    elif args == [b"items"]:
        lines = _items(server)
    elif args == [b"slabs"]:
        lines = _slabs(server)
    elif args == [b"conns"]:
        lines = [(f"{c.id}:addr", f"tcp:{c.addr}") for c in server.clients.values()]
    elif args[:1] == [b"detail"]:  # per-prefix stats: accepted, none are kept
        return {b"on": b"OK\r\n", b"off": b"OK\r\n", b"dump": b"END\r\n"}.get(
            args[1] if len(args) == 2 else b"", b"CLIENT_ERROR usage: stats detail on|off|dump\r\n"
        )
    elif args == [b"reset"]:
        server.stats.counts.clear()
        return b"RESET\r\n"
    else:
        return b"ERROR\r\n"
    out = b"".join(f"STAT {k} {v}\r\n".encode() for k, v in lines)
    return out + b"END\r\n"


def _general(server: McServer) -> list[tuple[str, object]]:
    stats = server.stats
    replica = server.engine.view.replica
    cache = replica.stats()
    state = replica.state
    now = time.time()
    lines: list[tuple[str, object]] = [
        ("pid", os.getpid()),
        ("uptime", int(now - stats.started)),
        ("time", int(now)),
        ("version", VERSION),
        ("libevent", "none"),
        ("pointer_size", 64),
        ("curr_connections", stats.curr_connections),
        ("total_connections", stats.total_connections),
        ("max_connections", 1024),
    ]
    lines += [(name, stats.counts.get(name, 0)) for name in _COUNTERS]
    lines += [
        ("threads", 1),
        ("bytes", cache.memory_used),
        ("curr_items", state.db_size(0)),
        ("total_items", stats.counts.get("cmd_set", 0)),
        ("expired_unfetched", 0),
        ("evicted_unfetched", 0),
        ("evictions", cache.evictions),
        ("reclaimed", cache.expired_keys),
        ("limit_maxbytes", cache.max_memory),
        ("raftcache_role", server.engine.view.raft.status().role.value),
    ]
    return lines


def _settings(server: McServer) -> list[tuple[str, object]]:
    cache = server.engine.view.replica.stats()
    return [
        ("maxbytes", cache.max_memory),
        ("maxconns", 1024),
        ("tcpport", server.port),
        ("udpport", 0),
        ("verbosity", server.verbosity),
        ("evictions", "off" if cache.eviction_policy == "noeviction" else "on"),
        ("eviction_policy", cache.eviction_policy),
        ("item_size_max", server.max_item_bytes),
        ("cas_enabled", "yes"),
        ("binding_protocol", "ascii"),
        ("stale_reads_ms", server.stale_reads_ms),
    ]


def _items(server: McServer) -> list[tuple[str, object]]:
    """One "slab class" holds every item (we have no slabs; tools read these numbers)."""
    state = server.engine.view.replica.state
    return [
        ("items:1:number", state.db_size(0)),
        ("items:1:age", 0),
        ("items:1:evicted", server.engine.view.replica.stats().evictions),
        ("items:1:outofmemory", 0),
    ]


def _slabs(server: McServer) -> list[tuple[str, object]]:
    cache = server.engine.view.replica.stats()
    return [("active_slabs", 1), ("total_malloced", cache.memory_used)]
