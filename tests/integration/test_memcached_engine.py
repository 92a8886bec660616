"""The memcached front-end on a real 3-node cluster, with the clients users run: pymemcache
(text; raw sockets for the meta commands it lacks), pylibmc (text) and Django's
PyMemcacheCache; every command through the leader and a follower, CAS conflicts, flags with
pymemcache's serde, expiry rules, Redis interop, stale reads on a follower, auto discovery
across a leader change, a leader SIGKILL under acknowledged sets, and every bad-input path.
Exact reply bytes are checked against real memcached in test_memcached_differential.py.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator

import pylibmc
import pytest
import redis
from pymemcache.client.base import Client
from pymemcache.exceptions import (
    MemcacheClientError,
    MemcacheError,
    MemcacheServerError,
    MemcacheUnknownCommandError,
)
from pymemcache.serde import pickle_serde
from raftcache.chaos.local_cluster import LocalCluster

from tests.integration.conftest import running_cluster

pytestmark = pytest.mark.integration

ROLES = ["leader", "follower"]
STALE_NODE = 2
"""This node serves gets locally (--memcached-stale-reads 10000)."""
ITEM_LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    def stale_reads(c: LocalCluster) -> None:
        c.nodes[STALE_NODE].extra_args = ["--memcached-stale-reads", "10000"]

    with running_cluster(
        tmp_path_factory.mktemp("memcached"),
        configure=stale_reads,
        extra_args=["--memcached-max-item-bytes", str(ITEM_LIMIT)],
    ) as c:
        yield c


def node_index(cluster: LocalCluster, role: str) -> int:
    leader = cluster.wait_for_leader()
    if role == "leader":
        return leader
    return next(i for i in range(len(cluster.nodes)) if i not in (leader, STALE_NODE))


def client(cluster: LocalCluster, i: int, **kwargs: object) -> Client:
    kwargs.setdefault("default_noreply", False)
    return Client(("127.0.0.1", cluster.nodes[i].memcached_port), timeout=15, **kwargs)  # type: ignore[arg-type]


def raw(cluster: LocalCluster, i: int, data: bytes, until: bytes = b"MN\r\n") -> bytes:
    """Send raw protocol bytes followed by `mn`; return every reply up to its MN."""
    with socket.create_connection(("127.0.0.1", cluster.nodes[i].memcached_port), 15) as s:
        s.sendall(data + b"mn\r\n")
        out = b""
        while not out.endswith(until):
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            out += chunk
    assert out.endswith(b"MN\r\n"), out
    return out[: -len(b"MN\r\n")]


# -- text commands through pymemcache ----------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_text_commands_with_pymemcache(cluster: LocalCluster, role: str) -> None:
    i = node_index(cluster, role)
    mc = client(cluster, i)
    p = f"t{role}:"
    assert mc.set(p + "a", b"1", expire=0, flags=7) is True
    assert mc.get(p + "a") == b"1"
    assert mc.get_many([p + "a", p + "missing"]) == {p + "a": b"1"}
    value, cas = mc.gets(p + "a")
    assert value == b"1" and int(cas) > 0
    many = mc.gets_many([p + "a", p + "missing"])
    assert list(many) == [p + "a"]
    assert mc.add(p + "a", b"x") is False and mc.add(p + "b", b"x") is True
    assert mc.replace(p + "c", b"x") is False and mc.replace(p + "b", b"y") is True
    assert mc.append(p + "b", b"z") is True and mc.prepend(p + "b", b"w") is True
    assert mc.get(p + "b") == b"wyz"
    assert mc.append(p + "none", b"z") is False
    assert mc.cas(p + "a", b"2", cas) is True
    assert mc.cas(p + "a", b"3", cas) is False  # the token changed
    assert mc.cas(p + "gone", b"3", cas) is None
    assert mc.incr(p + "a", 5) == 7 and mc.decr(p + "a", 10) == 0
    mc.set(p + "n", b"18446744073709551615")
    assert mc.incr(p + "n", 2) == 1  # 64-bit wrap
    assert mc.incr(p + "nothing", 1) is None
    assert mc.touch(p + "a", 100) is True and mc.touch(p + "nothing", 1) is False
    assert mc.delete(p + "a") is True and mc.delete(p + "a") is False
    assert mc.delete_many([p + "b", p + "n"]) is True
    assert mc.get_many([p + "b", p + "n"]) == {}
    assert mc.version().startswith(b"1.6")
    stats = mc.stats()
    assert stats[b"cmd_get"] > 0 and b"curr_items" in stats and b"limit_maxbytes" in stats
    assert int(mc.stats("settings")[b"item_size_max"]) == ITEM_LIMIT
    assert mc.stats("items") is not None and b"active_slabs" in mc.stats("slabs")
    assert mc.raw_command(b"verbosity 1") == b"OK"
    # noreply on every write: nothing comes back, and each write happened
    quiet = client(cluster, i, default_noreply=True)
    quiet.set(p + "q", b"1")
    quiet.add(p + "q2", b"1")
    quiet.replace(p + "q2", b"2")
    quiet.append(p + "q2", b"3")
    quiet.prepend(p + "q2", b"4")
    quiet.incr(p + "q", 4)
    quiet.decr(p + "q", 1)
    quiet.touch(p + "q", 100)
    quiet.delete(p + "q3")
    quiet.cas(p + "q3", b"x", b"1")
    assert raw(cluster, i, b"verbosity 0 noreply\r\nflush_all 0 noreply\r\n"[:21]) == b""
    assert mc.get_many([p + "q", p + "q2"]) == {p + "q": b"4", p + "q2": b"423"}
    assert raw(cluster, i, f"delete {p}q noreply\r\nget {p}q\r\n".encode()) == b"END\r\n"
    # gat / gats (pymemcache lacks them)
    mc.set(p + "g", b"v", flags=3)
    got = raw(cluster, i, f"gat 100 {p}g {p}nope\r\ngats 0 {p}g\r\n".encode())
    assert got.startswith(f"VALUE {p}g 3 1\r\nv\r\nEND\r\nVALUE {p}g 3 1 ".encode())
    quiet.close()
    mc.quit()


def test_flush_all_now_and_with_delay(cluster: LocalCluster) -> None:
    mc = client(cluster, node_index(cluster, "follower"))
    mc.set("fl:a", b"1")
    assert mc.flush_all(delay=2) is True
    mc.set("fl:later", b"1")  # flush_all N expires what exists now, not what comes later
    assert mc.get("fl:a") == b"1"
    time.sleep(2.5)
    assert mc.get("fl:a") is None and mc.get("fl:later") == b"1"
    assert mc.flush_all() is True
    assert mc.get("fl:later") is None
    client(cluster, 0, default_noreply=True).flush_all(noreply=True)


def test_quit_closes_the_connection(cluster: LocalCluster) -> None:
    with socket.create_connection(("127.0.0.1", cluster.nodes[0].memcached_port), 5) as s:
        s.sendall(b"quit\r\n")
        assert s.recv(100) == b""


def test_cas_conflict_between_two_clients(cluster: LocalCluster) -> None:
    leader = client(cluster, node_index(cluster, "leader"))
    follower = client(cluster, node_index(cluster, "follower"))
    leader.set("cas:k", b"0")
    _, token_a = leader.gets("cas:k")
    _, token_b = follower.gets("cas:k")
    assert token_a == token_b
    assert follower.cas("cas:k", b"b", token_b) is True
    assert leader.cas("cas:k", b"a", token_a) is False  # lost the race
    assert leader.get("cas:k") == b"b"


def test_flags_round_trip_with_pymemcache_serde(cluster: LocalCluster) -> None:
    for role in ROLES:
        mc = client(cluster, node_index(cluster, role), serde=pickle_serde)
        values = {"int": 42, "str": "héllo", "bytes": b"\x00\xff", "obj": {"a": [1, 2.5]}}
        for name, value in values.items():
            mc.set(f"serde:{name}", value)
        for name, value in values.items():
            assert mc.get(f"serde:{name}") == value
        flags = raw(cluster, 0, b"mg serde:obj f\r\n")
        assert flags == b"HD f1\r\n"  # pymemcache's FLAG_PICKLE


def test_expiry_rules(cluster: LocalCluster) -> None:
    mc = client(cluster, node_index(cluster, "follower"))
    now = int(time.time())
    mc.set("exp:rel", b"1", expire=1)
    mc.set("exp:abs", b"1", expire=now + 2)  # > 30 days: an absolute Unix time
    mc.set("exp:past", b"1", expire=now - 10)  # absolute, in the past: expired
    mc.set("exp:neg", b"1", expire=-1)  # negative: already expired
    mc.set("exp:long", b"1", expire=60 * 60 * 24 * 30)  # exactly 30 days: relative
    assert mc.get("exp:rel") == b"1" and mc.get("exp:abs") == b"1"
    assert mc.get("exp:past") is None and mc.get("exp:neg") is None
    ttl = raw(cluster, 0, b"mg exp:long t\r\n")
    assert ttl.startswith(b"HD t") and 2591990 <= int(ttl[4:-2]) <= 2592000
    time.sleep(2.6)
    assert mc.get("exp:rel") is None and mc.get("exp:abs") is None
    mc.set("exp:t", b"1")
    assert mc.touch("exp:t", -1) is True and mc.get("exp:t") is None


@pytest.mark.parametrize("role", ROLES)
def test_pylibmc_text(cluster: LocalCluster, role: str) -> None:
    i = node_index(cluster, role)
    mc = pylibmc.Client([cluster.nodes[i].memcached_addr], binary=False, behaviors={"cas": True})
    p = f"lib{role}:"
    assert mc.set(p + "a", "text") and mc.get(p + "a") == "text"
    assert mc.set(p + "n", 5) and mc.incr(p + "n", 3) == 8 and mc.decr(p + "n", 10) == 0
    assert mc.get(p + "n") == 0
    assert mc.set_multi({p + "x": b"1", p + "y": b"2"}) == []
    assert mc.get_multi([p + "x", p + "y", p + "z"]) == {p + "x": b"1", p + "y": b"2"}
    assert mc.add(p + "x", b"3") is False and mc.replace(p + "x", b"3") is True
    assert mc.append(p + "x", b"4") and mc.prepend(p + "x", b"2")
    assert mc.get(p + "x") == b"234"
    _, cas = mc.gets(p + "x")
    assert mc.cas(p + "x", b"9", cas) is True and mc.cas(p + "x", b"8", cas) is False
    assert mc.touch(p + "x", 100) is True
    assert mc.delete(p + "x") is True and mc.get(p + "x") is None
    assert mc.delete_multi([p + "y", p + "a"]) is True
    assert mc.get_stats()[0][1]["curr_connections"]
    mc.disconnect_all()


@pytest.mark.parametrize("role", ROLES)
def test_meta_commands(cluster: LocalCluster, role: str) -> None:
    i = node_index(cluster, role)
    p = f"meta{role}"
    got = raw(cluster, i, f"ms {p} 2 F9 T100 c k O1\r\nhi\r\nmg {p} v f t s k O2 c q\r\n".encode())
    lines = got.split(b"\r\n")
    assert lines[0].startswith(b"HD c") and lines[0].endswith(f" k{p} O1".encode())
    cas = lines[0].split()[1][1:]
    assert lines[1] == b"VA 2 f9 t100 s2 k%b O2 c%b" % (p.encode(), cas) and lines[2] == b"hi"
    assert raw(cluster, i, f"mg {p}nope v q\r\nmg {p}nope v\r\n".encode()) == b"EN\r\n"
    modes = f"ms {p} 1 MA\r\nA\r\nms {p} 1 MP\r\nP\r\nms {p} 1 ME\r\nE\r\nms {p}r 1 MR\r\nR\r\n"
    assert raw(cluster, i, modes.encode()) == b"HD\r\nHD\r\nNS\r\nNS\r\n"
    assert raw(cluster, i, f"ms {p} 1 MS C{cas.decode()}\r\nS\r\n".encode()) == b"EX\r\n"
    assert raw(cluster, i, f"mg {p} v\r\n".encode()) == b"VA 4\r\nPhiA\r\n"
    arith = f"ma {p}n N0 J10 v\r\nma {p}n MD D3 v\r\nma {p}n q\r\nma {p}n v\r\n"
    assert raw(cluster, i, arith.encode()) == b"VA 2\r\n10\r\nVA 1\r\n7\r\nVA 1\r\n9\r\n"
    assert raw(cluster, i, f"md {p} q\r\nmd {p}\r\nmg {p} v\r\nmn\r\n".encode()) == (
        b"NF\r\nEN\r\nMN\r\n"
    )
    b64 = "cmFmdGPDqQ=="  # "raftcé" in UTF-8
    got = raw(cluster, i, f"ms {b64} 1 b k\r\nx\r\nmg {b64} b k v\r\n".encode())
    assert got == f"HD k{b64} b\r\nVA 1 k{b64} b\r\nx\r\n".encode()
    assert client(cluster, i).get("raftc\u00e9".encode()) == b"x"


def test_memcached_and_redis_share_keys(cluster: LocalCluster) -> None:
    for role in ROLES:
        i = node_index(cluster, role)
        mc = client(cluster, i)
        r = redis.Redis(port=cluster.nodes[i].redis_port, socket_timeout=15)
        mc.set(f"both:{role}", b"from-mc", flags=5)
        assert r.get(f"both:{role}") == b"from-mc"
        r.set(f"both:{role}:r", "from-redis")
        assert mc.get(f"both:{role}:r") == b"from-redis"
        r.close()


def test_a_plain_set_replaces_any_type_and_the_flags(cluster: LocalCluster) -> None:
    """`set K 0 0 N` is proposed as a plain SET: it must store what memcached's set does,
    whatever the key held (a Redis hash, an item with flags and an expiry)."""
    for role in ROLES:
        i = node_index(cluster, role)
        mc = client(cluster, i)
        r = redis.Redis(port=cluster.nodes[i].redis_port, socket_timeout=15)
        key = f"plain:{role}"
        r.hset(key, "f", "v")
        assert mc.set(key, b"x") is True
        assert r.type(key) == b"string" and r.get(key) == b"x"
        assert raw(cluster, i, f"set {key} 7 100 1\r\ny\r\nset {key} 0 0 1\r\nz\r\n".encode()) == (
            b"STORED\r\nSTORED\r\n"
        )
        assert (
            raw(cluster, i, f"get {key}\r\n".encode())
            == f"VALUE {key} 0 1\r\nz\r\nEND\r\n".encode()
        )
        assert r.ttl(key) == -1  # the plain set dropped the expiry
        r.close()


def test_stale_reads_are_served_by_the_follower_alone(cluster: LocalCluster) -> None:
    """With --memcached-stale-reads a follower answers gets from its own state: it still does
    while the leader is frozen (a linearizable get could not)."""
    leader = cluster.wait_for_leader()
    if leader == STALE_NODE:  # make another node lead
        cluster.stop(leader)
        cluster.wait_for_leader(exclude=leader)
        cluster.start_node(leader)
        cluster.wait_until_ready(timeout=60)
        leader = cluster.wait_for_leader()
    assert leader != STALE_NODE
    client(cluster, leader).set("stale:k", b"v")
    stale = client(cluster, STALE_NODE)
    deadline = time.monotonic() + 10
    while stale.get("stale:k") != b"v":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cluster.pause(leader)
    try:
        started = time.monotonic()
        assert stale.get("stale:k") == b"v"
        assert time.monotonic() - started < 1.0
    finally:
        cluster.resume(leader)


def test_bad_input(cluster: LocalCluster) -> None:
    i = node_index(cluster, "follower")
    mc = client(cluster, i)
    mc.set("bad:k", b"keep")
    before = mc.gets("bad:k")
    with pytest.raises(MemcacheUnknownCommandError):
        mc.raw_command(b"bogus")
    cases = {
        b"set bad:k 0 0 x\r\n": b"CLIENT_ERROR bad command line format\r\n",
        b"set bad:k 0\r\n": b"ERROR\r\n",
        b"incr bad:k 1\r\n": b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        b"incr bad:k -1\r\n": b"CLIENT_ERROR invalid numeric delta argument\r\n",
        b"touch bad:k x\r\n": b"CLIENT_ERROR invalid exptime argument\r\n",
        b"delete bad:k x\r\n": b"CLIENT_ERROR bad command line format.  "
        b"Usage: delete <key> [noreply]\r\n",
        b"get " + b"k" * 251 + b"\r\n": b"CLIENT_ERROR bad command line format\r\n",
        b"set " + b"k" * 251 + b" 0 0 1\r\nx\r\n": b"CLIENT_ERROR bad command line format\r\n"
        b"ERROR\r\n",
        b"set bad:\x01k 0 0 1\r\nx\r\n": b"CLIENT_ERROR bad command line format\r\nERROR\r\n",
        b"get bad:\x7fk\r\n": b"CLIENT_ERROR bad command line format\r\n",
        b"set bad:k 0 0 1\r\nxyz\r\n": b"CLIENT_ERROR bad data chunk\r\nERROR\r\n",
        b"ms bad:k 1 Tx\r\nx\r\n": b"CLIENT_ERROR bad token in command line format\r\n",
        b"ma bad:k Dx\r\n": b"CLIENT_ERROR invalid or duplicate flag\r\n",
        b"mg bad:k N30 v\r\n": b"CLIENT_ERROR mg's N (vivify on miss) flag is not supported "
        b"by raftcache: use ms with ME (add) to claim a missing key\r\n",
        b"ms bad:k 2 MX\r\nzz\r\n": b"CLIENT_ERROR invalid mode for ms M token\r\n",
        b"set bad:k 0 0 %d\r\n%b\r\nget bad:k\r\n"
        % (ITEM_LIMIT + 1, b"v" * (ITEM_LIMIT + 1)): b"SERVER_ERROR object too large for cache"
        b"\r\nVALUE bad:k 0 4\r\nkeep\r\nEND\r\n",
        b"set bad:k 0 0 %d noreply\r\n%b\r\nget bad:k\r\n"
        % (ITEM_LIMIT + 1, b"v" * (ITEM_LIMIT + 1)): b"VALUE bad:k 0 4\r\nkeep\r\nEND\r\n",
        b"incr bad:k x noreply\r\n": b"",  # noreply silences errors too
    }
    for data, reply in cases.items():
        assert raw(cluster, i, data) == reply, data[:80]
    assert mc.gets("bad:k") == before  # nothing refused changed anything
    with pytest.raises(MemcacheClientError):
        mc.incr("bad:k", 1)
    with pytest.raises(MemcacheServerError):
        mc.set("bad:big", b"v" * (ITEM_LIMIT + 1))
    assert mc.get("bad:k") == b"keep"  # the connection is still in step


def test_django_pymemcache_cache(cluster: LocalCluster) -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure()
    from django.core.cache.backends.memcached import PyMemcacheCache

    i = node_index(cluster, "follower")
    cache = PyMemcacheCache(cluster.nodes[i].memcached_addr, {"KEY_PREFIX": "dj"})
    cache.set("a", {"x": 1}, timeout=60)
    assert cache.get("a") == {"x": 1}
    cache.set("n", 1)
    assert cache.incr("n", 4) == 5
    assert cache.touch("a", 30) is True and cache.touch("missing", 30) is False
    cache.set("b", "2")
    assert cache.delete_many(["a", "b"]) is None
    assert cache.get_many(["a", "b"]) == {}
    cache.set("gone", 1, timeout=-1)  # Django sends a negative expiry: already expired
    assert cache.get("gone") is None
    with pytest.raises(ValueError):
        cache.incr("missing")
    cache.close()


# -- failover (the cluster changes leader from here on) --------------------------------------


def config_cluster(cluster: LocalCluster, i: int) -> tuple[int, list[str]]:
    got = raw(cluster, i, b"config get cluster\r\n")
    head, body, end, _ = got.split(b"\r\n")
    assert head.startswith(b"CONFIG cluster 0 ") and end == b"END"
    version, members = body.decode().strip().split("\n")
    return int(version), members.split(" ")


class Writer(threading.Thread):
    """Sets fresh keys (noreply off); each set is retried on the next node until STORED."""

    def __init__(self, cluster: LocalCluster, index: int) -> None:
        super().__init__(daemon=True)
        self.index = index
        self.ports = [n.memcached_port for n in cluster.nodes]
        self.stop = threading.Event()
        self.acked: dict[str, tuple[bytes, float]] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        node, n = random.Random(self.index).randrange(3), 0
        clients = [Client(("127.0.0.1", p), timeout=5, default_noreply=False) for p in self.ports]
        try:
            while not self.stop.is_set():
                key, value = f"fo:{self.index}:{n}", f"v{n}".encode()
                while not self.stop.is_set():
                    try:
                        if clients[node].set(key, value):
                            self.acked[key] = (value, time.monotonic())
                            break
                    except (MemcacheError, OSError):
                        clients[node].close()
                    node = (node + 1) % len(clients)
                    time.sleep(0.02)
                n += 1
        except BaseException as exc:
            self.error = exc


def test_leader_sigkill_under_sets_loses_nothing_acknowledged(cluster: LocalCluster) -> None:
    old = cluster.wait_for_leader()
    version, members = config_cluster(cluster, old)
    assert len(members) == 3 and all(m.startswith("127.0.0.1|127.0.0.1|") for m in members)
    writers = [Writer(cluster, w) for w in range(4)]
    for w in writers:
        w.start()
    time.sleep(1.5)
    killed_at = time.monotonic()
    cluster.kill(old)
    new = cluster.wait_for_leader(exclude=old, timeout=30)
    time.sleep(1.5)
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(10)
        assert w.error is None, w.error
    acked = {k: v for w in writers for k, v in w.acked.items()}
    before = sum(1 for _, t in acked.values() if t < killed_at)
    assert before > 20 and len(acked) - before > 20, "writes on both sides of the kill"
    mc = client(cluster, new)
    keys = sorted(acked)
    got = {}
    for start in range(0, len(keys), 100):
        got.update(mc.get_many(keys[start : start + 100]))
    missing = [k for k in keys if got.get(k) != acked[k][0]]
    assert not missing, f"{len(missing)} acknowledged sets lost, e.g. {missing[:5]}"
    # auto discovery: all three members still listed, a newer version after the change
    new_version, members = config_cluster(cluster, new)
    assert new_version > version and len(members) == 3
    cluster.start_node(old)
    cluster.wait_until_ready(timeout=60)


def test_no_leader_answers_server_error(cluster: LocalCluster) -> None:
    survivor = cluster.wait_for_leader()
    for i in range(len(cluster.nodes)):
        if i != survivor:
            cluster.kill(i)
    got = raw(cluster, survivor, b"set nl:k 0 0 1\r\nx\r\nmg nl:k v\r\n")
    lines = got.split(b"\r\n")
    assert lines[0].startswith(b"SERVER_ERROR ") and lines[1].startswith(b"SERVER_ERROR ")
    assert raw(cluster, survivor, b"set nl:k 0 0 1 noreply\r\nx\r\n") == b""
