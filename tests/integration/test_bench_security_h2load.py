"""The security bench's h2load gRPC cells on a real cluster: h2load's calls are served as the
bench says (Set and linearizable Get, plain and with a user's credentials, plaintext and
TLS), and calls the node refuses, which h2load counts as done (a gRPC error is an HTTP 200),
are found by the bench's check instead of being counted as served."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from raftcache.chaos.local_cluster import LocalCluster

from bench import security_section as sec
from bench.common import node_pids

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def setups(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, sec.Setup]]:
    if shutil.which("h2load") is None:
        pytest.fail("no h2load: install nghttp2-client (.ci/run does)")
    base = tmp_path_factory.mktemp("h2load")
    tls = dataclasses.replace(sec.make_tls(base / "tls"), plaintext=True)
    cluster = LocalCluster(3, base / "cluster", tls=tls)
    cluster.start()
    try:
        cluster.wait_until_ready(timeout=60)
        sec.add_app_user(cluster)
        yield {
            config: sec.Setup(config, cluster, sec.access_for(config, tls), base)
            for config in sec.CONFIGS
        }
    finally:
        cluster.close()


def _cell(setups: dict[str, sec.Setup], config: str, op: str) -> dict[str, object]:
    setup = setups[config]
    cluster = setup.cluster
    leader = cluster.wait_for_leader()
    target = sec.node_addr(cluster.nodes[leader], "grpc", tls=bool(setup.access.ca_pem))
    ops, window_s, latency, codes, errors, cpu = sec._grpc_h2load_run(
        sec.Cell(0, "grpc", op, config),
        setup,
        target,
        node_pids(cluster, leader),
        warmup=0.2,
        seconds=1.0,
    )
    return {
        "ops": ops,
        "window_s": window_s,
        "latency": latency,
        "codes": codes,
        "errors": errors,
        "cpu": cpu,
    }


@pytest.mark.parametrize("config", sec.CONFIGS)
def test_h2load_sets_then_gets_are_all_served(setups: dict[str, sec.Setup], config: str) -> None:
    for op in ("set", "get"):
        cell = _cell(setups, config, op)
        assert cell["errors"] == 0 and cell["codes"] == {}, (op, cell)
        assert isinstance(cell["ops"], int) and cell["ops"] > 50, (op, cell)
        assert 0.2 <= float(cell["window_s"]) <= 6.0  # type: ignore[arg-type]
        latency = cell["latency"]
        assert isinstance(latency, dict)
        assert 0 < latency["p50"] <= latency["p99"] < 5000, (op, latency)
        cpu = cell["cpu"]
        assert isinstance(cpu, sec.CpuReport)
        assert cpu.process_cpu_s["generator(h2load)"] > 0
        assert any(k.startswith("leader(") and v > 0 for k, v in cpu.process_cpu_s.items())


@pytest.mark.parametrize("op", ["set", "get"])
def test_calls_the_node_refuses_are_not_counted_as_served(
    setups: dict[str, sec.Setup], tmp_path: Path, op: str
) -> None:
    """A user who may not touch key:* gets PERMISSION_DENIED on every call, which h2load
    counts as succeeded; the bench's check against the served replies finds them all."""
    setup = setups["users"]
    cluster = setup.cluster
    node = cluster.nodes[cluster.wait_for_leader()]
    host, _, port = sec.node_addr(node, "resp", tls=False).rpartition(":")
    with redis.Redis(host=host, port=int(port)) as admin:
        admin.execute_command(
            "ACL", "SETUSER", "other", "on", ">other-pw", "~other:*", "+@read", "+@write"
        )
    target = sec.node_addr(node, "grpc", tls=False)
    path, body = sec.h2load_call(op)
    sec._grpc_probe(target, setup.access, *sec.h2load_call("set"))  # the key exists
    before = sec._grpc_probe(target, setup.access, path, body)
    refused = sec.Access(user="other", password="other-pw")
    with pytest.raises(grpc.RpcError) as denied:
        sec._grpc_probe(target, refused, path, body)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    body_file = tmp_path / "call.bin"
    body_file.write_bytes(body)
    argv = sec.h2load_argv(target, path, body_file, refused, calls=300)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    counts = sec.parse_h2load(done.stdout)
    assert counts["succeeded"] == 300 and counts["failed"] == 0, done.stdout  # h2load is fooled
    after = sec._grpc_probe(target, setup.access, path, body)
    assert sec.unserved_calls(op, 300, counts, before, after) == 300
