"""Typed values (issue 5): zincrby/zadd/hset/hget throughput, sorted-set range latency on a
1M-member set, and publish fan-out to 100 subscribers spread over the three nodes.

Throughput rows use 64 concurrent raw grpc.aio callers on the leader (like the sdk section).
The range rows are one caller, back to back, so they show the per-request latency.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2, cluster_pb2_grpc

from bench.common import channel_options, latency_summary_ms, log, proc_rss_mb, running_cluster
from bench.sdk import CALLERS, drive

RANGE_TARGET_P99_MS = 5.0
LOAD_CHUNK = 10_000
SUBSCRIBERS = 100
MESSAGES = 200


def _op(name: str, **fields: Any) -> cache_pb2.ExecRequest:
    return cache_pb2.ExecRequest(op=cache_pb2.DataOp(**{name: fields}))


async def _throughput(stub: cache_pb2_grpc.CacheStub, seconds: float) -> dict[str, float]:
    members = [b"m%05d" % i for i in range(10_000)]
    rows: dict[str, Callable[[int], Awaitable[Any]]] = {
        "zincrby": lambda i: stub.Exec(
            _op("zincrby", key=b"lb:hot", member=members[i % 10_000], delta=1.0)
        ),
        "zadd": lambda i: stub.Exec(
            _op("zadd", key=b"lb:add", members=[{"member": members[i % 10_000], "score": i}])
        ),
        "hset": lambda i: stub.Exec(
            _op("hset", key=b"h:%d" % (i % 1000), fields=[{"field": b"f", "value": b"v" * 100}])
        ),
        "hget (linearizable)": lambda i: stub.Exec(
            _op("hget", key=b"h:%d" % (i % 1000), field=b"f")
        ),
    }
    out = {}
    for name, call in rows.items():
        out[name] = round(await drive(call, seconds, span=10_000), 1)
        log(f"typed: {name} {out[name]:,.0f} ops/s with {CALLERS} callers")
    return out


async def _load(stub: cache_pb2_grpc.CacheStub, members: int) -> float:
    rng = random.Random(1)
    started = time.perf_counter()
    for start in range(0, members, LOAD_CHUNK):
        chunk = [
            {"member": b"player%07d" % i, "score": rng.random() * 1e6}
            for i in range(start, min(start + LOAD_CHUNK, members))
        ]
        await stub.Exec(_op("zadd", key=b"lb:big", members=chunk), timeout=60)
    return time.perf_counter() - started


async def _range_latency(
    stub: cache_pb2_grpc.CacheStub, members: int, samples: int
) -> dict[str, Any]:
    rng = random.Random(2)

    def random_range(consistency: int) -> cache_pb2.ExecRequest:
        start = rng.randrange(members - 100)
        request = _op("zrange", key=b"lb:big", start=start, stop=start + 99)
        request.consistency = consistency
        return request

    rows: dict[str, Callable[[], cache_pb2.ExecRequest]] = {
        "zrange 100 at a random rank, linearizable": lambda: random_range(cache_pb2.LINEARIZABLE),
        "zrange 100 at a random rank, stale": lambda: random_range(cache_pb2.STALE),
        "top 100 (reverse), linearizable": lambda: _op(
            "zrange", key=b"lb:big", start=0, stop=99, reverse=True
        ),
        "zrangebyscore limit 100, linearizable": lambda: _op(
            "zrangebyscore",
            key=b"lb:big",
            min={"value": rng.random() * 9e5},
            max={"value": float("inf")},
            limit=100,
        ),
    }
    out: dict[str, Any] = {}
    for name, request in rows.items():
        latencies = []
        for _ in range(samples):
            req = request()
            started = time.perf_counter()
            response = await stub.Exec(req, timeout=10)
            latencies.append(time.perf_counter() - started)
            assert len(response.value.scored.items) == 100, name
        summary: dict[str, Any] = {k: round(v, 3) for k, v in latency_summary_ms(latencies).items()}
        summary["meets_target"] = summary["p99"] < RANGE_TARGET_P99_MS
        out[name] = summary
        log(f"typed: {name}: p50 {summary['p50']} ms, p99 {summary['p99']} ms")
    return out


async def _fanout(addrs: Sequence[str], leader: str) -> dict[str, Any]:
    """Publish MESSAGES on the leader; SUBSCRIBERS spread over every node receive them."""
    channels = [grpc.aio.insecure_channel(a, options=channel_options(True)) for a in addrs]
    stubs = [cache_pb2_grpc.CacheStub(c) for c in channels]
    calls = [
        stubs[i % len(stubs)].Subscribe(cache_pb2.SubscribeRequest(channels=[b"bench"]))
        for i in range(SUBSCRIBERS)
    ]
    for call in calls:
        await call.initial_metadata()  # subscribed from here on
    delays: list[float] = []
    complete = 0

    async def reader(call: Any) -> None:
        nonlocal complete
        expected = 0
        async for message in call:
            (seq, sent) = struct.unpack(">Id", message.message)
            if seq != expected:
                raise AssertionError(f"subscriber got message {seq}, expected {expected}")
            delays.append(time.perf_counter() - sent)
            expected += 1
            if expected == MESSAGES:
                complete += 1
                return

    readers = [asyncio.create_task(reader(c)) for c in calls]
    publisher = cache_pb2_grpc.CacheStub(channels[addrs.index(leader)])
    started = time.perf_counter()
    receivers = []
    for seq in range(MESSAGES):
        payload = struct.pack(">Id", seq, time.perf_counter())
        response = await publisher.Publish(
            cache_pb2.PublishRequest(channel=b"bench", message=payload), timeout=10
        )
        receivers.append(response.receivers)
    publish_s = time.perf_counter() - started
    await asyncio.wait_for(asyncio.gather(*readers), timeout=60)
    for call in calls:
        call.cancel()
    for channel in channels:
        await channel.close()
    summary = {k: round(v, 3) for k, v in latency_summary_ms(delays).items()}
    return {
        "subscribers": SUBSCRIBERS,
        "messages": MESSAGES,
        "publishes_per_s": round(MESSAGES / publish_s, 1),
        "deliveries": len(delays),
        "all_in_order": complete == SUBSCRIBERS,
        "receivers_on_leader": max(receivers),
        "delivery_latency": summary,
    }


async def _memory(channel: grpc.aio.Channel, pid: int) -> tuple[float, float]:
    """(accounted MB from Status, RSS MB of the process) of the leader."""
    status = await cluster_pb2_grpc.ClusterStub(channel).Status(
        cluster_pb2.StatusRequest(), timeout=5
    )
    return status.memory_used_bytes / (1 << 20), proc_rss_mb(pid) or 0.0


async def _run_async(
    addrs: Sequence[str], leader: str, pid: int, members: int, seconds: float, samples: int
) -> dict[str, Any]:
    channel = grpc.aio.insecure_channel(leader, options=channel_options(True))
    stub = cache_pb2_grpc.CacheStub(channel)
    try:
        result: dict[str, Any] = {"throughput_ops_s": await _throughput(stub, seconds)}
        log(f"typed: loading a {members:,}-member sorted set")
        before = await _memory(channel, pid)
        result["load_s"] = round(await _load(stub, members), 1)
        after = await _memory(channel, pid)
        accounted, rss = after[0] - before[0], after[1] - before[1]
        result["memory_mb"] = {
            "accounted": round(accounted, 1),
            "rss": round(rss, 1),
            "rss_per_accounted": round(rss / accounted, 2) if accounted else None,
        }
        log(f"typed: memory for the sorted set {result['memory_mb']}")
        result["members"] = members
        result["range_latency"] = await _range_latency(stub, members, samples)
        result["fanout"] = await _fanout(addrs, leader)
        log(f"typed: fan-out {result['fanout']}")
        return result
    finally:
        await channel.close()


def run(
    work_dir: Path,
    node_args: Sequence[str],
    *,
    members: int = 1_000_000,
    seconds: float = 5.0,
    samples: int = 2000,
    keep_data: bool = False,
) -> dict[str, Any]:
    with running_cluster(work_dir, "typed", node_args, keep=keep_data) as (cluster, leader):
        addrs = [n.client_addr for n in cluster.nodes]
        node = cluster.nodes[leader]
        assert node.process is not None
        return asyncio.run(
            _run_async(addrs, node.client_addr, node.process.pid, members, seconds, samples)
        )


def render(section: dict[str, Any], add: Callable[[str], None]) -> None:
    add("## Typed values (issue 5)")
    add("")
    add(f"{CALLERS} concurrent callers on the leader, raw gRPC `Exec`:")
    add("")
    add("| op | ops/s |")
    add("|---|---|")
    for name, rate in section.get("throughput_ops_s", {}).items():
        add(f"| {name} | {rate:,.0f} |")
    add("")
    add(
        f"Range reads from a {section.get('members', 0):,}-member sorted set (loaded in "
        f"{section.get('load_s')} s), one caller on the leader, target p99 < "
        f"{RANGE_TARGET_P99_MS} ms:"
    )
    add("")
    add("| read | p50 ms | p99 ms | max ms | target |")
    add("|---|---|---|---|---|")
    for name, s in section.get("range_latency", {}).items():
        met = "met" if s.get("meets_target") else "**missed**"
        add(f"| {name} | {s['p50']} | {s['p99']} | {s['max']} | {met} |")
    mem = section.get("memory_mb")
    if mem:
        add("")
        add(
            f"Memory of the sorted set on the leader: {mem['accounted']} MB accounted "
            f"(what --max-memory counts), {mem['rss']} MB of RSS growth: "
            f"{mem['rss_per_accounted']}x."
        )
    fan = section.get("fanout")
    if fan:
        lat = fan["delivery_latency"]
        add("")
        add(
            f"Publish fan-out: {fan['messages']} messages to {fan['subscribers']} subscribers "
            f"over 3 nodes: {fan['publishes_per_s']} publishes/s (one publisher), "
            f"{fan['deliveries']:,} deliveries, all in order: {fan['all_in_order']}; delivery "
            f"latency p50 {lat['p50']} ms, p99 {lat['p99']} ms."
        )
    add("")
