"""Start, stop, kill, pause and restart real raftcache-node processes on loopback.

Used by `make run`, the integration tests, the benchmarks and (later) chaos runs.
`python -m raftcache.chaos.local_cluster run` runs a 3-node cluster in the
foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from raftcache.chaos import netns as netns_mode
from raftcache.chaos.netproxy import NetProxy, Route
from raftcache.v1 import cluster_pb2, cluster_pb2_grpc

_LISTEN_PORTS = range(10_000, 20_000)
"""Where free_port looks: below Linux's ephemeral range (32768-60999 by default), so an
outgoing connection (a Raft link, a client, a forwarder) cannot be given the port between
the moment it is picked and the moment a node binds it; below Redis's test harness's ports
(21079+) too. A node now listens on up to five ports, and an ephemeral pick collided."""
# For the harness's own status channels: a fresh subchannel pool per channel, and reconnect
# attempts at most 1 s apart (gRPC's default backoff grows to 120 s while a node is down).
CHANNEL_OPTIONS = (
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)
_handed_out: set[int] = set()
_pick = random.Random()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` (IPv4, or IPv6 such as "::1") now, never one this process
    handed out before."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(500):
        port = _pick.choice(_LISTEN_PORTS)
        if port in _handed_out:
            continue
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket(family, socket.SOCK_STREAM) as sock:  # the range is full
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ClusterTls:
    """TLS on every node's client ports: one certificate for all (its names must cover
    127.0.0.1), `ca_file` trusting it; `mtls`: clients (and forwarding nodes) must present a
    certificate from `ca_file` too, so the certificate must also allow client auth;
    `plaintext`: every node also serves plaintext gRPC and Redis ports beside the TLS ones
    (--plaintext-listen, --redis-plaintext-listen: LocalNode.plaintext_port and
    redis_plaintext_port)."""

    cert_file: Path
    key_file: Path
    ca_file: Path
    mtls: bool = False
    plaintext: bool = False

    def node_args(self) -> list[str]:
        ca_flag = "--tls-client-ca-file" if self.mtls else "--tls-ca-file"
        return [
            "--tls-cert-file", str(self.cert_file),
            "--tls-key-file", str(self.key_file),
            ca_flag, str(self.ca_file),
        ]  # fmt: skip

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """What the cluster's own status calls present (the nodes' pair, under mTLS)."""
        pair = (self.key_file.read_bytes(), self.cert_file.read_bytes()) if self.mtls else ()
        return grpc.ssl_channel_credentials(self.ca_file.read_bytes(), *pair)


@dataclass
class LocalNode:
    node_id: str
    client_port: int
    raft_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)
    raft_bind_port: int | None = None  # set when a proxy owns raft_port (see netproxy.py)
    redis_port: int = 0  # the RESP port (0 = none)
    memcached_port: int = 0  # the memcached port (0 = none)
    metrics_port: int = 0  # the Prometheus /metrics port (0 = none)
    plaintext_port: int = 0  # a plaintext gRPC port beside the TLS one (0 = none)
    redis_plaintext_port: int = 0  # a plaintext Redis port beside the TLS one (0 = none)
    host: str = "127.0.0.1"  # its namespace's address in netns mode (chaos/netns.py)
    exec_prefix: list[str] = field(default_factory=list)  # e.g. ip netns exec <ns>
    env: dict[str, str] = field(default_factory=dict)  # on top of the cluster's
    # Raft addresses given to --join instead of --peers (a node added to a running cluster)
    join: list[str] | None = None
    # False for a spare (LocalCluster(spares=...)) or a member the chaos nemesis removed: such
    # a node is not started by start(), not in anyone's --peers, and heal() leaves it down.
    member: bool = True

    @property
    def client_addr(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def redis_addr(self) -> str:
        return f"{self.host}:{self.redis_port}"

    @property
    def memcached_addr(self) -> str:
        return f"{self.host}:{self.memcached_port}"

    @property
    def metrics_addr(self) -> str:
        return f"{self.host}:{self.metrics_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def raft_addr(self) -> str:
        return f"{self.host}:{self.raft_port}"

    @property
    def clock_offset_file(self) -> Path:
        """Where a clock-skewed cluster keeps this node's offset (ms; see set_clock_offset)."""
        return self.data_dir.parent / f"{self.node_id}.clock-offset-ms"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class LocalCluster:
    """N node processes on loopback with their own data dirs and log files."""

    def __init__(
        self,
        size: int = 3,
        base_dir: Path | None = None,
        *,
        durability: str = "journal",
        ports: Sequence[tuple[int, int]] | None = None,
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        proxy: bool = False,
        proxy_seed: int = 0,
        redis_ports: Sequence[int] | None = None,
        memcached_ports: Sequence[int] | None = None,
        metrics: bool = False,
        metrics_ports: Sequence[int] | None = None,
        tls: ClusterTls | None = None,
        netns: bool = False,
        clock_skew: bool = False,
        spares: int = 0,
    ) -> None:
        """`proxy`: put a NetProxy (self.net) in front of every Raft port, to cut or delay links.
        `netns`: every node in a network namespace of its own (self.netns, chaos/netns.py;
        needs root), so cuts and delays hit every port; the nodes then listen on their
        namespace's address (fixed ports), with a Raft secret and
        --insecure-allow-unauthenticated=true (a private bridge only the runner reaches).
        `clock_skew`: every node reads its wall-clock offset from a file that
        set_clock_offset() writes (RAFTCACHE_TEST_CLOCK_OFFSET_FILE, node/proposer.py).
        `metrics` (or `metrics_ports`): every node serves /metrics (off by default: counting
        gRPC calls costs an interceptor, which benchmarks should not pay unasked).
        `tls`: every client port (gRPC, Redis, memcached) speaks TLS only (off by default).
        `spares`: that many extra nodes (n<size+1>...) laid out like the others (ports,
        namespace, clock file) but not members: start() leaves them down; the membership
        nemesis starts one with --join and adds it (chaos/nemesis.py member-grow)."""
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="raftcache-cluster-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.durability = durability
        self.extra_args = list(extra_args)
        self.tls = tls
        self.env = env
        ports = ports or [(free_port(), free_port()) for _ in range(size + spares)]
        self.nodes = [
            LocalNode(
                node_id=f"n{i + 1}",
                client_port=client,
                raft_port=raft,
                data_dir=self.base_dir / f"n{i + 1}",
                log_path=self.base_dir / f"n{i + 1}.log",
            )
            for i, (client, raft) in enumerate(ports)
        ]
        for node in self.nodes[size:]:
            node.member = False
        # Every node serves Redis and memcached too (ports of their own), as `make run` shows.
        for node, port in zip(self.nodes, redis_ports or [free_port() for _ in ports], strict=True):
            node.redis_port = port
        mc_ports = memcached_ports or [free_port() for _ in ports]
        for node, port in zip(self.nodes, mc_ports, strict=True):
            node.memcached_port = port
        if metrics or metrics_ports:
            m_ports = metrics_ports or [free_port() for _ in ports]
            for node, port in zip(self.nodes, m_ports, strict=True):
                node.metrics_port = port
        if tls is not None and tls.plaintext:
            for node in self.nodes:
                node.plaintext_port, node.redis_plaintext_port = free_port(), free_port()
        self.netns: netns_mode.NetnsNetwork | None = None
        if netns:
            if proxy:
                raise ValueError("proxy and netns are two network modes: pick one")
            self._use_netns()
        if clock_skew:
            for node in self.nodes:
                node.env["RAFTCACHE_TEST_CLOCK_OFFSET_FILE"] = str(node.clock_offset_file)
                self.set_clock_offset(self.nodes.index(node), 0)
        self.net: NetProxy | None = None
        if proxy:
            for node in self.nodes:
                node.raft_bind_port = free_port()
            self.net = NetProxy(
                [
                    Route(n.node_id, ("127.0.0.1", n.raft_port), ("127.0.0.1", n.raft_bind_port))
                    for n in self.nodes
                    if n.raft_bind_port is not None
                ],
                seed=proxy_seed,
            )

    def _use_netns(self) -> None:
        net = netns_mode.NetnsNetwork([n.node_id for n in self.nodes])
        self.netns = net
        for node in self.nodes:
            node.host = net.address(node.node_id)
            node.exec_prefix = net.exec_prefix(node.node_id)
            node.client_port, node.raft_port = netns_mode.CLIENT_PORT, netns_mode.RAFT_PORT
            node.redis_port, node.memcached_port = netns_mode.REDIS_PORT, netns_mode.MEMCACHED_PORT
            node.metrics_port = netns_mode.METRICS_PORT if node.metrics_port else 0
        # Off loopback: Raft needs a secret, and the client ports users, TLS or this opt-out;
        # the bridge is private to this machine and only the runner's clients are on it.
        secret = f"chaos-{net.slot}-{random.randrange(2**32)}"
        self.extra_args += ["--raft-secret", secret, "--insecure-allow-unauthenticated=true"]

    @property
    def network(self) -> netns_mode.Network | None:
        """Whatever cuts and delays links: the namespaces, the Raft proxies, or None."""
        return self.netns if self.netns is not None else self.net

    def set_clock_offset(self, i: int, offset_ms: int) -> None:
        """Shift node i's wall clock by offset_ms (it re-reads the file within 50 ms)."""
        path = self.nodes[i].clock_offset_file
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{offset_ms}\n")
        tmp.replace(path)

    # -- processes ------------------------------------------------------------

    def command(self, i: int) -> list[str]:
        node = self.nodes[i]
        peers = ",".join(n.raft_addr for j, n in enumerate(self.nodes) if j != i and n.member)
        membership = ["--join", ",".join(node.join)] if node.join else ["--peers", peers]
        return [
            sys.executable, "-m", "raftcache.node.cli",
            "--node-id", node.node_id,
            "--data-dir", str(node.data_dir),
            "--listen", node.client_addr,
            "--raft", node.raft_addr,
            *membership,
            "--durability", self.durability,
            *(["--raft-bind", f"127.0.0.1:{node.raft_bind_port}"] if node.raft_bind_port else []),
            *(["--redis-listen", node.redis_addr] if node.redis_port else []),
            *(["--memcached-listen", node.memcached_addr] if node.memcached_port else []),
            *(["--metrics-listen", node.metrics_addr] if node.metrics_port else []),
            *(self.tls.node_args() if self.tls else []),
            *(["--plaintext-listen", f"{node.host}:{node.plaintext_port}"]
              if node.plaintext_port else []),
            *(["--redis-plaintext-listen", f"{node.host}:{node.redis_plaintext_port}"]
              if node.redis_plaintext_port else []),
            *self.extra_args,
            *node.extra_args,
        ]  # fmt: skip

    def start(self) -> LocalCluster:
        if self.netns is not None and not self.netns.ready:
            self.netns.setup()
        if self.net is not None:
            self.net.start()
        for i, node in enumerate(self.nodes):
            if node.member:
                self.start_node(i)
        return self

    def start_node(self, i: int) -> None:
        node = self.nodes[i]
        if node.running:
            raise RuntimeError(f"{node.node_id} is already running")
        log = open(node.log_path, "ab")  # noqa: SIM115 - the child keeps it
        env = {**(os.environ if self.env is None else self.env), **node.env}
        node.process = subprocess.Popen(
            [*node.exec_prefix, *self.command(i)], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        log.close()

    def add_node(self, join: Sequence[str] | None = None, extra_args: Sequence[str] = ()) -> int:
        """Start one more node that joins the running cluster (--join with `join`, by default
        every other node's Raft address); returns its index. The leader must then add it
        (Cluster.AddMember). Loopback only (not with proxy or netns)."""
        if self.net is not None or self.netns is not None:
            raise ValueError("add_node works on plain loopback clusters only")
        i = len(self.nodes)
        node = LocalNode(
            node_id=f"n{i + 1}",
            client_port=free_port(),
            raft_port=free_port(),
            data_dir=self.base_dir / f"n{i + 1}",
            log_path=self.base_dir / f"n{i + 1}.log",
            redis_port=free_port(),
            memcached_port=free_port(),
            metrics_port=free_port() if any(n.metrics_port for n in self.nodes) else 0,
        )
        node.join = list(join) if join is not None else [n.raft_addr for n in self.nodes]
        node.extra_args = list(extra_args)  # e.g. --read-replica=true
        self.nodes.append(node)
        self.start_node(i)
        return i

    def kill(self, i: int) -> None:
        """SIGKILL: no goodbye, no flush."""
        self._signal(i, signal.SIGKILL)
        self._reap(i, 10)

    def stop(self, i: int, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait: a leader hands leadership over first. Returns the exit code."""
        node = self.nodes[i]
        if not node.running:
            return None
        self._signal(i, signal.SIGTERM)
        return self._reap(i, timeout)

    def pause(self, i: int) -> None:
        self._signal(i, signal.SIGSTOP)

    def resume(self, i: int) -> None:
        self._signal(i, signal.SIGCONT)

    def restart(self, i: int) -> None:
        if self.nodes[i].running:
            self.stop(i)
        self.start_node(i)

    def close(self) -> None:
        """Stop every node this cluster started (SIGCONT first, in case one is paused)."""
        running = [i for i, node in enumerate(self.nodes) if node.running]
        for i in running:
            self.resume(i)
            self._signal(i, signal.SIGTERM)
        for i in running:
            self._reap(i, 10)
        if self.net is not None:
            self.net.close()
        if self.netns is not None:
            self.netns.close()

    def _signal(self, i: int, sig: int) -> None:
        process = self.nodes[i].process
        if process is not None and process.poll() is None:
            process.send_signal(sig)

    def _reap(self, i: int, timeout: float) -> int | None:
        process = self.nodes[i].process
        if process is None:
            return None
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(5)

    # -- cluster view ---------------------------------------------------------

    def status(self, i: int, timeout: float = 1.0) -> cluster_pb2.StatusResponse | None:
        """Node i's Status, or None if it does not answer."""
        if not self.nodes[i].running:
            return None
        with self.channel(self.nodes[i].client_addr) as channel:
            try:
                response: cluster_pb2.StatusResponse = cluster_pb2_grpc.ClusterStub(channel).Status(
                    cluster_pb2.StatusRequest(), timeout=timeout
                )
                return response
            except grpc.RpcError:
                return None

    def channel(self, address: str) -> grpc.Channel:
        """A blocking gRPC channel to a node's client port (TLS when the cluster runs it).

        Its own subchannel pool (CHANNEL_OPTIONS): gRPC otherwise shares one subchannel per
        address across the process's channels, in whatever reconnect backoff earlier failed
        connects left it; a node that was down for a minute (a spare, a removed member)
        then looked down for ~30 s more after it came back, to every fresh channel."""
        if self.tls is None:
            return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        return grpc.secure_channel(address, self.tls.channel_credentials(), CHANNEL_OPTIONS)

    def leader(self) -> int | None:
        """Index of the node that says it leads in the highest term, if any.

        During a partition a cut-off old leader keeps saying it leads (until its
        leader fallback timeout) next to the new one, which has the higher term."""
        best: tuple[int, int] | None = None
        for i in range(len(self.nodes)):
            status = self.status(i)
            claims = status is not None and status.role == cluster_pb2.LEADER
            if status is not None and claims and (best is None or status.term > best[0]):
                best = (status.term, i)
        return None if best is None else best[1]

    def wait_for_leader(self, timeout: float = 20.0, exclude: int | None = None) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None and leader != exclude:
                return leader
            time.sleep(0.05)
        raise TimeoutError(f"no leader within {timeout} s; logs in {self.base_dir}")

    def wait_until_ready(self, timeout: float = 30.0) -> int:
        """Wait until every running node knows a leader and has caught up; returns the leader."""
        deadline = time.monotonic() + timeout
        running = {n.raft_addr for n in self.nodes if n.running}
        statuses: list[cluster_pb2.StatusResponse | None] = []
        while time.monotonic() < deadline:
            statuses = [self.status(i) for i, n in enumerate(self.nodes) if n.running]
            if statuses and all(
                s is not None
                and s.leader_client_addr
                and s.applied_index >= s.leader_commit_index > 0
                and all(m.client_addr for m in s.members if m.raft_addr in running)
                for s in statuses
            ):
                return self.wait_for_leader(timeout=max(deadline - time.monotonic(), 0.1))
            time.sleep(0.05)
        seen = "; ".join(
            "down"
            if s is None
            else f"{cluster_pb2.Role.Name(s.role)} term {s.term} leader "
            f"{s.leader_client_addr or '-'} applied {s.applied_index}/{s.leader_commit_index}"
            for s in statuses
        )
        raise TimeoutError(
            f"cluster not ready within {timeout} s (last seen: {seen}); logs in "
            f"{self.base_dir}\n{self.log_tails()}"
        )

    def log_tails(self, lines: int = 12) -> str:
        """The last `lines` lines of every node's log, for a report on a failure whose
        directory a CI clone does not keep."""
        out = []
        for node in self.nodes:
            try:
                text = node.log_path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            out.append(f"--- {node.node_id} ({node.log_path.name}, last {len(text)} lines)")
            out.extend(text)
        return "\n".join(out)

    def wait_converged(self, timeout: float = 30.0) -> list[cluster_pb2.StatusResponse]:
        """Wait until every running node reports the same state digest."""
        deadline = time.monotonic() + timeout
        statuses: list[cluster_pb2.StatusResponse | None] = []
        while time.monotonic() < deadline:
            statuses = [self.status(i) for i, n in enumerate(self.nodes) if n.running]
            done = [s for s in statuses if s is not None]
            if len(done) == len(statuses) and len({s.digest for s in done}) == 1:
                return done
            time.sleep(0.1)
        raise TimeoutError(f"replicas did not converge within {timeout} s: {statuses}")

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run(args: argparse.Namespace) -> int:
    ports = [(args.base_port + i, args.base_port + 1000 + i) for i in range(args.nodes)]
    redis_ports = [args.base_port + 2000 + i for i in range(args.nodes)]
    memcached_ports = [args.base_port + 3000 + i for i in range(args.nodes)]
    metrics_ports = [args.base_port + 4000 + i for i in range(args.nodes)]
    base = Path(args.data_dir)
    cluster = LocalCluster(
        args.nodes,
        base,
        durability=args.durability,
        ports=ports,
        redis_ports=redis_ports,
        memcached_ports=memcached_ports,
        metrics_ports=metrics_ports,
    )
    print(f"starting {args.nodes} raftcache nodes (data and logs in {base}/)")
    cluster.start()
    try:
        leader = cluster.wait_until_ready(timeout=60)
        for i, node in enumerate(cluster.nodes):
            role = "leader" if i == leader else "follower"
            print(
                f"  {node.node_id}: gRPC {node.client_addr}  redis {node.redis_addr}  "
                f"memcached {node.memcached_addr}  raft {node.raft_addr}  ({role})"
            )
        print("metrics (Prometheus): " + "  ".join(n.metrics_url for n in cluster.nodes))
        first = cluster.nodes[0]
        print("\ntry (in another terminal):")
        print(f"  redis-cli -p {first.redis_port} set hello world")
        print(f"  redis-cli -p {first.redis_port} get hello")
        print(f"  printf 'get hello\\r\\n' | nc -q1 127.0.0.1 {first.memcached_port}")
        print(f"  .venv/bin/raftcache --endpoints {first.client_addr} get hello")
        print(f"  curl -s {first.metrics_url} | grep ^raftcache_")
        print("\nCtrl-C stops every node.")
        while all(n.running for n in cluster.nodes):
            time.sleep(0.5)
        print("a node exited; see its log. stopping the others.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...")
        return 0
    finally:
        cluster.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raftcache.chaos.local_cluster")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a local cluster in the foreground until Ctrl-C")
    run.add_argument("--nodes", type=int, default=3)
    run.add_argument(
        "--base-port",
        type=int,
        default=6381,
        help="client ports start here; raft ports at base + 1000, Redis + 2000, memcached + 3000",
    )
    run.add_argument("--data-dir", default="run-data")
    run.add_argument("--durability", default="journal", choices=["journal", "memory"])
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
