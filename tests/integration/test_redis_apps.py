"""Job queues and web sessions on a real 3-node cluster, through the libraries' own workers.

- Celery 5 (kombu's Redis transport, Redis result backend), through Sentinel URLs that list
  every node, and through one follower that survives: a worker process runs 200 tasks sent by
  this process; the leader is SIGKILLed midway; every result arrives. Celery's Redis transport
  is at-least-once, and not even that across a failover: it pops with BRPOP and records the
  message as unacked afterwards, from the client, so the one message whose BRPOP reply was in
  flight when the leader died is gone (with Redis too; here the window is a Raft round trip).
  The test prints how many tasks ran more than once and which one was lost that way, and
  fails on any other loss (see `explain_lost`).
- RQ: an `rq worker` process (Sentinel settings) runs jobs enqueued before a leader SIGKILL
  and after it; every job's result reads back.
- Flask-Session: a session written through a follower reads back across requests, carries
  the configured TTL, and expires with it.

Sentinel is what a deployment uses: it cannot know which node will survive, so it lists them
all and asks any of them where the leader is (SENTINEL MASTERS answers the leader on every
node); the client then talks to the leader directly, without a relay hop.
"""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from raftcache.chaos.local_cluster import LocalCluster

from tests.integration.conftest import running_cluster

pytestmark = pytest.mark.integration
T = TypeVar("T")

APPS = Path(__file__).parent / "apps"  # the modules the workers import
WORKER_READY_S = 40.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("redis-apps")) as c:
        yield c


def until(check: Callable[[], T], timeout: float, what: str, worker: Worker | None = None) -> T:
    """Poll `check` until it is truthy; fail with `what` (and the worker's last log lines)
    after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            log = f"; the worker's log ends:\n{worker.tail()}" if worker else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{log}")
        time.sleep(0.05)


def follower(cluster: LocalCluster) -> int:
    leader = cluster.wait_for_leader()
    return next(i for i in range(len(cluster.nodes)) if i != leader)


def heal(cluster: LocalCluster, killed: int) -> None:
    """Bring a killed node back so the next test starts with three."""
    cluster.start_node(killed)
    cluster.wait_until_ready(timeout=60)


class Worker:
    """A library's worker as a child process with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                args,
                env={**os.environ, "PYTHONPATH": str(APPS), **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def assert_alive(self) -> None:
        assert self.process.poll() is None, (
            f"the worker exited with {self.process.returncode}:\n{self.tail()}"
        )

    def stop(self) -> None:
        """SIGTERM (a warm shutdown for both Celery and RQ), SIGKILL after 20 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def run_counts(runs: Path) -> Counter[int]:
    return Counter(int(line) for line in runs.read_text().split()) if runs.exists() else Counter()


def sentinels(cluster: LocalCluster) -> list[tuple[str, int]]:
    return [("127.0.0.1", n.redis_port) for n in cluster.nodes]


# -- Celery ------------------------------------------------------------------------------


CELERY_TASKS = 200


@pytest.mark.parametrize("via", ["sentinel", "follower"])
def test_celery_worker_runs_every_task_through_a_leader_sigkill(
    cluster: LocalCluster, tmp_path: Path, via: str
) -> None:
    """`sentinel`: what a deployment uses. `follower`: broker and backend on one follower that
    survives, which relays BRPOP to the leader and answers -CLUSTERDOWN when it dies."""
    from kombu.exceptions import OperationalError

    from tests.integration.apps.celery_app import MASTER_NAME, make_app

    if via == "sentinel":
        url = ";".join(f"sentinel://{h}:{p}/0" for h, p in sentinels(cluster))
        master_name: str | None = MASTER_NAME
        worker_node = None
    else:
        worker_node = follower(cluster)
        url = f"redis://127.0.0.1:{cluster.nodes[worker_node].redis_port}/0"
        master_name = None
    app = make_app(url, url, master_name)
    runs = tmp_path / "runs.txt"
    # The solo pool: with prefork, kombu 5.7 sometimes dies on the lost connection
    # (AttributeError: 'NoneType' object has no attribute 'hostname', restoring unacked
    # messages while the connection closes); it does the same against Redis 7.0 itself.
    worker = Worker(
        [sys.executable, "-m", "celery", "-A", "celery_app", "worker",
         "--pool", "solo", "--loglevel", "INFO"],
        {"RC_BROKER": url, "RC_BACKEND": url, "RC_RUNS": str(runs)}
        | ({"RC_MASTER_NAME": master_name} if master_name else {}),
        tmp_path / "celery-worker.log",
    )  # fmt: skip
    started = time.monotonic()
    leader: int | None = None
    resends: Counter[str] = Counter()

    def send(n: int) -> Any:
        """send_task, resent with the same task id on a refused or lost publish (so a resend
        whose first copy did land shows up as a task run twice, counted below)."""
        task_id = str(uuid.uuid4())
        for _ in range(100):
            try:
                return app.send_task("celery_app.double", args=[n], task_id=task_id)
            except (OperationalError, redis.RedisError, AttributeError) as exc:
                # AttributeError: kombu 5's Redis transport can publish on a channel whose
                # client it has just dropped while reconnecting ('NoneType' object has no
                # attribute 'client', kombu/transport/redis.py); the publish did not happen.
                resends[type(exc).__name__] += 1
                time.sleep(0.1)
        pytest.fail(f"could not send task {n}: {dict(resends)}")

    try:
        first = send(0)
        try:
            assert first.get(timeout=WORKER_READY_S) == 0
        except Exception as exc:
            pytest.fail(f"the worker answered no first task ({exc!r}):\n{worker.tail()}")
        results = [first] + [send(n) for n in range(1, CELERY_TASKS // 2)]
        until(
            lambda: len(run_counts(runs)) >= CELERY_TASKS // 4, 30, "a quarter of the tasks", worker
        )
        leader = cluster.wait_for_leader()
        if leader == worker_node:
            leader = None  # nothing was killed: nothing to heal
            pytest.skip("the worker's node won an election under load before the kill")
        cluster.kill(leader)
        killed_at = time.monotonic()
        ran_before_kill = len(run_counts(runs))
        results += [send(n) for n in range(CELERY_TASKS // 2, CELERY_TASKS)]

        # Wait until every task ran, or nothing ran for longer than a visibility timeout.
        progress, last = time.monotonic(), 0
        while (ran := len(run_counts(runs))) < CELERY_TASKS:
            if ran > last:
                progress, last = time.monotonic(), ran
            if time.monotonic() - progress > 15:
                break
            time.sleep(0.1)
        never_ran = sorted(set(range(CELERY_TASKS)) - set(run_counts(runs)))
        lost_in_flight = explain_lost(cluster, leader, never_ran, results, CELERY_TASKS // 2)

        unknown = []  # tasks whose result is the -UNKNOWN error the worker got storing it
        for n, result in enumerate(results):
            if n in lost_in_flight:
                continue
            try:
                value = result.get(timeout=10)
            except redis.ResponseError as exc:
                if via == "sentinel" or not str(exc).startswith("UNKNOWN"):
                    raise
                unknown.append(n)
                continue
            except Exception as exc:
                pytest.fail(f"task {n}'s result did not arrive ({exc!r}); worker:\n{worker.tail()}")
            assert value == 2 * n, f"task {n} answered {value!r}"
        worker.assert_alive()

        counts = run_counts(runs)
        twice = sorted(n for n, c in counts.items() if c > 1)
        print(
            f"\ncelery via {via}: {CELERY_TASKS} tasks, {ran_before_kill} ran before the leader "
            f"(node {leader}) was killed, all results in {time.monotonic() - killed_at:.1f}s "
            f"after it ({time.monotonic() - started:.1f}s in all); ran more than once: "
            f"{len(twice)} {twice[:20]}; results that are -UNKNOWN errors: {unknown}; "
            f"lost in kombu's BRPOP-to-unacked window: {lost_in_flight}; "
            f"resends {dict(resends)}"
        )
        assert set(counts) | set(lost_in_flight) == set(range(CELERY_TASKS)), "a task never ran"
        if via == "follower":
            # The follower sends a relayed write whose leader died to the next one under its
            # request id (node/engine.py): kombu's unacked-recording MULTI and the result
            # stores no longer fail, so nothing is lost and no result is -UNKNOWN.
            assert not lost_in_flight and not unknown, (lost_in_flight, unknown)
    finally:
        worker.stop()
        app.close()
        if leader is not None:
            heal(cluster, leader)


def explain_lost(
    cluster: LocalCluster, killed: int, never_ran: list[int], results: list[Any], sent_before: int
) -> list[int]:
    """The tasks that never ran, if kombu's Redis transport can have lost them; fails otherwise.

    kombu pops a message with BRPOP and only then records it as unacked, from the client: a
    pop whose reply was on its way when the leader died is gone, with real Redis as here.
    One consumer connection broke, so at most one message, sent before the kill, and found
    neither in the queue nor among the unacked ones."""
    if not never_ran:
        return []
    node = next(i for i in range(len(cluster.nodes)) if i != killed)
    r = redis.Redis(host="127.0.0.1", port=cluster.nodes[node].redis_port, socket_timeout=10)
    held = b"".join(r.lrange("celery", 0, -1)) + b"".join(r.hvals("unacked"))
    r.close()
    stuck = [n for n in never_ran if results[n].id.encode() in held]
    assert not stuck, f"tasks {stuck} are still queued or unacked: the worker stopped taking them"
    assert len(never_ran) == 1 and never_ran[0] < sent_before, (
        f"tasks {never_ran} never ran and are gone from the broker: more than one BRPOP in flight "
        f"could have lost (tasks 0-{sent_before - 1} were sent before the kill)"
    )
    return never_ran


# -- RQ ----------------------------------------------------------------------------------


def test_rq_worker_runs_jobs_through_a_leader_sigkill(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    from redis.sentinel import Sentinel
    from rq import Queue
    from rq.job import JobStatus

    from tests.integration.apps.rq_jobs import MASTER_NAME, connection_kwargs

    addrs = ",".join(f"{h}:{p}" for h, p in sentinels(cluster))
    conn = Sentinel(sentinels(cluster), socket_timeout=5).master_for(
        MASTER_NAME, **connection_kwargs()
    )
    queue = Queue("rc-apps", connection=conn)
    runs = tmp_path / "runs.txt"
    leader: int | None = None

    def finished(jobs: list[Any]) -> bool:
        for job in jobs:
            job.refresh()
        return all(job.get_status() == JobStatus.FINISHED for job in jobs)

    before = [queue.enqueue("rq_jobs.square", n) for n in range(20)]
    worker = Worker(
        [sys.executable, "-m", "rq.cli", "worker", "-c", "rq_jobs", "--with-scheduler",
         "--logging_level", "INFO", "rc-apps"],
        {"RC_SENTINELS": addrs, "RC_RUNS": str(runs)},
        tmp_path / "rq-worker.log",
    )  # fmt: skip
    try:
        # The kill finds the worker waiting for work (BLMOVE), where rq reconnects: an rq
        # worker whose Redis vanishes while it books a job (HSET of its state after the job)
        # exits instead, with Redis itself too; its supervisor would restart it.
        until(lambda: finished(before), WORKER_READY_S, "the first 20 jobs", worker)
        time.sleep(0.5)
        leader = cluster.wait_for_leader()
        cluster.kill(leader)
        after = [queue.enqueue("rq_jobs.square", n) for n in range(20, 40)]
        jobs = before + after

        until(lambda: finished(jobs), 60, "every job to finish", worker)
        assert [job.return_value() for job in jobs] == [n * n for n in range(40)]
        worker.assert_alive()
        counts = run_counts(runs)
        print(f"\nrq: 40 jobs, ran more than once: {sorted(n for n, c in counts.items() if c > 1)}")
        assert set(counts) == set(range(40))
    finally:
        worker.stop()
        conn.close()
        if leader is not None:
            heal(cluster, leader)


# -- Flask-Session -----------------------------------------------------------------------


def test_flask_session_reads_back_and_expires_with_its_ttl(cluster: LocalCluster) -> None:
    from flask import Flask, session
    from flask_session import Session

    port = cluster.nodes[follower(cluster)].redis_port
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    lifetime = 3
    app = Flask("rc-apps")
    app.config.update(
        SESSION_TYPE="redis",
        SESSION_REDIS=client,
        SESSION_KEY_PREFIX="rc-apps-session:",
        SESSION_PERMANENT=True,
        PERMANENT_SESSION_LIFETIME=datetime.timedelta(seconds=lifetime),
    )
    Session(app)

    @app.post("/cart/<item>")
    def add(item: str) -> str:
        session["cart"] = [*session.get("cart", []), item]
        return "ok"

    @app.get("/cart")
    def cart() -> str:
        return ",".join(session.get("cart", []))

    web = app.test_client()
    assert web.post("/cart/apple").status_code == 200
    assert web.post("/cart/pear").status_code == 200
    assert web.get("/cart").text == "apple,pear"
    keys = client.keys("rc-apps-session:*")
    assert len(keys) == 1, keys
    assert 0 < client.ttl(keys[0]) <= lifetime

    other = app.test_client()  # another browser: its own session
    other.post("/cart/fig")
    assert other.get("/cart").text == "fig"
    assert web.get("/cart").text == "apple,pear"

    until(lambda: not client.exists(keys[0]), lifetime + 5, "the session to expire")
    assert web.get("/cart").text == "", "an expired session still answered"
    client.close()
