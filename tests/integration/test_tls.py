"""TLS on every client port of a real 3-node cluster (and mTLS on another): the SDK, the
CLI, redis-py, redis-cli and pymemcache connect with the CA and fail without it; plaintext
is refused; a follower forwards over TLS; certificates rotate on disk without a restart."""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from cryptography import x509
from pymemcache.client.base import Client as McClient
from pymemcache.exceptions import MemcacheUnexpectedCloseError
from raftcache.chaos.local_cluster import ClusterTls, LocalCluster
from raftcache.client import Client, TlsConfig, UnavailableError
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2, cluster_pb2_grpc

from tests.integration.conftest import running_cluster
from tests.tls_certs import Ca

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ca() -> Ca:
    return Ca.make()


@pytest.fixture(scope="module")
def tls_cluster(
    ca: Ca, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalCluster, ClusterTls]]:
    tmp = tmp_path_factory.mktemp("tls")
    cert, key, _ = ca.write_pair(tmp, "node")
    # plaintext: every node also serves plaintext gRPC and Redis ports beside its TLS ones
    tls = ClusterTls(cert, key, ca.write(tmp / "ca.crt"), plaintext=True)
    with running_cluster(tmp / "cluster", tls=tls) as cluster:
        yield cluster, tls


@pytest.fixture(scope="module")
def mtls_cluster(
    ca: Ca, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LocalCluster, ClusterTls]]:
    tmp = tmp_path_factory.mktemp("mtls")
    cert, key, _ = ca.write_pair(tmp, "node")
    tls = ClusterTls(cert, key, ca.write(tmp / "ca.crt"), mtls=True)
    with running_cluster(tmp / "cluster", tls=tls, durability="memory", metrics=True) as cluster:
        yield cluster, tls


def follower(cluster: LocalCluster) -> int:
    leader = cluster.wait_for_leader()
    return next(i for i in range(len(cluster.nodes)) if i != leader)


def client_context(tls: ClusterTls, *, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls.ca_file))
    if with_cert:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def served_serial(port: int, tls: ClusterTls, *, alpn: bool = False) -> int:
    """The serial of the certificate a new TLS connection to 127.0.0.1:port is given."""
    context = client_context(tls)
    if alpn:
        context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


# ------------------------------------------------------------------ gRPC: SDK and CLI


def test_the_sdk_connects_with_the_ca(tls_cluster: tuple[LocalCluster, ClusterTls]) -> None:
    cluster, tls = tls_cluster
    endpoints = [n.client_addr for n in cluster.nodes]
    with Client(endpoints, tls=TlsConfig(ca_file=str(tls.ca_file))) as client:
        client.set("tls:sdk", "v")
        assert client.get("tls:sdk") == b"v"


@pytest.mark.parametrize("tls_config", [None, TlsConfig()], ids=["plaintext", "no-ca"])
def test_the_sdk_fails_without_the_ca(
    tls_cluster: tuple[LocalCluster, ClusterTls], tls_config: TlsConfig | None
) -> None:
    cluster, _ = tls_cluster
    with (
        Client(cluster.nodes[0].client_addr, timeout=1.5, tls=tls_config) as client,
        pytest.raises(UnavailableError),
    ):
        client.get("tls:sdk")


def test_plaintext_is_refused_on_the_grpc_port(
    tls_cluster: tuple[LocalCluster, ClusterTls],
) -> None:
    cluster, _ = tls_cluster
    with grpc.insecure_channel(cluster.nodes[0].client_addr) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        with pytest.raises(grpc.RpcError) as exc:
            stub.Get(cache_pb2.GetRequest(key=b"tls:sdk"), timeout=2)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


def test_the_cli_takes_the_ca_from_a_flag_or_the_environment(
    tls_cluster: tuple[LocalCluster, ClusterTls],
) -> None:
    cluster, tls = tls_cluster
    cli = [
        sys.executable,
        "-m",
        "raftcache.client.cli",
        "--endpoints",
        cluster.nodes[1].client_addr,
    ]
    run = subprocess.run(
        [*cli, "--tls-ca-file", str(tls.ca_file), "set", "tls:cli", "hello"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    env = {"RAFTCACHE_TLS_CA_FILE": str(tls.ca_file), "PATH": "/usr/bin:/bin"}
    run = subprocess.run([*cli, "get", "tls:cli"], capture_output=True, text=True, env=env)
    assert (run.returncode, run.stdout.strip()) == (0, "hello"), run.stderr
    run = subprocess.run([*cli, "--timeout", "1", "get", "tls:cli"], capture_output=True)
    assert run.returncode == 4


def test_a_write_through_a_follower_is_forwarded_over_tls(
    tls_cluster: tuple[LocalCluster, ClusterTls],
) -> None:
    cluster, tls = tls_cluster
    node = cluster.nodes[follower(cluster)]
    with cluster.channel(node.client_addr) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        stub.Set(cache_pb2.SetRequest(key=b"tls:fwd", value=b"1"), timeout=10)
    r = redis.Redis(port=node.redis_port, ssl=True, ssl_ca_certs=str(tls.ca_file))
    assert r.set("tls:fwd-resp", "2")
    leader = cluster.nodes[cluster.wait_for_leader()]
    r_leader = redis.Redis(port=leader.redis_port, ssl=True, ssl_ca_certs=str(tls.ca_file))
    assert r_leader.mget("tls:fwd", "tls:fwd-resp") == [b"1", b"2"]


# ------------------------------------------------------------------ Redis and memcached


def test_redis_py_with_ssl(tls_cluster: tuple[LocalCluster, ClusterTls]) -> None:
    cluster, tls = tls_cluster
    r = redis.Redis(port=cluster.nodes[0].redis_port, ssl=True, ssl_ca_certs=str(tls.ca_file))
    assert r.set("tls:redis", "v") and r.get("tls:redis") == b"v"


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_redis_cli_with_tls(tls_cluster: tuple[LocalCluster, ClusterTls]) -> None:
    cluster, tls = tls_cluster
    base = ["redis-cli", "-p", str(cluster.nodes[2].redis_port)]
    run = subprocess.run(
        [*base, "--tls", "--cacert", str(tls.ca_file), "set", "tls:cli-r", "x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.stdout.strip() == "OK", run.stderr
    plain = subprocess.run([*base, "get", "tls:cli-r"], capture_output=True, text=True)
    assert "x" not in plain.stdout  # the plaintext command never got an answer


def test_plaintext_is_refused_on_the_redis_port(
    tls_cluster: tuple[LocalCluster, ClusterTls],
) -> None:
    cluster, _ = tls_cluster
    r = redis.Redis(port=cluster.nodes[0].redis_port, socket_timeout=3)
    with pytest.raises(redis.ConnectionError):
        r.ping()


def test_plaintext_ports_beside_the_tls_ones_serve_the_same_keys(
    tls_cluster: tuple[LocalCluster, ClusterTls],
) -> None:
    cluster, tls = tls_cluster
    for i, node in enumerate(cluster.nodes):  # followers forward, over TLS, as before
        plain = redis.Redis(port=node.redis_plaintext_port, socket_timeout=5)
        assert plain.set(f"tls:plain:{i}", "p") and plain.get(f"tls:plain:{i}") == b"p"
    secure = redis.Redis(port=cluster.nodes[0].redis_port, ssl=True, ssl_ca_certs=str(tls.ca_file))
    assert secure.get("tls:plain:2") == b"p"
    with grpc.insecure_channel(f"127.0.0.1:{cluster.nodes[1].plaintext_port}") as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        got = stub.Get(cache_pb2.GetRequest(key=b"tls:plain:0"), timeout=10)
    assert got.found and got.value == b"p"
    # the plaintext port does not speak TLS, and the TLS port still refuses plaintext
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        served_serial(cluster.nodes[0].redis_plaintext_port, tls)
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=cluster.nodes[0].redis_port, socket_timeout=3).ping()


@pytest.mark.parametrize("flag", ["--plaintext-listen", "--redis-plaintext-listen"])
def test_a_busy_plaintext_port_stops_startup_with_a_message_naming_the_flag(
    ca: Ca, tmp_path: Path, flag: str
) -> None:
    from raftcache.chaos.local_cluster import free_port

    cert, key, _ = ca.write_pair(tmp_path, "node")
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    addr = f"127.0.0.1:{busy.getsockname()[1]}"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "raftcache.node.cli",
             "--data-dir", str(tmp_path / "d"),
             "--listen", f"127.0.0.1:{free_port()}", "--raft", f"127.0.0.1:{free_port()}",
             "--redis-listen", f"127.0.0.1:{free_port()}",
             "--tls-cert-file", str(cert), "--tls-key-file", str(key),
             "--tls-ca-file", str(ca.write(tmp_path / "ca.crt")),
             flag, addr],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    finally:
        busy.close()
    assert proc.returncode == 1, proc.stderr
    assert f"raftcache-node: error: {flag}: cannot listen on {addr}" in proc.stderr


def test_pymemcache_with_an_ssl_context(tls_cluster: tuple[LocalCluster, ClusterTls]) -> None:
    cluster, tls = tls_cluster
    for node in cluster.nodes:  # a follower forwards the set
        mc = McClient(("127.0.0.1", node.memcached_port), tls_context=client_context(tls))
        key = f"tls:mc:{node.node_id}"
        assert mc.set(key, b"v", noreply=False)
        assert mc.get(key) == b"v"
        mc.close()


def test_snapshots_fork_while_tls_credentials_are_live(
    tls_cluster: tuple[LocalCluster, ClusterTls],
) -> None:
    """The snapshot writer forks; dynamic gRPC credentials were once reported to deadlock
    with fork(). Each node snapshots, then still answers new TLS connections."""
    cluster, tls = tls_cluster
    for node in cluster.nodes:
        with cluster.channel(node.client_addr) as channel:
            cluster_pb2_grpc.ClusterStub(channel).Snapshot(
                cluster_pb2.SnapshotRequest(), timeout=10
            )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        statuses = [cluster.status(i, timeout=2) for i in range(len(cluster.nodes))]
        if all(s is not None and s.snapshots_taken > 0 for s in statuses):
            break
        time.sleep(0.2)
    assert all(s is not None and s.snapshots_taken > 0 for s in statuses), statuses
    for node in cluster.nodes:
        assert served_serial(node.redis_port, tls) > 0


# ------------------------------------------------------------------ rotation


def wait_for_serial(port: int, tls: ClusterTls, serial: int, timeout: float, alpn: bool) -> None:
    deadline = time.monotonic() + timeout
    while served_serial(port, tls, alpn=alpn) != serial:
        assert time.monotonic() < deadline, f"port {port} never served serial {serial:x}"
        time.sleep(0.2)


def rotate(ca: Ca, tls: ClusterTls, tmp: Path) -> int:
    """Write a new pair over the cluster's files (atomically, as cert-manager does)."""
    cert, key, serial = ca.write_pair(tmp, f"rotated-{time.monotonic_ns()}")
    shutil.copy(key, tls.key_file.with_suffix(".key.new"))
    shutil.copy(cert, tls.cert_file.with_suffix(".crt.new"))
    tls.key_file.with_suffix(".key.new").replace(tls.key_file)
    tls.cert_file.with_suffix(".crt.new").replace(tls.cert_file)
    return serial


def test_a_rotated_certificate_is_served_to_new_connections_only(
    ca: Ca, tls_cluster: tuple[LocalCluster, ClusterTls], tmp_path: Path
) -> None:
    cluster, tls = tls_cluster
    node = cluster.nodes[0]
    assert node.process is not None
    old_redis = redis.Redis(port=node.redis_port, ssl=True, ssl_ca_certs=str(tls.ca_file))
    assert old_redis.set("tls:rot", "before")
    old_mc = McClient(("127.0.0.1", node.memcached_port), tls_context=client_context(tls))
    assert old_mc.set("tls:rot-mc", b"before", noreply=False)
    old_sdk = Client(node.client_addr, tls=TlsConfig(ca_file=str(tls.ca_file)))
    old_sdk.set("tls:rot-sdk", "before")
    before = served_serial(node.redis_port, tls)

    serial = rotate(ca, tls, tmp_path)  # SIGHUP: reloaded at once
    node.process.send_signal(signal.SIGHUP)
    wait_for_serial(node.redis_port, tls, serial, 5, alpn=False)
    assert serial != before
    assert served_serial(node.memcached_port, tls) == serial
    wait_for_serial(node.client_port, tls, serial, 5, alpn=True)
    assert old_redis.get("tls:rot") == b"before"  # old connections keep working
    assert old_mc.get("tls:rot-mc") == b"before"
    assert old_sdk.get("tls:rot-sdk") == b"before"

    serial = rotate(ca, tls, tmp_path)  # no signal: the mtime poll (every 5 s)
    wait_for_serial(node.redis_port, tls, serial, 12, alpn=False)
    wait_for_serial(node.client_port, tls, serial, 5, alpn=True)
    assert old_redis.get("tls:rot") == b"before"
    old_sdk.close()
    old_mc.close()


# ------------------------------------------------------------------ mTLS


def test_mtls_refuses_a_client_without_a_certificate(
    mtls_cluster: tuple[LocalCluster, ClusterTls],
) -> None:
    cluster, tls = mtls_cluster
    node = cluster.nodes[0]
    with (
        Client(node.client_addr, timeout=1.5, tls=TlsConfig(ca_file=str(tls.ca_file))) as c,
        pytest.raises(UnavailableError),
    ):
        c.get("k")
    r = redis.Redis(port=node.redis_port, ssl=True, ssl_ca_certs=str(tls.ca_file))
    with pytest.raises(redis.ConnectionError):
        r.ping()
    mc = McClient(("127.0.0.1", node.memcached_port), tls_context=client_context(tls))
    # TLS 1.3: the server checks the client's certificate after the client's handshake ends,
    # so the refusal shows up as the connection closing on the first command.
    with pytest.raises((OSError, MemcacheUnexpectedCloseError)):
        mc.get("k")


def test_failed_handshakes_are_counted_per_port_and_a_left_probe_is_not(
    mtls_cluster: tuple[LocalCluster, ClusterTls],
) -> None:
    """Plaintext on a TLS port and a client without a certificate under mTLS are failed
    authentications: counted in raftcache_tls_handshake_failures_total{protocol} and
    logged; a TCP probe that connects and leaves is not counted."""
    from tests.integration.test_metrics import scrape, value

    cluster, tls = mtls_cluster
    node = cluster.nodes[0]

    def failures() -> dict[str, float]:
        samples = scrape(cluster, 0)
        return {
            p: value(samples, "raftcache_tls_handshake_failures_total", protocol=p)
            for p in ("redis", "memcached")
        }

    def settled(expected: dict[str, float]) -> None:
        deadline = time.monotonic() + 5
        while (got := failures()) != expected:
            assert time.monotonic() < deadline, f"failures {got}, expected {expected}"
            time.sleep(0.05)

    before = failures()
    for port in (node.redis_port, node.memcached_port):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # a probe
    time.sleep(0.3)
    settled(before)
    with socket.create_connection(("127.0.0.1", node.redis_port), timeout=5) as plain:
        plain.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert plain.recv(100) == b""  # closed: no reply in plaintext
    settled({**before, "redis": before["redis"] + 1})
    mc = McClient(("127.0.0.1", node.memcached_port), tls_context=client_context(tls))
    with pytest.raises((OSError, MemcacheUnexpectedCloseError)):
        mc.get("k")  # no client certificate
    settled({"redis": before["redis"] + 1, "memcached": before["memcached"] + 1})
    log = node.log_path.read_text()
    assert "TLS handshake failed" in log
    # logged with the reason (at most once per port per interval: which one is not fixed)
    assert "WRONG_VERSION_NUMBER" in log or "PEER_DID_NOT_RETURN_A_CERTIFICATE" in log


def test_mtls_clients_with_a_certificate_and_forwarding(
    mtls_cluster: tuple[LocalCluster, ClusterTls],
) -> None:
    """Every node's certificate also serves as its client certificate when it forwards."""
    cluster, tls = mtls_cluster
    pair = {"cert_file": str(tls.cert_file), "key_file": str(tls.key_file)}
    node = cluster.nodes[follower(cluster)]
    with Client(node.client_addr, tls=TlsConfig(ca_file=str(tls.ca_file), **pair)) as c:
        c.set("m:sdk", "1")
    r = redis.Redis(
        port=node.redis_port,
        ssl=True,
        ssl_ca_certs=str(tls.ca_file),
        ssl_certfile=str(tls.cert_file),
        ssl_keyfile=str(tls.key_file),
    )
    assert r.set("m:resp", "2")  # a follower: relayed to the leader over mTLS
    mc = McClient(
        ("127.0.0.1", node.memcached_port), tls_context=client_context(tls, with_cert=True)
    )
    assert mc.set("m:mc", b"3", noreply=False)
    assert r.mget("m:sdk", "m:resp", "m:mc") == [b"1", b"2", b"3"]
    run = subprocess.run(
        [
            "redis-cli", "-p", str(node.redis_port), "--tls", "--cacert", str(tls.ca_file),
            "--cert", str(tls.cert_file), "--key", str(tls.key_file), "get", "m:resp",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )  # fmt: skip
    assert run.stdout.strip() == "2", run.stderr
