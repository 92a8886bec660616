"""The Celery app of test_redis_apps.py: the test sends with `make_app`, its worker runs
`celery -A celery_app worker` with this directory on PYTHONPATH and the app's settings in the
environment (RC_BROKER, RC_BACKEND, RC_MASTER_NAME for `sentinel://` URLs, RC_RUNS).

The settings are what a deployment on raftcache needs besides Sentinel URLs: an election
answers -CLUSTERDOWN (nothing was applied, retry), which redis-py raises as a ResponseError;
Celery treats that as fatal unless told it is worth reconnecting for.
"""

from __future__ import annotations

import os

from celery import Celery

MASTER_NAME = "mymaster"  # what raftcache's SENTINEL MASTERS calls the leader
RETRYABLE = ["redis.exceptions.ClusterDownError", "redis.exceptions.TryAgainError"]


def make_app(broker: str, backend: str, master_name: str | None = None) -> Celery:
    """A Celery app on raftcache: `redis://` or `sentinel://a;sentinel://b;...` URLs."""
    sentinel = {"master_name": master_name} if master_name else {}
    app = Celery("celery_app", broker=broker, backend=backend)
    app.conf.update(
        # A message delivered but not acked when the connection broke (the leader died
        # between BRPOP and the ack) stays in `unacked` until this timeout, then is delivered
        # again: 10 s instead of an hour, swept every second, so the test does not wait.
        broker_transport_options={
            **sentinel,
            "visibility_timeout": 10,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
        # A BRPOP parked on a leader that stepped down answers -CLUSTERDOWN: reconnect,
        # don't stop the worker (Celery's default for a ResponseError from the broker).
        broker_channel_error_retry=True,
        broker_connection_retry_on_startup=True,
        # Storing a result retries connection errors, and CLUSTERDOWN/TRYAGAIN as such.
        result_backend_always_retry=True,
        result_backend_max_retries=50,
        result_backend_transport_options={**sentinel, "additional_connection_errors": RETRYABLE},
        worker_prefetch_multiplier=4,
    )
    app.task(name="celery_app.double")(double)
    return app


def double(n: int) -> int:
    """Record this run in RC_RUNS (one short O_APPEND write: atomic), then answer 2n."""
    with open(os.environ["RC_RUNS"], "a") as runs:
        runs.write(f"{n}\n")
    return 2 * n


app = (
    make_app(os.environ["RC_BROKER"], os.environ["RC_BACKEND"], os.environ.get("RC_MASTER_NAME"))
    if "RC_BROKER" in os.environ
    else None
)
