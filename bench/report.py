"""bench.md: the results as markdown tables, next to the targets."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from bench import redis_section, sdk, typed


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _met(value: bool | None) -> str:
    return "—" if value is None else ("✅ yes" if value else "❌ no")


def _generator(row: dict[str, Any]) -> str:
    procs = row["generator_processes"]
    per = row["clients"] // procs
    who = f"{procs} procs x {per}" if procs > 1 else "1 proc"
    return f"{who}, {row['channels']}"


def _node_cpu(row: dict[str, Any]) -> str:
    parts = []
    for name, pct in row["cpu"]["process_pct"].items():
        if not name.startswith("generator"):
            parts.append(f"{name.split('(')[0].replace('follower-', 'f')} {pct:.0f}")
    return " / ".join(parts)


def _throughput(section: dict[str, Any], out: list[str]) -> None:
    add = out.append
    add("## Throughput and latency")
    add("")
    setup = section.get("setup", {})
    add(
        f"3 nodes on loopback, {setup.get('key_space', '?'):,} pre-populated keys, 100-byte values,"
        f" {setup.get('warmup_s')} s warm-up + {setup.get('duration_s')} s measured per row, closed"
        " loop (each client sends its next request when the previous one returns). Writes and "
        "LINEARIZABLE reads go straight to the leader; STALE reads rotate over all 3 nodes. "
        "Reference = etcd 3.4's published numbers; our target is at least those."
    )
    add("")
    add(
        "| Operation | Clients | Generator | ops/s | p50 ms | p99 ms | max ms | Reference ops/s "
        "| Target met | Node CPU % (leader / f-a / f-b) | Gen CPU % | Leader CPU µs/op | Errors |"
    )
    add("|---|---:|---|---:|---:|---:|---:|---:|---|---|---|---:|---:|")
    for row in section.get("results", []):
        lat = row["latency_ms"]
        met_parts = []
        sys_pct = (row.get("leader_sys_share") or 0.0) * 100
        if row.get("meets_ops_target") is not None:
            met_parts.append(_met(row["meets_ops_target"]))
        if row.get("meets_p50_target") is not None:
            met_parts.append(f"p50<{row['target_p50_ms']:.0f}ms {_met(row['meets_p50_target'])}")
        add(
            f"| {row['label']} | {row['clients']} | {_generator(row)} | {_num(row['ops_per_s'], 0)}"
            f" | {_num(lat['p50'], 2)} | {_num(lat['p99'], 2)} | {_num(lat['max'], 1)}"
            f" | {_num(row.get('reference_ops_per_s'), 0)} | {' '.join(met_parts) or '—'}"
            f" | {_node_cpu(row)} | {' + '.join(f'{p:.0f}' for p in row['generator_cpu_pct'])}"
            f" | {_num(row['leader_cpu_us_per_op'], 0)} ({sys_pct:.0f}% sys) | {row['errors']} |"
        )
    add("")
    idle = section.get("idle_cpu")
    if idle:
        add(
            "Idle cluster (no clients, 5 s): node CPU % "
            + ", ".join(f"{k} {v:.0f}" for k, v in idle["process_pct"].items())
            + ". Leader CPU µs/op = the leader's whole-process CPU time in the window / ops "
            "(includes that idle floor); 'sys' = share of it in the kernel."
        )
        add("")
    test = section.get("channel_test")
    if test:
        add(
            f"**Generator channel layout** (64 clients, 1 process, short runs): "
            f"{', '.join(f'{k}: {v:,.0f} ops/s (geomean of Set and STALE Get)' for k, v in test['geomean_ops_per_s'].items())}"  # noqa: E501
            f" → chose **{test['chosen']}** for the 64-client rows."
        )
        add("")
    add("**Generator processes per row:**")
    add("")
    for row in section.get("results", []):
        variants = row.get("variants") or []
        extra = ""
        if variants:
            extra = "; tried " + ", ".join(
                f"{v['generator_processes']} proc: {v['ops_per_s']:,.0f} ops/s, gen CPU "
                f"{'+'.join(f'{p:.0f}' for p in v['generator_cpu_pct'])}%, main-thread demand "
                f"{v['generator_main_thread_demand']}"
                for v in variants
            )
        add(
            f"- {row['label']} x {row['clients']}: {row['chosen_because']}{extra}. "
            f"Machine busy {row['cpu']['system_busy_pct']:.0f}% of one core "
            f"(unaccounted/other processes {row['cpu']['unaccounted_pct']:.0f}%); "
            f"snapshots during run: {row.get('snapshots_during_run')}; "
            f"term changed: {_num(row.get('term_changed'))}."
        )
    add("")


def _failover(section: dict[str, Any], out: list[str]) -> None:
    add = out.append
    add("## Failover (SIGKILL the leader under steady writes)")
    add("")
    add(section.get("method", ""))
    add("")
    add(
        "| Trial | Killed | Old term | New leader | New term | New leader seen (s) "
        "| First write on new leader (s) | Failed attempts | Restarted node ready (s) |"
    )
    add("|---:|---|---:|---|---:|---:|---:|---:|---:|")
    for t in section.get("trials", []):
        add(
            f"| {t['trial']} | {t['killed_leader']} | {t['old_term']} | {t['new_leader']} | "
            f"{t['new_term']} | {_num(t['leader_seen_s'], 3)} | "
            f"**{_num(t['first_write_s'], 3)}** | "
            f"{t['failed_attempts_after_kill']} | {_num(t['restarted_node_ready_s'], 2)} |"
        )
    add("")
    add(
        "Median time to first write on the new leader: "
        f"**{_num(section.get('median_first_write_s'), 3)} s**"
        f" (max {_num(section.get('max_first_write_s'), 3)} s;"
        f" target < {section.get('target_s')} s:"
        f" {_met(section.get('meets_target'))})."
    )
    add("")


def _snapshot(section: dict[str, Any], out: list[str]) -> None:
    add = out.append
    add(f"## Snapshot stall ({section.get('keys', 0):,} keys)")
    add("")
    load = section.get("load", {})
    if load:
        gaps = ", ".join(
            f"{k} {v.get('max_tick_gap_ms')}" for k, v in load["status_after_load"].items()
        )
        add(
            f"Loaded {section['keys']:,} keys in {load['seconds']} s "
            f"({load['keys_per_s']:,} keys/s)"
            f" with MSet batches of 1000. Max tick gap over the load (ms): {gaps}. "
            f"Node RSS after load (MB): {load['rss_mb']}. Snapshots taken during load: "
            f"{[v.get('snapshots_taken') for v in load['status_after_load'].values()]}."
        )
        add("")
    add(
        f"Steady load during the snapshots: {section.get('writer_load', '')}. "
        "Baseline = max_tick_gap_ms over the 60 s before the snapshot (steady writes, no "
        "snapshot); after = the same 60-s metric read right after snapshots_taken "
        "incremented (and 2 s later)."
    )
    add("")
    add(
        "| Snapshot on | Duration s | Leader tick gap ms: baseline → after (+2 s) "
        "| Node's own tick gap ms: baseline → after | Term/leader changed | Set p99 / max ms "
        "before → during | Set errors during | File MB | Target met |"
    )
    add("|---|---:|---|---|---|---|---:|---:|---|")
    for s in section.get("snapshots", []):
        before = s.get("writes_before_10s", {}).get("latency_ms", {})
        during = s.get("writes_during_snapshot_plus_1s", {})
        dl = during.get("latency_ms", {})
        add(
            f"| {s['node_role']} {s['node']} | {_num(s['duration_s'], 2)} | "
            f"{_num(s['leader_tick_gap_baseline_ms'])} → {_num(s['leader_tick_gap_after_ms'])} "
            f"({_num(s['leader_tick_gap_after_settled_ms'])}) | "
            f"{_num(s['node_tick_gap_baseline_ms'])} → {_num(s['node_tick_gap_after_ms'])} | "
            f"{_num(s['term_or_leader_changed'])} (terms {s['terms_seen']}) | "
            f"{_num(before.get('p99'))} / {_num(before.get('max'))} → "
            f"{_num(dl.get('p99'))} / {_num(dl.get('max'))} | {during.get('errors', '—')} | "
            f"{_num(s.get('snapshot_file_mb'))} | {_met(s['meets_target'])} |"
        )
    add("")
    for s in section.get("snapshots", []):
        cpu = s.get("baseline_window_cpu")
        if cpu:
            add(
                f"- Baseline window before the {s['node_role']} snapshot: machine busy "
                f"{cpu['system_busy_pct']:.0f}% of one core, of which "
                f"{cpu['unaccounted_pct']:.0f}% not ours (other users); node CPU % "
                + ", ".join(f"{k} {v:.0f}" for k, v in cpu["process_pct"].items())
                + "."
            )
        gc_window = s.get("leader_gc_in_baseline_window")
        if gc_window and "error" not in gc_window:
            add(
                f"- py-spy on the leader over that window ({gc_window['window_s']} s, "
                f"{gc_window['rate_hz']} Hz): {gc_window['gc_seconds']} s inside CPython's "
                f"cyclic GC (gc_collect_*), by thread {gc_window['gc_samples_by_thread']}."
            )
    for s in section.get("snapshots", []):
        raised = s.get("snapshot_raised_leader_gap") or s.get("snapshot_raised_node_gap")
        add(
            f"- {s['node_role']} snapshot: "
            + (
                "raised the 60-s max tick gap above its baseline"
                if raised
                else "did NOT raise the 60-s max tick gap above the no-snapshot baseline (any "
                "stall it caused was shorter than the background gaps)"
            )
            + "."
        )
    add("")
    _gc_probe(section, out)


def _gc_probe(section: dict[str, Any], out: list[str]) -> None:
    probe = section.get("gc_probe")
    if not probe or "error" in probe:
        return
    out.append(
        f"GC probe (offline, same StateMachine code, {probe['keys']:,} keys): "
        f"{probe['gc_tracked_objects']:,} GC-tracked objects ({probe['entry_type']} values "
        f"tracked: {_num(probe['entry_gc_tracked'])}); one full `gc.collect()` takes "
        f"{probe['full_collect_cpu_ms']} ms of CPU with the GIL held. What-if with the values as "
        f"plain tuples: {probe['what_if_plain_tuples']['gc_tracked_objects']:,} tracked objects, "
        f"{probe['what_if_plain_tuples']['full_collect_cpu_ms']} ms; after `gc.freeze()`: "
        f"{probe['what_if_gc_freeze']['full_collect_cpu_ms']} ms."
    )
    out.append("")


def _profile(section: dict[str, Any], out: list[str]) -> None:
    profile = section.get("profile")
    if not profile:
        return
    data = profile["summary"]
    add = out.append
    add("## Leader profile (py-spy, 64-client Set)")
    add("")
    add(
        f"{data['profiled_ops_per_s']:,.0f} Set/s while profiled "
        f"({data['unprofiled_ops_per_s']:,.0f}"
        f" without); leader {data['leader_cpu_pct']:.0f}% CPU = {data['leader_cpu_us_per_op']:.0f}"
        f" µs per Set. Full summary: `profile.txt`; raw stacks: `{profile['raw_file']}`."
    )
    add("")
    add("| Component (own time) | Share of on-CPU samples | µs per Set |")
    add("|---|---:|---:|")
    for name, pct in list(data["own_pct"].items())[:14]:
        add(f"| {name} | {pct:.1f}% | {_num(data['own_us_per_op'].get(name))} |")
    add("")
    add("| Subtree | Share | µs per Set |")
    add("|---|---:|---:|")
    for name, pct in list(data["subtree_pct"].items())[:16]:
        add(f"| {name} | {pct:.1f}% | {_num(data['subtree_us_per_op'].get(name))} |")
    add("")


def _targets(results: dict[str, Any], out: list[str]) -> None:
    add = out.append
    rows: list[tuple[str, str, bool | None]] = []
    tp = results.get("throughput", {})
    by = {(r["op"], r["clients"]): r for r in tp.get("results", [])}
    for (op, clients), what in (
        (("set", 64), "Set, 64 clients ≥ 7,300 ops/s"),
        (("get_lin", 64), "Get LINEARIZABLE, 64 clients ≥ 8,500 ops/s"),
        (("get_stale", 64), "Get STALE, 64 clients ≥ 11,400 ops/s"),
        (("set", 1), "Set, 1 client ≥ 1,100 ops/s"),
    ):
        row = by.get((op, clients))
        if row:
            rows.append((what, f"{row['ops_per_s']:,.0f} ops/s", row["meets_ops_target"]))
    if ("set", 1) in by:
        row = by[("set", 1)]
        rows.append(
            (
                "Set, 1 client p50 < 2 ms",
                f"{row['latency_ms']['p50']:.2f} ms",
                row["meets_p50_target"],
            )
        )
    fo = results.get("failover", {})
    if fo.get("trials"):
        rows.append(
            (
                "Failover (median) < 1.5 s",
                f"{_num(fo['median_first_write_s'], 3)} s",
                fo["meets_target"],
            )
        )
    sn = results.get("snapshot", {})
    for s in sn.get("snapshots", []):
        rows.append(
            (
                f"Snapshot on {s['node_role']} at {sn.get('keys', 0):,} keys: tick gap < 100 ms, "
                "no leader change",
                f"leader {_num(s['leader_tick_gap_after_ms'])} ms (+2 s "
                f"{_num(s['leader_tick_gap_after_settled_ms'])}), "
                f"node {_num(s['node_tick_gap_after_ms'])}"
                f" ms, changed: {_num(s['term_or_leader_changed'])}",
                s["meets_target"],
            )
        )
    redis = results.get("redis", {})
    if "targets" in redis:
        rows.extend(redis_section.target_rows(redis))
    if not rows:
        return
    add("## Targets")
    add("")
    add("| Target | Result | Met |")
    add("|---|---|---|")
    for what, result, met in rows:
        add(f"| {what} | {result} | {_met(met)} |")
    add("")


def render(results: dict[str, Any]) -> str:
    meta = results.get("meta", {})
    machine = meta.get("machine", {})
    out: list[str] = []
    add: Callable[[str], None] = out.append
    add(f"# raftcache benchmark — {meta.get('started', '')}")
    add("")
    add(
        f"- Machine: {machine.get('cpu_count')} CPUs ({machine.get('cpu_model')}), "
        f"{machine.get('memory_gb')} GB, {machine.get('platform')}, Python {machine.get('python')},"
        f" {machine.get('versions')}; git {machine.get('git_commit', '')[:10]}"
        f"{' (dirty)' if machine.get('git_dirty') else ''}"
    )
    add(f"- {machine.get('shared_cores_note', '')}")
    if machine.get("raftcache_source"):
        add(f"- Node code imported from `{machine['raftcache_source']}`")
    end_commit = meta.get("git_commit_at_end")
    if end_commit and end_commit != machine.get("git_commit"):
        add(
            f"- **HEAD moved during the run** ({machine.get('git_commit', '')[:10]} → "
            f"{end_commit[:10]}): nodes started after the change ran the new code."
        )
    for snap in meta.get("load", []):
        add(f"- Load {snap['label']}: `{snap['uptime']}`")
    add(f"- Command: `{meta.get('command', '')}`; sections: {', '.join(meta.get('sections', []))}")
    add("")
    _targets(results, out)
    for name, render_section in (
        ("throughput", _throughput),
        ("failover", _failover),
        ("snapshot", _snapshot),
        ("sdk", lambda section, out: sdk.render(section, out.append)),
        ("typed", lambda section, out: typed.render(section, out.append)),
        ("redis", lambda section, out: redis_section.render(section, out.append)),
    ):
        section = results.get(name)
        if section is None:
            continue
        if "error" in section:
            add(f"## {name}: FAILED")
            add("")
            add("```")
            add(section["error"])
            add("```")
            add("")
            continue
        render_section(section, out)
    if "throughput" in results:
        _profile(results["throughput"], out)
    return "\n".join(out) + "\n"
