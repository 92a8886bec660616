"""Server wiring: one process = an asyncio gRPC server + pysyncobj's tick thread."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import ssl
from collections.abc import Callable
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from raftcache.consensus import RaftNode, Role
from raftcache.node import commands, events, restore
from raftcache.node.auth import Auth
from raftcache.node.blocking import Blocker
from raftcache.node.config import NodeConfig
from raftcache.node.engine import Engine, call_op, reply_of
from raftcache.node.eviction import AccessTracker, Evictor
from raftcache.node.forwarding import LeaderForwarder
from raftcache.node.grpc_auth import Gate
from raftcache.node.keyspace.acl import read_stored
from raftcache.node.memcached.server import McServer
from raftcache.node.metrics import (
    Connections,
    GrpcMetrics,
    MetricsServer,
    MetricsSources,
    loop_thread_ids,
    registry_for,
)
from raftcache.node.proposer import Proposer
from raftcache.node.replica import RejoinIntents, Replica
from raftcache.node.resp.admin import ADMIN, NodeFacts
from raftcache.node.resp.parser import ParserLimits
from raftcache.node.resp.server import RespServer
from raftcache.node.servicers import CacheServicer, ClusterServicer, NodeView
from raftcache.node.state_machine import Event, Failure, Member
from raftcache.node.streams import Streams
from raftcache.node.tls import POLL_INTERVAL_S, TlsMaterial, TlsReloader
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2, cluster_pb2_grpc, command_pb2

_log = structlog.get_logger("raftcache.node")

SERVICE_NAMES = (
    cache_pb2.DESCRIPTOR.services_by_name["Cache"].full_name,
    cluster_pb2.DESCRIPTOR.services_by_name["Cluster"].full_name,
)


def grpc_options(config: NodeConfig) -> list[tuple[str, Any]]:
    size = config.proposer.max_batch_bytes + (1 << 20)
    return [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
        ("grpc.so_reuseport", 0),
    ]


def _tune_gc() -> None:
    """Collect young objects less often and never rescan what start-up built.

    Every request allocates short-lived futures, protobufs and buffers; with CPython's
    default thresholds (700, 10, 10) the leader spent 5% of its CPU in the collector at 64
    clients and 17% with pipelined clients (make bench, py-spy). Cycles are rare here; the
    state machine's entries are untracked tuples."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def _grpc_port(
    flag: str, address: str, server: grpc.aio.Server, credentials: grpc.ServerCredentials | None
) -> None:
    """Listen on `address` (TLS with `credentials`, else plaintext), or say which flag's
    address could not be bound."""
    try:
        if credentials is not None:
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError:
        bound = 0
    if bound == 0:
        raise OSError(
            f"{flag}: cannot listen on {address} (in use, or not an address of this host)"
        )


class Node:
    """A running node; `run()` serves until `stop()` (or SIGTERM/SIGINT)."""

    def __init__(self, config: NodeConfig, tls: TlsMaterial | None = None) -> None:
        """`tls`: the checked files of config.tls (node/tls.py load_material)."""
        self.config = config
        self.tls = (
            TlsReloader(config.tls, tls) if config.tls is not None and tls is not None else None
        )
        self.replica = Replica()
        self.raft: RaftNode | None = None
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._redis: RespServer | None = None
        self._memcached: McServer | None = None
        self._metrics: MetricsServer | None = None
        self.serving = False  # the grpc.health.v1 status (also GET /readyz on --metrics-listen)
        self.blocker: Blocker | None = None  # parked blocking pops (BLPOP...), once running
        self.auth: Auth | None = None  # the node's users, once running

    def log_context(self) -> dict[str, Any]:
        context: dict[str, Any] = {"node_id": self.config.node_id}
        if self.raft is not None:
            status = self.raft.status()
            context["role"] = status.role.value
            context["term"] = status.term
        return context

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        config = self.config
        # Before anything listens: a bad backup or another cluster's data dir stops here.
        # A joiner's (or read replica's) list is the cluster's members without it: the id
        # they derived at start.
        outside = config.joining or config.raft.read_replica
        members = config.raft.peers if outside else (config.raft.self_addr, *config.raft.peers)
        start = restore.prepare(config.raft.data_dir, members, config.restore_from)
        if start.seed is not None:
            seeded = restore.seed(self.replica, start.seed)
            events.emit(
                "RestoreComplete",
                backup=start.seed,
                source_cluster=seeded.cluster_id,
                cluster_id=start.cluster_id,
                keys=seeded.key_count,
                revision=seeded.revision,
            )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stop)
        if self.tls is not None:
            tls = self.tls
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGHUP, lambda: tls.reload("SIGHUP"))
        options = grpc_options(config)
        # Counting gRPC calls costs an interceptor per call: only when metrics are served.
        grpc_metrics = GrpcMetrics() if config.metrics_listen else None
        server = grpc.aio.server(
            options=options, interceptors=[grpc_metrics] if grpc_metrics else None
        )
        credentials = self.tls.grpc_credentials() if self.tls is not None else None
        _grpc_port("--listen", config.listen, server, credentials)
        if config.plaintext_listen:
            _grpc_port("--plaintext-listen", config.plaintext_listen, server, None)
        # Before the Raft node exists: entries replayed from the journal already carry events.
        streams = Streams(lambda: self.replica.revision)
        tracker = AccessTracker()

        def on_events(events: list[Event]) -> None:  # tick thread, the only writer of state
            tracker.follow(self.replica.state)
            tracker.on_events(events)
            streams.deliver(events)
            if self.blocker is not None:
                self.blocker.on_events(events)

        self.replica.on_events = on_events
        self.replica.on_restored = streams.restored
        self.raft = raft = RaftNode(
            config.raft,
            self.replica,
            on_role_change=self._role_changed,
            rejoin_intents=RejoinIntents(self.replica),
        )
        raft.on_event = events.emit
        streams.current = raft.lease_read_ok
        if config.raft.read_replica:
            _log.info(
                "read replica: follows the voters, never votes", voters=list(config.raft.peers)
            )
        elif config.joining:
            _log.info(
                "joining an existing cluster: this node votes and counts once the leader adds "
                f"it (raftcache member add {config.raft.self_addr})",
                members=list(config.raft.peers),
            )
        if raft.recovery is not None and raft.recovery.truncated_entries:
            _log.warning(
                "finished an interrupted log compaction",
                dropped_entries=raft.recovery.truncated_entries,
            )
        evictor = Evictor(lambda: self.replica.state, self.replica.lock, tracker)
        proposer = Proposer(
            raft,
            self.replica,
            config.proposer,
            prelude=evictor.prelude,
            sets_fit=lambda least, growth: self.replica.state.sets_fit(least, growth),
        )
        view = NodeView(config.node_id, raft, self.replica, config.advertise, tracker)
        view.cluster_id = start.cluster_id
        forwarder = LeaderForwarder(
            options, self.tls.channel_credentials if self.tls is not None else None
        )
        if self.tls is not None:
            self.tls.on_reload.append(forwarder.renew_channels)
        engine = Engine(
            view, proposer, forwarder, config.proposer.commit_timeout_s, streams.receivers
        )
        self.auth = Auth(lambda: read_stored(self.replica.state), config.users_seed)
        engine.auth = self.auth
        self.blocker = Blocker(engine)
        gate = Gate(self.auth, config.tls_client_cn_as_user)
        cache = CacheServicer(view, proposer, forwarder, config.limits, streams)
        cache.blocker, cache.gate = self.blocker, gate
        cache_pb2_grpc.add_CacheServicer_to_server(cache, server)
        cluster = ClusterServicer(view, streams, proposer)
        cluster.auth, cluster.engine, cluster.gate = self.auth, engine, gate
        cluster_pb2_grpc.add_ClusterServicer_to_server(cluster, server)
        self._redis = await self._start_redis(engine, view, streams)
        self._memcached = await self._start_memcached(engine)
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, reflection.SERVICE_NAME, "grpc.health.v1.Health"), server
        )
        await server.start()
        if grpc_metrics is not None:
            sources = MetricsSources(
                config.node_id, config.raft.durability.value, raft, self.replica, view, proposer
            )
            sources.auth = self.auth
            self._metrics = await self._start_metrics(sources, grpc_metrics)
        _tune_gc()
        _log.info(
            "node started",
            listen=config.listen,
            redis=config.redis_listen or "off",
            memcached=config.memcached_listen or "off",
            metrics=config.metrics_listen or "off",
            tls=("mtls" if config.tls.client_ca_file else "on")
            if config.tls is not None
            else "off",
            plaintext=[a for a in (config.plaintext_listen, config.redis_plaintext_listen) if a]
            or "off",
            raft=config.raft.self_addr,
            peers=list(config.raft.peers),
            durability=config.raft.durability.value,
        )
        self._tasks = [
            asyncio.create_task(proposer.run_ticks()),
            asyncio.create_task(self._health_loop(health, view)),
            asyncio.create_task(self._announce_loop(proposer)),
        ]
        if self.tls is not None:
            self._tasks.append(asyncio.create_task(self._tls_poll_loop(self.tls)))
        try:
            await self._stopping.wait()
        finally:
            await self._shutdown(server, health, forwarder, proposer)

    async def _shutdown(
        self,
        server: grpc.aio.Server,
        health: HealthServicer,
        forwarder: LeaderForwarder,
        proposer: Proposer,
    ) -> None:
        assert self.raft is not None
        _log.info("stopping")
        await health.enter_graceful_shutdown()
        if self.raft.is_leader() and self.raft.status().connected:
            # pysyncobj refuses a transfer while no connected follower has the leader's last
            # entry (just after an election or a write) and sends TimeoutNow only once: ask
            # again until a follower takes over or the budget is spent. New proposals wait
            # meanwhile (as in Cluster.TransferLeadership): with writes and idle ticks coming
            # every few ms no follower would hold the last entry, and after the TimeoutNow
            # they would make the target's log too short to win (Raft thesis 3.10).
            # Queued calls are then refused as NoLeader if leadership moved (clients retry).
            raft = self.raft
            await proposer.hand_over(
                raft.transfer_leadership, 3.0, alone=lambda: not raft.status().connected
            )
            _log.info(
                "leadership handed over"
                if not self.raft.is_leader()
                else "leadership not handed over (no caught-up peer answered)"
            )
        for task in self._tasks:
            task.cancel()
        if self._redis is not None:
            await self._redis.stop()
        if self._memcached is not None:
            await self._memcached.stop()
        if self._metrics is not None:
            await self._metrics.stop()
        await server.stop(grace=1.0)
        await forwarder.close()
        self.raft.destroy()
        _log.info("stopped")

    async def _start_metrics(
        self, sources: MetricsSources, grpc_metrics: GrpcMetrics
    ) -> MetricsServer:
        """Prometheus metrics on --metrics-listen, from every front-end this node runs."""
        sources.protocols.append(grpc_metrics.stats)
        redis, memcached = self._redis, self._memcached
        if redis is not None:
            sources.protocols.append(redis.commands)
            sources.connections.append(
                Connections(
                    "redis", lambda: len(redis.clients), lambda: redis.stats.connections_received
                )
            )
        if memcached is not None:
            mc = memcached.stats
            sources.protocols.append(memcached.commands)
            sources.connections.append(
                Connections("memcached", lambda: mc.curr_connections, lambda: mc.total_connections)
            )
        assert self.raft is not None
        sources.threads = loop_thread_ids(self.raft)
        server = MetricsServer(
            registry_for(sources), lambda: self.serving and not self._stopping.is_set()
        )
        try:
            await server.start(self.config.metrics_listen)
        except OSError as exc:
            raise OSError(
                f"--metrics-listen: cannot listen on {self.config.metrics_listen} "
                f"({exc.strerror or exc})"
            ) from exc
        return server

    def _ssl(self, on_failure: Callable[[ssl.SSLError], None]) -> ssl.SSLContext | None:
        """A Redis or memcached port's TLS context (reloads load into it; its failed
        handshakes reach `on_failure`), or None."""
        return self.tls.observed_context(on_failure) if self.tls is not None else None

    async def _start_memcached(self, engine: Engine) -> McServer | None:
        """The memcached front-end on --memcached-listen (off when it is empty)."""
        config = self.config
        if not config.memcached_listen:
            return None
        server = McServer(
            engine,
            config.memcached_max_item_bytes,
            config.memcached_stale_reads_ms,
            max_key_bytes=config.limits.max_key_bytes,
        )
        if self.auth is not None:
            server.auth = self.auth  # the memcached port's users (set before any connection)
        try:
            await server.start(config.memcached_listen, self._ssl(server.tls_failed))
        except OSError as exc:
            raise OSError(
                f"--memcached-listen: cannot listen on {config.memcached_listen} "
                f"({exc.strerror or exc})"
            ) from exc
        return server

    async def _start_redis(
        self, engine: Engine, view: NodeView, streams: Streams
    ) -> RespServer | None:
        """The Redis front-end on --redis-listen (off when it is empty)."""
        config = self.config
        if not config.redis_listen:
            return None
        # One argument: the value limit; one command: what one log entry may carry.
        entry_bytes = config.limits.max_response_bytes
        limits = ParserLimits(
            max_bulk_bytes=max(config.limits.max_value_bytes, config.limits.max_key_bytes),
            max_command_bytes=entry_bytes,
        )
        facts = NodeFacts(view, config, streams)
        redis = RespServer(
            engine,
            streams,
            limits,
            ADMIN,
            facts,
            config.redis_max_staleness_ms,
            max_key_bytes=config.limits.max_key_bytes,
            max_txn_bytes=entry_bytes,
            replica_reads=config.redis_replica_reads,
        )
        redis.blocker = self.blocker
        if self.auth is not None:
            redis.auth = self.auth
        for flag, address, ssl_context in (
            ("--redis-listen", config.redis_listen, self._ssl(redis.tls_failed)),
            ("--redis-plaintext-listen", config.redis_plaintext_listen, None),
        ):
            if not address:
                continue
            try:
                await redis.start(address, ssl_context)
            except OSError as exc:
                raise OSError(
                    f"{flag}: cannot listen on {address} ({exc.strerror or exc})"
                ) from exc
        return redis

    async def _tls_poll_loop(self, tls: TlsReloader) -> None:
        """Reload the TLS files when one changes on disk (SIGHUP reloads at once)."""
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            tls.poll()

    def _role_changed(self, old: Role, new: Role) -> None:  # tick thread
        _log.info("role changed", old_role=old.value, new_role=new.value)
        if new is Role.LEADER and self.raft is not None:
            status = self.raft.status()
            events.emit("FailoverComplete", new_leader=self.config.node_id, term=status.term)
        if old is Role.LEADER and self.blocker is not None:
            self.blocker.stepped_down()

    async def _health_loop(self, health: HealthServicer, view: NodeView) -> None:
        """SERVING once a leader is known (with its client address) and this node caught up."""
        assert self.raft is not None
        serving: bool | None = None
        while True:
            status = self.raft.status()
            now_serving = (
                status.leader is not None
                and status.ready
                and status.applied_index >= status.leader_commit_index
                and bool(view.leader_client_addr())
            )
            if now_serving != serving:
                code = (
                    health_pb2.HealthCheckResponse.SERVING
                    if now_serving
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                for name in ("", *SERVICE_NAMES):
                    await health.set(name, code)
                serving = self.serving = now_serving
            await asyncio.sleep(0.25)

    async def _propose_config(self, proposer: Proposer) -> None:
        """The leader makes its --max-memory and --eviction-policy the replicated ones, and
        stores its seed users (--users-file, --requirepass) if a cluster has none yet."""
        bootstrap = self.auth.bootstrap_call() if self.auth is not None else None
        if bootstrap is not None:
            with contextlib.suppress(Exception):
                result = await proposer.write(call_op(bootstrap, 0))
                if isinstance(result, Failure):
                    _log.error("users not stored", reason=result.message)
                elif reply_of(result) == 1:
                    _log.info("users stored (from --users-file/--requirepass)")
        stats = self.replica.stats()
        wanted = (self.config.max_memory, self.config.eviction_policy)
        if (stats.max_memory, stats.eviction_policy) == wanted:
            return
        op = command_pb2.Op()
        op.config.max_memory, op.config.eviction_policy = wanted
        with contextlib.suppress(Exception):
            result = await proposer.write(op)
            if isinstance(result, Failure):
                _log.error("config not replicated", reason=result.message)
            else:
                _log.info("cache limits replicated", max_memory=wanted[0], policy=wanted[1])

    async def _announce_loop(self, proposer: Proposer) -> None:
        """Put this node's client address into the replicated member list (and keep it there)."""
        assert self.raft is not None
        raft = self.raft
        config = self.config
        me = Member(
            raft.config.self_addr,
            config.advertise,
            config.redis_advertise,
            config.memcached_advertise,
        )
        while True:
            status = raft.status()
            if raft.is_leader():
                await self._propose_config(proposer)
            if status.leader is None or self.replica.members().get(self.config.node_id) == me:
                await asyncio.sleep(0.05 if status.leader is None else 1.0)
                continue
            op = command_pb2.Op()
            op.announce.node_id = self.config.node_id
            op.announce.raft_addr = me.raft_addr
            op.announce.client_addr = me.client_addr
            op.announce.redis_addr = me.redis_addr
            op.announce.memcached_addr = me.memcached_addr
            if raft.is_leader():
                with contextlib.suppress(Exception):
                    result = await proposer.write(op)
                    if isinstance(result, Failure):
                        _log.error("announce failed", reason=result.message)
            else:
                # Followers submit through pysyncobj, which forwards to the leader.
                raft.propose(commands.encode(command_pb2.Command(ops=[op])), lambda *_: None)
            await asyncio.sleep(0.2)
