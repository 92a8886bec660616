"""The peers section's generator processes: every protocol on one window and one CPU meter.

bench/loadgen.py's spawned processes already drive raw gRPC (raftcache and etcd) and, via
bench/respgen.py, RESP GET / READONLY GET / SET + WAIT. This adds, in the same processes
and on the same shared clock:
- `sdk_set`, `sdk_get_lin`, `sdk_get_stale`: one `AsyncClient` per process, N coroutines
  calling it back-to-back (the SDK as an application uses it: one client, many tasks);
- `mc_set`, `mc_get`: memcached text protocol (bench/memgen.py);
- `resp_set`: plain `SET` through respgen's connection Protocol (respgen sends SET only
  with WAIT; redis-benchmark would be a different tool than the other RESP rows use).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import multiprocessing.synchronize
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from bench import loadgen, memgen
from bench.common import CpuMeter, key_name, value_bytes
from bench.loadgen import GeneratorGroup, LoadResult, LoadSpec, MeasuredRun, start_window

ERROR_PAUSE_S = 0.002


async def sdk_generate(
    spec: LoadSpec,
    index: int,
    ready: mp.Queue[int],
    go: multiprocessing.synchronize.Event,
    start_at: Synchronized[float],
    stop: multiprocessing.synchronize.Event,
) -> LoadResult:
    """One AsyncClient seeded with spec.targets; spec.clients coroutines share it."""
    from raftcache.client import AsyncClient, errors  # here: only SDK rows pay the import

    result = LoadResult(index)
    codes: Counter[str] = Counter()
    keys = [key_name(spec.key_prefix, i) for i in range(spec.key_count)]
    value = value_bytes(spec.value_size, spec.seed)
    client = AsyncClient(list(spec.targets), timeout=spec.rpc_timeout_s)
    call: Callable[[bytes], Awaitable[Any]]
    if spec.op == "sdk_set":
        call = lambda k: client.set(k, value)  # noqa: E731
    elif spec.op == "sdk_get_lin":
        call = lambda k: client.get(k)  # noqa: E731
    elif spec.op == "sdk_get_stale":
        call = lambda k: client.get(k, consistency="stale")  # noqa: E731
    else:
        raise ValueError(f"peergen: unknown SDK op {spec.op!r}")
    try:
        await client.get(keys[0])  # learn the leader before the clock starts
        result.channels = len(spec.targets)
        ready.put(index)
        window, _offset, _watcher = await start_window(spec, go, start_at, stop)

        async def caller(c: int) -> None:
            rng = random.Random(spec.seed * 100_003 + c)
            perf = time.perf_counter
            while True:
                t0 = perf()
                if t0 >= window.end:
                    return
                code = ""
                try:
                    await call(keys[rng.randrange(len(keys))])
                except errors.RaftcacheError as exc:
                    code = type(exc).__name__
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

        await asyncio.gather(*(caller(c) for c in range(spec.clients)))
        result.error_codes = dict(codes)
    finally:
        await client.close()
    return result


async def resp_set_generate(
    spec: LoadSpec,
    index: int,
    ready: mp.Queue[int],
    go: multiprocessing.synchronize.Event,
    start_at: Synchronized[float],
    stop: multiprocessing.synchronize.Event,
) -> LoadResult:
    """Plain SET over respgen's connection Protocol (ok = any non-error reply)."""
    from bench import respgen  # here: respgen imports loadgen

    value = value_bytes(spec.value_size, spec.seed)
    requests = [
        (respgen.command(b"SET", respgen.bench_key(spec.key_prefix, i), value),)
        for i in range(spec.key_count)
    ]
    return await memgen.drive_connections(
        spec,
        lambda rng, result, codes: respgen._Client(requests, rng, result, codes),
        index,
        ready,
        go,
        start_at,
        stop,
    )


_OWN = {
    "sdk_set": sdk_generate,
    "sdk_get_lin": sdk_generate,
    "sdk_get_stale": sdk_generate,
    "mc_set": memgen.generate,
    "mc_get": memgen.generate,
    "resp_set": resp_set_generate,
}


def _child_main(
    spec: LoadSpec,
    index: int,
    ready: mp.Queue[int],
    results: mp.Queue[LoadResult],
    go: multiprocessing.synchronize.Event,
    start_at: Synchronized[float],
    stop: multiprocessing.synchronize.Event,
) -> None:
    generate = _OWN.get(spec.op)
    if generate is None:
        loadgen._child_main(spec, index, ready, results, go, start_at, stop)
        return
    try:
        result = asyncio.run(generate(spec, index, ready, go, start_at, stop))
    except BaseException as exc:  # report instead of hanging the parent
        result = LoadResult(index, failure=f"{type(exc).__name__}: {exc}")
        ready.put(index)
    results.put(result)


class PeerGeneratorGroup(GeneratorGroup):
    """loadgen's GeneratorGroup whose processes also know the ops above."""

    def __init__(self, specs: Sequence[LoadSpec]) -> None:
        super().__init__(specs)
        ctx = mp.get_context("spawn")
        self.processes = [
            ctx.Process(
                target=_child_main,
                args=(spec, i, self._ready, self._results, self._go, self._start_at, self._stop),
                daemon=True,
                name=f"bench-peergen-{i}",
            )
            for i, spec in enumerate(self.specs)
        ]


def run_measured(specs: Sequence[LoadSpec], server_pids: Mapping[str, int]) -> MeasuredRun:
    """loadgen.run_measured with PeerGeneratorGroup: warm-up, then CPU metered over the
    measurement window for the servers and the generators."""
    group = PeerGeneratorGroup(specs)
    try:
        begin = group.start()
        warmup, duration = specs[0].warmup_s, specs[0].duration_s
        meter = CpuMeter({**server_pids, **group.pids})
        time.sleep(max(begin + warmup - time.monotonic(), 0))
        meter.start()
        time.sleep(max(begin + warmup + duration - time.monotonic(), 0))
        cpu = meter.stop()
        results = group.collect()
    finally:
        group.terminate()
    return MeasuredRun(results, cpu, duration)
