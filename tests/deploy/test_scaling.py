"""Scaling the StatefulSet, in Docker, as README "Scaling the voters" tells the operator:
`kubectl scale` 3 -> 5 (the new pods join through the leader by themselves, with the join
user of the Secret raftcache-join), then back to 3 one ordinal at a time (scale, then
`raftcache member remove` of the dropped ordinal), all under an SDK workload that must see
no failed request and lose no acknowledged write. And a pod of the read-replica StatefulSet
(deploy/examples/read-replicas.yaml) follows the cluster, serves stale reads, and leaves."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from raftcache.client import Client, TlsConfig
from raftcache.client.errors import ConditionFailedError
from raftcache.node.auth import AUTHORIZATION_KEY, basic_header
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2

from tests.deploy.containers import (
    Pod,
    PublishedPorts,
    StatefulSetInDocker,
    build_image,
    docker_client,
    wait_for,
)
from tests.deploy.manifests import EXAMPLES, one, overlay
from tests.tls_certs import Ca

pytestmark = [pytest.mark.containers, pytest.mark.timeout(300)]

READY_TIMEOUT_S = 60
JOIN_TIMEOUT_S = 60
DNS_NAMES = (
    "*.raftcache-peers.raftcache.svc.cluster.local",
    "*.raftcache-replicas.raftcache.svc.cluster.local",
    "raftcache.raftcache.svc.cluster.local",
)
APP_USER, JOIN_USER = "app", "join"


class Cluster:
    def __init__(self, pods: StatefulSetInDocker, ca_file: Path, app_password: str) -> None:
        self.pods = pods
        self.ca_file = ca_file
        self.app_password = app_password

    def client(self) -> Client:
        transport = PublishedPorts(
            self.pods.transport_addresses,
            TlsConfig(ca_file=str(self.ca_file)),
            APP_USER,
            self.app_password,
        )
        return Client([p.advertised for p in self.pods.pods], transport=transport, timeout=15)

    def ready(self, pod: Pod) -> bool:
        return self.pods.ready(pod)

    def leader(self) -> cluster_pb2.StatusResponse:
        def find() -> cluster_pb2.StatusResponse | None:
            for pod in self.pods.pods:
                try:
                    status = self.pods.status(pod)
                except Exception:  # a pod stopping or starting
                    continue
                if status.role == cluster_pb2.LEADER:
                    return status
            return None

        return wait_for("a leader", find, READY_TIMEOUT_S, self.pods.all_logs)

    def members(self) -> list[str]:
        return sorted(m.id for m in self.leader().members)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    statefulset = one(overlay("dev"), "StatefulSet", "raftcache")
    image = build_image(docker_client())
    ca = Ca.make("raftcache scaling test CA")
    ca_file = ca.write(tmp_path_factory.mktemp("client") / "ca.crt")
    cert, key, _serial = ca.issue("raftcache", dns_names=DNS_NAMES)
    app_password, join_password = secrets.token_hex(16), secrets.token_hex(16)
    users = (
        f"user default on >{secrets.token_hex(16)} ~* &* +@all\n"
        f"user {APP_USER} on >{app_password} ~* &* +@all\n"
        # README: the join user may add members and nothing else.
        f"user {JOIN_USER} on >{join_password} -@all +cluster|meet\n"
    )
    secret_data = {
        "raftcache-tls": {"tls.crt": cert, "tls.key": key, "ca.crt": ca.pem()},
        "raftcache-users": {"users.acl": users.encode()},
        "raftcache-join": {"username": JOIN_USER.encode(), "password": join_password.encode()},
    }
    pods = StatefulSetInDocker.create(
        statefulset,
        image,
        docker_client(),
        secret_data,
        str(tmp_path_factory.mktemp("secrets")),
    )
    pods.grpc_metadata = ((AUTHORIZATION_KEY, basic_header(APP_USER, app_password)),)
    try:
        for pod in pods.pods:
            pods.start(pod)
        cluster = Cluster(pods, ca_file, app_password)
        wait_for(
            "the three bootstrap pods to be Ready",
            lambda: all(cluster.ready(p) for p in pods.pods),
            READY_TIMEOUT_S,
            pods.all_logs,
        )
        yield cluster
    finally:
        pods.remove()


class Workload:
    """SDK writes (and linearizable reads of them) in a loop, on two threads; every
    exception is a failed request."""

    def __init__(self, cluster: Cluster, threads: int = 2) -> None:
        self.cluster = cluster
        self.acked: dict[str, str] = {}
        self.failures: list[str] = []
        self.requests = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)
        ]

    def __enter__(self) -> Workload:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _run(self, worker: int) -> None:
        with self.cluster.client() as client:
            n = 0
            while not self._stop.is_set():
                key, value = f"scale:{worker}:{n}", f"v{n}"
                try:
                    client.set(key, value)
                    with self._lock:
                        self.acked[key] = value
                    if n % 5 == 0:
                        assert client.get(key) == value.encode()
                except Exception as exc:  # counted, reported below
                    with self._lock:
                        self.failures.append(f"{key}: {type(exc).__name__}: {exc}")
                with self._lock:
                    self.requests += 1 + (n % 5 == 0)
                n += 1
                time.sleep(0.01)


def remove_member(client: Client, member: str) -> None:
    """`raftcache member remove MEMBER`, retried while the leader refuses for a moment (a
    voter still catching up after the previous change)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            client.remove_member(member)
            return
        except ConditionFailedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_scaling_the_voters_3_to_5_and_back_to_3_under_load(cluster: Cluster) -> None:
    pods = cluster.pods
    started = time.monotonic()
    with cluster.client() as admin, Workload(cluster) as load:
        time.sleep(1)
        # kubectl -n raftcache scale statefulset/raftcache --replicas=5
        new = [pods.scale_up(3), pods.scale_up(4)]
        everyone = sorted(p.name for p in pods.pods)
        wait_for(
            "raftcache-3 and raftcache-4 to join (members) and catch up (Ready)",
            lambda: cluster.members() == everyone and all(cluster.ready(p) for p in new),
            JOIN_TIMEOUT_S,
            pods.all_logs,
        )
        grown = time.monotonic() - started
        membership = admin.membership()
        assert sorted(m.node_id for m in membership.members) == everyone
        assert all(m.caught_up for m in membership.members), membership
        for pod in new:
            logs = pods.logs(pod, tail=200)
            assert "added to the cluster through the leader" in logs, logs
        # The new members serve stale reads from their own copy.
        admin.set("scaled:up", "yes")
        for pod in new:
            wait_for(
                f"{pod.name} to serve the write from its own state",
                lambda pod=pod: stale_get(pods, pod, b"scaled:up") == b"yes",
                10,
                pods.all_logs,
            )
        # A joined pod that loses its volume comes back under its old name as a member that
        # forgot what it acknowledged: it must rejoin through the leader (removed, re-added,
        # caught up) before it votes, never vote as a newcomer would.
        lost = new[0]
        pods.lose_volume(lost)
        wait_for(
            f"{lost.name} to rejoin with its new volume and catch up",
            lambda: (
                "voting again" in pods.logs(lost, tail=400)
                and cluster.members() == everyone
                and cluster.ready(lost)
            ),
            JOIN_TIMEOUT_S,
            pods.all_logs,
        )
        assert "data dir holds no state for it" in pods.logs(lost, tail=400)
        assert stale_get(pods, lost, b"scaled:up") == b"yes"
        rejoined = time.monotonic() - started
        time.sleep(1)
        # Back to 3, one ordinal at a time, highest first: scale, then remove the member.
        for pod in sorted(new, key=lambda p: -p.ordinal):
            pods.scale_down(pod)  # kubectl scale ... --replicas=N-1 (a leader hands over)
            remove_member(admin, pod.name)  # raftcache member remove raftcache-N
        assert cluster.members() == ["raftcache-0", "raftcache-1", "raftcache-2"]
        wait_for(
            "the three voters to be caught up",
            lambda: all(m.caught_up for m in admin.membership().members),
            READY_TIMEOUT_S,
            pods.all_logs,
        )
        time.sleep(1)
    took = time.monotonic() - started
    assert not load.failures, f"{len(load.failures)} of {load.requests} failed: {load.failures[:5]}"
    assert len(load.acked) > 100, load.acked
    with cluster.client() as client:
        keys = sorted(load.acked)
        for i in range(0, len(keys), 200):
            chunk = keys[i : i + 200]
            assert client.mget(chunk) == [load.acked[k].encode() for k in chunk]
    print(
        f"3 -> 5 (both joined and caught up) in {grown:.1f} s; lost volume rejoined at "
        f"{rejoined:.1f} s; 5 -> 3 done at {took:.1f} s; "
        f"{load.requests} requests, {len(load.acked)} acknowledged writes, 0 failed, "
        "all read back"
    )


def stale_get(pods: StatefulSetInDocker, pod: Pod, key: bytes) -> bytes | None:
    try:
        with pods.channel(pod) as channel:
            response = cache_pb2_grpc.CacheStub(channel).Get(
                cache_pb2.GetRequest(key=key, consistency=cache_pb2.STALE),
                timeout=2,
                metadata=pods.grpc_metadata,
            )
    except Exception:  # not serving yet
        return None
    return response.value if response.found else None


def test_a_read_replica_pod_follows_serves_stale_reads_and_leaves(cluster: Cluster) -> None:
    pods = cluster.pods
    text = (EXAMPLES / "read-replicas.yaml").read_text()
    replica_set = one([o for o in yaml.safe_load_all(text) if o], "StatefulSet")
    with cluster.client() as client:
        client.set("replica:greeting", "hello")
        voters = sorted(m.node_id for m in client.membership().members)
        # kubectl -n raftcache scale statefulset/raftcache-replica --replicas=1
        replica = pods.scale_up(0, replica_set)
        wait_for(
            f"{replica.name} to be Ready (following a leader, caught up)",
            lambda: cluster.ready(replica),
            READY_TIMEOUT_S,
            pods.all_logs,
        )
        assert stale_get(pods, replica, b"replica:greeting") == b"hello"
        client.set("replica:later", "there")
        wait_for(
            f"{replica.name} to apply a later write",
            lambda: stale_get(pods, replica, b"replica:later") == b"there",
            10,
            pods.all_logs,
        )
        # RAFTCACHE_REDIS_REPLICA_READS: a Redis client that never sends READONLY reads the
        # replica's own copy (its connection starts in READONLY: CLIENT INFO's flag r)
        host, _, port = replica.redis_published.rpartition(":")
        reader = redis.Redis(
            host, int(port), ssl=True, ssl_ca_certs=str(cluster.ca_file), socket_timeout=10,
            username=APP_USER, password=cluster.app_password,
        )  # fmt: skip
        try:
            assert reader.client_info()["flags"] == "r"
            assert reader.get("replica:later") == b"there"
        finally:
            reader.close()
        membership = client.membership()
        assert membership.read_replicas == 1
        assert sorted(m.node_id for m in membership.members) == voters  # not a member
        status = pods.status(replica)
        assert status.node_id == replica.name and status.client_addr == replica.advertised
        # kubectl -n raftcache scale statefulset/raftcache-replica --replicas=0
        pods.scale_down(replica)
        wait_for(
            "the leader to see no read replica",
            lambda: client.membership().read_replicas == 0,
            15,
            pods.all_logs,
        )
        assert sorted(m.node_id for m in client.membership().members) == voters
        assert client.get("replica:later") == b"there"
