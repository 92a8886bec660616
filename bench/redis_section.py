"""`redis` section: raftcache's RESP port, Redis 7 and etcd 3.4 in one run, on one machine.

1. raftcache, 3 nodes (journal durability): redis-benchmark against the leader's RESP port
   (GET at 64 clients, SET at 1 and 64 clients, SET pipelined 16 deep), GET through
   READONLY followers and SET + WAIT 2 with bench/respgen.py (redis-benchmark cannot send
   READONLY or WAIT), and the SET rows at 64 clients (plain and -P 16) again with py-spy on
   the leader (profile-redis-*.txt: where the leader's CPU goes, by layer).
2. Redis 7 (Debian redis-server: primary + 2 `--replicaof` replicas, `--save ''`): the
   same commands (replica GETs need no READONLY there).
3. etcd 3.4 (Debian etcd-server, 3 members): the PERFORMANCE.md comparison, driven by the
   grpc.aio generator of bench/loadgen.py: put at 1 and 64 clients, linearizable and
   serializable get at 64 clients. Put, linearizable get and 1-client put are measured
   both through every member and through the leader only; the better number is the
   reference, so a ratio never flatters raftcache.

Each system runs alone (the others are stopped), one after the other. The issue-10 targets
are computed from numbers of this run only (`targets`), shortfalls included.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.node.affinity import pin_threads

from bench import peers, profiling
from bench.common import (
    CpuMeter,
    CpuReport,
    latency_summary_ms,
    load_snapshot,
    log,
    node_flag_supported,
    node_pids,
    restart_followers_with,
    running_cluster,
)
from bench.loadgen import LoadSpec, MeasuredRun, run_measured
from bench.respgen import bench_key

VALUE_SIZE = 100
RESP_PREFIX = "key:"  # redis-benchmark's keys: key:<12 digits>
ETCD_PREFIX = "key-"
CLIENTS = 64
PIPELINE = 16
GENERATOR_BOUND_PCT = 85.0
"""A generator process at or above this share of one core is treated as the bottleneck:
the row is run again with two generator processes (threads for redis-benchmark) and the
better of the two is kept (both are recorded)."""
TOOLS = ("redis-server", "redis-benchmark", "redis-cli", "etcd", "etcdctl")
REPLICA_READS_FLAG = "--redis-replica-reads"
REPLICA_READS_LABEL = "GET via READONLY replicas, 64 clients - redis-benchmark"
"""redis-benchmark cannot send READONLY: on raftcache it reads from followers started with
REPLICA_READS_FLAG (connections start in READONLY), on Redis from its replicas, one
redis-benchmark per replica."""


# ----------------------------------------------------------------------------- rows


def _cpu_fields(cpu: CpuReport, ops: int, generator: Callable[[str], bool]) -> dict[str, Any]:
    """CPU of every process over the row: %, seconds per 1,000 requests, generator load."""
    gens = [k for k in cpu.process_pct if generator(k)]
    return {
        "cpu": asdict(cpu),
        "cpu_s_per_1000": {
            k: round(v / ops * 1000, 4) if ops else math.nan for k, v in cpu.process_cpu_s.items()
        },
        "generator_cpu_pct": [cpu.process_pct[k] for k in gens],
        "generator_main_thread_demand": [cpu.main_thread_demand.get(k, math.nan) for k in gens],
    }


def _generator_bound(row: Mapping[str, Any]) -> bool:
    return any(p >= GENERATOR_BOUND_PCT for p in row.get("generator_cpu_pct", []))


@dataclass
class _RbRun:
    argv: list[str]
    result: dict[str, str]
    wall_s: float
    cpu: CpuReport | None
    stderr: str


def _rb_argv(port: int, test: str, clients: int, pipeline: int, requests: int, keys: int,
             threads: int, extra: Sequence[str] = ()) -> list[str]:  # fmt: skip
    """`extra`: e.g. --tls --cacert CA, --user U -a PW (the security section)."""
    return [
        "redis-benchmark",
        "-h", "127.0.0.1",
        "-p", str(port),
        "-c", str(clients),
        "-n", str(requests),
        "-d", str(VALUE_SIZE),
        "-r", str(keys),
        "-P", str(pipeline),
        "-t", test,
        "--csv",
        *(["--threads", str(threads)] if threads > 1 else []),
        *extra,
    ]  # fmt: skip


def _run_rb(argv: list[str], pids: Mapping[str, int] | None, timeout: float) -> _RbRun:
    """One redis-benchmark run; with `pids`, the CPU of those processes and of
    redis-benchmark itself over its whole run (read from its zombie before reaping)."""
    return _run_rbs([argv], pids, timeout)[0]


def _rb_name(i: int, n: int) -> str:
    return "redis-benchmark" if n == 1 else f"redis-benchmark-{i + 1}"


def _run_rbs(argvs: Sequence[list[str]], pids: Mapping[str, int] | None, timeout: float
             ) -> list[_RbRun]:  # fmt: skip
    """redis-benchmark processes started together (one per target port); with `pids`, the CPU
    of those processes and of every redis-benchmark until the last one exits. Each run's
    `wall_s` is the whole run's (the last exit), so totals over it never overstate."""
    n = len(argvs)
    with contextlib.ExitStack() as stack:
        outs = [stack.enter_context(tempfile.TemporaryFile()) for _ in argvs]
        errs = [stack.enter_context(tempfile.TemporaryFile()) for _ in argvs]
        started = time.monotonic()
        processes = [
            subprocess.Popen(argv, stdout=out, stderr=err)
            for argv, out, err in zip(argvs, outs, errs, strict=True)
        ]
        meter = None
        if pids is not None:
            meter = CpuMeter({**pids, **{_rb_name(i, n): p.pid for i, p in enumerate(processes)}})
            meter.start()
        killers = [threading.Timer(timeout, p.kill) for p in processes]
        for killer in killers:
            killer.start()
        try:
            for p in processes:
                os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
            wall = time.monotonic() - started
            cpu = meter.stop() if meter is not None else None
        finally:
            for killer in killers:
                killer.cancel()
            for p in processes:
                p.wait()
        runs = []
        for argv, process, out, err in zip(argvs, processes, outs, errs, strict=True):
            out.seek(0)
            err.seek(0)
            text = out.read().decode(errors="replace")
            stderr = err.read().decode(errors="replace")
            rows = list(csv.DictReader(io.StringIO(text)))
            if process.returncode != 0 or len(rows) != 1 or "Error from server" in text + stderr:
                raise RuntimeError(
                    f"{' '.join(argv)} failed (exit {process.returncode}): {text[-800:]} "
                    f"{stderr[-800:]}"
                )
            runs.append(_RbRun(argv, rows[0], wall, cpu, stderr.strip()[-500:]))
    return runs


def redis_benchmark_row(
    port: int | Sequence[int],
    pids: Mapping[str, int],
    *,
    test: str,
    clients: int,
    pipeline: int = 1,
    keys: int,
    warmup: float,
    duration: float,
    threads: int = 1,
    on_start: Callable[[], None] | None = None,
    requests: int | None = None,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """redis-benchmark sized to last ~duration s: probe runs (the warm-up) measure the rate,
    then one metered run of rate x duration requests. Several ports: one redis-benchmark
    per port at once, the clients and requests split between them; ops/s is every
    request over the time until the last one finished, and each latency figure the worst
    of theirs (the mean is their average: they carry equal shares)."""
    ports = [port] if isinstance(port, int) else list(port)
    share = max(clients // len(ports), 1)
    clients = share * len(ports)
    timeout = max(120.0, duration * 10)

    def argvs(total: int) -> list[list[str]]:
        return [
            _rb_argv(p, test, share, pipeline, max(total // len(ports), 1), keys, threads, extra)
            for p in ports
        ]

    probes: list[float] = []
    if requests is None:
        n = max(200, clients * pipeline * 20)
        spent = 0.0
        for _ in range(3):
            probe = _run_rbs(argvs(n), None, timeout)
            rate = sum(float(r.result["rps"]) for r in probe)
            probes.append(rate)
            spent += probe[0].wall_s
            if spent >= warmup:
                break
            n = max(n, int(rate * (warmup - spent)))
        requests = max(int(probes[-1] * duration), clients * pipeline * 20)
    commands = argvs(requests)
    requests = sum(int(a[a.index("-n") + 1]) for a in commands)
    if on_start is not None:
        on_start()
    runs = _run_rbs(commands, pids, timeout)
    cpu = runs[0].cpu
    assert cpu is not None
    wall = runs[0].wall_s
    results = [r.result for r in runs]

    def worst(field: str) -> float:
        return max(float(r[field]) for r in results)

    row: dict[str, Any] = {
        "tool": "redis-benchmark"
        + (f" --threads {threads}" if threads > 1 else "")
        + (f" x{len(ports)} (one per port)" if len(ports) > 1 else ""),
        "command": " | ".join(" ".join(a) for a in commands),
        "clients": clients,
        "pipeline": pipeline,
        "ops": requests,
        "window_s": round(wall, 2),
        "ops_per_s": float(results[0]["rps"]) if len(ports) == 1 else round(requests / wall, 1),
        "latency_ms": {
            "p50": worst("p50_latency_ms"),
            "p95": worst("p95_latency_ms"),
            "p99": worst("p99_latency_ms"),
            "max": worst("max_latency_ms"),
            "mean": sum(float(r["avg_latency_ms"]) for r in results) / len(results),
        },
        "errors": 0,  # redis-benchmark 7 exits at the first error reply (then the row fails)
        "error_codes": {},
        "probe_ops_per_s": probes,
        "stderr": " | ".join(r.stderr for r in runs if r.stderr),
        **_cpu_fields(cpu, requests, lambda k: k.startswith("redis-benchmark")),
    }
    log(_describe(row))
    return row


def _rb_best(port: int, pids: Mapping[str, int], **kw: Any) -> dict[str, Any]:
    """A redis-benchmark row; again with 2 threads if redis-benchmark was the bottleneck."""
    row = redis_benchmark_row(port, pids, **kw)
    if kw.get("clients", 1) > 1 and _generator_bound(row):
        log("  redis-benchmark looks CPU-bound: again with --threads 2")
        two = redis_benchmark_row(port, pids, threads=2, **kw)
        variants = [_variant(row), _variant(two)]
        row = two if two["ops_per_s"] > row["ops_per_s"] else row
        row["variants"] = variants
    return row


def generator_row(
    op: str,
    targets: Sequence[str],
    pids: Mapping[str, int],
    *,
    clients: int,
    keys: int,
    prefix: str,
    warmup: float,
    duration: float,
    per_channel: int = 0,
    on_measure_start: Callable[[], None] | None = None,
    processes: int = 1,
) -> dict[str, Any]:
    """A row from bench/loadgen.py's spawned generators (grpc.aio for etcd, respgen for RESP)."""
    specs = [
        LoadSpec(
            op=op,
            targets=tuple(targets),
            clients=clients // processes,
            clients_per_channel=per_channel,
            key_prefix=prefix,
            key_count=keys,
            value_size=VALUE_SIZE,
            warmup_s=warmup,
            duration_s=duration,
            seed=1 + i,
        )
        for i in range(processes)
    ]
    run: MeasuredRun = run_measured(specs, pids, on_measure_start)
    ops = sum(r.ops for r in run.results)
    codes: dict[str, int] = {}
    latencies: list[float] = []
    for r in run.results:
        latencies.extend(r.latencies)
        for code, n in r.error_codes.items():
            codes[code] = codes.get(code, 0) + n
    tool = "respgen (asyncio Protocols)" if op.startswith("resp_") else "grpc.aio generator"
    row: dict[str, Any] = {
        "tool": f"{tool}, {processes} process{'es' if processes > 1 else ''}",
        "op": op,
        "targets": list(targets),
        "clients": clients,
        "pipeline": 1,
        "generator_processes": processes,
        "channels": per_channel,
        "ops": ops,
        "window_s": run.window_s,
        "ops_per_s": round(ops / run.window_s, 1),
        "latency_ms": {
            k: round(v, 3) for k, v in latency_summary_ms(latencies).items() if k != "p90"
        },
        "errors": sum(r.errors for r in run.results),
        "error_codes": codes,
        **_cpu_fields(run.cpu, ops, lambda k: k.startswith("generator")),
    }
    log(_describe(row))
    return row


def _gen_best(
    op: str, targets: Sequence[str], pids: Mapping[str, int], **kw: Any
) -> dict[str, Any]:
    """A generator row; again with 2 processes if the generator was the bottleneck."""
    row = generator_row(op, targets, pids, **kw)
    if kw.get("clients", 1) > 1 and _generator_bound(row):
        log("  generator looks CPU-bound: again with 2 processes")
        two = generator_row(op, targets, pids, processes=2, **kw)
        variants = [_variant(row), _variant(two)]
        row = two if two["ops_per_s"] > row["ops_per_s"] else row
        row["variants"] = variants
    return row


def _variant(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: row[k]
        for k in ("tool", "ops_per_s", "latency_ms", "generator_cpu_pct", "cpu_s_per_1000")
    }


def _describe(row: Mapping[str, Any]) -> str:
    lat = row["latency_ms"]
    return (
        f"  {row['tool']:<34} c={row['clients']:<3} P={row['pipeline']:<2} "
        f"{row['ops_per_s']:>10,.0f} ops/s  p50 {lat['p50']:.3f} ms  p99 {lat['p99']:.3f} ms  "
        f"errors {row['errors']}  CPU% {row['cpu']['process_pct']}"
    )


def _labelled(row: dict[str, Any], system: str, key: str, label: str, target: str) -> None:
    row.update(system=system, key=key, label=label, target=target)


# ----------------------------------------------------------------------------- raftcache


def _raft_facts(cluster: LocalCluster) -> list[Any]:
    return [cluster.status(i) for i in range(len(cluster.nodes))]


@dataclass(frozen=True)
class _Roles:
    """Who leads right now, as a row needs it."""

    leader: str
    port: int  # the leader's RESP port
    leader_addr: list[str]
    replicas: list[str]  # the followers' RESP addresses
    pids: dict[str, int]


def _roles(cluster: LocalCluster) -> _Roles:
    index = cluster.wait_for_leader()
    lead = cluster.nodes[index]
    return _Roles(
        leader=lead.node_id,
        port=lead.redis_port,
        leader_addr=[lead.redis_addr],
        replicas=[n.redis_addr for i, n in enumerate(cluster.nodes) if i != index],
        pids=node_pids(cluster, index),
    )


def _raft_row(
    cluster: LocalCluster,
    key: str,
    label: str,
    target: str,
    measure: Callable[[_Roles], dict[str, Any]],
) -> dict[str, Any]:
    """One raftcache row against the current leader; run once more if the Raft term changed
    during it (an election on a starved machine is not what the row measures)."""
    discarded: list[dict[str, Any]] = []
    while True:
        roles = _roles(cluster)
        before = _raft_facts(cluster)
        started = time.monotonic()
        row = measure(roles)
        elapsed = time.monotonic() - started
        after = _raft_facts(cluster)
        _labelled(row, "raftcache", key, label, target)
        row["leader"] = roles.leader
        entries = max((a.commit_index for a in after if a is not None), default=0) - max(
            (b.commit_index for b in before if b is not None), default=0
        )
        # over the whole row (warm-up included): how well group commit packs requests
        row["log_entries_per_s"] = round(entries / elapsed, 1)
        row["requests_per_log_entry"] = (
            round(row["ops_per_s"] / row["log_entries_per_s"], 1) if entries > 0 else None
        )
        row["term_changed"] = any(
            b is None or a is None or a.term != b.term for a, b in zip(after, before, strict=True)
        )
        row["snapshots_during_run"] = sum(
            a.snapshots_taken - b.snapshots_taken
            for a, b in zip(after, before, strict=True)
            if a is not None and b is not None
        )
        if not row["term_changed"] or discarded:
            row["discarded_after_term_change"] = discarded
            return row
        log("  the Raft term changed during the row: measuring it again")
        discarded.append(_variant(row))


class NotReaderEndpoint(RuntimeError):
    """A follower the reader-endpoint row would measure does not start in READONLY."""


def _readers(addrs: Sequence[str]) -> list[int]:
    """The RESP ports of `addrs`, each checked to start its connections in READONLY (a
    leader change since the restarts could have made a node without the flag a follower,
    whose GETs would go to the leader)."""
    ports = [int(a.rpartition(":")[2]) for a in addrs]
    for port in ports:
        with redis.Redis(port=port, socket_timeout=5, decode_responses=True) as client:
            flags = client.client_info()["flags"]
        if flags != "r":
            raise NotReaderEndpoint(
                f"port {port} is no reader endpoint (CLIENT INFO flags={flags}): the leader "
                "changed since the followers were restarted with the flag"
            )
    return ports


def _supports_wait(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=5)
    try:
        client.wait(0, 0)
        return True
    except redis.ResponseError:
        return False
    finally:
        client.close()


def _check_value(port: int, keys: int) -> str:
    """After the SET rows: a written key holds redis-benchmark's 100-byte value."""
    client = redis.Redis(port=port, socket_timeout=5)
    try:
        value = client.get(bench_key(RESP_PREFIX, keys // 2))
    finally:
        client.close()
    if value is None or len(value) != VALUE_SIZE:
        return f"unexpected value after SET rows: {value!r:.60}"
    return "ok"


def _raftcache(
    work_dir: Path,
    out_dir: Path,
    node_args: Sequence[str],
    *,
    keys: int,
    warmup: float,
    duration: float,
    staleness_ms: int,
    profile: bool,
    keep_data: bool,
) -> dict[str, Any]:
    args = [*node_args, "--redis-max-staleness-ms", str(staleness_ms)]
    block: dict[str, Any] = {"node_args": args, "durability": "journal"}
    rows: list[dict[str, Any]] = []
    with running_cluster(work_dir, "redis", args, keep=keep_data) as (cluster, leader):
        reader_endpoints = node_flag_supported(REPLICA_READS_FLAG)
        if reader_endpoints:  # before the key load: nothing to catch up after the restarts
            # connections to followers start in READONLY: redis-benchmark, which cannot send
            # it, reads through the same path as a READONLY connection
            leader = restart_followers_with(cluster, [REPLICA_READS_FLAG, "true"])
            block["reader_endpoints"] = f"followers restarted with {REPLICA_READS_FLAG} true"
        else:
            block["get_replica_reads_64"] = f"skipped: raftcache-node has no {REPLICA_READS_FLAG}"
        lead = cluster.nodes[leader]
        followers = [n for i, n in enumerate(cluster.nodes) if i != leader]
        block["leader_at_start"] = lead.node_id
        started = time.perf_counter()
        peers.populate_resp(lead.redis_port, RESP_PREFIX, keys, VALUE_SIZE)
        block["populate_s"] = round(time.perf_counter() - started, 2)
        cluster.wait_until_ready(timeout=60)
        block["idle_cpu"] = _idle(node_pids(cluster, leader))
        common: dict[str, Any] = {"keys": keys, "warmup": warmup, "duration": duration}
        gen: dict[str, Any] = {**common, "prefix": RESP_PREFIX}
        wait = _supports_wait(lead.redis_port)
        plan: list[tuple[str, str, str, Callable[[_Roles], dict[str, Any]]]] = [
            ("get_lin_64", "GET (linearizable), 64 clients", "leader",
             lambda r: _rb_best(r.port, r.pids, test="get", clients=CLIENTS, **common)),
            ("get_readonly_64", "GET via READONLY replicas, 64 clients",
             f"READONLY on {len(followers)} followers",
             lambda r: _gen_best("resp_get_readonly", r.replicas, r.pids, clients=CLIENTS,
                                 **gen)),
            ("get_lin_64_respgen", "GET (linearizable), 64 clients - respgen calibration",
             "leader",
             lambda r: _gen_best("resp_get", r.leader_addr, r.pids, clients=CLIENTS, **gen)),
            ("set_1", "SET, 1 client", "leader",
             lambda r: _rb_best(r.port, r.pids, test="set", clients=1, **common)),
            ("set_64", "SET, 64 clients", "leader",
             lambda r: _rb_best(r.port, r.pids, test="set", clients=CLIENTS, **common)),
            ("set_p16_64", f"SET -P {PIPELINE}, 64 clients", "leader",
             lambda r: _rb_best(r.port, r.pids, test="set", clients=CLIENTS,
                                pipeline=PIPELINE, **common)),
        ]  # fmt: skip
        if reader_endpoints:
            plan.insert(
                2,
                (
                    "get_replica_reads_64",
                    REPLICA_READS_LABEL,
                    f"{len(followers)} followers with {REPLICA_READS_FLAG} true",
                    lambda r: _rb_best(
                        _readers(r.replicas),
                        r.pids,
                        test="get",
                        clients=CLIENTS,
                        **common,
                    ),
                ),
            )
        if wait:
            plan.append(("set_wait_64", "SET + WAIT 2, 64 clients", "leader",
                         lambda r: _gen_best("resp_set_wait", r.leader_addr, r.pids,
                                             clients=CLIENTS, **gen)))  # fmt: skip
        else:
            block["set_wait_64"] = "skipped: the node answers WAIT with an error (not served yet)"
        profiles: dict[str, Any] = {}
        for key, label, target, measure in plan:
            if key == "get_replica_reads_64":
                try:
                    rows.append(_raft_row(cluster, key, label, target, measure))
                except NotReaderEndpoint as exc:  # a leader change: the row only is lost
                    block[key] = f"skipped: {exc}"
                    log(f"  {label}: skipped ({exc})")
                continue
            rows.append(_raft_row(cluster, key, label, target, measure))
            if key in ("set_64", "set_p16_64") and profile:
                profiles[key] = _profiled_set(cluster, rows[-1], keys, duration, out_dir)
        block["profiles"] = profiles
        rows += _pinned_rows(cluster, block, common)
        block["value_check"] = _check_value(_roles(cluster).port, keys)
    block["rows"] = rows
    return block


def _pinned_rows(
    cluster: LocalCluster, block: dict[str, Any], common: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """SET and SET -P16 with the nodes pinned by role (`_pin_by_role`), then unpinned again:
    the pinned rows against the unpinned ones on both sides of them (a drifting host moves
    a later row by itself; `pinned_ratios`). A failure here costs these rows only."""
    rows: list[dict[str, Any]] = []
    shapes = (("set_64", "SET, 64 clients", 1),
              ("set_p16_64", f"SET -P {PIPELINE}, 64 clients", PIPELINE))  # fmt: skip

    def measure(pipeline: int) -> Callable[[_Roles], dict[str, Any]]:
        return lambda r: _rb_best(
            r.port, r.pids, test="set", clients=CLIENTS, pipeline=pipeline, **common
        )

    pinned = False
    try:
        placed = _pin_by_role(cluster)
        if placed is None:
            block["pinned"] = "skipped: fewer than two CPUs to place the nodes on"
            return rows
        pinned = True
        leader, placement = placed
        block["pinned"] = placement
        where = ", ".join(f"{n} CPU {c}" for n, c in placement.items())
        for key, name, pipeline in shapes:
            row = _raft_row(cluster, f"{key}_pinned", f"{name}, nodes pinned",
                            f"leader, nodes pinned ({where})", measure(pipeline))  # fmt: skip
            if row["leader"] != leader:  # it moved onto a follower's CPU: not this placement
                row["label"] += " (the leader changed: not the placement named)"
            rows.append(row)
        _unpin(cluster)
        pinned = False
        for key, name, pipeline in shapes:
            rows.append(_raft_row(cluster, f"{key}_unpinned", f"{name}, unpinned again",
                                  "leader", measure(pipeline)))  # fmt: skip
    except Exception as exc:  # the section's other rows stand
        block["pinned_error"] = f"{type(exc).__name__}: {exc}"
        log(f"  pinned rows: failed ({block['pinned_error']})")
    finally:
        if pinned:  # the rows failed on the way: leave no node pinned
            with contextlib.suppress(OSError):
                _unpin(cluster)
    return rows


def _pin_by_role(cluster: LocalCluster) -> tuple[str, dict[str, int]] | None:
    """The leader's threads on one CPU and the followers' on another: the leader's node id
    and every node's id -> CPU. From outside and by role once the leader is known: the
    same pinning as `--cpu-affinity`'s (node/affinity.py), except that a snapshot writer a
    node forks stays on its node's CPU, where the flag gives it every CPU back. None with
    fewer than two CPUs. On one machine this is the nearest to each node having a machine
    of its own: the leader alone, its Python threads never waking each other across CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    leader = cluster.wait_for_leader()
    placement: dict[str, int] = {}
    for i, node in enumerate(cluster.nodes):
        if node.process is None:
            continue
        cpu = cpus[0] if i == leader else cpus[1]
        pin_threads(node.process.pid, {cpu})
        placement[node.node_id] = cpu
    return cluster.nodes[leader].node_id, placement


def _unpin(cluster: LocalCluster) -> None:
    """Every node's threads back on every CPU this process may use."""
    cpus = os.sched_getaffinity(0)
    for node in cluster.nodes:
        if node.process is not None:
            pin_threads(node.process.pid, cpus)


def pinned_ratios(section: Mapping[str, Any]) -> dict[str, float]:
    """SET and SET -P16 with the nodes pinned (`_pin_by_role`) against the mean of the
    unpinned rows before and after them, same cluster."""
    rc = _rows(section, "raftcache")
    out: dict[str, float] = {}
    for key in ("set_64", "set_p16_64"):
        pinned, before, after = (rc.get(k) for k in (f"{key}_pinned", key, f"{key}_unpinned"))
        if pinned and before and after:
            unpinned = (before["ops_per_s"] + after["ops_per_s"]) / 2
            out[key] = round(pinned["ops_per_s"] / unpinned, 3)
    return out


def _idle(pids: Mapping[str, int], seconds: float = 3.0) -> dict[str, float]:
    meter = CpuMeter(pids)
    meter.start()
    time.sleep(seconds)
    return meter.stop().process_pct


def _profiled_set(
    cluster: LocalCluster,
    unprofiled: Mapping[str, Any],
    keys: int,
    duration: float,
    out_dir: Path,
) -> dict[str, Any]:
    """The SET row again with py-spy on the leader, kept out of the table (py-spy takes CPU
    on a 2-core box and pauses the node to sample it); once more if the run failed (py-spy's
    pauses on a starved machine can cost the leader its term)."""
    failures: list[str] = []
    for _attempt in range(2):
        result = _profile_once(cluster, unprofiled, keys, duration, out_dir)
        if "error" not in result:
            result["failed_attempts"] = failures
            return result
        failures.append(result["error"])
        log(f"redis profile: {result['error'][:300]}")
        if result["error"].startswith("py-spy unavailable"):
            break
        cluster.wait_until_ready(timeout=60)
    return {"error": " | ".join(failures)}


def _profile_once(
    cluster: LocalCluster,
    unprofiled: Mapping[str, Any],
    keys: int,
    duration: float,
    out_dir: Path,
) -> dict[str, Any]:
    roles = _roles(cluster)
    pid = next(v for k, v in roles.pids.items() if k.startswith("leader"))
    name = unprofiled["key"].replace("_", "-")
    raw_path = out_dir / f"profile-redis-{name}.raw.txt"
    text_path = out_dir / f"profile-redis-{name}.txt"
    try:
        recorder = profiling.Recorder(pid, duration, raw_path)
    except Exception as exc:  # py-spy missing and not installable: report, carry on
        return {"error": f"py-spy unavailable: {exc}"}
    log(f"redis profile: py-spy on the leader (pid {pid}): {unprofiled['label']}")
    # enough requests to outlast py-spy's window (py-spy itself slows the node down)
    requests = int(unprofiled["ops_per_s"] * (duration + 3))
    delayed = threading.Timer(1.0, recorder.start)
    try:
        row = redis_benchmark_row(
            roles.port,
            roles.pids,
            test="set",
            clients=unprofiled["clients"],
            pipeline=unprofiled["pipeline"],
            keys=keys,
            warmup=0,
            duration=duration,
            requests=requests,
            on_start=delayed.start,
        )
        delayed.join()
        recorder.wait()
    except Exception as exc:
        delayed.cancel()
        delayed.join()
        with contextlib.suppress(Exception):
            recorder.wait()  # py-spy ends by itself after its duration; reap it
        return {"error": f"profiled run failed: {exc}"}
    leader_key = next(k for k in row["cpu_s_per_1000"] if k.startswith("leader"))
    us_per_op = row["cpu_s_per_1000"][leader_key] * 1000
    summary = profiling.summarize(
        raw_path,
        leader_cpu_us_per_op=us_per_op,
        ops_per_s=row["ops_per_s"],
        leader_cpu_pct=row["cpu"]["process_pct"][leader_key],
        unprofiled_ops_per_s=unprofiled["ops_per_s"],
        command=recorder.command,
        title=f"raftcache leader profile: redis-benchmark {unprofiled['label']} (RESP)",
    )
    buckets = profiling.leader_buckets(raw_path, us_per_op)
    text_path.write_text(buckets.text + "\n" + summary.text)
    return {
        "label": unprofiled["label"],
        "run": row,
        "unprofiled_ops_per_s": unprofiled["ops_per_s"],
        "buckets": buckets.data,
        "summary": summary.data,
        "raw_file": raw_path.name,
        "summary_file": text_path.name,
        "py_spy_stderr": recorder.stderr_tail,
    }


# ----------------------------------------------------------------------------- Redis


def _redis(
    work_dir: Path, *, keys: int, warmup: float, duration: float, keep_data: bool
) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="redis-", dir=work_dir))
    group = peers.RedisGroup(base)
    block: dict[str, Any] = {
        "setup": "redis-server primary + 2 replicas (--replicaof), --save '' --appendonly no, "
        "loopback; replica GETs need no READONLY (not a cluster)",
    }
    rows: list[dict[str, Any]] = []
    try:
        group.start()
        pids = group.pids
        group.populate(RESP_PREFIX, keys, VALUE_SIZE)
        common: dict[str, Any] = {"keys": keys, "warmup": warmup, "duration": duration}
        gen: dict[str, Any] = {**common, "prefix": RESP_PREFIX}
        port = group.primary_port
        replicas = [f"127.0.0.1:{p}" for p in group.replica_ports]
        primary = [f"127.0.0.1:{port}"]
        plan: list[tuple[str, str, str, Callable[[], dict[str, Any]]]] = [
            (
                "get_lin_64",
                "GET, 64 clients",
                "primary",
                lambda: _rb_best(port, pids, test="get", clients=CLIENTS, **common),
            ),
            (
                "get_readonly_64",
                "GET from the 2 replicas, 64 clients",
                "2 replicas",
                lambda: _gen_best("resp_get", replicas, pids, clients=CLIENTS, **gen),
            ),
            (
                "get_lin_64_respgen",
                "GET, 64 clients - respgen calibration",
                "primary",
                lambda: _gen_best("resp_get", primary, pids, clients=CLIENTS, **gen),
            ),
            (
                "set_1",
                "SET, 1 client",
                "primary",
                lambda: _rb_best(port, pids, test="set", clients=1, **common),
            ),
            (
                "set_64",
                "SET, 64 clients",
                "primary",
                lambda: _rb_best(port, pids, test="set", clients=CLIENTS, **common),
            ),
            (
                "set_p16_64",
                f"SET -P {PIPELINE}, 64 clients",
                "primary",
                lambda: _rb_best(
                    port, pids, test="set", clients=CLIENTS, pipeline=PIPELINE, **common
                ),
            ),
            (
                "set_wait_64",
                "SET + WAIT 2, 64 clients",
                "primary",
                lambda: _gen_best("resp_set_wait", primary, pids, clients=CLIENTS, **gen),
            ),
            (
                "get_replica_reads_64",
                REPLICA_READS_LABEL,
                "2 replicas",
                lambda: _rb_best(group.replica_ports, pids, test="get", clients=CLIENTS, **common),
            ),
        ]
        for key, label, target, measure in plan:
            row = measure()
            _labelled(row, "redis", key, label, target)
            rows.append(row)
    finally:
        group.close()
        if not keep_data:
            _rmtree(base)
    block["rows"] = rows
    return block


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# ----------------------------------------------------------------------------- etcd


def _etcd(
    work_dir: Path, *, keys: int, warmup: float, duration: float, keep_data: bool
) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="etcd-", dir=work_dir))
    cluster = peers.EtcdCluster(base)
    block: dict[str, Any] = {
        "setup": "3 members on loopback, Debian etcd-server defaults (WAL fsync on commit); "
        "v3 KV API over gRPC, Put/Range with 100-byte values; compacted and defragmented "
        "after the key load",
    }
    rows: list[dict[str, Any]] = []
    try:
        cluster.start()
        block["populate_s"] = round(cluster.populate(ETCD_PREFIX, keys, VALUE_SIZE), 2)
        block["compacted_at_revision"] = cluster.compact_and_defrag()
        leader_name = cluster.leader_name()
        leader = cluster.leader_endpoint()
        block["leader"] = leader_name
        pids = {(f"{n} (leader)" if n == leader_name else n): p for n, p in cluster.pids.items()}
        every = cluster.endpoints
        common: dict[str, Any] = {
            "keys": keys,
            "prefix": ETCD_PREFIX,
            "warmup": warmup,
            "duration": duration,
        }

        # the generator's channel layout, as the throughput section chooses it
        short: dict[str, Any] = {
            **common,
            "warmup": min(warmup, 1.0),
            "duration": min(duration, 4.0),
        }
        trials = {
            pc: generator_row("etcd_put", every, pids, clients=CLIENTS, per_channel=pc, **short)[
                "ops_per_s"
            ]
            for pc in (0, 16)
        }
        per_channel = max(trials, key=lambda pc: trials[pc])
        block["channel_test"] = {
            "put_64_ops_per_s_by_clients_per_channel": trials,
            "chosen_clients_per_channel": per_channel,
        }
        many: dict[str, Any] = {**common, "per_channel": per_channel}
        for key, label, target, op, clients, endpoints in (
            (
                "get_ser_64",
                "get serializable, 64 clients",
                "every member",
                "etcd_get_ser",
                CLIENTS,
                every,
            ),
            (
                "get_lin_64",
                "get linearizable, 64 clients",
                "every member",
                "etcd_get_lin",
                CLIENTS,
                every,
            ),
            (
                "get_lin_64_leader",
                "get linearizable, 64 clients",
                "leader",
                "etcd_get_lin",
                CLIENTS,
                [leader],
            ),
            ("put_1_leader", "put, 1 client", "leader", "etcd_put", 1, [leader]),
            ("put_1", "put, 1 client", "every member", "etcd_put", 1, every),
            ("put_64", "put, 64 clients", "every member", "etcd_put", CLIENTS, every),
            ("put_64_leader", "put, 64 clients", "leader", "etcd_put", CLIENTS, [leader]),
        ):
            kw = many if clients > 1 else common
            row = _gen_best(op, endpoints, pids, clients=clients, **kw)
            _labelled(row, "etcd", key, label, target)
            rows.append(row)
        block["leader_after"] = cluster.leader_name()
    finally:
        cluster.close()
        if not keep_data:
            _rmtree(base)
    block["rows"] = rows
    return block


# ----------------------------------------------------------------------------- targets


def _rows(section: Mapping[str, Any], system: str) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in section.get(system, {}).get("rows", [])}


def _best(rows: Mapping[str, Mapping[str, Any]], keys: Sequence[str]) -> Mapping[str, Any] | None:
    found = [rows[k] for k in keys if k in rows]
    return max(found, key=lambda r: r["ops_per_s"]) if found else None


def targets(section: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's five targets from this run's numbers (None where a row is missing)."""
    rc, etcd = _rows(section, "raftcache"), _rows(section, "etcd")
    out: list[dict[str, Any]] = []

    def versus(name: str, ours_key: str, ref: Mapping[str, Any] | None, factor: float) -> None:
        ours = rc.get(ours_key)
        ratio = ours["ops_per_s"] / ref["ops_per_s"] if ours and ref else None
        out.append(
            {
                "target": name,
                "raftcache": ours["ops_per_s"] if ours else None,
                "raftcache_unit": "ops/s",
                "reference": ref["ops_per_s"] if ref else None,
                "reference_row": f"etcd {ref['label']} ({ref['target']})" if ref else None,
                "ratio": None if ratio is None else round(ratio, 3),
                "required": factor,
                "met": None if ratio is None else ratio >= factor,
            }
        )

    versus(
        "SET, 64 clients ≥ 3x etcd put, 64 clients",
        "set_64",
        _best(etcd, ["put_64", "put_64_leader"]),
        3.0,
    )
    versus(
        "GET linearizable, 64 clients ≥ 3x etcd linearizable get",
        "get_lin_64",
        _best(etcd, ["get_lin_64", "get_lin_64_leader"]),
        3.0,
    )
    versus(
        "GET via READONLY replicas, 64 clients ≥ 5x etcd serializable get",
        # redis-benchmark's row where the nodes have reader endpoints, else respgen's
        "get_replica_reads_64" if "get_replica_reads_64" in rc else "get_readonly_64",
        _best(etcd, ["get_ser_64"]),
        5.0,
    )
    p16 = rc.get("set_p16_64")
    out.append(
        {
            "target": f"SET -P {PIPELINE}, 64 clients ≥ 100,000/s",
            "raftcache": p16["ops_per_s"] if p16 else None,
            "raftcache_unit": "ops/s",
            "reference": 100_000.0,
            "reference_row": "absolute",
            "ratio": round(p16["ops_per_s"] / 100_000, 3) if p16 else None,
            "required": 1.0,
            "met": None if p16 is None else p16["ops_per_s"] >= 100_000,
        }
    )
    one = rc.get("set_1")
    puts = [etcd[k] for k in ("put_1_leader", "put_1") if k in etcd]
    ref = min(puts, key=lambda r: r["latency_ms"]["p50"]) if puts else None
    ours_p50 = one["latency_ms"]["p50"] if one else None
    ref_p50 = ref["latency_ms"]["p50"] if ref else None
    out.append(
        {
            "target": "SET, 1 client: p50 ≤ etcd put, 1 client p50",
            "raftcache": ours_p50,
            "raftcache_unit": "ms p50",
            "reference": ref_p50,
            "reference_row": f"etcd {ref['label']} ({ref['target']})" if ref else None,
            # for latency the ratio is reference / ours: >= 1 means we are no slower
            "ratio": round(ref_p50 / ours_p50, 3) if ours_p50 and ref_p50 else None,
            "required": 1.0,
            "met": None if ours_p50 is None or ref_p50 is None else ours_p50 <= ref_p50,
        }
    )
    return out


def versus_redis(section: Mapping[str, Any]) -> dict[str, float | None]:
    """raftcache / Redis for every row both have (same tool, same command)."""
    rc, rd = _rows(section, "raftcache"), _rows(section, "redis")
    return {
        k: round(rc[k]["ops_per_s"] / rd[k]["ops_per_s"], 4) if rd[k]["ops_per_s"] else None
        for k in rc
        if k in rd
    }


# ----------------------------------------------------------------------------- the section


def run(
    work_dir: Path,
    out_dir: Path,
    node_args: Sequence[str],
    *,
    keys: int,
    warmup: float,
    duration: float,
    staleness_ms: int,
    profile: bool,
    keep_data: bool,
    systems: Sequence[str] = ("raftcache", "redis", "etcd"),
) -> dict[str, Any]:
    peers.ensure_tools(TOOLS)
    section: dict[str, Any] = {
        "load_before": load_snapshot("redis section start"),
        "setup": {
            "key_space": keys,
            "value_bytes": VALUE_SIZE,
            "warmup_s": warmup,
            "duration_s": duration,
            "redis_max_staleness_ms": staleness_ms,
            "order": "raftcache, then Redis, then etcd; each alone on the machine",
            "readonly_generator": "redis-benchmark cannot send READONLY, so GET through "
            "replicas runs twice: bench/respgen.py (asyncio, pre-encoded commands, READONLY "
            "first on each connection; its calibration row runs the same GET against the "
            "leader/primary next to redis-benchmark's), and redis-benchmark, one per "
            f"follower, against followers restarted with {REPLICA_READS_FLAG} true (their "
            "connections start in READONLY). The target uses the redis-benchmark row.",
        },
        "versions": {
            "redis-server": peers.tool_version(["redis-server", "--version"]),
            "redis-benchmark": peers.tool_version(["redis-benchmark", "--version"]),
            "etcd": peers.tool_version(["etcd", "--version"]),
        },
    }
    failed: list[str] = []
    blocks: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("raftcache", lambda: _raftcache(work_dir, out_dir, node_args, keys=keys, warmup=warmup,
                                         duration=duration, staleness_ms=staleness_ms,
                                         profile=profile, keep_data=keep_data)),
        ("redis", lambda: _redis(work_dir, keys=keys, warmup=warmup, duration=duration,
                                 keep_data=keep_data)),
        ("etcd", lambda: _etcd(work_dir, keys=keys, warmup=warmup, duration=duration,
                               keep_data=keep_data)),
    ]  # fmt: skip
    for name, block in blocks:
        if name not in systems:
            continue
        log(f"redis section: {name} (load: {load_snapshot(name)['uptime']})")
        started = time.monotonic()
        try:
            section[name] = block()
        except Exception:
            failed.append(name)
            section[name] = {"error": traceback.format_exc()}
            log(f"redis section: {name} failed:\n{section[name]['error']}")
        section[name]["elapsed_s"] = round(time.monotonic() - started, 1)
    section["targets"] = targets(section)
    section["versus_redis"] = versus_redis(section)
    section["pinned_ratios"] = pinned_ratios(section)
    section["failed_blocks"] = failed
    section["load_after"] = load_snapshot("redis section end")
    return section


# ----------------------------------------------------------------------------- markdown


def _n(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def target_rows(section: Mapping[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, result, met) lines for the report's Targets table."""
    out = []
    for t in section.get("targets", []):
        if t["raftcache_unit"] == "ms p50":
            result = (
                f"{_n(t['raftcache'], 3)} ms vs {_n(t['reference'], 3)} ms ({t['reference_row']})"
            )
        else:
            result = (
                f"{_n(t['raftcache'])}/s vs {_n(t['reference'])}/s ({t['reference_row']}): "
                f"**{_n(t['ratio'], 2)}x** (need {t['required']:g}x)"
            )
        out.append((t["target"], result, t["met"]))
    return out


def _cpu_line(row: Mapping[str, Any]) -> str:
    return " / ".join(f"{k.split('(')[0]} {v:.3f}" for k, v in row["cpu_s_per_1000"].items())


def render(section: Mapping[str, Any], add: Callable[[str], None]) -> None:
    setup = section.get("setup", {})
    add("## Redis protocol: raftcache vs Redis 7 vs etcd 3.4 (same run)")
    add("")
    add(
        f"Load: `{section['load_before']['uptime']}` at the start, "
        f"`{section.get('load_after', {}).get('uptime', '?')}` at the end. "
        f"{setup.get('key_space', 0):,} keys, {VALUE_SIZE}-byte values, ~{setup.get('duration_s')}"
        f" s per row after ~{setup.get('warmup_s')} s of warm-up; {setup.get('order')}. "
        f"Versions: {section.get('versions')}."
    )
    add("")
    add("| Target (issue 10) | This run | Met |")
    add("|---|---|---|")
    for what, result, met in target_rows(section):
        add(f"| {what} | {result} | {'—' if met is None else ('✅ yes' if met else '❌ no')} |")
    add("")
    vs = section.get("versus_redis", {})
    add(
        "| System | Row | Target | Tool | ops/s | p50 ms | p99 ms | Errors "
        "| CPU s per 1,000 requests | vs Redis |"
    )
    add("|---|---|---|---|---:|---:|---:|---:|---|---:|")
    for system in ("raftcache", "redis", "etcd"):
        block = section.get(system, {})
        if "error" in block:
            add(f"| {system} | FAILED (see bench.json) | | | | | | | | |")
            continue
        for row in block.get("rows", []):
            ratio = vs.get(row["key"]) if system == "raftcache" else None
            add(
                f"| {system} | {row['label']} | {row['target']} | {row['tool']} "
                f"| {_n(row['ops_per_s'])} | {_n(row['latency_ms']['p50'], 3)} "
                f"| {_n(row['latency_ms']['p99'], 3)} | {row['errors']} | {_cpu_line(row)} "
                f"| {'—' if ratio is None else f'{ratio:.3f}'} |"
            )
    add("")
    rc = section.get("raftcache", {})
    ratios = pinned_ratios(section)
    if ratios:
        add(
            "- raftcache with its nodes pinned by role (the leader's threads on one CPU, the "
            "followers' on the other, as `--cpu-affinity` pins a node; node/affinity.py), "
            "against the "
            "mean of the unpinned rows before and after: "
            + ", ".join(f"{k} {v:.3f}x" for k, v in ratios.items())
            + ". The targets above use the unpinned rows, as the peers run unpinned."
        )
    for note in ("set_wait_64", "value_check", "pinned_error"):
        if note in rc:
            add(f"- raftcache {note}: {rc[note]}")
    if rc.get("idle_cpu"):
        add(f"- raftcache idle node CPU %: {rc['idle_cpu']}")
    for system in ("raftcache", "redis", "etcd"):
        for row in section.get(system, {}).get("rows", []):
            if row.get("variants"):
                tried = "; ".join(
                    f"{v['tool']}: {v['ops_per_s']:,.0f}/s (generator CPU "
                    f"{'+'.join(f'{p:.0f}' for p in v['generator_cpu_pct'])}%)"
                    for v in row["variants"]
                )
                add(f"- {system} {row['label']}: generator was CPU-bound; tried {tried}")
            if row.get("requests_per_log_entry") is not None:
                add(
                    f"- {system} {row['label']}: {row['log_entries_per_s']:,.0f} Raft log "
                    f"entries/s over the row, ~{row['requests_per_log_entry']:,.1f} requests "
                    f"per entry; leader {row['leader']}; snapshots {row['snapshots_during_run']}"
                )
            if row.get("term_changed"):
                add(f"- {system} {row['label']}: **the Raft term changed during the row**")
    add("")
    profiles = {k: v for k, v in rc.get("profiles", {}).items() if "buckets" in v}
    for key, profile in rc.get("profiles", {}).items():
        if "error" in profile:
            add(f"Leader profile of {key}: {profile['error']}")
            add("")
    if not profiles:
        return
    add("### Where the leader's CPU goes (py-spy on the leader, redis-benchmark SET)")
    add("")
    for profile in profiles.values():
        data, run_row = profile["buckets"], profile["run"]
        add(
            f"- {profile['label']}: profiled run {run_row['ops_per_s']:,.0f} SET/s (unprofiled "
            f"{_n(profile.get('unprofiled_ops_per_s'))}/s); leader {data['us_per_op']:.0f} µs "
            f"of CPU per SET; {data['samples_on_cpu']} on-CPU samples. Full text: "
            f"`{profile['summary_file']}`."
        )
    add("")
    keys = list(profiles)
    add("| Bucket | " + " | ".join(f"{profiles[k]['label']}: share, µs/SET" for k in keys) + " |")
    add("|---|" + "---:|" * len(keys))
    names: list[str] = []
    for k in keys:
        names.extend(n for n in profiles[k]["buckets"]["pct"] if n not in names)
    for name in names:
        cells = []
        for k in keys:
            data = profiles[k]["buckets"]
            pct = data["pct"].get(name)
            cells.append(
                "—" if pct is None else f"{pct:.1f}%, {data['us_per_op_by_bucket'][name]:.1f}"
            )
        add(f"| {name} | " + " | ".join(cells) + " |")
    add("")
