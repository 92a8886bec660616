"""The redis bench section's pieces: redis-benchmark against several ports at once (GET from
replicas, which redis-benchmark reaches only one port at a time), measured on a real Redis
primary and its two replicas, and which row the follower-read target is computed from."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import redis

from bench import peers, redis_section

needs_redis = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-benchmark") is None,
    reason="redis-server and redis-benchmark (Debian redis-server, redis-tools; .ci/run "
    "installs them)",
)


@pytest.fixture
def group(tmp_path: Path) -> peers.RedisGroup:
    group = peers.RedisGroup(tmp_path / "redis")
    group.start()
    try:
        yield group
    finally:
        group.close()


def _gets(port: int) -> int:
    with redis.Redis(port=port) as client:
        return int(client.info("commandstats").get("cmdstat_get", {}).get("calls", 0))


@needs_redis
def test_one_redis_benchmark_per_port_shares_the_clients_and_counts_every_request(
    group: peers.RedisGroup,
) -> None:
    ports = group.replica_ports
    before = [_gets(p) for p in ports]
    row = redis_section.redis_benchmark_row(
        ports, group.pids, test="get", clients=8, keys=100, warmup=0.2, duration=0.5,
        requests=4_000,
    )  # fmt: skip
    served = [_gets(p) - b for p, b in zip(ports, before, strict=True)]
    assert served == [2_000, 2_000]  # each replica got its own half
    assert row["ops"] == 4_000
    # window_s is rounded to 10 ms; ops_per_s is every request over the unrounded window
    assert (
        4_000 / (row["window_s"] + 0.005) <= row["ops_per_s"] <= 4_000 / (row["window_s"] - 0.005)
    )
    assert row["tool"] == "redis-benchmark x2 (one per port)"
    assert all(f"-p {p} -c 4 -n 2000" in row["command"] for p in ports)
    assert set(row["cpu"]["process_pct"]) == {
        "primary", "replica-1", "replica-2", "redis-benchmark-1", "redis-benchmark-2"
    }  # fmt: skip
    assert len(row["generator_cpu_pct"]) == 2
    assert row["latency_ms"]["p99"] >= row["latency_ms"]["p50"] > 0


@needs_redis
def test_one_port_is_measured_as_before(group: peers.RedisGroup) -> None:
    before = _gets(group.primary_port)
    row = redis_section.redis_benchmark_row(
        group.primary_port, group.pids, test="get", clients=4, keys=100, warmup=0.2,
        duration=0.3,
    )  # fmt: skip
    assert _gets(group.primary_port) - before >= row["ops"] > 0  # probes, then the row
    assert row["tool"] == "redis-benchmark"
    assert "redis-benchmark" in row["cpu"]["process_pct"]
    assert row["probe_ops_per_s"]


def _row(key: str, ops: float) -> dict[str, object]:
    return {"key": key, "ops_per_s": ops, "label": key, "target": "t"}


def test_the_follower_read_target_uses_redis_benchmarks_row_when_there_is_one() -> None:
    etcd = {"rows": [_row("get_ser_64", 10_000.0)]}
    respgen_only = {"raftcache": {"rows": [_row("get_readonly_64", 40_000.0)]}, "etcd": etcd}
    both = {
        "raftcache": {
            "rows": [_row("get_readonly_64", 60_000.0), _row("get_replica_reads_64", 45_000.0)]
        },
        "etcd": etcd,
    }

    def follower_target(section: dict[str, object]) -> dict[str, object]:
        return next(t for t in redis_section.targets(section) if "READONLY" in str(t["target"]))

    assert follower_target(respgen_only)["ratio"] == 4.0
    chosen = follower_target(both)  # not the better of the two: the redis-benchmark row
    assert (chosen["raftcache"], chosen["ratio"], chosen["met"]) == (45_000.0, 4.5, False)


def test_pinned_rows_are_compared_with_the_unpinned_rows_on_both_sides_and_not_targets() -> None:
    rows = [
        _row("set_64", 20_000.0),
        _row("set_p16_64", 70_000.0),
        _row("set_64_pinned", 27_000.0),
        _row("set_p16_64_pinned", 90_000.0),
        _row("set_64_unpinned", 25_000.0),
        # no "set_p16_64_unpinned": that ratio is left out, not taken against one side
    ]
    section = {"raftcache": {"rows": rows}}
    assert redis_section.pinned_ratios(section) == {"set_64": 1.2}
    p16 = next(t for t in redis_section.targets(section) if "-P" in str(t["target"]))
    assert p16["raftcache"] == 70_000.0  # the target stays on the unpinned row


@needs_redis
def test_a_port_whose_connections_do_not_start_readonly_is_refused(
    group: peers.RedisGroup,
) -> None:
    """Redis's replicas answer CLIENT INFO with flags=N (no READONLY): were a raftcache
    follower like that, its GETs would go to the leader, so the row is skipped, not run."""
    with pytest.raises(redis_section.NotReaderEndpoint, match="flags=N"):
        redis_section._readers([f"127.0.0.1:{p}" for p in group.replica_ports])
