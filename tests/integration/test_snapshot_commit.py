"""A deposed leader never acknowledges a write that did not commit, when the new leader
catches it up with a snapshot (consensus/log_matching.py, "Snapshot messages").

pysyncobj's follower raises its commit index to min(leader's commit, its own last index) on
every snapshot message, which vouches for none of its entries. A leader cut off from the
others appends a client's write it can never commit; the others elect a leader and compact
their log past that entry; on the heal the new leader streams its snapshot, and the old
leader, now a follower, committed and applied its own orphaned entry and answered its
client OK: an acknowledged write that no other replica ever held. With plain pysyncobj this
script lost the write in 2 of 5 trials at the default 5 s commit timeout; with a commit
timeout longer than the heal, in every one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from raftcache.chaos.local_cluster import LocalCluster

from tests.integration.conftest import running_cluster

pytestmark = pytest.mark.integration

ENTRIES = 150  # past --compaction-entries: the new leader snapshots and drops the old log
FILL = b"x" * (48 << 10)  # a ~7 MB snapshot: streamed in 1 MiB chunks, the old leader ticks
# between them (with the snapshot in one message it is loaded before the tick that applies)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    # The orphaned write's commit timeout outlasts the test (its answer must come from the
    # snapshot install), and the new leader compacts after 100 entries (the node's minimum).
    args = ["--commit-timeout-ms", "30000", "--compaction-entries", "100"]
    with running_cluster(tmp_path, proxy=True, extra_args=args) as c:
        yield c


@pytest.mark.timeout(120)
def test_a_deposed_leader_caught_up_by_snapshot_never_acks_its_orphaned_write(
    cluster: LocalCluster,
) -> None:
    net = cluster.net
    assert net is not None
    old = cluster.wait_until_ready(60)
    stale = redis.Redis(port=cluster.nodes[old].redis_port, socket_timeout=60)
    stale.ping()
    net.isolate(cluster.nodes[old].node_id)
    reply: list[object] = []

    def orphaned_write() -> None:
        try:
            reply.append(stale.set("orphan", "never committed"))
        except redis.RedisError as exc:
            reply.append(exc)

    writer = threading.Thread(target=orphaned_write, daemon=True)
    writer.start()

    new = cluster.wait_for_leader(timeout=30, exclude=old)
    fresh = redis.Redis(port=cluster.nodes[new].redis_port, socket_timeout=10)
    for i in range(ENTRIES):  # one entry each (a client waiting for each reply)
        fresh.set(f"fill:{i}", FILL)
    deadline = time.monotonic() + 30
    while (status := cluster.status(new)) is None or status.snapshots_taken < 1:
        assert time.monotonic() < deadline, "the new leader never compacted its log"
        time.sleep(0.05)

    net.heal()
    cluster.wait_converged(timeout=30)  # the old leader installed the snapshot
    # Answered when the snapshot replaced the entry (not at the 30 s commit timeout).
    writer.join(10)

    for node in cluster.nodes:
        r = redis.Redis(port=node.redis_port, socket_timeout=10)
        assert r.execute_command("READONLY") is True
        assert r.get("orphan") is None, f"{node.node_id} holds a write no majority received"
    assert fresh.get("orphan") is None
    # Never OK: outcome unknown (it was not applied here, and only the new leader could
    # have committed it had the entry reached it).
    assert len(reply) == 1 and isinstance(reply[0], redis.ResponseError), reply
    assert str(reply[0]).startswith("UNKNOWN outcome unknown"), reply
    assert "(timeout)" not in str(reply[0]), "answered by the commit timeout, not the install"
