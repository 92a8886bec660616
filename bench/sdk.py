"""SDK throughput: AsyncClient (auto-pipelining off, on with its default depth, on with one
RPC in flight per node) vs raw grpc.aio stubs, 64 concurrent callers, same process; then
etcd's put and linearizable get under the same 64-coroutine driver, for the ratio.

Everything runs in the orchestrator process, alternating (raw, off, on, on-1, raw, ...) so
that machine noise hits all alike; the medians and their ratios are reported, with the load
average (the machine is shared).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from raftcache.client import AsyncClient
from raftcache.v1 import cache_pb2, cache_pb2_grpc

from bench.common import log, running_cluster
from bench.loadgen import ETCD_PUT, ETCD_RANGE, etcd_put_request, etcd_range_request

CALLERS = 64
KEYS = 1000
VALUE = b"v" * 100


async def drive(call: Callable[[int], Awaitable[Any]], seconds: float, span: int = KEYS) -> float:
    """Ops/s of CALLERS coroutines calling back-to-back for `seconds`, each call given the
    next number below `span` (a key or member index)."""
    stop = time.perf_counter() + seconds
    counts = [0] * CALLERS

    async def caller(c: int) -> None:
        n = c
        while time.perf_counter() < stop:
            await call(n % span)
            n += CALLERS
            counts[c] += 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(CALLERS)))
    return sum(counts) / (time.perf_counter() - started)


VARIANTS: dict[str, dict[str, Any]] = {
    "sdk_off": {"auto_pipeline": False},
    "sdk_on": {},
    "sdk_on_depth1": {},  # one RPC in flight per node, the rest queued
}


def _client(seeds: Sequence[str], variant: str) -> AsyncClient:
    client = AsyncClient(list(seeds), **VARIANTS[variant])
    if variant == "sdk_on_depth1":
        from raftcache.client._pipeline import PipelinedTransport

        client.pipeline = PipelinedTransport(client._transport, max_inflight=1)
        client._router._transport = client.pipeline
    return client


def _row(samples: dict[str, list[float]]) -> dict[str, Any]:
    medians = {name: statistics.median(values) for name, values in samples.items()}
    row: dict[str, Any] = {f"{name}_ops_s": [round(x) for x in v] for name, v in samples.items()}
    row.update({f"{name}_median": round(m) for name, m in medians.items()})
    row["sdk_vs_raw"] = round(medians["sdk_off"] / medians["raw"], 3)
    row["within_10pct"] = medians["sdk_off"] >= 0.9 * medians["raw"]
    row["pipelined_vs_off"] = round(medians["sdk_on"] / medians["sdk_off"], 3)
    return row


async def _measure(
    leader: str, seeds: Sequence[str], seconds: float, rounds: int
) -> dict[str, Any]:
    keys = [f"sdk:{i}".encode() for i in range(KEYS)]
    channel = grpc.aio.insecure_channel(leader)
    stub = cache_pb2_grpc.CacheStub(channel)
    clients = {variant: _client(seeds, variant) for variant in VARIANTS}
    await clients["sdk_off"].mset({k: VALUE for k in keys})
    drivers: dict[str, dict[str, Callable[[int], Awaitable[Any]]]] = {
        "raw": {
            "set": lambda i: stub.Set(cache_pb2.SetRequest(key=keys[i], value=VALUE)),
            "get": lambda i: stub.Get(cache_pb2.GetRequest(key=keys[i])),
        }
    }
    for variant, client in clients.items():
        drivers[variant] = {
            "set": lambda i, c=client: c.set(keys[i], VALUE),  # type: ignore[misc]
            "get": lambda i, c=client: c.get(keys[i]),  # type: ignore[misc]
        }
    rows: dict[str, Any] = {}
    try:
        for op in ("set", "get"):
            for driver in drivers.values():
                await drive(driver[op], 1.0)  # warm-up
            samples: dict[str, list[float]] = {name: [] for name in drivers}
            for _ in range(rounds):
                for name, driver in drivers.items():
                    samples[name].append(await drive(driver[op], seconds))
            rows[op] = _row(samples)
            rows[op]["batching"] = {
                variant: _batching(client) for variant, client in clients.items()
            }
            log(
                f"sdk: {op}: "
                + ", ".join(f"{n} {statistics.median(v):.0f}/s" for n, v in samples.items())
            )
    finally:
        for client in clients.values():
            await client.close()
        await channel.close()
    return rows


async def _lone_caller(seeds: Sequence[str], seconds: float, rounds: int) -> dict[str, Any]:
    """One caller's Set p50, auto-pipelining off vs on (a lone call must stay unary and as
    fast), alternating."""
    p50: dict[str, list[float]] = {"sdk_off": [], "sdk_on": []}
    clients = {variant: _client(seeds, variant) for variant in p50}
    try:
        for _ in range(rounds):
            for variant, client in clients.items():
                latencies = []
                stop = time.perf_counter() + seconds / 2
                while time.perf_counter() < stop:
                    started = time.perf_counter()
                    await client.set(b"sdk:lone", VALUE)
                    latencies.append(time.perf_counter() - started)
                p50[variant].append(statistics.median(latencies) * 1000)
    finally:
        for client in clients.values():
            await client.close()
    out = {f"{v}_p50_ms": round(statistics.median(x), 3) for v, x in p50.items()}
    log(f"sdk: one caller's set p50: off {out['sdk_off_p50_ms']} ms, on {out['sdk_on_p50_ms']} ms")
    return out


def _batching(client: AsyncClient) -> dict[str, int] | None:
    if client.pipeline is None:
        return None
    stats = client.pipeline.stats
    return {"unary": stats.unary, "batches": stats.batches, "batched_ops": stats.batched_ops}


async def _measure_etcd(endpoint: str, seconds: float, rounds: int) -> dict[str, float]:
    """etcd 3.4's put and linearizable get (Range) under the same 64-coroutine driver."""
    keys = [f"sdk:{i}".encode() for i in range(KEYS)]
    async with grpc.aio.insecure_channel(endpoint) as channel:
        put = channel.unary_unary(ETCD_PUT)
        get = channel.unary_unary(ETCD_RANGE)
        puts = [etcd_put_request(k, VALUE) for k in keys]
        gets = [etcd_range_request(k, False) for k in keys]
        out: dict[str, float] = {}
        for op, call, requests in (("set", put, puts), ("get", get, gets)):
            await drive(lambda i, c=call, r=requests: c(r[i]), 1.0)  # type: ignore[misc]
            runs = [
                await drive(lambda i, c=call, r=requests: c(r[i]), seconds)  # type: ignore[misc]
                for _ in range(rounds)
            ]
            out[op] = round(statistics.median(runs))
            log(f"sdk: etcd {op}: {out[op]:.0f}/s")
    return out


def _etcd(work_dir: Path, seconds: float, rounds: int) -> dict[str, Any]:
    """etcd's numbers when the etcd binary is installed (bench/peers.py starts it)."""
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        return {"skipped": "etcd is not installed (make bench-peers installs it)"}
    from bench.peers import EtcdCluster

    base = Path(tempfile.mkdtemp(prefix="sdk-etcd-", dir=work_dir))
    cluster = EtcdCluster(base)
    try:
        cluster.start()
        return {"ops_s": asyncio.run(_measure_etcd(cluster.leader_endpoint(), seconds, rounds))}
    except Exception as exc:  # a reference number: never fail the SDK section for it
        return {"skipped": f"etcd did not run: {exc}"}
    finally:
        cluster.close()
        shutil.rmtree(base, ignore_errors=True)


def run(work_dir: Path, node_args: Sequence[str], *, seconds: float = 5.0, rounds: int = 3,
        keep_data: bool = False, etcd: bool = True) -> dict[str, Any]:  # fmt: skip
    load_before = os.getloadavg()
    with running_cluster(work_dir, "sdk", node_args, keep=keep_data) as (cluster, leader):
        seeds = [n.client_addr for n in cluster.nodes]
        rows = asyncio.run(_measure(cluster.nodes[leader].client_addr, seeds, seconds, rounds))
        lone = asyncio.run(_lone_caller(seeds, seconds, rounds))
    reference = _etcd(work_dir, seconds, rounds) if etcd else {"skipped": "not asked for"}
    for op, row in rows.items():
        if "ops_s" in reference:
            row["etcd_ops_s"] = reference["ops_s"][op]
            row["pipelined_vs_etcd"] = round(row["sdk_on_median"] / reference["ops_s"][op], 3)
    return {
        "callers": CALLERS,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "load_average": [round(x, 2) for x in (*load_before, *os.getloadavg())],
        "etcd": reference,
        "rows": rows,
        "lone_caller": lone,
    }


def render(section: dict[str, Any], add: Callable[[str], None]) -> None:
    add("## SDK throughput and auto-pipelining (AsyncClient vs raw gRPC stubs, etcd)")
    add("")
    add(
        f"{section['callers']} concurrent coroutines in one process, 100-byte values, "
        f"{section['rounds']} alternating rounds of {section['seconds_per_round']} s; "
        "writes and linearizable reads (the SDK routes both to the leader). Load average "
        f"(1/5/15 min) before and after: {section.get('load_average')}."
    )
    add("")
    add(
        "| Op | raw gRPC | SDK, pipelining off | SDK, pipelining on | on, depth 1 | "
        "etcd | on vs off | on vs etcd |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|---:|")
    for op, row in section["rows"].items():
        add(
            f"| {op} | {row['raw_median']:,} | {row['sdk_off_median']:,} | "
            f"{row['sdk_on_median']:,} | {row['sdk_on_depth1_median']:,} | "
            f"{row.get('etcd_ops_s', '-')} | {row['pipelined_vs_off']} | "
            f"{row.get('pipelined_vs_etcd', '-')} |"
        )
    lone = section.get("lone_caller")
    if lone:
        add("")
        add(
            f"One caller alone, Set p50: {lone['sdk_off_p50_ms']} ms with auto-pipelining off, "
            f"{lone['sdk_on_p50_ms']} ms on (a lone call goes out unary either way)."
        )
    if "skipped" in section.get("etcd", {}):
        add("")
        add(f"etcd: {section['etcd']['skipped']}")
    add("")
