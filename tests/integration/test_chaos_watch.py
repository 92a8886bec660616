"""The chaos run's watchers on a real 3-node cluster: the node a watch is on is SIGKILLed
between writes; the watch resumes on another member and check_watch finds every
acknowledged write delivered once, in order, and the end marker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from raftcache.chaos.checkers import check_watch
from raftcache.chaos.history import HistoryWriter, RecordLog, read_history, read_records
from raftcache.chaos.watch import (
    MARKER_KEY,
    finish_watchers,
    start_watchers,
)
from raftcache.client import Client

from tests.integration.conftest import start_cluster

pytestmark = pytest.mark.integration


def wait_for(predicate: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_watchers_resume_past_a_killed_node_and_the_checker_holds_them_to_the_writes(
    tmp_path: Path,
) -> None:
    cluster = start_cluster(tmp_path / "cluster")
    endpoints = [node.client_addr for node in cluster.nodes]
    history = HistoryWriter(tmp_path / "history.jsonl")
    log = RecordLog(tmp_path / "watch.jsonl")
    try:
        watchers = start_watchers(2, endpoints, log)
        wait_for(lambda: all(w.address for w in watchers), "both watches started")
        with Client(endpoints, timeout=10.0) as client:

            def write(n: int) -> None:
                key, value = f"r:{n % 3}", f"0-{n}"
                rec = history.begin(0, "set", key, value)
                client.set(key, value)
                rec.ok()

            for n in range(20):
                write(n)
            victim = endpoints.index(watchers[0].address or "")
            cluster.kill(victim)  # the first watch's node, maybe the leader
            for n in range(20, 40):
                write(n)
            final = {f"r:{k}": client.get(f"r:{k}").decode() for k in range(3)}  # type: ignore[union-attr]
        problems = finish_watchers(watchers, endpoints, "end-test", wait_s=30.0)
        assert problems == []
        assert watchers[0].address != endpoints[victim]
    finally:
        history.close()
        log.close()
        cluster.close()
    records = read_records(tmp_path / "watch.jsonl")
    verdict = check_watch(
        records, read_history(tmp_path / "history.jsonl"), final, (MARKER_KEY, "end-test")
    )
    assert verdict.valid is True, verdict
    assert verdict.details["acked_writes_checked"] == 80  # 40 writes, each checked per watcher
    assert verdict.details["watchers"][0]["resumes"] >= 1, verdict.details
    events = [r for r in records if r["what"] == "event" and r["watcher"] == 0]
    assert [r["value"] for r in events] == [f"0-{n}" for n in range(40)] + ["end-test"]
