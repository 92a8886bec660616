"""Redis streams on a real 3-node cluster through redis-py (RESP2 and RESP3): XADD through a
follower and the leader, consumer groups with XREADGROUP/XACK/XPENDING/XCLAIM, and every
replica holding the same stream (same ids, same pending entries) after the writes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from raftcache.chaos.local_cluster import LocalCluster
from redis.backoff import ExponentialBackoff
from redis.exceptions import ClusterDownError, ResponseError, TryAgainError
from redis.retry import Retry

from tests.integration.conftest import start_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = start_cluster(Path(tmp_path_factory.mktemp("streams")))
    try:
        yield c
    finally:
        c.close()


def connect(cluster: LocalCluster, i: int, protocol: int = 3) -> redis.Redis:
    retry = Retry(
        ExponentialBackoff(cap=0.5, base=0.05),
        25,
        supported_errors=(ClusterDownError, TryAgainError),
    )
    return redis.Redis(
        host="127.0.0.1",
        port=cluster.nodes[i].redis_port,
        protocol=protocol,
        decode_responses=True,
        socket_timeout=15,
        retry=retry,
    )


def roles(cluster: LocalCluster) -> tuple[int, int]:
    leader = cluster.wait_for_leader()
    return leader, next(i for i in range(3) if i != leader)


@pytest.mark.parametrize("protocol", [2, 3])
def test_consumer_group_through_leader_and_follower(cluster: LocalCluster, protocol: int) -> None:
    leader_i, follower_i = roles(cluster)
    leader, follower = connect(cluster, leader_i, protocol), connect(cluster, follower_i, protocol)
    key = f"jobs:{protocol}"
    first = follower.xadd(key, {"job": "1"})  # forwarded to the leader
    second = leader.xadd(key, {"job": "2"})
    assert first < second
    ms, seq = (int(x) for x in second.split("-"))
    assert abs(ms - time.time() * 1000) < 60_000  # the leader's clock stamps `*`
    assert follower.xadd(key, {"job": "3"}, id=f"{ms}-{seq + 5}") == f"{ms}-{seq + 5}"
    assert follower.xlen(key) == 3
    follower.xgroup_create(key, "workers", id="0")
    with pytest.raises(ResponseError, match="BUSYGROUP"):
        leader.xgroup_create(key, "workers", id="0")

    got = follower.xreadgroup("workers", "w1", {key: ">"}, count=2)
    if protocol == 3:
        assert list(got) == [key]  # a map in RESP3
        entries = got[key][0]
    else:
        assert got[0][0] == key  # [[key, entries]] in RESP2
        entries = got[0][1]
    assert [e[0] for e in entries] == [first, second]
    assert entries[0][1] == {"job": "1"}
    assert leader.xreadgroup("workers", "w2", {key: ">"})  # the third entry
    pending = leader.xpending(key, "workers")
    assert pending["pending"] == 3
    assert {c["name"]: c["pending"] for c in pending["consumers"]} == {"w1": 2, "w2": 1}

    assert follower.xack(key, "workers", first) == 1
    claimed = leader.xclaim(key, "workers", "w2", 0, [second])
    assert [c[0] for c in claimed] == [second]
    detail = leader.xpending_range(key, "workers", "-", "+", 10)
    assert [(p["message_id"], p["consumer"]) for p in detail] == [
        (second, "w2"),
        (f"{ms}-{seq + 5}", "w2"),
    ]
    groups = follower.xinfo_groups(key)
    assert groups[0]["name"] == "workers" and groups[0]["pending"] == 2
    assert leader.xinfo_stream(key)["length"] == 3
    assert leader.xrange(key, "-", "+", count=1)[0][0] == first
    assert leader.xrevrange(key, "+", "-", count=1)[0][0] == f"{ms}-{seq + 5}"
    assert leader.xread({key: second}) is not None
    assert leader.xtrim(key, maxlen=1, approximate=False) == 2
    assert leader.type(key) == "stream"

    # every replica holds the same stream: read each one's own copy (READONLY, stale)
    for i in range(3):
        node = redis.Redis(
            host="127.0.0.1", port=cluster.nodes[i].redis_port, decode_responses=True,
            single_connection_client=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            node.execute_command("READONLY")
            view = (node.xlen(key), node.xpending(key, "workers")["pending"])
            if view == (1, 2) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert view == (1, 2), f"node {i}"
        node.close()


def test_block_answers_at_once_with_data_and_waits_without(cluster: LocalCluster) -> None:
    r = connect(cluster, roles(cluster)[1])
    sid = r.xadd("blk", {"a": "1"})
    got = r.xread({"blk": "0"}, block=5000)
    assert got["blk"][0][0][0] == sid
    started = time.monotonic()
    assert not r.xread({"blk": "$"}, block=300)  # the null reply after the timeout
    assert time.monotonic() - started >= 0.29


def test_stream_errors_match_redis(cluster: LocalCluster) -> None:
    r = connect(cluster, roles(cluster)[1])
    r.xadd("err", {"a": "1"}, id="5-0")
    with pytest.raises(ResponseError, match="equal or smaller than the target stream top item"):
        r.xadd("err", {"a": "1"}, id="5-0")
    with pytest.raises(ResponseError, match="NOGROUP"):
        r.xreadgroup("nogroup", "c", {"err": ">"})
    with pytest.raises(ResponseError, match="Invalid stream ID"):
        r.xrange("err", "bad", "+")
    r.set("plain", "x")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        r.xadd("plain", {"a": "1"})
