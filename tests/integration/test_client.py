"""The SDK against real 3-node clusters: failover without errors, exactly-once counters,
learning the leader from a follower seed, and bad seeds."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from raftcache.chaos.local_cluster import LocalCluster, free_port
from raftcache.client import (
    AsyncClient,
    Client,
    ConditionFailedError,
    OutcomeUnknownError,
    RequestTooOldError,
    TooLargeError,
    UnavailableError,
)
from raftcache.node.state_machine import DEDUP_RESULTS_PER_CLIENT

from tests.integration.conftest import start_cluster

pytestmark = pytest.mark.integration

THREADS = 8
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def killable(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A cluster whose leader the tests kill and restart (each leaves it whole again)."""
    c = start_cluster(tmp_path_factory.mktemp("client-failover"))
    try:
        yield c
    finally:
        c.close()


def kill_leader_during(cluster: LocalCluster, workers: list[threading.Thread]) -> float:
    """Run workers while the leader is SIGKILLed and restarted; returns when a new
    leader was seen (monotonic time). Workers must stop when `stop` is set."""
    for worker in workers:
        worker.start()
    time.sleep(0.5)
    old = cluster.wait_for_leader()
    cluster.kill(old)
    cluster.wait_for_leader(exclude=old)
    elected = time.monotonic()
    time.sleep(0.5)
    cluster.start_node(old)
    cluster.wait_until_ready(timeout=30)
    time.sleep(0.5)
    return elected


def run_threads(
    cluster: LocalCluster, body: Callable[[int, threading.Event], None]
) -> tuple[float, list[BaseException]]:
    stop = threading.Event()
    failures: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            body(i, stop)
        except BaseException as exc:  # reported by the test, not lost in the thread
            failures.append(exc)

    workers = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(THREADS)]
    try:
        elected = kill_leader_during(cluster, workers)
    finally:
        stop.set()
        for worker in workers:
            worker.join(TIMEOUT + 5)
    assert not any(w.is_alive() for w in workers), "a worker is stuck"
    return elected, failures


def test_set_and_get_ride_through_a_leader_kill(killable: LocalCluster) -> None:
    addrs = [n.client_addr for n in killable.nodes]
    leader_addr = addrs[killable.wait_for_leader()]
    shared = Client(leader_addr, timeout=TIMEOUT)  # one seed, and it is about to die
    own = [Client(addrs, timeout=TIMEOUT) for _ in range(THREADS // 2)]
    acked: list[dict[str, bytes]] = [{} for _ in range(THREADS)]
    acked_at: list[list[float]] = [[] for _ in range(THREADS)]

    def body(i: int, stop: threading.Event) -> None:
        client = shared if i % 2 else own[i // 2]
        n = 0
        while not stop.is_set():
            key, value = f"failover/{i}/{n}", f"value {i} {n}".encode()
            client.set(key, value)
            acked[i][key] = value
            acked_at[i].append(time.monotonic())
            got = client.get(key)
            assert got == value, f"{key}: read {got!r} right after writing {value!r}"
            n += 1

    try:
        elected, failures = run_threads(killable, body)
        assert failures == [], f"idempotent ops failed during failover: {failures!r}"
        for i in range(THREADS):
            assert any(t > elected for t in acked_at[i]), f"thread {i} made no progress after"

        with Client(addrs, timeout=TIMEOUT) as reader:
            for i in range(THREADS):
                keys = sorted(acked[i])
                values = reader.mget(keys)
                lost = [k for k, v in zip(keys, values, strict=True) if v != acked[i][k]]
                assert lost == [], f"thread {i}: acknowledged writes not readable: {lost[:5]}"
    finally:
        shared.close()
        for client in own:
            client.close()


def test_incr_counts_exactly_once_through_a_leader_kill(killable: LocalCluster) -> None:
    addrs = [n.client_addr for n in killable.nodes]
    key = "failover/counter"
    acked = [0] * THREADS
    unknown = [0] * THREADS
    answers: list[list[int]] = [[] for _ in range(THREADS)]
    last_ack = [0.0] * THREADS
    clients = [Client(addrs, timeout=TIMEOUT) for _ in range(THREADS // 2)]

    def body(i: int, stop: threading.Event) -> None:
        client = clients[i // 2]  # two threads per client: shared sequence numbers too
        while not stop.is_set():
            try:
                answers[i].append(client.incr(key))
            except OutcomeUnknownError:
                unknown[i] += 1
                continue
            acked[i] += 1
            last_ack[i] = time.monotonic()

    try:
        elected, failures = run_threads(killable, body)
        assert failures == [], f"incr failed during failover: {failures!r}"
        assert all(t > elected for t in last_ack), "a thread made no progress after failover"
        with Client(addrs, timeout=TIMEOUT) as reader:
            final = int(reader.get(key) or b"0")
    finally:
        for client in clients:
            client.close()

    total_acked, total_unknown = sum(acked), sum(unknown)
    assert total_acked > 0
    assert total_acked <= final <= total_acked + total_unknown, (
        f"final {final}, acked {total_acked}, unknown {total_unknown}"
    )
    every_answer = [v for per_thread in answers for v in per_thread]
    assert len(set(every_answer)) == len(every_answer), "an increment was applied twice"
    assert max(every_answer) <= final


def test_async_client_through_a_follower_seed(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    follower = (leader + 1) % len(cluster.nodes)
    leader_addr = cluster.nodes[leader].client_addr

    async def scenario() -> None:
        async with AsyncClient(cluster.nodes[follower].client_addr) as client:
            version = await client.set("sdk/a", "1", ttl=60)
            assert client.leader == leader_addr
            assert sorted(client.members) == sorted(n.client_addr for n in cluster.nodes)
            item = await client.get_item("sdk/a")
            assert item is not None
            assert (item.value, item.version) == (b"1", version)
            assert item.ttl is not None and 0 < item.ttl <= 60
            assert await client.incr("sdk/n", 5) == 5
            assert await client.incr("sdk/n", -2) == 3
            with pytest.raises(ConditionFailedError):
                await client.set("sdk/a", "2", if_absent=True)
            await client.set("sdk/text", "not a number")
            with pytest.raises(ConditionFailedError):
                await client.incr("sdk/text")
            await client.mset({"sdk/b": "2", "sdk/c": b"3"})
            assert await client.mget(["sdk/a", "sdk/b", "sdk/c", "sdk/none"]) == [
                b"1",
                b"2",
                b"3",
                None,
            ]
            assert await client.delete("sdk/b") is True
            assert await client.delete("sdk/b") is False
            assert await client.get("sdk/b") is None
            stale = await client.get("sdk/c", consistency="stale", max_staleness=5.0)
            assert stale in (b"3", None)  # a follower may lag, but never invent a value

    asyncio.run(scenario())


def test_cluster_status_lists_three_members_and_one_leader(cluster: LocalCluster) -> None:
    with Client(cluster.nodes[0].client_addr) as client:
        nodes = client.cluster_status()
    assert sorted(n.address for n in nodes) == sorted(x.client_addr for x in cluster.nodes)
    assert [n.role for n in nodes].count("leader") == 1
    assert {n.role for n in nodes} <= {"leader", "follower"}
    assert len({n.node_id for n in nodes}) == 3


def test_a_bad_seed_is_tolerated_when_another_is_good(cluster: LocalCluster) -> None:
    bad = f"127.0.0.1:{free_port()}"

    async def scenario() -> None:
        async with AsyncClient([bad, cluster.nodes[1].client_addr], timeout=5) as client:
            await client.set("sdk/seed", "ok")
            assert await client.get("sdk/seed") == b"ok"
            assert bad not in client.members

    asyncio.run(scenario())


def test_only_bad_seeds_fail_fast_as_unavailable() -> None:
    bad = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    with Client(bad, timeout=1) as client:
        for call in (lambda: client.get("k"), lambda: client.set("k", "v")):
            start = time.monotonic()
            with pytest.raises(UnavailableError, match="nothing was applied"):
                call()
            assert time.monotonic() - start < 3


def test_a_retry_older_than_the_dedup_window_fails_at_once_as_request_too_old(
    cluster: LocalCluster,
) -> None:
    """A second client reusing an id whose first DEDUP_RESULTS_PER_CLIENT + 1 requests were
    applied re-sends seq 1: the cluster cannot tell what it answered any more."""
    seed = cluster.nodes[0].client_addr

    async def scenario() -> None:
        async with AsyncClient(seed, client_id="reused-id") as first:
            await first.incr("sdk/too-old")  # seq 1, remembered first, so forgotten first
            for _ in range(DEDUP_RESULTS_PER_CLIENT // 128):
                await asyncio.gather(*(first.incr("sdk/too-old") for _ in range(128)))
        async with AsyncClient(seed, client_id="reused-id", timeout=TIMEOUT) as again:
            start = time.monotonic()
            with pytest.raises(RequestTooOldError) as raised:
                await again.incr("sdk/too-old")
            assert time.monotonic() - start < 2, "retried towards the deadline"
            assert raised.value.request_id == ("reused-id", 1)
            assert await again.get("sdk/too-old") == str(DEDUP_RESULTS_PER_CLIENT + 1).encode()

    asyncio.run(scenario())


def test_a_write_over_grpcs_message_limit_is_too_large_at_once(cluster: LocalCluster) -> None:
    # Five values at the 4 MiB value limit: 20 MiB, over the nodes' 17 MiB message limit.
    items = {f"sdk/big{i}": b"x" * (4 << 20) for i in range(5)}
    with Client(cluster.nodes[0].client_addr, timeout=TIMEOUT) as client:
        start = time.monotonic()
        with pytest.raises(TooLargeError, match="nothing was applied"):
            client.mset(items)
        assert time.monotonic() - start < 2
        assert client.mget(list(items)) == [None] * len(items)
