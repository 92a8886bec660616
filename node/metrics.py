"""Prometheus metrics: a collector that reads the node's own counters at scrape time, and
a tiny HTTP server for GET /metrics on the node's event loop (--metrics-listen).

The hot path never calls prometheus_client: front-ends count into plain ints
(node/command_stats.py), the proposer, the Raft node and the state machine keep theirs,
and `NodeCollector.collect` turns them into metric families when Prometheus scrapes.
Names follow what ElastiCache and etcd users look for (README, "Metrics").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from raftcache.consensus import RaftNode, Role
from raftcache.consensus.durations import Durations
from raftcache.node import events
from raftcache.node.auth import Auth
from raftcache.node.command_stats import CommandStats, ProtocolStats
from raftcache.node.proposer import Proposer
from raftcache.node.replica import Replica
from raftcache.node.servicers import NodeView

_log = structlog.get_logger("raftcache.metrics")

PROTOCOLS = ("grpc", "redis", "memcached")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Connections:
    """A front-end's open connections and connections accepted since start."""

    protocol: str
    current: Callable[[], int]
    total: Callable[[], int]


@dataclass
class MetricsSources:
    """Everything the collector reads; all of it is read on the event loop."""

    node_id: str
    durability: str
    raft: RaftNode
    replica: Replica
    view: NodeView
    proposer: Proposer
    protocols: list[ProtocolStats] = field(default_factory=list)
    connections: list[Connections] = field(default_factory=list)
    threads: dict[str, int] = field(default_factory=dict)  # name -> native thread id
    auth: Auth | None = None  # failed authentications and refused commands, per protocol


def histogram(
    name: str, doc: str, labels: Sequence[str], cells: Iterable[tuple[Sequence[str], Durations]]
) -> HistogramMetricFamily:
    """A histogram family from `Durations` (one sample set per label values)."""
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    for values, durations in cells:
        family.add_metric(list(values), durations.cumulative(), durations.sum_ns / 1e9)
    return family


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _counters(name: str, doc: str, label: str, counts: dict[str, int]) -> CounterMetricFamily:
    """One counter per value of `label`, in label order."""
    family = CounterMetricFamily(name, doc, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


def thread_cpu_seconds(native_id: int) -> float | None:
    """User + system CPU of one thread of this process (Linux /proc), None if unknown."""
    try:
        with open(f"/proc/self/task/{native_id}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


class NodeCollector(Collector):
    """Computes every raftcache_* metric from the node's state when scraped."""

    def __init__(self, sources: MetricsSources) -> None:
        self.sources = sources

    def collect(self) -> Iterator[Metric]:
        yield from self._cache()
        yield from self._commands()
        yield from self._connections()
        yield from self._raft()
        yield from self._proposals()
        yield from self._storage()
        yield from self._process()

    def _cache(self) -> Iterator[Metric]:
        src = self.sources
        stats = src.replica.stats()
        yield _counter(
            "raftcache_cache_hits",
            "Reads of an existing key served by this node, all protocols (CacheHits)",
            src.view.hits,
        )
        yield _counter(
            "raftcache_cache_misses",
            "Reads of a missing key served by this node, all protocols (CacheMisses)",
            src.view.misses,
        )
        yield _counter(
            "raftcache_evicted_keys",
            "Keys evicted for --max-memory, replicated (Evictions)",
            stats.evictions,
        )
        yield _counter(
            "raftcache_expired_keys",
            "Keys removed because their TTL passed, replicated (Reclaimed)",
            stats.expired_keys,
        )
        yield _gauge(
            "raftcache_items",
            "Keys stored in the 16 databases, internal records left out (CurrItems)",
            src.replica.key_count(),
        )
        yield _gauge(
            "raftcache_volatile_items",
            "Keys stored with a TTL (CurrVolatileItems)",
            src.replica.state.ttl_keys,
        )
        yield _gauge(
            "raftcache_memory_used_bytes",
            "Accounted bytes of keys and values, equal on every replica (BytesUsedForCache)",
            stats.memory_used,
        )
        yield _gauge(
            "raftcache_memory_limit_bytes",
            "The replicated --max-memory (0: no limit)",
            stats.max_memory,
        )

    def _commands(self) -> Iterator[Metric]:
        labels = ["protocol", "family", "type"]
        calls = CounterMetricFamily(
            "raftcache_commands",
            "Commands received, by protocol, command family and type (read = GetTypeCmds, "
            "write = SetTypeCmds)",
            labels=labels,
        )
        errors = CounterMetricFamily(
            "raftcache_command_errors", "Commands answered with an error reply", labels=labels
        )
        failures = CounterMetricFamily(
            "raftcache_command_failures",
            "Commands that failed on the cluster's side: no leader, overloaded, outcome "
            "unknown, internal error (not the client's bad input)",
            labels=labels,
        )
        latency: list[tuple[tuple[str, str], Durations]] = []
        for proto in self.sources.protocols:
            by_family: dict[str, Durations] = {}
            for cell in list(proto.cells.values()):
                values = [proto.protocol, cell.family, cell.kind]
                calls.add_metric(values, cell.calls)
                errors.add_metric(values, cell.errors)
                failures.add_metric(values, cell.failures)
                by_family[cell.family] = _merged(by_family.get(cell.family), cell)
            latency.extend(((proto.protocol, fam), d) for fam, d in by_family.items())
        yield calls
        yield errors
        yield failures
        yield histogram(
            "raftcache_command_duration_seconds",
            "Time from a command's arrival to its reply, by protocol and family",
            ["protocol", "family"],
            latency,
        )

    def _connections(self) -> Iterator[Metric]:
        current = GaugeMetricFamily(
            "raftcache_connections",
            "Open client connections (CurrConnections)",
            labels=["protocol"],
        )
        total = CounterMetricFamily(
            "raftcache_connections_accepted",
            "Client connections accepted since start (NewConnections)",
            labels=["protocol"],
        )
        auth = CounterMetricFamily(
            "raftcache_authentication_failures",
            "Failed authentications: wrong or missing credentials (AuthenticationFailures)",
            labels=["protocol"],
        )
        denied = CounterMetricFamily(
            "raftcache_command_authorization_failures",
            "Commands refused by the user's ACL rules (CommandAuthorizationFailures)",
            labels=["protocol"],
        )
        handshakes = CounterMetricFamily(
            "raftcache_tls_handshake_failures",
            "Failed TLS handshakes on the Redis and memcached ports: plaintext on a TLS port, "
            "no or an untrusted client certificate under mTLS (gRPC's happen inside gRPC core "
            "and are not counted)",
            labels=["protocol"],
        )
        for conns in self.sources.connections:
            current.add_metric([conns.protocol], conns.current())
            total.add_metric([conns.protocol], conns.total())
        failures = self.sources.auth.failures if self.sources.auth is not None else {}
        for protocol in PROTOCOLS:
            auth.add_metric([protocol], failures.get((protocol, "auth"), 0))
            denied.add_metric([protocol], failures.get((protocol, "perm"), 0))
            if protocol != "grpc":
                handshakes.add_metric([protocol], failures.get((protocol, "tls"), 0))
        yield current
        yield total
        yield auth
        yield denied
        yield handshakes

    def _raft(self) -> Iterator[Metric]:
        src = self.sources
        raft = src.raft
        status = raft.status()
        info = GaugeMetricFamily(
            "raftcache_info",
            "Constant 1, labelled with this node's id and durability",
            labels=["node_id", "durability"],
        )
        info.add_metric([src.node_id, src.durability], 1)
        yield info
        yield _gauge(
            "raftcache_is_leader", "1 on the leader (IsMaster)", status.role is Role.LEADER
        )
        yield _gauge(
            "raftcache_has_leader", "1 while this node knows a leader", status.leader is not None
        )
        held, carried = raft.commit_notices()
        yield _counter(
            "raftcache_commit_notices_held",
            "Commit-index-only AppendEntries this leader held back to let the next entry carry "
            "them (consensus/commit_notice.py)",
            held,
        )
        yield _counter(
            "raftcache_commit_notices_carried",
            "Held commit notices that the next entry carried within the hold (the rest went "
            "alone when it ran out)",
            carried,
        )
        yield _counter(
            "raftcache_leader_changes_seen",
            "Times this node saw a different leader (etcd_server_leader_changes_seen_total)",
            raft.leader_changes,
        )
        yield _gauge("raftcache_term", "The Raft term", status.term)
        yield _gauge("raftcache_commit_index", "The Raft commit index", status.commit_index)
        yield _gauge("raftcache_applied_index", "The last applied log index", status.applied_index)
        yield _gauge(
            "raftcache_staleness_seconds",
            "How far behind the leader this replica may be (+Inf without a leader)",
            src.view.staleness_ms() / 1000.0,
        )
        yield _gauge(
            "raftcache_tick_gap_max_seconds",
            "Longest gap between two Raft ticks in the last minute (a stalled Raft thread)",
            raft.max_tick_gap_ms() / 1000.0,
        )
        entries = GaugeMetricFamily(
            "raftcache_replication_lag_entries",
            "Log entries a follower lacks (leader only; ReplicationLag)",
            labels=["follower"],
        )
        seconds = GaugeMetricFamily(
            "raftcache_replication_lag_seconds",
            "Age of the oldest entry a follower lacks (leader only; ReplicationLag)",
            labels=["follower"],
        )
        for peer, (lag_entries, lag_s) in sorted(raft.replication_lag().items()):
            entries.add_metric([peer], lag_entries)
            seconds.add_metric([peer], lag_s)
        yield entries
        yield seconds
        members = GaugeMetricFamily(
            "raftcache_cluster_members", "Members of the cluster by role", labels=["role"]
        )
        voters = status.members or (raft.config.self_addr, *raft.config.peers)
        peers = [m for m in voters if m != raft.config.self_addr]
        members.add_metric(["voter"], len(voters))
        members.add_metric(["read-replica"], status.read_replicas)
        yield members
        connected = GaugeMetricFamily(
            "raftcache_peer_connected",
            "1 while this node has a Raft connection to the peer",
            labels=["peer"],
        )
        for peer in peers:
            connected.add_metric([peer], peer in status.connected)
        yield connected
        yield _gauge(
            "raftcache_cluster_voters_reachable",
            "Voters this node reaches, itself included (below a majority: no quorum here)",
            1 + sum(peer in status.connected for peer in peers),
        )
        yield _counters(
            "raftcache_raft_bad_frames",
            "Frames refused on the Raft port (undecryptable: a different --raft-secret; "
            "truncated: cut off mid-frame; these drop their connection) and pysyncobj admin "
            "commands refused there (refused_admin: answered, the connection kept)",
            "reason",
            raft.bad_frames.counts(),
        )
        yield _counters(
            "raftcache_raft_stale_messages",
            "Raft messages refused as stale (snapshot: a streamed snapshot this log already "
            "held; answer: a leader's answer to an append of an older term)",
            "kind",
            raft.stale_messages(),
        )
        yield _counters(
            "raftcache_events",
            "Cluster events this node logged (FailoverComplete, AddCacheNodeComplete, "
            "RemoveCacheNodeComplete, CacheNodeReplaceComplete, SnapshotComplete, ...)",
            "event",
            events.counts(),
        )

    def _proposals(self) -> Iterator[Metric]:
        proposer = self.sources.proposer
        writes, reads, inflight = proposer.pending()
        pending = GaugeMetricFamily(
            "raftcache_proposals_pending",
            "Writes queued and linearizable reads waiting for the next log entry (leader)",
            labels=["kind"],
        )
        pending.add_metric(["write"], writes)
        pending.add_metric(["read"], reads)
        yield pending
        yield _gauge(
            "raftcache_proposals_inflight",
            "Log entries proposed and not yet applied (group commit batches)",
            inflight,
        )
        yield _counter(
            "raftcache_proposals_committed",
            "Log entries this node proposed as leader (writes, barriers, ticks)",
            proposer.batches_proposed - proposer.batches_failed,
        )
        yield _counter(
            "raftcache_proposals_failed",
            "Proposed entries not applied or of unknown outcome "
            "(etcd_server_proposals_failed_total)",
            proposer.batches_failed,
        )
        yield _counter("raftcache_proposed_ops", "Write ops proposed", proposer.ops_proposed)
        yield _counter(
            "raftcache_set_run_writes",
            "Plain SETs this leader proposed grouped in set runs, one MSetOp a run "
            "(node/DESIGN.md, Set runs)",
            proposer.set_run_writes,
        )
        yield _counter(
            "raftcache_lease_reads",
            "Linearizable reads this leader answered under its read lease, without a log entry "
            "(the others waited for a barrier entry)",
            proposer.lease_reads,
        )
        yield histogram(
            "raftcache_commit_duration_seconds",
            "From proposing a log entry to applying it on the leader",
            [],
            [((), proposer.commit_durations)],
        )

    def _storage(self) -> Iterator[Metric]:
        raft = self.sources.raft
        flushes = raft.journal_flush_durations()
        if flushes is not None:
            yield histogram(
                "raftcache_journal_flush_duration_seconds",
                "Journal msync (once a second) and term/vote fsync durations",
                [],
                [((), flushes)],
            )
        yield histogram(
            "raftcache_snapshot_duration_seconds",
            "Writing a snapshot (fork to renamed file)",
            [],
            [((), raft.snapshot_durations)],
        )
        yield histogram(
            "raftcache_snapshot_load_duration_seconds",
            "Loading a snapshot (at start-up or sent by the leader)",
            [],
            [((), raft.snapshot_load_durations)],
        )
        yield _counter("raftcache_snapshots", "Snapshots written", raft.snapshots_taken)
        yield _counter(
            "raftcache_snapshot_failures", "Snapshot writers that failed", raft.snapshot_failures
        )
        yield _gauge(
            "raftcache_snapshot_in_progress",
            "1 while a snapshot is being written",
            raft.snapshot_in_progress,
        )

    def _process(self) -> Iterator[Metric]:
        cpu = CounterMetricFamily(
            "raftcache_thread_cpu_seconds",
            "CPU time of the node's busy threads: loop (every client protocol; "
            "EngineCPUUtilization) and raft (replication and apply)",
            labels=["thread"],
        )
        for name, native_id in self.sources.threads.items():
            seconds = thread_cpu_seconds(native_id)
            if seconds is not None:
                cpu.add_metric([name], seconds)
        yield cpu
        yield _gauge("raftcache_cpus", "CPUs this process may run on", _cpus())


def _cpus() -> int:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _merged(into: Durations | None, cell: CommandStats) -> Durations:
    """A family's latency over its read/write/other cells (usually one)."""
    if into is None:
        return cell.latency
    merged = Durations(into.bounds_s)
    merged.counts = [a + b for a, b in zip(into.counts, cell.latency.counts, strict=True)]
    merged.sum_ns = into.sum_ns + cell.latency.sum_ns
    return merged


def registry_for(sources: MetricsSources) -> CollectorRegistry:
    """A registry with the node's collector and the process's (CPU, memory, fds)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(sources))
    ProcessCollector(registry=registry)
    return registry


class MetricsServer:
    """GET /metrics over HTTP/1.x on the event loop: one request per connection.

    On the loop rather than prometheus_client's server thread: the collector then reads
    the proposer's queues and the front-ends' dicts on the thread that changes them (no
    "dictionary changed size during iteration"), and a node keeps one loop thread."""

    MAX_REQUEST_BYTES = 16 << 10

    def __init__(
        self, registry: CollectorRegistry, ready: Callable[[], bool] | None = None
    ) -> None:
        self.registry = registry
        # GET /readyz: 200 while the node's grpc.health.v1 status is SERVING, else 503. The
        # kubelet's gRPC probe cannot speak TLS; this plain-HTTP answer needs neither TLS nor
        # credentials (and says only "ready" or "not ready").
        self.ready = ready
        self.port = 0
        self.scrapes = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._server = await asyncio.start_server(
            self._serve, host.strip("[]"), int(port), reuse_address=True
        )
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            status, ctype, body = self.respond(head)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()

    def respond(self, head: bytes) -> tuple[str, str, bytes]:
        """(status line, content type, body) for one request's head."""
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or parts[0] not in (b"GET", b"HEAD"):
            return "405 Method Not Allowed", "text/plain", b"only GET /metrics\n"
        path = parts[1].split(b"?", 1)[0]
        if path == b"/metrics":
            self.scrapes += 1
            body = generate_latest(self.registry)
            return "200 OK", CONTENT_TYPE_LATEST, b"" if parts[0] == b"HEAD" else body
        if path == b"/readyz" and self.ready is not None:
            if self.ready():
                return "200 OK", "text/plain", b"ready\n"
            return "503 Service Unavailable", "text/plain", b"not ready\n"
        if path == b"/":
            return "200 OK", "text/plain", b"raftcache node: metrics at /metrics\n"
        return "404 Not Found", "text/plain", b"not found: metrics are at /metrics\n"


def loop_thread_ids(raft: RaftNode) -> dict[str, int]:
    """Native ids of the calling (event loop) thread and pysyncobj's tick thread."""
    ids = {"loop": threading.get_native_id()}
    tick = raft.tick_thread_id()
    if tick is not None:
        ids["raft"] = tick
    return ids


_GRPC_KINDS = {
    **dict.fromkeys(("get", "mget", "scan"), "read"),
    **dict.fromkeys(("set", "delete", "incr", "mset", "txn"), "write"),
}
_GRPC_FAILURES = frozenset(
    {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN", "ABORTED"}
)
"""Status codes that are the cluster's failure, as etcd's failed-requests alert counts."""


def grpc_family(method: bytes) -> tuple[str, str]:
    """gRPC metrics labels: the Cache method (lower case) or the service for the others."""
    service, _, name = method.decode("latin-1").rpartition("/")
    if service.endswith(".Cache"):
        return (name.lower(), _GRPC_KINDS.get(name.lower(), "other"))
    return (service.rpartition(".")[2].lower() or "unknown", "other")


class GrpcMetrics(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Counts gRPC calls, error statuses and unary latency (installed only with metrics on)."""

    def __init__(self) -> None:
        self.stats = ProtocolStats("grpc", grpc_family)
        self._handlers: dict[str, Any] = {}

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        method: str = details.method
        wrapped = self._handlers.get(method)
        if wrapped is None or wrapped[0] is not handler:
            wrapped = (handler, self._wrap(handler, self.stats.for_name(method.encode())))
            self._handlers[method] = wrapped
        return wrapped[1]

    @staticmethod
    def _wrap(handler: Any, cell: CommandStats) -> Any:
        if handler is None or handler.unary_unary is None:
            return handler  # streams are long-lived: counted by their Status RPCs' clients
        inner = handler.unary_unary

        async def behavior(request: Any, context: Any) -> Any:
            cell.calls += 1
            started = time.perf_counter_ns()
            failed = True
            try:
                response = await inner(request, context)
                failed = False
                return response
            finally:
                cell.latency.observe_ns(time.perf_counter_ns() - started)
                code = context.code()
                if failed or (code is not None and code != grpc.StatusCode.OK):
                    cell.errors += 1
                    name = getattr(code, "name", "UNKNOWN")
                    if name in _GRPC_FAILURES or code is None:
                        cell.failures += 1

        return grpc.unary_unary_rpc_method_handler(
            behavior,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
