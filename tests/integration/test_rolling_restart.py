"""A rolling restart of every member under SDK load, with no failed request (issue 15).

The procedure README.md "Operations" describes: one member at a time, followers first and
the leader last, each with SIGTERM (a leader hands over first), and the next only once the
restarted member has caught up. Meanwhile AsyncClient workers (default timeout and retries)
write fresh keys and read each one back; no exception may reach them, and every
acknowledged write must read back at the end.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.client import AsyncClient

from tests.integration.conftest import running_cluster

pytestmark = pytest.mark.integration

WORKERS = 8


def _caught_up(cluster: LocalCluster, i: int, timeout: float = 20) -> None:
    """Wait until node i follows a leader and has applied what that leader had committed
    when we started waiting (under load the two never meet exactly)."""
    deadline = time.monotonic() + timeout
    target = 0
    while time.monotonic() < deadline:
        leader = cluster.leader()
        status = cluster.status(i)
        if leader is not None and not target:
            leader_status = cluster.status(leader)
            target = leader_status.commit_index if leader_status is not None else 0
        if status is not None and status.leader_id and target and status.applied_index >= target:
            return
        time.sleep(0.05)
    raise AssertionError(f"{cluster.nodes[i].node_id} did not catch up within {timeout} s")


async def _restart_all(cluster: LocalCluster) -> list[tuple[str, bool, int | None]]:
    """Restart every member, followers first, the leader last; (node, was leader, exit code)."""
    # Status calls block: off the event loop, so the workers' calls are not held up.
    leader = await asyncio.to_thread(cluster.wait_for_leader)
    order = [i for i in range(len(cluster.nodes)) if i != leader] + [leader]
    done = []
    for i in order:
        was_leader = await asyncio.to_thread(cluster.leader) == i
        code = await asyncio.to_thread(cluster.stop, i)
        done.append((cluster.nodes[i].node_id, was_leader, code))
        cluster.start_node(i)
        await asyncio.to_thread(_caught_up, cluster, i)
    return done


@pytest.mark.timeout(120)
def test_a_rolling_restart_under_sdk_load_fails_no_request(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as cluster:
        asyncio.run(_rolling_restart(cluster))


async def _rolling_restart(cluster: LocalCluster) -> None:
    addrs = [n.client_addr for n in cluster.nodes]
    acked: dict[str, bytes] = {}
    failures: list[tuple[str, BaseException]] = []
    stop = asyncio.Event()
    ops = [0]

    async def worker(w: int, client: AsyncClient) -> None:
        n = 0
        while not stop.is_set():
            key, value = f"rolling/{w}/{n}", f"v{w}.{n}".encode()
            try:
                await client.set(key, value)
                acked[key] = value
                got = await client.get(key)
            except Exception as exc:  # every failure that reaches the caller is the finding
                failures.append((key, exc))
                n += 1
                continue
            if got != value:
                failures.append((key, AssertionError(f"read {got!r} after writing {value!r}")))
            ops[0] += 2
            n += 1

    async with AsyncClient(addrs) as client:
        tasks = [asyncio.create_task(worker(w, client)) for w in range(WORKERS)]
        started = time.monotonic()
        try:
            restarted = await _restart_all(cluster)
            await asyncio.sleep(0.5)  # the last restarted member serves too
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        took = time.monotonic() - started

        assert failures == [], f"{len(failures)} failed requests, first: {failures[:3]!r}"
        assert [code for _, _, code in restarted] == [0, 0, 0], restarted
        leader_stops = [node for node, was_leader, _ in restarted if was_leader]
        assert len(leader_stops) == 1, restarted
        log = cluster.nodes[int(leader_stops[0][1:]) - 1].log_path.read_text(errors="replace")
        assert "leadership handed over" in log
        assert ops[0] > 100, (ops[0], took)
        keys = sorted(acked)
        values = await client.mget(keys)
        lost = [k for k, v in zip(keys, values, strict=True) if v != acked[k]]
        assert lost == [], f"{len(lost)} acknowledged writes do not read back: {lost[:5]}"
