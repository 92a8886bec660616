"""Blocking pops (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN/MAX, BZMPOP) on a real
3-node cluster through redis-py: parked on the leader, relayed by followers, served first
blocked first served, timeouts, CLIENT UNBLOCK, INFO, disconnects and a leader kill.

Reply shapes and error texts were checked against redis-server 7.0.15.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from raftcache.chaos.local_cluster import LocalCluster
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError
from redis.retry import Retry

from tests.integration.conftest import running_cluster

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("blocking")) as c:
        yield c


def client(cluster: LocalCluster, role: str, protocol: int = 2) -> redis.Redis:
    leader = cluster.wait_for_leader()
    i = leader if role == "leader" else (leader + 1) % len(cluster.nodes)
    return redis.Redis(port=cluster.nodes[i].redis_port, protocol=protocol, socket_timeout=30)


class Background:
    """A call running in a thread (a blocked client), its result or exception kept."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # kept for the test to assert on
            self.error = exc

    def join(self, timeout: float = 20) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the blocked call never returned"
        if self.error is not None:
            raise self.error
        return self.result


def blocked_count(r: redis.Redis) -> int:
    """INFO's blocked_clients: the clients blocked on that node (followers count theirs)."""
    return int(r.info("clients")["blocked_clients"])


def total_blocked(cluster: LocalCluster) -> int:
    total = 0
    for node in cluster.nodes:
        if node.running:
            total += blocked_count(redis.Redis(port=node.redis_port, socket_timeout=10))
    return total


def wait_count(read: Callable[[], int], n: int, what: str, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while read() != n:
        assert time.monotonic() < end, f"expected {n} {what}"
        time.sleep(0.02)


def wait_blocked(cluster: LocalCluster, n: int) -> None:
    wait_count(lambda: total_blocked(cluster), n, "blocked clients")


def wait_blocking_keys(leader: redis.Redis, n: int) -> None:
    """INFO's total_blocking_keys on the leader: keys its parked calls (relayed too) wait on."""
    wait_count(
        lambda: int(leader.info("clients")["total_blocking_keys"]), n, "blocking keys on the leader"
    )


@pytest.mark.parametrize("role", ["leader", "follower"])
@pytest.mark.parametrize("protocol", [2, 3])
def test_a_fractional_timeout_answers_the_null_reply(
    cluster: LocalCluster, role: str, protocol: int
) -> None:
    r = client(cluster, role, protocol)
    started = time.monotonic()
    assert r.blpop([f"empty:{role}:{protocol}"], timeout=0.4) is None
    took = time.monotonic() - started
    assert 0.35 <= took < 3.0
    assert r.blmove(f"empty:{role}", "dst", 0.2, "LEFT", "RIGHT") is None


@pytest.mark.parametrize("role", ["leader", "follower"])
def test_data_already_there_is_popped_at_once(cluster: LocalCluster, role: str) -> None:
    r = client(cluster, role)
    r.rpush(f"now:{role}", "a", "b")
    r.zadd(f"zn:{role}", {"low": 1, "high": 2.5})
    assert r.blpop([f"missing:{role}", f"now:{role}"], 0) == (f"now:{role}".encode(), b"a")
    assert r.brpop([f"now:{role}"], 0) == (f"now:{role}".encode(), b"b")
    assert r.bzpopmax([f"zn:{role}"], 0) == (f"zn:{role}".encode(), b"high", 2.5)
    assert r.bzpopmin([f"zn:{role}"], 0) == (f"zn:{role}".encode(), b"low", 1.0)
    r.rpush(f"m:{role}", "1", "2", "3")
    assert r.blmpop(0, 1, f"m:{role}", direction="RIGHT", count=2) == [
        f"m:{role}".encode(),
        [b"3", b"2"],
    ]
    r.zadd(f"zm:{role}", {"a": 1, "b": 2})
    reply = r.bzmpop(0, 1, [f"zm:{role}"], min=True, count=5)
    assert reply == [f"zm:{role}".encode(), [[b"a", b"1"], [b"b", b"2"]]]  # RESP2 bulk scores
    r.rpush(f"src:{role}", "x")
    assert r.brpoplpush(f"src:{role}", f"dst:{role}", 0) == b"x"
    assert r.lrange(f"dst:{role}", 0, -1) == [b"x"]


def test_clients_are_served_in_the_order_they_blocked_on_any_node(cluster: LocalCluster) -> None:
    leader = client(cluster, "leader")
    calls = []
    for i in range(4):
        r = client(cluster, "leader" if i % 2 else "follower")
        calls.append(Background(lambda r=r: r.blpop(["fifo:a", "fifo:b"], timeout=15)))
        wait_blocked(cluster, i + 1)  # each is parked before the next one blocks
    leader.rpush("fifo:b", "e1", "e2", "e3", "e4")
    assert [c.join() for c in calls] == [(b"fifo:b", f"e{i}".encode()) for i in range(1, 5)]
    assert leader.llen("fifo:b") == 0


def test_a_push_wakes_a_waiter_on_the_second_of_its_keys_and_moves_atomically(
    cluster: LocalCluster,
) -> None:
    r = client(cluster, "follower")
    mover = Background(lambda: r.blmove("mv:src", "mv:dst", 10, "RIGHT", "LEFT"))
    wait_blocked(cluster, 1)
    client(cluster, "leader").lpush("mv:src", "item")
    assert mover.join() == b"item"
    assert client(cluster, "leader").lrange("mv:dst", 0, -1) == [b"item"]


def test_info_counts_blocked_clients_and_client_unblock_ends_them(cluster: LocalCluster) -> None:
    r = client(cluster, "leader")
    blocked = client(cluster, "leader")
    blocked_id = blocked.client_id()
    call = Background(lambda: blocked.blpop(["ub:never"], timeout=0))
    wait_blocked(cluster, 1)
    assert int(r.info("clients")["total_blocking_keys"]) == 1
    assert r.client_unblock(blocked_id) is True  # TIMEOUT: the null reply
    assert call.join() is None
    wait_blocking_keys(r, 0)
    assert r.client_unblock(blocked_id) is False  # not blocked any more
    other = client(cluster, "leader")
    other_id = other.client_id()
    call = Background(lambda: other.brpop(["ub:never"], timeout=0))
    wait_blocked(cluster, 1)
    assert r.client_unblock(other_id, error=True) is True
    with pytest.raises(ResponseError, match="UNBLOCKED client unblocked via CLIENT UNBLOCK"):
        call.join()
    assert total_blocked(cluster) == 0
    # the unblocked clients' waits are gone: the next push stays for whoever asks
    r.rpush("ub:never", "kept")
    assert r.lrange("ub:never", 0, -1) == [b"kept"]


def test_a_client_that_disconnects_while_blocked_takes_nothing(cluster: LocalCluster) -> None:
    leader = client(cluster, "leader")
    for role in ("leader", "follower"):
        ghost = client(cluster, role)
        ghost.ping()
        conn = ghost.connection_pool.get_connection()
        conn.send_command("BLPOP", f"gone:{role}", 0)
        wait_blocked(cluster, 1)
        conn.disconnect()  # the client goes away while parked
        wait_blocked(cluster, 0)
        leader.rpush(f"gone:{role}", "v")
        # Nobody takes it for good: a follower's relay may still be cancelling on the leader
        # when the push lands; then its pop is pushed back (node/blocking.py).
        time.sleep(0.3)
        end = time.monotonic() + 10
        while leader.lrange(f"gone:{role}", 0, -1) != [b"v"]:
            assert time.monotonic() < end, "the element was taken by a client that left"
            time.sleep(0.05)
        time.sleep(0.3)
        assert leader.lrange(f"gone:{role}", 0, -1) == [b"v"]


def test_inside_multi_a_blocking_pop_does_not_block(cluster: LocalCluster) -> None:
    r = client(cluster, "leader")
    pipe = r.pipeline(transaction=True)
    pipe.blpop(["multi:empty"], 30).rpush("multi:l", "a").blpop(["multi:l"], 30)
    started = time.monotonic()
    assert pipe.execute() == [None, 1, (b"multi:l", b"a")]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("BLPOP", "k", "-1"), "timeout is negative"),
        (("BLPOP", "k", "soon"), "timeout is not a float or out of range"),
        (("BLPOP", "k", "inf"), "timeout is not a float or out of range"),
        (("BLMOVE", "a", "b", "UP", "LEFT", "0"), "syntax error"),
        (("BLMPOP", "0", "0", "k", "LEFT"), "numkeys should be greater than 0"),
        (("BLPOP", "k"), "wrong number of arguments for 'blpop' command"),
    ],
)
def test_bad_arguments_answer_redis_errors_and_block_nobody(
    cluster: LocalCluster, args: tuple[str, ...], error: str
) -> None:
    r = client(cluster, "follower")
    with pytest.raises(ResponseError, match=error):
        r.execute_command(*args)
    assert total_blocked(cluster) == 0


def test_a_key_that_turns_into_another_type_does_not_wake_the_client(
    cluster: LocalCluster,
) -> None:
    r = client(cluster, "leader")
    call = Background(lambda: client(cluster, "follower").blpop(["turn:k"], timeout=15))
    wait_blocked(cluster, 1)
    # The follower counts its client blocked as soon as it relays the call. A retype that
    # reaches the leader before the relay is ordered before the call, which then answers
    # WRONGTYPE, as Redis would for a BLPOP sent after the SET (a CI failure, 2026-12-06).
    # Once the leader counts the key blocking, the call's first attempt is proposed and
    # every later write is ordered after it.
    wait_blocking_keys(r, 1)
    pipe = r.pipeline(transaction=True)
    pipe.lpush("turn:k", "x").delete("turn:k").set("turn:k", "now a string")
    pipe.execute()
    time.sleep(0.3)
    assert total_blocked(cluster) == 1  # still waiting, as in Redis
    r.delete("turn:k")
    r.lpush("turn:k", "y")
    assert call.join() == (b"turn:k", b"y")


def test_wrongtype_while_blocked_is_an_error_not_a_hang(cluster: LocalCluster) -> None:
    r = client(cluster, "leader")
    r.set("wt:key", "string")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        r.blpop(["wt:key"], 1)


def test_clients_blocked_through_a_follower_stay_blocked_across_a_leader_kill(
    tmp_path: Path,
) -> None:
    """A client blocked through a follower whose leader dies is neither dropped nor answered
    an error: the follower sends the call again (same request id) to the new leader, and the
    elements pushed after the election reach each client exactly once; a client of the
    killed leader loses its connection with it."""
    with running_cluster(tmp_path) as c:
        old = c.wait_for_leader()
        follower = (old + 1) % 3
        plain = [
            redis.Redis(port=c.nodes[i].redis_port, socket_timeout=30, retry=Retry(NoBackoff(), 0))
            for i in (follower, follower, old)
        ]
        calls = [Background(lambda r=r: r.blpop(["kill:q"], timeout=30)) for r in plain]
        wait_blocked(c, 3)
        c.kill(old)
        with pytest.raises(redis.exceptions.ConnectionError):
            calls[2].join(40)  # the leader's own client
        new = c.wait_for_leader(timeout=30)
        assert new != old
        writer = redis.Redis(port=c.nodes[new].redis_port, socket_timeout=30)
        wait_blocked(c, 2)  # parked on the new leader, counted by the follower
        writer.rpush("kill:q", "job1", "job2")
        got = sorted(call.join() for call in calls[:2])
        assert got == [(b"kill:q", b"job1"), (b"kill:q", b"job2")]
        assert writer.llen("kill:q") == 0


@pytest.mark.parametrize("role", ["leader", "follower"])
def test_xread_block_waits_for_entries_after_dollar(cluster: LocalCluster, role: str) -> None:
    r = client(cluster, role, protocol=3)
    writer = client(cluster, "leader")
    key = f"xs:{role}"
    writer.xadd(key, {"old": "1"})
    started = time.monotonic()
    assert not r.xread({key: "$"}, block=300)  # nothing after `$`: the null reply
    assert time.monotonic() - started >= 0.29
    call = Background(lambda: r.xread({key: "$"}, block=10_000))
    wait_blocked(cluster, 1)
    new_id = writer.xadd(key, {"new": "2"})
    got = call.join()
    assert got[key.encode()] == [[(new_id, {b"new": b"2"})]]  # only what came after `$`


def test_xreadgroup_block_delivers_new_entries_to_one_consumer_each(
    cluster: LocalCluster,
) -> None:
    writer = client(cluster, "leader")
    writer.xgroup_create("xg", "workers", id="$", mkstream=True)
    readers = [client(cluster, "follower"), client(cluster, "leader")]
    calls = [
        Background(lambda r=r, i=i: r.xreadgroup("workers", f"c{i}", {"xg": ">"}, block=10_000))
        for i, r in enumerate(readers)
    ]
    wait_blocked(cluster, 2)
    first = writer.xadd("xg", {"job": "1"})
    second = writer.xadd("xg", {"job": "2"})
    got = sorted(entry[0] for c in calls for _key, entries in c.join() for entry in entries)
    assert got == sorted([first, second])  # each entry to exactly one waiting consumer
    assert writer.xpending("xg", "workers")["pending"] == 2


def test_a_blocked_xreadgroup_ends_when_its_stream_or_group_goes_away(
    cluster: LocalCluster,
) -> None:
    writer = client(cluster, "leader")
    for ending, expected in [
        (lambda: writer.delete("xgone"), "UNBLOCKED the stream key no longer exists"),
        (lambda: writer.set("xgone", "now a string"), "UNBLOCKED the stream key no longer"),
        (lambda: writer.xgroup_destroy("xgone", "g"), "NOGROUP"),
    ]:
        writer.delete("xgone")
        writer.xgroup_create("xgone", "g", id="$", mkstream=True)
        reader = client(cluster, "follower")
        call = Background(lambda r=reader: r.xreadgroup("g", "c", {"xgone": ">"}, block=0))
        wait_blocked(cluster, 1)
        ending()
        with pytest.raises(ResponseError, match=expected):
            call.join()


def test_a_move_woken_into_a_destination_of_another_type_answers_wrongtype(
    cluster: LocalCluster,
) -> None:
    r = client(cluster, "leader")
    r.set("mvt:dst", "not a list")
    call = Background(lambda: client(cluster, "follower").brpoplpush("mvt:src", "mvt:dst", 10))
    wait_blocked(cluster, 1)
    r.rpush("mvt:src", "foo")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        call.join()
    assert r.lrange("mvt:src", 0, -1) == [b"foo"]  # nothing moved
