"""The Redis port through failures, on a 3-node cluster of this module's own.

- The leader SIGKILLed under a redis-py write workload that retries on another node: the
  workload resumes, and every write ever acknowledged reads back from the new leader.
- No leader at all (two nodes stopped): every command answers -CLUSTERDOWN within the
  client's timeout instead of hanging, and the cluster serves again once they return.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
from raftcache.chaos.local_cluster import LocalCluster
from raftcache.v1 import cluster_pb2
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, TryAgainError
from redis.retry import Retry

from tests.integration.conftest import running_cluster

pytestmark = pytest.mark.integration

CLIENT_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("redis-failover")) as c:
        yield c


def connect(cluster: LocalCluster, i: int, protocol: int, **kwargs: object) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=cluster.nodes[i].redis_port,
        protocol=protocol,
        decode_responses=True,
        socket_timeout=CLIENT_TIMEOUT_S,
        socket_connect_timeout=CLIENT_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),  # the workload below retries itself, on another node
        **kwargs,  # type: ignore[arg-type]
    )


# Worth another attempt (SET of the same value is idempotent): the node is gone, has no
# leader (CLUSTERDOWN), is overloaded (TRYAGAIN) or lost track of the outcome (UNKNOWN).
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, ClusterDownError, TryAgainError)


class Writer(threading.Thread):
    """SETs fresh keys; each write is retried on the next node until acknowledged. With a
    `depth`, `depth` SETs at a time in a non-transactional pipeline (a node sends them to
    the proposer as one write, node/DESIGN.md "Pipelined SETs as one write"): each SET
    acknowledged on its own reply, the others retried."""

    def __init__(self, cluster: LocalCluster, index: int, protocol: int, depth: int = 1) -> None:
        super().__init__(name=f"writer-{index}", daemon=True)
        self.index = index
        self.depth = depth
        self.clients = [connect(cluster, i, protocol) for i in range(len(cluster.nodes))]
        self.stop = threading.Event()
        self.acked: dict[str, tuple[str, float]] = {}  # key -> (value, ack time)
        self.retries: Counter[str] = Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(self.index)
        node = rng.randrange(len(self.clients))
        n = 0
        try:
            while not self.stop.is_set() and self.depth > 1:
                node = self._pipelined(node, n)
                n += self.depth
            while not self.stop.is_set():
                key, value = f"fo:{self.index}:{n}", f"v{self.index}-{n}"
                while not self.stop.is_set():
                    try:
                        assert self.clients[node].set(key, value) is True
                        self.acked[key] = (value, time.monotonic())
                        break
                    except RETRYABLE as exc:
                        self.retries[type(exc).__name__] += 1
                    except redis.ResponseError as exc:
                        if not str(exc).startswith("UNKNOWN"):
                            raise
                        self.retries["UNKNOWN"] += 1
                    node = (node + 1) % len(self.clients)
                    time.sleep(0.02)
                n += 1
        except BaseException as exc:
            self.error = exc
        finally:
            for client in self.clients:
                client.close()

    def _pipelined(self, node: int, n: int) -> int:
        """SETs n..n+depth-1 until each is acknowledged; returns the node it ended on."""
        pending = {f"fo:{self.index}:{m}": f"v{self.index}-{m}" for m in range(n, n + self.depth)}
        while pending and not self.stop.is_set():
            pipe = self.clients[node].pipeline(transaction=False)
            for key, value in pending.items():
                pipe.set(key, value)
            try:
                replies = pipe.execute(raise_on_error=False)
            except RETRYABLE as exc:  # the connection: no reply at all
                replies = [exc] * len(pending)
            for (key, value), reply in zip(list(pending.items()), replies, strict=True):
                if reply is True:
                    self.acked[key] = (value, time.monotonic())
                    del pending[key]
                elif isinstance(reply, RETRYABLE):
                    self.retries[type(reply).__name__] += 1
                elif isinstance(reply, redis.ResponseError) and str(reply).startswith("UNKNOWN"):
                    self.retries["UNKNOWN"] += 1
                else:
                    raise AssertionError(f"SET {key} answered {reply!r}")
            if pending:
                node = (node + 1) % len(self.clients)
                time.sleep(0.02)
        return node


def test_leader_sigkill_under_redis_writes_loses_no_acknowledged_write(
    cluster: LocalCluster,
) -> None:
    # half of them pipeline 8 SETs at a time: groups of SETs across the kill
    writers = [Writer(cluster, i, protocol=2 + i % 2, depth=8 if i >= 3 else 1) for i in range(6)]
    for w in writers:
        w.start()
    time.sleep(2.0)
    old_leader = cluster.wait_for_leader()
    killed_at = time.monotonic()
    cluster.kill(old_leader)
    time.sleep(6.0)
    deadline = time.monotonic() + 30.0  # every pipelined writer acknowledged after the kill
    while time.monotonic() < deadline and not all(
        any(t > killed_at for _, t in list(w.acked.values())) for w in writers[3:]
    ):
        time.sleep(0.2)
    for w in writers:
        w.stop.set()
    for w in writers:
        w.join(30)
    assert not any(w.is_alive() for w in writers), "a writer hung"
    errors = [w.error for w in writers if w.error is not None]
    assert not errors, errors

    acked = {k: v for w in writers for k, v in w.acked.items()}
    before = sum(1 for _, t in acked.values() if t < killed_at)
    after = len(acked) - before
    retries = sum((w.retries for w in writers), Counter[str]())
    acks = sorted(t for _, t in acked.values())
    gap = max((b - a for a, b in itertools.pairwise(acks)), default=0.0)
    print(f"acked {before} before the kill, {after} after; retries {dict(retries)}; gap {gap:.2f}s")
    assert before > 50 and after > 50, "the workload must run on both sides of the kill"
    for w in writers[3:]:  # the pipelined writers too
        times = [t for _, t in w.acked.values()]
        assert times, f"writer {w.index} acknowledged nothing"
        assert min(times) < killed_at < max(times), f"writer {w.index} acked on one side only"

    new_leader = cluster.wait_for_leader(exclude=old_leader)
    for protocol in (2, 3):
        r = connect(cluster, new_leader, protocol)
        keys = sorted(acked)
        got: list[str | None] = []
        for i in range(0, len(keys), 500):
            got += r.mget(keys[i : i + 500])
        missing = [(k, acked[k][0], g) for k, g in zip(keys, got, strict=True) if g != acked[k][0]]
        r.close()
        assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {missing[:5]}"

    # the killed node comes back, catches up and serves the same data
    cluster.start_node(old_leader)
    cluster.wait_until_ready(timeout=60)
    cluster.wait_converged(timeout=60)
    back = connect(cluster, old_leader, 3)
    sample = random.Random(0).sample(sorted(acked), min(200, len(acked)))
    assert back.mget(sample) == [acked[k][0] for k in sample]
    back.close()


def _knows_no_leader(cluster: LocalCluster, i: int) -> bool:
    status = cluster.status(i)
    return (
        status is not None and status.role != cluster_pb2.LEADER and not status.leader_client_addr
    )


def test_no_leader_answers_clusterdown_within_the_client_timeout(cluster: LocalCluster) -> None:
    cluster.wait_until_ready(timeout=60)
    survivor = cluster.wait_for_leader()  # the leader is left alone: it must step down
    stopped = [i for i in range(len(cluster.nodes)) if i != survivor]
    for i in stopped:
        cluster.kill(i)
    try:
        for protocol in (2, 3):
            r = connect(cluster, survivor, protocol)
            readonly = connect(cluster, survivor, protocol, single_connection_client=True)
            readonly.execute_command("READONLY")
            commands = {
                "SET": lambda r=r: r.set("nl:k", "v"),
                "GET": lambda r=r: r.get("nl:k"),
                "INCR": lambda r=r: r.incr("nl:n"),
                "RPUSH": lambda r=r: r.rpush("nl:l", "x"),
                "PUBLISH": lambda r=r: r.publish("nl:ch", "m"),
                "MULTI/EXEC": lambda r=r: r.pipeline(transaction=True).set("nl:t", "1").execute(),
                "READONLY GET": lambda ro=readonly: ro.get("nl:k"),
            }
            deadline = time.monotonic() + 10
            while not _knows_no_leader(cluster, survivor):  # a leader steps down within ~1 s
                assert time.monotonic() < deadline, "the lone node still claims to lead"
                time.sleep(0.1)
            for name, call in commands.items():
                started = time.monotonic()
                with pytest.raises(ClusterDownError):
                    call()
                elapsed = time.monotonic() - started
                assert elapsed < CLIENT_TIMEOUT_S, (
                    f"{name} took {elapsed:.2f} s (protocol {protocol})"
                )
            assert r.ping() is True  # the connection itself is fine
            r.close()
            readonly.close()
    finally:
        for i in stopped:
            cluster.start_node(i)
    cluster.wait_until_ready(timeout=60)
    r = connect(cluster, survivor, 3)
    deadline = time.monotonic() + 20
    while True:  # back in service
        try:
            assert r.set("nl:k", "after") is True
            break
        except RETRYABLE:
            assert time.monotonic() < deadline, "writes did not resume after the nodes returned"
            time.sleep(0.2)
    assert r.get("nl:k") == "after"
    r.close()


class FollowerPusher(threading.Thread):
    """RPUSHes unique elements through one follower, one connection, no client retries:
    alone, in a MULTI/EXEC (with an INCR), or 5 at a time in a non-transactional pipeline
    (the follower relays those as one batch)."""

    def __init__(self, port: int, index: int, how: str) -> None:
        super().__init__(name=f"pusher-{index}", daemon=True)
        self.r = redis.Redis(
            host="127.0.0.1", port=port, socket_timeout=20, retry=Retry(NoBackoff(), 0)
        )
        self.index, self.how = index, how
        self.stop = threading.Event()
        self.acked: list[str] = []
        self.refused: list[str] = []  # -CLUSTERDOWN: never sent, nothing applied
        self.errors: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            items = [f"{self.index}-{n + k}" for k in range(5 if self.how == "pipeline" else 1)]
            n += len(items)
            try:
                if self.how == "alone":
                    self.r.rpush("xo:list", items[0])
                else:
                    p = self.r.pipeline(transaction=self.how == "multi")
                    for item in items:
                        p.rpush("xo:list", item)
                    if self.how == "multi":
                        p.incr("xo:multis")
                    p.execute()
                self.acked += items
            except ClusterDownError:  # an election longer than the follower's wait
                self.refused += items
                time.sleep(0.05)
            except redis.RedisError as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
        self.r.close()


def test_writes_relayed_by_a_follower_apply_exactly_once_across_a_leader_sigkill(
    cluster: LocalCluster,
) -> None:
    """A follower relays each write under a request id and sends it again to the next leader
    when the one it went to dies; the state machine answers a retry of a committed write
    from memory. So its clients hear no -UNKNOWN across the failover, and every element is
    in the list exactly once (before, thousands of writes answered -UNKNOWN or -CLUSTERDOWN,
    and a client retrying itself could push twice). -CLUSTERDOWN (no leader for longer than
    the follower waits; nothing applied) is allowed, and what it refused must be absent."""
    cluster.wait_until_ready(timeout=60)
    leader = cluster.wait_for_leader()
    relay = next(i for i in range(len(cluster.nodes)) if i != leader)
    port = cluster.nodes[relay].redis_port
    pushers = [
        FollowerPusher(port, i, how) for i, how in enumerate(("alone", "multi", "pipeline") * 2)
    ]
    for p in pushers:
        p.start()
    time.sleep(1.5)
    cluster.kill(leader)
    time.sleep(3.0)
    for p in pushers:
        p.stop.set()
    for p in pushers:
        p.join(40)
    try:
        assert not any(p.is_alive() for p in pushers), "a client hung"
        errors = [e for p in pushers for e in p.errors]
        assert not errors, f"{len(errors)} writes failed across the failover: {errors[:5]}"
        log = cluster.nodes[relay].log_path.read_text()
        assert "relayed write's outcome unknown; sending it again" in log, "nothing was resent"
        r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=20)
        got = [x.decode() for x in r.lrange("xo:list", 0, -1)]
        multis = int(r.get("xo:multis") or 0)
        r.close()
        acked = [a for p in pushers for a in p.acked]
        counts = Counter(got)
        twice = [e for e, c in counts.items() if c > 1]
        assert not twice, f"{len(twice)} elements pushed twice, e.g. {twice[:5]}"
        assert sorted(got) == sorted(acked), (
            f"{len(set(acked) - set(got))} acknowledged pushes missing, "
            f"{len(set(got) - set(acked))} unacknowledged ones present"
        )
        refused = [r for p in pushers for r in p.refused]
        print(f"\n{len(acked)} pushes acknowledged, {len(refused)} refused (CLUSTERDOWN)")
        assert multis == sum(len(p.acked) for p in pushers if p.how == "multi")
        assert len(acked) > 100, "the workload must run"
    finally:
        cluster.start_node(leader)
        cluster.wait_until_ready(timeout=60)
