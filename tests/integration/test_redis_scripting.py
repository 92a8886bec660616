"""Lua scripting on a real 3-node cluster, through the libraries that depend on it.

- EVAL/EVALSHA/EVAL_RO through the leader and through a follower (relayed), Redis's error
  texts on the wire, a failed script changing nothing on any replica.
- FUNCTION LOAD/LIST/FLUSH and FCALL/FCALL_RO through a follower; every replica holds the
  library and answers FCALL_RO.
- django-redis: `incr` (an EVAL), `get_or_set`, `delete_many`.
- `limits`: the moving-window and fixed-window strategies (EVALSHA of their Lua scripts)
  admit exactly the limit under 8 concurrent callers spread over the three nodes.
- redis-py `Lock`: two contending clients never hold it together; the leader SIGKILLed
  while a lock is held: the lock is neither lost nor granted twice, and the extend/release
  scripts loaded before the kill still run by sha on the new leader (last: it kills a node).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis
from raftcache.chaos.local_cluster import LocalCluster
from redis.backoff import ExponentialBackoff
from redis.exceptions import ClusterDownError, NoScriptError, ResponseError, TryAgainError
from redis.lock import Lock
from redis.retry import Retry

pytestmark = pytest.mark.integration
T = TypeVar("T")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(3, tmp_path_factory.mktemp("redis-scripting"))
    c.start()
    try:
        c.wait_until_ready(timeout=60)
        yield c
    finally:
        c.close()


def connect(cluster: LocalCluster, i: int, **kwargs: Any) -> redis.Redis:
    """A client of node i that resends what the cluster promises was not applied
    (CLUSTERDOWN during an election, TRYAGAIN), as cluster clients do."""
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 40)
    return redis.Redis(
        host="127.0.0.1",
        port=cluster.nodes[i].redis_port,
        decode_responses=True,
        socket_timeout=10,
        retry=retry,
        retry_on_error=[ClusterDownError, TryAgainError],
        **kwargs,
    )


def followers(cluster: LocalCluster) -> list[int]:
    leader = cluster.wait_for_leader()
    return [i for i in range(len(cluster.nodes)) if i != leader]


def until(check: Callable[[], T], timeout: float = 10.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def converged(cluster: LocalCluster) -> bool:
    """Every node applied the same entries and holds the same state digest."""
    statuses = [cluster.status(i) for i in range(len(cluster.nodes))]
    if any(s is None for s in statuses):
        return False
    return len({(s.applied_index, s.digest) for s in statuses if s is not None}) == 1


def test_scripts_through_the_leader_and_a_follower(cluster: LocalCluster) -> None:
    leader = cluster.wait_for_leader()
    for i in (leader, followers(cluster)[0]):
        r = connect(cluster, i)
        assert r.eval("return redis.call('incrby', KEYS[1], ARGV[1])", 1, "s:n", 5) in (5, 10)
        sha = r.script_load("return {KEYS[1], ARGV[1], 3.7, false, {ok='fine'}}")
        assert r.evalsha(sha, 1, "k", "a") == ["k", "a", 3, None, "fine"]
        assert r.script_exists(sha, "0" * 40) == [True, False]
        assert r.eval_ro("return redis.call('get', KEYS[1])", 1, "s:n") in ("5", "10")
        with pytest.raises(NoScriptError):
            r.evalsha("ffd632c7d33e571e9f24556ebed26c3479a87130", 0)
        with pytest.raises(ResponseError, match="Write commands are not allowed from read-only"):
            r.eval_ro("return redis.call('set', 'x', 1)", 0)
        with pytest.raises(ResponseError, match="Error compiling script"):
            r.eval("return +", 0)
        r.close()
    # A script that fails after writing changes nothing, on any replica.
    r = connect(cluster, leader)
    r.set("s:keep", "old")
    with pytest.raises(ResponseError, match="user_script:1: boom"):
        r.eval("redis.call('set', 's:keep', 'new') redis.call('del', 's:n') error('boom')", 0)
    assert r.get("s:keep") == "old" and r.get("s:n") == "10"
    assert until(lambda: converged(cluster)), "the replicas' digests differ"
    # MULTI/EXEC carries scripts too; FLUSHALL keeps loaded scripts, SCRIPT FLUSH drops them.
    with r.pipeline(transaction=True) as p:
        p.eval("return redis.call('set', 's:m', 'x')", 0)
        p.evalsha(sha, 1, "k", "b")
        assert p.execute() == ["OK", ["k", "b", 3, None, "fine"]]
    r.flushall()
    assert r.dbsize() == 0 and r.script_exists(sha) == [True]
    r.script_flush()
    assert r.script_exists(sha) == [False]
    with pytest.raises(ResponseError, match="NOTBUSY"):
        r.script_kill()
    r.close()


def test_functions_through_a_follower(cluster: LocalCluster) -> None:
    """FUNCTION LOAD and FCALL relayed by a follower; every replica holds the library (its
    digest is equal) and answers FCALL_RO itself; FLUSHALL keeps it, FUNCTION FLUSH drops it."""
    code = (
        "#!lua name=ctr\n"
        "redis.register_function('bump', function(keys, args)\n"
        "  return redis.call('incrby', keys[1], args[1]) end)\n"
        "redis.register_function{function_name='peek', flags={'no-writes'},\n"
        "  callback=function(keys) return redis.call('get', keys[1]) end}"
    )
    r = connect(cluster, followers(cluster)[0])
    r.function_flush()
    assert r.function_load(code) == "ctr"
    assert r.fcall("bump", 1, "f:n", 4) == 4 and r.fcall("BUMP", 1, "f:n", 1) == 5
    with pytest.raises(ResponseError, match="Library 'ctr' already exists"):
        r.function_load(code)
    with pytest.raises(ResponseError, match="write flag using"):
        r.fcall_ro("bump", 1, "f:n", 1)
    bad = (
        "#!lua name=bad\nredis.register_function('b3', function()\n"
        "  redis.call('set', 'f:n', 0) error('boom') end)"
    )
    assert r.function_load(bad) == "bad"
    with pytest.raises(ResponseError, match="boom"):  # rolled back on every replica
        r.fcall("b3", 0)
    assert until(lambda: converged(cluster)), "the replicas' digests differ"
    for i in range(len(cluster.nodes)):
        node = connect(cluster, i)
        assert node.fcall_ro("peek", 1, "f:n") == "5"
        assert [lib[1] for lib in node.function_list()] == ["bad", "ctr"]  # RESP2: flat
        node.close()
    r.flushall()
    assert r.dbsize() == 0 and r.fcall("bump", 1, "f:n", 2) == 2
    r.function_flush()
    assert r.function_list() == []
    with pytest.raises(ResponseError, match="Function not found"):
        r.fcall("bump", 1, "f:n", 1)
    r.close()


def test_django_redis_cache(cluster: LocalCluster) -> None:
    from django.conf import settings

    if not settings.configured:
        settings.configure()
    from django_redis.cache import RedisCache

    i = followers(cluster)[0]
    cache = RedisCache(
        f"redis://127.0.0.1:{cluster.nodes[i].redis_port}/0",
        {"KEY_PREFIX": "dj", "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient"}},
    )
    cache.set("n", 1, timeout=60)
    assert cache.incr("n", 4) == 5  # django-redis increments through EVAL
    assert cache.decr("n") == 4
    with pytest.raises(ValueError):
        cache.incr("missing")
    assert cache.ttl("n") is not None and 0 < cache.ttl("n") <= 60  # incr keeps the TTL
    assert cache.get_or_set("g", lambda: {"x": [1, 2]}, timeout=60) == {"x": [1, 2]}
    assert cache.get_or_set("g", "other") == {"x": [1, 2]}
    cache.set_many({"a": 1, "b": "two", "c": 3.5})
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": "two", "c": 3.5}
    assert cache.delete_many(["a", "b", "missing"]) == 2
    assert cache.get_many(["a", "b", "c"]) == {"c": 3.5}
    cache.close()


@pytest.mark.parametrize("strategy", ["moving-window", "fixed-window"])
def test_limits_count_exactly_under_8_concurrent_callers(
    cluster: LocalCluster, strategy: str
) -> None:
    from limits import RateLimitItemPerMinute, storage, strategies

    limit, callers, attempts = 50, 8, 12
    item = RateLimitItemPerMinute(limit)
    cls = {
        "moving-window": strategies.MovingWindowRateLimiter,
        "fixed-window": strategies.FixedWindowRateLimiter,
    }[strategy]
    limiters = []
    for n in range(callers):
        port = cluster.nodes[n % len(cluster.nodes)].redis_port  # leader and followers
        store = storage.storage_from_string(f"redis://127.0.0.1:{port}")
        limiters.append(cls(store))
    admitted = [0] * callers
    barrier = threading.Barrier(callers)
    errors: list[BaseException] = []

    def caller(n: int) -> None:
        try:
            barrier.wait()
            for _ in range(attempts):
                if limiters[n].hit(item, "api", strategy):
                    admitted[n] += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sum(admitted) == limit, admitted  # 96 attempts, exactly 50 admitted
    stats = limiters[1].get_window_stats(item, "api", strategy)
    assert stats.remaining == 0
    assert not limiters[2].test(item, "api", strategy)


def test_lock_contention_and_leader_kill(cluster: LocalCluster) -> None:
    # Two clients on the two followers contend for one lock: the critical section (a
    # read-modify-write of a counter) never overlaps.
    a_node, b_node = followers(cluster)
    a, b = connect(cluster, a_node), connect(cluster, b_node)
    inside = threading.Lock()
    overlaps: list[str] = []
    rounds = 15

    def worker(r: redis.Redis, name: str) -> None:
        lock = Lock(r, "l:counter", timeout=10, blocking_timeout=30)
        for _ in range(rounds):
            assert lock.acquire()
            if not inside.acquire(blocking=False):
                overlaps.append(name)
            value = int(r.get("l:count") or 0)
            r.set("l:count", value + 1)
            inside.release()
            lock.release()  # EVALSHA of redis-py's release script

    threads = [threading.Thread(target=worker, args=(c, n)) for c, n in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not overlaps and a.get("l:count") == str(2 * rounds)

    # The leader SIGKILLed while a holds the lock: b cannot take it, a extends and releases
    # it on the new leader (by sha: the scripts were loaded before the kill), then b gets it.
    held = Lock(a, "l:failover", timeout=30)
    other = Lock(b, "l:failover", timeout=30)
    assert held.acquire(blocking=False)
    assert held.extend(30)  # loads redis-py's extend script before the kill
    assert not other.acquire(blocking=False)
    old_leader = cluster.wait_for_leader()
    cluster.kill(old_leader)
    try:
        cluster.wait_for_leader(exclude=old_leader, timeout=30)
        assert not other.acquire(blocking=False), "the lock was lost in the failover"
        assert a.script_exists(held.lua_extend.sha, held.lua_release.sha) == [True, True]  # type: ignore[union-attr]
        assert held.extend(10)
        assert 30_000 < a.pttl("l:failover") <= 70_000  # extend adds to what is left
        assert not other.acquire(blocking=False), "the lock was granted twice"
        held.release()
        assert other.acquire(blocking=False)
        other.release()
    finally:
        cluster.start_node(old_leader)
    back = connect(cluster, old_leader)
    back.readonly()
    assert until(lambda: back.get("l:count") == str(2 * rounds), timeout=30)
    for r in (a, b, back):
        r.close()
