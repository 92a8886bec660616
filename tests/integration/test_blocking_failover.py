"""A blocking pop in flight when the leader dies (issue 11): the element is delivered exactly
once or stays in the list, never lost.

The Raft links are slowed (a proxy adds one-way latency), so a pop proposed by the leader
reaches the followers well before the leader hears their acks; the leader is SIGKILLed in
between. The new leader then holds the pop in its log and commits it, with nobody left to
answer: the element leaves the list, and the client must still get it.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
import redis
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.chaos.netproxy import Delay
from raftcache.node.keyspace.reply import from_proto
from raftcache.v1 import cache_pb2
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from tests.integration.conftest import running_cluster, stubs_for
from tests.integration.test_redis_blocking import Background, wait_blocked

pytestmark = pytest.mark.integration

ONE_WAY_S = 0.15  # Raft latency while the pop is in flight (elections take 0.3-0.7 s)


def retrying(port: int) -> redis.Redis:
    """A client that reconnects and resends on a lost connection (redis-py, Celery, RQ)."""
    return redis.Redis(port=port, socket_timeout=60, retry=Retry(ExponentialBackoff(cap=1.0), 20))


def push_then_kill(
    c: LocalCluster, writer: redis.Redis, key: str, leader: int, push: str = "exec"
) -> None:
    """Push one element through the leader, then SIGKILL it soon after the push is
    acknowledged.

    push="exec": the RPUSH inside MULTI/EXEC, acknowledged at apply; the pop it wakes goes
    in an entry of its own (as the pops woken by scripts and by writes forwarded from
    followers do), which is on the followers, its acks not back, when the leader dies.
    push="plain": a plain RPUSH, whose entry carries the pop too (the leader proposes the
    waiters' attempts with a write to their keys): the pop is committed with the push, and
    its answer may or may not have left the leader when it dies."""
    net = c.net
    assert net is not None
    net.set_delay(Delay(ONE_WAY_S))
    try:
        time.sleep(0.3)  # heartbeats settle into the new latency
        if push == "exec":
            writer.pipeline(transaction=True).rpush(key, "job").execute()
        else:
            writer.rpush(key, "job")
        time.sleep(1.5 * ONE_WAY_S)  # the pop's entry is on the followers, its acks are not back
        c.kill(leader)
    finally:
        net.set_delay(None)


@pytest.mark.parametrize(
    ("command", "push"), [("brpop", "exec"), ("brpop", "plain"), ("blmove", "exec")]
)
def test_a_pop_in_flight_when_the_leader_dies_reaches_a_client_on_a_follower(
    tmp_path: Path, command: str, push: str
) -> None:
    """The follower relaying the call retries it at the new leader with the same request id,
    so the pop the old leader proposed (committed by the new one) answers the retry."""
    with running_cluster(tmp_path, proxy=True) as c:
        old = c.wait_for_leader()
        follower = (old + 1) % 3
        consumer = retrying(c.nodes[follower].redis_port)
        key = f"fo:{command}"
        if command == "brpop":
            call = Background(lambda: consumer.brpop([key], timeout=30))
        else:
            call = Background(lambda: consumer.blmove(key, "fo:dst", 30, "RIGHT", "LEFT"))
        wait_blocked(c, 1)
        writer = redis.Redis(port=c.nodes[old].redis_port, socket_timeout=30)
        push_then_kill(c, writer, key, old, push)
        new = c.wait_for_leader(timeout=30)
        assert new != old
        got = call.join(60)
        reader = redis.Redis(port=c.nodes[new].redis_port, socket_timeout=30)
        left = reader.lrange(key, 0, -1)
        if command == "brpop":
            assert (got, left) == ((key.encode(), b"job"), []), (
                f"the element was lost or duplicated: the client got {got!r}, the list "
                f"holds {left!r}"
            )
        else:
            moved = reader.lrange("fo:dst", 0, -1)
            assert (got, left, moved) == (b"job", [], [b"job"])


def test_a_pop_in_flight_when_the_leader_dies_is_put_back_if_the_client_left(
    tmp_path: Path,
) -> None:
    """A client of a follower that goes away while the follower is still sending its call
    again: nobody will collect what the dead leader's pop took, so the follower asks the new
    leader for it and puts it back (as the leader does for a client that leaves mid-pop)."""
    with running_cluster(tmp_path, proxy=True) as c:
        old = c.wait_for_leader()
        ghost = redis.Redis(port=c.nodes[(old + 1) % 3].redis_port, socket_timeout=30)
        ghost.ping()
        conn = ghost.connection_pool.get_connection()
        conn.send_command("BRPOP", "gone:q", 30)
        wait_blocked(c, 1)
        writer = redis.Redis(port=c.nodes[old].redis_port, socket_timeout=30)
        push_then_kill(c, writer, "gone:q", old)
        conn.disconnect()  # the client leaves while its call is in flight or sent again
        new = c.wait_for_leader(timeout=30)
        reader = redis.Redis(port=c.nodes[new].redis_port, socket_timeout=30)
        end = time.monotonic() + 20
        while reader.lrange("gone:q", 0, -1) != [b"job"]:
            assert time.monotonic() < end, "the element taken for a client that left is gone"
            time.sleep(0.1)
        time.sleep(1)
        assert reader.lrange("gone:q", 0, -1) == [b"job"]  # put back once


def test_a_move_in_flight_when_the_leader_dies_is_never_lost_for_a_client_on_the_leader(
    tmp_path: Path,
) -> None:
    """A client connected to the dying leader loses its reply with the connection (with
    Redis as here): a BRPOP's element may then be gone. The reliable-queue pattern keeps it:
    BLMOVE to a processing list leaves the element in the source or in the processing list,
    whatever the client heard."""
    with running_cluster(tmp_path, proxy=True) as c:
        old = c.wait_for_leader()
        consumer = redis.Redis(port=c.nodes[old].redis_port, socket_timeout=60)
        call = Background(lambda: consumer.blmove("rq:src", "rq:processing", 30, "RIGHT", "LEFT"))
        wait_blocked(c, 1)
        writer = redis.Redis(port=c.nodes[old].redis_port, socket_timeout=30)
        push_then_kill(c, writer, "rq:src", old, "plain")
        with contextlib.suppress(redis.exceptions.ConnectionError):  # died with the connection
            assert call.join(60) == b"job"  # the reply got out before the kill
        new = c.wait_for_leader(timeout=30)
        reader = redis.Redis(port=c.nodes[new].redis_port, socket_timeout=30)
        held = reader.lrange("rq:src", 0, -1) + reader.lrange("rq:processing", 0, -1)
        assert held == [b"job"]


def test_a_grpc_blocking_call_retried_with_its_request_id_is_answered_once(
    tmp_path: Path,
) -> None:
    """Exec's own request_id works like a relay's: a retry answers what the call took."""
    with running_cluster(tmp_path) as c:
        leader = c.wait_for_leader()
        writer = redis.Redis(port=c.nodes[leader].redis_port, socket_timeout=30)
        writer.rpush("g:q", "a", "b")
        # parked on the leader, then relayed by a follower
        cases = [(leader, [b"g:q", b"b"], [b"a"]), ((leader + 1) % 3, [b"g:q", b"a"], [])]
        for seq, (i, popped, left) in enumerate(cases, 1):
            stubs = stubs_for(c, i)
            request = cache_pb2.ExecRequest(
                op=cache_pb2.DataOp(call=cache_pb2.RedisCall(argv=[b"BRPOP", b"g:q", b"5"])),
                request_id=cache_pb2.RequestId(client_id="sdk-1", seq=seq),
            )
            first = from_proto(stubs.cache.Exec(request, timeout=30).value.reply)
            again = from_proto(stubs.cache.Exec(request, timeout=30).value.reply)
            stubs.close()
            assert first == again == popped
            assert writer.lrange("g:q", 0, -1) == left
        # what a follower sends when the client of call 2 left: the take, then its undo
        stubs = stubs_for(c, (leader + 1) % 3)
        for argv, reply in [
            ([b"raftcache.taken", b"BRPOP", b"g:q", b"5"], [b"g:q", b"a"]),
            ([b"raftcache.unpop", b"RPUSH", b"g:q", b"a"], 1),
            ([b"raftcache.unpop", b"RPUSH", b"g:q", b"a"], 0),  # once only
        ]:
            request = cache_pb2.ExecRequest(
                op=cache_pb2.DataOp(call=cache_pb2.RedisCall(argv=argv)),
                request_id=cache_pb2.RequestId(client_id="sdk-1", seq=2),
            )
            assert from_proto(stubs.cache.Exec(request, timeout=30).value.reply) == reply
        stubs.close()
        assert writer.lrange("g:q", 0, -1) == [b"a"]
