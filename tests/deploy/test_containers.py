"""The node image run as the dev overlay's StatefulSet would run it, in Docker: three
containers named like the pods, each with exactly the env the manifest gives it and its
Secrets (TLS certificates made at test time, a users file) mounted as the kubelet mounts
them. They elect a leader, serve the SDK, Redis and memcached clients over TLS with
credentials, lose no acknowledged write when the leader is killed, the killed pod comes back
from its volume and catches up, and a rotated certificate is served without a restart."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis
from cryptography import x509
from pymemcache.client.base import Client as MemcacheClient
from raftcache.client import Client, TlsConfig
from raftcache.node.auth import AUTHORIZATION_KEY, basic_header
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.deploy.containers import (
    Pod,
    PublishedPorts,
    StatefulSetInDocker,
    build_image,
    docker_client,
    wait_for,
)
from tests.deploy.manifests import container, one, overlay
from tests.tls_certs import Ca

pytestmark = [pytest.mark.containers, pytest.mark.timeout(600)]

OVERLAY = "dev"
READY_TIMEOUT_S = 60
# One certificate for every pod (as cert-manager's example in the README issues): the pods'
# names under the headless Service, the client Service, and 127.0.0.1 for this test, which
# reaches the pods through ports Docker publishes on loopback.
DNS_NAMES = (
    "*.raftcache-peers.raftcache.svc.cluster.local",
    "raftcache.raftcache.svc.cluster.local",
)
APP_USER = "app"


@dataclass
class Credentials:
    """What the operator put into the Secrets (made here; nothing is committed)."""

    ca: Ca
    ca_file: Path
    default_password: str
    app_password: str

    def tls_secret(self, stem: str = "raftcache") -> dict[str, bytes]:
        cert, key, _serial = self.ca.issue(stem, dns_names=DNS_NAMES)
        return {"tls.crt": cert, "tls.key": key, "ca.crt": self.ca.pem()}

    def users_secret(self) -> dict[str, bytes]:
        # The users file as README shows it: the default user needs a password (so an
        # unauthenticated client is refused), the applications' user its own.
        acl = (
            f"user default on >{self.default_password} ~* &* +@all\n"
            f"user {APP_USER} on >{self.app_password} ~* &* +@all\n"
        )
        return {"users.acl": acl.encode()}

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((AUTHORIZATION_KEY, basic_header(APP_USER, self.app_password)),)


@pytest.fixture(scope="module")
def statefulset() -> dict:
    return one(overlay(OVERLAY), "StatefulSet", "raftcache")


@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    ca = Ca.make("raftcache container test CA")
    ca_file = ca.write(tmp_path_factory.mktemp("client") / "ca.crt")
    return Credentials(ca, ca_file, secrets.token_hex(16), secrets.token_hex(16))


@pytest.fixture(scope="module")
def image() -> str:
    return build_image(docker_client())


@pytest.fixture(scope="module")
def pods(
    statefulset: dict,
    image: str,
    credentials: Credentials,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[StatefulSetInDocker]:
    client = docker_client()
    secret_data = {
        "raftcache-tls": credentials.tls_secret(),
        "raftcache-users": credentials.users_secret(),
    }
    secret_dir = str(tmp_path_factory.mktemp("secrets"))
    sts = StatefulSetInDocker.create(statefulset, image, client, secret_data, secret_dir)
    sts.grpc_metadata = credentials.metadata
    try:
        for pod in sts.pods:  # Parallel pod management: no pod waits for another
            sts.start(pod)
        yield sts
    finally:
        sts.remove()


@pytest.fixture
def cache(pods: StatefulSetInDocker, credentials: Credentials) -> Iterator[Client]:
    # Seeds: every pod, as the client Service would spread a seed over the Ready pods.
    seeds = [p.advertised for p in pods.pods]
    transport = PublishedPorts(
        pods.transport_addresses,
        TlsConfig(ca_file=str(credentials.ca_file)),
        APP_USER,
        credentials.app_password,
    )
    with Client(seeds, transport=transport, timeout=15) as client:
        yield client


def pod_ready(pods: StatefulSetInDocker, pod: Pod) -> bool:
    """What the kubelet's readiness probe sees (GET /readyz), which must agree with the
    node's grpc.health.v1 status over TLS without credentials."""
    return pods.ready(pod) and pods.health(pod, "raftcache.v1.Cache")


def all_ready(pods: StatefulSetInDocker) -> None:
    """Every pod Ready."""
    wait_for(
        "every pod to be Ready (GET /readyz 200, grpc.health.v1 SERVING over TLS)",
        lambda: all(pod_ready(pods, p) for p in pods.pods),
        READY_TIMEOUT_S,
        pods.all_logs,
    )


def leader_of(pods: StatefulSetInDocker, among: list | None = None) -> cluster_pb2.StatusResponse:
    """A Status from a pod that is the leader, as every asked pod agrees."""

    def agreed() -> cluster_pb2.StatusResponse | None:
        statuses = [pods.status(p) for p in (among or pods.pods)]
        leaders = {s.leader_id for s in statuses}
        if len(leaders) != 1 or "" in leaders:
            return None
        return next((s for s in statuses if s.role == cluster_pb2.LEADER), None)

    return wait_for("one leader all pods agree on", agreed, READY_TIMEOUT_S, pods.all_logs)


def converged(pods: StatefulSetInDocker) -> None:
    """Every pod at the same applied index with the same state digest."""

    def same() -> bool:
        statuses = [pods.status(p) for p in pods.pods]
        return len({(s.applied_index, s.digest) for s in statuses}) == 1

    wait_for("all pods to converge (same applied index and digest)", same, 30, pods.all_logs)


def stale_get(pods: StatefulSetInDocker, pod_index: int, key: bytes) -> bytes | None:
    """A STALE read served by that one pod from its own state."""
    with pods.channel(pods.pods[pod_index]) as channel:
        response = cache_pb2_grpc.CacheStub(channel).Get(
            cache_pb2.GetRequest(key=key, consistency=cache_pb2.STALE),
            timeout=2,
            metadata=pods.grpc_metadata,
        )
    return response.value if response.found else None


def test_the_pods_elect_a_leader_and_become_ready(pods: StatefulSetInDocker) -> None:
    all_ready(pods)
    leader = leader_of(pods)
    names = {p.name for p in pods.pods}
    assert leader.node_id in names
    for pod in pods.pods:
        status = pods.status(pod)
        assert status.node_id == pod.name
        assert status.client_addr == pod.advertised
        assert status.raft_addr == pod.env["RAFTCACHE_PEER_TEMPLATE"].replace("{pod}", pod.name)
        assert status.durability == "journal"
    members = wait_for(
        "every pod to announce its advertised address",
        lambda: (
            [m for m in pods.status(pods.pods[0]).members if m.client_addr][2:]
            and (pods.status(pods.pods[0]).members)
        ),
        READY_TIMEOUT_S,
        pods.all_logs,
    )
    assert {(m.id, m.client_addr) for m in members} == {(p.name, p.advertised) for p in pods.pods}


def test_the_sdk_serves_through_the_advertised_pod_names(
    pods: StatefulSetInDocker, cache: Client
) -> None:
    assert cache.set("greeting", "hello") > 0
    assert cache.get("greeting") == b"hello"
    assert cache.incr("visits", 5) == 5
    # The SDK learned all three members (their advertised pod names) from the one seed.
    assert sorted(cache._async._router.members) == sorted(p.advertised for p in pods.pods)
    for _ in range(6):  # stale reads rotate over all members
        assert cache.get("greeting", consistency="stale") == b"hello"
    converged(pods)
    assert all(stale_get(pods, i, b"greeting") == b"hello" for i in range(3))


def redis_client(addr: str, credentials: Credentials, **kwargs: object) -> redis.Redis:
    host, _, port = addr.rpartition(":")
    options: dict = {
        "ssl": True,
        "ssl_ca_certs": str(credentials.ca_file),
        "socket_timeout": 10,
        "protocol": 3,
        **kwargs,
    }
    return redis.Redis(host, int(port), **options)


def test_redis_clients_reach_every_pod_on_the_redis_port(
    pods: StatefulSetInDocker, credentials: Credentials
) -> None:
    """The StatefulSet's `redis` port: TLS and a user's password; any pod serves every
    command; a follower forwards (over TLS, verifying the leader with the Secret's ca.crt)."""
    clients = [
        redis_client(
            p.redis_published, credentials, username=APP_USER, password=credentials.app_password
        )
        for p in pods.pods
    ]
    try:
        assert clients[0].set("redis:greeting", "hello") is True
        assert clients[1].incr("redis:visits") == 1
        for r in clients:
            assert r.get("redis:greeting") == b"hello"
        roles = sorted(str(r.info("replication")["role"]) for r in clients)
        assert roles == ["master", "slave", "slave"]
        assert clients[2].acl_whoami() == APP_USER.encode()
    finally:
        for r in clients:
            r.close()


def test_every_client_port_refuses_plaintext_and_anonymous_clients(
    pods: StatefulSetInDocker, credentials: Credentials
) -> None:
    """The Secrets are not decoration: without TLS no port answers, and without a password
    the Redis port says NOAUTH (the default user has one)."""
    pod = pods.pods[0]
    anonymous = redis_client(pod.redis_published, credentials)
    try:
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("redis:greeting")
    finally:
        anonymous.close()
    wrong = redis_client(pod.redis_published, credentials, username=APP_USER, password="nope")
    try:
        with pytest.raises(redis.AuthenticationError):
            wrong.ping()
    finally:
        wrong.close()
    plain = redis.Redis(
        *_host_port(pod.redis_published),
        socket_timeout=2,
        retry=Retry(NoBackoff(), 0),  # one attempt: it must fail
    )
    try:
        with pytest.raises(redis.ConnectionError):
            plain.ping()
    finally:
        plain.close()
    with grpc.insecure_channel(pod.published) as channel, pytest.raises(grpc.RpcError):
        cache_pb2_grpc.CacheStub(channel).Get(cache_pb2.GetRequest(key=b"k"), timeout=3)
    with socket.create_connection(_host_port(pod.memcached_published), timeout=2) as raw:
        raw.sendall(b"version\r\n")
        try:
            answer = raw.recv(100)
        except (ConnectionResetError, TimeoutError):
            answer = b""
        assert not answer.startswith(b"VERSION")


def test_memcached_clients_reach_every_pod_on_the_memcached_port(
    pods: StatefulSetInDocker, credentials: Credentials
) -> None:
    """The StatefulSet's `memcached` port: pymemcache over TLS on every pod, authenticated as
    memcached -Y does (a first `set` whose value is "user password"), a set on one visible
    on the others, and auto discovery listing every pod by its DNS name."""
    clients = [
        MemcacheClient(
            _host_port(p.memcached_published),
            timeout=10,
            default_noreply=False,
            tls_context=pods.ssl_context(),
        )
        for p in pods.pods
    ]
    try:
        for c in clients:
            assert c.set("auth", f"{APP_USER} {credentials.app_password}".encode()) is True
        assert clients[1].set("mc:greeting", b"hello", flags=3) is True
        for c in clients:
            assert c.get("mc:greeting") == b"hello"
        discovery = clients[0].raw_command(b"config get cluster", b"END")
        nodes = discovery.split(b"\n")[2].decode().split()
        hosts = sorted(p.advertised.rsplit(":", 1)[0] for p in pods.pods)
        assert sorted(n.split("|")[0] for n in nodes) == hosts
        assert {n.split("|")[2] for n in nodes} == {"11211"}
    finally:
        for c in clients:
            c.close()


def _host_port(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def test_the_cli_in_the_image_shows_the_cluster_status(pods: StatefulSetInDocker) -> None:
    """README: `kubectl exec raftcache-0 -- raftcache --endpoints ... status`: the CLI
    takes the pod's RAFTCACHE_TLS_* variables, so it verifies the node with the Secret's CA."""
    pod = pods.pods[0]
    assert pod.container is not None
    result = pod.container.exec(["raftcache", "--endpoints", pod.advertised, "--json", "status"])
    assert result.exit_code == 0, result.output
    text = result.output.decode()
    for other in pods.pods:
        assert other.name in text


def test_killing_the_leader_loses_no_acknowledged_write(
    pods: StatefulSetInDocker, cache: Client
) -> None:
    old = leader_of(pods)
    victim = next(p for p in pods.pods if p.name == old.node_id)
    cache.set("before-kill", "acked")
    pods.kill(victim)
    started = time.monotonic()
    cache.set("after-kill", "acked")  # retried by the SDK until the new leader commits it
    failover_s = time.monotonic() - started
    survivors = [p for p in pods.pods if p is not victim]
    new = leader_of(pods, survivors)
    assert new.node_id != victim.name
    assert cache.get("before-kill") == b"acked"
    assert cache.get("after-kill") == b"acked"
    assert cache.incr("visits") == 6
    print(f"write after killing leader {victim.name} took {failover_s:.2f} s")
    # The two survivors stay Ready: they still know a leader (a survivor that has not
    # applied the new leader's first entries yet may answer "not ready" for a moment, which
    # the probe's failureThreshold absorbs).
    wait_for(
        "the survivors to be Ready",
        lambda: all(pod_ready(pods, p) for p in survivors),
        10,
        pods.all_logs,
    )


def test_the_killed_pod_restarts_from_its_volume_and_catches_up(
    pods: StatefulSetInDocker, cache: Client
) -> None:
    [down] = [p for p in pods.pods if not pods.running(p)]
    cache.set("while-down", "acked")
    pods.restart_in_place(down)
    wait_for(
        f"{down.name} to be Ready again",
        lambda: pod_ready(pods, down),
        READY_TIMEOUT_S,
        pods.all_logs,
    )
    status = pods.status(down)
    assert status.durability == "journal"
    converged(pods)
    assert stale_get(pods, down.ordinal, b"while-down") == b"acked"
    assert stale_get(pods, down.ordinal, b"before-kill") == b"acked"
    assert cache.get("visits") == b"6"


def test_a_graceful_stop_hands_leadership_over_within_the_grace_period(
    pods: StatefulSetInDocker, statefulset: dict
) -> None:
    """What the kubelet does to a deleted pod: the preStop hook, then SIGTERM, then SIGKILL
    once terminationGracePeriodSeconds have passed."""
    all_ready(pods)
    old = leader_of(pods)
    pod = next(p for p in pods.pods if p.name == old.node_id)
    assert pod.container is not None
    grace = statefulset["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    pre_stop = container(statefulset)["lifecycle"]["preStop"]["exec"]["command"]
    started = time.monotonic()
    try:
        result = pod.container.exec(pre_stop)  # the hook runs in the image as it is
        assert result.exit_code == 0, result.output
        wrapped = pod.container.get_wrapped_container()
        wrapped.stop(timeout=grace)  # SIGTERM, SIGKILL after the grace period
        took = time.monotonic() - started
        wrapped.reload()
        assert wrapped.attrs["State"]["ExitCode"] == 0, pods.logs(pod)
        assert took < grace, f"stopping took {took:.1f} s, the grace period is {grace} s"
        assert "leadership handed over" in wrapped.logs(tail=20).decode(), pods.logs(pod)
        survivors = [p for p in pods.pods if p is not pod]
        assert leader_of(pods, survivors).node_id != pod.name
        print(f"preStop + graceful stop of leader {pod.name}: {took:.1f} s (grace {grace} s)")
    finally:  # the tests after this one need all three pods, whatever happened here
        pods.restart_in_place(pod)
    all_ready(pods)


def reschedule_and_rejoin(
    pods: StatefulSetInDocker, cache: Client, ordinal: int, timeout: float
) -> None:
    pod = pods.pods[ordinal]
    all_ready(pods)
    old_ip = pod.ip
    pods.reschedule(pod)
    assert pod.ip != old_ip
    key = f"after-rescheduling-{pod.name}"
    cache.set(key, "acked")
    wait_for(
        f"{pod.name} to be Ready at its new IP {pod.ip}",
        lambda: pod_ready(pods, pod),
        timeout,
        pods.all_logs,
    )
    converged(pods)
    assert stale_get(pods, ordinal, key.encode()) == b"acked"


def test_a_rescheduled_pod_that_dials_its_peers_rejoins_at_a_new_ip(
    pods: StatefulSetInDocker, cache: Client
) -> None:
    # pysyncobj: of two peers only the one with the greater address dials. raftcache-2 dials
    # both others itself, resolving their names afresh in its new process.
    reschedule_and_rejoin(pods, cache, 2, READY_TIMEOUT_S)


def test_a_rescheduled_pod_that_its_peers_dial_rejoins_at_a_new_ip(
    pods: StatefulSetInDocker, cache: Client
) -> None:
    # Only the peer with the greater address dials, so raftcache-1 and -2 must re-resolve
    # raftcache-0's name: consensus caches DNS answers for 5 s, not pysyncobj's 600 s.
    reschedule_and_rejoin(pods, cache, 0, READY_TIMEOUT_S)


def served_serial(addr: str, pods: StatefulSetInDocker) -> int:
    """The serial of the certificate a new TLS handshake on `addr` gets."""
    with (
        socket.create_connection(_host_port(addr), timeout=5) as raw,
        pods.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def test_a_renewed_certificate_is_served_without_a_restart(
    pods: StatefulSetInDocker, credentials: Credentials, cache: Client
) -> None:
    """cert-manager renews the Secret, the kubelet swaps the files in the pods' volume (the
    ..data symlink), and each node serves the new certificate to new connections on every
    port within its 5 s mtime poll: no restart, no dropped client."""
    all_ready(pods)
    started = [pods.running(p) for p in pods.pods]
    ids = [p.container.get_wrapped_container().attrs["State"]["StartedAt"] for p in pods.pods]  # type: ignore[union-attr]
    old = {served_serial(p.redis_published, pods) for p in pods.pods}
    renewed = credentials.tls_secret("raftcache-renewed")
    new = x509.load_pem_x509_certificate(renewed["tls.crt"]).serial_number
    assert new not in old
    begun = time.monotonic()
    pods.update_secret("raftcache-tls", renewed)
    for pod in pods.pods:
        for addr in (pod.redis_published, pod.memcached_published, pod.published):
            wait_for(
                f"{pod.name} to serve the renewed certificate on {addr}",
                lambda addr=addr: served_serial(addr, pods) == new,  # type: ignore[misc]
                20,
                pods.all_logs,
            )
    print(
        "renewed certificate served on every port of every pod after "
        f"{time.monotonic() - begun:.1f} s"
    )
    assert [pods.running(p) for p in pods.pods] == started
    for pod, was in zip(pods.pods, ids, strict=True):
        wrapped = pod.container.get_wrapped_container()  # type: ignore[union-attr]
        wrapped.reload()
        assert wrapped.attrs["State"]["StartedAt"] == was, f"{pod.name} was restarted"
    cache.set("after-renewal", "acked")  # forwarding verifies the leader's new certificate
    assert cache.get("after-renewal") == b"acked"
    all_ready(pods)


def test_the_image_alone_refuses_to_serve_an_open_port(image: str) -> None:
    """deploy/Dockerfile's defaults listen on 0.0.0.0 with neither users nor TLS: the node
    must stop at once and say why, not serve everyone silently (RAFTCACHE_ADVERTISE is the
    one variable a plain `docker run` needs anyway)."""
    client = docker_client()
    box = client.containers.run(
        image,
        detach=True,
        environment={"RAFTCACHE_ADVERTISE": "localhost:6380"},
        labels={"raftcache-test": "1"},
    )
    try:
        result = box.wait(timeout=60)
        logs = box.logs().decode(errors="replace")
    finally:
        box.remove(force=True)
    assert result["StatusCode"] == 2, logs
    assert "refusing to serve clients on 0.0.0.0:6380, 0.0.0.0:6379, 0.0.0.0:11211" in logs
    assert "--insecure-allow-unauthenticated" in logs and "--users-file" in logs, logs


def test_the_image_runs_a_single_node_with_a_password_from_the_environment(image: str) -> None:
    """The Dockerfile's comment: RAFTCACHE_REQUIREPASS is enough for a one-node cache."""
    client = docker_client()
    password = secrets.token_hex(8)
    box = client.containers.run(
        image,
        detach=True,
        environment={"RAFTCACHE_ADVERTISE": "localhost:6380", "RAFTCACHE_REQUIREPASS": password},
        ports={"6379/tcp": ("127.0.0.1", None)},
        read_only=True,
        tmpfs={"/data": "size=64m,uid=10001,gid=10001"},
        labels={"raftcache-test": "1"},
    )
    try:

        def port() -> str | None:
            box.reload()
            bound = box.attrs["NetworkSettings"]["Ports"].get("6379/tcp")
            return bound[0]["HostPort"] if bound else None

        logs = lambda: box.logs(tail=20).decode(errors="replace")  # noqa: E731
        host_port = int(wait_for("the published Redis port", port, 20, logs))

        def answers() -> bool:
            r = redis.Redis("127.0.0.1", host_port, password=password, socket_timeout=2)
            try:
                return bool(r.set("k", "v")) and r.get("k") == b"v"
            except redis.RedisError:  # not listening yet, or no leader yet
                return False
            finally:
                r.close()

        wait_for("the single node to serve Redis with the password", answers, 30, logs)
        anonymous = redis.Redis("127.0.0.1", host_port, socket_timeout=2)
        with pytest.raises(redis.AuthenticationError):
            anonymous.get("k")
        anonymous.close()
    finally:
        box.remove(force=True)
