"""`peers` section: raftcache next to etcd, Redis and memcached, one run, one load shape.

Systems, each alone on the machine, one after the other (etcd, raftcache, Redis,
memcached): etcd 3.4 (Debian etcd-server, 3 members), raftcache (3-node LocalCluster,
journal durability) through raw unary gRPC, the SDK (AsyncClient), RESP and memcached
(when its nodes have a memcached port), Redis 7 (Debian redis-server, primary + 2
`--replicaof` replicas, no persistence) and memcached 1.6 (Debian memcached, one server).
Missing Debian packages are installed first (apt-get; needs root).

Every row: 1 or 64 closed-loop clients, 100-byte values, a pre-populated key space,
warm-up then `seconds` measured; kinds `write` (etcd put, Set, SET, SET + WAIT 2, set),
`read` (linearizable: etcd get, Get LINEARIZABLE, GET on the leader/primary, get) and
`stale` (served locally by a replica: etcd serializable get, Get STALE, GET after
READONLY on a follower, GET on a Redis replica, memcached get on a follower with
`--memcached-stale-reads`). Ratios are to etcd's row of the same kind and client count
(the better etcd row where there are two, so a ratio never flatters anyone).

Honesty on a shared 2-core box: os.getloadavg() at the start and end of every row, the
CPU of servers and generators over the window, and the busy time nobody here accounts
for (other users) are in peers.json and in the table. A 64-client row whose generator
process ran at >= GENERATOR_BOUND_PCT of a core runs again with two generator processes
and keeps the better (both recorded); the SDK rows keep one process (one AsyncClient
with 64 callers is what they measure). A row for an endpoint that does not exist is
recorded as skipped with the reason, never as a number.

Generators: the gRPC, SDK and RESP rows run in Python processes (bench/loadgen.py,
bench/peergen.py); the memcached rows, raftcache's and memcached's alike, in bench/mcload.c
(`memcached_generator="mcload"`, built with cc at run time): Python's memgen took ~14 us of
CPU per request from the cores the servers share, mcload ~9 (the kernel's loopback TCP,
which every client pays), and on 2026-12-07 that moved raftcache's stale gets from
33-42k/s to 45-46k/s on one cluster (alternating, 2 pairs). `memcached_generator="memgen"`
keeps the Python generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from raftcache.chaos.local_cluster import LocalCluster, free_port

from bench import mcload, memgen, peergen, peers, peers_report
from bench.common import (
    latency_summary_ms,
    load_snapshot,
    log,
    machine_info,
    node_flag_supported,
    node_pids,
    restart_followers_with,
    running_cluster,
)
from bench.common import populate as grpc_populate
from bench.loadgen import LoadSpec, MeasuredRun

SYSTEMS = ("etcd", "grpc-floor", "raft-floor", "raftcache", "redis", "memcached")
INTERFACES = ("gRPC", "SDK", "RESP", "memcached")
"""raftcache's doors, each measured in its own rows (`run(interfaces=...)` picks some)."""
MEMCACHED_SYSTEMS = ("etcd", "raftcache", "memcached")
"""The `memcached` section: this section's run with raftcache's memcached rows only, beside
a real memcached and etcd, and issue 12's targets (`peers_report.memcached_targets`)."""
TOOLS = {
    "etcd": ("etcd", "etcdctl"),
    "redis": ("redis-server", "redis-cli", "redis-benchmark"),
    "memcached": ("memcached",),
}
"""The binaries each system needs (installed from Debian packages if missing)."""
VALUE_SIZE = 100
CLIENT_COUNTS = (1, 64)
PER_CHANNEL = 16
"""gRPC rows at 64 clients: 16 clients per channel (4 HTTP/2 connections per target),
the same for etcd and raftcache."""
GENERATOR_BOUND_PCT = 85.0
GRPC_PREFIX = "key-"  # key_name(): 7 digits (loadgen's gRPC and etcd requests, the SDK)
RESP_PREFIX = "key:"  # respgen's bench_key(): 12 digits
MC_PREFIX = "mc:"  # memgen's mc_key(): 12 digits
REDIS_STALENESS_MS = 1000
MC_LISTEN_FLAG = "--memcached-listen"
MC_STALE_FLAG = "--memcached-stale-reads"
MC_STALE_MS = 1000


Runner = Callable[[Sequence[LoadSpec], Mapping[str, int]], MeasuredRun]
"""Runs one row's generator processes on one window: peergen.run_measured's signature."""
MEMCACHED_GENERATORS = ("mcload", "memgen")
"""What drives the memcached rows: bench/mcload.c (C, the default) or bench/memgen.py."""


def memcached_runner(generator: str, work_dir: Path) -> Runner | None:
    """The runner for the memcached rows: mcload's, built into work_dir (raises saying why
    it cannot be), or None for memgen (peergen's processes)."""
    if generator not in MEMCACHED_GENERATORS:
        raise ValueError(f"memcached generator {generator!r}: choose from {MEMCACHED_GENERATORS}")
    if generator == "memgen":
        return None
    if mcload.compiler() is None:
        peers.ensure_tools(["gcc"])  # as the bench installs its peers (apt-get)
    binary = mcload.build(work_dir / "mcload-build")
    return functools.partial(mcload.run_measured, binary=binary, work_dir=binary.parent)


@dataclass(frozen=True)
class Row:
    """One row to measure: who, what, how many clients, against which role."""

    system: str
    interface: str
    kind: str  # write | read | stale
    label: str
    op: str  # a loadgen/peergen op
    clients: int
    role: str  # leader | followers | all (raftcache, etcd); primary | replicas (Redis)
    prefix: str
    per_channel: int = 0
    one_process: bool = False


def _rows(system: str, interface: str, prefix: str, spec: Sequence[tuple[str, str, str, str]],
          *, per_channel: int = 0, one_process: bool = False,
          clients: Sequence[int] = CLIENT_COUNTS) -> list[Row]:  # fmt: skip
    """(kind, label, op, role) x client counts, in measuring order."""
    return [
        Row(
            system,
            interface,
            kind,
            label,
            op,
            n,
            role,
            prefix,
            per_channel if n > 1 else 0,
            one_process,
        )
        for kind, label, op, role in spec
        for n in clients
    ]


# ----------------------------------------------------------------------------- measuring


def _summarize(run: Any, row: Row, processes: int) -> dict[str, Any]:
    ops = sum(r.ops for r in run.results)
    codes: dict[str, int] = {}
    latencies: list[float] = []
    for r in run.results:
        latencies.extend(r.latencies)
        for code, n in r.error_codes.items():
            codes[code] = codes.get(code, 0) + n
    cpu = run.cpu
    gens = [k for k in cpu.process_pct if k.startswith("generator")]
    return {
        "generator_processes": processes,
        "ops": ops,
        "window_s": run.window_s,
        "ops_per_s": round(ops / run.window_s, 1),
        "latency_ms": {k: round(v, 3) for k, v in latency_summary_ms(latencies).items()},
        "errors": sum(r.errors for r in run.results),
        "error_codes": codes,
        "connections_per_process": [r.channels for r in run.results],
        "cpu": asdict(cpu),
        "generator_cpu_pct": [cpu.process_pct[k] for k in gens],
        "server_cpu_pct": round(sum(v for k, v in cpu.process_pct.items() if k not in gens), 1),
    }


def measure(
    row: Row,
    addrs: Sequence[str],
    pids: Mapping[str, int],
    *,
    keys: int,
    warmup: float,
    seconds: float,
    mc_runner: Runner | None = None,
    both: bool = False,
) -> dict[str, Any]:
    """One row, with the load average at its start and end; at 64 clients once more with
    two generator processes if one was CPU-bound, or always when `both` (the better is
    kept, both recorded).
    `mc_runner`: what drives the memcached ops (mcload's, see `memcached_runner`) instead
    of peergen's Python processes."""
    load_start = list(os.getloadavg())
    mc_row = row.op in mcload.OPS
    runner = mc_runner if mc_row and mc_runner is not None else peergen.run_measured

    def once(processes: int) -> dict[str, Any]:
        specs = [
            LoadSpec(
                op=row.op,
                targets=tuple(addrs),
                clients=row.clients // processes,
                clients_per_channel=row.per_channel,
                key_prefix=row.prefix,
                key_count=keys,
                value_size=VALUE_SIZE,
                warmup_s=warmup,
                duration_s=seconds,
                seed=1 + i,
            )
            for i in range(processes)
        ]
        return _summarize(runner(specs, pids), row, processes)

    result = once(1)
    bound = any(p >= GENERATOR_BOUND_PCT for p in result["generator_cpu_pct"])
    result["generator_bound"] = bound
    if (bound or both) and row.clients > 1 and not row.one_process:
        why = "asked for both" if both else f"generator at {result['generator_cpu_pct']}% of a core"
        log(f"  {why}: again with 2 processes")
        two = once(2)
        two["generator_bound"] = any(p >= GENERATOR_BOUND_PCT for p in two["generator_cpu_pct"])
        variants = [_variant(result), _variant(two)]
        result = two if two["ops_per_s"] > result["ops_per_s"] else result
        result["variants"] = variants
    out = {**_identity(row), "targets": list(addrs), **result}
    if mc_row:
        out["generator"] = "memgen" if mc_runner is None else "mcload"
    out["load_start"] = load_start
    out["load_end"] = list(os.getloadavg())
    lat = out["latency_ms"]
    log(
        f"  {row.system:<9} {row.interface:<9} {row.label:<34} c={row.clients:<3} "
        f"{out['ops_per_s']:>10,.0f}/s p50 {lat['p50']:.3f} ms p99 {lat['p99']:.3f} ms "
        f"errors {out['errors']} gen CPU {out['generator_cpu_pct']}% "
        f"load {load_start[0]:.2f}->{out['load_end'][0]:.2f}"
    )
    return out


def _variant(result: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("generator_processes", "ops_per_s", "latency_ms", "errors", "generator_cpu_pct")
    return {k: result[k] for k in keep}


def _identity(row: Row) -> dict[str, Any]:
    return {
        "system": row.system,
        "interface": row.interface,
        "kind": row.kind,
        "label": row.label,
        "op": row.op,
        "clients": row.clients,
        "role": row.role,
        "clients_per_channel": row.per_channel,
    }


def skipped(row: Row, reason: str) -> dict[str, Any]:
    log(f"  {row.system:<9} {row.interface:<9} {row.label:<34} c={row.clients:<3} "
        f"skipped: {reason}")  # fmt: skip
    return {**_identity(row), "skipped": reason}


def _failed(row: Row, error: str) -> dict[str, Any]:
    log(f"  {row.system} {row.interface} {row.label} c={row.clients} FAILED: {error[-400:]}")
    return {**_identity(row), "failed": error[-2000:]}


# ----------------------------------------------------------------------------- etcd


def _etcd(work_dir: Path, keys: int, warmup: float, seconds: float) -> dict[str, Any]:
    cluster = peers.EtcdCluster(Path(tempfile.mkdtemp(prefix="etcd-", dir=work_dir)))
    block: dict[str, Any] = {"setup": "3 members on loopback, WAL fsync as shipped"}
    rows: list[dict[str, Any]] = []
    try:
        cluster.start()
        block["populate_s"] = round(cluster.populate(GRPC_PREFIX, keys, VALUE_SIZE), 2)
        block["compacted_at_revision"] = cluster.compact_and_defrag()
        leader_name = cluster.leader_name()
        block["leader"] = leader_name
        pids = {(f"{n} (leader)" if n == leader_name else n): p for n, p in cluster.pids.items()}
        role_addrs = {"leader": [cluster.leader_endpoint()], "all": cluster.endpoints}
        plan = [
            *_rows("etcd", "gRPC", GRPC_PREFIX, [
                ("stale", "get (serializable)", "etcd_get_ser", "all"),
                ("read", "get (linearizable)", "etcd_get_lin", "leader"),
                ("write", "put", "etcd_put", "leader"),
            ], per_channel=PER_CHANNEL),
            *_rows("etcd", "gRPC", GRPC_PREFIX, [("write", "put", "etcd_put", "all")],
                   per_channel=PER_CHANNEL, clients=(64,)),
        ]  # fmt: skip
        rows.extend(_run_plan(plan, role_addrs, pids, keys=keys, warmup=warmup, seconds=seconds))
        block["leader_after"] = cluster.leader_name()
    finally:
        cluster.close()
    block["rows"] = rows
    return block


def _run_plan(
    plan: Sequence[Row], role_addrs: Mapping[str, Sequence[str]], pids: Mapping[str, int],
    **kw: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    return [_guarded(row, lambda r: measure(r, role_addrs[r.role], pids, **kw)) for row in plan]


def _guarded(row: Row, run: Callable[[Row], dict[str, Any]]) -> dict[str, Any]:
    """A row that fails is recorded as failed (with why) and the section goes on."""
    try:
        return run(row)
    except Exception:
        return _failed(row, traceback.format_exc())


# ----------------------------------------------------------------------------- raftcache


def memcached_addrs(cluster: LocalCluster) -> tuple[list[str], str]:
    """The nodes' memcached addresses, or ([], why there are none)."""
    if not all(getattr(n, "memcached_port", 0) for n in cluster.nodes):
        return [], (
            "no memcached endpoint: LocalCluster nodes have no memcached_port (raftcache's "
            "Memcached front-end is not in this checkout yet)"
        )
    addrs = [str(getattr(n, "memcached_addr")) for n in cluster.nodes]  # noqa: B009 - not yet typed
    try:
        for addr in addrs:
            asyncio.run(memgen.version(addr))
    except (OSError, TimeoutError, ConnectionError) as exc:
        return [], f"memcached port does not answer: `version` to {addrs} failed: {exc}"
    return addrs, ""


def _raft_roles(cluster: LocalCluster, interface: str, mc: Sequence[str]) -> dict[str, Any]:
    leader = cluster.wait_for_leader()

    def addr(i: int) -> str:
        node = cluster.nodes[i]
        if interface == "memcached":
            return mc[i]
        return str(node.redis_addr if interface == "RESP" else node.client_addr)

    everyone = list(range(len(cluster.nodes)))
    return {
        "leader_index": leader,
        "seeds": [addr(i) for i in everyone],
        "leader": [addr(leader)],
        "followers": [addr(i) for i in everyone if i != leader],
        "all": [addr(i) for i in everyone],
        "pids": node_pids(cluster, leader),
    }


def _raft_measure(cluster: LocalCluster, row: Row, mc: Sequence[str], **kw: Any) -> dict[str, Any]:
    """A raftcache row; once more if the Raft term changed during it (an election on a
    starved machine is not what the row measures)."""
    discarded: list[dict[str, Any]] = []
    while True:
        roles = _raft_roles(cluster, row.interface, mc)
        before = [cluster.status(i) for i in range(len(cluster.nodes))]
        result = measure(row, roles[row.role], roles["pids"], **kw)
        after = [cluster.status(i) for i in range(len(cluster.nodes))]
        result["leader"] = cluster.nodes[roles["leader_index"]].node_id
        result["term_changed"] = any(
            a is None or b is None or a.term != b.term for a, b in zip(after, before, strict=True)
        )
        result["snapshots_during_row"] = sum(
            a.snapshots_taken - b.snapshots_taken
            for a, b in zip(after, before, strict=True)
            if a is not None and b is not None
        )
        if not result["term_changed"] or discarded:
            result["discarded_after_term_change"] = discarded
            return result
        log("  the Raft term changed during the row: measuring it again")
        discarded.append(_variant(result))


def _raftcache(
    work_dir: Path, node_args: Sequence[str], keys: int, warmup: float, seconds: float,
    keep_data: bool, interfaces: Sequence[str] = INTERFACES, mc_runner: Runner | None = None,
) -> dict[str, Any]:  # fmt: skip
    args = [*node_args, "--redis-max-staleness-ms", str(REDIS_STALENESS_MS)]
    block: dict[str, Any] = {"node_args": args, "durability": "journal"}
    rows: list[dict[str, Any]] = []
    kw: dict[str, Any] = {
        "keys": keys, "warmup": warmup, "seconds": seconds, "mc_runner": mc_runner,
    }  # fmt: skip
    with running_cluster(work_dir, "peers", args, keep=keep_data) as (cluster, leader):
        mc, mc_missing = memcached_addrs(cluster) if "memcached" in interfaces else ([], "")
        stale_mc = ""
        if mc and not node_flag_supported(MC_STALE_FLAG):
            stale_mc = f"no stale memcached reads: raftcache-node has no {MC_STALE_FLAG} flag yet"
        elif mc:
            # the followers answer gets locally; the leader keeps linearizable gets
            leader = restart_followers_with(cluster, [MC_STALE_FLAG, str(MC_STALE_MS)])
            block["memcached_stale_reads_ms"] = MC_STALE_MS
        lead = cluster.nodes[leader]
        block["leader_at_start"] = lead.node_id
        started = time.perf_counter()
        addrs = [n.client_addr for n in cluster.nodes]
        if "gRPC" in interfaces or "SDK" in interfaces:
            asyncio.run(grpc_populate(addrs, GRPC_PREFIX, keys, value_size=VALUE_SIZE))
        if "RESP" in interfaces:
            peers.populate_resp(lead.redis_port, RESP_PREFIX, keys, VALUE_SIZE)
        if mc:
            asyncio.run(memgen.populate(mc[leader], MC_PREFIX, keys, VALUE_SIZE))
        block["populate_s"] = round(time.perf_counter() - started, 2)
        cluster.wait_until_ready(timeout=60)
        plan = [
            *_rows("raftcache", "gRPC", GRPC_PREFIX, [
                ("read", "Get LINEARIZABLE", "get_lin", "leader"),
                ("stale", "Get STALE", "get_stale", "all"),
            ], per_channel=PER_CHANNEL),
            *_rows("raftcache", "SDK", GRPC_PREFIX, [
                ("read", "get (linearizable)", "sdk_get_lin", "seeds"),
                ("stale", "get (stale)", "sdk_get_stale", "seeds"),
            ], one_process=True),
            *_rows("raftcache", "RESP", RESP_PREFIX, [
                ("read", "GET", "resp_get", "leader"),
                ("stale", "GET after READONLY", "resp_get_readonly", "followers"),
            ]),
            *_rows("raftcache", "memcached", MC_PREFIX, [
                ("read", "get", "mc_get", "leader"),
                ("stale", "get (stale reads)", "mc_get", "followers"),
            ]),
            *_rows("raftcache", "gRPC", GRPC_PREFIX, [("write", "Set", "set", "leader")],
                   per_channel=PER_CHANNEL),
            *_rows("raftcache", "gRPC", GRPC_PREFIX, [("write", "Set", "set", "all")],
                   per_channel=PER_CHANNEL, clients=(64,)),
            *_rows("raftcache", "SDK", GRPC_PREFIX, [("write", "set", "sdk_set", "seeds")],
                   one_process=True),
            *_rows("raftcache", "RESP", RESP_PREFIX, [("write", "SET", "resp_set", "leader")]),
            *_rows("raftcache", "memcached", MC_PREFIX, [("write", "set", "mc_set", "leader")]),
        ]  # fmt: skip
        for row in plan:
            if row.interface not in interfaces:
                continue
            if row.interface == "memcached" and not mc:
                rows.append(skipped(row, mc_missing))
            elif row.interface == "memcached" and row.kind == "stale" and stale_mc:
                rows.append(skipped(row, stale_mc))
            else:
                rows.append(_guarded(row, lambda r: _raft_measure(cluster, r, mc, **kw)))
        block["leader_at_end"] = cluster.nodes[cluster.wait_for_leader()].node_id
    block["rows"] = rows
    return block


# ----------------------------------------------------------------------------- the gRPC floor


def _grpc_floor(work_dir: Path, keys: int, warmup: float, seconds: float) -> dict[str, Any]:
    """bench/grpc_floor.py: our Cache service with handlers that return at once, served as a
    node serves it. What no raftcache node's unary gRPC can beat here."""
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="grpc-floor-", dir=work_dir)) / "server.log"
    block: dict[str, Any] = {
        "setup": "bench/grpc_floor.py: Cache.Set and Cache.Get return a constant at once "
        "(grpc.aio on uvloop, one process, as a node serves): the ceiling of unary gRPC in "
        "Python on this machine, whatever a handler does"
    }
    rows: list[dict[str, Any]] = []
    with open(log_path, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.grpc_floor", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
    try:
        _wait_serving(f"127.0.0.1:{port}", server, log_path)
        plan = _rows("grpc-floor", "gRPC", GRPC_PREFIX, [
            ("read", "Get (returns at once)", "get_lin", "server"),
            ("write", "Set (returns at once)", "set", "server"),
        ], per_channel=PER_CHANNEL)  # fmt: skip
        role_addrs = {"server": [f"127.0.0.1:{port}"]}
        pids = {"grpc-floor": server.pid}
        rows.extend(_run_plan(plan, role_addrs, pids, keys=keys, warmup=warmup, seconds=seconds))
    finally:
        server.terminate()
        _reap(server)
    block["rows"] = rows
    return block


def _reap(server: subprocess.Popen[bytes]) -> None:
    """Wait for a terminated server; kill it if it does not go within 10 s."""
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


def _wait_serving(addr: str, server: subprocess.Popen[bytes], log_path: Path) -> None:
    import grpc
    from raftcache.v1 import cache_pb2, cache_pb2_grpc

    deadline = time.monotonic() + 30
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"grpc-floor server exited: {log_path.read_text()[-2000:]}")
        try:
            with grpc.insecure_channel(addr) as channel:
                cache_pb2_grpc.CacheStub(channel).Get(cache_pb2.GetRequest(key=b"k"), timeout=1)
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# ----------------------------------------------------------------------------- the Raft floor


def _raft_floor(work_dir: Path, keys: int, warmup: float, seconds: float) -> dict[str, Any]:
    """bench/raft_floor.py: three processes replicating batches of SETs through pysyncobj
    with nothing else on the write path: a reference for raftcache's replicated SET on this
    machine (RESP SET rows, same generator, against its leader)."""
    base = Path(tempfile.mkdtemp(prefix="raft-floor-", dir=work_dir))
    raft = [free_port() for _ in range(3)]
    ports = [free_port() for _ in range(3)]
    block: dict[str, Any] = {
        "setup": "bench/raft_floor.py: 3 processes, each a uvloop RESP server (hiredis) over "
        "a pysyncobj SyncObj whose one replicated method stores a batch of SETs in a dict; "
        "group commit per loop turn, one entry in flight, stored zlib frames, no journal: "
        "what a minimal Raft-replicated SET in Python with pysyncobj reaches on this machine"
    }
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(3):
            peers_of = ",".join(f"127.0.0.1:{p}" for j, p in enumerate(raft) if j != i)
            with open(base / f"floor{i}.log", "wb") as out:
                servers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bench.raft_floor", f"127.0.0.1:{raft[i]}",
                         peers_of, str(ports[i])],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        cwd=Path(__file__).resolve().parent.parent,
                    )
                )  # fmt: skip
        leader = _floor_leader(ports, servers, base)
        peers.populate_resp(ports[leader], RESP_PREFIX, keys, VALUE_SIZE)
        plan = _rows("raft-floor", "RESP", RESP_PREFIX, [("write", "SET", "resp_set", "leader")])
        role_addrs = {"leader": [f"127.0.0.1:{ports[leader]}"]}
        pids = {f"floor{i}{'-leader' if i == leader else ''}": s.pid for i, s in enumerate(servers)}
        block["rows"] = _run_plan(plan, role_addrs, pids, keys=keys, warmup=warmup, seconds=seconds)
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            _reap(server)
    shutil.rmtree(base, ignore_errors=True)
    return block


def _floor_leader(
    ports: Sequence[int], servers: Sequence[subprocess.Popen[bytes]], base: Path
) -> int:
    """The index of the floor process that leads (ROLE answers master), within 30 s."""
    import socket

    def role(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.sendall(b"*1\r\n$4\r\nROLE\r\n")
            return sock.recv(64)

    deadline = time.monotonic() + 30
    while True:
        for i, server in enumerate(servers):
            if server.poll() is not None:
                log_text = (base / f"floor{i}.log").read_text()[-2000:]
                raise RuntimeError(f"raft-floor process {i} exited: {log_text}")
        for i, port in enumerate(ports):
            with contextlib.suppress(OSError):
                if role(port) == b"+master\r\n":
                    return i
        if time.monotonic() > deadline:
            raise TimeoutError("the raft floor elected no leader in 30 s")
        time.sleep(0.2)


# ----------------------------------------------------------------------------- Redis, memcached


def _redis(work_dir: Path, keys: int, warmup: float, seconds: float) -> dict[str, Any]:
    group = peers.RedisGroup(Path(tempfile.mkdtemp(prefix="redis-", dir=work_dir)))
    block: dict[str, Any] = {
        "setup": "redis-server primary + 2 replicas (--replicaof), --save '' --appendonly no; "
        "replica GETs need no READONLY (not a cluster)"
    }
    rows: list[dict[str, Any]] = []
    try:
        group.start()
        group.populate(RESP_PREFIX, keys, VALUE_SIZE)
        role_addrs = {
            "primary": [f"127.0.0.1:{group.primary_port}"],
            "replicas": [f"127.0.0.1:{p}" for p in group.replica_ports],
        }
        plan = _rows("redis", "RESP", RESP_PREFIX, [
            ("read", "GET", "resp_get", "primary"),
            ("stale", "GET on a replica", "resp_get", "replicas"),
            ("write", "SET", "resp_set", "primary"),
            ("write", "SET + WAIT 2", "resp_set_wait", "primary"),
        ])  # fmt: skip
        rows.extend(
            _run_plan(plan, role_addrs, group.pids, keys=keys, warmup=warmup, seconds=seconds)
        )
    finally:
        group.close()
    block["rows"] = rows
    return block


def _memcached(
    work_dir: Path, keys: int, warmup: float, seconds: float, mc_runner: Runner | None = None
) -> dict[str, Any]:
    server = peers.MemcachedServer(Path(tempfile.mkdtemp(prefix="memcached-", dir=work_dir)))
    block: dict[str, Any] = {"setup": "one memcached, -m 256, default threads, TCP only"}
    rows: list[dict[str, Any]] = []
    try:
        server.start()
        block["populate_s"] = round(
            asyncio.run(memgen.populate(server.addr, MC_PREFIX, keys, VALUE_SIZE)), 2
        )
        plan = _rows("memcached", "memcached", MC_PREFIX, [
            ("read", "get", "mc_get", "server"),
            ("write", "set", "mc_set", "server"),
        ])  # fmt: skip
        role_addrs = {"server": [server.addr]}
        kw = {"keys": keys, "warmup": warmup, "seconds": seconds, "mc_runner": mc_runner}
        rows.extend(_run_plan(plan, role_addrs, server.pids, **kw))
    finally:
        server.close()
    block["rows"] = rows
    return block


# ----------------------------------------------------------------------------- the section


def versions(systems: Sequence[str] = SYSTEMS) -> dict[str, str]:
    """The versions of the peers among `systems` (the tools `run` made sure of)."""
    argvs = {
        "etcd": ["etcd", "--version"],
        "redis": ["redis-server", "--version"],
        "memcached": ["memcached", "--version"],
    }
    return {
        argv[0]: peers.tool_version(argv) for system, argv in argvs.items() if system in systems
    }


def write_outputs(out_dir: Path, section: Mapping[str, Any], name: str = "peers") -> None:
    """NAME.json, NAME.md (the tables) and NAME.svg (the chart) in out_dir."""
    (out_dir / f"{name}.json").write_text(json.dumps(_finite(section), indent=2) + "\n")
    (out_dir / f"{name}.md").write_text(peers_report.markdown(section))
    (out_dir / f"{name}.svg").write_text(peers_report.svg_chart(section))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def run(
    work_dir: Path,
    out_dir: Path,
    node_args: Sequence[str],
    *,
    keys: int,
    warmup: float,
    seconds: float,
    systems: Sequence[str] = SYSTEMS,
    keep_data: bool = False,
    interfaces: Sequence[str] = INTERFACES,
    name: str = "peers",
    memcached_generator: str = "mcload",
) -> dict[str, Any]:
    """The systems one after the other (raftcache through `interfaces` only); writes
    NAME.json, NAME.md and NAME.svg to out_dir after each system. `memcached_generator`
    drives the memcached rows (MEMCACHED_GENERATORS)."""
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(f"{name}: unknown system(s) {unknown}; choose from {SYSTEMS}")
    unknown = [i for i in interfaces if i not in INTERFACES]
    if unknown:
        raise ValueError(f"{name}: unknown interface(s) {unknown}; choose from {INTERFACES}")
    peers.ensure_tools([tool for system in systems for tool in TOOLS.get(system, ())])
    mc_rows = "memcached" in systems or ("raftcache" in systems and "memcached" in interfaces)
    mc_runner = memcached_runner(memcached_generator, work_dir) if mc_rows else None
    machine = machine_info()
    section: dict[str, Any] = {
        "name": name,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "git_commit": machine["git_commit"],
        "git_dirty": machine["git_dirty"],
        "machine": {k: machine[k] for k in ("cpu_count", "cpu_model", "memory_gb", "python")},
        "load_start": load_snapshot(f"{name} section start"),
        "setup": {
            "key_space": keys,
            "value_bytes": VALUE_SIZE,
            "warmup_s": warmup,
            "seconds_per_row": seconds,
            "clients": list(CLIENT_COUNTS),
            "grpc_clients_per_channel_at_64": PER_CHANNEL,
            "generator_bound_pct": GENERATOR_BOUND_PCT,
            "order": [s for s in SYSTEMS if s in systems],
            "raftcache_interfaces": list(interfaces),
            "memcached_generator": memcached_generator if mc_rows else None,
        },
        "versions": versions(systems),
        "systems": {},
    }
    blocks: dict[str, Callable[[], dict[str, Any]]] = {
        "etcd": lambda: _etcd(work_dir, keys, warmup, seconds),
        "grpc-floor": lambda: _grpc_floor(work_dir, keys, warmup, seconds),
        "raft-floor": lambda: _raft_floor(work_dir, keys, warmup, seconds),
        "raftcache": lambda: _raftcache(
            work_dir, node_args, keys, warmup, seconds, keep_data, interfaces, mc_runner
        ),
        "redis": lambda: _redis(work_dir, keys, warmup, seconds),
        "memcached": lambda: _memcached(work_dir, keys, warmup, seconds, mc_runner),
    }
    for system in SYSTEMS:
        if system not in systems:
            continue
        log(f"{name}: {system} (load {os.getloadavg()[0]:.2f})")
        started = time.monotonic()
        try:
            block = blocks[system]()
        except Exception:
            block = {"error": traceback.format_exc(), "rows": []}
            log(f"{name}: {system} failed:\n{block['error']}")
        block["elapsed_s"] = round(time.monotonic() - started, 1)
        section["systems"][system] = block
        write_outputs(out_dir, section, name)
    section["load_end"] = load_snapshot(f"{name} section end")
    end_commit = machine_info()["git_commit"]
    if end_commit != section["git_commit"]:
        section["git_commit_at_end"] = end_commit
    section["failed"] = [
        n for n, b in section["systems"].items()
        if "error" in b or any("failed" in r for r in b["rows"])
    ]  # fmt: skip
    write_outputs(out_dir, section, name)
    log(f"{name}: wrote {out_dir / (name + '.json')}, {name}.md and {name}.svg")
    return section
