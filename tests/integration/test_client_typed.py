"""The SDK's typed ops on a real 3-node cluster: a leaderboard under concurrent increments, a
session hash with a TTL, lists and sets, a check-then-set transaction, a full scan, wrong-type
errors, pub/sub and a watch."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.client import (
    AsyncClient,
    Client,
    ConditionFailedError,
    NotFoundError,
    WrongTypeError,
    ops,
)
from raftcache.v1 import cache_pb2, cache_pb2_grpc, cluster_pb2, cluster_pb2_grpc

from tests.integration.conftest import start_cluster

pytestmark = pytest.mark.integration

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def endpoints(cluster: LocalCluster) -> list[str]:
    return [node.client_addr for node in cluster.nodes]


@pytest.fixture
def client(endpoints: list[str]) -> Iterator[Client]:
    with Client(endpoints, timeout=TIMEOUT) as c:
        yield c


def unique(name: str) -> str:
    """A key no other test (or earlier run on this module's cluster) uses."""
    return f"{name}:{uuid.uuid4().hex[:8]}"


def eventually(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_leaderboard_under_concurrent_zincrby(endpoints: list[str], client: Client) -> None:
    board = unique("board")
    players = [f"player{i}" for i in range(8)]
    rounds, threads = 25, 6
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            with Client(endpoints, timeout=TIMEOUT) as own:  # separate clients, like servers
                for r in range(rounds):
                    own.zincrby(board, players[(n + r) % len(players)], n + 1)
        except BaseException as exc:  # reported below
            failures.append(exc)

    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert not failures, failures
    assert not any(w.is_alive() for w in workers)

    expected = dict.fromkeys(players, 0.0)
    for n in range(threads):
        for r in range(rounds):
            expected[players[(n + r) % len(players)]] += n + 1
    # Highest first; as in Redis, reverse order is the ascending (score, member) order reversed.
    ranking = sorted(expected.items(), key=lambda kv: (kv[1], kv[0].encode()), reverse=True)

    top = client.zrange(board, 0, -1, reverse=True, withscores=True)
    assert top == [(p.encode(), score) for p, score in ranking]
    assert client.zcard(board) == len(players)
    for player, score in expected.items():
        assert client.zscore(board, player) == score
        rank = client.zrank(board, player, reverse=True)
        assert rank is not None and top[rank] == (player.encode(), score)
    assert client.zrange(board, 0, 2, reverse=True) == [p.encode() for p, _ in ranking[:3]]
    best = ranking[0][1]
    assert client.zrangebyscore(board, best, float("inf")) == [ranking[0][0].encode()]
    assert client.zcount(board, 0, best, max_exclusive=True) == len(players) - 1
    assert client.zrem(board, players[0], "nobody") == 1
    assert client.zscore(board, players[0]) is None


def test_session_hash_with_ttl_vanishes_everywhere(client: Client) -> None:
    session = unique("session")
    assert client.hset(session, {"user": "ann", "cart:42": "1"}) == 2
    assert client.hset(session, {"cart:42": "2", "cart:7": "1"}) == 1
    assert client.hincrby(session, "cart:42", 3) == 5
    assert client.hget(session, "user") == b"ann"
    assert client.hget(session, "nothing") is None
    assert client.hdel(session, "cart:7", "nothing") == 1
    assert client.hgetall(session) == {b"user": b"ann", b"cart:42": b"5"}
    assert client.hlen(session) == 2
    assert client.type(session) == "hash"

    assert client.ttl(session) is None  # no expiry yet
    assert client.expire(session, 2.0) is True
    remaining = client.ttl(session)
    assert remaining is not None and 0 < remaining <= 2.0

    def gone_everywhere() -> bool:
        return client.type(session) == "none" and all(
            client.hgetall(session, consistency="stale") == {} for _ in range(3)
        )

    eventually(gone_everywhere, "the session to expire on every node")
    with pytest.raises(NotFoundError):
        client.ttl(session)
    assert client.expire(session, 5) is False


def test_persist_removes_an_expiry(client: Client) -> None:
    key = unique("persist")
    client.sadd(key, "x")
    assert client.persist(key) is False  # no TTL to remove
    client.expire(key, 60)
    assert client.persist(key) is True
    assert client.ttl(key) is None


def test_lists_basics(client: Client) -> None:
    key = unique("list")
    assert client.rpush(key, "b", "c") == 2
    assert client.lpush(key, "a") == 3
    assert client.lpush(key, "y", "x") == 5  # x ends up first, as in Redis
    assert client.lrange(key, 0, -1) == [b"x", b"y", b"a", b"b", b"c"]
    assert client.lrange(key, -2, -1) == [b"b", b"c"]
    assert client.lrange(key, 10, 20) == []
    assert client.llen(key) == 5
    assert client.lpop(key) == b"x"
    assert client.rpop(key, 2) == [b"c", b"b"]
    assert client.lpop(key, 10) == [b"y", b"a"]
    assert client.lpop(key) is None
    assert client.llen(key) == 0
    assert client.type(key) == "none"


def test_sets_basics(client: Client) -> None:
    key = unique("set")
    assert client.sadd(key, "a", "b", "c", "a") == 3
    assert client.sadd(key, "c", "d") == 1
    assert client.srem(key, "a", "zzz") == 1
    assert client.smembers(key) == {b"b", b"c", b"d"}
    assert client.sismember(key, "b") is True
    assert client.sismember(key, "a") is False
    assert client.scard(key) == 3
    assert client.smembers(unique("missing")) == set()


def test_txn_check_then_set(client: Client) -> None:
    stock, orders = unique("stock"), unique("orders")
    client.set(stock, "1")

    def buy() -> Any:
        return client.txn(
            [ops.value(stock, "==", "1")],
            [ops.set(stock, "0"), ops.rpush(orders, "order-1")],
            [ops.get(stock)],
        )

    first = buy()
    assert first.succeeded
    assert first.results[1] == 1  # the orders list's new length
    second = buy()
    assert (second.succeeded, second.results) == (False, [b"0"])
    assert client.get(stock) == b"0"
    assert client.lrange(orders, 0, -1) == [b"order-1"]

    missing = client.txn([ops.missing(unique("lock"))], [ops.incr(stock + ":n", 2)])
    assert (missing.succeeded, missing.results) == (True, [2])


def test_scan_returns_each_of_1000_keys_exactly_once(client: Client) -> None:
    prefix = unique("scan") + ":"
    keys = [f"{prefix}{i:04d}" for i in range(1000)]
    for start in range(0, len(keys), 100):
        client.mset({k: "v" for k in keys[start : start + 100]})
    client.set(prefix[:-1] + "-other", "not in the prefix")

    seen = list(client.scan_iter(prefix, count=37))

    assert len(seen) == len(keys)
    assert sorted(seen) == sorted(k.encode() for k in keys)


def test_wrong_type_names_both_types(client: Client) -> None:
    key = unique("typed")
    client.rpush(key, "x")

    with pytest.raises(WrongTypeError) as raised:
        client.hget(key, "field")
    assert isinstance(raised.value, ConditionFailedError)
    message = str(raised.value)
    assert "list" in message and "hash" in message

    with pytest.raises(WrongTypeError):
        client.zincrby(key, "m", 1)
    assert client.lrange(key, 0, -1) == [b"x"]  # nothing changed


def test_publish_reaches_a_subscriber_on_each_node(endpoints: list[str]) -> None:
    channel = unique("news")

    async def body() -> None:
        subscribers = [AsyncClient([address], timeout=TIMEOUT) for address in endpoints]
        publisher = AsyncClient(endpoints, timeout=TIMEOUT)
        try:
            subscriptions = [await s.subscribe([channel]) for s in subscribers]
            await publisher.publish(channel, "one")
            await publisher.publish(channel, "two")
            for subscription in subscriptions:
                got = [await asyncio.wait_for(anext(subscription), TIMEOUT) for _ in range(2)]
                assert [m.data for m in got] == [b"one", b"two"]
                assert {m.channel for m in got} == {channel.encode()}
                await subscription.aclose()
        finally:
            for c in [*subscribers, publisher]:
                await c.close()

    asyncio.run(body())


def test_watch_sees_changes_in_revision_order(endpoints: list[str]) -> None:
    prefix = unique("watched") + ":"

    async def body() -> None:
        async with AsyncClient(endpoints, timeout=TIMEOUT) as c:
            watch = await c.watch(prefix, prefix=True)
            await c.set(prefix + "a", "1")
            await c.hset(prefix + "b", {"f": "v"})
            await c.delete(prefix + "a")
            got = [await asyncio.wait_for(anext(watch), TIMEOUT) for _ in range(3)]
            await watch.aclose()
        assert [(e.kind, e.key) for e in got] == [
            ("set", (prefix + "a").encode()),
            ("set", (prefix + "b").encode()),
            ("delete", (prefix + "a").encode()),
        ]
        assert got[0].value == b"1" and got[1].type == "hash"
        assert got[0].revision < got[1].revision < got[2].revision

        # Resuming from the first event's revision replays exactly the later ones.
        async with AsyncClient(endpoints, timeout=TIMEOUT) as c:
            again = await c.watch(prefix, prefix=True, start_revision=got[0].revision)
            replay = [await asyncio.wait_for(anext(again), TIMEOUT) for _ in range(2)]
            await again.aclose()
        assert [e.revision for e in replay] == [got[1].revision, got[2].revision]

    asyncio.run(body())


def test_watch_resumes_on_another_node_after_its_node_is_killed(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    cluster = start_cluster(tmp_path_factory.mktemp("watch-resume"))
    endpoints = [node.client_addr for node in cluster.nodes]
    key = unique("resumed")

    async def body() -> None:
        async with AsyncClient(endpoints, timeout=TIMEOUT) as c:
            watch = await c.watch(key)
            await c.set(key, "1")
            first = await asyncio.wait_for(anext(watch), TIMEOUT)
            victim = endpoints.index(watch.address or "")
            cluster.kill(victim)  # the watch's node; maybe the leader too
            await c.set(key, "2")  # written while the watch has no stream
            await c.set(key, "3")
            later = [await asyncio.wait_for(anext(watch), 3 * TIMEOUT) for _ in range(2)]
            assert watch.address != endpoints[victim]
            assert watch.resumes >= 1
            await watch.aclose()
        assert [e.value for e in [first, *later]] == [b"1", b"2", b"3"]
        assert first.revision < later[0].revision < later[1].revision

    try:
        asyncio.run(body())
    finally:
        cluster.close()


def test_a_watch_resumes_past_a_restarted_node_that_kept_only_its_last_snapshot_on(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Journal mode: a restarted node re-applies its journal from its last snapshot, so its
    watch window starts there; it answers an older start revision with OUT_OF_RANGE, and the
    SDK goes on to a node that still retains it."""
    cluster = start_cluster(tmp_path_factory.mktemp("watch-restart"))
    key = unique("restarted")

    async def body() -> None:
        async with AsyncClient(cluster.nodes[0].client_addr, timeout=TIMEOUT) as c:
            await c.set(unique("before"), "0")  # so that first - 1 is a revision, not "now"
            first = await c.set(key, "1")
            victim_addr = c.members[0]  # the member a new watch tries first
            victim = [n.client_addr for n in cluster.nodes].index(victim_addr)
            cache = cache_pb2_grpc.CacheStub(grpc.insecure_channel(victim_addr))
            stale = cache_pb2.GetRequest(key=key.encode(), consistency=cache_pb2.STALE)
            eventually(lambda: cache.Get(stale, timeout=5).value == b"1", "'1' on the victim")
            stub = cluster_pb2_grpc.ClusterStub(grpc.insecure_channel(victim_addr))
            taken = stub.Status(cluster_pb2.StatusRequest(), timeout=5).snapshots_taken
            while stub.Status(cluster_pb2.StatusRequest(), timeout=5).snapshots_taken == taken:
                stub.Snapshot(cluster_pb2.SnapshotRequest(), timeout=5)  # covers "1"
                await asyncio.sleep(0.1)
            await c.set(key, "2")
            cluster.kill(victim)
            cluster.start_node(victim)
            cluster.wait_until_ready(timeout=30)
            await c.set(key, "3")

        refused = cache_pb2_grpc.CacheStub(grpc.insecure_channel(victim_addr)).Watch(
            cache_pb2.WatchRequest(key=key.encode(), start_revision=first - 1), timeout=TIMEOUT
        )
        with pytest.raises(grpc.RpcError) as raised:
            next(iter(refused))
        assert raised.value.code() == grpc.StatusCode.OUT_OF_RANGE

        async with AsyncClient(victim_addr, timeout=TIMEOUT) as c:
            watch = await c.watch(key, start_revision=first - 1)
            got = [await asyncio.wait_for(anext(watch), TIMEOUT) for _ in range(3)]
            assert watch.address != victim_addr
            await watch.aclose()
        assert [e.value for e in got] == [b"1", b"2", b"3"]

    try:
        asyncio.run(body())
    finally:
        cluster.close()
