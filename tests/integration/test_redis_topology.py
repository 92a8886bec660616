"""Topology and introspection through redis-py on a real 3-node cluster: INFO, CONFIG,
CLIENT and COMMAND on the leader and on a follower (RESP2 and RESP3), WAIT, a RedisCluster
client started from any node, a Sentinel client discovering the master, and both clients
finding the new leader after the old one is SIGKILLed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import redis
from raftcache.chaos.local_cluster import LocalCluster
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError, RedisError, ResponseError
from redis.sentinel import Sentinel

pytestmark = pytest.mark.integration

PROTOCOLS = [2, 3]
T = TypeVar("T")


def connect(cluster: LocalCluster, i: int, protocol: int = 3, **kwargs: Any) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=cluster.nodes[i].redis_port,
        protocol=protocol,
        socket_timeout=15,
        decode_responses=True,
        **kwargs,
    )


def follower_of(cluster: LocalCluster, leader: int) -> int:
    return next(i for i in range(len(cluster.nodes)) if i != leader)


def eventually(action: Callable[[], T], timeout: float = 30.0) -> T:
    """action() once it stops raising a Redis error (a failover in progress), or the last error."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="module")
def leader(cluster: LocalCluster) -> int:
    return cluster.wait_for_leader()


@pytest.fixture(params=PROTOCOLS, ids=["resp2", "resp3"])
def protocol(request: pytest.FixtureRequest) -> int:
    return int(request.param)


# -- INFO, CONFIG, CLIENT, COMMAND ------------------------------------------------------------


def test_info_on_leader_and_follower(cluster: LocalCluster, leader: int, protocol: int) -> None:
    follower = follower_of(cluster, leader)
    with connect(cluster, leader, protocol) as r:
        r.set("info:key", "v", ex=100)
        info = r.info()
        assert info["redis_version"] == "7.0.15" and info["cluster_enabled"] == 1
        assert info["role"] == "master" and info["connected_slaves"] == 2
        ports = {info["slave0"]["port"], info["slave1"]["port"]}
        assert ports == {n.redis_port for i, n in enumerate(cluster.nodes) if i != leader}
        assert info["slave0"]["state"] == "online" and info["slave0"]["ip"] == "127.0.0.1"
        assert info["db0"]["keys"] >= 1 and info["db0"]["expires"] >= 1
        for field in ("used_memory", "maxmemory", "keyspace_hits", "total_commands_processed"):
            assert isinstance(info[field], int), field
        assert info["maxmemory_policy"] == "noeviction" and info["blocked_clients"] == 0
        assert set(r.info("keyspace")) >= {"db0"}
    with connect(cluster, follower, protocol) as r:
        info = r.info("replication")
        assert info["role"] == "slave" and info["master_link_status"] == "up"
        assert info["master_port"] == cluster.nodes[leader].redis_port
        assert r.info("server")["tcp_port"] == cluster.nodes[follower].redis_port
        assert r.info("everything")["cluster_enabled"] == 1


def test_config_get_set(cluster: LocalCluster, leader: int, protocol: int) -> None:
    for i in (leader, follower_of(cluster, leader)):
        with connect(cluster, i, protocol) as r:
            assert r.config_get("maxmemory") == {"maxmemory": "0"}
            values = r.config_get("*")
            assert values["databases"] == "16" and values["appendonly"] == "no"
            assert values["port"] == str(cluster.nodes[i].redis_port)
            assert r.config_set("save", "900 1") is True
            assert r.config_get("save") == {"save": "900 1"}
            assert r.config_set("maxmemory-policy", "noeviction") is True  # the current value
            with pytest.raises(ResponseError, match="--max-memory"):
                r.config_set("maxmemory", "100mb")
            with pytest.raises(ResponseError, match="Unknown option"):
                r.config_set("no-such-thing", "1")
            r.config_set("save", "")


def test_client_commands(cluster: LocalCluster, leader: int, protocol: int) -> None:
    i = follower_of(cluster, leader)
    with connect(cluster, i, protocol) as r, connect(cluster, i, protocol) as other:
        assert r.client_setname("topology-test") is True
        assert r.client_getname() == "topology-test"
        me = r.client_id()
        other.ping()
        other_id = other.client_id()
        clients = {int(c["id"]): c for c in r.client_list()}
        assert clients[me]["name"] == "topology-test" and other_id in clients
        assert clients[me]["cmd"] == "client|list" and clients[me]["resp"] == str(protocol)
        assert int(r.client_info()["id"]) == me
        assert [c["id"] for c in r.client_list(client_id=[me])] == [str(me)]
        assert r.client_kill_filter(_id=other_id) == 1
        assert other_id not in {int(c["id"]) for c in r.client_list()}
        assert other.ping() is True  # redis-py reconnects
        assert other.client_id() != other_id
        with pytest.raises(ResponseError, match="unknown subcommand 'NOPE'"):
            r.execute_command("CLIENT", "NOPE")


def test_command_introspection(cluster: LocalCluster, leader: int, protocol: int) -> None:
    with connect(cluster, follower_of(cluster, leader), protocol) as r:
        commands = r.command()
        assert commands["get"]["arity"] == 2 and commands["get"]["first_key_pos"] == 1
        assert "readonly" in commands["get"]["flags"]
        for name in ("set", "hset", "zadd", "lpush", "sadd", "info", "cluster", "hello", "multi"):
            assert name in commands, name
        assert r.command_count() == len(commands)
        assert r.command_getkeys("MSET", "a", "1", "b", "2") == ["a", "b"]
        docs = r.execute_command("COMMAND DOCS", "get")
        assert "get" in docs or b"get" in docs
        assert r.execute_command("COMMAND INFO", "nosuchcommand") == [None]


# -- WAIT ----------------------------------------------------------------------------------------


def test_wait_counts_replicas_holding_the_write(cluster: LocalCluster, leader: int) -> None:
    with connect(cluster, leader) as r:
        r.set("wait:key", "v")
        assert r.wait(2, 5000) == 2
        assert r.wait(3, 200) == 2  # only two followers: times out with the count
    with connect(cluster, follower_of(cluster, leader)) as r:
        r.set("wait:key", "v2")  # forwarded; the follower vouches for a majority
        assert r.wait(1, 1000) == 1


# -- cluster and Sentinel clients ---------------------------------------------------------------


def test_cluster_client_from_any_node(cluster: LocalCluster, leader: int, protocol: int) -> None:
    for i in range(len(cluster.nodes)):
        rc = RedisCluster(
            host="127.0.0.1",
            port=cluster.nodes[i].redis_port,
            protocol=protocol,
            decode_responses=True,
            socket_timeout=15,
        )
        try:
            primaries = rc.get_primaries()
            assert [n.port for n in primaries] == [cluster.nodes[leader].redis_port]
            assert len(rc.get_replicas()) == 2
            key = f"cluster:{i}:{protocol}"
            assert rc.set(key, "v") is True and rc.get(key) == "v"
            assert rc.mset_nonatomic({f"{{t}}{key}a": "1", f"{{t}}{key}b": "2"}) == [True]
            assert rc.mget([f"{{t}}{key}a", f"{{t}}{key}b"]) == ["1", "2"]
            assert rc.keyslot(key) == rc.cluster_keyslot(key)
        finally:
            rc.close()


def test_sentinel_discovers_the_leader(cluster: LocalCluster, leader: int, protocol: int) -> None:
    sentinels = [("127.0.0.1", n.redis_port) for n in cluster.nodes]
    sentinel = Sentinel(sentinels, socket_timeout=15, protocol=protocol)
    assert sentinel.discover_master("mymaster") == ("127.0.0.1", cluster.nodes[leader].redis_port)
    replicas = set(sentinel.discover_slaves("mymaster"))
    assert replicas == {
        ("127.0.0.1", n.redis_port) for i, n in enumerate(cluster.nodes) if i != leader
    }
    master = sentinel.master_for("mymaster", decode_responses=True, protocol=protocol)
    assert master.set("sentinel:key", "v") is True and master.get("sentinel:key") == "v"
    replica = sentinel.slave_for("mymaster", decode_responses=True, protocol=protocol)
    assert replica.get("sentinel:key") == "v"  # a follower reads through the leader


def _lookups(cluster: LocalCluster, i: int) -> tuple[int, int, int, int]:
    """Node i's INFO keyspace_hits and keyspace_misses (the RESP lookups clients asked it
    for), and its CacheHits and CacheMisses (the reads it served itself, every protocol)."""
    with connect(cluster, i) as client:
        info = client.info("stats")
    status = cluster.status(i, timeout=5)
    assert status is not None
    return info["keyspace_hits"], info["keyspace_misses"], status.hits, status.misses


def _more(before: tuple[int, ...], after: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(a - b for a, b in zip(after, before, strict=True))


def test_a_reader_endpoint_answers_clients_that_never_send_readonly(
    cluster: LocalCluster, leader: int
) -> None:
    """A follower started with --redis-replica-reads true (a reader endpoint): a plain
    redis-py client, which never sends READONLY, reads the follower's own state (the
    follower serves the hits); its writes are still forwarded; READWRITE makes the
    connection's reads linearizable (served by the leader, and still counted in the INFO
    of the follower the client asked) and RESET goes back to the node's default, READONLY.
    The node is restarted without the flag afterwards, so the module's cluster is as it
    was."""
    i = follower_of(cluster, leader)
    node = cluster.nodes[i]
    flag = ["--redis-replica-reads", "true"]
    clients: list[redis.Redis] = []
    try:
        node.extra_args += flag
        cluster.restart(i)
        cluster.wait_until_ready(timeout=60)
        assert cluster.wait_for_leader() == leader  # i is still a follower
        pooled = connect(cluster, i)
        direct = connect(cluster, i, single_connection_client=True)
        clients += [pooled, direct]
        assert direct.set("reader:k", "v1") is True  # a write: forwarded to the leader
        assert direct.client_info()["flags"] == "r"
        deadline = time.monotonic() + 10
        while direct.get("reader:k") != "v1":  # this replica applies the write soon after
            assert time.monotonic() < deadline, "the follower never showed its own write"
            time.sleep(0.05)
        follower, at_leader = _lookups(cluster, i), _lookups(cluster, leader)
        for _ in range(10):
            assert pooled.get("reader:k") == "v1"
            assert direct.get("reader:k") == "v1"
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            direct.hget("reader:k", "f")  # the key exists: a hit, as Redis counts it
        assert _more(follower, _lookups(cluster, i)) == (21, 0, 21, 0)
        assert _more(at_leader, _lookups(cluster, leader)) == (0, 0, 0, 0)
        assert direct.execute_command("READWRITE") in (True, "OK")
        assert direct.client_info()["flags"] == "N"
        follower, at_leader = _lookups(cluster, i), _lookups(cluster, leader)
        for _ in range(10):
            assert direct.get("reader:k") == "v1"
        assert direct.get("reader:missing") is None
        assert direct.hget("reader:missing", "f") is None
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            direct.hget("reader:k", "f")
        # linearizable again: served by the leader, not from this follower's state; INFO on
        # the follower still counts the lookups its client asked for
        assert _more(follower, _lookups(cluster, i)) == (11, 2, 0, 0)
        assert _more(at_leader, _lookups(cluster, leader)) == (0, 0, 11, 2)
        assert direct.execute_command("RESET") in ("RESET", b"RESET")
        assert direct.client_info()["flags"] == "r"
    finally:
        for client in clients:
            client.close()
        if node.extra_args[-len(flag) :] == flag:
            del node.extra_args[-len(flag) :]
        cluster.restart(i)
        cluster.wait_until_ready(timeout=60)


def test_clients_follow_a_failover(fresh_cluster: LocalCluster) -> None:
    cluster = fresh_cluster
    old = cluster.wait_for_leader()
    ports = [n.redis_port for n in cluster.nodes]
    rc = RedisCluster(
        startup_nodes=[ClusterNode("127.0.0.1", p) for p in ports],
        decode_responses=True,
        socket_timeout=2,
        socket_connect_timeout=2,
    )
    sentinel = Sentinel([("127.0.0.1", p) for p in ports], socket_timeout=2)
    master = sentinel.master_for("mymaster", decode_responses=True, socket_timeout=2)
    written: dict[str, str] = {}
    try:
        for n in range(20):
            assert rc.set(f"rc:{n}", str(n)) and master.set(f"s:{n}", str(n))
            written |= {f"rc:{n}": str(n), f"s:{n}": str(n)}

        cluster.kill(old)
        new = cluster.wait_for_leader(exclude=old)
        new_port = ports[new]
        for n in range(20, 40):
            assert eventually(lambda n=n: rc.set(f"rc:{n}", str(n)))  # type: ignore[misc]
            assert eventually(lambda n=n: master.set(f"s:{n}", str(n)))  # type: ignore[misc]
            written |= {f"rc:{n}": str(n), f"s:{n}": str(n)}
        assert [node.port for node in rc.get_primaries()] == [new_port]
        assert master.connection_pool.get_master_address() == ("127.0.0.1", new_port)
        assert sentinel.discover_master("mymaster") == ("127.0.0.1", new_port)
        with connect(cluster, new) as r:
            assert r.info("replication")["role"] == "master"
            assert r.wait(1, 5000) >= 1  # the surviving follower holds everything
            values = r.mget(list(written))
        assert dict(zip(written, values, strict=True)) == written
    except ConnectionError as exc:  # pragma: no cover - show where the logs are
        raise AssertionError(f"{exc}; node logs in {cluster.base_dir}") from exc
    finally:
        rc.close()
