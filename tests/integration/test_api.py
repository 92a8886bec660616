"""The gRPC API on a real 3-node cluster: writes on leader and followers, reads, bad input."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2

from tests.integration.conftest import stubs_for

pytestmark = pytest.mark.integration


def _leader_and_follower(cluster: LocalCluster) -> tuple[int, int]:
    leader = cluster.wait_for_leader()
    return leader, (leader + 1) % 3


def test_writes_on_leader_and_follower_are_readable_everywhere(cluster: LocalCluster) -> None:
    leader, follower = _leader_and_follower(cluster)
    on_leader = stubs_for(cluster, leader)
    on_follower = stubs_for(cluster, follower)
    v1 = on_leader.cache.Set(cache_pb2.SetRequest(key=b"api:leader", value=b"L")).version
    v2 = on_follower.cache.Set(cache_pb2.SetRequest(key=b"api:follower", value=b"F")).version
    assert v2 > v1 > 0
    for i in range(3):
        node = stubs_for(cluster, i)
        got = node.cache.MGet(cache_pb2.MGetRequest(keys=[b"api:leader", b"api:follower"]))
        assert [(r.found, r.value) for r in got.results] == [(True, b"L"), (True, b"F")]
        node.close()
    on_leader.close()
    on_follower.close()


def test_every_write_op_through_a_follower(cluster: LocalCluster) -> None:
    _, follower = _leader_and_follower(cluster)
    s = stubs_for(cluster, follower).cache
    assert s.Incr(cache_pb2.IncrRequest(key=b"api:ctr", delta=5)).value == 5
    assert s.Incr(cache_pb2.IncrRequest(key=b"api:ctr", delta=-2)).value == 3
    versions = s.MSet(
        cache_pb2.MSetRequest(
            entries=[
                cache_pb2.KeyValue(key=b"api:m1", value=b"1"),
                cache_pb2.KeyValue(key=b"api:m2", value=b"2", ttl_ms=60_000),
            ]
        )
    ).versions
    assert len(versions) == 2 and versions[1] == versions[0] + 1
    got = s.Get(cache_pb2.GetRequest(key=b"api:m2"))
    assert got.found and 0 < got.ttl_ms <= 60_000
    assert s.Delete(cache_pb2.DeleteRequest(key=b"api:m1")).deleted
    assert not s.Delete(cache_pb2.DeleteRequest(key=b"api:m1")).deleted
    assert not s.Get(cache_pb2.GetRequest(key=b"api:m1")).found


def test_conditions_and_compare_and_set(cluster: LocalCluster) -> None:
    s = stubs_for(cluster, cluster.wait_for_leader()).cache
    v = s.Set(
        cache_pb2.SetRequest(key=b"api:cas", value=b"a", condition=cache_pb2.IF_ABSENT)
    ).version
    with pytest.raises(grpc.RpcError) as exc:
        s.Set(cache_pb2.SetRequest(key=b"api:cas", value=b"b", condition=cache_pb2.IF_ABSENT))
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "if-absent" in exc.value.details()
    with pytest.raises(grpc.RpcError) as exc:
        s.Set(cache_pb2.SetRequest(key=b"api:cas", value=b"c", expected_version=v + 100))
    assert exc.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"version is {v}" in exc.value.details()
    v2 = s.Set(cache_pb2.SetRequest(key=b"api:cas", value=b"d", expected_version=v)).version
    assert v2 > v
    assert s.Get(cache_pb2.GetRequest(key=b"api:cas")).value == b"d"


def test_incr_with_request_id_is_applied_once_under_retry(cluster: LocalCluster) -> None:
    s = stubs_for(cluster, cluster.wait_for_leader()).cache
    rid = cache_pb2.RequestId(client_id="itest-client", seq=1)
    first = s.Incr(cache_pb2.IncrRequest(key=b"api:once", delta=10, request_id=rid))
    retry = s.Incr(cache_pb2.IncrRequest(key=b"api:once", delta=10, request_id=rid))
    assert (first.value, first.version) == (retry.value, retry.version) == (10, first.version)
    assert s.Get(cache_pb2.GetRequest(key=b"api:once")).value == b"10"


def test_linearizable_read_sees_latest_acknowledged_write_on_every_node(
    cluster: LocalCluster,
) -> None:
    leader = cluster.wait_for_leader()
    writer = stubs_for(cluster, leader).cache
    readers = [stubs_for(cluster, i).cache for i in range(3)]
    for n in range(60):
        value = f"v{n}".encode()
        writer.Set(cache_pb2.SetRequest(key=b"api:lin", value=value))
        got = readers[n % 3].Get(cache_pb2.GetRequest(key=b"api:lin"))
        assert got.value == value, f"read {n} on node {n % 3} saw {got.value!r}"


def test_concurrent_writers_are_group_committed_and_all_acknowledged(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    before = stubs_for(cluster, leader).cluster.Status(cluster_pb2.StatusRequest()).applied_index
    errors: list[BaseException] = []

    def write(t: int) -> None:
        s = stubs_for(cluster, leader).cache
        try:
            for n in range(50):
                s.Set(cache_pb2.SetRequest(key=f"api:gc:{t}:{n}".encode(), value=b"x"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    after = stubs_for(cluster, leader).cluster.Status(cluster_pb2.StatusRequest()).applied_index
    keys = [f"api:gc:{t}:{n}".encode() for t in range(16) for n in range(50)]
    got = stubs_for(cluster, leader).cache.MGet(cache_pb2.MGetRequest(keys=keys))
    assert all(r.found for r in got.results)
    # 800 writes; with group commit they need far fewer log entries than writes.
    assert after - before < 800


def test_stale_reads_served_by_followers_within_bound(cluster: LocalCluster) -> None:
    leader, follower = _leader_and_follower(cluster)
    stubs_for(cluster, leader).cache.Set(cache_pb2.SetRequest(key=b"api:stale", value=b"s"))
    s = stubs_for(cluster, follower).cache
    deadline = time.monotonic() + 5
    while True:
        got = s.Get(
            cache_pb2.GetRequest(
                key=b"api:stale", consistency=cache_pb2.STALE, max_staleness_ms=2000
            )
        )
        if got.found or time.monotonic() > deadline:
            break
    assert got.value == b"s"


def test_forwarded_call_on_a_follower_answers_unavailable_with_leader_hint(
    cluster: LocalCluster,
) -> None:
    leader, follower = _leader_and_follower(cluster)
    s = stubs_for(cluster, follower).cache
    with pytest.raises(grpc.RpcError) as exc:
        s.Set(
            cache_pb2.SetRequest(key=b"api:hint", value=b"x"),
            metadata=(("x-raftcache-forwarded", "1"),),
        )
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    trailing = dict(exc.value.trailing_metadata())
    assert trailing["x-raftcache-leader"] == cluster.nodes[leader].client_addr
    assert not stubs_for(cluster, leader).cache.Get(cache_pb2.GetRequest(key=b"api:hint")).found


BAD_REQUESTS = [
    ("Set", cache_pb2.SetRequest(key=b"", value=b"v"), "key is empty"),
    ("Set", cache_pb2.SetRequest(key=b"k" * (64 * 1024 + 1), value=b"v"), "over the limit"),
    (
        "Set",
        cache_pb2.SetRequest(key=b"api:bad", value=b"v" * (4 * 1024 * 1024 + 1)),
        "over the limit",
    ),
    ("Set", cache_pb2.SetRequest(key=b"api:bad", value=b"v", ttl_ms=-5), "cannot be negative"),
    ("Set", cache_pb2.SetRequest(key=b"api:bad", value=b"v", condition=7), "unknown condition"),
    ("Get", cache_pb2.GetRequest(key=b"api:bad", consistency=9), "unknown consistency"),
    ("Incr", cache_pb2.IncrRequest(key=b"", delta=1), "key is empty"),
    ("MGet", cache_pb2.MGetRequest(keys=[]), "no keys"),
    (
        "MSet",
        cache_pb2.MSetRequest(
            entries=[
                cache_pb2.KeyValue(key=b"api:bad", value=b"v"),
                cache_pb2.KeyValue(key=b"", value=b"v"),
            ]
        ),
        "entries[1].key is empty",
    ),
    ("Delete", cache_pb2.DeleteRequest(key=b""), "key is empty"),
]


@pytest.mark.parametrize("node_role", ["leader", "follower"])
def test_bad_input_is_rejected_and_changes_nothing(cluster: LocalCluster, node_role: str) -> None:
    leader, follower = _leader_and_follower(cluster)
    s = stubs_for(cluster, leader if node_role == "leader" else follower).cache
    s.Set(cache_pb2.SetRequest(key=b"api:bad", value=b"original"))
    version = s.Get(cache_pb2.GetRequest(key=b"api:bad")).version
    for method, request, message in BAD_REQUESTS:
        with pytest.raises(grpc.RpcError) as exc:
            getattr(s, method)(request)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, request)
        assert message in exc.value.details(), exc.value.details()
    got = s.Get(cache_pb2.GetRequest(key=b"api:bad"))
    assert (got.value, got.version) == (b"original", version)


def test_status_lists_every_member_with_addresses(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    deadline = time.monotonic() + 10
    while True:
        status = stubs_for(cluster, (leader + 2) % 3).cluster.Status(cluster_pb2.StatusRequest())
        if all(m.client_addr for m in status.members) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status.leader_client_addr == cluster.nodes[leader].client_addr
    assert {m.client_addr for m in status.members} == {n.client_addr for n in cluster.nodes}
    assert {m.raft_addr for m in status.members} == {n.raft_addr for n in cluster.nodes}
    assert {m.id for m in status.members} == {"n1", "n2", "n3"}
    assert sum(m.is_leader for m in status.members) == 1
    assert status.cluster_time_ms > 1_700_000_000_000
    assert status.term >= 1 and status.applied_index > 0


def test_health_and_reflection(cluster: LocalCluster) -> None:
    for i in range(3):
        channel = grpc.insecure_channel(cluster.nodes[i].client_addr)
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "raftcache.v1.Cache"):
            got = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert got.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
        assert {"raftcache.v1.Cache", "raftcache.v1.Cluster", "grpc.health.v1.Health"} <= names
        channel.close()


def test_non_loopback_raft_without_secret_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "raftcache.node.cli",
            "--data-dir",
            str(tmp_path),
            "--raft",
            "10.1.2.3:7380",
            "--peers",
            "10.1.2.4:7380,10.1.2.5:7380",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "--raft-secret" in proc.stderr and "pickle" in proc.stderr
    assert not any(tmp_path.iterdir()), "nothing may be created when the config is refused"


def test_json_logs_carry_node_role_and_term(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    lines = cluster.nodes[leader].log_path.read_text().splitlines()
    assert lines
    # The shared cluster logs in console format; check a JSON node separately below.
    assert any("role changed" in line and "role=leader" in line for line in lines)


def test_json_log_format(tmp_path) -> None:  # type: ignore[no-untyped-def]
    c = LocalCluster(1, tmp_path, extra_args=["--log-format", "json"]).start()
    try:
        c.wait_until_ready(timeout=30)
    finally:
        c.close()
    events = [json.loads(line) for line in c.nodes[0].log_path.read_text().splitlines()]
    started = next(e for e in events if e["event"] == "node started")
    assert started["node_id"] == "n1" and "role" in started and "term" in started
    assert any(e["event"] == "role changed" and e["new_role"] == "leader" for e in events)
    assert events[-1]["event"] == "stopped"


def _listening_addresses(port: int) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, state = fields[1], fields[3]
                host, port_hex = local.rsplit(":", 1)
                if state == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                    found.add(host)
    return found


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::ffff:127.0.0.1


def test_raft_and_client_ports_listen_on_loopback_only(cluster: LocalCluster) -> None:
    for node in cluster.nodes:
        # /proc/net/tcp shows addresses in little-endian hex; 0.0.0.0 would be 00000000.
        assert _listening_addresses(node.raft_port) <= LOOPBACK, node.raft_addr
        assert _listening_addresses(node.client_port) <= LOOPBACK, node.client_addr
        assert _listening_addresses(node.raft_port) and _listening_addresses(node.client_port)


@pytest.mark.parametrize("flag", ["--listen", "--raft", "--raft-bind"])
def test_a_busy_port_stops_startup_with_a_message_naming_the_flag(tmp_path, flag) -> None:  # type: ignore[no-untyped-def]
    from raftcache.chaos.local_cluster import free_port

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    addr = f"127.0.0.1:{busy.getsockname()[1]}"
    ports = {"--listen": f"127.0.0.1:{free_port()}", "--raft": f"127.0.0.1:{free_port()}"}
    ports[flag] = addr
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "raftcache.node.cli",
                "--data-dir",
                str(tmp_path / "d"),
                "--listen",
                ports["--listen"],
                "--raft",
                ports["--raft"],
                *([flag, addr] if flag == "--raft-bind" else []),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        busy.close()
    assert proc.returncode == 1, proc.stderr
    assert f"raftcache-node: error: {flag}: cannot listen on {addr}" in proc.stderr


def test_an_mget_over_the_response_limit_is_refused_and_the_node_keeps_serving(
    cluster: LocalCluster,
) -> None:
    leader = cluster.wait_for_leader()
    channel = grpc.insecure_channel(
        cluster.nodes[leader].client_addr,
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    s = cache_pb2_grpc.CacheStub(channel)
    big = b"v" * (4 * 1024 * 1024)
    s.Set(cache_pb2.SetRequest(key=b"api:big", value=big))
    with pytest.raises(grpc.RpcError) as exc:
        s.MGet(cache_pb2.MGetRequest(keys=[b"api:big"] * 5))  # 20 MiB > 16 MiB
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "ask for fewer keys" in exc.value.details()
    got = s.MGet(cache_pb2.MGetRequest(keys=[b"api:big"] * 3), timeout=10)
    assert [r.value == big for r in got.results] == [True, True, True]
