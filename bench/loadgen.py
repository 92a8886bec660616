"""Closed-loop load generator: grpc.aio clients in separate (spawned) processes.

Each client is a coroutine issuing requests back-to-back. Clients are grouped onto
channels (`clients_per_channel`; 0 = one shared channel per target node). The same
generator drives etcd's v3 KV API (`etcd_*` ops: Put and Range with hand-encoded
protobuf bytes, so no etcd stubs are needed) and, through bench/respgen.py, RESP
servers (`resp_*` ops). A run has a warm-up and a measurement window on a clock shared
by all processes (CLOCK_MONOTONIC); latencies are measured with time.perf_counter and
counted when a request completes inside the window. In `timeline` mode the generator
runs until told to stop and records every request (start time, latency, ok) instead.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import multiprocessing.synchronize
import queue
import random
import time
from array import array
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from typing import Any

import grpc
from raftcache.v1 import cache_pb2, cache_pb2_grpc

from bench.common import CpuMeter, CpuReport, channel_options, key_name, value_bytes

OPS = (
    "set",
    "get_lin",
    "get_stale",
    "etcd_put",
    "etcd_get_lin",
    "etcd_get_ser",
    "resp_get",
    "resp_get_readonly",
    "resp_set_wait",
)
ETCD_PUT = "/etcdserverpb.KV/Put"
ETCD_RANGE = "/etcdserverpb.KV/Range"


@dataclass(frozen=True)
class LoadSpec:
    op: str  # one of OPS
    targets: tuple[str, ...]  # client addresses; a client rotates over them per request
    clients: int
    clients_per_channel: int  # 0 = all clients share one channel per target
    key_prefix: str
    key_count: int
    value_size: int = 100
    warmup_s: float = 2.0
    duration_s: float = 10.0
    seed: int = 0
    rpc_timeout_s: float = 5.0
    timeline: bool = False


@dataclass
class LoadResult:
    index: int
    ops: int = 0
    errors: int = 0
    error_codes: dict[str, int] = field(default_factory=dict)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    channels: int = 0
    # timeline mode only: monotonic start time, latency (s), 1 = ok / 0 = error
    t_start: array[float] = field(default_factory=lambda: array("d"))
    t_latency: array[float] = field(default_factory=lambda: array("d"))
    t_ok: array[int] = field(default_factory=lambda: array("b"))
    failure: str = ""


class Window:
    def __init__(self, measure_start: float, end: float) -> None:
        self.measure_start = measure_start
        self.end = end


def _pb_bytes(field: int, data: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2)."""
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def etcd_put_request(key: bytes, value: bytes) -> bytes:
    """etcdserverpb.PutRequest{key=1, value=2} (etcd 3.4 rpc.proto)."""
    return _pb_bytes(1, key) + _pb_bytes(2, value)


def etcd_range_request(key: bytes, serializable: bool) -> bytes:
    """etcdserverpb.RangeRequest{key=1, serializable=7} (etcd 3.4 rpc.proto)."""
    return _pb_bytes(1, key) + (b"\x38\x01" if serializable else b"")


def _requests(spec: LoadSpec) -> list[Any]:
    value = value_bytes(spec.value_size, spec.seed)
    keys = [key_name(spec.key_prefix, i) for i in range(spec.key_count)]
    if spec.op == "etcd_put":
        return [etcd_put_request(k, value) for k in keys]
    if spec.op in ("etcd_get_lin", "etcd_get_ser"):
        return [etcd_range_request(k, spec.op == "etcd_get_ser") for k in keys]
    if spec.op == "set":
        return [cache_pb2.SetRequest(key=k, value=value) for k in keys]
    consistency = cache_pb2.LINEARIZABLE if spec.op == "get_lin" else cache_pb2.STALE
    return [cache_pb2.GetRequest(key=k, consistency=consistency) for k in keys]


async def _generate(
    spec: LoadSpec,
    index: int,
    ready: mp.Queue[int],
    go: multiprocessing.synchronize.Event,
    start_at: Synchronized[float],
    stop: multiprocessing.synchronize.Event,
) -> LoadResult:
    result = LoadResult(index)
    per_channel = spec.clients_per_channel
    groups = 1 if per_channel <= 0 else math.ceil(spec.clients / per_channel)
    channels = [
        [
            grpc.aio.insecure_channel(t, options=channel_options(private=groups > 1))
            for t in spec.targets
        ]
        for _ in range(groups)
    ]
    result.channels = groups * len(spec.targets)
    try:
        await asyncio.gather(
            *(asyncio.wait_for(ch.channel_ready(), 15) for group in channels for ch in group)
        )
        methods = [[_method(spec.op, ch) for ch in group] for group in channels]
        requests = _requests(spec)
        ready.put(index)
        window, offset, watcher = await start_window(spec, go, start_at, stop)
        codes: Counter[str] = Counter()
        clients = [
            _client(
                spec,
                c,
                methods[0 if groups == 1 else c // per_channel],
                requests,
                window,
                result,
                codes,
                offset,
            )
            for c in range(spec.clients)
        ]
        await asyncio.gather(*clients)
        if watcher is not None:
            watcher.cancel()
        result.error_codes = dict(codes)
    finally:
        for group in channels:
            for ch in group:
                await ch.close()
    return result


async def start_window(
    spec: LoadSpec,
    go: multiprocessing.synchronize.Event,
    start_at: Synchronized[float],
    stop: multiprocessing.synchronize.Event,
) -> tuple[Window, float, asyncio.Task[None] | None]:
    """Wait for the parent's go, then until the shared start time; returns the window (on
    the perf_counter clock), the perf_counter - monotonic offset, and in timeline mode the
    task that ends the window when the parent says stop."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, go.wait)
    # perf_counter and monotonic are both CLOCK_MONOTONIC on Linux; keep an explicit
    # offset anyway so the window is right on any platform.
    offset = time.perf_counter() - time.monotonic()
    begin = start_at.value + offset
    if spec.timeline:
        window = Window(begin, math.inf)
    else:
        window = Window(begin + spec.warmup_s, begin + spec.warmup_s + spec.duration_s)
    await asyncio.sleep(max(begin - time.perf_counter(), 0))

    async def watch_stop() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.05)
        window.end = time.perf_counter()

    watcher = asyncio.create_task(watch_stop()) if spec.timeline else None
    return window, offset, watcher


def _method(op: str, channel: grpc.aio.Channel) -> Callable[..., Any]:
    """The unary call an op makes on one channel (etcd's take and return raw bytes)."""
    if op.startswith("etcd_"):
        call: Callable[..., Any] = channel.unary_unary(ETCD_PUT if op == "etcd_put" else ETCD_RANGE)
        return call
    stub = cache_pb2_grpc.CacheStub(channel)
    return stub.Set if op == "set" else stub.Get  # type: ignore[no-any-return]


async def _client(
    spec: LoadSpec,
    cid: int,
    methods: list[Callable[..., Any]],
    requests: list[Any],
    window: Window,
    result: LoadResult,
    codes: Counter[str],
    offset: float,
) -> None:
    turn = cid % len(methods)
    rng = random.Random(spec.seed * 100_003 + cid)
    n = len(requests)
    timeout = spec.rpc_timeout_s
    latencies = result.latencies
    timeline = spec.timeline
    perf = time.perf_counter
    while True:
        request = requests[rng.randrange(n)]
        method = methods[turn]
        turn = (turn + 1) % len(methods)
        t0 = perf()
        if t0 >= window.end:
            return
        code = ""
        try:
            await method(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        t1 = perf()
        if timeline:
            result.t_start.append(t0 - offset)
            result.t_latency.append(t1 - t0)
            result.t_ok.append(0 if code else 1)
        if window.measure_start <= t1 < window.end:
            if code:
                result.errors += 1
                codes[code] += 1
            else:
                result.ops += 1
                latencies.append(t1 - t0)
        if code:
            await asyncio.sleep(0.002)  # do not spin on a node that is down


def _child_main(
    spec: LoadSpec,
    index: int,
    ready: mp.Queue[int],
    results: mp.Queue[LoadResult],
    go: multiprocessing.synchronize.Event,
    start_at: Synchronized[float],
    stop: multiprocessing.synchronize.Event,
) -> None:
    try:
        if spec.op.startswith("resp_"):
            from bench import respgen  # here: respgen imports this module

            result = asyncio.run(respgen.generate(spec, index, ready, go, start_at, stop))
        else:
            result = asyncio.run(_generate(spec, index, ready, go, start_at, stop))
    except BaseException as exc:  # report instead of hanging the parent
        result = LoadResult(index, failure=f"{type(exc).__name__}: {exc}")
        ready.put(index)
    results.put(result)


class GeneratorGroup:
    """One or more generator processes that start their measurement window together."""

    def __init__(self, specs: Sequence[LoadSpec]) -> None:
        ctx = mp.get_context("spawn")
        self.specs = list(specs)
        self._ready: mp.Queue[int] = ctx.Queue()
        self._results: mp.Queue[LoadResult] = ctx.Queue()
        self._go = ctx.Event()
        self._stop = ctx.Event()
        self._start_at: Synchronized[float] = ctx.Value("d", 0.0)
        self.processes = [
            ctx.Process(
                target=_child_main,
                args=(spec, i, self._ready, self._results, self._go, self._start_at, self._stop),
                daemon=True,
                name=f"bench-loadgen-{i}",
            )
            for i, spec in enumerate(self.specs)
        ]
        self.begin = 0.0

    @property
    def pids(self) -> dict[str, int]:
        return {f"generator{i}": p.pid for i, p in enumerate(self.processes) if p.pid is not None}

    def start(self, timeout: float = 60.0) -> float:
        """Start the processes, wait until they are connected, start the clock; returns the
        monotonic time the clients begin (warm-up starts then)."""
        for process in self.processes:
            process.start()
        deadline = time.monotonic() + timeout
        for _ in self.processes:
            self._ready.get(timeout=max(deadline - time.monotonic(), 0.1))
        self.begin = time.monotonic() + 0.2
        self._start_at.value = self.begin
        self._go.set()
        return self.begin

    def stop(self) -> None:
        self._stop.set()

    def collect(self, timeout: float = 120.0) -> list[LoadResult]:
        deadline = time.monotonic() + timeout
        results: list[LoadResult] = []
        try:
            for _ in self.processes:
                results.append(self._results.get(timeout=max(deadline - time.monotonic(), 0.1)))
        except queue.Empty:
            raise TimeoutError("a load generator process did not report") from None
        for process in self.processes:
            process.join(timeout=10)
        failures = [r.failure for r in results if r.failure]
        if failures:
            raise RuntimeError(f"load generator failed: {failures}")
        return sorted(results, key=lambda r: r.index)

    def terminate(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


@dataclass
class MeasuredRun:
    results: list[LoadResult]
    cpu: CpuReport
    window_s: float


def run_measured(
    specs: Sequence[LoadSpec],
    node_pids: Mapping[str, int],
    on_measure_start: Callable[[], None] | None = None,
) -> MeasuredRun:
    """Run generators for warm-up + duration and meter CPU over the measurement window."""
    group = GeneratorGroup(specs)
    try:
        begin = group.start()
        warmup, duration = specs[0].warmup_s, specs[0].duration_s
        meter = CpuMeter({**node_pids, **group.pids})
        time.sleep(max(begin + warmup - time.monotonic(), 0))
        meter.start()
        if on_measure_start is not None:
            on_measure_start()
        time.sleep(max(begin + warmup + duration - time.monotonic(), 0))
        cpu = meter.stop()
        results = group.collect()
    finally:
        group.terminate()
    return MeasuredRun(results, cpu, duration)
