"""The node image run as the dev overlay's StatefulSet would run it, in Docker: three
containers named like the pods, each with exactly the env the manifest gives it. They elect a
leader, serve the SDK, lose no acknowledged write when the leader is killed, and the killed
pod comes back from its volume and catches up."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from pymemcache.client.base import Client as MemcacheClient
from raftcache.client import Client
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2

from tests.deploy.containers import (
    PublishedPorts,
    StatefulSetInDocker,
    build_image,
    docker_client,
    wait_for,
)
from tests.deploy.manifests import container, one, overlay

pytestmark = [pytest.mark.containers, pytest.mark.timeout(600)]

OVERLAY = "dev"
READY_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def statefulset() -> dict:
    return one(overlay(OVERLAY), "StatefulSet", "raftcache")


@pytest.fixture(scope="module")
def pods(statefulset: dict) -> Iterator[StatefulSetInDocker]:
    client = docker_client()
    image = build_image(client)
    sts = StatefulSetInDocker.create(statefulset, image, client)
    try:
        for pod in sts.pods:  # Parallel pod management: no pod waits for another
            sts.start(pod)
        yield sts
    finally:
        sts.remove()


@pytest.fixture(scope="module")
def readiness_service(statefulset: dict) -> str:
    return container(statefulset)["readinessProbe"]["grpc"]["service"]


@pytest.fixture
def cache(pods: StatefulSetInDocker) -> Iterator[Client]:
    # Seeds: every pod, as the client Service would spread a seed over the Ready pods.
    seeds = [p.advertised for p in pods.pods]
    transport = PublishedPorts(pods.transport_addresses)
    with Client(seeds, transport=transport, timeout=15) as client:
        yield client


def all_ready(pods: StatefulSetInDocker, service: str) -> None:
    """What the readiness probe sees: every pod SERVING on the health service."""
    wait_for(
        "every pod to be Ready (grpc.health.v1 SERVING)",
        lambda: all(pods.health(p, service) for p in pods.pods),
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
    import grpc

    with grpc.insecure_channel(pods.pods[pod_index].published) as channel:
        response = cache_pb2_grpc.CacheStub(channel).Get(
            cache_pb2.GetRequest(key=key, consistency=cache_pb2.STALE), timeout=2
        )
    return response.value if response.found else None


def test_the_pods_elect_a_leader_and_become_ready(
    pods: StatefulSetInDocker, readiness_service: str
) -> None:
    all_ready(pods, readiness_service)
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


def test_redis_clients_reach_every_pod_on_the_redis_port(pods: StatefulSetInDocker) -> None:
    """The StatefulSet's `redis` port: any pod serves every command; a follower forwards."""
    clients = [
        redis.Redis(*p.redis_published.split(":"), socket_timeout=10, protocol=3) for p in pods.pods
    ]
    try:
        assert clients[0].set("redis:greeting", "hello") is True
        assert clients[1].incr("redis:visits") == 1
        for r in clients:
            assert r.get("redis:greeting") == b"hello"
        roles = sorted(str(r.info("replication")["role"]) for r in clients)
        assert roles == ["master", "slave", "slave"]
    finally:
        for r in clients:
            r.close()


def test_memcached_clients_reach_every_pod_on_the_memcached_port(
    pods: StatefulSetInDocker,
) -> None:
    """The StatefulSet's `memcached` port: pymemcache on every pod, a set on one visible on
    the others, and auto discovery listing every pod by its DNS name."""
    clients = [
        MemcacheClient(_host_port(p.memcached_published), timeout=10, default_noreply=False)
        for p in pods.pods
    ]
    try:
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
    """README: `kubectl exec raftcache-0 -- raftcache --endpoints ... status`."""
    pod = pods.pods[0]
    assert pod.container is not None
    result = pod.container.exec(["raftcache", "--endpoints", pod.advertised, "--json", "status"])
    assert result.exit_code == 0, result.output
    text = result.output.decode()
    for other in pods.pods:
        assert other.name in text


def test_killing_the_leader_loses_no_acknowledged_write(
    pods: StatefulSetInDocker, cache: Client, readiness_service: str
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
    # The two survivors stay Ready: they still know a leader.
    assert all(pods.health(p, readiness_service) for p in survivors)


def test_the_killed_pod_restarts_from_its_volume_and_catches_up(
    pods: StatefulSetInDocker, cache: Client, readiness_service: str
) -> None:
    [down] = [p for p in pods.pods if not pods.running(p)]
    cache.set("while-down", "acked")
    pods.restart_in_place(down)
    wait_for(
        f"{down.name} to be Ready again",
        lambda: pods.health(down, readiness_service),
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
    pods: StatefulSetInDocker, statefulset: dict, readiness_service: str
) -> None:
    """What the kubelet does to a deleted pod: the preStop hook, then SIGTERM, then SIGKILL
    once terminationGracePeriodSeconds have passed."""
    all_ready(pods, readiness_service)
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
    all_ready(pods, readiness_service)


def reschedule_and_rejoin(
    pods: StatefulSetInDocker, cache: Client, readiness_service: str, ordinal: int, timeout: float
) -> None:
    pod = pods.pods[ordinal]
    all_ready(pods, readiness_service)
    old_ip = pod.ip
    pods.reschedule(pod)
    assert pod.ip != old_ip
    key = f"after-rescheduling-{pod.name}"
    cache.set(key, "acked")
    wait_for(
        f"{pod.name} to be Ready at its new IP {pod.ip}",
        lambda: pods.health(pod, readiness_service),
        timeout,
        pods.all_logs,
    )
    converged(pods)
    assert stale_get(pods, ordinal, key.encode()) == b"acked"


def test_a_rescheduled_pod_that_dials_its_peers_rejoins_at_a_new_ip(
    pods: StatefulSetInDocker, cache: Client, readiness_service: str
) -> None:
    # pysyncobj: of two peers only the one with the greater address dials. raftcache-2 dials
    # both others itself, resolving their names afresh in its new process.
    reschedule_and_rejoin(pods, cache, readiness_service, 2, READY_TIMEOUT_S)


def test_a_rescheduled_pod_that_its_peers_dial_rejoins_at_a_new_ip(
    pods: StatefulSetInDocker, cache: Client, readiness_service: str
) -> None:
    # Only the peer with the greater address dials, so raftcache-1 and -2 must re-resolve
    # raftcache-0's name: consensus caches DNS answers for 5 s, not pysyncobj's 600 s.
    reschedule_and_rejoin(pods, cache, readiness_service, 0, READY_TIMEOUT_S)
