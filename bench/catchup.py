"""`catchup` section: a follower that missed a compaction catches up from the streamed snapshot.

Each trial is a fresh 3-node journal cluster with `--compaction-entries 2000`: `keys` keys of
`value_bytes` are loaded through the leader's RESP port (pipelines of 500), one follower is
SIGKILLed, 4,500 single SETs make the leader compact its log past it (a snapshot is the only
way back), and the follower is restarted. Measured from the restart until the follower's
applied index reaches the leader's: the seconds, the leader's CPU, both nodes' longest tick
gap (Status.max_tick_gap_ms over the last 60 s), the size of the leader's snapshot file, and
how many frames the follower saw cut off mid-way from its restart on (each one a link
dropped during the stream, which then starts over; none: it came through in one go).
Values are either random bytes (which no deflate shrinks) or JSON-like carts (which pack
~3-4x): how a snapshot part is framed depends on it (consensus/DESIGN.md "Snapshot parts,
pickling and the read budget"). A trial whose follower has not caught up within `timeout_s`
is reported as such and fails the section.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import redis
from raftcache.chaos.local_cluster import LocalCluster

from bench.common import load_snapshot, log, median, proc_cpu_s, running_cluster

KINDS = ("random", "json")
COMPACTION_ENTRIES = 2000
WRITES_AFTER_KILL = 4500  # single SETs, one entry each: past two compactions
CUT = "bytes into a"  # peer_guard's report of a frame cut off when a link drops


def _value(kind: str, i: int, size: int) -> bytes:
    if kind == "random":
        return os.urandom(size)
    cart = [{"sku": f"sku-{i * 7 + j}", "qty": j, "price": 9.99 + j} for j in range(size // 40)]
    text = json.dumps({"user": i, "name": f"user-{i}", "cart": cart}).encode()
    return (text * (size // max(len(text), 1) + 1))[:size]


def _cuts(cluster: LocalCluster, i: int) -> int:
    return cluster.nodes[i].log_path.read_text(errors="replace").count(CUT)


def trial(
    work_dir: Path,
    node_args: Sequence[str],
    kind: str,
    keys: int,
    value_bytes: int,
    timeout_s: float,
    keep_data: bool = False,
) -> dict[str, Any]:
    extra = [*node_args, "--compaction-entries", str(COMPACTION_ENTRIES)]
    with running_cluster(work_dir, f"catchup-{kind}", extra, keep=keep_data) as (c, leader):
        client = redis.Redis(port=c.nodes[leader].redis_port)
        try:
            for start in range(0, keys, 500):
                pipe = client.pipeline(transaction=False)
                for i in range(start, min(keys, start + 500)):
                    pipe.set(b"k:%d" % i, _value(kind, i, value_bytes))
                pipe.execute()
            follower = next(i for i in range(len(c.nodes)) if i != leader)
            c.kill(follower)
            for i in range(WRITES_AFTER_KILL):
                client.set(b"k:%d" % (i % keys), _value(kind, i, value_bytes))
            status = c.status(leader)
            if status is None:
                raise RuntimeError("the leader did not answer Status after the writes")
            target = status.applied_index
            snapshot_bytes = (c.nodes[leader].data_dir / "snapshot.lmdb").stat().st_size
            cuts = _cuts(c, follower)
            pid = c.nodes[leader].process.pid
            cpu0 = proc_cpu_s(pid) or 0.0
            started = time.monotonic()
            c.start_node(follower)
            caught_up = False
            while time.monotonic() - started < timeout_s:
                s = c.status(follower, timeout=0.5)
                if s is not None and s.applied_index >= target:
                    caught_up = True
                    break
                time.sleep(0.02)
            seconds = time.monotonic() - started
            leader_cpu = (proc_cpu_s(pid) or 0.0) - cpu0
            lead_status, follower_status = c.status(leader), c.status(follower)
        finally:
            client.close()
        return {
            "kind": kind,
            "caught_up": caught_up,
            "seconds": round(seconds, 2),
            "leader_cpu_s": round(leader_cpu, 2),
            "snapshot_mib": round(snapshot_bytes / (1 << 20), 1),
            "frames_cut": _cuts(c, follower) - cuts,
            "leader_max_tick_gap_ms": round(lead_status.max_tick_gap_ms) if lead_status else None,
            "follower_max_tick_gap_ms": (
                round(follower_status.max_tick_gap_ms) if follower_status else None
            ),
        }


def summarize(trials: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per kind: medians and ranges of the trials that caught up, and how many did not."""
    out: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        rows = [t for t in trials if t["kind"] == kind and "error" not in t]
        done = [t for t in rows if t["caught_up"]]
        entry: dict[str, Any] = {
            "trials": len([t for t in trials if t["kind"] == kind]),
            "not_caught_up": len(rows) - len(done),
        }
        for field in ("seconds", "leader_cpu_s", "follower_max_tick_gap_ms", "frames_cut"):
            values = [float(t[field]) for t in done if t.get(field) is not None]
            if values:
                entry[field] = {"median": median(values), "min": min(values), "max": max(values)}
        out[kind] = entry
    return out


def run(
    work_dir: Path,
    node_args: Sequence[str],
    trials: int = 3,
    keys: int = 100_000,
    value_bytes: int = 1000,
    timeout_s: float = 60.0,
    keep_data: bool = False,
) -> dict[str, Any]:
    section: dict[str, Any] = {
        "setup": {
            "keys": keys,
            "value_bytes": value_bytes,
            "compaction_entries": COMPACTION_ENTRIES,
            "writes_after_kill": WRITES_AFTER_KILL,
            "timeout_s": timeout_s,
        },
        "load_start": load_snapshot("catchup section start"),
        "trials": [],
    }
    for n in range(trials):
        for kind in KINDS:
            try:
                result = trial(work_dir, node_args, kind, keys, value_bytes, timeout_s, keep_data)
            except Exception as exc:  # one broken trial is reported, the others still run
                result = {"kind": kind, "error": f"{type(exc).__name__}: {exc}"}
            log(f"catchup {kind} trial {n + 1}: {result}")
            section["trials"].append(result)
    section["summary"] = summarize(section["trials"])
    section["load_end"] = load_snapshot("catchup section end")
    section["failed"] = any("error" in t or not t["caught_up"] for t in section["trials"])
    return section


def _range(stat: Mapping[str, float] | None, digits: int = 2) -> str:
    if not stat:
        return "-"
    return f"{stat['median']:.{digits}f} ({stat['min']:.{digits}f}-{stat['max']:.{digits}f})"


def markdown(section: Mapping[str, Any]) -> str:
    setup = section.get("setup", {})
    lines = [
        "## Catch-up from a streamed snapshot",
        "",
        f"{setup.get('keys')} keys of {setup.get('value_bytes')} bytes, a follower killed, "
        f"{setup.get('writes_after_kill')} single SETs (`--compaction-entries "
        f"{setup.get('compaction_entries')}`), the follower restarted; from the restart to its "
        "applied index reaching the leader's. Medians (min-max) of the trials that caught up "
        f"within {setup.get('timeout_s')} s. Load: "
        f"`{section.get('load_start', {}).get('uptime', '?')}` at the start, "
        f"`{section.get('load_end', {}).get('uptime', '?')}` at the end.",
        "",
        "| Values | Trials | Not caught up | Seconds | Leader CPU s | Follower's longest "
        "tick gap ms | Frames cut mid-stream |",
        "|---|---:|---:|---|---|---|---|",
    ]
    for kind, s in section.get("summary", {}).items():
        lines.append(
            f"| {kind} | {s['trials']} | {s['not_caught_up']} | {_range(s.get('seconds'))} "
            f"| {_range(s.get('leader_cpu_s'))} | {_range(s.get('follower_max_tick_gap_ms'), 0)} "
            f"| {_range(s.get('frames_cut'), 0)} |"
        )
    sizes = sorted({t["snapshot_mib"] for t in section.get("trials", []) if "snapshot_mib" in t})
    if sizes:
        lines += ["", f"Leader's snapshot file: {sizes[0]}-{sizes[-1]} MiB."]
    errors = [t for t in section.get("trials", []) if "error" in t]
    for t in errors:
        lines.append(f"- {t['kind']} trial failed: {t['error']}")
    return "\n".join(lines) + "\n"
