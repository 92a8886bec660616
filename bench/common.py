"""Shared pieces of the benchmarks: clusters, CPU accounting, percentiles, machine facts."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import grpc
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2, cluster_pb2_grpc
from raftcache.v1.wire import FORWARDED_METADATA_KEY, LEADER_METADATA_KEY

CLK_TCK = os.sysconf("SC_CLK_TCK")
VALUE_SIZE = 100
NO_FORWARD_METADATA = ((FORWARDED_METADATA_KEY, "1"),)
"""Sent with writes that must be served by the node they reach: a follower then answers
UNAVAILABLE with the leader hint instead of forwarding (raftcache.node.forwarding)."""


class FramedReplies(asyncio.BufferedProtocol):
    """A load generator's connection: bytes are read into one reused buffer and cut into
    whole replies by `reply_end(buf, pos)` (the index past the reply at pos, -1 if it is
    incomplete); each reply goes to `_reply`.

    Not asyncio.Protocol on purpose. Its `data_received` path makes stdlib asyncio call
    `sock.recv(256 KiB)` for every read, a fresh 256 KiB object. glibc serves that with
    mmap unless an earlier free happened to raise its mmap threshold, and then every read
    costs an mmap, an mremap and a munmap: respgen measured 26 against 14 us of generator
    CPU per READONLY GET (34k against 42k GET/s, the generator the bottleneck), depending
    only on the process's heap history (`python -O` flipped it). `recv_into` one buffer
    allocates nothing per read, on either loop."""

    READ_CHUNK = 64 * 1024

    def __init__(self) -> None:
        self.buf = bytearray()
        self._chunk = memoryview(bytearray(self.READ_CHUNK))

    @staticmethod
    def reply_end(buf: bytearray, pos: int) -> int:
        raise NotImplementedError

    def _reply(self, reply: bytes) -> None:
        raise NotImplementedError

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._chunk

    def buffer_updated(self, nbytes: int) -> None:
        buf = self.buf
        buf += self._chunk[:nbytes]
        reply_end = self.reply_end
        pos = 0
        while (end := reply_end(buf, pos)) >= 0:
            self._reply(bytes(buf[pos:end]))
            pos = end
        if pos:
            del buf[:pos]


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- keys/values


def key_name(prefix: str, i: int) -> bytes:
    return f"{prefix}{i:07d}".encode()


def value_bytes(size: int = VALUE_SIZE, seed: int = 0) -> bytes:
    pattern = f"raftcache-bench-value-{seed}-".encode()
    return (pattern * (size // len(pattern) + 1))[:size]


# ----------------------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def latency_summary_ms(latencies_s: Sequence[float]) -> dict[str, float]:
    values = sorted(latencies_s)
    if not values:
        return {
            "p50": math.nan,
            "p90": math.nan,
            "p99": math.nan,
            "max": math.nan,
            "mean": math.nan,
        }
    return {
        "p50": percentile(values, 50) * 1000,
        "p90": percentile(values, 90) * 1000,
        "p99": percentile(values, 99) * 1000,
        "max": values[-1] * 1000,
        "mean": sum(values) / len(values) * 1000,
    }


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# ----------------------------------------------------------------------------- CPU accounting


def proc_cpu_split_s(pid: int) -> tuple[float, float] | None:
    """(user, system) CPU seconds of a process (all its threads), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), or None if it is gone."""
    split = proc_cpu_split_s(pid)
    return None if split is None else split[0] + split[1]


def proc_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main_thread_sched_s(pid: int) -> tuple[float, float] | None:
    """(on-CPU, waiting-for-a-CPU) seconds of a process's main thread, from schedstat."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            run_ns, wait_ns, _slices = f.read().split()
    except (OSError, ValueError):
        return None
    return int(run_ns) / 1e9, int(wait_ns) / 1e9


def system_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds summed over all CPUs since boot."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:9]
    values = [int(v) for v in parts]
    idle = values[3] + values[4]
    total = sum(values)
    return (total - idle) / CLK_TCK, total / CLK_TCK


@dataclass
class CpuReport:
    wall_s: float
    process_pct: dict[str, float]
    """CPU of each measured process in % of ONE core (200 = both cores of a 2-core box)."""
    process_cpu_s: dict[str, float]
    process_sys_share: dict[str, float]
    """Share of each process's CPU time spent in the kernel (system time): syscalls,
    loopback TCP, wake-ups."""
    main_thread_demand: dict[str, float]
    """(on-CPU + waiting in the run queue) / wall time of each process's main thread: ~1.0
    means that thread always had work (CPU-bound, or starved of a core), well below 1.0
    means it sat idle waiting for I/O part of the time."""
    system_busy_pct: float
    """Busy time of the whole machine in % of one core (0..100 x CPU count)."""
    unaccounted_pct: float
    """Busy time not spent in the measured processes: other users' work, the bench
    orchestrator, py-spy, the kernel's own threads."""


class CpuMeter:
    """CPU time of named processes and of the whole machine over a window."""

    def __init__(self, pids: Mapping[str, int]) -> None:
        self.pids = dict(pids)
        self._t0 = 0.0
        self._proc0: dict[str, tuple[float, float] | None] = {}
        self._sched0: dict[str, tuple[float, float] | None] = {}
        self._sys0 = (0.0, 0.0)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._proc0 = {name: proc_cpu_split_s(pid) for name, pid in self.pids.items()}
        self._sched0 = {name: main_thread_sched_s(pid) for name, pid in self.pids.items()}
        self._sys0 = system_cpu_s()

    def stop(self) -> CpuReport:
        wall = max(time.monotonic() - self._t0, 1e-9)
        busy1, _total1 = system_cpu_s()
        cpu_s: dict[str, float] = {}
        sys_share: dict[str, float] = {}
        for name, pid in self.pids.items():
            before, after = self._proc0.get(name), proc_cpu_split_s(pid)
            if before is not None and after is not None:
                user, system = after[0] - before[0], after[1] - before[1]
                cpu_s[name] = user + system
                sys_share[name] = round(system / (user + system), 2) if user + system else 0.0
        demand: dict[str, float] = {}
        for name, pid in self.pids.items():
            s0, s1 = self._sched0.get(name), main_thread_sched_s(pid)
            if s0 is not None and s1 is not None:
                demand[name] = round((s1[0] + s1[1] - s0[0] - s0[1]) / wall, 2)
        busy = busy1 - self._sys0[0]
        ours = sum(cpu_s.values())
        return CpuReport(
            wall_s=wall,
            process_pct={k: round(v / wall * 100, 1) for k, v in cpu_s.items()},
            process_cpu_s={k: round(v, 3) for k, v in cpu_s.items()},
            process_sys_share=sys_share,
            main_thread_demand=demand,
            system_busy_pct=round(busy / wall * 100, 1),
            unaccounted_pct=round(max(busy - ours, 0.0) / wall * 100, 1),
        )


# ----------------------------------------------------------------------------- machine facts


def uptime_text() -> str:
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return ""


def load_snapshot(label: str) -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {
        "label": label,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "uptime": uptime_text(),
        "loadavg": [one, five, fifteen],
    }


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _raftcache_source() -> str:
    """The directory the node code is imported from (a checkout other than the bench's when
    PYTHONPATH points at one)."""
    import raftcache.node

    return str(Path(raftcache.node.__file__).resolve().parent.parent)


def machine_info() -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "status", "--porcelain"], capture_output=True, text=True, check=False
            ).stdout.strip()
            != ""
        )
    except OSError:
        commit, dirty = "", False
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "raftcache_source": _raftcache_source(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("grpcio", "protobuf", "pysyncobj", "py-spy")},
        "git_commit": commit,
        "git_dirty": dirty,
        "shared_cores_note": (
            f"The load generator process(es), the 3 raftcache-node processes and the bench "
            f"orchestrator all share the same {os.cpu_count()} CPU(s); other engineers may be "
            "running tests on this machine at the same time (see load/uptime and "
            "unaccounted_pct per run)."
        ),
    }


# ----------------------------------------------------------------------------- gRPC


def channel_options(private: bool = False) -> list[tuple[str, Any]]:
    """Client channel options: big messages, fast reconnects (a restarted node on the same
    port is dialled again within ~250 ms); `private` gives the channel its own TCP
    connection instead of sharing gRPC's global subchannel pool with identical channels."""
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", 64 << 20),
        ("grpc.max_send_message_length", 64 << 20),
        ("grpc.initial_reconnect_backoff_ms", 50),
        ("grpc.min_reconnect_backoff_ms", 50),
        ("grpc.max_reconnect_backoff_ms", 250),
    ]
    if private:
        options.append(("grpc.use_local_subchannel_pool", 1))
    return options


class StatusPoller:
    """Keeps one sync channel per node address for frequent Status/Snapshot calls."""

    def __init__(self, addrs: Sequence[str]) -> None:
        self._channels = {a: grpc.insecure_channel(a, options=channel_options(True)) for a in addrs}
        self._stubs = {a: cluster_pb2_grpc.ClusterStub(c) for a, c in self._channels.items()}

    def status(self, addr: str, timeout: float = 1.0) -> cluster_pb2.StatusResponse | None:
        try:
            response: cluster_pb2.StatusResponse = self._stubs[addr].Status(
                cluster_pb2.StatusRequest(), timeout=timeout
            )
            return response
        except grpc.RpcError:
            return None

    def snapshot(self, addr: str, timeout: float = 5.0) -> bool:
        response = self._stubs[addr].Snapshot(cluster_pb2.SnapshotRequest(), timeout=timeout)
        return bool(response.started)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()


# ----------------------------------------------------------------------------- clusters


def node_pids(cluster: LocalCluster, leader: int) -> dict[str, int]:
    """Node pids labelled by role at the time of the call: leader, follower-a, follower-b."""
    out: dict[str, int] = {}
    followers = iter(("follower-a", "follower-b", "follower-c", "follower-d"))
    for i, node in enumerate(cluster.nodes):
        if node.process is None:
            continue
        label = "leader" if i == leader else next(followers)
        out[f"{label}({node.node_id})"] = node.process.pid
    return out


def wait_announced(cluster: LocalCluster, timeout: float = 30.0) -> None:
    """Wait until every running node knows the leader's client address (members announced),
    so followers can forward and answer NOT_LEADER with a hint."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        statuses = [cluster.status(i) for i, n in enumerate(cluster.nodes) if n.running]
        if statuses and all(
            s is not None and s.leader_client_addr and all(m.client_addr for m in s.members)
            for s in statuses
        ):
            return
        time.sleep(0.1)
    raise TimeoutError(f"members did not announce their addresses in {timeout} s")


@contextlib.contextmanager
def running_cluster(
    work_dir: Path, name: str, extra_args: Sequence[str], keep: bool = False
) -> Iterator[tuple[LocalCluster, int]]:
    """A ready 3-node cluster; always closed (every node stopped) on exit."""
    base = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work_dir))
    cluster = LocalCluster(3, base, extra_args=list(extra_args))
    failed = True
    try:
        cluster.start()
        leader = cluster.wait_until_ready(timeout=60)
        wait_announced(cluster)
        leader = cluster.wait_for_leader()
        yield cluster, leader
        failed = False
    finally:
        cluster.close()
        if failed or keep:
            log(f"cluster data and node logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


async def find_leader_addr(addrs: Sequence[str], timeout: float = 30.0) -> str:
    """The client address of a node that says it leads (asks every node via Status)."""
    deadline = time.monotonic() + timeout
    channels = [grpc.aio.insecure_channel(a, options=channel_options(True)) for a in addrs]
    try:
        while time.monotonic() < deadline:
            for addr, channel in zip(addrs, channels, strict=True):
                try:
                    status = await cluster_pb2_grpc.ClusterStub(channel).Status(
                        cluster_pb2.StatusRequest(), timeout=0.5
                    )
                except grpc.aio.AioRpcError:
                    continue
                if status.role == cluster_pb2.LEADER:
                    return addr
            await asyncio.sleep(0.05)
    finally:
        for channel in channels:
            await channel.close()
    raise TimeoutError("no leader found")


async def populate(
    addrs: Sequence[str],
    prefix: str,
    count: int,
    *,
    batch: int = 1000,
    concurrency: int = 8,
    value_size: int = VALUE_SIZE,
    progress: Callable[[int], None] | None = None,
) -> float:
    """Write keys prefix0000000.. with MSet batches from concurrent clients to the leader.

    Returns the seconds it took. Retries a batch (MSet is idempotent for this data) after a
    leader change or a full queue."""
    value = value_bytes(value_size)
    batches = [
        cache_pb2.MSetRequest(
            entries=[
                cache_pb2.KeyValue(key=key_name(prefix, i), value=value)
                for i in range(start, min(start + batch, count))
            ]
        )
        for start in range(0, count, batch)
    ]
    leader = await find_leader_addr(addrs)
    channels: dict[str, grpc.aio.Channel] = {}
    next_batch = 0
    done = 0
    started = time.perf_counter()

    def stub(addr: str) -> cache_pb2_grpc.CacheStub:
        if addr not in channels:
            channels[addr] = grpc.aio.insecure_channel(addr, options=channel_options(True))
        return cache_pb2_grpc.CacheStub(channels[addr])

    async def worker() -> None:
        nonlocal next_batch, done, leader
        while next_batch < len(batches):
            request = batches[next_batch]
            next_batch += 1
            for attempt in range(60):
                try:
                    await stub(leader).MSet(request, timeout=30, metadata=NO_FORWARD_METADATA)
                    break
                except grpc.aio.AioRpcError as exc:
                    if attempt == 59 or exc.code() not in (
                        grpc.StatusCode.UNAVAILABLE,
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                    ):
                        raise
                    hint = dict(exc.trailing_metadata() or ()).get(LEADER_METADATA_KEY)
                    await asyncio.sleep(0.2)
                    leader = str(hint) if hint else await find_leader_addr(addrs)
            done += 1
            if progress is not None and done % 100 == 0:
                progress(done * batch)

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        for channel in channels.values():
            await channel.close()
    return time.perf_counter() - started


def node_flag_supported(flag: str) -> bool:
    """Does this checkout's raftcache-node take `flag`? (its --help lists every flag)"""
    done = subprocess.run(
        [sys.executable, "-m", "raftcache.node.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return flag in done.stdout


def restart_followers_with(cluster: LocalCluster, flags: Sequence[str]) -> int:
    """Restart each follower with `flags` added, one at a time (the majority stays up), the
    leader keeping its own; returns the leader's index afterwards."""
    leader = cluster.wait_for_leader()
    for i, node in enumerate(cluster.nodes):
        if i != leader:
            node.extra_args += list(flags)
            cluster.restart(i)
            cluster.wait_until_ready(timeout=60)
    return int(cluster.wait_for_leader())
