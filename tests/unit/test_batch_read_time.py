"""Cache.Batch reads at the applied cluster time, as unary reads do (node/engine.py
READ_AT_CLUSTER_TIME), never at the node's wall clock: a key hidden by a clock ahead of
every committed stamp could come back on a leader whose clock is behind."""

from __future__ import annotations

import asyncio
from typing import Any

from raftcache.node.batch import BatchRunner
from raftcache.node.requests import Limits
from raftcache.v1 import cache_pb2

CLUSTER_TIME_MS, WALL_MS = 1_000, 99_000


class _Replica:
    cluster_time_ms = CLUSTER_TIME_MS

    def __init__(self) -> None:
        self.asked: list[int] = []

    def get(self, key: bytes, now_ms: int) -> None:
        self.asked.append(now_ms)


class _View:
    def __init__(self) -> None:
        self.replica = _Replica()
        self.batch_rpcs = self.batch_ops = 0

    def check_staleness(self, *_: Any) -> None:
        pass

    def count_read(self, key: bytes, hit: bool) -> None:
        pass


class _Proposer:
    """A leader whose clock runs far ahead of what is committed."""

    def is_leader(self) -> bool:
        return True

    def now_ms(self) -> int:
        return WALL_MS

    def barrier(self, waiter: Any) -> None:
        asyncio.get_running_loop().call_soon(waiter.set_result, None)


def test_stale_and_linearizable_reads_in_a_batch_read_at_cluster_time() -> None:
    view = _View()
    runner = BatchRunner(view, _Proposer(), None, Limits())  # type: ignore[arg-type]
    request = cache_pb2.BatchRequest(
        ops=[
            cache_pb2.BatchOp(get=cache_pb2.GetRequest(key=b"a", consistency=cache_pb2.STALE)),
            cache_pb2.BatchOp(get=cache_pb2.GetRequest(key=b"b")),
        ]
    )
    response = asyncio.run(runner.run(request, forwarded=False, timeout=None))
    assert [r.WhichOneof("result") for r in response.results] == ["get", "get"]
    assert view.replica.asked == [CLUSTER_TIME_MS, CLUSTER_TIME_MS]
