"""RQ jobs and worker settings of test_redis_apps.py: the worker runs
`rq worker -c rq_jobs` with this directory on PYTHONPATH and RC_SENTINELS (host:port,...) and
RC_RUNS set; the test enqueues `rq_jobs.square` by name."""

from __future__ import annotations

import os

from redis.backoff import ExponentialBackoff
from redis.exceptions import ClusterDownError, ConnectionError, TimeoutError, TryAgainError
from redis.retry import Retry

MASTER_NAME = "mymaster"  # what raftcache's SENTINEL MASTERS calls the leader


def connection_kwargs() -> dict[str, object]:
    """redis-py settings for raftcache: resend what an election refused (-CLUSTERDOWN, nothing
    was applied) as well as what a lost connection did not deliver, for about 4 s (an election
    here takes 1-2 s). Not longer: redis-py 8's retries of one command reconnect to the address
    it had, never asking Sentinel again (redis/redis-py#3874), so after a leader dies a long
    budget only delays the ConnectionError that makes the next command find the new leader."""
    return {
        "socket_timeout": 10,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 10),
        "retry_on_error": [ConnectionError, TimeoutError, ClusterDownError, TryAgainError],
    }


def square(n: int) -> int:
    """Record this run in RC_RUNS (one short O_APPEND write), then answer n squared."""
    with open(os.environ["RC_RUNS"], "a") as runs:
        runs.write(f"{n}\n")
    return n * n


# `rq worker -c rq_jobs` reads these module attributes as its settings.
if "RC_SENTINELS" in os.environ:
    SENTINEL = {
        "INSTANCES": [
            (host, int(port))
            for host, port in (a.rsplit(":", 1) for a in os.environ["RC_SENTINELS"].split(","))
        ],
        "MASTER_NAME": MASTER_NAME,
        "CONNECTION_KWARGS": connection_kwargs(),
        "SENTINEL_KWARGS": {"socket_timeout": 5},
    }
