"""`apps` section: the two application patterns of issue 11, raftcache next to Redis 7.

Rows (64 connections each, closed loop, warm-up then `seconds` measured), against
raftcache's leader RESP port (3-node LocalCluster, journal durability) and Redis 7's
primary (Debian redis-server, primary + 2 `--replicaof` replicas, no persistence), the two
systems one after the other in the same run:
- `lock`: redis-py's `Lock` release, verbatim (`redis.lock.Lock.LUA_RELEASE_SCRIPT`, loaded
  once with SCRIPT LOAD): each connection i loops `SET lock:<i> <token> NX PX 10000` then
  `EVALSHA <sha> 1 lock:<i> <token>`, expecting +OK then :1. EVALSHA/s = SET+EVALSHA
  pairs/s; p50/p99 of the EVALSHA alone and of the pair. The token is fixed per
  connection (redis-py draws one per acquire; the script compares it the same way).
- `pingpong`: 32 producer/consumer pairs. Producer i: `LPUSH q:<i> ping`, then
  `BRPOP r:<i> 5`; consumer i: `BRPOP q:<i> 5`, then `LPUSH r:<i> ack`. Round trips/s
  and p50/p99 per round trip, as the producer sees it.
- `pingpong_followers` (raftcache only): the same, the consumers connected to the two
  followers (as a Kubernetes Service would spread them), the producers to the leader.
  Redis has no counterpart (its replicas refuse BRPOP); its ratio is to Redis's primary row.

The generator is our own asyncio client in spawned processes (bench/respgen.py's style:
one Protocol per connection, every command pre-encoded, replies framed by byte scans).
A row whose single generator process ran at >= GENERATOR_BOUND_PCT of a core runs again
with two processes and keeps the better (both recorded), as the peers section does.
Each row records os.getloadavg() at its start and end (the box is shared), the CPU of
the servers and generators over the measured window, and the leader's / primary's CPU
seconds per operation; a raftcache row during which the Raft term changed is measured
once more. Every process is ended by its own PID.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import multiprocessing as mp
import multiprocessing.synchronize
import os
import queue
import tempfile
import time
import traceback
from array import array
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import redis
from redis.lock import Lock

from bench import peers
from bench.common import (
    CpuMeter,
    FramedReplies,
    latency_summary_ms,
    load_snapshot,
    log,
    machine_info,
    node_pids,
    running_cluster,
)
from bench.respgen import command, reply_end

RELEASE_SCRIPT: str = Lock.LUA_RELEASE_SCRIPT
"""redis-py's lock-release script, byte for byte (its sha1 is what redis-py's EVALSHA sends)."""
RELEASE_SHA = hashlib.sha1(RELEASE_SCRIPT.encode()).hexdigest()
CLIENTS = 64
LOCK_PX_MS = 10_000
BLOCK_TIMEOUT_S = 5
GENERATOR_BOUND_PCT = 85.0
ERROR_PAUSE_S = 0.002
"""After an error reply a connection pauses before its next cycle, so a refusing node
does not spin it."""
TOOLS = ("redis-server", "redis-cli")
WORKLOADS = ("lock", "pingpong", "pingpong_followers")
LABELS = {
    "lock": "SET NX PX + EVALSHA release (redis-py Lock)",
    "pingpong": "BRPOP/LPUSH ping-pong",
    "pingpong_followers": "BRPOP/LPUSH ping-pong, consumers on followers",
}
TIMED_ROLES = ("locker", "producer")
"""Roles whose cycles are the row's operations; consumers only serve the producers."""
REDIS_ROW = {"lock": "lock", "pingpong": "pingpong", "pingpong_followers": "pingpong"}
"""Which Redis row each raftcache row is divided by."""

# ----------------------------------------------------------------------------- the commands

Step = tuple[bytes, str]
"""A pre-encoded command and the reply it must get: ok (+OK), one (:1), int (any
integer) or pop (a [key, element] array)."""


@dataclass(frozen=True)
class Conn:
    """One connection of a row: its role, its lock or queue-pair number, where it goes."""

    role: str  # locker | producer | consumer
    index: int
    target: str  # host:port


def lock_key(i: int) -> bytes:
    return b"lock:%d" % i


def steps_for(conn: Conn, sha: str = RELEASE_SHA) -> tuple[Step, ...]:
    """The commands one connection sends per cycle, each after the previous one's reply."""
    i = conn.index
    if conn.role == "locker":
        key, token = lock_key(i), b"token-%d-%d" % (os.getpid(), i)
        return (
            (command(b"SET", key, token, b"NX", b"PX", b"%d" % LOCK_PX_MS), "ok"),
            (command(b"EVALSHA", sha.encode(), b"1", key, token), "one"),
        )
    block = b"%d" % BLOCK_TIMEOUT_S
    if conn.role == "producer":
        return (
            (command(b"LPUSH", b"q:%d" % i, b"ping"), "int"),
            (command(b"BRPOP", b"r:%d" % i, block), "pop"),
        )
    if conn.role == "consumer":
        return (
            (command(b"BRPOP", b"q:%d" % i, block), "pop"),
            (command(b"LPUSH", b"r:%d" % i, b"ack"), "int"),
        )
    raise ValueError(f"apps: unknown role {conn.role!r}")


def check(expect: str, reply: bytes) -> str:
    """'' if `reply` (one whole RESP reply) is what `expect` wants, else a short error code:
    the error's first word, `nil` (a refused NX or a timed-out pop) or `unexpected`."""
    kind = reply[:1]
    if kind == b"-":
        return reply[1:].split(b" ", 1)[0].strip().decode("latin-1", "replace") or "ERR"
    if reply in (b"$-1\r\n", b"*-1\r\n", b"_\r\n"):
        return "nil"
    if expect == "ok":
        good = reply == b"+OK\r\n"
    elif expect == "one":
        good = reply == b":1\r\n"
    elif expect == "int":
        good = kind == b":"
    elif expect == "pop":
        good = reply.startswith(b"*2\r\n")
    else:
        raise ValueError(f"apps: unknown expectation {expect!r}")
    return "" if good else "unexpected"


def plan(workload: str, clients: int, leader: str, followers: Sequence[str]) -> list[Conn]:
    """The connections of a row: `clients` lockers, or clients/2 producer/consumer pairs
    (consumers on the followers, alternating, for pingpong_followers)."""
    if workload == "lock":
        return [Conn("locker", i, leader) for i in range(clients)]
    pairs = clients // 2
    if workload == "pingpong":
        homes = [leader] * pairs
    elif workload == "pingpong_followers":
        if not followers:
            raise ValueError("pingpong_followers needs follower addresses")
        homes = [followers[i % len(followers)] for i in range(pairs)]
    else:
        raise ValueError(f"apps: unknown workload {workload!r}")
    return [
        *(Conn("producer", i, leader) for i in range(pairs)),
        *(Conn("consumer", i, homes[i]) for i in range(pairs)),
    ]


def split(conns: Sequence[Conn], processes: int) -> list[list[Conn]]:
    """Connections per generator process, by their lock/pair number."""
    return [[c for c in conns if c.index % processes == p] for p in range(processes)]


# ----------------------------------------------------------------------------- the generator


@dataclass
class RoleStats:
    """What one role's connections did inside the measured window."""

    cycles: int = 0
    errors: int = 0
    codes: dict[str, int] = field(default_factory=dict)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    step_latencies: list[array[float]] = field(default_factory=list)

    def merge(self, other: RoleStats) -> None:
        self.cycles += other.cycles
        self.errors += other.errors
        for code, n in other.codes.items():
            self.codes[code] = self.codes.get(code, 0) + n
        self.latencies.extend(other.latencies)
        while len(self.step_latencies) < len(other.step_latencies):
            self.step_latencies.append(array("d"))
        for mine, theirs in zip(self.step_latencies, other.step_latencies, strict=False):
            mine.extend(theirs)


@dataclass
class ProcResult:
    index: int
    roles: dict[str, RoleStats] = field(default_factory=dict)
    stuck: int = 0
    """Timed connections still mid-cycle 10 s after the window ended."""
    failure: str = ""


@dataclass
class Window:
    measure_start: float
    end: float


class _Loop(FramedReplies):
    """One connection running its steps in a loop; cycles and steps that complete inside
    the window are counted and timed."""

    reply_end = staticmethod(reply_end)

    def __init__(
        self, steps: Sequence[Step], stats: RoleStats, timed: bool, recover: bytes | None = None
    ) -> None:
        self.steps = steps
        self.timed = timed
        # sent after an error (its reply ignored) before the next cycle: a locker's release,
        # so a lock a failed cycle left held does not refuse every SET NX for PX ms
        self.recover = recover
        self.recovering = False
        self.stats = stats
        while len(stats.step_latencies) < len(steps):
            stats.step_latencies.append(array("d"))
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        super().__init__()
        self.window = Window(0.0, 0.0)
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self.closing = False
        self.step = 0
        self.t_cycle = 0.0
        self.t_step = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done() and not self.closing:
            self.finished.set_exception(ConnectionError(f"connection lost mid-run: {exc}"))

    def start(self, window: Window) -> None:
        self.window = window
        self._cycle()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _cycle(self) -> None:
        now = time.perf_counter()
        if now >= self.window.end or self.closing:
            if not self.finished.done():
                self.finished.set_result(None)
            return
        assert self.transport is not None
        self.step = 0
        self.t_cycle = self.t_step = now
        self.transport.write(self.steps[0][0])

    def _after_error(self) -> None:
        if self.recover is None or self.closing or time.perf_counter() >= self.window.end:
            self._cycle()
            return
        assert self.transport is not None
        self.recovering = True
        self.transport.write(self.recover)

    def _reply(self, reply: bytes) -> None:
        now = time.perf_counter()
        stats, window = self.stats, self.window
        inside = window.measure_start <= now < window.end
        if self.recovering:
            self.recovering = False
            self._cycle()
            return
        code = check(self.steps[self.step][1], reply)
        if code:
            if inside:
                stats.errors += 1
                stats.codes[code] = stats.codes.get(code, 0) + 1
            self.loop.call_later(ERROR_PAUSE_S, self._after_error)
            return
        if inside:
            stats.step_latencies[self.step].append(now - self.t_step)
        self.step += 1
        if self.step < len(self.steps):
            assert self.transport is not None
            self.t_step = now
            self.transport.write(self.steps[self.step][0])
            return
        if inside:
            stats.cycles += 1
            stats.latencies.append(now - self.t_cycle)
        self._cycle()


async def connect(conns: Sequence[Conn], result: ProcResult, sha: str) -> list[_Loop]:
    loop = asyncio.get_running_loop()
    clients: list[_Loop] = []
    for conn in conns:
        stats = result.roles.setdefault(conn.role, RoleStats())
        host, _, port = conn.target.rpartition(":")
        steps = steps_for(conn, sha)
        recover = steps[-1][0] if conn.role == "locker" else None
        protocol = functools.partial(_Loop, steps, stats, conn.role in TIMED_ROLES, recover)
        _transport, client = await loop.create_connection(protocol, host, int(port))
        clients.append(client)
    return clients


async def run_window(clients: Sequence[_Loop], window: Window, result: ProcResult) -> None:
    """Start every connection; return when the timed ones have finished their last cycle
    (or 10 s past the window's end), then close them all."""
    for client in clients:
        client.start(window)
    timed = [c.finished for c in clients if c.timed]
    try:
        timeout = window.end - time.perf_counter() + BLOCK_TIMEOUT_S * 2
        _done, pending = await asyncio.wait(timed, timeout=max(timeout, 0.1))
        result.stuck = len(pending)
        for future in timed:
            error = future.exception() if future.done() else None
            if error is not None:
                raise error
    finally:
        for client in clients:
            client.close()
            if not client.finished.done():
                client.finished.cancel()


async def _child(
    conns: Sequence[Conn],
    sha: str,
    warmup: float,
    seconds: float,
    result: ProcResult,
    ready: mp.Queue[int],
    go: multiprocessing.synchronize.Event,
    start_at: Synchronized[float],
) -> None:
    clients = await connect(conns, result, sha)
    ready.put(result.index)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, go.wait)
    begin = start_at.value + time.perf_counter() - time.monotonic()
    await asyncio.sleep(max(begin - time.perf_counter(), 0))
    await run_window(clients, Window(begin + warmup, begin + warmup + seconds), result)


def _child_main(
    conns: Sequence[Conn],
    sha: str,
    warmup: float,
    seconds: float,
    index: int,
    ready: mp.Queue[int],
    results: mp.Queue[ProcResult],
    go: multiprocessing.synchronize.Event,
    start_at: Synchronized[float],
) -> None:
    result = ProcResult(index)
    try:
        asyncio.run(_child(conns, sha, warmup, seconds, result, ready, go, start_at))
    except BaseException as exc:  # report instead of hanging the parent
        result.failure = f"{type(exc).__name__}: {exc}"
        ready.put(index)
    results.put(result)


@dataclass
class Measured:
    roles: dict[str, RoleStats]
    cpu: dict[str, Any]
    window_s: float
    processes: int
    stuck: int


def generate(
    conns: Sequence[Conn],
    server_pids: Mapping[str, int],
    *,
    sha: str,
    warmup: float,
    seconds: float,
    processes: int,
) -> Measured:
    """Spawned generator processes on one clock; CPU metered over the measured window."""
    ctx = mp.get_context("spawn")
    ready: mp.Queue[int] = ctx.Queue()
    results: mp.Queue[ProcResult] = ctx.Queue()
    go = ctx.Event()
    start_at: Synchronized[float] = ctx.Value("d", 0.0)
    slices = split(conns, processes)
    procs = [
        ctx.Process(
            target=_child_main,
            args=(part, sha, warmup, seconds, i, ready, results, go, start_at),
            daemon=True,
            name=f"bench-apps-{i}",
        )
        for i, part in enumerate(slices)
    ]
    try:
        for p in procs:
            p.start()
        for _ in procs:
            ready.get(timeout=60)
        begin = time.monotonic() + 0.2
        start_at.value = begin
        go.set()
        gens = {f"generator{i}": p.pid for i, p in enumerate(procs) if p.pid is not None}
        meter = CpuMeter({**server_pids, **gens})
        time.sleep(max(begin + warmup - time.monotonic(), 0))
        meter.start()
        time.sleep(max(begin + warmup + seconds - time.monotonic(), 0))
        cpu = meter.stop()
        got: list[ProcResult] = []
        try:
            for _ in procs:
                got.append(results.get(timeout=seconds + BLOCK_TIMEOUT_S * 2 + 30))
        except queue.Empty:
            raise TimeoutError("an apps generator process did not report") from None
        for p in procs:
            p.join(timeout=10)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()  # by its own PID
                p.join(timeout=5)
    failures = [r.failure for r in got if r.failure]
    if failures:
        raise RuntimeError(f"apps generator failed: {failures}")
    roles: dict[str, RoleStats] = {}
    for r in got:
        for role, stats in r.roles.items():
            roles.setdefault(role, RoleStats()).merge(stats)
    return Measured(roles, asdict(cpu), seconds, processes, sum(r.stuck for r in got))


# ----------------------------------------------------------------------------- row math


def _ms(values: Sequence[float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in latency_summary_ms(values).items()}


def summarize(workload: str, m: Measured, head: str) -> dict[str, Any]:
    """A row's numbers from what the generator saw; `head` is the CPU-meter name prefix of
    the node every operation goes through (leader / primary)."""
    timed = RoleStats()
    for role in TIMED_ROLES:
        if role in m.roles:
            timed.merge(m.roles[role])
    ops = timed.cycles
    per_s = ops / m.window_s if m.window_s > 0 else math.nan
    cpu_s: dict[str, float] = m.cpu["process_cpu_s"]
    gens = [k for k in cpu_s if k.startswith("generator")]
    head_cpu = sum(v for k, v in cpu_s.items() if k.startswith(head))
    servers_cpu = sum(v for k, v in cpu_s.items() if k not in gens)
    out: dict[str, Any] = {
        "ops": ops,
        "window_s": m.window_s,
        "ops_per_s": round(per_s, 1),
        "latency_ms": _ms(timed.latencies),
        "errors": timed.errors,
        "error_codes": timed.codes,
        "generator_processes": m.processes,
        "stuck_connections": m.stuck,
        "head_cpu_us_per_op": round(head_cpu / ops * 1e6, 1) if ops else None,
        "servers_cpu_us_per_op": round(servers_cpu / ops * 1e6, 1) if ops else None,
        "generator_cpu_pct": [m.cpu["process_pct"][k] for k in gens],
        "cpu": m.cpu,
    }
    steps = timed.step_latencies
    if workload == "lock":
        out["evalsha_per_s"] = out["ops_per_s"]
        out["commands_per_s"] = round(2 * per_s, 1)
        out["set_latency_ms"] = _ms(steps[0]) if steps else _ms([])
        out["evalsha_latency_ms"] = _ms(steps[1]) if len(steps) > 1 else _ms([])
    else:
        out["lpush_latency_ms"] = _ms(steps[0]) if steps else _ms([])
        consumer = m.roles.get("consumer", RoleStats())
        out["consumer"] = {"cycles": consumer.cycles, "errors": consumer.errors,
                           "error_codes": consumer.codes}  # fmt: skip
    return out


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or not theirs or math.isnan(ours) or math.isnan(theirs):
        return None
    return round(ours / theirs, 4)


def ratios(section: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    """raftcache / Redis per raftcache row: throughput, and p50 and p99 latency."""
    redis_rows = {r["workload"]: r for r in _rows(section, "redis")}
    out: dict[str, dict[str, float | None]] = {}
    for row in _rows(section, "raftcache"):
        theirs = redis_rows.get(REDIS_ROW[row["workload"]])
        if theirs is None:
            continue
        out[row["workload"]] = {
            "ops_per_s": ratio(row["ops_per_s"], theirs["ops_per_s"]),
            "p50": ratio(row["latency_ms"]["p50"], theirs["latency_ms"]["p50"]),
            "p99": ratio(row["latency_ms"]["p99"], theirs["latency_ms"]["p99"]),
        }
    return out


def _rows(section: Mapping[str, Any], system: str) -> list[dict[str, Any]]:
    block = section.get("systems", {}).get(system, {})
    return [r for r in block.get("rows", []) if "ops_per_s" in r]


# ----------------------------------------------------------------------------- measuring


def prepare(addr: str, workload: str, clients: int) -> str:
    """Empty the row's keys and load the release script; returns the sha the server gave."""
    host, _, port = addr.rpartition(":")
    client = redis.Redis(host=host, port=int(port), socket_timeout=30)
    try:
        keys = [lock_key(i) for i in range(clients)]
        keys += [b"%s:%d" % (q, i) for q in (b"q", b"r") for i in range(clients // 2)]
        client.delete(*keys)
        sha = str(client.script_load(RELEASE_SCRIPT))
    finally:
        client.close()
    if sha != RELEASE_SHA:
        raise RuntimeError(f"SCRIPT LOAD answered {sha}, expected sha1 {RELEASE_SHA}")
    return sha


def measure(
    system: str,
    workload: str,
    leader: str,
    followers: Sequence[str],
    pids: Mapping[str, int],
    *,
    head: str,
    clients: int,
    warmup: float,
    seconds: float,
) -> dict[str, Any]:
    """One row; at >= GENERATOR_BOUND_PCT once more with two generator processes."""
    load_start = list(os.getloadavg())
    conns = plan(workload, clients, leader, followers)

    def once(processes: int) -> dict[str, Any]:
        sha = prepare(leader, workload, clients)
        m = generate(conns, pids, sha=sha, warmup=warmup, seconds=seconds, processes=processes)
        result = summarize(workload, m, head)
        result["generator_bound"] = any(
            p >= GENERATOR_BOUND_PCT for p in result["generator_cpu_pct"]
        )
        return result

    result = once(1)
    if result["generator_bound"]:
        log(f"  generator at {result['generator_cpu_pct']}% of a core: again with 2 processes")
        two = once(2)
        variants = [_variant(result), _variant(two)]
        result = two if two["ops_per_s"] > result["ops_per_s"] else result
        result["variants"] = variants
    lat = result["latency_ms"]
    out = {
        "system": system,
        "workload": workload,
        "label": LABELS[workload],
        "clients": clients,
        "leader_target": leader,
        "consumer_targets": sorted({c.target for c in conns if c.role == "consumer"}),
        **result,
        "load_start": load_start,
        "load_end": list(os.getloadavg()),
    }
    log(
        f"  {system:<9} {workload:<18} c={clients} {out['ops_per_s']:>9,.0f}/s "
        f"p50 {lat['p50']:.3f} ms p99 {lat['p99']:.3f} ms errors {out['errors']} "
        f"gen CPU {out['generator_cpu_pct']}% load {load_start[0]:.2f}->{out['load_end'][0]:.2f}"
    )
    return out


def _variant(result: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("generator_processes", "ops_per_s", "latency_ms", "errors", "generator_cpu_pct")
    return {k: result[k] for k in keep}


def _guarded(system: str, workload: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A row that fails is recorded as failed (with why) and the section goes on."""
    try:
        return run()
    except Exception:
        error = traceback.format_exc()
        log(f"  {system} {workload} FAILED: {error[-400:]}")
        return {"system": system, "workload": workload, "label": LABELS[workload],
                "failed": error[-2000:]}  # fmt: skip


def _raftcache(
    work_dir: Path, node_args: Sequence[str], clients: int, warmup: float, seconds: float,
    keep_data: bool,
) -> dict[str, Any]:  # fmt: skip
    block: dict[str, Any] = {"node_args": list(node_args), "durability": "journal"}
    rows: list[dict[str, Any]] = []
    with running_cluster(work_dir, "apps", node_args, keep=keep_data) as (cluster, _leader):
        block["leader_at_start"] = cluster.nodes[cluster.wait_for_leader()].node_id

        def row(workload: str) -> dict[str, Any]:
            discarded: list[dict[str, Any]] = []
            while True:
                leader = cluster.wait_for_leader()
                nodes = cluster.nodes
                followers = [n.redis_addr for i, n in enumerate(nodes) if i != leader]
                before = [cluster.status(i) for i in range(len(nodes))]
                result = measure(
                    "raftcache", workload, nodes[leader].redis_addr, followers,
                    node_pids(cluster, leader), head="leader", clients=clients,
                    warmup=warmup, seconds=seconds,
                )  # fmt: skip
                after = [cluster.status(i) for i in range(len(nodes))]
                result["leader"] = nodes[leader].node_id
                result["term_changed"] = any(
                    a is None or b is None or a.term != b.term
                    for a, b in zip(after, before, strict=True)
                )
                if not result["term_changed"] or discarded:
                    result["discarded_after_term_change"] = discarded
                    return result
                log("  the Raft term changed during the row: measuring it again")
                discarded.append(_variant(result))

        for workload in WORKLOADS:
            rows.append(_guarded("raftcache", workload, functools.partial(row, workload)))
        block["leader_at_end"] = cluster.nodes[cluster.wait_for_leader()].node_id
    block["rows"] = rows
    return block


def _redis(work_dir: Path, clients: int, warmup: float, seconds: float) -> dict[str, Any]:
    group = peers.RedisGroup(Path(tempfile.mkdtemp(prefix="redis-apps-", dir=work_dir)))
    block: dict[str, Any] = {
        "setup": "redis-server primary + 2 replicas (--replicaof), --save '' --appendonly no; "
        "every command to the primary (replicas refuse BRPOP and EVALSHA writes)"
    }
    rows: list[dict[str, Any]] = []
    try:
        group.start()
        primary = f"127.0.0.1:{group.primary_port}"
        for workload in ("lock", "pingpong"):
            measured = functools.partial(
                measure, "redis", workload, primary, [], group.pids, head="primary",
                clients=clients, warmup=warmup, seconds=seconds,
            )  # fmt: skip
            rows.append(_guarded("redis", workload, measured))
    finally:
        group.close()
    block["rows"] = rows
    return block


def run(
    work_dir: Path,
    node_args: Sequence[str],
    *,
    clients: int = CLIENTS,
    warmup: float = 1.0,
    seconds: float = 5.0,
    keep_data: bool = False,
) -> dict[str, Any]:
    if clients < 2 or clients % 2:
        raise ValueError(f"apps: --apps-clients must be an even number >= 2, not {clients}")
    peers.ensure_tools(TOOLS)
    machine = machine_info()
    section: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "git_commit": machine["git_commit"],
        "git_dirty": machine["git_dirty"],
        "load_start": load_snapshot("apps section start"),
        "setup": {
            "clients": clients,
            "warmup_s": warmup,
            "seconds_per_row": seconds,
            "release_script_sha1": RELEASE_SHA,
            "redis_py": redis.__version__,
            "lock_px_ms": LOCK_PX_MS,
            "block_timeout_s": BLOCK_TIMEOUT_S,
            "generator_bound_pct": GENERATOR_BOUND_PCT,
            "order": ["raftcache", "redis"],
            "cpu_count": machine["cpu_count"],
        },
        "versions": {"redis-server": peers.tool_version(["redis-server", "--version"])},
        "systems": {},
    }
    blocks: dict[str, Callable[[], dict[str, Any]]] = {
        "raftcache": lambda: _raftcache(work_dir, node_args, clients, warmup, seconds, keep_data),
        "redis": lambda: _redis(work_dir, clients, warmup, seconds),
    }
    for name, block_run in blocks.items():
        log(f"apps: {name} (load {os.getloadavg()[0]:.2f})")
        started = time.monotonic()
        try:
            block = block_run()
        except Exception:
            block = {"error": traceback.format_exc(), "rows": []}
            log(f"apps: {name} failed:\n{block['error']}")
        block["elapsed_s"] = round(time.monotonic() - started, 1)
        section["systems"][name] = block
    section["ratios"] = ratios(section)
    section["load_end"] = load_snapshot("apps section end")
    section["failed"] = [
        n for n, b in section["systems"].items()
        if "error" in b or any("failed" in r for r in b["rows"])
    ]  # fmt: skip
    text = markdown(section)
    log("apps:\n" + text)
    return section


# ----------------------------------------------------------------------------- markdown


def _n(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def _load(row: Mapping[str, Any]) -> str:
    return f"{row['load_start'][0]:.2f} → {row['load_end'][0]:.2f}"


def markdown(section: Mapping[str, Any]) -> str:
    """The apps table: one line per row, raftcache's with its ratios to Redis."""
    setup = section.get("setup", {})
    lines = [
        "## Application patterns: redis-py Lock release and BRPOP/LPUSH ping-pong "
        "(raftcache vs Redis 7, same run)",
        "",
        f"{setup.get('clients')} connections per row, {setup.get('warmup_s')} s warm-up + "
        f"{setup.get('seconds_per_row')} s measured, closed loop; release script sha1 "
        f"`{setup.get('release_script_sha1')}` (redis-py {setup.get('redis_py')}); "
        f"{section.get('versions', {}).get('redis-server', '')}. Load: "
        f"`{section.get('load_start', {}).get('uptime', '?')}` at the start, "
        f"`{section.get('load_end', {}).get('uptime', '?')}` at the end.",
        "",
        "| System | Row | ops/s | p50 ms | p99 ms | step p50/p99 ms | Errors "
        "| Leader/primary CPU µs/op | Gen CPU % | Others' CPU % | Load 1-min start → end "
        "| ratio ops/s | ratio p50 | ratio p99 |",
        "|---|---|---:|---:|---:|---|---:|---:|---|---:|---|---:|---:|---:|",
    ]
    rat = section.get("ratios", {})
    for system in ("raftcache", "redis"):
        block = section.get("systems", {}).get(system, {})
        if "error" in block:
            lines.append(f"| {system} | FAILED (see bench.json) |" + " |" * 12)
            continue
        for row in block.get("rows", []):
            if "failed" in row:
                lines.append(f"| {system} | {row['label']}: FAILED |" + " |" * 12)
                continue
            lat = row["latency_ms"]
            r = rat.get(row["workload"], {}) if system == "raftcache" else {}
            if row["workload"] == "lock":
                s = row["evalsha_latency_ms"]
                step = f"EVALSHA {_n(s['p50'], 3)}/{_n(s['p99'], 3)}"
            else:
                s = row["lpush_latency_ms"]
                step = f"LPUSH {_n(s['p50'], 3)}/{_n(s['p99'], 3)}"
            lines.append(
                f"| {system} | {row['label']} | {_n(row['ops_per_s'])} | {_n(lat['p50'], 3)} "
                f"| {_n(lat['p99'], 3)} | {step} | {row['errors']} "
                f"| {_n(row['head_cpu_us_per_op'])} "
                f"| {' + '.join(f'{p:.0f}' for p in row['generator_cpu_pct'])} "
                f"| {_n(row.get('cpu', {}).get('unaccounted_pct'))} | {_load(row)} "
                f"| {_n(r.get('ops_per_s'), 3)} | {_n(r.get('p50'), 2)} | {_n(r.get('p99'), 2)} |"
            )
    lines.append("")
    lines.append(
        "ops/s: lock = SET+EVALSHA pairs/s (= EVALSHA/s); ping-pong = round trips/s (LPUSH "
        "q, consumer's BRPOP + LPUSH r, producer's BRPOP r). Ratios are raftcache / Redis "
        "(the consumers-on-followers row is divided by Redis's primary row); latency ratios "
        "above 1 mean raftcache is slower. CPU % is of one core (the box has "
        f"{setup.get('cpu_count', '?')}); others' CPU = machine busy time outside the servers and "
        "generators over the window (other users of the shared box)."
    )
    for system in ("raftcache", "redis"):
        for row in section.get("systems", {}).get(system, {}).get("rows", []):
            if row.get("variants"):
                tried = "; ".join(
                    f"{v['generator_processes']} proc: {v['ops_per_s']:,.0f}/s"
                    for v in row["variants"]
                )
                lines.append(f"- {system} {row['workload']}: generator CPU-bound; tried {tried}")
            if row.get("term_changed"):
                lines.append(f"- {system} {row['workload']}: **the Raft term changed**")
            if row.get("stuck_connections"):
                lines.append(
                    f"- {system} {row['workload']}: {row['stuck_connections']} connection(s) "
                    "still waiting 10 s after the window"
                )
            if row.get("error_codes"):
                lines.append(f"- {system} {row['workload']}: errors {row['error_codes']}")
    lines.append("")
    return "\n".join(lines)
