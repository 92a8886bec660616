"""`make bench`'s memcached section on a real cluster and a real memcached, in miniature:
raftcache is measured through its memcached port only (set and linearizable get on the
leader, stale gets on followers restarted with --memcached-stale-reads), and the run writes
memcached.json, .md and .svg with issue 12's targets. etcd is left out here (the section
installs it when it runs whole), so no target has a verdict."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from bench import memgen, paired, peers, peers_report, peers_section
from bench.common import running_cluster

pytestmark = pytest.mark.integration


def test_the_memcached_section_measures_the_memcached_port_beside_memcached(
    tmp_path: Path,
) -> None:
    if shutil.which("memcached") is None:
        pytest.fail("no memcached: install it (.ci/run does)")
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    work.mkdir()
    section = peers_section.run(
        work,
        out,
        [],
        keys=200,
        warmup=0.2,
        seconds=0.5,
        systems=("raftcache", "memcached"),
        interfaces=("memcached",),
        name="memcached",
    )
    assert section["failed"] == []
    ours = section["systems"]["raftcache"]["rows"]
    assert {(r["interface"], r["kind"], r["role"], r["clients"]) for r in ours} == {
        ("memcached", kind, role, clients)
        for kind, role in (("read", "leader"), ("stale", "followers"), ("write", "leader"))
        for clients in (1, 64)
    }
    assert all(r["ops_per_s"] > 0 and r["errors"] == 0 for r in ours)
    # bench/mcload.c drove every memcached row, raftcache's and memcached's
    assert section["setup"]["memcached_generator"] == "mcload"
    assert {r["generator"] for r in ours} == {"mcload"}
    assert section["systems"]["raftcache"]["memcached_stale_reads_ms"] > 0
    theirs = section["systems"]["memcached"]["rows"]
    assert {(r["kind"], r["clients"]) for r in theirs} == {
        (kind, n) for kind in ("read", "write") for n in (1, 64)
    }
    assert {r["generator"] for r in theirs} == {"mcload"}
    assert all(r["ops_per_s"] > 0 and r["errors"] == 0 for r in theirs)
    saved = json.loads((out / "memcached.json").read_text())
    assert saved["name"] == "memcached" and saved["setup"]["raftcache_interfaces"] == ["memcached"]
    text = (out / "memcached.md").read_text()
    assert text.startswith(f"## {peers_report.MEMCACHED_TITLE} (same run)")
    assert "Memcached rows driven by bench/mcload.c (C, epoll" in text
    targets = peers_report.memcached_targets(saved)
    assert [t["raftcache"] is not None for t in targets] == [True, True, True]
    # no etcd in this run: no verdicts, and the table says why
    assert [(t["met"], t["reference_missing"]) for t in targets] == [(None, "not run")] * 3
    assert "| Target (issue 12) |" in text and "| not run | — (need 5x) | — |" in text
    assert (out / "memcached.svg").read_text().startswith("<svg")
    assert not (out / "peers.json").exists()


def test_pairs_measure_the_memcached_port_back_to_back_with_a_reference(tmp_path: Path) -> None:
    """bench/paired.py on real processes: raftcache's memcached port paired with a real
    memcached (the section pairs it with etcd, which CI does not install: that wiring,
    paired.etcd_and_memcached_port, runs only in `make bench`)."""
    if shutil.which("memcached") is None:
        pytest.fail("no memcached: install it (.ci/run does)")
    server = peers.MemcachedServer(tmp_path / "memcached", memory_mb=64)
    server.start()
    try:
        asyncio.run(memgen.populate(server.addr, peers_section.MC_PREFIX, 200, 100))
        fixed = paired.Roles({"server": [server.addr]}, server.pids)
        ref = paired.Side("memcached", "memcached", peers_section.MC_PREFIX, lambda: fixed)
        pairs = (
            ("write", ("set", "mc_set", "server"), ("set", "mc_set", "leader")),
            ("stale", ("get", "mc_get", "server"), ("get (stale reads)", "mc_get", "followers")),
        )
        runner = peers_section.memcached_runner("mcload", tmp_path / "build")
        (tmp_path / "work").mkdir()
        with running_cluster(tmp_path / "work", "pairs", []) as (cluster, _):
            ours = paired.memcached_port_side(cluster, 200)
            assert len(ours.roles().addrs["followers"]) == 2
            got = paired.measure_pairs(
                ref, ours, pairs, {"write": 3.0, "stale": 5.0}, reps=2, keys=200,
                warmup=0.2, seconds=0.5, mc_runner=runner,
            )  # fmt: skip
    finally:
        server.close()
    assert [t["kind"] for t in got["targets"]] == ["write", "stale"]
    for t in got["targets"]:
        assert t["errors"] == 0 and len(t["ratios"]) == 2
        assert all(v > 0 for v in t["memcached"] + t["raftcache"])
        assert t["median_ratio"] == sum(t["ratios"]) / 2  # the median of two
        assert t["met"] is (t["median_ratio"] >= t["required"])
    assert "### The targets in pairs (2 repetitions" in peers_report.paired_table(got)
