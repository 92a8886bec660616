"""Failover: SIGKILL the leader under steady writes; time until a write succeeds on the new one.

The client side mirrors what an SDK does: writes go to the node it believes leads, with
the no-forward marker so that only a leader accepts them (a follower answers
UNAVAILABLE with the leader's address in trailing metadata `x-raftcache-leader`); on
any failure it retries, switching to a hinted address or to whichever node says it is
LEADER in Status (polled on every node every 20 ms).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2, cluster_pb2_grpc

from bench.common import (
    LEADER_METADATA_KEY,
    NO_FORWARD_METADATA,
    channel_options,
    load_snapshot,
    log,
    median,
    running_cluster,
    value_bytes,
    wait_announced,
)

TARGET_S = 1.5
WRITERS = 4
STEADY_BEFORE_KILL_S = 1.0
GIVE_UP_S = 15.0
POLL_S = 0.02


class _TrialState:
    def __init__(self, target: str, old_leader: str) -> None:
        self.target = target
        self.old_leader = old_leader
        self.kill_at: float | None = None
        self.first_ok: float | None = None
        self.first_ok_node = ""
        self.leader_seen: float | None = None
        self.leader_seen_node = ""
        self.new_term = 0
        self.ok_before_kill = 0
        self.ok_after = 0
        self.failed_after_kill = 0
        self.codes: dict[str, int] = {}
        self.hints_used = 0
        self.stop = False


async def _writer(wid: int, state: _TrialState, stubs: dict[str, cache_pb2_grpc.CacheStub]) -> None:
    value = value_bytes()
    seq = 0
    while not state.stop:
        seq += 1
        target = state.target
        request = cache_pb2.SetRequest(key=f"failover-{wid}-{seq % 100}".encode(), value=value)
        try:
            await stubs[target].Set(request, timeout=1.0, metadata=NO_FORWARD_METADATA)
        except grpc.aio.AioRpcError as exc:
            if state.kill_at is not None:
                state.failed_after_kill += 1
                name = exc.code().name
                state.codes[name] = state.codes.get(name, 0) + 1
            hint = dict(exc.trailing_metadata() or ()).get(LEADER_METADATA_KEY)
            if hint and str(hint) in stubs and str(hint) != target:
                state.target = str(hint)
                state.hints_used += 1
            else:
                await asyncio.sleep(0.005)
            continue
        now = time.perf_counter()
        if state.kill_at is None:
            state.ok_before_kill += 1
        elif target != state.old_leader:
            state.ok_after += 1
            if state.first_ok is None:
                state.first_ok = now
                state.first_ok_node = target


async def _discover(state: _TrialState, stubs: dict[str, cluster_pb2_grpc.ClusterStub]) -> None:
    async def ask(addr: str) -> tuple[str, cluster_pb2.StatusResponse | None]:
        try:
            return addr, await stubs[addr].Status(cluster_pb2.StatusRequest(), timeout=0.2)
        except grpc.aio.AioRpcError:
            return addr, None

    while not state.stop:
        answers = await asyncio.gather(*(ask(a) for a in stubs))
        leaders = [
            (s.term, a) for a, s in answers if s is not None and s.role == cluster_pb2.LEADER
        ]
        if leaders:
            term, addr = max(leaders)
            if state.kill_at is not None and addr != state.old_leader:
                if state.leader_seen is None:
                    state.leader_seen = time.perf_counter()
                    state.leader_seen_node = addr
                    state.new_term = term
                state.target = addr
            elif state.kill_at is None:
                state.target = addr
        await asyncio.sleep(POLL_S)


async def _trial_async(cluster: LocalCluster, leader: int) -> dict[str, Any]:
    addrs = [n.client_addr for n in cluster.nodes]
    channels = {a: grpc.aio.insecure_channel(a, options=channel_options(True)) for a in addrs}
    cache = {a: cache_pb2_grpc.CacheStub(c) for a, c in channels.items()}
    clus = {a: cluster_pb2_grpc.ClusterStub(c) for a, c in channels.items()}
    old = addrs[leader]
    state = _TrialState(old, old)
    tasks = [asyncio.create_task(_writer(w, state, cache)) for w in range(WRITERS)]
    tasks.append(asyncio.create_task(_discover(state, clus)))
    try:
        await asyncio.sleep(STEADY_BEFORE_KILL_S)
        process = cluster.nodes[leader].process
        assert process is not None
        state.kill_at = time.perf_counter()
        os.kill(process.pid, signal.SIGKILL)
        deadline = state.kill_at + GIVE_UP_S
        while state.first_ok is None and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.3)  # keep writing briefly: the new leader keeps serving
    finally:
        state.stop = True
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels.values():
            await channel.close()
    kill_at = state.kill_at or 0.0
    by_addr = {n.client_addr: n.node_id for n in cluster.nodes}
    return {
        "first_write_s": None if state.first_ok is None else round(state.first_ok - kill_at, 4),
        "leader_seen_s": None
        if state.leader_seen is None
        else round(state.leader_seen - kill_at, 4),
        "new_leader": by_addr.get(state.leader_seen_node or state.first_ok_node, ""),
        "first_write_node": by_addr.get(state.first_ok_node, ""),
        "new_term": state.new_term,
        "writes_ok_before_kill": state.ok_before_kill,
        "writes_ok_after_failover": state.ok_after,
        "failed_attempts_after_kill": state.failed_after_kill,
        "error_codes": state.codes,
        "leader_hints_followed": state.hints_used,
    }


def _run_trial(cluster: LocalCluster, number: int) -> dict[str, Any]:
    leader = cluster.wait_for_leader()
    before = cluster.status(leader)
    result = asyncio.run(_trial_async(cluster, leader))
    cluster.kill(leader)  # reap the killed process
    result = {
        "trial": number,
        "killed_leader": cluster.nodes[leader].node_id,
        "old_term": before.term if before is not None else 0,
        **result,
    }
    started = time.monotonic()
    cluster.start_node(leader)
    cluster.wait_until_ready(timeout=60)
    wait_announced(cluster)
    result["restarted_node_ready_s"] = round(time.monotonic() - started, 2)
    time.sleep(1.0)  # let every peer connection settle before the next kill
    log(
        f"  trial {number}: killed {result['killed_leader']} (term {result['old_term']}); "
        f"new leader {result['new_leader']} term {result['new_term']} seen after "
        f"{result['leader_seen_s']} s; first write after {result['first_write_s']} s"
    )
    return result


def run(
    work_dir: Path, node_args: Sequence[str], *, trials: int, keep_data: bool
) -> dict[str, Any]:
    section: dict[str, Any] = {
        "load_before": load_snapshot("failover start"),
        "method": (
            f"{WRITERS} writer coroutines issue Set back-to-back to the leader "
            f"({STEADY_BEFORE_KILL_S} s before the kill); SIGKILL the leader; time from the "
            "kill until the first Set that succeeds on another node. Writers carry "
            "x-raftcache-forwarded so only a leader accepts them; they follow the "
            "x-raftcache-leader hint and Status polling (every 20 ms on every node). "
            "The killed node is restarted and the cluster is ready before the next trial."
        ),
        "node_args": list(node_args),
    }
    with running_cluster(work_dir, "failover", node_args, keep=keep_data) as (cluster, _leader):
        results = [_run_trial(cluster, i + 1) for i in range(trials)]
    times = [r["first_write_s"] for r in results if r["first_write_s"] is not None]
    section["trials"] = results
    section["median_first_write_s"] = round(median(times), 4) if times else None
    section["max_first_write_s"] = max(times) if times else None
    section["median_leader_seen_s"] = round(
        median([r["leader_seen_s"] for r in results if r["leader_seen_s"] is not None]), 4
    )
    section["target_s"] = TARGET_S
    section["meets_target"] = (
        bool(times) and len(times) == len(results) and median(times) < TARGET_S
    )
    section["load_after"] = load_snapshot("failover end")
    return section
