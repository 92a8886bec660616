"""`security` section: what users/permissions and TLS cost per request (issue 14's target).

One 3-node LocalCluster (journal durability) with TLS on its client ports and plaintext
gRPC and Redis ports beside them (--plaintext-listen, --redis-plaintext-listen), and three
configurations on its processes:
- `plain`: the plaintext ports, no login (the default user is open);
- `users`: the plaintext ports after `ACL SETUSER app ...` (through Raft) added a
  restricted user (`~key:* +@read +@write +@connection`); the clients log in as `app`
  (RESP: `AUTH app app-pw` once per connection; gRPC: `authorization: Basic ...` metadata
  on every call), so every request pays the authentication lookup, the command check and
  the key-pattern check;
- `tls`: the TLS ports (a CA and a leaf for 127.0.0.1 made with `cryptography` in the work
  dir at run time, never kept); RESP clients wrap their connections in an ssl context
  trusting the CA, gRPC clients use `grpc.ssl_channel_credentials(ca)`.
Nothing else differs between them: same processes, same leader, same Raft log. Earlier
runs put each configuration that needs other flags on a cluster of its own (`tls` always,
`users` at first); two clusters of the same code differed by 5-10% (2026-12-06, identical
plain clusters measured alternately) and up to 35% in earlier runs, more than the 5%
being measured and a quarter of the 25%.

Cells: (configuration, protocol, op) for RESP and gRPC, SET and GET (gRPC Get is
LINEARIZABLE, as RESP GET on the leader is), 64 closed-loop clients against the leader,
100-byte values on `key:` keys (10,000 of them; SET cells run before GET cells, so GETs
mostly hit). RESP cells are driven by redis-benchmark (C, OpenSSL; `--user app -a ...` or
`--tls --cacert CA`), as the redis section drives RESP: a Python asyncio generator pays
its own TLS per request (its CPU doubled under TLS), and on a shared 2-core machine that
CPU is taken from the nodes, so the TLS ratio measured the client as much as the node.
gRPC cells are driven by h2load (C, nghttp2) for the same reason: 4 HTTP/2 connections
of 16 concurrent streams, each stream a unary call of one fixed, pre-serialized request
(`authorization: Basic ...` on every call for `users`, https for `tls`). The Python
generator (`--security-grpc-generator loadgen`: two bench.loadgen grpc.aio processes, 32
clients each, 16 per channel) paid ~6 us more per call to attach the credential, on the
two cores the nodes run on: the users/plain ratio it gave (0.92-0.95) measured the client
as much as the node (README, "Security overhead"). h2load cannot see a call's grpc-status
(a refused call is an HTTP 200 too), so every call is checked by its reply: before and
after each run the same request bytes, with the same headers, are sent through grpc and
must be answered, and h2load's DATA bytes must be what that many replies of that size
make (an error reply carries no message: one refused call among them is a shortfall).

Interleaving (a shared 2-core box drifts): every (protocol, op) is measured in the three
configurations back to back, and the whole plan is repeated `reps` times with the
configuration order rotated every two repetitions and reversed on every other one
(plain users tls, tls users plain, users tls plain, plain tls users, ...: config_order), so
slow drift and the position in the triple hit every configuration alike over six
repetitions. Reported per cell:
the median ops/s over the repetitions and the spread (min..max), median p50/p99, the
leader's CPU per operation, and the load average at the start and end of each run.

Ratios users/plain and tls/plain per protocol and op, against the targets users >= 0.95,
tls >= 0.75. The verdict is on the median of the repetitions' paired ratios: each
repetition measures the configurations of a cell back to back, seconds apart, so its
ratio divides out what the host was doing that minute, while the ratio of the medians
compares runs minutes apart (on 2026-12-06 this host's speed moved by a third within an
hour, and a median of six runs moved with it). The ratio of the medians and every paired
ratio are reported beside it. With one repetition the two are the same number.

Whether the nodes checked permissions is not assumed: after adding `app`, the cluster is
probed before measuring (`app` reading a key outside `key:*` and one inside it, over RESP
and gRPC, and an unauthenticated gRPC call, the open default user's) and the answers are
recorded with the results (expected: refused, served, served).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime
import json
import math
import multiprocessing as mp
import multiprocessing.synchronize
import os
import random
import resource
import shutil
import subprocess
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from ipaddress import ip_address
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import grpc
from raftcache.chaos.local_cluster import ClusterTls, LocalCluster, LocalNode
from raftcache.v1 import cache_pb2, cache_pb2_grpc

from bench import peers
from bench.common import (
    CpuMeter,
    CpuReport,
    channel_options,
    key_name,
    latency_summary_ms,
    load_snapshot,
    log,
    machine_info,
    median,
    node_pids,
    value_bytes,
    wait_announced,
)
from bench.loadgen import GeneratorGroup, LoadResult, LoadSpec, MeasuredRun, start_window

CONFIGS = ("plain", "users", "tls")
PROTOCOLS = ("resp", "grpc")
OPS = ("set", "get")
TARGETS = {"users": 0.95, "tls": 0.75}
"""Issue 14: permission checks cost under 5% and TLS under 25% of throughput."""
CLIENTS = 64
GENERATOR_PROCESSES = 2
PER_CHANNEL = 16
KEY_PREFIX = "key:"  # redis-benchmark's keys are key:<12 digits>; gRPC keys key:<7 digits>
KEYS = 10_000
VALUE_SIZE = 100
REPS = 6
"""Six: config_order puts every configuration in every position twice (two repetitions
left `users` in the middle both times)."""
APP_USER = "app"
APP_PASSWORD = "app-pw"
ERROR_PAUSE_S = 0.002
RPC_TIMEOUT_S = 5.0
GRPC_GENERATORS = ("h2load", "loadgen")
H2LOAD_CONNECTIONS = 4  # x H2LOAD_STREAMS concurrent calls = CLIENTS
H2LOAD_STREAMS = 16
GRPC_METHODS = {"set": "/raftcache.v1.Cache/Set", "get": "/raftcache.v1.Cache/Get"}
LOADGEN_OP = {
    ("grpc", "set"): "sec_grpc_set",
    ("grpc", "get"): "sec_grpc_get",
}

# ----------------------------------------------------------------------------- pure parts


APP_RULES = f"on >{APP_PASSWORD} ~{KEY_PREFIX}* +@read +@write +@connection"
"""The restricted user the `users` configuration's clients log in as."""


def app_user_argv() -> list[str]:
    """The ACL SETUSER that adds `app` to the running plain cluster (replicated: every
    node enforces it)."""
    return ["ACL", "SETUSER", APP_USER, *APP_RULES.split()]


def basic_authorization(user: str, password: str) -> str:
    """The gRPC `authorization` metadata value for user:password."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass(frozen=True)
class Access:
    """How a generator reaches a configuration: credentials (empty: none) and the CA PEM
    to trust (empty: plaintext)."""

    user: str = ""
    password: str = ""
    ca_pem: bytes = b""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """A gRPC call's credentials: `authorization: Basic ...`, or none."""
        if not self.user:
            return ()
        return (("authorization", basic_authorization(self.user, self.password)),)


@dataclass(frozen=True)
class Cell:
    rep: int
    protocol: str
    op: str
    config: str


def config_order(rep: int, configs: Sequence[str] = CONFIGS) -> list[str]:
    """Repetition `rep`'s configuration order: rotated by one every two repetitions and
    reversed on odd ones (ABC CBA, BCA ACB, CAB BAC): over six repetitions every
    configuration takes every position twice. Reversal alone (ABC CBA ...) left `users`
    in the middle every time: on 2026-12-07 its RESP SET ratio was 0.82-0.87 in the
    repetitions that ran it right after plain and 0.98-1.10 in those that ran it after
    tls, a position effect the verdict carried."""
    k = (rep // 2) % len(configs)
    order = list(configs[k:]) + list(configs[:k])
    return order[::-1] if rep % 2 else order


def plan(reps: int, configs: Sequence[str] = CONFIGS) -> list[Cell]:
    """The measuring order: per repetition, each (protocol, op) in the configurations back
    to back, in config_order's order."""
    cells: list[Cell] = []
    for rep in range(reps):
        order = config_order(rep, configs)
        for protocol in PROTOCOLS:
            for op in OPS:
                cells.extend(Cell(rep, protocol, op, config) for config in order)
    return cells


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Per protocol, op and configuration: median ops/s over the repetitions, its spread
    (min, max, (max-min)/median in %), median p50/p99 and leader CPU per op, and the load
    at each run's start. Failed runs (no `ops_per_s`) are counted, not averaged."""
    grouped: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for run in runs:
        grouped.setdefault((run["protocol"], run["op"], run["config"]), []).append(run)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (protocol, op, config), group in grouped.items():
        good = [r for r in group if _finite(r.get("ops_per_s"))]
        ops = [float(r["ops_per_s"]) for r in good]
        mid = median(ops)
        cell: dict[str, Any] = {
            "runs": len(group),
            "failed_runs": len(group) - len(good),
            "ops_per_s": ops,
            "median_ops_per_s": mid,
            "min_ops_per_s": min(ops) if ops else math.nan,
            "max_ops_per_s": max(ops) if ops else math.nan,
            "spread_pct": (max(ops) - min(ops)) / mid * 100 if ops and mid else math.nan,
            "p50_ms": median([r["latency_ms"]["p50"] for r in good]),
            "p99_ms": median([r["latency_ms"]["p99"] for r in good]),
            "leader_cpu_us_per_op": median(
                [r["leader_cpu_us_per_op"] for r in good if _finite(r.get("leader_cpu_us_per_op"))]
            ),
            "errors": sum(int(r.get("errors", 0)) for r in good),
            "others_cpu_pct": median(
                [r["unaccounted_pct"] for r in good if _finite(r.get("unaccounted_pct"))]
            ),
            "load_start": [r["load_start"][0] for r in group if r.get("load_start")],
        }
        out.setdefault(protocol, {}).setdefault(op, {})[config] = cell
    return out


def ratios(
    summary: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Any]]]],
    runs: Sequence[Mapping[str, Any]],
    targets: Mapping[str, float] = TARGETS,
) -> list[dict[str, Any]]:
    """users/plain and tls/plain per protocol and op: the ratio of the median ops/s, each
    repetition's paired ratio and their median (which the verdict is on: see the module's
    docstring), the leader-CPU-per-op ratio, the target and PASS/MISS (or NO DATA when a
    side has no number)."""
    by_rep: dict[tuple[str, str, str, int], float] = {
        (r["protocol"], r["op"], r["config"], r["rep"]): float(r["ops_per_s"])
        for r in runs
        if _finite(r.get("ops_per_s"))
    }
    out = []
    for protocol in PROTOCOLS:
        for op in OPS:
            cells = summary.get(protocol, {}).get(op, {})
            plain = cells.get("plain", {})
            for config, target in targets.items():
                mine = cells.get(config, {})
                base, value = plain.get("median_ops_per_s"), mine.get("median_ops_per_s")
                ratio = value / base if _finite(base) and _finite(value) and base else math.nan
                reps = sorted({k[3] for k in by_rep if k[:2] == (protocol, op)})
                paired = [
                    by_rep[(protocol, op, config, rep)] / by_rep[(protocol, op, "plain", rep)]
                    for rep in reps
                    if (protocol, op, config, rep) in by_rep
                    and by_rep.get((protocol, op, "plain", rep))
                ]
                cpu_base, cpu = plain.get("leader_cpu_us_per_op"), mine.get("leader_cpu_us_per_op")
                cpu_ratio = (
                    cpu / cpu_base if _finite(cpu) and _finite(cpu_base) and cpu_base else math.nan
                )
                paired_median = median(paired) if paired else math.nan
                verdict = (
                    "NO DATA"
                    if not _finite(paired_median)
                    else ("PASS" if paired_median >= target else "MISS")
                )
                out.append({
                    "protocol": protocol,
                    "op": op,
                    "config": config,
                    "ratio": ratio,
                    "paired_ratios": paired,
                    "paired_median": paired_median,
                    "leader_cpu_per_op_ratio": cpu_ratio,
                    "target": target,
                    "verdict": verdict,
                })  # fmt: skip
    return out


# ----------------------------------------------------------------------------- markdown


def _n(value: Any, digits: int = 0) -> str:
    if not _finite(value):
        return "—"
    return f"{value:,.{digits}f}"


PROTOCOL_LABEL = {"resp": "RESP", "grpc": "gRPC"}


def _grpc_generator_text(setup: Mapping[str, Any]) -> str:
    if setup.get("grpc_generator", "loadgen") == "h2load":
        conns, streams = setup.get("h2load_connections_x_streams", ("?", "?"))
        return f"h2load ({conns} connections x {streams} streams)"
    return f"{setup.get('generator_processes')} bench.loadgen grpc.aio processes"


def markdown(section: Mapping[str, Any]) -> str:
    """The cells table (median, spread, latency, leader CPU per op, load), the ratio table
    with targets and verdicts, and what the gRPC path checked."""
    setup = section.get("setup", {})
    summary = section.get("summary", {})
    lines = [
        "## Security overhead: users/permissions and TLS vs plain (same run, interleaved)",
        "",
        f"{setup.get('clients')} clients against the leader; RESP driven by redis-benchmark, "
        f"gRPC by {_grpc_generator_text(setup)}; {setup.get('warmup_s')} s warm-up + "
        f"{setup.get('seconds')} s "
        f"measured per run, {setup.get('reps')} runs per cell (configuration order rotated "
        f"every two repetitions and reversed every other one). Load: "
        f"`{section.get('load_start', {}).get('uptime', '?')}` "
        f"at the start, `{section.get('load_end', {}).get('uptime', '?')}` at the end.",
        "",
        "| Protocol | Op | Config | ops/s (median) | runs min..max | spread % | p50 ms "
        "| p99 ms | leader CPU µs/op | errors | others' CPU % | load 1-min at each run |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for protocol in PROTOCOLS:
        for op in OPS:
            for config in CONFIGS:
                cell = summary.get(protocol, {}).get(op, {}).get(config)
                if cell is None:
                    continue
                failed = f" ({cell['failed_runs']} failed)" if cell.get("failed_runs") else ""
                lines.append(
                    f"| {PROTOCOL_LABEL[protocol]} | {op.upper()} | {config}{failed} "
                    f"| {_n(cell['median_ops_per_s'])} "
                    f"| {_n(cell['min_ops_per_s'])}..{_n(cell['max_ops_per_s'])} "
                    f"| {_n(cell['spread_pct'], 1)} | {_n(cell['p50_ms'], 2)} "
                    f"| {_n(cell['p99_ms'], 2)} | {_n(cell['leader_cpu_us_per_op'])} "
                    f"| {cell['errors']} | {_n(cell.get('others_cpu_pct'))} "
                    f"| {', '.join(f'{x:.2f}' for x in cell['load_start'])} |"
                )
    lines += [
        "",
        "| Protocol | Op | Ratio | median of paired ratios | per-run paired ratios "
        "| ops/s ratio (medians) | leader CPU/op ratio | Target | Verdict (on the paired "
        "median) |",
        "|---|---|---|---:|---|---:|---:|---:|---|",
    ]
    for r in section.get("ratios", []):
        lines.append(
            f"| {PROTOCOL_LABEL[r['protocol']]} | {r['op'].upper()} | {r['config']}/plain "
            f"| {_n(r['paired_median'], 3)} "
            f"| {', '.join(_n(x, 3) for x in r['paired_ratios'])} | {_n(r['ratio'], 3)} "
            f"| {_n(r['leader_cpu_per_op_ratio'], 2)} | >= {r['target']:.2f} | {r['verdict']} |"
        )
    grpc_state = section.get("grpc_checks", {})
    at_end = section.get("grpc_checks_at_end", {}).get("summary")
    probes = section.get("probes", {})
    lines += [
        "",
        "Leader CPU µs/op: the leader's CPU seconds over the window / operations (less "
        "sensitive to other load than ops/s). Others' CPU: busy time of the machine outside "
        "the measured cluster and the generators, in % of one core. The "
        "load average includes this bench's own processes (3 busy nodes + 2 generators).",
        "",
        f"gRPC permission checks in the code the nodes started with: "
        f"{grpc_state.get('summary', '?')}"
        + (f" (in the checkout at the end: {at_end})" if at_end else "")
        + ". Probes of the users configuration before measuring (expected: app refused "
        "other:probe, served key:probe; anonymous gRPC served): "
        + ("; ".join(f"{k}: {v}" for k, v in probes.items()) or "none"),
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- certificates


def make_tls(directory: Path) -> ClusterTls:
    """A throwaway CA and one leaf for 127.0.0.1/localhost (server and client auth), in
    `directory` (the bench's work dir, removed afterwards); the key file is 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("raftcache bench CA"))
        .issuer_name(name("raftcache bench CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("raftcache-bench-node"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = (
        directory / "ca.crt",
        directory / "node.crt",
        directory / "node.key",
    )
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ClusterTls(cert_file, key_file, ca_file)


# ----------------------------------------------------------------------------- generators


def _requests(spec: LoadSpec) -> list[Any]:
    value = value_bytes(spec.value_size, spec.seed)
    keys = [key_name(spec.key_prefix, i) for i in range(spec.key_count)]
    if spec.op == "sec_grpc_set":
        return [cache_pb2.SetRequest(key=k, value=value) for k in keys]
    return [cache_pb2.GetRequest(key=k, consistency=cache_pb2.LINEARIZABLE) for k in keys]


def grpc_channel(target: str, access: Access, private: bool) -> grpc.aio.Channel:
    options = channel_options(private=private)
    if access.ca_pem:
        creds = grpc.ssl_channel_credentials(access.ca_pem)
        return grpc.aio.secure_channel(target, creds, options=options)
    return grpc.aio.insecure_channel(target, options=options)


async def _grpc_generate(
    spec: LoadSpec,
    access: Access,
    index: int,
    ready: mp.Queue[int],
    go: multiprocessing.synchronize.Event,
    start_at: Synchronized[float],
    stop: multiprocessing.synchronize.Event,
) -> LoadResult:
    """loadgen's unary gRPC clients, with credentials metadata on every call when access
    has them, over TLS when it has a CA."""
    result = LoadResult(index)
    per_channel = max(spec.clients_per_channel, 1)
    groups = math.ceil(spec.clients / per_channel)
    target = spec.targets[0]
    channels = [grpc_channel(target, access, private=groups > 1) for _ in range(groups)]
    metadata = access.metadata()
    result.channels = len(channels)
    codes: Counter[str] = Counter()
    try:
        await asyncio.gather(*(asyncio.wait_for(ch.channel_ready(), 15) for ch in channels))
        stubs = [cache_pb2_grpc.CacheStub(ch) for ch in channels]
        methods = [s.Set if spec.op == "sec_grpc_set" else s.Get for s in stubs]
        requests = _requests(spec)
        ready.put(index)
        window, _offset, _watcher = await start_window(spec, go, start_at, stop)

        async def client(cid: int) -> None:
            method = methods[cid // per_channel]
            rng = random.Random(spec.seed * 100_003 + cid)
            perf = time.perf_counter
            n = len(requests)
            while True:
                request = requests[rng.randrange(n)]
                t0 = perf()
                if t0 >= window.end:
                    return
                code = ""
                try:
                    await method(request, timeout=spec.rpc_timeout_s, metadata=metadata)
                except grpc.aio.AioRpcError as exc:
                    code = exc.code().name
                t1 = perf()
                if window.measure_start <= t1 < window.end:
                    if code:
                        result.errors += 1
                        codes[code] += 1
                    else:
                        result.ops += 1
                        result.latencies.append(t1 - t0)
                if code:
                    await asyncio.sleep(ERROR_PAUSE_S)

        await asyncio.gather(*(client(c) for c in range(spec.clients)))
        result.error_codes = dict(codes)
    finally:
        for ch in channels:
            await ch.close()
    return result


def _child_main(
    spec: LoadSpec,
    access: Access,
    index: int,
    ready: mp.Queue[int],
    results: mp.Queue[LoadResult],
    go: multiprocessing.synchronize.Event,
    start_at: Synchronized[float],
    stop: multiprocessing.synchronize.Event,
) -> None:
    try:
        result = asyncio.run(_grpc_generate(spec, access, index, ready, go, start_at, stop))
    except BaseException as exc:  # report instead of hanging the parent
        result = LoadResult(index, failure=f"{type(exc).__name__}: {exc}")
        ready.put(index)
    results.put(result)


class SecurityGeneratorGroup(GeneratorGroup):
    """loadgen's GeneratorGroup whose processes carry an Access (credentials, CA)."""

    def __init__(self, specs: Sequence[LoadSpec], access: Access) -> None:
        super().__init__(specs)
        ctx = mp.get_context("spawn")
        self.processes = [
            ctx.Process(
                target=_child_main,
                args=(
                    spec, access, i, self._ready, self._results, self._go, self._start_at,
                    self._stop,
                ),
                daemon=True,
                name=f"bench-secgen-{i}",
            )
            for i, spec in enumerate(self.specs)
        ]  # fmt: skip


def run_measured(specs: Sequence[LoadSpec], access: Access, pids: Mapping[str, int]) -> MeasuredRun:
    """Warm-up, then CPU metered over the measurement window (servers and generators)."""
    group = SecurityGeneratorGroup(specs, access)
    try:
        begin = group.start()
        warmup, duration = specs[0].warmup_s, specs[0].duration_s
        meter = CpuMeter({**pids, **group.pids})
        time.sleep(max(begin + warmup - time.monotonic(), 0))
        meter.start()
        time.sleep(max(begin + warmup + duration - time.monotonic(), 0))
        cpu = meter.stop()
        results = group.collect()
    finally:
        group.terminate()
    return MeasuredRun(results, cpu, duration)


# ----------------------------------------------------------------------------- clusters


@dataclass
class Setup:
    """One running configuration: its cluster and how clients reach it."""

    config: str
    cluster: LocalCluster
    access: Access
    base: Path


def access_for(config: str, tls: ClusterTls | None) -> Access:
    if config == "users":
        return Access(user=APP_USER, password=APP_PASSWORD)
    if config == "tls":
        assert tls is not None
        return Access(ca_pem=tls.ca_file.read_bytes())
    return Access()


def add_app_user(cluster: LocalCluster, timeout_s: float = 30.0) -> None:
    """ACL SETUSER app on the leader, then wait until every node applied it (an `app`
    login at a follower that had not would fail). Polls ACL GETUSER, which, unlike a
    failed AUTH, is not logged or counted as an authentication failure."""
    import redis

    leader = cluster.nodes[cluster.wait_for_leader()]
    host, _, port = node_addr(leader, "resp", tls=False).rpartition(":")
    with redis.Redis(host=host, port=int(port), socket_timeout=5) as admin:
        admin.execute_command(*app_user_argv())
    deadline = time.monotonic() + timeout_s
    for node in cluster.nodes:
        host, _, port = node_addr(node, "resp", tls=False).rpartition(":")
        while True:
            with (
                contextlib.suppress(redis.RedisError),
                redis.Redis(host=host, port=int(port), socket_timeout=5) as client,
            ):
                if client.execute_command("ACL", "GETUSER", APP_USER):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host}:{port} did not apply the user {APP_USER!r}")
            time.sleep(0.1)


@contextlib.contextmanager
def running_setups(
    work_dir: Path, node_args: Sequence[str], configs: Sequence[str], keep: bool
) -> Iterator[dict[str, Setup]]:
    """One 3-node cluster for every configuration: TLS on its client ports and plaintext
    ports beside them (--plaintext-listen, --redis-plaintext-listen). `plain` and `users`
    use the plaintext ports, `tls` the TLS ones: the same processes, leader and log. Closed
    (and its throwaway key removed) on exit."""
    base = Path(tempfile.mkdtemp(prefix="security-", dir=work_dir))
    failed = True
    cluster: LocalCluster | None = None
    try:
        tls = dataclasses.replace(make_tls(base / "tls"), plaintext=True)
        cluster = LocalCluster(3, base / "cluster", extra_args=list(node_args), tls=tls)
        log(f"security: starting the cluster (load {os.getloadavg()[0]:.2f})")
        cluster.start()
        cluster.wait_until_ready(timeout=60)
        wait_announced(cluster)
        cluster.wait_for_leader()
        if "users" in configs:
            add_app_user(cluster)
        yield {config: Setup(config, cluster, access_for(config, tls), base) for config in configs}
        failed = False
    finally:
        if cluster is not None:
            cluster.close()
        with contextlib.suppress(OSError):
            shutil.rmtree(base / "tls")  # the throwaway key goes whatever happens
        if failed or keep:
            log(f"security: cluster data and node logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


def node_addr(node: LocalNode, protocol: str, tls: bool) -> str:
    """Where a configuration reaches a node: its TLS port for `tls`, otherwise the
    plaintext port beside it (a cluster without TLS: its only port)."""
    if protocol == "resp":
        port = node.redis_port if tls else node.redis_plaintext_port or node.redis_port
    else:
        port = node.client_port if tls else node.plaintext_port or node.client_port
    return f"{node.host}:{port}"


# ----------------------------------------------------------------------------- probes


def grpc_checks_state(source: str) -> dict[str, Any]:
    """Whether the node code the clusters ran (`source`: the directory raftcache.node is
    imported from) checks permissions on the gRPC data path, committed or only in the
    working tree."""
    node = Path(source) / "node"
    servicers = node / "servicers.py"
    text = servicers.read_text() if servicers.exists() else ""
    gate = node / "grpc_auth.py"
    gate_text = gate.read_text() if gate.exists() else ""
    in_tree = "gate.check" in text and "identify" in gate_text

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", "-C", source, *args], capture_output=True, text=True, check=False
            ).stdout.strip()
        except OSError:
            return ""

    committed = bool(git("log", "--oneline", "-1", "--", "node/grpc_auth.py"))
    uncommitted = bool(git("status", "--porcelain", "--", "node/servicers.py", "node/grpc_auth.py"))
    recent = git("log", "--oneline", "-20").splitlines()
    if not in_tree:
        summary = "absent (the gRPC users numbers measure authentication metadata only)"
    elif committed and not uncommitted:
        summary = "present and committed"
    elif committed:
        summary = "present (committed, with uncommitted changes in the working tree)"
    else:
        summary = "present in the working tree only (not yet committed)"
    return {
        "in_working_tree": in_tree,
        "committed": committed,
        "uncommitted_changes": uncommitted,
        "recent_grpc_commits": [line for line in recent if "grpc" in line.lower()],
        "summary": summary,
    }


async def _probe_grpc(addr: str) -> dict[str, str]:
    """An unauthenticated Get (the open default user: OK), and `app` reading a key outside
    key:* (PERMISSION_DENIED) and one inside it (OK)."""
    out: dict[str, str] = {}
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = cache_pb2_grpc.CacheStub(channel)
        md = (("authorization", basic_authorization(APP_USER, APP_PASSWORD)),)
        cases = {
            "grpc Get without credentials": ((), b"key:probe"),
            "grpc Get other:probe as app": (md, b"other:probe"),
            "grpc Get key:probe as app": (md, b"key:probe"),
        }
        for label, (metadata, key) in cases.items():
            try:
                await stub.Get(cache_pb2.GetRequest(key=key), timeout=5, metadata=metadata)
                out[label] = "OK"
            except grpc.aio.AioRpcError as exc:
                out[label] = exc.code().name
    return out


def _probe_resp(addr: str) -> dict[str, str]:
    import redis

    host, _, port = addr.rpartition(":")
    client = redis.Redis(host=host, port=int(port), username=APP_USER, password=APP_PASSWORD)
    out: dict[str, str] = {}
    try:
        for key in ("other:probe", "key:probe"):
            try:
                client.get(key)
                out[f"RESP GET {key} as app"] = "OK"
            except redis.RedisError as exc:
                out[f"RESP GET {key} as app"] = f"{type(exc).__name__}: {str(exc)[:60]}"
    finally:
        client.close()
    return out


def probe_users(setup: Setup) -> dict[str, str]:
    leader = setup.cluster.nodes[setup.cluster.wait_for_leader()]
    out = asyncio.run(_probe_grpc(node_addr(leader, "grpc", tls=False)))
    out.update(_probe_resp(node_addr(leader, "resp", tls=False)))
    return out


# ----------------------------------------------------------------------------- measuring


def measure(
    cell: Cell,
    setups: Mapping[str, Setup],
    *,
    keys: int,
    warmup: float,
    seconds: float,
    grpc_generator: str = "h2load",
) -> dict[str, Any]:
    """One run of one cell against its configuration's leader."""
    setup = setups[cell.config]
    cluster = setup.cluster
    leader = cluster.wait_for_leader()
    node = cluster.nodes[leader]
    target = node_addr(node, cell.protocol, tls=bool(setup.access.ca_pem))
    pids = node_pids(cluster, leader)
    term_before = getattr(cluster.status(leader), "term", None)
    load_start = list(os.getloadavg())
    if cell.protocol == "resp":
        ops, window_s, latencies_ms, codes, errors, cpu = _resp_run(
            cell, setup, target, pids, warmup=warmup, seconds=seconds
        )
        generator = "redis-benchmark"
        gens = ["redis-benchmark"]  # redis_benchmark_row's name for its process
    elif grpc_generator == "h2load":
        ops, window_s, latencies_ms, codes, errors, cpu = _grpc_h2load_run(
            cell, setup, target, pids, warmup=warmup, seconds=seconds
        )
        generator = "h2load"
        gens = ["generator(h2load)"]
    else:
        ops, window_s, latencies_ms, codes, errors, cpu = _grpc_run(
            cell, setup, target, pids, keys=keys, warmup=warmup, seconds=seconds
        )
        generator = "bench.loadgen (grpc.aio)"
        gens = [k for k in cpu.process_pct if k.startswith("generator")]
    load_end = list(os.getloadavg())
    term_after = getattr(cluster.status(leader), "term", None)
    leader_key = next(k for k in cpu.process_cpu_s if k.startswith("leader("))
    out = {
        **asdict(cell),
        "target": target,
        "generator": generator,
        "ops": ops,
        "window_s": window_s,
        "ops_per_s": round(ops / window_s, 1),
        "latency_ms": latencies_ms,
        "errors": errors,
        "error_codes": codes,
        "leader_cpu_pct": cpu.process_pct.get(leader_key),
        "leader_cpu_us_per_op": round(cpu.process_cpu_s[leader_key] / ops * 1e6, 1)
        if ops
        else math.nan,
        "generator_cpu_pct": [cpu.process_pct[k] for k in gens],
        "system_busy_pct": cpu.system_busy_pct,
        "unaccounted_pct": cpu.unaccounted_pct,
        "load_start": load_start,
        "load_end": load_end,
        "term_changed": term_before != term_after,
    }
    lat = out["latency_ms"]
    log(
        f"  rep {cell.rep} {PROTOCOL_LABEL[cell.protocol]:<4} {cell.op.upper():<3} "
        f"{cell.config:<5} {out['ops_per_s']:>9,.0f}/s p50 {lat['p50']:.2f} ms "
        f"p99 {lat['p99']:.2f} ms errors {out['errors']} leader {out['leader_cpu_pct']}% "
        f"{out['leader_cpu_us_per_op']} µs/op gen {out['generator_cpu_pct']}% "
        f"load {load_start[0]:.2f}->{load_end[0]:.2f}"
    )
    return out


def _grpc_run(
    cell: Cell,
    setup: Setup,
    target: str,
    pids: Mapping[str, int],
    *,
    keys: int,
    warmup: float,
    seconds: float,
) -> tuple[int, float, dict[str, float], dict[str, int], int, CpuReport]:
    """A gRPC cell: bench.loadgen's grpc.aio generator processes (credentials, CA)."""
    specs = [
        LoadSpec(
            op=LOADGEN_OP[(cell.protocol, cell.op)],
            targets=(target,),
            clients=CLIENTS // GENERATOR_PROCESSES,
            clients_per_channel=PER_CHANNEL,
            key_prefix=KEY_PREFIX,
            key_count=keys,
            value_size=VALUE_SIZE,
            warmup_s=warmup,
            duration_s=seconds,
            seed=1 + i,
            rpc_timeout_s=RPC_TIMEOUT_S,
        )
        for i in range(GENERATOR_PROCESSES)
    ]
    run = run_measured(specs, setup.access, pids)
    latencies: list[float] = []
    codes: dict[str, int] = {}
    for r in run.results:
        latencies.extend(r.latencies)
        for code, n in r.error_codes.items():
            codes[code] = codes.get(code, 0) + n
    summary = {k: round(v, 3) for k, v in latency_summary_ms(latencies).items()}
    ops = sum(r.ops for r in run.results)
    return ops, run.window_s, summary, codes, sum(r.errors for r in run.results), run.cpu


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message (uncompressed): what h2load sends as each call's body."""
    return b"\0" + len(message).to_bytes(4, "big") + message


def h2load_call(op: str) -> tuple[str, bytes]:
    """The method path and framed request of an h2load gRPC cell: one fixed key (the
    generator sends the same bytes on every call), a LINEARIZABLE Get or a 100-byte Set."""
    key = key_name(KEY_PREFIX, 1)
    if op == "set":
        message = cache_pb2.SetRequest(key=key, value=value_bytes(VALUE_SIZE, 1))
    else:
        message = cache_pb2.GetRequest(key=key, consistency=cache_pb2.LINEARIZABLE)  # type: ignore[assignment]
    return GRPC_METHODS[op], grpc_frame(message.SerializeToString())


def h2load_argv(
    target: str,
    path: str,
    body_file: Path,
    access: Access,
    *,
    seconds: float = 0.0,
    calls: int = 0,
    log_file: Path | None = None,
) -> list[str]:
    """h2load: H2LOAD_CONNECTIONS x H2LOAD_STREAMS concurrent unary calls, for `seconds`
    (-D: the warm-up, whose count leaves out the calls in flight at its end) or exactly
    `calls` of them (-n: every call is counted), https for a CA (h2load negotiates h2 by
    ALPN and does not check the certificate: the probes through grpc do), credentials on
    every call."""
    scheme = "https" if access.ca_pem else "http"
    amount = ["-n", str(calls)] if calls else ["-D", f"{round(seconds * 1000)}ms"]
    argv = [
        "h2load", "-c", str(H2LOAD_CONNECTIONS), "-m", str(H2LOAD_STREAMS), *amount,
        "-d", str(body_file), "-H", "content-type: application/grpc", "-H", "te: trailers",
    ]  # fmt: skip
    argv += [arg for key, value in access.metadata() for arg in ("-H", f"{key}: {value}")]
    if log_file is not None:
        argv.append(f"--log-file={log_file}")
    return [*argv, f"{scheme}://{target}{path}"]


def parse_h2load(text: str) -> dict[str, float]:
    """h2load's summary: `finished in` seconds, request counts, DATA bytes received."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("finished in "):  # finished in 5.00s, or 202.26ms
            took = line.split()[2].rstrip(",")
            for unit, scale in (("us", 1e-6), ("ms", 1e-3), ("s", 1.0)):
                if took.endswith(unit):
                    out["seconds"] = float(took.removesuffix(unit)) * scale
                    break
        elif line.startswith("requests:"):
            for part in line.removeprefix("requests:").split(","):
                count, name = part.split()[:2]
                out[name] = int(count)
        elif line.startswith("traffic:"):
            # traffic: 1.01MB (1058762) total, 50.47KB (51682) headers (...), 905KB (927600) data
            for part in line.removeprefix("traffic:").split(","):
                words = part.split()
                if len(words) >= 3 and words[-1] == "data":
                    out["data_bytes"] = int(words[-2].strip("()"))
    missing = {"seconds", "succeeded", "failed", "errored", "timeout", "data_bytes"} - set(out)
    if missing:
        raise ValueError(f"h2load printed no {sorted(missing)}: {text[-800:]}")
    return out


def h2load_latencies_s(log_file: Path) -> list[float]:
    """Per-request durations from h2load's --log-file (start us, HTTP status, duration us)."""
    out = []
    for line in log_file.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 3 and fields[1] == "200":
            out.append(int(fields[2]) / 1e6)
    return out


def unserved_calls(
    op: str, calls: int, counts: Mapping[str, float], before: bytes, after: bytes
) -> int:
    """Of the `calls` h2load made (-n: each one counted, none left in flight), those the
    node did not serve, from its replies to the same request sent through grpc before and
    after the run. A Set's reply carries the cluster's revision, which each write bumps by
    one and nothing else bumps during a gRPC Set cell (no other writer, no TTLs): after -
    before - 1 writes were served. Every Get reply is the same message, and a refused
    call's reply carries none: `calls` replies of that size must be exactly h2load's DATA
    bytes. Raises where the replies cannot be read so: the probes' Get replies differ or
    miss the key, or more was written or received than `calls` could make."""
    if op == "set":
        v0 = cache_pb2.SetResponse.FromString(before).version
        v1 = cache_pb2.SetResponse.FromString(after).version
        served = v1 - v0 - 1
    else:
        if before != after or not cache_pb2.GetResponse.FromString(before).found:
            shown = f"{before!r}, {after!r}"
            raise ValueError(f"the Get probe's replies differ or miss the key: {shown}")
        size = len(grpc_frame(before))
        served, odd = divmod(int(counts["data_bytes"]), size)
        if odd:
            raise ValueError(f"{counts['data_bytes']} DATA bytes are not replies of {size} bytes")
    if served > calls:
        raise ValueError(f"{served} calls served of the {calls} h2load made: another writer?")
    return calls - served


def _grpc_probe(target: str, access: Access, path: str, body: bytes) -> bytes:
    """The reply to h2load's exact request bytes and credentials, through grpc (raises on
    an error status: the cell would measure refusals)."""
    if access.ca_pem:
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(access.ca_pem))
    else:
        channel = grpc.insecure_channel(target)
    metadata = access.metadata()
    with channel:
        call = channel.unary_unary(path)  # no serializers: bytes in, bytes out
        reply: bytes = call(body[5:], timeout=RPC_TIMEOUT_S, metadata=metadata)
        return reply


def _grpc_h2load_run(
    cell: Cell,
    setup: Setup,
    target: str,
    pids: Mapping[str, int],
    *,
    warmup: float,
    seconds: float,
) -> tuple[int, float, dict[str, float], dict[str, int], int, CpuReport]:
    """A gRPC cell driven by h2load: a warm-up run of `warmup` s measures the rate, then a
    run of rate x `seconds` calls, each counted (-n), metered for CPU (the nodes from
    /proc, h2load from its rusage) and checked against the node's replies
    (unserved_calls). A run that completed no call raises (the cell records it failed)."""
    path, body = h2load_call(cell.op)
    body_file = setup.base / f"h2load-{cell.op}.bin"
    body_file.write_bytes(body)
    log_file = setup.base / "h2load-requests.log"
    timeout = max(60.0, (warmup + seconds) * 10)
    probe = subprocess.run(
        h2load_argv(target, path, body_file, setup.access, seconds=max(warmup, 0.5)),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    warm = parse_h2load(probe.stdout)
    calls = max(200, round(warm["succeeded"] / max(warm["seconds"], 1e-3) * seconds))
    before = _grpc_probe(target, setup.access, path, body)
    log_file.unlink(missing_ok=True)  # h2load appends to it
    argv = h2load_argv(target, path, body_file, setup.access, calls=calls, log_file=log_file)
    meter = CpuMeter(pids)
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    meter.start()
    gen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = gen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        gen.kill()
        gen.communicate()
        raise
    cpu = meter.stop()
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = _grpc_probe(target, setup.access, path, body)
    if gen.returncode != 0:
        raise RuntimeError(f"h2load exited {gen.returncode}: {out[-800:]}")
    counts = parse_h2load(out)
    if counts["succeeded"] == 0:
        raise RuntimeError(f"h2load completed no call: {out[-800:]}")
    generator_s = (children1.ru_utime - children0.ru_utime) + (
        children1.ru_stime - children0.ru_stime
    )
    cpu.process_cpu_s["generator(h2load)"] = round(generator_s, 3)
    cpu.process_pct["generator(h2load)"] = round(generator_s / cpu.wall_s * 100, 1)
    cpu.unaccounted_pct = round(cpu.unaccounted_pct - generator_s / cpu.wall_s * 100, 1)
    unserved = unserved_calls(cell.op, calls, counts, before, after)
    failed = int(counts["failed"])  # an errored or timed-out call is counted as failed too
    codes = {k: v for k, v in (("UNSERVED", unserved), ("H2LOAD_FAILED", failed)) if v}
    ops = min(int(counts["succeeded"]), calls - unserved)  # done by h2load and served
    latencies = latency_summary_ms(h2load_latencies_s(log_file))
    log_file.unlink(missing_ok=True)
    summary = {k: round(v, 3) for k, v in latencies.items()}
    return ops, counts["seconds"], summary, codes, calls - ops, cpu


def _resp_run(
    cell: Cell,
    setup: Setup,
    target: str,
    pids: Mapping[str, int],
    *,
    warmup: float,
    seconds: float,
) -> tuple[int, float, dict[str, float], dict[str, int], int, CpuReport]:
    """A RESP cell: redis-benchmark (C, OpenSSL) with `--user/-a` or `--tls --cacert`, as
    the redis section drives RESP. A Python asyncio generator paid its own TLS per request
    (its CPU doubled under TLS), and on a shared 2-core machine that CPU is taken from the
    server under test, so the TLS ratio measured the client's TLS as much as the node's."""
    from bench.redis_section import redis_benchmark_row

    extra: list[str] = []
    access = setup.access
    if access.user:
        extra += ["--user", access.user, "-a", access.password]
    if access.ca_pem:
        ca = setup.base / "bench-ca.pem"
        ca.write_bytes(access.ca_pem)
        extra += ["--tls", "--cacert", str(ca)]
    row = redis_benchmark_row(
        int(target.rpartition(":")[2]),
        pids,
        test=cell.op,
        clients=CLIENTS,
        keys=KEYS,
        warmup=warmup,
        duration=seconds,
        extra=extra,
    )
    cpu = CpuReport(**row["cpu"])
    return row["ops"], row["window_s"], row["latency_ms"], {}, row["errors"], cpu


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def write_outputs(out_dir: Path, section: Mapping[str, Any]) -> None:
    """security.json and security.md in out_dir."""
    (out_dir / "security.json").write_text(json.dumps(_clean(section), indent=2) + "\n")
    (out_dir / "security.md").write_text(markdown(section))


def run(
    work_dir: Path,
    out_dir: Path,
    node_args: Sequence[str],
    *,
    keys: int = KEYS,
    warmup: float = 1.0,
    seconds: float = 5.0,
    reps: int = REPS,
    keep_data: bool = False,
    grpc_generator: str = "h2load",
) -> dict[str, Any]:
    if grpc_generator not in GRPC_GENERATORS:
        raise ValueError(f"grpc_generator {grpc_generator!r} is not one of {GRPC_GENERATORS}")
    peers.ensure_tools(["redis-benchmark", *(["h2load"] if grpc_generator == "h2load" else [])])
    machine = machine_info()
    section: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "git_commit": machine["git_commit"],
        "git_dirty": machine["git_dirty"],
        "machine": {k: machine[k] for k in ("cpu_count", "cpu_model", "memory_gb", "python")},
        "load_start": load_snapshot("security section start"),
        "setup": {
            "configs": list(CONFIGS),
            "clients": CLIENTS,
            "grpc_generator": grpc_generator,
            "generator_processes": GENERATOR_PROCESSES,
            "grpc_clients_per_channel": PER_CHANNEL,
            "h2load_connections_x_streams": [H2LOAD_CONNECTIONS, H2LOAD_STREAMS],
            "key_prefix": KEY_PREFIX,
            "key_space": keys,
            "value_bytes": VALUE_SIZE,
            "warmup_s": warmup,
            "seconds": seconds,
            "reps": reps,
            "node_args": list(node_args),
            "users": " ".join(app_user_argv()) + " (on the plain cluster, through Raft)",
            "targets": TARGETS,
        },
        "grpc_checks": grpc_checks_state(machine["raftcache_source"]),
        "runs": [],
    }
    log(f"security: gRPC permission checks {section['grpc_checks']['summary']}")
    with running_setups(work_dir, node_args, CONFIGS, keep_data) as setups:
        try:
            section["probes"] = probe_users(setups["users"])
        except Exception:
            section["probes"] = {"error": traceback.format_exc()[-500:]}
        log(f"security: probes of app (users configuration): {section['probes']}")
        for cell in plan(reps):
            try:
                result = measure(
                    cell,
                    setups,
                    keys=keys,
                    warmup=warmup,
                    seconds=seconds,
                    grpc_generator=grpc_generator,
                )
            except Exception:
                error = traceback.format_exc()
                log(f"  {cell} FAILED: {error[-400:]}")
                result = {**asdict(cell), "failed": error[-2000:], "load_start": []}
            section["runs"].append(result)
            section["summary"] = summarize(section["runs"])
            section["ratios"] = ratios(section["summary"], section["runs"])
            write_outputs(out_dir, section)
    section["load_end"] = load_snapshot("security section end")
    section["grpc_checks_at_end"] = grpc_checks_state(machine["raftcache_source"])
    end_commit = machine_info()["git_commit"]
    if end_commit != section["git_commit"]:
        section["git_commit_at_end"] = end_commit
    section["summary"] = summarize(section["runs"])
    section["ratios"] = ratios(section["summary"], section["runs"])
    section["failed"] = [
        f"{r['protocol']}/{r['op']}/{r['config']}/rep{r['rep']}" for r in section["runs"]
        if "failed" in r
    ]  # fmt: skip
    write_outputs(out_dir, section)
    log("security:\n" + markdown(section))
    return section
