"""The Redis front-end on a real 3-node cluster, through redis-py in RESP2 and RESP3.

Every command family through the leader and through a follower; the same keys through the
SDK (database 0); SELECT isolation; MULTI/EXEC and WATCH; pub/sub across nodes; a 10,000
command pipeline; READONLY stale reads; protocol errors; Redis's exact error texts for bad
input; redis-cli and redis-benchmark. The expected replies and error texts were checked
against redis-server 7.0.15 (test_expectations_hold_on_real_redis runs the same checks
there when redis-server is installed). One cluster serves the module; its Raft links go
through proxies so that the READONLY test (last) can cut a follower off.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from raftcache.chaos.local_cluster import LocalCluster, free_port
from raftcache.client import Client
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import (
    ClusterDownError,
    ExecAbortError,
    ResponseError,
    TryAgainError,
    WatchError,
)
from redis.retry import Retry

from tests.integration.conftest import running_cluster

pytestmark = pytest.mark.integration

PROTOCOLS = [2, 3]
ROLES = ["leader", "follower"]


# -- cluster and clients ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("redis"), proxy=True) as c:
        yield c


def node_index(cluster: LocalCluster, role: str) -> int:
    leader = cluster.wait_for_leader()
    if role == "leader":
        return leader
    return next(i for i in range(len(cluster.nodes)) if i != leader)


# CLUSTERDOWN and TRYAGAIN promise that nothing was applied: a client may resend any command
# (an election on a loaded machine must not fail a test of something else).
UNAVAILABLE = (ClusterDownError, TryAgainError)


def connect(
    cluster: LocalCluster,
    i: int,
    protocol: int = 3,
    timeout: float = 15.0,
    retry_unavailable: bool = True,
    **kwargs: Any,
) -> redis.Redis:
    """redis-py on node i. It resends a command answered CLUSTERDOWN or TRYAGAIN for up to
    ~10 s, unless told not to or the connection carries state (SELECT, READONLY): redis-py
    reconnects before resending. Connection errors are never retried (they would hide bugs)."""
    stateful = bool(kwargs.get("single_connection_client"))
    retry = (
        Retry(ExponentialBackoff(cap=0.5, base=0.05), 25, supported_errors=UNAVAILABLE)
        if retry_unavailable and not stateful
        else Retry(NoBackoff(), 0)
    )
    kwargs.setdefault("decode_responses", True)
    return redis.Redis(
        host="127.0.0.1",
        port=cluster.nodes[i].redis_port,
        protocol=protocol,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=retry,
        **kwargs,
    )


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> str:
    """A key prefix of this test (and parameters), so tests never share keys."""
    name = re.sub(r"[^A-Za-z0-9]+", ":", request.node.name).strip(":")
    return f"t:{name}:"


def sdk(cluster: LocalCluster) -> Client:
    return Client([n.client_addr for n in cluster.nodes], timeout=15.0)


def wait_until(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


# -- a raw RESP connection: exact bytes, exact error texts --------------------------------------


def encode(*args: str | bytes | int) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


class Raw:
    """One socket; replies parsed just enough to compare them (errors stay as their line)."""

    def __init__(self, port: int, protocol: int = 2, timeout: float = 15.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        if protocol == 3:
            self.call("HELLO", "3")

    def close(self) -> None:
        self.sock.close()

    def _fill(self, need: Callable[[], bool]) -> None:
        while not need():
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by the server; unparsed {self.buf!r}")
            self.buf += chunk

    def line(self) -> bytes:
        self._fill(lambda: b"\r\n" in self.buf)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        self._fill(lambda: len(self.buf) >= n + 2)
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def reply(self) -> Any:
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind in b"+-:,#(":
            return line
        if kind in b"$=!":
            return None if int(rest) < 0 else self._exact(int(rest))
        if kind in b"*>~%|":
            n = int(rest)
            if n < 0:
                return None
            return [self.reply() for _ in range(n * 2 if kind in b"%|" else n)]
        if kind == b"_":
            return None
        raise ValueError(f"unexpected reply line {line!r}")

    def call(self, *args: str | bytes | int) -> Any:
        """One command and its reply; resent while it answers CLUSTERDOWN or TRYAGAIN (nothing
        was applied), for up to ~10 s."""
        for _ in range(50):
            self.sock.sendall(encode(*args))
            reply = self.reply()
            if not (isinstance(reply, bytes) and reply.startswith((b"-CLUSTERDOWN", b"-TRYAGAIN"))):
                break
            time.sleep(0.2)
        return reply

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_all(self, timeout: float = 10.0) -> bytes:
        """Everything until the server closes the connection (TimeoutError leaves what
        arrived in self.buf)."""
        self.sock.settimeout(timeout)
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                data, self.buf = self.buf, b""
                return data
            self.buf += chunk


def protocol_of(r: redis.Redis) -> int:
    return int(r.connection_pool.connection_kwargs.get("protocol") or 2)


# -- the command families (plain functions: they also run against a real Redis) -------------------


def near(value: float, target: float, slack: float) -> bool:
    return target - slack <= value <= target


def scored(reply: Any) -> list[tuple[str, float]]:
    """WITHSCORES replies as (member, score) whatever the protocol's shape."""
    return [(m, float(s)) for m, s in reply]


def check_strings(r: redis.Redis, k: str) -> None:
    a, b, c = k + "a", k + "b", k + "c"
    assert r.set(a, "1") is True
    assert r.get(a) == "1"
    assert r.set(a, "2", nx=True) is None
    assert r.set(a, "2", xx=True) is True
    assert r.set(k + "absent", "x", xx=True) is None
    assert r.exists(k + "absent") == 0
    assert r.set(a, "3", get=True) == "2"
    assert r.set(a, "4", ex=100) is True
    assert near(r.ttl(a), 100, 5)
    assert r.set(a, "5", keepttl=True) is True
    assert near(r.ttl(a), 100, 5)
    assert r.set(a, "6", px=100_000) is True
    assert near(r.pttl(a), 100_000, 5_000)
    assert r.set(a, "7", exat=int(time.time()) + 100) is True
    assert near(r.ttl(a), 100, 5)
    assert r.set(a, "8", pxat=int(time.time() * 1000) + 100_000) is True
    assert near(r.pttl(a), 100_000, 5_000)
    assert r.set(a, "9") is True
    assert r.ttl(a) == -1  # a plain SET drops the TTL
    assert r.setnx(a, "x") is False
    assert r.setnx(b, "x") is True
    assert r.setex(b, 100, "y") is True
    assert near(r.ttl(b), 100, 5)
    assert r.psetex(b, 100_000, "z") is True
    assert r.getset(b, "w") == "z"
    assert r.ttl(b) == -1
    assert r.getdel(b) == "w"
    assert r.get(b) is None
    assert r.getdel(b) is None
    r.set(b, "v")
    assert r.getex(b, ex=50) == "v"
    assert near(r.ttl(b), 50, 5)
    assert r.getex(b, persist=True) == "v"
    assert r.ttl(b) == -1
    assert r.getex(k + "absent") is None
    assert r.mset({k + "m1": "1", k + "m2": "2"}) is True
    assert r.mget([k + "m1", k + "m2", k + "absent"]) == ["1", "2", None]
    assert r.msetnx({k + "m1": "x", k + "m3": "3"}) is False
    assert r.get(k + "m3") is None and r.get(k + "m1") == "1"
    assert r.msetnx({k + "m3": "3", k + "m4": "4"}) is True
    assert r.mget(k + "m3", k + "m4") == ["3", "4"]
    s = k + "s"
    assert r.append(s, "Hello") == 5
    assert r.append(s, " World") == 11
    assert r.strlen(s) == 11
    assert r.strlen(k + "absent") == 0
    assert r.getrange(s, 0, 4) == "Hello"
    assert r.getrange(s, -5, -1) == "World"
    assert r.getrange(s, 20, 30) == ""
    assert r.setrange(s, 6, "Redis") == 11
    assert r.get(s) == "Hello Redis"
    assert r.setrange(k + "pad", 3, "x") == 4
    assert r.get(k + "pad") == "\x00\x00\x00x"
    assert r.incr(c) == 1
    assert r.incrby(c, 10) == 11
    assert r.decr(c) == 10
    assert r.decrby(c, 4) == 6
    assert r.incr(c, -7) == -1
    assert r.incrbyfloat(c, 1.5) == 0.5
    assert r.get(c) == "0.5"
    r.set(c, "10.50")
    assert r.incrbyfloat(c, 0.1) == pytest.approx(10.6)
    assert r.get(c) == "10.6"
    r.set(c, "5.0e3")
    assert r.incrbyfloat(c, 200) == 5200.0
    assert r.get(c) == "5200"


def check_keys(r: redis.Redis, k: str) -> None:
    a, b, c = k + "a", k + "b", k + "c"
    assert r.mset({a: "1", b: "2", c: "3"}) is True
    assert r.exists(a, b, k + "absent", a) == 3
    assert r.delete(a, k + "absent") == 1
    assert r.unlink(b) == 1
    assert r.exists(a, b) == 0
    r.rpush(k + "l", "x")
    r.hset(k + "h", "f", "v")
    r.sadd(k + "s", "m")
    r.zadd(k + "z", {"m": 1})
    types = {key: r.type(k + key) for key in ("c", "l", "h", "s", "z", "absent")}
    assert types == {
        "c": "string",
        "l": "list",
        "h": "hash",
        "s": "set",
        "z": "zset",
        "absent": "none",
    }
    assert r.ttl(c) == -1
    assert r.ttl(k + "absent") == -2
    assert r.pttl(k + "absent") == -2
    assert r.expire(c, 100) is True
    assert near(r.ttl(c), 100, 5)
    assert r.expire(c, 50, gt=True) is False
    assert r.expire(c, 200, gt=True) is True
    assert r.expire(c, 150, lt=True) is True
    assert r.expire(c, 300, nx=True) is False
    assert r.expire(c, 120, xx=True) is True
    assert near(r.ttl(c), 120, 5)
    assert r.expire(k + "absent", 10) is False
    assert r.pexpire(c, 100_000) is True
    assert near(r.pttl(c), 100_000, 5_000)
    at = int(time.time()) + 1000
    assert r.expireat(c, at) is True
    assert r.expiretime(c) == at
    assert r.pexpireat(c, at * 1000 + 500) is True
    assert r.pexpiretime(c) == at * 1000 + 500
    assert r.expiretime(k + "l") == -1
    assert r.expiretime(k + "absent") == -2
    assert r.persist(c) is True
    assert r.persist(c) is False
    assert r.ttl(c) == -1
    expected = {k + n for n in ("c", "l", "h", "s", "z")}
    assert set(r.keys(k + "*")) == expected
    assert set(r.scan_iter(match=k + "*", count=2)) == expected
    assert set(r.scan_iter(match=k + "*", _type="list")) == {k + "l"}
    assert r.rename(c, k + "c2") is True
    assert r.exists(c) == 0 and r.get(k + "c2") == "3"
    assert r.renamenx(k + "c2", k + "l") is False
    assert r.renamenx(k + "c2", k + "c3") is True
    assert r.copy(k + "c3", k + "c4") is True
    assert r.copy(k + "c3", k + "c4") is False
    r.set(k + "c3", "33")
    assert r.copy(k + "c3", k + "c4", replace=True) is True
    assert r.get(k + "c4") == "33"
    assert r.copy(k + "l", k + "l2") is True
    assert r.lrange(k + "l2", 0, -1) == ["x"]
    assert r.touch(k + "c3", k + "c4", k + "absent") == 2
    assert r.randomkey() is not None
    assert r.object("encoding", k + "c3") == "int"
    assert r.object("encoding", k + "absent") is None
    assert isinstance(r.object("idletime", k + "c3"), int)
    usage = r.memory_usage(k + "c3")
    assert isinstance(usage, int) and usage > 0
    assert r.memory_usage(k + "absent") is None
    assert r.set(k + "short", "v", px=300) is True
    deadline = time.monotonic() + 5
    while r.exists(k + "short") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert r.get(k + "short") is None and r.exists(k + "short") == 0


def check_hashes(r: redis.Redis, k: str) -> None:
    h = k + "h"
    assert r.hset(h, "f1", "v1") == 1
    assert r.hset(h, mapping={"f2": "v2", "f3": "v3"}) == 2
    assert r.hset(h, "f1", "v1b") == 0
    assert r.hsetnx(h, "f1", "x") == 0
    assert r.hsetnx(h, "f4", "v4") == 1
    assert r.execute_command("HMSET", h, "f5", "v5") in (True, "OK")
    assert r.hget(h, "f1") == "v1b"
    assert r.hget(h, "absent") is None
    assert r.hget(k + "absent", "f") is None
    assert r.hmget(h, ["f1", "absent", "f2"]) == ["v1b", None, "v2"]
    everything = {"f1": "v1b", "f2": "v2", "f3": "v3", "f4": "v4", "f5": "v5"}
    assert r.hgetall(h) == everything
    assert r.hgetall(k + "absent") == {}
    assert r.hdel(h, "f3", "f5", "absent") == 2
    assert r.hexists(h, "f1") is True
    assert r.hexists(h, "f3") is False
    assert r.hlen(h) == 3
    assert r.hlen(k + "absent") == 0
    assert r.hstrlen(h, "f1") == 3
    assert sorted(r.hkeys(h)) == ["f1", "f2", "f4"]
    assert sorted(r.hvals(h)) == ["v1b", "v2", "v4"]
    assert r.hincrby(h, "n", 5) == 5
    assert r.hincrby(h, "n", -7) == -2
    assert r.hincrbyfloat(h, "x", 1.5) == 1.5
    assert r.hincrbyfloat(h, "x", "0.25") == 1.75
    assert r.hget(h, "x") == "1.75"
    fields = {"f1", "f2", "f4", "n", "x"}
    assert r.hrandfield(h) in fields
    two = r.hrandfield(h, 2)
    assert len(two) == 2 and set(two) <= fields
    assert len(r.hrandfield(h, -7)) == 7
    pairs = r.hrandfield(h, 2, withvalues=True)
    if protocol_of(r) == 3:  # [[field, value], ...] in RESP3, flat in RESP2
        pairs = [x for pair in pairs for x in pair]
    assert len(pairs) == 4 and set(pairs[::2]) <= fields
    assert r.hget(h, pairs[0]) == pairs[1]
    seen: dict[str, str] = {}
    cursor = 0
    while True:
        cursor, chunk = r.hscan(h, cursor, match="f*", count=2)
        seen.update(chunk)
        if cursor == 0:
            break
    assert seen == {"f1": "v1b", "f2": "v2", "f4": "v4"}


def check_lists(r: redis.Redis, k: str) -> None:
    lst = k + "l"
    assert r.rpush(lst, "a", "b", "c") == 3
    assert r.lpush(lst, "y", "z") == 5  # z y a b c
    assert r.lpushx(k + "absent", "x") == 0
    assert r.rpushx(k + "absent", "x") == 0
    assert r.exists(k + "absent") == 0
    assert r.rpushx(lst, "d") == 6
    assert r.lpushx(lst, "0") == 7
    assert r.lrange(lst, 0, -1) == ["0", "z", "y", "a", "b", "c", "d"]
    assert r.lrange(lst, -2, 100) == ["c", "d"]
    assert r.lrange(lst, 5, 2) == []
    assert r.llen(lst) == 7
    assert r.llen(k + "absent") == 0
    assert r.lindex(lst, 0) == "0"
    assert r.lindex(lst, -1) == "d"
    assert r.lindex(lst, 99) is None
    assert r.lset(lst, 1, "Z") is True
    assert r.linsert(lst, "BEFORE", "b", "B") == 8
    assert r.linsert(lst, "AFTER", "b", "bb") == 9
    assert r.linsert(lst, "AFTER", "nope", "x") == -1
    assert r.linsert(k + "absent", "AFTER", "b", "x") == 0
    assert r.lrange(lst, 0, -1) == ["0", "Z", "y", "a", "B", "b", "bb", "c", "d"]
    assert r.rpush(lst, "b", "b") == 11
    assert r.lpos(lst, "b") == 5
    assert r.lpos(lst, "b", rank=2) == 9
    assert r.lpos(lst, "b", rank=-1) == 10
    assert r.lpos(lst, "b", count=0) == [5, 9, 10]
    assert r.lpos(lst, "nope") is None
    assert r.lrem(lst, -1, "b") == 1
    assert r.lrem(lst, 0, "b") == 2
    assert r.lrem(lst, 0, "nope") == 0
    assert r.ltrim(lst, 1, -2) is True
    assert r.lrange(lst, 0, -1) == ["Z", "y", "a", "B", "bb", "c"]
    assert r.lpop(lst) == "Z"
    assert r.rpop(lst) == "c"
    assert r.lpop(lst, 2) == ["y", "a"]
    assert r.rpop(lst, 5) == ["bb", "B"]
    assert r.exists(lst) == 0
    assert r.lpop(lst) is None
    assert r.lpop(lst, 2) is None
    src, dst = k + "src", k + "dst"
    r.rpush(src, "1", "2", "3")
    assert r.lmove(src, dst, "LEFT", "RIGHT") == "1"
    assert r.lmove(src, dst, "RIGHT", "LEFT") == "3"
    assert r.rpoplpush(src, dst) == "2"
    assert r.exists(src) == 0
    assert r.lrange(dst, 0, -1) == ["2", "3", "1"]
    assert r.rpoplpush(src, dst) is None
    assert r.lmove(dst, dst, "LEFT", "RIGHT") == "2"  # rotate in place
    assert r.lrange(dst, 0, -1) == ["3", "1", "2"]


def check_sets(r: redis.Redis, k: str) -> None:
    s1, s2, dst = k + "s1", k + "s2", k + "dst"
    assert r.sadd(s1, "a", "b", "c") == 3
    assert r.sadd(s1, "a") == 0
    assert r.srem(s1, "c", "nope") == 1
    assert r.smembers(s1) == {"a", "b"}
    assert r.smembers(k + "absent") == set()
    assert bool(r.sismember(s1, "a")) is True
    assert bool(r.sismember(s1, "z")) is False
    assert [bool(x) for x in r.smismember(s1, ["a", "z", "b"])] == [True, False, True]
    assert r.scard(s1) == 2
    assert r.scard(k + "absent") == 0
    assert r.sadd(s2, "b", "c", "d") == 3
    assert r.sinter(s1, s2) == {"b"}
    assert r.sunion(s1, s2) == {"a", "b", "c", "d"}
    assert r.sdiff(s1, s2) == {"a"}
    assert r.sdiff(s2, s1, k + "absent") == {"c", "d"}
    assert r.sinter(s1, k + "absent") == set()
    assert r.sinterstore(dst, [s1, s2]) == 1
    assert r.smembers(dst) == {"b"}
    assert r.sunionstore(dst, [s1, s2]) == 4
    assert r.smembers(dst) == {"a", "b", "c", "d"}
    assert r.sdiffstore(dst, [s2, s1]) == 2
    assert r.smembers(dst) == {"c", "d"}
    assert r.sinterstore(dst, [s1, k + "absent"]) == 0
    assert r.exists(dst) == 0
    assert r.sintercard(2, [s1, s2]) == 1
    assert r.sintercard(2, [s2, s2], limit=2) == 2
    assert r.smove(s1, s2, "a") is True
    assert r.smove(s1, s2, "nope") is False
    assert r.smembers(s1) == {"b"}
    assert r.smembers(s2) == {"a", "b", "c", "d"}
    assert r.srandmember(s2) in {"a", "b", "c", "d"}
    assert set(r.srandmember(s2, 3)) <= {"a", "b", "c", "d"}
    assert len(r.srandmember(s2, 3)) == 3
    assert len(r.srandmember(s2, -6)) == 6
    popped = r.spop(s2)
    assert popped in {"a", "b", "c", "d"}
    more = r.spop(s2, 2)
    assert len(more) == 2 and popped not in more
    assert r.scard(s2) == 1
    assert r.spop(k + "absent") is None
    r.sadd(k + "big", *[f"m{i}" for i in range(20)])
    seen: set[str] = set()
    cursor = 0
    while True:
        cursor, chunk = r.sscan(k + "big", cursor, match="m1*", count=5)
        seen.update(chunk)
        if cursor == 0:
            break
    assert seen == {"m1", *[f"m1{i}" for i in range(10)]}


def check_zsets(r: redis.Redis, k: str) -> None:
    z = k + "z"
    assert r.zadd(z, {"a": 1, "b": 2, "c": 3}) == 3
    assert r.zadd(z, {"a": 5}, nx=True) == 0
    assert r.zscore(z, "a") == 1.0
    assert r.zadd(z, {"a": 5, "d": 4}, xx=True) == 0
    assert r.zscore(z, "a") == 5.0 and r.zscore(z, "d") is None
    assert r.zadd(z, {"a": 4}, gt=True, ch=True) == 0
    assert r.zadd(z, {"a": 6}, gt=True, ch=True) == 1
    assert r.zadd(z, {"a": 1}, lt=True, ch=True) == 1
    assert r.zadd(z, {"a": 2}, incr=True) == 3.0
    assert r.zadd(z, {"a": 1}, nx=True, incr=True) is None
    assert r.zincrby(z, 2, "b") == 4.0
    assert r.zmscore(z, ["a", "nope", "c"]) == [3.0, None, 3.0]
    # a=3 c=3 b=4: equal scores order by member
    assert r.zrange(z, 0, -1) == ["a", "c", "b"]
    assert scored(r.zrange(z, 0, -1, withscores=True)) == [("a", 3.0), ("c", 3.0), ("b", 4.0)]
    assert r.zrank(z, "c") == 1
    assert r.zrevrank(z, "b") == 0
    assert r.zrank(z, "nope") is None
    assert r.zcard(z) == 3
    assert r.zcount(z, 3, 3) == 2
    assert r.zcount(z, "(3", "+inf") == 1
    assert r.zrange(z, 0, -1, desc=True) == ["b", "c", "a"]
    assert r.zrange(z, 3, 4, byscore=True, offset=1, num=1) == ["c"]
    assert r.zrange(z, "+inf", "(3", byscore=True, desc=True) == ["b"]
    assert r.zrevrange(z, 0, 1) == ["b", "c"]
    assert scored(r.zrangebyscore(z, 3, 4, withscores=True)) == [
        ("a", 3.0),
        ("c", 3.0),
        ("b", 4.0),
    ]
    assert r.zrangebyscore(z, "-inf", "+inf", start=1, num=5) == ["c", "b"]
    assert r.zrevrangebyscore(z, 4, "(3") == ["b"]
    lex = k + "lex"
    assert r.zadd(lex, {m: 0 for m in "abcde"}) == 5
    assert r.zlexcount(lex, "[b", "(d") == 2
    assert r.zlexcount(lex, "-", "+") == 5
    assert r.zrange(lex, "[b", "[d", bylex=True) == ["b", "c", "d"]
    assert r.zrangebylex(lex, "(a", "+", start=0, num=2) == ["b", "c"]
    assert r.zrevrangebylex(lex, "[c", "-") == ["c", "b", "a"]
    assert r.zrangestore(k + "dst", z, 0, 1) == 2
    assert r.zrange(k + "dst", 0, -1) == ["a", "c"]
    assert r.zrem(z, "a", "nope") == 1
    assert r.zremrangebylex(lex, "[a", "[b") == 2
    assert r.zremrangebyrank(lex, 0, 0) == 1
    assert r.zrange(lex, 0, -1) == ["d", "e"]
    r.zadd(z, {"e": 10, "f": 20})
    assert r.zremrangebyscore(z, "(10", 20) == 1
    # without a count, RESP3 answers one flat [member, score] (Redis 7.0)
    flat = protocol_of(r) == 3
    assert r.zpopmin(z) == (["c", 3.0] if flat else [("c", 3.0)])
    assert r.zpopmax(z) == (["e", 10.0] if flat else [("e", 10.0)])
    assert scored(r.zpopmin(z, 5)) == [("b", 4.0)]
    assert r.exists(z) == 0
    assert r.zpopmin(z) == []
    r.zadd(z, {"x": 1, "y": 2})
    assert r.zrandmember(z) in {"x", "y"}
    assert len(r.zrandmember(z, -4)) == 4
    z1, z2 = k + "z1", k + "z2"
    r.zadd(z1, {"a": 1, "b": 2})
    r.zadd(z2, {"b": 10, "c": 20})
    assert r.zunionstore(k + "u", [z1, z2]) == 3
    assert scored(r.zrange(k + "u", 0, -1, withscores=True)) == [
        ("a", 1.0),
        ("b", 12.0),
        ("c", 20.0),
    ]
    assert r.zunionstore(k + "u", {z1: 2, z2: 1}, aggregate="MAX") == 3
    assert r.zscore(k + "u", "b") == 10.0
    assert r.zinterstore(k + "i", [z1, z2], aggregate="MIN") == 1
    assert scored(r.zrange(k + "i", 0, -1, withscores=True)) == [("b", 2.0)]
    assert r.zdiffstore(k + "d", [z1, z2]) == 1
    assert r.zrange(k + "d", 0, -1) == ["a"]
    r.zadd(k + "big", {f"m{i}": i for i in range(20)})
    seen: dict[str, float] = {}
    cursor = 0
    while True:
        cursor, chunk = r.zscan(k + "big", cursor, match="m1*", count=5)
        seen.update(dict(scored(chunk)))
        if cursor == 0:
            break
    assert seen == {"m1": 1.0, **{f"m1{i}": 10.0 + i for i in range(10)}}


FAMILIES: dict[str, Callable[[redis.Redis, str], None]] = {
    "strings": check_strings,
    "keys": check_keys,
    "hashes": check_hashes,
    "lists": check_lists,
    "sets": check_sets,
    "zsets": check_zsets,
}


# -- bad input: Redis 7.0's exact error texts, and nothing changes ------------------------------

WRONGTYPE = "-WRONGTYPE Operation against a key holding the wrong kind of value"
NOT_INT = "-ERR value is not an integer or out of range"
NOT_FLOAT = "-ERR value is not a valid float"
# (command with {k} for the key prefix, the exact error line)
BAD_INPUT: list[tuple[list[str], str]] = [
    (["GET"], "-ERR wrong number of arguments for 'get' command"),
    (["SET", "{k}s"], "-ERR wrong number of arguments for 'set' command"),
    (["HSET", "{k}h", "f"], "-ERR wrong number of arguments for 'hset' command"),
    (["MSET", "{k}s", "1", "{k}t"], "-ERR wrong number of arguments for 'mset' command"),
    (["ZADD", "{k}z", "1"], "-ERR wrong number of arguments for 'zadd' command"),
    (["LPUSH", "{k}l"], "-ERR wrong number of arguments for 'lpush' command"),
    (["FOO", "a", "b"], "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' "),
    (["LPUSH", "{k}s", "x"], WRONGTYPE),
    (["HGET", "{k}s", "f"], WRONGTYPE),
    (["SADD", "{k}l", "x"], WRONGTYPE),
    (["ZADD", "{k}h", "1", "m"], WRONGTYPE),
    (["GET", "{k}l"], WRONGTYPE),
    (["INCR", "{k}z"], WRONGTYPE),
    (["INCR", "{k}s"], NOT_INT),
    (["INCRBY", "{k}n", "x"], NOT_INT),
    (["EXPIRE", "{k}n", "abc"], NOT_INT),
    (["LRANGE", "{k}l", "a", "b"], NOT_INT),
    (["HINCRBY", "{k}h", "f", "x"], NOT_INT),
    (["HINCRBY", "{k}h", "f", "1"], "-ERR hash value is not an integer"),
    (["SET", "{k}n", "1", "EX", "abc"], NOT_INT),
    (["SET", "{k}n", "1", "EX", "0"], "-ERR invalid expire time in 'set' command"),
    (["SETRANGE", "{k}s", "-1", "x"], "-ERR offset is out of range"),
    (["INCRBYFLOAT", "{k}s", "1"], NOT_FLOAT),
    (["INCRBYFLOAT", "{k}n", "abc"], NOT_FLOAT),
    (["ZADD", "{k}z", "abc", "m"], NOT_FLOAT),
    (["ZRANGEBYSCORE", "{k}z", "a", "b"], "-ERR min or max is not a float"),
    (["ZRANGE", "{k}z", "0", "1", "BYLEX"], "-ERR min or max not valid string range item"),
    (["INCR", "{k}max"], "-ERR increment or decrement would overflow"),
    (["INCRBY", "{k}n", "9223372036854775807"], "-ERR increment or decrement would overflow"),
    (["SET", "{k}n", "1", "XX", "NX"], "-ERR syntax error"),
    (["SET", "{k}n", "1", "EX", "10", "PX", "10"], "-ERR syntax error"),
    (["LINSERT", "{k}l", "MIDDLE", "a", "b"], "-ERR syntax error"),
    (
        ["ZADD", "{k}z", "NX", "XX", "1", "m"],
        "-ERR XX and NX options at the same time are not compatible",
    ),
    (
        ["ZADD", "{k}z", "GT", "LT", "1", "m"],
        "-ERR GT, LT, and/or NX options at the same time are not compatible",
    ),
    (
        ["ZADD", "{k}z", "INCR", "1", "a", "2", "b"],
        "-ERR INCR option supports a single increment-element pair",
    ),
    (
        ["EXPIRE", "{k}s", "10", "NX", "XX"],
        "-ERR NX and XX, GT or LT options at the same time are not compatible",
    ),
    (["LPOP", "{k}l", "-1"], "-ERR value is out of range, must be positive"),
    (["LSET", "{k}l", "99", "x"], "-ERR index out of range"),
    (["LSET", "{k}absent", "0", "x"], "-ERR no such key"),
    (["RENAME", "{k}absent", "{k}x"], "-ERR no such key"),
    (["SELECT", "99"], "-ERR DB index is out of range"),
    (["SELECT", "abc"], NOT_INT),
    (["SCAN", "abc"], "-ERR invalid cursor"),
    (["EXEC"], "-ERR EXEC without MULTI"),
    (["DISCARD"], "-ERR DISCARD without MULTI"),
]


def bad_input_setup(c: Raw, k: str) -> None:
    c.call("DEL", *[k + s for s in ("s", "l", "h", "z", "n", "max", "x")])
    c.call("SET", k + "s", "abc")
    c.call("RPUSH", k + "l", "a", "b")
    c.call("HSET", k + "h", "f", "v")
    c.call("ZADD", k + "z", "1", "m")
    c.call("SET", k + "n", "5")
    c.call("SET", k + "max", "9223372036854775807")


def bad_input_snapshot(c: Raw, k: str) -> list[Any]:
    return [
        c.call("GET", k + "s"),
        c.call("LRANGE", k + "l", "0", "-1"),
        c.call("HGETALL", k + "h"),
        c.call("ZRANGE", k + "z", "0", "-1", "WITHSCORES"),
        c.call("GET", k + "n"),
        c.call("GET", k + "max"),
        c.call("EXISTS", k + "x", k + "absent"),
        c.call("PTTL", k + "s"),
        c.call("PTTL", k + "n"),
    ]


def check_bad_input(port: int, protocol: int, k: str) -> list[str]:
    """Run every bad command on one connection; the mismatches (empty when all is right)."""
    c = Raw(port, protocol)
    try:
        bad_input_setup(c, k)
        before = bad_input_snapshot(c, k)
        wrong = []
        for command, want in BAD_INPUT:
            argv = [a.replace("{k}", k) for a in command]
            got = c.call(*argv)
            if got != want.encode():
                wrong.append(f"{' '.join(argv)}: got {got!r}, want {want!r}")
        after = bad_input_snapshot(c, k)
        if after != before:
            wrong.append(f"bad input changed the keys: {before} -> {after}")
        assert c.call("PING") == b"+PONG", "the connection must stay usable"
        return wrong
    finally:
        c.close()


# == the tests ====================================================================================


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_command_family(
    cluster: LocalCluster, family: str, role: str, protocol: int, ns: str
) -> None:
    r = connect(cluster, node_index(cluster, role), protocol)
    try:
        FAMILIES[family](r, ns)
    finally:
        r.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("role", ROLES)
def test_bad_input_answers_redis_errors_and_changes_nothing(
    cluster: LocalCluster, role: str, protocol: int, ns: str
) -> None:
    port = cluster.nodes[node_index(cluster, role)].redis_port
    wrong = check_bad_input(port, protocol, ns)
    assert not wrong, "\n".join(wrong)


def test_redis_keys_are_sdk_keys_in_database_0(cluster: LocalCluster, ns: str) -> None:
    follower = node_index(cluster, "follower")
    r = connect(cluster, follower, 3)
    r2 = connect(cluster, node_index(cluster, "leader"), 2)
    client = sdk(cluster)
    try:
        # Redis -> SDK
        assert r.set(ns + "s", "from-redis", ex=100) is True
        assert client.get(ns + "s") == b"from-redis"
        ttl = client.ttl(ns + "s")
        assert ttl is not None and 90 < ttl <= 100
        r.hset(ns + "h", mapping={"f": "v", "g": "w"})
        assert client.hgetall(ns + "h") == {b"f": b"v", b"g": b"w"}
        r.rpush(ns + "l", "a", "b")
        assert client.lrange(ns + "l", 0, -1) == [b"a", b"b"]
        r.sadd(ns + "set", "x", "y")
        assert set(client.smembers(ns + "set")) == {b"x", b"y"}
        r.zadd(ns + "z", {"m": 1.5, "n": 2})
        assert client.zrange(ns + "z", 0, -1, withscores=True) == [(b"m", 1.5), (b"n", 2.0)]
        assert r2.incr(ns + "n") == 1 and r.incrby(ns + "n", 2) == 3
        assert client.incr(ns + "n") == 4
        assert r.get(ns + "n") == "4"
        assert client.type(ns + "l") == "list" and client.type(ns + "z") == "zset"
        # SDK -> Redis
        client.set(ns + "g", "from-grpc", ttl=50)
        assert r.get(ns + "g") == "from-grpc" and r2.get(ns + "g") == "from-grpc"
        assert near(r.ttl(ns + "g"), 50, 5)
        client.hset(ns + "gh", {"a": "1"})
        assert r.hgetall(ns + "gh") == {"a": "1"}
        client.rpush(ns + "gl", "p", "q")
        assert r2.lrange(ns + "gl", 0, -1) == ["p", "q"]
        client.zadd(ns + "gz", {"m": 3})
        assert r.zscore(ns + "gz", "m") == 3.0
        client.sadd(ns + "gs", "e")
        assert r.smembers(ns + "gs") == {"e"}
        assert r.type(ns + "gh") == "hash"
        assert r.delete(ns + "g") == 1
        assert client.get(ns + "g") is None
        client.delete(ns + "s")
        assert r.exists(ns + "s") == 0
        # database 1 is not the SDK's
        r1 = connect(cluster, follower, 3, db=1)
        r1.set(ns + "db1", "one")
        assert client.get(ns + "db1") is None
        assert ns + "db1" not in {k.decode() for k in client.scan_iter(prefix=ns)}
        r1.close()
    finally:
        r.close()
        r2.close()
        client.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("role", ROLES)
def test_select_isolates_databases(
    cluster: LocalCluster, role: str, protocol: int, ns: str
) -> None:
    i = node_index(cluster, role)
    dbs = {n: connect(cluster, i, protocol, db=n) for n in (0, 1, 2, 3)}
    try:
        for n, r in dbs.items():
            assert r.set(ns + "k", f"db{n}") is True
        dbs[3].rpush(ns + "l", "x")  # a list in db 3 only
        for n, r in dbs.items():
            assert r.get(ns + "k") == f"db{n}"
        assert dbs[0].exists(ns + "l") == 0 and dbs[3].type(ns + "l") == "list"
        assert dbs[1].keys(ns + "*") == [ns + "k"]
        # one connection switching with SELECT
        single = connect(cluster, i, protocol, single_connection_client=True)
        assert single.execute_command("SELECT", 2) in (True, "OK")
        assert single.get(ns + "k") == "db2"
        assert single.execute_command("SELECT", 0) in (True, "OK")
        assert single.get(ns + "k") == "db0"
        single.close()
        # FLUSHDB empties its own database only
        dbs[2].set(ns + "k2", "x")
        assert dbs[2].dbsize() >= 2
        assert dbs[2].flushdb() is True
        assert dbs[2].dbsize() == 0
        assert dbs[2].get(ns + "k") is None and dbs[2].keys("*") == []
        assert [dbs[n].get(ns + "k") for n in (0, 1, 3)] == ["db0", "db1", "db3"]
        assert dbs[3].lrange(ns + "l", 0, -1) == ["x"]
        # another node sees the same databases (and the flush)
        other = connect(cluster, (i + 1) % 3, protocol, db=1)
        assert other.get(ns + "k") == "db1"
        other.close()
        url = f"redis://127.0.0.1:{cluster.nodes[i].redis_port}/3"
        from_url = redis.Redis.from_url(url, protocol=protocol, decode_responses=True)
        assert from_url.get(ns + "k") == "db3"
        from_url.close()
    finally:
        for r in dbs.values():
            r.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("role", ROLES)
def test_multi_exec_and_watch(cluster: LocalCluster, role: str, protocol: int, ns: str) -> None:
    i = node_index(cluster, role)
    r = connect(cluster, i, protocol)
    other = connect(cluster, (i + 1) % 3, protocol)  # another node, another connection
    try:
        with r.pipeline(transaction=True) as p:
            p.set(ns + "a", "1").incr(ns + "n").rpush(ns + "l", "x").get(ns + "a")
            assert p.execute() == [True, 1, 1, "1"]
        # WATCH, then another client changes the key: EXEC answers null (WatchError)
        with r.pipeline() as p:
            p.watch(ns + "w")
            assert p.get(ns + "w") is None
            assert other.set(ns + "w", "theirs") is True
            p.multi()
            p.set(ns + "w", "mine")
            with pytest.raises(WatchError):
                p.execute()
        assert r.get(ns + "w") == "theirs"
        # WATCH and no change: EXEC runs
        with r.pipeline() as p:
            p.watch(ns + "w")
            p.multi()
            p.set(ns + "w", "mine")
            assert p.execute() == [True]
        assert r.get(ns + "w") == "mine"
        # a deleted watched key counts as changed
        r.set(ns + "d", "x")
        with r.pipeline() as p:
            p.watch(ns + "d")
            other.delete(ns + "d")
            p.multi()
            p.set(ns + "d", "y")
            with pytest.raises(WatchError):
                p.execute()
        assert r.exists(ns + "d") == 0
        # a run-time error fails only its own command; the others apply
        with r.pipeline(transaction=True) as p:
            p.set(ns + "s", "str").lpush(ns + "s", "x").incr(ns + "m")
            results = p.execute(raise_on_error=False)
        assert results[0] is True and results[2] == 1
        assert isinstance(results[1], ResponseError) and "WRONGTYPE" in str(results[1])
        assert r.get(ns + "s") == "str" and r.get(ns + "m") == "1"
    finally:
        r.close()
        other.close()


@pytest.mark.parametrize("role", ROLES)
def test_watch_right_after_own_write_then_exec_succeeds(
    cluster: LocalCluster, role: str, ns: str
) -> None:
    """Nobody else touches the key, so EXEC must run (Redis guarantees it): the WATCH must
    see this connection's own acknowledged write, even on a follower."""
    r = connect(cluster, node_index(cluster, role), 3)
    aborted = []
    try:
        for attempt in range(30):
            key = f"{ns}{attempt}"
            assert r.set(key, "0") is True
            with r.pipeline() as p:
                p.watch(key)
                value = int(p.get(key) or 0)
                p.multi()
                p.set(key, str(value + 1))
                try:
                    p.execute()
                except WatchError:
                    aborted.append(attempt)
        assert not aborted, f"EXEC aborted with no concurrent change, attempts {aborted} of 30"
    finally:
        r.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("role", ROLES)
def test_multi_queue_errors(cluster: LocalCluster, role: str, protocol: int, ns: str) -> None:
    c = Raw(cluster.nodes[node_index(cluster, role)].redis_port, protocol)
    try:
        # a queue-time error discards the whole transaction
        assert c.call("MULTI") == b"+OK"
        assert c.call("SET", ns + "q", "1") == b"+QUEUED"
        assert (
            c.call("NOSUCH", "x")
            == b"-ERR unknown command 'NOSUCH', with args beginning with: 'x' "
        )
        assert c.call("GET") == b"-ERR wrong number of arguments for 'get' command"
        assert c.call("MULTI") == b"-ERR MULTI calls can not be nested"
        assert c.call("WATCH", ns + "q") == b"-ERR WATCH inside MULTI is not allowed"
        assert c.call("EXEC") == b"-EXECABORT Transaction discarded because of previous errors."
        assert c.call("EXISTS", ns + "q") == b":0"
        # DISCARD drops the queue
        assert c.call("MULTI") == b"+OK"
        assert c.call("SET", ns + "q", "1") == b"+QUEUED"
        assert c.call("DISCARD") == b"+OK"
        assert c.call("EXISTS", ns + "q") == b":0"
        # an empty transaction
        assert c.call("MULTI") == b"+OK"
        assert c.call("EXEC") == []
    finally:
        c.close()
    # redis-py's view of the same: ExecAbortError
    r = connect(cluster, node_index(cluster, role), protocol, single_connection_client=True)
    try:
        assert r.execute_command("MULTI") in (True, "OK")
        r.execute_command("SET", ns + "p", "1")  # QUEUED (redis-py's SET callback: False)
        with pytest.raises(ResponseError, match="wrong number of arguments"):
            r.execute_command("GET")
        with pytest.raises(ExecAbortError):
            r.execute_command("EXEC")
        assert r.get(ns + "p") is None
    finally:
        r.close()


def _messages(pubsub: Any, want: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            got.append(message)
    return got


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_keyspace_notifications_reach_subscribers_on_every_node(
    cluster: LocalCluster, protocol: int, ns: str
) -> None:
    """CONFIG SET on a follower replicates the setting; a subscriber on the other follower
    gets the leader's writes as keyspace and keyevent messages, expiry included; CONFIG GET
    shows it on every node; off again, nothing more is published."""
    leader = node_index(cluster, "leader")
    followers = [i for i in range(3) if i != leader]
    writer, setter = connect(cluster, leader, protocol), connect(cluster, followers[1], protocol)
    reader = connect(cluster, followers[0], protocol)
    pubsub = reader.pubsub()
    try:
        assert setter.config_set("notify-keyspace-events", "KEA") is True
        for i in range(3):
            node = connect(cluster, i, protocol)
            wait_until(
                lambda n=node: (
                    n.config_get("notify-keyspace-events")["notify-keyspace-events"] == "AKE"
                ),
                what=f"node {i} applied the setting",
            )
            node.close()
        pubsub.psubscribe(f"__keyspace@0__:{ns}*", "__keyevent@0__:expired")
        assert [pubsub.get_message(timeout=5)["type"] for _ in range(2)] == ["psubscribe"] * 2
        writer.set(ns + "k", "v")
        writer.lpush(ns + "l", "a")
        writer.rpop(ns + "l")
        writer.psetex(ns + "t", 100, "1")
        got: list[tuple[str, str]] = []
        deadline = time.monotonic() + 10
        while len(got) < 8 and time.monotonic() < deadline:
            m = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if m is not None and ns in m["channel"] + m["data"]:  # other tests' keys expire too
                got.append((m["channel"], m["data"]))
        space = f"__keyspace@0__:{ns}"
        assert got == [
            (space + "k", "set"),
            (space + "l", "lpush"),
            (space + "l", "rpop"),
            (space + "l", "del"),
            (space + "t", "set"),
            (space + "t", "expire"),
            (space + "t", "expired"),
            ("__keyevent@0__:expired", ns + "t"),
        ]
        assert setter.config_set("notify-keyspace-events", "") is True
        wait_until(
            lambda: reader.config_get("notify-keyspace-events")["notify-keyspace-events"] == "",
            what="the subscriber's node applied the change",
        )
        writer.set(ns + "k", "again")
        assert _messages(pubsub, 1, timeout=1.0) == []
    finally:
        with contextlib.suppress(Exception):
            setter.config_set("notify-keyspace-events", "")
        pubsub.close()
        for c in (writer, setter, reader):
            c.close()


def test_client_reply_off_and_skip_on_a_node(cluster: LocalCluster, ns: str) -> None:
    raw = Raw(cluster.nodes[node_index(cluster, "follower")].redis_port)
    try:
        raw.sock.sendall(
            encode("CLIENT", "REPLY", "SKIP")
            + encode("SET", ns + "k", "skipped")
            + encode("CLIENT", "REPLY", "OFF")
            + encode("SET", ns + "k", "silent")
            + encode("GET", ns + "k")
            + encode("CLIENT", "REPLY", "ON")
            + encode("GET", ns + "k")
        )
        assert raw.reply() == b"+OK"  # CLIENT REPLY ON's
        assert raw.reply() == b"silent"  # the silenced writes were applied
    finally:
        raw.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pubsub_across_nodes(cluster: LocalCluster, protocol: int, ns: str) -> None:
    leader = node_index(cluster, "leader")
    followers = [i for i in range(3) if i != leader]
    subscriber = connect(cluster, followers[0], protocol)
    publishers = [connect(cluster, leader, protocol), connect(cluster, followers[1], protocol)]
    pubsub = subscriber.pubsub()
    try:
        pubsub.subscribe(ns + "ch")
        pubsub.psubscribe(ns + "pat:*")
        confirmations = [pubsub.get_message(timeout=5) for _ in range(2)]
        assert [m["type"] for m in confirmations if m] == ["subscribe", "psubscribe"]
        for n, publisher in enumerate(publishers):
            assert isinstance(publisher.publish(ns + "ch", f"direct-{n}"), int)
            publisher.publish(ns + f"pat:{n}", f"pattern-{n}")
            publisher.publish(ns + "other", "nobody listens")
        got = _messages(pubsub, 4)
        simple = [(m["type"], m.get("pattern"), m["channel"], m["data"]) for m in got]
        assert sorted(simple, key=str) == sorted(
            [
                ("message", None, ns + "ch", "direct-0"),
                ("message", None, ns + "ch", "direct-1"),
                ("pmessage", ns + "pat:*", ns + "pat:0", "pattern-0"),
                ("pmessage", ns + "pat:*", ns + "pat:1", "pattern-1"),
            ],
            key=str,
        )
        # one publisher's messages arrive in publish order on another node
        for n in range(50):
            publishers[1].publish(ns + "ch", str(n))
        assert [m["data"] for m in _messages(pubsub, 50)] == [str(n) for n in range(50)]
        pubsub.unsubscribe(ns + "ch")
        pubsub.punsubscribe(ns + "pat:*")
        publishers[0].publish(ns + "ch", "after")
        assert _messages(pubsub, 1, timeout=1.0) == []
    finally:
        pubsub.close()
        subscriber.close()
        for p in publishers:
            p.close()


@pytest.fixture
def subscribed(cluster: LocalCluster, ns: str) -> Iterator[int]:
    """A follower with one subscriber to {ns}ch and to the pattern {ns}p*; its index."""
    i = node_index(cluster, "follower")
    subscriber = connect(cluster, i, 3)
    pubsub = subscriber.pubsub()
    r = connect(cluster, i, 2)
    try:
        pubsub.subscribe(ns + "ch")
        pubsub.psubscribe(ns + "p*")
        wait_until(lambda: ns + "ch" in r.pubsub_channels(ns + "*"), what="the subscription")
        yield i
    finally:
        pubsub.close()
        subscriber.close()
        r.close()


def _pubsub_raw(cluster: LocalCluster, i: int, protocol: int, *args: str) -> tuple[bytes, Any]:
    """The header line of a PUBSUB reply and its items."""
    raw = Raw(cluster.nodes[i].redis_port, protocol)
    try:
        raw.send(encode("PUBSUB", *args))
        head = raw.line()
        n = int(head[1:]) * (2 if head[:1] == b"%" else 1)
        return head, [raw.reply() for _ in range(n)]
    finally:
        raw.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pubsub_introspection(
    cluster: LocalCluster, subscribed: int, protocol: int, ns: str
) -> None:
    """PUBSUB CHANNELS / NUMSUB / NUMPAT count this node's subscribers."""
    r = connect(cluster, subscribed, protocol)
    try:
        assert r.pubsub_channels(ns + "*") == [ns + "ch"]
        assert r.pubsub_numpat() >= 1
        _, items = _pubsub_raw(cluster, subscribed, protocol, "NUMSUB", ns + "ch", ns + "x")
        assert items == [(ns + "ch").encode(), b":1", (ns + "x").encode(), b":0"]
    finally:
        r.close()


def test_pubsub_numsub_is_an_array_in_resp3(
    cluster: LocalCluster, subscribed: int, ns: str
) -> None:
    """Redis 7.0.15 answers NUMSUB with a flat array in RESP3 too; redis-py 8 expects that
    and fails on a map (TypeError: unhashable type: 'slice')."""
    head, _ = _pubsub_raw(cluster, subscribed, 3, "NUMSUB", ns + "ch", ns + "x")
    assert head == b"*4"
    r = connect(cluster, subscribed, 3)
    try:
        assert r.pubsub_numsub(ns + "ch", ns + "x") == [(ns + "ch", 1), (ns + "x", 0)]
    finally:
        r.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pubsub_shardnumsub_names_each_channel(
    cluster: LocalCluster, subscribed: int, protocol: int, ns: str
) -> None:
    """Redis 7.0.15: PUBSUB SHARDNUMSUB ch answers [ch, 0] (an array in both protocols)."""
    reply = _pubsub_raw(cluster, subscribed, protocol, "SHARDNUMSUB", ns + "ch")
    assert reply == (b"*2", [(ns + "ch").encode(), b":0"])


def test_pubsub_wire_frames(cluster: LocalCluster, ns: str) -> None:
    """RESP3 pushes (and commands while subscribed); RESP2's subscribed-mode rules."""
    leader = node_index(cluster, "leader")
    port = cluster.nodes[(leader + 1) % 3].redis_port
    ch = (ns + "ch").encode()
    s3, s2 = Raw(port, 3), Raw(port, 2)
    try:
        s3.send(encode("SUBSCRIBE", ch))
        assert s3.reply() == [b"subscribe", ch, b":1"]
        assert s3.buf == b""
        s3.send(encode("GET", ns + "absent"))
        assert s3.line() == b"_"  # RESP3 allows any command while subscribed
        assert s3.call("PING") == b"+PONG"
        s2.send(encode("SUBSCRIBE", ch))
        assert s2.reply() == [b"subscribe", ch, b":1"]
        assert s2.call("GET", "x") == (
            b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT "
            b"/ RESET are allowed in this context"
        )
        assert s2.call("PING") == [b"pong", b""]
        publisher = Raw(cluster.nodes[leader].redis_port, 2)
        publisher.call("PUBLISH", ch, "hello")
        publisher.close()
        push = b">3\r\n$7\r\nmessage\r\n$%d\r\n%s\r\n$5\r\nhello\r\n" % (len(ch), ch)
        s3._fill(lambda: len(s3.buf) >= len(push))
        assert s3.buf == push
        s3.buf = b""
        assert s2.reply() == [b"message", ch, b"hello"]
        assert s2.call("UNSUBSCRIBE") == [b"unsubscribe", ch, b":0"]
        assert s2.call("GET", ns + "absent") is None  # back to normal
    finally:
        s3.close()
        s2.close()


PIPELINE_RUN = 1000  # commands in each run of writes or reads


def _pipeline_runs(pipe: Any, ns: str) -> list[Any]:
    """Queue ten alternating runs of 1,000 writes and 1,000 reads; the expected replies."""
    keys = [f"{ns}{i}" for i in range(PIPELINE_RUN)]
    expected: list[Any] = []
    runs: list[tuple[Callable[[int], Any], Callable[[int], Any]]] = [
        (lambda i: pipe.set(keys[i], str(i)), lambda i: True),
        (lambda i: pipe.get(keys[i]), lambda i: str(i)),
        (lambda i: pipe.incr(ns + "counter"), lambda i: i + 1),  # counts in send order
        (lambda i: pipe.get(ns + "counter"), lambda i: str(PIPELINE_RUN)),
        (lambda i: pipe.rpush(ns + "list", str(i)), lambda i: i + 1),
        (lambda i: pipe.lindex(ns + "list", i), lambda i: str(i)),
        (lambda i: pipe.set(keys[i], f"x{i}"), lambda i: True),
        (lambda i: pipe.get(keys[i]), lambda i: f"x{i}"),
        (lambda i: pipe.delete(keys[i]), lambda i: 1),
        (lambda i: pipe.exists(keys[i]), lambda i: 0),
    ]
    for queue, reply in runs:
        for i in range(PIPELINE_RUN):
            queue(i)
            expected.append(reply(i))
    return expected


@pytest.mark.parametrize(("role", "protocol"), [("leader", 3), ("follower", 2)])
def test_pipeline_of_10000_commands_answers_in_order(
    cluster: LocalCluster, role: str, protocol: int, ns: str
) -> None:
    """Each read sees the writes sent before it; INCR and RPUSH replies count up in send
    order."""
    r = connect(cluster, node_index(cluster, role), protocol, 60.0, retry_unavailable=False)
    try:
        for attempt in range(3):  # an election mid-pipeline: again, on fresh keys
            pipe = r.pipeline(transaction=False)
            expected = _pipeline_runs(pipe, f"{ns}{attempt}:")
            assert len(pipe) == 10_000
            started = time.monotonic()
            try:
                replies = pipe.execute()
                break
            except UNAVAILABLE as exc:
                print(f"attempt {attempt}: {exc}")
        else:
            pytest.fail("three pipelines in a row met an election (no leader)")
        elapsed = time.monotonic() - started
        assert len(replies) == 10_000
        wrong = [
            (n, got, want)
            for n, (got, want) in enumerate(zip(replies, expected, strict=True))
            if got != want
        ]
        assert not wrong, (
            f"{len(wrong)} replies out of place, first (index, got, want): {wrong[:5]}"
        )
        print(f"10,000 pipelined commands through the {role}: {elapsed:.2f} s")
    finally:
        r.close()


def test_protocol_error_closes_only_that_connection(cluster: LocalCluster, ns: str) -> None:
    port = cluster.nodes[node_index(cluster, "follower")].redis_port
    bystander = Raw(port, 3)
    r = connect(cluster, node_index(cluster, "follower"), 2)
    try:
        assert bystander.call("SET", ns + "b", "1") == b"+OK"
        cases = [
            # inline commands, then bad framing: the good ones are answered, then the error
            (
                b'PING\r\nSET %sinline "a b"\r\n*1\r\nfoo\r\nPING\r\n' % ns.encode(),
                b"+PONG\r\n+OK\r\n-ERR Protocol error: expected '$', got 'f'\r\n",
            ),
            (b"*abc\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
            (b"*1\r\n$abc\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
            (b"*1\r\n$2000000000\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
            (b"*3000000000\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
            (b'SET "a b\r\n', b"-ERR Protocol error: unbalanced quotes in request\r\n"),
            (b"*2\r\n*1\r\n$4\r\nPING\r\n", b"-ERR Protocol error: expected '$', got '*'\r\n"),
        ]
        for payload, answer in cases:
            victim = Raw(port, 2)
            victim.send(payload)
            assert victim.read_all() == answer, payload
            victim.close()
        # a client that drops mid-pipeline leaves no stuck state
        dropper = Raw(port, 2)
        dropper.send(b"".join(encode("SET", f"{ns}drop:{i}", i) for i in range(2000)))
        dropper.close()
        assert bystander.call("GET", ns + "b") == b"1"
        assert bystander.call("PING") == b"+PONG"
        assert r.get(ns + "inline") == "a b"
        assert r.ping() is True
    finally:
        bystander.close()
        r.close()


@pytest.mark.parametrize(
    ("ending", "answer"),
    [
        (b"*1\r\nfoo\r\n", b"-ERR Protocol error: expected '$', got 'f'\r\n"),
        (encode("QUIT"), b"+OK\r\n"),
    ],
    ids=["protocol-error", "quit"],
)
@pytest.mark.parametrize("role", ROLES)
def test_connection_end_after_a_pending_read_still_answers_it(
    cluster: LocalCluster, role: str, ending: bytes, answer: bytes, ns: str
) -> None:
    """SET, then GET (a read run that waits for the write run), then bad framing or QUIT:
    SET and GET are answered, then the error or +OK, then the connection closes (as in
    Redis)."""
    port = cluster.nodes[node_index(cluster, role)].redis_port
    victim = Raw(port, 2, timeout=10)
    try:
        victim.send(encode("SET", ns + "k", "v") + encode("GET", ns + "k") + ending)
        try:
            got = victim.read_all(timeout=10)
        except TimeoutError:
            got = victim.buf + b"<not closed within 10 s>"
        assert got == b"+OK\r\n$1\r\nv\r\n" + answer
    finally:
        victim.close()


def _redis_cli(port: int, *args: str, stdin: bytes | None = None) -> str:
    exe = shutil.which("redis-cli")
    if exe is None:
        pytest.skip("redis-cli is not installed (Debian: redis-tools; .ci/run installs it)")
    done = subprocess.run(
        [exe, "-h", "127.0.0.1", "-p", str(port), *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return done.stdout.decode()


def test_redis_cli_smoke(cluster: LocalCluster, ns: str) -> None:
    port = cluster.nodes[node_index(cluster, "follower")].redis_port
    assert _redis_cli(port, "ping") == "PONG\n"
    assert _redis_cli(port, "set", ns + "k", "hello world") == "OK\n"
    assert _redis_cli(port, "get", ns + "k") == "hello world\n"
    assert _redis_cli(port, "-3", "hset", ns + "h", "f", "v") == "1\n"
    assert _redis_cli(port, "-3", "hgetall", ns + "h") == "f v\n"  # a map, as Redis prints it
    assert _redis_cli(port, "-n", "1", "set", ns + "k", "db1") == "OK\n"
    assert _redis_cli(port, "get", ns + "k") == "hello world\n"
    # commands read from stdin, one per line
    script = f"SET {ns}s1 one\nINCR {ns}c\nINCR {ns}c\nGET {ns}s1\n".encode()
    assert _redis_cli(port, stdin=script) == "OK\n1\n2\none\n"
    # --pipe: raw protocol (mass insertion), inline commands included
    stream = b"".join(encode("SET", f"{ns}p:{i}", i) for i in range(1000))
    stream += b"".join(b"SET %sinline:%d %d\r\n" % (ns.encode(), i, i) for i in range(10))
    out = _redis_cli(port, "--pipe", stdin=stream)
    assert "errors: 0, replies: 1010" in out, out
    assert _redis_cli(port, "get", f"{ns}p:999") == "999\n"
    assert _redis_cli(port, "get", f"{ns}inline:9") == "9\n"


def test_redis_benchmark_smoke(cluster: LocalCluster) -> None:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        pytest.skip("redis-benchmark is not installed (Debian: redis-tools; .ci/run installs it)")
    port = cluster.nodes[node_index(cluster, "follower")].redis_port
    done = subprocess.run(
        [exe, "-h", "127.0.0.1", "-p", str(port), "-q", "-n", "2000", "-t", "set,get"],
        capture_output=True,
        timeout=180,
        check=True,
    )
    out = done.stdout.decode().replace("\r", "\n")
    rates = dict(re.findall(r"^(SET|GET): ([\d.]+) requests per second", out, re.M))
    assert set(rates) == {"SET", "GET"}, out
    assert all(float(v) > 0 for v in rates.values()), rates
    print("redis-benchmark through a follower:", rates)


# -- last: cuts a follower's Raft links (the cluster heals, but leadership may move) --------------


def _reads(r: redis.Redis, key: str, value: str) -> bool:
    """Whether a READONLY read answers value (False while the replica is too stale, e.g.
    during an election)."""
    try:
        return bool(r.get(key) == value)
    except ClusterDownError:
        return False


def test_readonly_reads_are_stale_and_readwrite_linearizable(
    cluster: LocalCluster, ns: str
) -> None:
    assert cluster.net is not None
    key = ns + "k"
    observed_stale = False
    for attempt in range(4):
        leader = cluster.wait_until_ready(timeout=30)
        follower = next(i for i in range(3) if i != leader)
        writer = connect(cluster, leader, 3)
        reader = connect(cluster, follower, 3, single_connection_client=True)
        try:
            old, new = f"old-{attempt}", f"new-{attempt}"
            writer.set(key, old)
            assert reader.execute_command("READONLY") in (True, "OK")
            wait_until(
                lambda r=reader, v=old: _reads(r, key, v), what="the follower to apply the write"
            )
            cluster.net.isolate(cluster.nodes[follower].node_id)
            time.sleep(0.1)  # the cut takes effect on the proxies' loop
            writer.set(key, new)  # leader + the other follower are a majority
            try:
                seen = reader.get(key)  # served locally: the old value, or too stale
                assert seen == old, f"a cut-off follower read {seen!r}"
                observed_stale = True
            except ClusterDownError:
                pass  # it already gave up on the leader; try again
            assert reader.execute_command("READWRITE") in (True, "OK")
            # through the leader, never the stale value (or unavailable: no leader known)
            with contextlib.suppress(ClusterDownError):
                assert reader.get(key) == new
            # past the staleness bound a READONLY read refuses instead of answering
            reader.execute_command("READONLY")
            time.sleep(1.5)
            with pytest.raises(ClusterDownError):
                reader.get(key)
        finally:
            cluster.net.heal()
            writer.close()
            reader.close()
        if observed_stale:
            break
    assert observed_stale, "no READONLY read on a cut-off follower answered the old value"
    cluster.wait_until_ready(timeout=30)
    # after healing: READONLY converges, READWRITE reads the latest write
    reader = connect(cluster, follower, 2, single_connection_client=True)
    writer = connect(cluster, cluster.wait_for_leader(), 2)
    try:
        reader.execute_command("READONLY")
        wait_until(lambda: _reads(reader, key, new), 20, "the healed follower to catch up")
        reader.execute_command("READWRITE")
        for n in range(20):  # another client's acknowledged write is always seen
            writer.set(key, f"v{n}")
            assert reader.get(key) == f"v{n}"
    finally:
        reader.close()
        writer.close()


# -- the expectations above are Redis's own -------------------------------------------------


@pytest.fixture(scope="module")
def real_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed: cannot cross-check the expectations")
    port = free_port()
    workdir: Path = tmp_path_factory.mktemp("real-redis")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _answers_ping(port), what="redis-server to start")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _answers_ping(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.ConnectionError:
        return False


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_expectations_hold_on_real_redis(real_redis: int, protocol: int) -> None:
    r = redis.Redis(port=real_redis, protocol=protocol, decode_responses=True)
    r.flushall()
    for name, check in FAMILIES.items():
        check(r, f"{name}:")
    wrong = check_bad_input(real_redis, protocol, "bad:")
    assert not wrong, "\n".join(wrong)
    r.close()


def _fill_every_encoding(r: redis.Redis, ns: str) -> dict[str, Any]:
    """Keys in each encoding Redis 7.0 dumps (small ones listpack/intset, large ones plain,
    long strings LZF-compressed, integers encoded), and how to read each back."""
    long_text = "abcdefgh" * 100  # compressible: Redis dumps it LZF-compressed
    r.set(ns + "str", "hello")
    r.set(ns + "int", "-12345")
    r.set(ns + "big-int", "9223372036854775807")
    r.set(ns + "lzf", long_text)
    r.rpush(ns + "list-small", "a", "1", "-7", "300", "70000", "x" * 70)
    r.rpush(ns + "list-big", *[f"item-{n}" for n in range(600)], "y" * 20000)
    r.sadd(ns + "intset", 1, -2, 300, 70000, 5_000_000_000)
    r.sadd(ns + "set-big", *[f"m{n}" for n in range(600)])
    r.hset(ns + "hash-small", mapping={"f1": "v1", "n": "12", "neg": "-4096", "s": "z" * 100})
    r.hset(ns + "hash-big", mapping={f"f{n}": f"v{n}" for n in range(600)})
    r.zadd(ns + "zset-small", {"a": 1.5, "b": -2, "c": 1e20, "d": 7})
    r.zadd(ns + "zset-big", {f"m{n}": n / 3 for n in range(600)})
    read = {
        "str": lambda c, k: c.get(k),
        "int": lambda c, k: c.get(k),
        "big-int": lambda c, k: c.get(k),
        "lzf": lambda c, k: c.get(k),
        "list-small": lambda c, k: c.lrange(k, 0, -1),
        "list-big": lambda c, k: c.lrange(k, 0, -1),
        "intset": lambda c, k: sorted(c.smembers(k)),
        "set-big": lambda c, k: sorted(c.smembers(k)),
        "hash-small": lambda c, k: c.hgetall(k),
        "hash-big": lambda c, k: c.hgetall(k),
        "zset-small": lambda c, k: c.zrange(k, 0, -1, withscores=True),
        "zset-big": lambda c, k: c.zrange(k, 0, -1, withscores=True),
    }
    return read


def test_dump_and_restore_move_keys_both_ways_with_real_redis(
    cluster: LocalCluster, real_redis: int, ns: str
) -> None:
    """Redis 7.0's DUMP of every encoding RESTOREs here (through the leader, read back on a
    follower), and raftcache's DUMP RESTOREs into Redis with the same contents."""
    leader = node_index(cluster, "leader")
    follower = next(i for i in range(3) if i != leader)
    real = redis.Redis(port=real_redis, protocol=3, decode_responses=True)
    raw_real = redis.Redis(port=real_redis, protocol=3)  # DUMP payloads are bytes
    ours, raw_ours = connect(cluster, leader), connect(cluster, leader, decode_responses=False)
    reader = connect(cluster, follower)
    try:
        read = _fill_every_encoding(real, ns)
        for name, get in read.items():
            key = ns + name
            payload = raw_real.dump(key)
            assert payload is not None
            assert raw_ours.restore(key, 0, payload, replace=True) in (True, b"OK"), name
            wait_until(lambda k=key, g=get: g(reader, k) == g(real, k), what=f"{name} restored")
            # and back: our DUMP restores into Redis as the same value
            back = raw_ours.dump(key)
            assert raw_real.restore(key + ":back", 0, back) in (True, b"OK"), name
            assert get(real, key + ":back") == get(real, key), name
        # a TTL comes along, relative or absolute
        assert raw_ours.restore(ns + "ttl", 5000, raw_real.dump(ns + "str")) in (True, b"OK")
        assert 0 < ours.pttl(ns + "ttl") <= 5000
        # refusals change nothing: an existing key without REPLACE, a corrupted payload
        good = raw_real.dump(ns + "str")
        with pytest.raises(ResponseError, match=r"^BUSYKEY Target key name already exists\.$"):
            raw_ours.restore(ns + "str", 0, good)
        bad = good[:-1] + bytes([good[-1] ^ 1])
        with pytest.raises(ResponseError, match="DUMP payload version or checksum are wrong"):
            raw_ours.restore(ns + "new", 0, bad)
        assert ours.exists(ns + "new") == 0
        real.xadd(ns + "stream", {"f": "v"})
        with pytest.raises(ResponseError, match="Bad data format: raftcache does not restore"):
            raw_ours.restore(ns + "stream", 0, raw_real.dump(ns + "stream"))
    finally:
        for c in (real, raw_real, ours, raw_ours, reader):
            c.close()
