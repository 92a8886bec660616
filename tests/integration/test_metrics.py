"""/metrics on a real 3-node cluster: every metric the dashboard and the alert rules use
is in a node's scrape, and values move when they should (hits after reads, commands by
protocol, replication lag while a follower is paused, leader changes after a leader kill)."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from pymemcache.client.base import Client as McClient
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.v1 import cache_pb2, cache_pb2_grpc

from tests.deploy.monitoring import SYNTHETIC, dashboard_exprs, metric_names, rule_exprs
from tests.integration.conftest import running_cluster

pytestmark = pytest.mark.integration

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(cluster: LocalCluster, i: int) -> Samples:
    with urllib.request.urlopen(cluster.nodes[i].metrics_url, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    tmp: Path = tmp_path_factory.mktemp("metrics")
    with running_cluster(tmp, metrics=True) as c:
        yield c


def test_every_dashboard_and_alert_metric_is_exported(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    time.sleep(1.5)  # a journal flush (once a second) has run
    names = {name for name, _ in scrape(cluster, leader)}
    used = metric_names(dashboard_exprs()) | metric_names(rule_exprs())
    assert used - SYNTHETIC - names == set()
    samples = scrape(cluster, leader)
    for kind in ("snapshot", "answer"):  # consensus/DESIGN.md: each kind, counted from 0
        key = ("raftcache_raft_stale_messages_total", frozenset({("kind", kind)}))
        assert key in samples


def test_reads_move_hits_misses_and_command_counts(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    node = cluster.nodes[leader]
    before = scrape(cluster, leader)
    r = redis.Redis(port=node.redis_port)
    r.set("metrics:k", "v")
    for _ in range(5):
        assert r.get("metrics:k") == b"v"
    for _ in range(3):
        assert r.get("metrics:absent") is None
    mc = McClient(("127.0.0.1", node.memcached_port))
    mc.set("metrics-mc", b"1")
    assert mc.get("metrics-mc") == b"1"
    mc.close()
    with grpc.insecure_channel(node.client_addr) as channel:
        cache_pb2_grpc.CacheStub(channel).Get(cache_pb2.GetRequest(key=b"metrics:k"))
    after = scrape(cluster, leader)
    assert (
        value(after, "raftcache_cache_hits_total") - value(before, "raftcache_cache_hits_total")
        >= 7
    )
    assert (
        value(after, "raftcache_cache_misses_total") - value(before, "raftcache_cache_misses_total")
        >= 3
    )
    read = {"protocol": "redis", "family": "string", "type": "read"}
    assert (
        value(after, "raftcache_commands_total", **read)
        - value(before, "raftcache_commands_total", **read)
        == 8
    )
    hist = {"protocol": "redis", "family": "string"}
    assert (
        value(after, "raftcache_command_duration_seconds_count", **hist)
        - value(before, "raftcache_command_duration_seconds_count", **hist)
        == 9
    )
    for protocol, family in (("memcached", "get"), ("memcached", "set"), ("grpc", "get")):
        labels = {"protocol": protocol, "family": family}
        assert value(after, "raftcache_commands_total", **labels) > value(
            before, "raftcache_commands_total", **labels
        ), labels
    assert value(after, "raftcache_connections_accepted_total", protocol="redis") >= 1
    assert value(after, "raftcache_items") >= 2
    assert value(after, "raftcache_memory_used_bytes") > 0
    assert value(after, "raftcache_is_leader") == 1
    assert value(after, "raftcache_commit_index") >= value(before, "raftcache_commit_index")
    r.close()


def test_pipelined_plain_sets_form_set_runs_on_a_live_leader(cluster: LocalCluster) -> None:
    # The proposer groups them only once the leader has applied its whole log
    # (Proposer._build): on a live cluster that holds between entries.
    leader = cluster.wait_for_leader()
    r = redis.Redis(port=cluster.nodes[leader].redis_port)
    runs = "raftcache_set_run_writes_total"
    before = value(scrape(cluster, leader), runs)
    pipe = r.pipeline(transaction=False)
    for i in range(50):
        pipe.set(f"runs:{i}", f"v{i}")
    assert pipe.execute() == [True] * 50
    grouped = value(scrape(cluster, leader), runs) - before
    assert grouped >= 2, grouped
    assert r.mget([f"runs:{i}" for i in range(50)]) == [f"v{i}".encode() for i in range(50)]
    pipe = r.pipeline(transaction=False)
    for i in range(20):
        pipe.set(f"runs:{i}", "x", ex=100)  # an option: not a plain SET, never grouped
    assert pipe.execute() == [True] * 20
    assert value(scrape(cluster, leader), runs) - before == grouped
    r.close()


def test_back_to_back_writes_carry_the_leaders_commit_notices(cluster: LocalCluster) -> None:
    # One client's next SET reaches the leader within the notice's 5 ms hold, so its
    # entry tells the followers the last commit (consensus/commit_notice.py).
    leader = cluster.wait_for_leader()
    r = redis.Redis(port=cluster.nodes[leader].redis_port)
    before = scrape(cluster, leader)
    for i in range(100):
        assert r.set(f"notice:{i}", "v")
    after = scrape(cluster, leader)
    held = value(after, "raftcache_commit_notices_held_total") - value(
        before, "raftcache_commit_notices_held_total"
    )
    carried = value(after, "raftcache_commit_notices_carried_total") - value(
        before, "raftcache_commit_notices_carried_total"
    )
    assert held >= 50  # nearly one per SET: each is an entry of its own
    assert 0 < carried <= held
    r.close()


def test_paused_follower_shows_replication_lag(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = next(i for i in range(3) if i != leader)
    cluster.pause(follower)
    try:
        r = redis.Redis(port=cluster.nodes[leader].redis_port)
        for i in range(20):
            r.set(f"lag:{i}", "x")
        time.sleep(1.5)
        samples = scrape(cluster, leader)
        paused = cluster.nodes[follower].raft_addr
        assert value(samples, "raftcache_replication_lag_entries", follower=paused) >= 20
        assert value(samples, "raftcache_replication_lag_seconds", follower=paused) >= 1.0
        other = next(
            n.raft_addr for i, n in enumerate(cluster.nodes) if i not in (leader, follower)
        )
        assert value(samples, "raftcache_replication_lag_seconds", follower=other) < 1.0
        r.close()
    finally:
        cluster.resume(follower)


def test_leader_kill_counts_a_leader_change(cluster: LocalCluster) -> None:
    old = cluster.wait_for_leader()
    others = [i for i in range(3) if i != old]
    before = {i: value(scrape(cluster, i), "raftcache_leader_changes_seen_total") for i in others}
    cluster.kill(old)
    try:
        cluster.wait_for_leader(exclude=old)
        deadline = time.monotonic() + 10
        while True:
            after = {i: scrape(cluster, i) for i in others}
            moved = all(
                value(after[i], "raftcache_leader_changes_seen_total") > before[i] for i in others
            )
            if moved or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert moved
        assert sum(value(after[i], "raftcache_is_leader") for i in others) == 1
        assert all(value(after[i], "raftcache_has_leader") == 1 for i in others)
        assert all(value(after[i], "raftcache_cluster_voters_reachable") == 2 for i in others)
    finally:
        cluster.start_node(old)


def readyz(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.read() == b"ready\n"
            return int(response.status)
    except urllib.error.HTTPError as exc:
        assert exc.read() == b"not ready\n"
        return int(exc.code)
    except urllib.error.URLError:
        return 0  # not listening (yet)


def test_readyz_answers_what_the_grpc_health_service_says(cluster: LocalCluster) -> None:
    """GET /readyz (the Kubernetes readiness probe: the kubelet's gRPC probe cannot speak
    TLS) is 200 exactly when the node's grpc.health.v1 status is SERVING, without
    credentials; a follower whose leader and other peer are paused answers 503."""
    leader = cluster.wait_for_leader()
    deadline = time.monotonic() + 30
    while any(readyz(n.metrics_url.replace("/metrics", "/readyz")) != 200 for n in cluster.nodes):
        assert time.monotonic() < deadline, "a node never became ready"
        time.sleep(0.2)
    for node in cluster.nodes:
        with grpc.insecure_channel(node.client_addr) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="raftcache.v1.Cache"), timeout=2
            )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    lonely = next(i for i in range(3) if i != leader)  # a follower that loses its leader
    others = [i for i in range(3) if i != lonely]
    for i in others:
        cluster.pause(i)
    try:
        deadline = time.monotonic() + 15
        url = cluster.nodes[lonely].metrics_url.replace("/metrics", "/readyz")
        while readyz(url) != 503:
            assert time.monotonic() < deadline, "a node without a leader stayed ready"
            time.sleep(0.2)
    finally:
        for i in others:
            cluster.resume(i)
    cluster.wait_for_leader()


def test_readyz_is_only_served_when_the_node_gives_a_readiness_source() -> None:
    from prometheus_client import CollectorRegistry
    from raftcache.node.metrics import MetricsServer

    head = b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
    assert MetricsServer(CollectorRegistry(), lambda: True).respond(head)[0] == "200 OK"
    assert MetricsServer(CollectorRegistry(), lambda: False).respond(head)[0].startswith("503")
    assert MetricsServer(CollectorRegistry()).respond(head)[0].startswith("404")
