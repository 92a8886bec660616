"""SDK overhead: AsyncClient vs raw grpc.aio stubs, 64 concurrent callers, same process.

Both run in the orchestrator process, alternating (raw, sdk, raw, sdk, ...) so that
machine noise hits both alike; the medians and their ratio are reported.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from raftcache.client import AsyncClient
from raftcache.v1 import cache_pb2, cache_pb2_grpc

from bench.common import log, running_cluster

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


async def _measure(
    leader: str, seeds: Sequence[str], seconds: float, rounds: int
) -> dict[str, Any]:
    keys = [f"sdk:{i}".encode() for i in range(KEYS)]
    channel = grpc.aio.insecure_channel(leader)
    stub = cache_pb2_grpc.CacheStub(channel)
    client = AsyncClient(list(seeds))
    await client.mset({k: VALUE for k in keys})
    raw_ops: dict[str, Callable[[int], Awaitable[Any]]] = {
        "set": lambda i: stub.Set(cache_pb2.SetRequest(key=keys[i], value=VALUE)),
        "get": lambda i: stub.Get(cache_pb2.GetRequest(key=keys[i])),
    }
    sdk_ops: dict[str, Callable[[int], Awaitable[Any]]] = {
        "set": lambda i: client.set(keys[i], VALUE),
        "get": lambda i: client.get(keys[i]),
    }
    rows: dict[str, Any] = {}
    try:
        for op in ("set", "get"):
            await drive(raw_ops[op], 1.0)  # warm-up
            await drive(sdk_ops[op], 1.0)
            raw, sdk = [], []
            for _ in range(rounds):
                raw.append(await drive(raw_ops[op], seconds))
                sdk.append(await drive(sdk_ops[op], seconds))
            raw_median, sdk_median = statistics.median(raw), statistics.median(sdk)
            rows[op] = {
                "raw_ops_s": [round(x) for x in raw],
                "sdk_ops_s": [round(x) for x in sdk],
                "raw_median": round(raw_median),
                "sdk_median": round(sdk_median),
                "sdk_vs_raw": round(sdk_median / raw_median, 3),
                "within_10pct": sdk_median >= 0.9 * raw_median,
            }
            log(f"sdk: {op}: raw {raw_median:.0f}/s, AsyncClient {sdk_median:.0f}/s")
    finally:
        await client.close()
        await channel.close()
    return rows


def run(work_dir: Path, node_args: Sequence[str], *, seconds: float = 5.0, rounds: int = 3,
        keep_data: bool = False) -> dict[str, Any]:  # fmt: skip
    with running_cluster(work_dir, "sdk", node_args, keep=keep_data) as (cluster, leader):
        seeds = [n.client_addr for n in cluster.nodes]
        rows = asyncio.run(_measure(cluster.nodes[leader].client_addr, seeds, seconds, rounds))
    return {"callers": CALLERS, "seconds_per_round": seconds, "rounds": rounds, "rows": rows}


def render(section: dict[str, Any], add: Callable[[str], None]) -> None:
    add("## SDK overhead (AsyncClient vs raw gRPC stubs)")
    add("")
    add(
        f"{section['callers']} concurrent coroutines in one process, 100-byte values, "
        f"{section['rounds']} alternating rounds of {section['seconds_per_round']} s; "
        "writes and linearizable reads to the leader."
    )
    add("")
    add("| Op | raw gRPC ops/s (median) | AsyncClient ops/s (median) | ratio | within 10% |")
    add("|---|---:|---:|---:|---|")
    for op, row in section["rows"].items():
        add(
            f"| {op} | {row['raw_median']:,} {row['raw_ops_s']} | {row['sdk_median']:,} "
            f"{row['sdk_ops_s']} | {row['sdk_vs_raw']} | {'yes' if row['within_10pct'] else 'no'} |"
        )
    add("")
