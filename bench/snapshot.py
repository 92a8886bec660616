"""Snapshot stall: force a log compaction at 1M keys under steady writes.

Status.max_tick_gap_ms is the longest gap between two consensus ticks in the last
60 s. So: load the keys, run a steady Set load, wait until the load's own stalls have
left the 60-s window, read every node's max_tick_gap_ms (the baseline: 60 s of steady
writes, no snapshot), force a snapshot, and read it again right after snapshots_taken
increments (a 60-s window that contains the snapshot) and once more 2 s later (a stall
in the compaction step that follows the dump shows up only at the next tick). The same
again for a follower, after another clean minute.
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from raftcache.chaos.local_cluster import LocalCluster
from raftcache.v1 import cluster_pb2

from bench import gcprobe, profiling
from bench.common import (
    CpuMeter,
    StatusPoller,
    latency_summary_ms,
    load_snapshot,
    log,
    node_pids,
    populate,
    proc_rss_mb,
    running_cluster,
)
from bench.loadgen import GeneratorGroup, LoadResult, LoadSpec

KEY_PREFIX = "snap-"
WRITER_CLIENTS = 16
WRITER_KEYS = 100_000
CLEAN_WINDOW_S = 62.0  # > the 60-s max_tick_gap window (1-s buckets)
TARGET_GAP_MS = 100.0
COMPACTION_ENTRIES = "1000000000"
GC_PROFILE_HZ = 20


def _node_view(s: cluster_pb2.StatusResponse | None) -> dict[str, Any]:
    if s is None:
        return {"reachable": False}
    return {
        "reachable": True,
        "role": cluster_pb2.Role.Name(s.role),
        "term": s.term,
        "leader_id": s.leader_id,
        "keys": s.keys,
        "applied_index": s.applied_index,
        "max_tick_gap_ms": round(s.max_tick_gap_ms, 1),
        "snapshots_taken": s.snapshots_taken,
    }


def _statuses(poller: StatusPoller, cluster: LocalCluster) -> dict[str, dict[str, Any]]:
    return {n.node_id: _node_view(poller.status(n.client_addr)) for n in cluster.nodes}


def _wait_keys(poller: StatusPoller, cluster: LocalCluster, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        views = _statuses(poller, cluster)
        if all(v.get("keys", 0) >= count for v in views.values()):
            return
        time.sleep(0.5)
    raise TimeoutError(f"not every node reached {count} keys within {timeout} s")


def _snapshot_on(
    poller: StatusPoller, cluster: LocalCluster, target: int, leader: int
) -> dict[str, Any]:
    node = cluster.nodes[target]
    before = _statuses(poller, cluster)
    base = before[node.node_id]
    leader_id, term = before[cluster.nodes[leader].node_id]["leader_id"], base["term"]
    terms: set[int] = set()
    leaders: set[str] = set()
    unreachable = 0
    t0 = time.monotonic()
    started = poller.snapshot(node.client_addr)
    done_at: float | None = None
    polls = 0
    while time.monotonic() < t0 + 600:
        for n in cluster.nodes:
            s = poller.status(n.client_addr, timeout=1.0)
            if s is None:
                unreachable += 1
                continue
            terms.add(s.term)
            if s.leader_id:
                leaders.add(s.leader_id)
            if n is node and s.snapshots_taken > base["snapshots_taken"]:
                done_at = time.monotonic()
        polls += 1
        if done_at is not None:
            break
        time.sleep(0.02)
    right_after = _statuses(poller, cluster)
    time.sleep(2.0)
    settled = _statuses(poller, cluster)
    for view in (*right_after.values(), *settled.values()):
        if view.get("reachable"):
            terms.add(view["term"])
            if view["leader_id"]:
                leaders.add(view["leader_id"])
    dump = node.data_dir / "snapshot.lmdb"
    leader_name = cluster.nodes[leader].node_id
    gap_after = max(
        right_after[leader_name].get("max_tick_gap_ms", math.inf),
        settled[leader_name].get("max_tick_gap_ms", math.inf),
    )
    own_gap_after = max(
        right_after[node.node_id].get("max_tick_gap_ms", math.inf),
        settled[node.node_id].get("max_tick_gap_ms", math.inf),
    )
    changed = terms != {term} or leaders != {leader_id} or unreachable > 0
    return {
        "node": node.node_id,
        "node_role": "leader" if target == leader else "follower",
        "started": started,
        "t_start": t0,
        "t_done": done_at,
        "duration_s": None if done_at is None else round(done_at - t0, 3),
        "status_polls": polls,
        "baseline": before,
        "right_after": right_after,
        "settled_2s": settled,
        "leader_tick_gap_baseline_ms": before[leader_name]["max_tick_gap_ms"],
        "leader_tick_gap_after_ms": right_after[leader_name].get("max_tick_gap_ms"),
        "leader_tick_gap_after_settled_ms": settled[leader_name].get("max_tick_gap_ms"),
        "node_tick_gap_baseline_ms": base["max_tick_gap_ms"],
        "node_tick_gap_after_ms": own_gap_after,
        "terms_seen": sorted(terms),
        "leaders_seen": sorted(leaders),
        "unreachable_polls": unreachable,
        "term_or_leader_changed": changed,
        "snapshot_raised_leader_gap": gap_after > before[leader_name]["max_tick_gap_ms"],
        "snapshot_raised_node_gap": own_gap_after > base["max_tick_gap_ms"],
        "snapshot_file_mb": round(dump.stat().st_size / 2**20, 1) if dump.exists() else None,
        "meets_target": (not changed)
        and gap_after < TARGET_GAP_MS
        and own_gap_after < TARGET_GAP_MS,
    }


def _window_stats(timeline: list[LoadResult], start: float, end: float) -> dict[str, Any]:
    lat: array[float] = array("d")
    errors = 0
    for r in timeline:
        for t, latency, ok in zip(r.t_start, r.t_latency, r.t_ok, strict=True):
            if start <= t + latency < end:
                if ok:
                    lat.append(latency)
                else:
                    errors += 1
    span = max(end - start, 1e-9)
    return {
        "window_s": round(span, 2),
        "ops_per_s": round(len(lat) / span, 1),
        "errors": errors,
        "latency_ms": {k: round(v, 2) for k, v in latency_summary_ms(lat).items()},
    }


def run(
    work_dir: Path,
    node_args: Sequence[str],
    *,
    keys: int,
    keep_data: bool,
    clean_window_s: float = CLEAN_WINDOW_S,
    out_dir: Path | None = None,
    profile: bool = False,
) -> dict[str, Any]:
    args = [*node_args, "--compaction-entries", COMPACTION_ENTRIES]
    section: dict[str, Any] = {
        "load_before": load_snapshot("snapshot start"),
        "keys": keys,
        "node_args": args,
        "method": __doc__.strip() if __doc__ else "",
        "writer_load": f"{WRITER_CLIENTS} clients, Set back-to-back to the leader over "
        f"{min(WRITER_KEYS, keys)} of the keys, 1 generator process, 100-byte values",
        "target_tick_gap_ms": TARGET_GAP_MS,
    }
    with running_cluster(work_dir, "snapshot", args, keep=keep_data) as (cluster, leader):
        addrs = [n.client_addr for n in cluster.nodes]
        poller = StatusPoller(addrs)
        group: GeneratorGroup | None = None
        try:
            log(f"snapshot: loading {keys} keys with MSet batches of 1000 from 8 clients")

            def progress(n: int) -> None:
                if n % 100_000 == 0:
                    log(f"  {n} keys")

            load_s = asyncio.run(populate(addrs, KEY_PREFIX, keys, progress=progress))
            _wait_keys(poller, cluster, keys, timeout=300)
            load_end = time.monotonic()
            leader = cluster.wait_for_leader()
            pids = node_pids(cluster, leader)
            section["load"] = {
                "seconds": round(load_s, 1),
                "keys_per_s": round(keys / load_s),
                "status_after_load": _statuses(poller, cluster),
                "rss_mb": {k: proc_rss_mb(p) for k, p in pids.items()},
                "note": "max_tick_gap_ms here covers the load itself (big MSet batches are "
                "applied on the tick thread)",
            }
            log(f"snapshot: loaded in {load_s:.1f} s; starting {WRITER_CLIENTS} steady writers")
            spec = LoadSpec(
                op="set",
                targets=(cluster.nodes[leader].client_addr,),
                clients=WRITER_CLIENTS,
                clients_per_channel=0,
                key_prefix=KEY_PREFIX,
                key_count=min(WRITER_KEYS, keys),
                timeline=True,
                seed=7,
            )
            group = GeneratorGroup([spec])
            group.start()
            snaps: list[dict[str, Any]] = []
            last_stall = load_end
            for target in (leader, next(i for i in range(3) if i != leader)):
                wait = last_stall + clean_window_s - time.monotonic()
                role = "leader" if target == leader else "follower"
                log(
                    f"snapshot: {wait:.0f} s of steady writes (clean 60-s window), then a "
                    f"snapshot on the {role} {cluster.nodes[target].node_id}"
                )
                meter = CpuMeter({**pids, **group.pids})
                meter.start()
                recorder = None
                if profile and out_dir is not None and role == "follower" and wait > 10:
                    # GC time on the leader over this window (py-spy at a low rate; the
                    # follower snapshot's own tick gap is what this window is for).
                    recorder = profiling.Recorder(
                        pids[next(k for k in pids if k.startswith("leader"))],
                        wait - 5,
                        out_dir / "profile-snapshot-window-leader.raw.txt",
                        rate_hz=GC_PROFILE_HZ,
                    )
                    recorder.start()
                time.sleep(max(wait, 0))
                window_cpu = asdict(meter.stop())
                gc_window: dict[str, Any] | None = None
                if recorder is not None:
                    try:
                        recorder.wait()
                        gc_window = profiling.gc_time(recorder.out_path, GC_PROFILE_HZ)
                        gc_window["window_s"] = round(wait - 5, 1)
                        gc_window["raw_file"] = recorder.out_path.name
                    except RuntimeError as exc:
                        gc_window = {"error": str(exc)}
                snap = _snapshot_on(poller, cluster, target, leader)
                snap["baseline_window_cpu"] = window_cpu
                if gc_window is not None:
                    snap["leader_gc_in_baseline_window"] = gc_window
                log(
                    f"  {role} snapshot took {snap['duration_s']} s; leader tick gap "
                    f"{snap['leader_tick_gap_baseline_ms']} -> {snap['leader_tick_gap_after_ms']}"
                    f" (+2 s: {snap['leader_tick_gap_after_settled_ms']}) ms; node gap "
                    f"{snap['node_tick_gap_baseline_ms']} -> {snap['node_tick_gap_after_ms']} ms;"
                    f" term/leader changed: {snap['term_or_leader_changed']}"
                )
                snaps.append(snap)
                last_stall = time.monotonic()
            time.sleep(1.0)
            group.stop()
            timeline = group.collect()
            group = None
            for snap in snaps:
                t0, t1 = snap["t_start"], snap["t_done"] or snap["t_start"]
                snap["writes_before_10s"] = _window_stats(timeline, t0 - 10, t0)
                snap["writes_during_snapshot_plus_1s"] = _window_stats(timeline, t0, t1 + 1.0)
            section["snapshots"] = snaps
            section["rss_mb_end"] = {k: proc_rss_mb(p) for k, p in pids.items()}
        finally:
            if group is not None:
                group.stop()
                group.terminate()
            poller.close()
    section["meets_target"] = all(s["meets_target"] for s in section.get("snapshots", [])) and bool(
        section.get("snapshots")
    )
    log(f"snapshot: GC probe (full gc.collect() over a {keys}-key StateMachine, offline)")
    try:
        section["gc_probe"] = gcprobe.run(keys)
    except Exception as exc:  # diagnostic only
        section["gc_probe"] = {"error": f"{type(exc).__name__}: {exc}"}
    section["load_after"] = load_snapshot("snapshot end")
    return section
