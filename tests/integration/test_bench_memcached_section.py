"""`make bench`'s memcached section on a real cluster and a real memcached, in miniature:
raftcache is measured through its memcached port only (set and linearizable get on the
leader, stale gets on followers restarted with --memcached-stale-reads), and the run writes
memcached.json, .md and .svg with issue 12's targets. etcd is left out here (the section
installs it when it runs whole), so no target has a verdict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import peers_report, peers_section

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
